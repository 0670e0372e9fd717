"""deploytool's temporary folders: each is made here and removed where it was made (a ``with`` block, a
``finally``), and this module keeps the list of those not removed yet, so that none stays behind where that
removal did not happen or did not finish.

That is: a second signal that interrupts the removal the first one's unwinding started, and a signal that
reaches the command's process while the interpreter exits (``deploytool.cli._supervise`` then ends the process
at once with ``os._exit``, which skips what the exit had left to do: atexit callbacks, weakref finalizers).
The program calls :func:`remove_left` as its command ends and on that early exit.

The list belongs to the process (like ``tempfile``'s own bookkeeping): a process forked from it (the
verification gate's copy, a data loader) starts with an empty one, so it never removes its parent's folders.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

__all__ = ["mkdtemp", "remove", "remove_left", "temporary_directory"]

# path -> None, in the order they were made
_LIVE: dict[str, None] = {}
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_LIVE.clear)


def mkdtemp(prefix: str = "deploytool-", dir: str | os.PathLike | None = None) -> str:
    """``tempfile.mkdtemp``, listed until :func:`remove` removes it."""
    path = tempfile.mkdtemp(prefix=prefix, dir=dir)
    _LIVE[path] = None
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
