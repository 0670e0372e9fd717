"""fit shows a candidate's 95% interval rounded once, from the bounds it was given. It kept them rounded to 3
decimals and printed those to 2, a second rounding: 80.8451 was kept as 80.845 and shown as 80.84 (once: 80.85),
85.0351 as 85.035 and 85.03 (once: 85.04). The expected text is Python's own 2-decimal format of the given bounds,
written here; the JSON keeps the bounds to 3 decimals."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploytool.cli import main


def test_the_interval_is_rounded_once(tiny_onnx, tmp_path):
    model = tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64)
    low, high = 80.8451, 85.0351  # not a Wilson interval of any counts given: taken as the file gives it
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps([{"model": "w1-d1-int8", "accuracy": 83.0, "n": 500, "ci95": [low, high]}]))
    out = tmp_path / "best.onnx"
    r = CliRunner().invoke(main, ["fit", str(model), "--profile", "kirin990", "-o", str(out), "--accuracy", str(acc),
                                  "--widths", "1", "--depths", "1", "--precisions", "int8", "--runs", "2",
                                  "--seq-len", "8", "--budget-ms", "100000"])
    assert r.exit_code == 0, r.output
    assert "83.00% [95% CI 80.85-85.04] n=500" in r.output, r.output
    why = json.loads((tmp_path / "best.onnx.fit.json").read_text())
    c, = why["candidates"]
    assert c["accuracy_ci95"] == [80.845, 85.035] and c["accuracy_n"] == 500


def test_a_candidate_without_an_accuracy_is_listed_without_an_empty_slot(tiny_onnx, tmp_path):
    """With --accuracy naming one candidate, the others were listed as 'w1-d1-fp32 (0.03 ms, ): rejected: no accuracy
    given for this candidate', an empty field after the comma."""
    model = tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64)
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"unit": "percent", "models": {"w1-d1-int8": 90}}))
    r = CliRunner().invoke(main, ["fit", str(model), "--profile", "kirin990", "-o", str(tmp_path / "best.onnx"),
                                  "--accuracy", str(acc), "--widths", "1", "--depths", "1", "--precisions",
                                  "fp32,int8", "--runs", "2", "--seq-len", "8", "--budget-ms", "100000"])
    assert r.exit_code == 0, r.output
    line, = [x for x in r.output.splitlines() if x.startswith("  w1-d1-fp32 (")]
    assert line.endswith(" ms): rejected: no accuracy given for this candidate"), line
    assert ", )" not in r.output


def test_none_over_the_floor_names_the_floor(tiny_onnx, tmp_path):
    """Every candidate within the device's budgets but under --accuracy-floor: the error said 'none of 1 candidates
    meets kirin990's budget', blaming the device; it names the floor too."""
    model = tiny_onnx("bert", layers=2, hidden=32, heads=4, ffn=64)
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps({"unit": "percent", "models": {"w1-d1-int8": 90}}))
    r = CliRunner().invoke(main, ["fit", str(model), "--profile", "kirin990", "-o", str(tmp_path / "best.onnx"),
                                  "--accuracy", str(acc), "--accuracy-floor", "95", "--widths", "1", "--depths", "1",
                                  "--precisions", "int8", "--runs", "2", "--seq-len", "8", "--budget-ms", "100000"])
    assert r.exit_code == 2 and r.stderr.startswith(
        "error: fit: none of 1 candidates meets kirin990's budget and the accuracy floor (95 %) at seq 8 (fastest: "
        "w1-d1-int8, accuracy 90.00 < floor 95)"), r.output
    assert not (tmp_path / "best.onnx").exists()
