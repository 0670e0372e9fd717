"""Recipe reports with accuracy: the teacher as the reference row, every variant's n, interval and share of it."""

from __future__ import annotations

import json

import pytest
import yaml

from deploytool.recipes import load_recipe
from deploytool.recipes.runner import run_recipe
from deploytool.testing.toy_text import tiny_classifier_folder, toy_csv

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("accrecipe")
    tiny_classifier_folder(root / "model", layers=2, hidden=32, heads=4, ffn=64)
    toy_csv(root / "toy.csv", n=240)
    doc = {"schema_version": 1, "name": "acc", "model": {"path": "model"}, "task": "sequence-classification",
           "train": [{"finetune": {"data": "toy.csv", "max_train": 160, "max_length": 32, "epochs": 1,
                                   "batch_size": 16, "lr": 1e-3, "threads": 1}}],
           "export": {"exporter": "torch"}, "passes": [],
           "sweep": {"width": [1.0, 0.5], "depth": [1.0], "precision": ["fp32", "int8"]},
           "devices": ["x86-host"], "bench": {"seq_len": [8], "runs": 2, "warmup": 0},
           "eval": {"data": "toy.csv", "split": "test", "max_length": 32}}
    p = root / "acc.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return run_recipe(load_recipe(p), root / "out")


@pytest.mark.slow  # the module's recipe run (27 s) falls on whichever of its two tests runs first
def test_accuracy_file_has_the_teacher_and_per_example_records(run):
    recs = json.loads((run.out_dir / "accuracy.json").read_text())
    ref = [r for r in recs if r.get("role") == "reference"]
    variants = [r for r in recs if r.get("role") != "reference"]
    assert len(ref) == 1 and len(variants) == 4
    assert ref[0]["label"] == "teacher (PyTorch fp32)"
    for r in recs:
        assert r["n"] == 24 and len(r["correct"]) == 24  # 10% of 240
        assert r["correct"].count("1") == round(r["accuracy"] * r["n"] / 100)
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
        assert r["examples"] == ref[0]["examples"]  # the same examples: paired tests are possible


@pytest.mark.slow
def test_headline_and_report_show_the_reference_and_shares(run):
    recs = {r.get("label"): r for r in json.loads((run.out_dir / "accuracy.json").read_text())}
    head = run.headline
    assert head[0]["variant"] == "teacher (PyTorch fp32)" and "n=24" in head[0]["acc % [95% CI] n"]
    assert set(head[0]) == set(head[1])  # the reference row has every column (the console table needs them)
    teacher = recs["teacher (PyTorch fp32)"]["accuracy"]
    for row in head[1:]:
        acc = recs[row["variant"]]["accuracy"]
        assert "n=24" in row["acc % [95% CI] n"]
        if teacher > 0:
            assert f"{100 * acc / teacher:.0f}% of ref" in row["acc % [95% CI] n"]
    md = (run.report_dir / "report.md").read_text()
    assert "Reference (the model the variants were made from): **teacher (PyTorch fp32)**" in md
    rows = json.loads((run.report_dir / "report.json").read_text())["rows"]
    assert all(r["accuracy_n"] == 24 and r["accuracy_low"] <= r["accuracy"] <= r["accuracy_high"] for r in rows)
    assert run.picks and all("x86-host" in p for p in run.picks)


@pytest.mark.slow
def test_a_published_variant_is_evaluated_as_it_is(run, tmp_path, monkeypatch):
    """models/ held the .onnx files alone: ``deploytool eval OUT/models/X.onnx`` found no tokenizer (the
    quickstart's own models could not be evaluated, bundled or statically quantized without --tokenizer). The
    trained folder's tokenizer, config.json (label names) and training record are published beside them: the
    command, run elsewhere, evaluates a published variant with its labels and gives accuracy.json's figure on the
    recipe's examples."""
    from click.testing import CliRunner

    from deploytool.cli import main

    models = run.out_dir / "models"
    for name in ("tokenizer.json", "config.json", "deploytool.json"):
        assert (models / name).is_file(), name
    recs = {r["label"]: r for r in json.loads((run.out_dir / "accuracy.json").read_text()) if "role" not in r}
    monkeypatch.chdir(tmp_path)
    for label in ("w0.5-d1-int8", "w1-d1-fp32"):
        res = CliRunner().invoke(main, ["eval", str(models / f"acc-{label}.onnx"), "--data",
                                        str(run.out_dir.parent / "toy.csv"), "--split", "test",
                                        "--max-length", "32", "--json"])
        assert res.exit_code == 0, res.output
        got = json.loads(res.output)
        assert got["n"] == recs[label]["n"] == 24
        assert got["accuracy"] == recs[label]["accuracy"], label
        assert got["label_names"] and got["tokenizer_folder"] is None  # read beside the model


@pytest.mark.slow  # 20 s in a full run
def test_embedding_recipe_uses_recall_at_10_as_its_accuracy(tmp_path):
    from deploytool.testing.tiny import tiny_model
    from deploytool.testing.toy_text import toy_tokenizer

    tiny_model("bert", task="feature-extraction", layers=2, hidden=32, heads=4, ffn=64, weight_scale=5.0
               ).save_pretrained(tmp_path / "enc", safe_serialization=True)
    toy_tokenizer(tmp_path / "enc")
    toy_csv(tmp_path / "toy.csv", n=120)
    doc = {"schema_version": 1, "name": "emb", "model": {"path": "enc"}, "task": "feature-extraction",
           "export": {"exporter": "torch"}, "passes": [],
           "sweep": {"width": [1.0, 0.5], "depth": [1.0], "precision": ["fp32", "int8"]},
           "devices": ["x86-host"], "bench": {"seq_len": [8], "runs": 2, "warmup": 0},
           "eval": {"data": "toy.csv", "max_eval": 100, "max_length": 32}}
    p = tmp_path / "emb.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = run_recipe(load_recipe(p), tmp_path / "out")
    recs = {r["label"]: r for r in json.loads((res.out_dir / "accuracy.json").read_text())}
    assert all(r["metric"] == "recall@10" and r["n"] == 100 and len(r["scores"]) == 100 for r in recs.values())
    assert recs["w1-d1-fp32"]["accuracy"] == pytest.approx(100.0)  # the exported model is the reference
    assert recs["w0.5-d1-fp32"]["accuracy"] < 100.0 and recs["w0.5-d1-fp32"]["cosine_mean"] < 1.0
    rows = json.loads((res.report_dir / "report.json").read_text())["rows"]
    assert {r["accuracy_metric"] for r in rows} == {"recall@10"}
    assert "recall@10" in (res.report_dir / "report.md").read_text()
