"""A bench JSON whose rows carry no model_bytes (the validator lets it be absent or null), reported against a
profile with a size budget: the row showed a size of 0.0 MB and was PASS with the size budget silently skipped.
Now the size is the file's on disk where the file is there, and where it is not the size budget is not judged,
the row is never PASS and its size is null."""

from __future__ import annotations

import json
import re
import os

import pytest
import yaml
from click.testing import CliRunner

from deploytool.cli import main


def _size_only_profile(folder):
    """kirin990 with the CPU EP only (the size is the file's, no .ort) and a size budget only (no latency budget,
    no memory budget: the size decides alone)."""
    from deploytool.profiles import load_profile

    data = yaml.safe_load(open(load_profile("kirin990").path))
    data["name"] = "size-only"
    data["execution_providers"] = ["CPU"]
    data["budgets"] = {"model_size_mb": 60}
    folder.mkdir()
    (folder / "size-only.yaml").write_text(yaml.safe_dump(data))
    return folder


@pytest.mark.parametrize("drop", ["absent", "null"])
@pytest.mark.parametrize("file_there", [True, False])
def test_a_size_nobody_recorded_is_weighed_or_not_judged(tmp_path, drop, file_there):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    bench = tmp_path / "b.json"
    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), runs=2, warmup=1)), bench)
    data = json.loads(bench.read_text())
    on_disk = os.path.getsize(model)
    assert data["results"][0]["model_bytes"] == on_disk  # (what the bench records where it is not dropped)
    for r in data["results"]:
        if drop == "absent":
            del r["model_bytes"]
        else:
            r["model_bytes"] = None
    bench.write_text(json.dumps(data))
    if not file_there:
        os.remove(model)
    profiles = _size_only_profile(tmp_path / "profiles")
    res = CliRunner().invoke(main, ["report", str(bench), "--profile", "size-only", "--profiles-dir", str(profiles),
                                    "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    row = json.loads((tmp_path / "r" / "report.json").read_text())["rows"][0]
    if file_there:  # weighed on disk, as the bench would have
        assert row["size_mb"] > 0 and row["size_mb"] == pytest.approx(on_disk / 1e6, abs=1e-3)  # (rounded)
        assert row["budget_pass"] is True
        shown = float(re.fullmatch(r"size (\d+(?:\.\d+)?) MB <= 60 MB", row["budget_why"]).group(1))
        assert shown == pytest.approx(on_disk / 1e6, rel=0.05), row["budget_why"]  # (a tiny file: not "0.0 MB")
    else:  # nothing to weigh: not judged, never PASS on a size of 0
        assert row["size_mb"] is None
        assert row["budget_pass"] is None
        assert row["budget_why"] == ("no model size in the bench results and no file to weigh: size budget not "
                                     "judged (budget 60 MB)")
        assert "1 rows (0 within budget) for size-only" in res.output
        assert "size-only: none judged: no model size in the bench results and no file to weigh" in res.output
