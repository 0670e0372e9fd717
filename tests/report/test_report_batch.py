"""The report projects each row at the batch size its bench ran: a bench at --batch-size 8 measures eight
sequences per run, and its projection (device column, host cost-model column, the error band) must cost eight."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploytool.cli import main


def _bench(model, batch, out):
    from deploytool.bench import BenchConfig, run_benchmark, write_json

    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), batch=batch, runs=5, warmup=1)), out)
    return out


def test_report_projects_at_the_benchmarked_batch(tiny_onnx, tmp_path):
    model = tiny_onnx("bert")
    b1, b8 = _bench(model, 1, tmp_path / "b1.json"), _bench(model, 8, tmp_path / "b8.json")
    projected = {}
    for name, bench in (("b1", b1), ("b8", b8)):
        r = CliRunner().invoke(main, ["report", str(bench), "--profile", "kirin990", "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        (row,) = json.loads((tmp_path / name / "report.json").read_text())["rows"]
        projected[name] = row["projected_ms"]
    # was equal: every row projected at batch 1. How much more eight sequences cost depends on this host's measured
    # efficiencies (the cost model's fixed per-run overhead weighs heavily on a tiny model), so only the order is
    # asserted (a 2x bound failed on a loaded CI machine: 0.065 vs 0.102 ms)
    assert projected["b8"] > 1.2 * projected["b1"], projected


def test_report_refuses_a_corrupt_batch(tiny_onnx, tmp_path):
    bench = _bench(tiny_onnx("bert"), 1, tmp_path / "b.json")
    data = json.loads(bench.read_text())
    data["results"][0]["batch"] = "8"
    bench.write_text(json.dumps(data))
    r = CliRunner().invoke(main, ["report", str(bench), "--profile", "kirin990", "-o", str(tmp_path / "r")])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1] == (f"error: {bench}: corrupt bench result: results[0].batch must be an "
                                                 "integer >= 1, got '8'")
    assert not (tmp_path / "r").exists()
