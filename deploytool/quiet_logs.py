"""Other libraries' log records kept quiet while deploytool calls them, leaving logging's configuration as it was.

deploytool is also used from a user's program, whose logging set-up is the user's: a call must not leave the root
logger with a handler (ONNX Runtime's quantizer logs through ``logging.warning``, which runs ``basicConfig()`` on a
root logger without handlers: the user's own ``basicConfig(level=INFO)`` after it did nothing), nor a library's
logger at another level. Saving a level and restoring it is not enough when two threads do it at once: the second
saves the first's temporary level and restores that one last.

:func:`quiet_logs` adds a filter of its own to each named logger (and, with ``root=True``, a handler of its own to
the root logger, so that ``logging.warning`` finds one): it drops the records below ``below`` that the calling
thread logs on those loggers, and is removed on exit. Other threads' records pass. A filter on a logger sees the
records logged on that very logger, not its children's: name the loggers the records are logged on.

:func:`held_level` is for a logger whose children log (transformers' ``transformers.*``): the level is set by the
first holder and restored by the last, under a lock, so overlapping holders in several threads restore the level
the first found. :func:`held_stdout` sends what the calling thread prints elsewhere, other threads' prints
unchanged, and puts ``sys.stdout`` back with the last holder (``contextlib.redirect_stdout`` took every thread's
prints meanwhile, and in two threads at once left ``sys.stdout`` a StringIO for good: every later ``print`` of the
program went nowhere).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import threading
from collections.abc import Iterable, Iterator

__all__ = ["held_level", "held_stdout", "quiet_logs"]


class _ThreadQuiet(logging.Filter):
    def __init__(self, thread: int, below: int) -> None:
        super().__init__()
        self.thread, self.below = thread, below

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread or record.levelno >= self.below


@contextlib.contextmanager
def quiet_logs(names: Iterable[str] = (), *, root: bool = False, below: int = logging.ERROR) -> Iterator[None]:
    """While the block runs, records below ``below`` logged by this thread on the loggers ``names`` (and on the
    root logger with ``root=True``) are dropped; nothing of logging's configuration changes for good."""
    quiet = _ThreadQuiet(threading.get_ident(), below)
    loggers = [logging.getLogger(n) for n in dict.fromkeys(names)]
    if root:
        loggers.append(logging.getLogger())
    guard = logging.NullHandler()  # the root logger has a handler: logging.warning() runs no basicConfig()
    for lg in loggers:
        lg.addFilter(quiet)
    if root:
        logging.getLogger().addHandler(guard)
    try:
        yield
    finally:
        if root:
            logging.getLogger().removeHandler(guard)
        for lg in loggers:
            lg.removeFilter(quiet)


_HELD_LOCK = threading.Lock()
_HELD: dict[str, list] = {}  # logger name -> [holders, level found by the first] (a process-wide resource)


@contextlib.contextmanager
def held_level(name: str, level: int) -> Iterator[None]:
    """The logger ``name`` at ``level`` while the block runs (for every thread); its own level again once the
    last overlapping holder is done."""
    lg = logging.getLogger(name)
    with _HELD_LOCK:
        held = _HELD.setdefault(name, [0, lg.level])
        if held[0] == 0:
            held[1] = lg.level
        held[0] += 1
        lg.setLevel(level)
    try:
        yield
    finally:
        with _HELD_LOCK:
            held[0] -= 1
            if held[0] == 0:
                lg.setLevel(held[1])
                del _HELD[name]


class _ThreadStdout(io.TextIOBase):
    """``sys.stdout`` while held: what a holding thread writes goes to its own target, every other thread's to the
    stream that was ``sys.stdout`` before."""

    def __init__(self, original) -> None:
        super().__init__()
        self.original = original
        self.targets: dict[int, io.TextIOBase] = {}

    def _stream(self):
        return self.targets.get(threading.get_ident(), self.original)

    def write(self, text: str) -> int:
        return self._stream().write(text)

    def flush(self) -> None:
        self._stream().flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str):  # encoding, fileno, isatty, buffer ...: the original stream's
        return getattr(self.original, name)


_STDOUT: list = [0, None]  # [holders, the _ThreadStdout installed by the first]


@contextlib.contextmanager
def held_stdout(target: io.TextIOBase | None = None) -> Iterator[None]:
    """What this thread prints to ``sys.stdout`` goes to ``target`` (None: dropped) while the block runs; other
    threads print as before. The ``sys.stdout`` the first overlapping holder found is put back by the last."""
    me = threading.get_ident()
    with _HELD_LOCK:
        if _STDOUT[0] == 0:
            _STDOUT[1] = _ThreadStdout(sys.stdout)
            sys.stdout = _STDOUT[1]
        _STDOUT[0] += 1
        proxy = _STDOUT[1]
        previous = proxy.targets.get(me)
        proxy.targets[me] = target if target is not None else io.StringIO()
    try:
        yield
    finally:
        with _HELD_LOCK:
            if previous is None:
                proxy.targets.pop(me, None)
            else:
                proxy.targets[me] = previous
            _STDOUT[0] -= 1
            if _STDOUT[0] == 0:
                if sys.stdout is proxy:
                    sys.stdout = proxy.original
                _STDOUT[1] = None
