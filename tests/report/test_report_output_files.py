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
