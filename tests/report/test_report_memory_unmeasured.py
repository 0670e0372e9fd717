"""A bench JSON whose rows carry no peak_rss_bytes (the schema lets it be absent or null), reported against a
profile with a memory budget (kirin990: 300 MB): the row was PASS with the memory budget silently skipped and
a peak memory of 0.0 MB in report.json. Now the memory budget is not judged, the row is never PASS and its
peak memory is null."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploytool.cli import main


@pytest.mark.parametrize("drop", ["absent", "null"])
def test_a_memory_budget_nobody_measured_is_not_judged(tmp_path, drop):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    bench = tmp_path / "b.json"
    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), runs=2, warmup=1)), bench)
    data = json.loads(bench.read_text())
    for r in data["results"]:
        if drop == "absent":
            del r["peak_rss_bytes"]
        else:
            r["peak_rss_bytes"] = None
    bench.write_text(json.dumps(data))
    res = CliRunner().invoke(main, ["report", str(bench), "--profile", "kirin990", "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "1 rows (0 within budget) for kirin990" in res.output
    assert ("  kirin990: none judged: no peak memory in the bench results: memory budget not judged; no best fit"
            in res.output)
    row = json.loads((tmp_path / "r" / "report.json").read_text())["rows"][0]
    assert row["budget_pass"] is None and row["peak_memory_mb"] is None
    assert row["budget_why"].startswith("no peak memory in the bench results: memory budget not judged "
                                        "(budget 300 MB); projected ")
