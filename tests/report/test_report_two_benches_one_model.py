"""Two bench JSONs of one model, projected onto a device neither ran on: report.json had two rows, the Markdown and
HTML tables one (the first bench's; the second was dropped by the variant grouping), the summary "1 of 1" and the
command "2 rows". The README is silent on the case, so every output now keeps both, each labelled with its bench
file: 'm (a.json)' and 'm (b.json)', and report.json's rows say which file ('bench')."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploytool.cli import main


def test_two_benches_of_one_model_projected_are_two_labelled_rows_everywhere(tmp_path, monkeypatch):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    monkeypatch.chdir(tmp_path)
    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    for name in ("a.json", "b.json"):
        write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), runs=2, warmup=1)), tmp_path / name)
    res = CliRunner().invoke(main, ["report", "a.json", "b.json", "--profile", "kirin990", "-o", "r"])
    assert res.exit_code == 0, res.output
    assert "2 rows" in res.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [(r["device"], r["model"], r["seq_len"], r["bench"], r["status"]) for r in rep["rows"]] == [
        ("kirin990", "m (a.json)", 8, "a.json", "PROJECTED"), ("kirin990", "m (b.json)", 8, "b.json", "PROJECTED")]
    (dev,) = rep["summary"]
    assert (dev["variants"], dev["fitting"]) == (2, 2)
    md = (tmp_path / "r" / "report.md").read_text()
    table = md.split("## kirin990")[1]
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and "m (" in ln]
    assert len(rows) == 2 and "m (a.json)" in rows[0] and "m (b.json)" in rows[1], table
    assert "2 of 2 |" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert "m (a.json)" in html and "m (b.json)" in html


def test_one_bench_per_length_is_still_one_variant(tmp_path, monkeypatch):
    """Two benches of one model at different lengths do not collide: one variant, no labels."""
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    monkeypatch.chdir(tmp_path)
    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    for name, seq in (("a.json", 8), ("b.json", 32)):
        write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(seq,), runs=2, warmup=1)), tmp_path / name)
    res = CliRunner().invoke(main, ["report", "a.json", "b.json", "--profile", "kirin990", "-o", "r"])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [(r["model"], r["bench"]) for r in rep["rows"]] == [("m", "a.json"), ("m", "b.json")]
    assert rep["summary"][0]["variants"] == 1
