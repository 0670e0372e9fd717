"""End-to-end recipe runs on a tiny classifier and a toy dataset: caching, determinism, failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.recipes import load_recipe
from deploytool.recipes.runner import RecipeStepError, run_recipe
from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    tiny_classifier_folder(root / "model", layers=2, hidden=32, heads=4, ffn=64)
    toy_csv(root / "toy.csv", n=240)
    return root


def _write(root: Path, name: str, **changes) -> Path:
    doc = {
        "schema_version": 1,
        "name": name,
        "model": {"path": "model"},
        "task": "sequence-classification",
        "train": [{"finetune": {"data": "toy.csv", "max_train": 160, "max_length": 32, "epochs": 1,
                                "batch_size": 16, "lr": 1e-3, "threads": 1}}],
        "export": {"exporter": "torch"},
        "passes": [{"reorder": {"importance": "magnitude"}}],
        "sweep": {"width": [1.0, 0.5], "depth": [1.0, 0.5], "precision": ["fp32", "int8", "ternary"]},
        "devices": ["x86-host", "kirin990"],
        "bench": {"seq_lens": [8], "runs": 2, "warmup": 0},
        "eval": {"data": "toy.csv", "split": "test", "max_length": 32},
    }
    doc.update(changes)
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _onnx_digests(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "models").glob("*.onnx"))}


@pytest.fixture(scope="module")
def first_run(workspace):
    recipe = load_recipe(_write(workspace, "tiny"))
    return run_recipe(recipe, workspace / "run1")


def test_run_builds_every_variant_and_the_report(first_run):
    res = first_run
    assert len(res.variants) == 2 * 2 * 3
    assert all(v.path.is_file() for v in res.variants)
    report = json.loads((res.report_dir / "report.json").read_text())
    assert {r["device"] for r in report["rows"]} == {"x86-host", "kirin990"}
    assert all(r["accuracy"] is not None for r in report["rows"])  # every variant evaluated
    html = (res.report_dir / "report.html").read_text()
    assert "<table" in html and "data:image/png;base64" in html
    sizes = {v.label: v.path.stat().st_size for v in res.variants}
    assert sizes["w0.5-d0.5-fp32"] < sizes["w1-d1-fp32"]
    assert sizes["w1-d1-ternary"] < sizes["w1-d1-int8"] < sizes["w1-d1-fp32"]
    # 12 variants and the teacher they came from, the reference row
    assert len(res.headline) == 12 + 1 and res.headline[0]["variant"] == "teacher (PyTorch fp32)"
    assert {"x86-host", "kirin990"} <= set(res.headline[0])


def test_rerun_is_cached_and_byte_identical(workspace, first_run):
    recipe = load_recipe(workspace / "tiny.yaml")
    again = run_recipe(recipe, workspace / "run1")
    assert all(s.cached for s in again.steps)
    fresh = run_recipe(recipe, workspace / "run2")  # from scratch: training, export, passes again
    assert not any(s.cached for s in fresh.steps)
    assert _onnx_digests(workspace / "run1") == _onnx_digests(workspace / "run2")


def test_changing_one_pass_reruns_from_there(workspace, first_run):
    p = _write(workspace, "tiny", passes=[{"reorder": {"importance": "magnitude", "neurons": False}}])
    res = run_recipe(load_recipe(p), workspace / "run1")
    by_name = {s.name: s for s in res.steps}
    assert by_name["train[0] finetune"].cached and by_name["export"].cached
    assert not by_name["passes[0] reorder"].cached
    assert not by_name["slice w=0.5 d=0.5"].cached
    _write(workspace, "tiny")  # restore for other tests


def test_failing_step_is_named_and_earlier_outputs_survive(workspace, first_run):
    p = _write(workspace, "broken", passes=[{"prune-heads": {"heads": {0: [0, 1, 2, 3]}}}])
    with pytest.raises(RecipeStepError, match=r"step 'passes\[0\] prune-heads' failed"):
        run_recipe(load_recipe(p), workspace / "run1")
    # the export it started from is still cached
    res = run_recipe(load_recipe(workspace / "tiny.yaml"), workspace / "run1")
    assert {s.name: s for s in res.steps}["export"].cached


@pytest.mark.parametrize("changes, needle", [
    ({"passes": [{"shrink": {}}]}, "passes[0]: expected one of"),
    ({"passes": [{"slice": {"width": "half"}}]}, "slice"),
    ({"model": {"path": "no-such-folder"}}, "no-such-folder"),
    ({"devices": ["kirin99"]}, "kirin99"),
])
def test_cli_bad_recipes_exit_2_with_one_line(workspace, tmp_path, changes, needle):
    p = _write(workspace, "bad", **changes)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(p), "--out", str(out), "--quiet"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and needle in lines[-1]
    assert "Traceback" not in r.output
    assert not list(out.glob("models/*.onnx"))


def test_every_training_step_kind_runs_in_a_recipe(workspace):
    data = {"data": "toy.csv", "max_train": 64, "max_length": 24}
    p = _write(workspace, "alltrain",
               train=[{"finetune": {**data, "epochs": 1, "batch_size": 16, "threads": 1}},
                      {"importance": {**data, "max_examples": 32}},
                      {"dynabert": {**data, "widths": [0.5, 1.0], "depths": [0.5, 1.0], "width_epochs": 0.5,
                                    "depth_epochs": 0.5, "batch_size": 16, "threads": 1}},
                      {"distill": {**data, "layers": 1, "hidden": 16, "heads": 2, "ffn": 32, "epochs": 0.5,
                                   "batch_size": 16, "threads": 1, "importance_examples": 0}},
                      {"ternary": {**data, "epochs": 0.5, "batch_size": 16, "threads": 1}}],
               passes=[], sweep={"precision": ["fp32", "ternary"]}, devices=["x86-host"])
    res = run_recipe(load_recipe(p), workspace / "alltrain")
    kinds = [s.kind for s in res.steps if s.kind.startswith("train-")]
    assert kinds == ["train-finetune", "train-importance", "train-dynabert", "train-distill", "train-ternary"]
    from deploytool.inspect import inspect_model

    info = inspect_model(res.variants[0].path).to_dict()
    assert info["num_layers"] == 1 and info["hidden_size"] == 16  # the distilled student was exported
    report = json.loads((res.report_dir / "report.json").read_text())
    assert len(report["rows"]) == 2
