"""A Ctrl-C (SIGINT) that arrives just after a temporary output file is made: the file was created before the
cleanup that removes it was armed, and stayed beside the output. The signal now waits until the cleanup is armed."""

from __future__ import annotations

import os
import signal
import tempfile

import pytest

from deploytool import onnx_io


@pytest.fixture
def sigint_as_keyboardinterrupt():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_a_signal_right_after_mkstemp_leaves_nothing(tmp_path, monkeypatch, sigint_as_keyboardinterrupt):
    real = tempfile.mkstemp

    def mkstemp_then_ctrl_c(*a, **kw):
        made = real(*a, **kw)
        os.kill(os.getpid(), signal.SIGINT)  # a real signal, as a user's Ctrl-C, the moment the file exists
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        with onnx_io.atomic_write(tmp_path / "out.json") as f:
            f.write("{}")
    assert list(tmp_path.iterdir()) == []


def test_held_signals_wait_and_then_arrive(sigint_as_keyboardinterrupt):
    held = onnx_io.hold_signals()
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        onnx_io.release_signals(held)
        for _ in range(1000):  # the handler runs at the next bytecode boundary
            pass
