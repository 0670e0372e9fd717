"""The runtime layer called from a program: its logging and warning filters are left as they were."""

from __future__ import annotations

import subprocess
import sys

_CHECK = r"""
import logging, sys
from pathlib import Path
from deploytool.runtime.mobile import convert_to_ort
out = Path(sys.argv[2])
out.mkdir()
convert_to_ort(Path(sys.argv[1]), [], out, style="fixed")
print(len(logging.getLogger().handlers), (out / "model.ort").is_file())
"""


def test_converting_to_the_ort_format_configures_no_root_logger(tiny_onnx, tmp_path):
    """onnxruntime.tools' converter runs logging.basicConfig() as it is imported: a bundle made from a program left
    its root logger with a handler (the program's own basicConfig() after it did nothing)."""
    src = tiny_onnx("bert", "torch", layers=2)
    p = subprocess.run([sys.executable, "-c", _CHECK, str(src), str(tmp_path / "ort")], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["0", "True"]


def test_overlapping_gates_leave_the_warning_filters(tiny_onnx, monkeypatch):
    """The gate's fork runs inside catch_warnings(), which saves and restores the process's warning filters: two
    passes in two threads whose forks overlapped (the first to enter leaving first) left its 'ignore
    DeprecationWarning' in the filters for good. The fork is made to fail here (the gate then checks in this
    process) after the two threads have met inside, where they could."""
    import threading
    import time
    import warnings

    from deploytool.runtime import verify
    from deploytool.testing.tiny import fixed_inputs

    if not hasattr(verify.os, "fork") or not verify.fork_is_safe():
        import pytest

        pytest.skip("the gate forks on Linux only")
    model = str(tiny_onnx("bert", "torch", layers=2))
    met = threading.Barrier(2, timeout=1.0)
    order: list[str] = []

    def fork():
        order.append(threading.current_thread().name)
        try:
            met.wait()
        except threading.BrokenBarrierError:  # one at a time: nobody to meet
            pass
        if order.index(threading.current_thread().name) == 1:
            time.sleep(0.2)  # the second to enter leaves last
        raise OSError("no fork here")

    monkeypatch.setattr(verify.os, "fork", fork)
    monkeypatch.delenv("DEPLOYTOOL_NO_FORK", raising=False)
    before = list(warnings.filters)
    errors: list[BaseException] = []

    def gate():
        try:
            verify.verify_model_guarded(model, fixed_inputs())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=gate, name=f"gate{i}") for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert warnings.filters == before



def test_int8_through_ort_prints_nothing(tmp_path, capsys):
    """ORT's OnnxModel prints "failed in shape inference <class 'AssertionError'>" to stdout where its symbolic shape
    inference gives up (a JinaBERT export with QK norm, which the int8 pass hands to ORT's optimizer): `quantize
    --int8` of such a file began its output with that line."""
    from deploytool.passes import transform
    from deploytool.passes.quantize_int8 import Int8Config
    from deploytool.testing import conformance as C

    src = C.export(C.MODEL_BY_NAME["jina-bert-qknorm"], "torchscript-17", tmp_path)
    capsys.readouterr()
    transform(src, tmp_path / "int8.onnx", Int8Config())
    assert (tmp_path / "int8.onnx").is_file()
    assert "failed in shape inference" not in capsys.readouterr().out
