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
from deploytool.testing.toy_text import toy_csv


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
        "bench": {"seq_len": [8], "runs": 2, "warmup": 0},
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
    # at hidden 32 the graph outweighs the weights: the fused int8 graph (~60 nodes, int8 embeddings) can
    # be smaller than the ternary one with its unpacking subgraphs; ternary < int8 at real sizes is
    # asserted in test_pack.py (test_linear_weights_shrink_by_target) and measured in pack_bench.py
    assert sizes["w1-d1-ternary"] < sizes["w1-d1-fp32"] and sizes["w1-d1-int8"] < sizes["w1-d1-fp32"]
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
    # a quantized or packed model before the sweep: refused before the training, not when the slice fails
    ({"passes": [{"quantize": {"precision": "int8"}}]}, "sweep: passes[0] quantize leaves an int8 model"),
    ({"passes": [{"pack": {"weights": "ternary"}}, {"slice": {"width": 0.5}}]},
     "passes[1] slice: passes[0] pack before it leaves a ternary model"),
    ({"passes": [{"reorder": {"importance": "nope.json"}}]}, "passes[0] reorder: importance: "),
])
def test_cli_bad_recipes_exit_2_with_one_line(workspace, tmp_path, changes, needle):
    p = _write(workspace, "bad", **changes)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(p), "-o", str(out), "--quiet"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and needle in lines[-1]
    assert "Traceback" not in r.output
    assert not out.exists()  # refused before anything was made (the output folder was left empty)


def test_an_fp16_model_before_the_sweep_names_its_variants_fp16(workspace, tmp_path):
    """``quantize: {precision: fp16}`` in ``passes`` makes the sweep start from an fp16 model: its as-is variants
    are fp16 files and are named so (they were called fp32); fp16 in the sweep is that same variant, once (the
    fp16 pass refused it mid-run); int8 is built from it."""
    import onnx

    p = _write(workspace, "half", passes=[{"quantize": {"precision": "fp16"}}],
               sweep={"width": [1.0, 0.5], "depth": [1.0], "precision": ["fp32", "fp16", "int8"]},
               bench={"seq_len": [8], "runs": 1, "warmup": 0}, eval=None)
    res = run_recipe(load_recipe(p), tmp_path / "run", store=workspace / "store")
    labels = sorted(v.label for v in res.variants)
    assert labels == ["w0.5-d1-fp16", "w0.5-d1-int8", "w1-d1-fp16", "w1-d1-int8"]
    for v in res.variants:
        weights = [t.data_type for t in onnx.load(str(v.path)).graph.initializer if len(t.dims) == 2]
        ops = {n.op_type for n in onnx.load(str(v.path)).graph.node}
        if v.label.endswith("fp16"):
            assert weights and all(d == onnx.TensorProto.FLOAT16 for d in weights), v.label
        else:
            assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention", "MatMulIntegerToFloat"}, v.label


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
    from deploytool.inspection import inspect_model

    info = inspect_model(res.variants[0].path).to_dict()
    assert info["num_layers"] == 1 and info["hidden_size"] == 16  # the distilled student was exported
    report = json.loads((res.report_dir / "report.json").read_text())
    assert len(report["rows"]) == 2


def test_shared_store_reuses_steps_across_recipes_and_folders(workspace, tmp_path):
    """Two recipes that fine-tune the same teacher: the second reuses it from the shared store, in
    another output folder; a changed data file (same path) trains again; the cap evicts old entries."""
    store = tmp_path / "store"
    sweep = {"width": [1.0], "depth": [1.0], "precision": ["fp32"]}
    a = run_recipe(load_recipe(_write(workspace, "share-a", sweep=sweep, eval=None)), tmp_path / "a", store=store)
    b = run_recipe(load_recipe(_write(workspace, "share-b", sweep={**sweep, "precision": ["int8"]}, eval=None)),
                   tmp_path / "b", store=store)
    cached = {s.kind: s.cached for s in b.steps}
    assert cached["train-finetune"] and cached["export"] and not cached["precision-int8"]
    assert not any(s.cached for s in a.steps)
    # the export b reused names no recipe: its files said they came from "recipe share-a"
    import onnx

    for v in b.variants:
        meta = {m.key: m.value for m in onnx.load(str(v.path), load_external_data=False).metadata_props}
        assert "share-a" not in json.dumps(meta) and not meta["deploytool.source"].startswith("recipe "), meta
    # the run folder links the store's entry; the published model is a file of its own (hard link)
    link = next((tmp_path / "b" / "steps").glob("train-finetune-*"))
    assert link.is_symlink() and link.resolve().parent == store.resolve()
    # the same data path with other content is another step
    data = workspace / "toy2.csv"
    toy_csv(data, n=240)
    first = run_recipe(load_recipe(_write(workspace, "share-c", sweep=sweep, eval=None,
                                          train=[{"finetune": {"data": "toy2.csv", "max_train": 40, "max_length": 16,
                                                               "epochs": 1, "batch_size": 16, "threads": 1}}])),
                       tmp_path / "c", store=store)
    assert not next(s for s in first.steps if s.kind == "train-finetune").cached
    toy_csv(data, n=200)  # other rows, same path
    again = run_recipe(load_recipe(workspace / "share-c.yaml"), tmp_path / "c2", store=store)
    assert not next(s for s in again.steps if s.kind == "train-finetune").cached
    # ls and clear through the CLI; a cap far below the store's size keeps only the last run's steps
    r = CliRunner().invoke(main, ["cache", "ls", "--cache-dir", str(store), "--json"])
    assert r.exit_code == 0, r.output
    listed = json.loads(r.output)
    assert len(listed["entries"]) >= 8 and {e["recipe"] for e in listed["entries"]} >= {"share-a", "share-b"}
    before = {e["name"] for e in listed["entries"]}
    capped = run_recipe(load_recipe(workspace / "share-a.yaml"), tmp_path / "a2", store=store, max_store_bytes=1)
    from deploytool.recipes.cache import store_entries

    left = {e.name for e in store_entries(store)}
    assert left == {f"{s.kind}-{s.key[:16]}" for s in capped.steps} and left < before
    r = CliRunner().invoke(main, ["cache", "clear", "--cache-dir", str(store)])
    assert r.exit_code == 0 and f"removed {len(left)} step{'' if len(left) == 1 else 's'}" in r.output
    assert store_entries(store) == []


@pytest.mark.parametrize("args, expected", [
    (["cache", "clear", "--older-than-days", "-1"], "--older-than-days"),
    (["cache", "ls", "--cache-dir", "{file}"], "is a file"),
    (["run", "{file}", "--cache-max-gb", "0"], "--cache-max-gb"),
    (["run", "{file}", "--cache-max-gb", "nan"], "nan is not a finite number"),
    (["run", "{file}", "--cache-max-gb", "inf"], "inf is not a finite number"),
    (["cache", "clear", "--older-than-days", "nan"], "nan is not a finite number"),
    (["cache", "ls", "env={file}"], "DEPLOYTOOL_CACHE_DIR="),  # the store named by the environment, a file
    (["cache", "clear", "env={file}"], "not a folder"),
])
def test_cache_options_bad_input_is_one_line(args, expected, tmp_path, monkeypatch):
    f = tmp_path / "f.yaml"
    f.write_text("x: 1\n")
    argv = [a.replace("{file}", str(f)) for a in args]
    for a in [a for a in argv if a.startswith("env=")]:
        monkeypatch.setenv("DEPLOYTOOL_CACHE_DIR", a[4:])
        argv.remove(a)
    r = CliRunner().invoke(main, argv)
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
