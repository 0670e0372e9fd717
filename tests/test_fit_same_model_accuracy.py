"""fit's accuracy lookup through a collapsed candidate's ``same_as`` name. On a 4-layer model depths 0.75 and 0.7
keep the same layers (0, 1, 2), so fit builds one candidate, named w0.5-d0.75-int8, that stands for
w0.5-d0.7-int8 too. A user's accuracy file measured under the other label (w0.5-d0.7-int8) must give that
candidate its accuracy: in its row, in the pick, and against --accuracy-floor. The accuracies are numbers written
here, not computed by fit. Two different figures for the one candidate (its own name and a name it stands for) were
taken in silence, the first by name; refused now, as the report refuses two accuracies of one model."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploytool.cli import main

GRID = ["--widths", "0.5", "--depths", "1,0.75,0.7", "--precisions", "int8", "--runs", "2", "--seq-len", "8",
        "--budget-ms", "100000"]


@pytest.fixture(scope="module")
def setup(tiny_onnx, tmp_path_factory):
    d = tmp_path_factory.mktemp("fit_same_acc")
    model = tiny_onnx("bert", layers=4, hidden=32, heads=4, ffn=64)
    acc = d / "acc.json"
    # the full-depth candidate is the less accurate; the accuracy of the 3-layer one is filed under d0.7
    acc.write_text(json.dumps({"models": {"w0.5-d1-int8": 80.0, "w0.5-d0.7-int8": 85.5}}))
    return model, acc, d


def _fit(model, acc, out, *extra):
    return CliRunner().invoke(main, ["fit", str(model), "--profile", "kirin990", "-o", str(out),
                                     "--accuracy", str(acc), *GRID, *extra])


def test_the_accuracy_of_a_name_the_candidate_stands_for_is_its_own(setup):
    model, acc, d = setup
    out = d / "best.onnx"
    r = _fit(model, acc, out)
    assert r.exit_code == 0, r.output
    why = json.loads((d / "best.onnx.fit.json").read_text())
    by = {c["name"]: c for c in why["candidates"]}
    assert sorted(by) == ["w0.5-d0.75-int8", "w0.5-d1-int8"]
    assert by["w0.5-d0.75-int8"]["same_as"] == ["w0.5-d0.7-int8"]
    assert by["w0.5-d0.75-int8"]["accuracy"] == 85.5 and by["w0.5-d1-int8"]["accuracy"] == 80.0
    assert by["w0.5-d0.75-int8"]["fits"] and by["w0.5-d0.75-int8"]["reasons"] == []
    assert why["ranking"] == "accuracy" and why["chosen"] == "w0.5-d0.75-int8"
    assert "picked w0.5-d0.75-int8" in r.output and "85.50%" in r.output
    assert out.is_file()


def test_a_floor_judges_the_accuracy_found_through_same_as(setup):
    model, acc, d = setup
    out = d / "floor.onnx"
    r = _fit(model, acc, out, "--accuracy-floor", "85")  # 85.5 passes, 80 does not
    assert r.exit_code == 0, r.output
    why = json.loads((d / "floor.onnx.fit.json").read_text())
    by = {c["name"]: c for c in why["candidates"]}
    assert why["chosen"] == "w0.5-d0.75-int8" and by["w0.5-d0.75-int8"]["fits"]
    assert by["w0.5-d1-int8"]["reasons"] == ["accuracy 80.00 < floor 85"]
    out = d / "high.onnx"
    r = _fit(model, acc, out, "--accuracy-floor", "86")  # neither: refused, naming the figure found via d0.7
    assert r.exit_code == 2, r.output
    assert "accuracy 85.50 < floor 86" in r.output and "Traceback" not in r.output
    assert not out.exists() and not (d / "high.onnx.fit.json").exists()


def test_two_accuracies_of_one_candidate_are_refused(setup, tmp_path):
    model, _, d = setup
    acc = tmp_path / "two.json"
    acc.write_text(json.dumps({"models": {"w0.5-d1-int8": 80.0, "w0.5-d0.75-int8": 84.0, "w0.5-d0.7-int8": 85.5}}))
    out = tmp_path / "two.onnx"
    r = _fit(model, acc, out)
    assert r.exit_code == 2
    assert r.output == ("error: --accuracy: w0.5-d0.75-int8 84, w0.5-d0.7-int8 85.5: the same model on this input "
                        "(one candidate, w0.5-d0.75-int8) with different accuracies; keep one\n")
    assert not out.exists()
    # the same figure under both names is one accuracy
    acc.write_text(json.dumps({"models": {"w0.5-d1-int8": 80.0, "w0.5-d0.75-int8": 85.5, "w0.5-d0.7-int8": 85.5}}))
    r = _fit(model, acc, out)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "two.onnx.fit.json").read_text())["chosen"] == "w0.5-d0.75-int8"


def test_one_figure_rounded_by_eval_under_two_names_is_one_accuracy(setup, tmp_path):
    """An eval record (13 of 107 right, written 12.15) under one name and 12.15 without counts under the other: one
    figure, accepted as before, though the record with counts now holds the exact 12.1495...% (the report shows it
    rounded once); a figure that differs is still refused, shown as the file states it."""
    model, _, d = setup
    acc = tmp_path / "eval.json"
    acc.write_text(json.dumps([{"model": "w0.5-d1-int8", "accuracy": 80.0},
                               {"model": "w0.5-d0.75-int8", "accuracy": 12.15, "n_correct": 13, "n": 107},
                               {"model": "w0.5-d0.7-int8", "accuracy": 12.15}]))
    r = _fit(model, acc, tmp_path / "one.onnx")
    assert r.exit_code == 0, r.output
    acc.write_text(json.dumps([{"model": "w0.5-d1-int8", "accuracy": 80.0},
                               {"model": "w0.5-d0.75-int8", "accuracy": 12.15, "n_correct": 13, "n": 107},
                               {"model": "w0.5-d0.7-int8", "accuracy": 12.2}]))
    r = _fit(model, acc, tmp_path / "two.onnx")
    assert r.exit_code == 2
    assert r.output == ("error: --accuracy: w0.5-d0.75-int8 12.15, w0.5-d0.7-int8 12.2: the same model on this "
                        "input (one candidate, w0.5-d0.75-int8) with different accuracies; keep one\n")
