"""A profile that lists QNN, benchmarked on x86: ONNX Runtime's QNN plugin runs there on Qualcomm's HTP
emulator, whose timings are no device latency (deploytool/qnn says so: coverage and numerics only). A bench
(and so fit, which measures through it) skips QNN there with that reason and falls back in the profile's order."""

from __future__ import annotations

import importlib.util
import json
import platform

import pytest
from click.testing import CliRunner

from deploytool.cli import main
from deploytool.profiles import BUILTIN_PROFILE_DIR
from deploytool.runtime.session import build_session
from deploytool.runtime.spec import SessionSpec
from deploytool.testing.bench_models import encoder_like

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("onnxruntime_qnn") is None, reason="onnxruntime-qnn not installed"),
    pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the HTP emulator is x86's"),
]

REASON = ("on x86 the QNN HTP backend is Qualcomm's emulator: its timings are no device latency "
          "(deploytool qnn check runs it for coverage and numerics)")


def test_bench_skips_qnn_on_x86_with_the_reason(tmp_path):
    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    text = (BUILTIN_PROFILE_DIR / "snapdragon-sm8650.yaml").read_text()
    assert "  - {name: XNNPACK" in text
    text = text.replace("name: snapdragon-sm8650", "name: sdqnn").replace("  - {name: XNNPACK", "  - QNN\n  - {name: XNNPACK", 1)
    (tmp_path / "sdqnn.yaml").write_text(text)
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", str(model), "--seq-len", "8", "--runs", "2", "--warmup", "1",
                                    "--threads", "1", "-q", "--force", "--profile", str(tmp_path / "sdqnn.yaml"),
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    row = json.loads(out.read_text())["results"][0]
    assert row["providers"] == ["CPUExecutionProvider"]
    assert row["providers_skipped"][0] == {"provider": "QNNExecutionProvider", "reason": REASON}
    assert f"note: QNNExecutionProvider skipped: {REASON}" in res.output


def test_an_untimed_session_still_runs_qnn(tmp_path):
    """qnn check needs the emulator: only a benchmark's session leaves it out."""
    model = encoder_like(tmp_path / "m.onnx", vocab=50, hidden=16, layers=1)
    _, info = build_session(model, SessionSpec(providers=["qnn", "cpu"]))
    assert info.providers[0] == "QNNExecutionProvider"
    _, info = build_session(model, SessionSpec(providers=["qnn", "cpu"]), timing=True)
    assert info.providers == ("CPUExecutionProvider",) and info.skipped == (("QNNExecutionProvider", REASON),)
