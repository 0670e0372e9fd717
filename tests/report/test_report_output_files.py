"""A folder where one of the report's files goes (``-o r`` with ``r/report.html/`` left by something else): only
report.json was checked before any work, so the report wrote the plots, report.json and report.md into r, then
failed on report.html: a half-written report (found 2026-12-07). Every file's path is checked first now."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from deploytool.cli import main


@pytest.mark.parametrize("name", ["report.json", "report.md", "report.html", "latency_accuracy.png",
                                  "size_accuracy.png"])
def test_a_folder_at_an_output_file_is_refused_before_anything_is_written(tiny_bench, tmp_path, name):
    out = tmp_path / "r"
    (out / name).mkdir(parents=True)
    res = CliRunner().invoke(main, ["report", str(tiny_bench), "--profile", "kirin990", "--no-projection",
                                    "-o", str(out)])
    assert res.exit_code == 2
    assert res.output == f"error: {out / name}: is a directory, expected a file path\n"
    assert [p.name for p in out.iterdir()] == [name]


@pytest.mark.parametrize("dash", [["-o", "-"], ["--output=-"]])
def test_output_dash_is_refused_as_bench_refuses_it(tiny_bench, tmp_path, monkeypatch, dash):
    """``report ... -o -`` (stdout, by the usual convention) made a folder named '-' holding the whole report; -o is
    a folder here. Now one line, worded as bench's and verify-arm64's refusal ('error: -o -: <command> writes ...'),
    exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["report", str(tiny_bench), "--profile", "kirin990", "--no-projection", *dash])
    lines = res.output.splitlines()
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith("error: -o -: report writes its files") and "folder" in lines[0], res.output
    assert "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []
