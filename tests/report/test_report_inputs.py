"""Found by trying to break report and bench (2026-12-06): a file or profile given twice was shown once and counted
twice; an accuracy file with no record was accepted in silence; the report called every projection a roofline (the
device section said "PROJECTED (projected (host efficiencies))")."""

from __future__ import annotations

import json

import pytest

from deploytool.errors import ConfigError, InputFileError


def test_a_bench_file_or_profile_given_twice_is_refused(tmp_path):
    from deploytool.report.rows import ReportConfig

    b = tmp_path / "b.json"
    b.write_text("{}")
    with pytest.raises(ConfigError, match="given twice"):
        ReportConfig(results=(b, tmp_path / "." / "b.json"), out_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="profiles: kirin990 given twice"):
        ReportConfig(results=(b,), out_dir=tmp_path / "r", profiles=("kirin990", "kirin990"))


def test_calibrate_without_projections_is_refused(tmp_path, tiny_bench):
    """report --no-projection --calibrate wrote a report, exit 0: --calibrate scales projections and there were
    none. One line naming both, exit 2, nothing written."""
    from click.testing import CliRunner

    from deploytool.cli import main
    from deploytool.report.rows import ReportConfig

    with pytest.raises(ConfigError, match=r"^calibrate: scales the projections, and --no-projection"):
        ReportConfig(results=(tiny_bench,), out_dir=tmp_path / "r", project=False, calibrate=True)
    ReportConfig(results=(tiny_bench,), out_dir=tmp_path / "r", project=True, calibrate=True)  # (accepted)
    r = CliRunner().invoke(main, ["report", str(tiny_bench), "--profile", "kirin990", "--no-projection",
                                  "--calibrate", "-o", str(tmp_path / "r")])
    assert r.exit_code == 2 and r.stderr == ("error: --calibrate: scales the projections, and --no-projection "
                                             "(project=False) makes none; the two exclude each other\n"), r.output
    assert not (tmp_path / "r").exists()


def test_a_model_given_twice_to_bench_is_refused(tmp_path):
    from deploytool.bench.config import BenchConfig

    m = tmp_path / "m.onnx"
    m.write_bytes(b"x")
    with pytest.raises(ConfigError, match="models: .* given twice"):
        BenchConfig(models=(m, tmp_path / "sub" / ".." / "m.onnx"))


@pytest.mark.parametrize("doc", [{"models": {}}, []])
def test_an_accuracy_file_without_records_is_refused(tmp_path, doc):
    from deploytool.accuracy import load_accuracy_records

    p = tmp_path / "acc.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputFileError, match="holds no accuracy record"):
        load_accuracy_records([p])


def test_the_projection_note_names_the_method_the_rows_used():
    from types import SimpleNamespace

    from deploytool.report.cells import _method_text

    def row(label):
        return SimpleNamespace(projected_label=label, device_latency_source="projected")

    eff = _method_text([row("projected (host efficiencies)")])
    assert "microbenchmark" in eff and "roofline" not in eff
    roof = _method_text([row("projected")])
    assert "roofline" in roof and "microbenchmark" not in roof
    both = _method_text([row("projected (host efficiencies)"), row("projected")])
    assert "roofline" in both and "microbenchmark" in both


@pytest.mark.parametrize("which", ["report.json", "report.md", "size_accuracy.png"])
def test_a_report_never_overwrites_its_inputs(tmp_path, which):
    """A bench JSON named report.json (or an accuracy file named like another output) in the -o folder: the report
    replaced the file it was made from."""
    from click.testing import CliRunner

    from deploytool.cli import main

    (tmp_path / "b.json").write_text("{}")
    inp = tmp_path / which
    inp.write_text('{"schema": "deploytool.bench/1"}')
    args = ([str(inp)] if which == "report.json" else [str(tmp_path / "b.json"), "--accuracy", str(inp)])
    r = CliRunner().invoke(main, ["report", *args, "--profile", "kirin990", "-o", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == f"error: {inp}: the report would overwrite its input {inp}; choose another -o folder"
    assert inp.read_text() == '{"schema": "deploytool.bench/1"}'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"b.json", which})
