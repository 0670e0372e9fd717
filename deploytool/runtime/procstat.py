"""This process's resident memory from ``/proc/self/status`` (stdlib only: the gate's worker imports it).

``peak_rss_bytes`` is VmHWM, not ``ru_maxrss``, which Linux carries over from the parent across exec.
Both return 0 where ``/proc`` is missing. :func:`release_free_memory` hands freed heap pages back.
"""

from __future__ import annotations

__all__ = ["peak_rss_bytes", "release_free_memory", "rss_bytes"]


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


def release_free_memory(*, collect: bool = False) -> None:
    """Hand freed heap pages back to the OS (glibc), so the next big allocation does not add to RSS;
    ``collect``: run a full garbage collection first (objects in reference cycles hold their memory until one)."""
    import ctypes
    import ctypes.util

    if collect:
        import gc

        gc.collect()
    try:
        name = ctypes.util.find_library("c")
        if name:
            ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass
