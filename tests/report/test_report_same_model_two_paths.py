"""One model file benchmarked twice, at seq 8 with its absolute path and at seq 32 as 'm.onnx' from its folder (found
2026-12-07): rows, variants and plots are keyed by the model's path, so the report showed two variants of one file,
"2 of 2" fitting, two table rows, and the verdict read seq 8 as the longest. One variant with both lengths now."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploytool.cli import main


def test_one_file_named_two_ways_is_one_variant(tmp_path, monkeypatch):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), runs=2, warmup=1)), tmp_path / "a.json")
    monkeypatch.chdir(tmp_path)
    write_json(run_benchmark(BenchConfig(models=("m.onnx",), seq_lens=(32,), runs=2, warmup=1)), tmp_path / "b.json")
    named = [json.loads((tmp_path / f).read_text())["results"][0]["model"] for f in ("a.json", "b.json")]
    assert named == [str(model), "m.onnx"]  # the premise: two spellings of one file
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["report", "a.json", "b.json", "--profile", "kirin990", "-o", str(out)])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert [(r["seq_len"], r["model_path"]) for r in rep["rows"]] == [(8, str(model)), (32, str(model))]
    (dev,) = rep["summary"]
    assert (dev["variants"], dev["fitting"]) == (1, 1)
    assert sorted(dev["device_latency_ms"]) == ["32", "8"]
    md = (out / "report.md").read_text()
    assert len([line for line in md.splitlines() if line.startswith(("| m ", "| **★ m**"))]) == 1
