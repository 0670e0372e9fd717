"""This process's resident memory from ``/proc/self/status`` (stdlib only: the gate's worker imports it).

``peak_rss_bytes`` is VmHWM, not ``ru_maxrss``, which Linux carries over from the parent across exec.
Both return 0 where ``/proc`` is missing.
"""

from __future__ import annotations

__all__ = ["peak_rss_bytes", "rss_bytes"]


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
