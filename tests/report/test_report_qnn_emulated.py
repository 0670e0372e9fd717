"""A bench JSON from before bench left QNN out on x86 records QNN as the provider that ran on an x86 host: it
timed Qualcomm's x86 HTP emulator. The report said 'ran QNN', took its timings as this CPU's MEASURED latency
(x86-host) and judged them against the budgets of a profile that runs QNN. Now such a row is not timed (p50/p90
null), never MEASURED, says the emulator ran, is not judged against the QNN profile's budgets, and the command
warns. A CPU profile still gets the model's projection."""

from __future__ import annotations

import json
import platform

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.profiles import BUILTIN_PROFILE_DIR

NOTE = ("QNN ran on Qualcomm's x86 HTP emulator (a bench from before bench left QNN out on x86): its timings are "
        "the emulator's, not the device's nor this CPU's")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-host must match the bench")
def test_an_old_bench_of_the_qnn_emulator_is_not_a_measurement(tmp_path):
    from deploytool.bench import BenchConfig, run_benchmark, write_json
    from deploytool.testing.bench_models import encoder_like

    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    bench = tmp_path / "b.json"
    write_json(run_benchmark(BenchConfig(models=(model,), seq_lens=(8,), runs=2, warmup=1)), bench)
    data = json.loads(bench.read_text())
    assert data["host"]["arch"] == "x86_64"
    for r in data["results"]:  # as an old bench wrote it: QNN first, nothing skipped
        r["providers"], r["providers_skipped"] = ["QNNExecutionProvider", "CPUExecutionProvider"], []
    bench.write_text(json.dumps(data))
    text = (BUILTIN_PROFILE_DIR / "snapdragon-sm8650.yaml").read_text()
    text = text.replace("name: snapdragon-sm8650", "name: sdqnn").replace("  - {name: XNNPACK",
                                                                          "  - QNN\n  - {name: XNNPACK", 1)
    (tmp_path / "sdqnn.yaml").write_text(text)
    res = CliRunner().invoke(main, ["report", str(bench), "--profile", "x86-host", "--profile",
                                    str(tmp_path / "sdqnn.yaml"), "-o", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (f"warning: m: {NOTE}; shown as not timed, never MEASURED, not judged against the NPU budgets of "
            "sdqnn; bench again (QNN on the device, or the CPU EPs here)") in res.output
    rows = {r["device"]: r for r in json.loads((tmp_path / "r" / "report.json").read_text())["rows"]}
    host, npu = rows["x86-host"], rows["sdqnn"]
    for r in (host, npu):
        assert r["ep_ran"] == "QNN (x86 HTP emulator)" and r["ep_note"] == NOTE
        assert r["p50_ms"] is None and r["p90_ms"] is None and r["status"] != "MEASURED"
        assert r["match_why"] == NOTE
    assert host["status"] == "PROJECTED" and host["device_latency_source"] == "projected"
    assert host["budget_why"].startswith(f"{NOTE}; projected ")
    assert npu["budget_pass"] is None and npu["device_latency_ms"] is None
    assert npu["budget_why"] == f"{NOTE}: not judged against sdqnn's budgets"
