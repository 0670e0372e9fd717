"""The tests' child processes: signal dispositions to start them with, and whether one still runs."""

from __future__ import annotations

import signal
from pathlib import Path


def default_signals() -> None:
    """``Popen(preexec_fn=default_signals)``: SIGINT, SIGHUP and SIGTERM at their default action, as a shell gives
    a foreground command. A test run started in the background (``.ci/run &``, ``nohup``) hands its children
    SIGINT (and HUP) ignored, and deploytool keeps a signal ignored from the start ignored (as CPython does with
    SIGINT), so a test that sends one starts its program from the default."""
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (read from /proc, not from the code under test)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
