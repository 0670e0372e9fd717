"""deploytool's temporary folders: each is made here and removed where it was made (a ``with`` block, a
``finally``), and this module keeps the list of those not removed yet, so that none stays behind where that
removal did not happen or did not finish.

That is: a second signal that interrupts the removal the first one's unwinding started, and a signal that
reaches the command's process while the interpreter exits (``deploytool.cli._supervise`` then ends the process
at once with ``os._exit``, which skips what the exit had left to do: atexit callbacks, weakref finalizers).
The program calls :func:`remove_left` as its command ends and on that early exit.

The list belongs to the process (like ``tempfile``'s own bookkeeping): a process forked from it (the
verification gate's copy, a data loader) starts with an empty one, so it never removes its parent's folders.

What no exit of the process itself can remove, because the process is killed outright (SIGKILL: the OOM killer;
a crash in native code), the ``deploytool`` program removes after it: its command's process notes every
temporary path it makes (these folders, and the hidden files and folders beside an output that
:mod:`deploytool.onnx_io` writes and renames) in a journal the program opened (:func:`keep_journal`), and the
program removes what is still there once the process has ended (:func:`remove_journaled`). Each name is new (made
by ``mkstemp``/``mkdtemp``), so nothing else can stand at it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from typing import Iterator

__all__ = ["keep_journal", "made", "mkdtemp", "remove", "remove_journaled", "remove_left", "temporary_directory"]

# path -> None, in the order they were made
_LIVE: dict[str, None] = {}
# the journal's file descriptor (keep_journal), in the command's process only; one writer at a time
_JOURNAL: list[int] = []
_JOURNAL_LOCK = threading.Lock()


def _forked() -> None:
    _LIVE.clear()
    _JOURNAL.clear()  # a copy's paths are its own to remove (the gate's copy makes none of a command's outputs)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def keep_journal(fd: int) -> None:
    """Note every temporary path :func:`made` from now on in the file ``fd`` (opened by the ``deploytool`` program
    before it forked this process: it reads it with :func:`remove_journaled` once this process has ended)."""
    _JOURNAL[:] = [fd]


def made(path: str | os.PathLike) -> None:
    """Note that this process made the temporary file or folder ``path`` (a new name), for :func:`remove_journaled`
    should the process be killed before it removes or renames it; nothing without a journal (a library caller)."""
    if not _JOURNAL:
        return
    entry = os.fsencode(os.path.abspath(path)) + b"\0"  # no path holds a NUL
    with _JOURNAL_LOCK, contextlib.suppress(OSError):  # a full disk: the journal is a help, not the work
        os.write(_JOURNAL[0], entry)


def remove_journaled(fd: int) -> list[str]:
    """Remove each path the journal ``fd`` lists that is still there (a file, or a folder with what it holds):
    what a killed command left; a finished one renamed or removed them all. Returns the paths removed."""
    import stat

    try:
        data = os.pread(fd, os.fstat(fd).st_size, 0)
    except OSError:
        return []
    removed = []
    for raw in data.split(b"\0"):
        if not raw:
            continue
        path = os.fsdecode(raw)
        try:
            st = os.lstat(path)
        except OSError:  # renamed onto its output, or removed: done with
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(path)
    return removed


def mkdtemp(prefix: str = "deploytool-", dir: str | os.PathLike | None = None) -> str:
    """``tempfile.mkdtemp``, listed until :func:`remove` removes it."""
    path = tempfile.mkdtemp(prefix=prefix, dir=dir)
    _LIVE[path] = None
    made(path)
    return path


def remove(path: str | os.PathLike) -> None:
    """Remove a folder :func:`mkdtemp` made (what is gone already is no error); it stays listed until it is gone,
    so an interrupted removal is finished by :func:`remove_left`."""
    path = os.fspath(path)
    shutil.rmtree(path, ignore_errors=True)
    _LIVE.pop(path, None)


@contextlib.contextmanager
def temporary_directory(prefix: str = "deploytool-", dir: str | os.PathLike | None = None) -> Iterator[str]:
    """``tempfile.TemporaryDirectory`` as a ``with`` block: the folder's path, removed as the block ends."""
    path = mkdtemp(prefix, dir)
    try:
        yield path
    finally:
        remove(path)


def remove_left(_live: dict = _LIVE, _rmtree=shutil.rmtree) -> None:
    """Remove every folder still listed. Safe to call at any time of an exit: what it uses is bound here, as the
    module's globals may already be cleared when a signal comes at the very end."""
    for path in list(_live):
        _rmtree(path, ignore_errors=True)
        _live.pop(path, None)
