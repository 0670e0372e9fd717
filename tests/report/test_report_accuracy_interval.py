"""The 95% interval a report shows is the Wilson bound rounded once.

eval writes ``ci95`` rounded to 3 decimals (percent); the report read those and showed them to 1 decimal, a second
rounding: n = 19, 12 right has an upper bound of 80.8505 %, written 80.85, shown 80.8 (rounded once: 80.9); n = 38,
19 right a lower bound of 34.8499 %, written 34.85, shown 34.9 (once: 34.8). Both directions occur, about as often.
The record's own counts (n_correct of n, or its 0/1 results) give the exact interval; the file's is taken for it
where it is that interval rounded. The reference is the Wilson formula written out here in p-hat form."""

from __future__ import annotations

import json
import math
import re

import pytest
from click.testing import CliRunner

from deploytool.accuracy import load_accuracy_records
from deploytool.cli import main

Z = 1.959963984540054


def wilson_percent(k: int, n: int) -> tuple[float, float]:
    p = k / n
    denom = 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / denom
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / denom
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def eval_record(k: int, n: int, model: str = "m", correct: bool = False) -> dict:
    """A record as deploytool eval writes it: accuracy and ci95 in percent, rounded to 3 decimals."""
    lo, hi = wilson_percent(k, n)
    rec = {"model": model, "accuracy": round(100 * k / n, 3), "n_correct": k, "n": n,
           "ci95": [round(lo, 3), round(hi, 3)]}
    if correct:
        rec.pop("n_correct")
        rec["correct"] = "1" * k + "0" * (n - k)
    return rec


def _interval(label: str) -> tuple[str, str]:
    m = re.search(r"\[([\d.]+)-([\d.]+)\] n=\d+", label)
    assert m, label
    return m.group(1), m.group(2)


# (k, n): each has a bound whose 3-decimal rounding then 1-decimal display differs from one rounding
CASES = [(12, 19), (19, 38), (15, 32), (20, 48), (33, 40)]


@pytest.mark.parametrize("k, n", CASES)
@pytest.mark.parametrize("correct", [False, True], ids=["n_correct", "correct"])
def test_the_interval_shown_is_the_wilson_bound_rounded_once(tmp_path, k, n, correct):
    lo, hi = wilson_percent(k, n)
    once = (f"{lo:.1f}", f"{hi:.1f}")
    twice = (f"{round(lo, 3):.1f}", f"{round(hi, 3):.1f}")
    assert once != twice  # the premise: this record shows the double rounding
    f = tmp_path / "acc.json"
    f.write_text(json.dumps([eval_record(k, n, correct=correct)]))
    rec = load_accuracy_records([f]).records["m"]
    assert _interval(rec.label()) == once


def test_an_interval_made_another_way_is_kept(tmp_path):
    """A ci95 that is not the Wilson interval of the record's counts (another method) is shown as given."""
    f = tmp_path / "acc.json"
    f.write_text(json.dumps([{"model": "m", "accuracy": 63.158, "n_correct": 12, "n": 19, "ci95": [38.36, 83.71]}]))
    rec = load_accuracy_records([f]).records["m"]
    assert (rec.low, rec.high) == (38.36, 83.71)


def test_report_md_shows_the_bound_rounded_once(tiny_bench, tmp_path):
    """End to end: report --accuracy with an eval record; report.md's accuracy cell."""
    k, n = 12, 19
    lo, hi = wilson_percent(k, n)
    acc = tmp_path / "acc.json"
    acc.write_text(json.dumps(eval_record(k, n)))
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", str(tiny_bench), "--accuracy", str(acc), "--profile", "kirin990",
                                    "--no-projection", "-o", str(out)])
    assert res.exit_code == 0, res.output
    md = (out / "report.md").read_text()
    assert f"[{lo:.1f}-{hi:.1f}] n={n}" in md, md
    assert f"[{lo:.1f}-{round(hi, 3):.1f}] n={n}" not in md
