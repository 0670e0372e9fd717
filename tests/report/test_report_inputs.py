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


def test_a_calibrated_projection_carries_the_band_of_what_calibration_leaves(tmp_path):
    """``report --calibrate`` multiplies another device's projection by the host's measured/projected factor of its
    precision, and then gave it the band of the uncalibrated errors, the very errors the factor had removed: a band
    from 0 to twice the correction, on one side. The band of a calibrated projection is the spread of the host rows'
    errors after calibration (each row's projection times its precision's factor, against its measured p50),
    doubled in log scale for another device as every device band is."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.report.rows import ReportConfig, collect_rows
    from deploytool.testing.bench_models import encoder_like

    models = tuple(encoder_like(tmp_path / f"m{i}.onnx", vocab=500, hidden=h, layers=n, seed=i)
                   for i, (h, n) in enumerate([(16, 1), (128, 2), (384, 3)]))
    bench = tmp_path / "b.json"
    write_json(run_benchmark(BenchConfig(models=models, seq_lens=(8, 64), runs=5, warmup=1)), bench)
    rows, info = collect_rows(ReportConfig(results=(bench,), out_dir=tmp_path / "r", profiles=("kirin990",),
                                           calibrate=True))
    errs, cal = info["cost_model_host_errors"], info["calibration"]
    assert len(errs) == 6 and set(cal) == {"fp32"}, (errs, cal)
    left = [e["projected_ms"] * cal[e["precision"]] / e["measured_p50_ms"] - 1 for e in errs]
    lo, hi = min(0.0, *left), max(0.0, *left)
    lo, hi = (1 + lo) ** 2 - 1, (1 + hi) ** 2 - 1  # doubled in log scale
    projected = [r for r in rows if r.device == "kirin990" and r.status == "PROJECTED"]
    assert len(projected) == 6 and all("host-calibrated" in r.projected_label for r in projected)
    for r in projected:
        assert r.projected_low_ms == pytest.approx(r.projected_ms / (1 + hi), rel=1e-3), (r, lo, hi)
        assert r.projected_high_ms == pytest.approx(r.projected_ms / (1 + lo), rel=1e-3), (r, lo, hi)
    assert "after --calibrate" in info["calibrated_device_projection_band"]["source"]
