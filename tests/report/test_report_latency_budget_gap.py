"""A bench length past the longest p90 budget of a profile that sets latency budgets (kirin990: seq 8, 32,
128; bench at seq 8 and 150): the seq-150 rows were PASS on memory and size alone, "1 of 1 variants fit",
while fit refuses that length ("no p90 latency budget for seq 150"). They are not judged now, with a warning."""

from __future__ import annotations

import json

from click.testing import CliRunner

from deploytool.cli import main
from deploytool.profiles import BUILTIN_PROFILE_DIR


def test_rows_past_the_longest_latency_budget_are_not_judged(tmp_path):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    bench = tmp_path / "b.json"
    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8, 150), runs=2, warmup=1)), bench)
    assert "p90_latency_ms: {8: 10, 32: 20, 128: 60}" in (BUILTIN_PROFILE_DIR / "kirin990.yaml").read_text()
    res = CliRunner().invoke(main, ["report", str(bench), "--profile", "kirin990", "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert ("warning: kirin990 has no p90 latency budget at seq 150 (its longest: seq 128): those rows are not "
            "judged") in res.output
    assert "2 rows (1 within budget) for kirin990" in res.output
    rows = {r["seq_len"]: r for r in json.loads((tmp_path / "r" / "report.json").read_text())["rows"]}
    assert rows[8]["budget_pass"] is True
    assert rows[150]["budget_pass"] is None
    assert rows[150]["budget_why"].startswith("no p90 latency budget at this sequence length: not judged (the "
                                              "profile's longest: seq 128); peak memory ")
