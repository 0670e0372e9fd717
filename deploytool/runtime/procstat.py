"""This process's resident memory from ``/proc/self/status`` (stdlib only: the gate's worker imports it).

``peak_rss_bytes`` is VmHWM, not ``ru_maxrss``, which Linux carries over from the parent across exec.
Both return 0 where ``/proc`` is missing, as does :func:`available_memory_bytes` (MemAvailable).
:func:`release_free_memory` hands freed heap pages back; :func:`mallopt` is glibc's, for the gate's heap settings.
"""

from __future__ import annotations

import functools

__all__ = ["available_memory_bytes", "mallopt", "peak_rss_bytes", "release_free_memory", "rss_bytes"]


def _status_kb(key: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes() -> int:
    """The peak resident set of this process so far (VmHWM)."""
    return _status_kb("VmHWM:")


def rss_bytes() -> int:
    """The resident set of this process now (VmRSS)."""
    return _status_kb("VmRSS:")


def available_memory_bytes() -> int:
    """MemAvailable of ``/proc/meminfo``: what the machine can hand out without swapping (0 where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def release_free_memory(*, collect: bool = False) -> None:
    """Hand freed heap pages back to the OS (glibc), so the next big allocation does not add to RSS;
    ``collect``: run a full garbage collection first (objects in reference cycles hold their memory until one)."""
    if collect:
        import gc

        gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once (``ctypes.util.find_library`` costs a few ms a call); None elsewhere."""
    import ctypes
    import ctypes.util

    try:
        name = ctypes.util.find_library("c")
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


@functools.cache
def mallopt():
    """glibc's ``mallopt(param, value)``, looked up once; None elsewhere (another C library)."""
    import ctypes

    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
