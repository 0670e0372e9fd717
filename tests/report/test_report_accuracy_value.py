"""The accuracy a report shows is the share right rounded once.

eval writes ``accuracy`` rounded to 3 decimals (percent); the report showed that to 1 decimal, a second rounding:
13 of 107 right is 12.1495...%, written 12.15, shown 12.2 (rounded once: 12.1); 94 of 107 is 87.8505...%, written
87.85, shown 87.8 (once: 87.9). The record's own counts (n_correct of n, or its 0/1 results) give the exact share;
the file's figure is taken for it where it is that share rounded (within 0.0005 points). Two records of one model
whose figures differ only by that are one accuracy, as before. The reference is k/n computed here."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploytool.accuracy import load_accuracy_records
from deploytool.cli import main


def eval_record(k: int, n: int, model: str = "m", correct: bool = False) -> dict:
    """A record as deploytool eval writes it: accuracy in percent rounded to 3 decimals (ci95 left out: its own
    test is test_report_accuracy_interval.py)."""
    rec = {"model": model, "accuracy": round(100 * k / n, 3), "n_correct": k, "n": n}
    if correct:
        rec.pop("n_correct")
        rec["correct"] = "1" * k + "0" * (n - k)
    return rec


# (k, n): 100 k / n rounded to 3 decimals, then to 1, differs from 100 k / n rounded to 1 (either way)
CASES = [(13, 107), (94, 107), (43, 109), (66, 109), (15, 131)]


def _load(tmp_path, records, name="acc.json"):
    f = tmp_path / name
    f.write_text(json.dumps(records))
    return load_accuracy_records([f])


@pytest.mark.parametrize("k, n", CASES)
@pytest.mark.parametrize("correct", [False, True], ids=["n_correct", "correct"])
def test_the_value_shown_is_the_share_rounded_once(tmp_path, k, n, correct):
    once, twice = f"{100 * k / n:.1f}", f"{round(100 * k / n, 3):.1f}"
    assert once != twice  # the premise: this record shows the double rounding
    rec = _load(tmp_path, [eval_record(k, n, correct=correct)]).records["m"]
    assert abs(rec.value - 100 * k / n) < 1e-12
    assert rec.label().startswith(f"{once}% [")
    assert rec.to_dict()["accuracy"] == round(100 * k / n, 3)  # written back as eval wrote it


def test_a_figure_further_off_is_kept(tmp_path):
    """12.2 for 13 of 107 is not 12.1495...% rounded to 3 decimals (a figure rounded to 1, or another count): kept."""
    rec = _load(tmp_path, [{"model": "m", "accuracy": 12.2, "n_correct": 13, "n": 107}]).records["m"]
    assert rec.value == 12.2
    rec = _load(tmp_path, [{"model": "m", "accuracy": 12.15}]).records["m"]  # no counts: as given
    assert rec.value == 12.15


def _report(bench, tmp_path, files: list[object]):
    args = ["report", str(bench), "--profile", "kirin990", "--no-projection", "-o", str(tmp_path / "r")]
    for i, records in enumerate(files):
        f = tmp_path / f"acc{i}.json"
        f.write_text(json.dumps(records))
        args += ["--accuracy", str(f)]
    res = CliRunner().invoke(main, args)
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["rows"] if res.exit_code == 0 else None
    return res, rows


def test_report_shows_the_share_rounded_once(tiny_bench, tmp_path):
    k, n = 13, 107
    res, rows = _report(tiny_bench, tmp_path, [eval_record(k, n)])
    assert res.exit_code == 0, res.output
    assert {r["accuracy"] for r in rows} == {round(100 * k / n, 4)}  # report.json: 4 decimals
    md = (tmp_path / "r" / "report.md").read_text()
    assert f"{100 * k / n:.1f}% [" in md and f"{round(100 * k / n, 3):.1f}% [" not in md, md


@pytest.mark.parametrize("order", ["eval first", "plain first"])
def test_two_files_differing_only_by_the_rounding_are_one_accuracy(tiny_bench, tmp_path, order):
    """An eval record (12.15, 13 of 107) and a file stating 12.15 without counts: one figure, as before (never
    refused); the report shows the exact share, from the record with counts."""
    k, n = 13, 107
    files = [eval_record(k, n), {"models": {"m": round(100 * k / n, 3)}, "unit": "percent"}]
    res, rows = _report(tiny_bench, tmp_path, files if order == "eval first" else files[::-1])
    assert res.exit_code == 0, res.output
    assert {r["accuracy"] for r in rows} == {round(100 * k / n, 4)}  # report.json: 4 decimals
    assert f"{100 * k / n:.1f}% [" in (tmp_path / "r" / "report.md").read_text()


def test_two_counts_of_one_written_figure_are_one_accuracy(tiny_bench, tmp_path):
    """Two eval records whose counts differ but write the same figure (13 of 107 and 1215 of 10000: 12.15) were
    one accuracy; they still are (the files state one figure)."""
    assert round(100 * 13 / 107, 3) == round(100 * 1215 / 10000, 3)  # the premise
    res, _ = _report(tiny_bench, tmp_path, [eval_record(13, 107), eval_record(1215, 10000)])
    assert res.exit_code == 0, res.output


def test_one_share_written_two_ways_is_one_accuracy(tiny_bench, tmp_path):
    """13 of 107 written 12.15 by eval and 12.149532710280374 by hand, counts in both: the same exact share, one
    accuracy (refused before as 12.15 vs 12.1495...)."""
    k, n = 13, 107
    res, rows = _report(tiny_bench, tmp_path, [eval_record(k, n), {**eval_record(k, n), "accuracy": 100 * k / n}])
    assert res.exit_code == 0, res.output
    assert {r["accuracy"] for r in rows} == {round(100 * k / n, 4)}  # report.json: 4 decimals


def test_two_different_figures_are_still_refused(tiny_bench, tmp_path):
    res, _ = _report(tiny_bench, tmp_path, [eval_record(13, 107), {"models": {"m": 12.3}, "unit": "percent"}])
    assert res.exit_code == 2
    assert "m is given 2 different accuracies: 'm' 12.1% [" in res.output, res.output
    assert "'m' 12.3% in acc1.json; keep one record per model" in res.output, res.output
    assert not (tmp_path / "r").exists()
