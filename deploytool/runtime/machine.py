"""Is the machine busy? Load average, other runnable tasks and run-to-run spread (Linux ``/proc``).

A latency measured on a machine where other processes compete for the cores is slower and more
spread out than the same model alone, and nothing in the numbers says so. This module reads the
kernel's own counters, never guesses:

- ``/proc/loadavg``: the 1-minute load average (runnable + uninterruptible tasks, decayed).
- ``/proc/stat`` ``procs_running``: tasks runnable *right now*, system wide. Our own runnable
  tasks (this process, a benchmark worker's threads) are subtracted by reading their
  ``/proc/<pid>/task/<tid>/stat`` state, so what is left is *other* work.
- usable cores: ``sched_getaffinity`` and the cgroup CPU quota (v2 ``cpu.max``, v1
  ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), whichever is smaller.

``free cores = usable cores - (other runnable tasks, averaged over a short sampling window)``,
rounded down and at least 0. A benchmark at more threads than free cores measures contention.
Everything here is a snapshot with the time it was taken; nothing is cached.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["BusyThresholds", "LoadSample", "LoadMonitor", "busy_warnings", "cgroup_cpu_quota", "free_cores",
           "sample_load", "usable_cores", "wait_for_free_cores"]


def cgroup_cpu_quota(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPUs the cgroup quota allows (e.g. 1.5), or None when unlimited / unknown."""
    root = Path(root)
    try:
        text = (root / "cpu.max").read_text().split()  # cgroup v2: "max 100000" or "150000 100000"
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    for base in (root / "cpu", root / "cpu,cpuacct", root):
        try:
            quota = int((base / "cpu.cfs_quota_us").read_text())
            period = int((base / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def usable_cores() -> int:
    """Cores this process may run on: the affinity mask, capped by the cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota + 1e-9)))
    return max(1, n)


def _procs_running() -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("procs_running "):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _own_running(pids: Iterable[int]) -> int:
    """Runnable (state R) tasks of the given processes, threads included."""
    n = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for t in tasks:
            try:
                stat = (t / "stat").read_text()
            except OSError:
                continue
            # "tid (comm) S ..." ; comm may hold spaces or parentheses: split after the last ')'
            state = stat[stat.rfind(")") + 2:stat.rfind(")") + 3]
            n += state == "R"
    return n


def _loadavg() -> tuple[float, float, float] | None:
    try:
        a, b, c = Path("/proc/loadavg").read_text().split()[:3]
        return float(a), float(b), float(c)
    except (OSError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class LoadSample:
    """One look at the machine: load averages, other runnable tasks (mean and max over the window)."""

    time_utc: str
    loadavg: tuple[float, float, float] | None
    other_runnable_mean: float | None
    other_runnable_max: int | None
    usable_cores: int
    samples: int

    @property
    def free_cores(self) -> int | None:
        return None if self.other_runnable_mean is None else free_cores(self.usable_cores, self.other_runnable_mean)

    def to_dict(self) -> dict[str, Any]:
        return {"time_utc": self.time_utc, "loadavg": list(self.loadavg) if self.loadavg else None,
                "other_runnable_mean": None if self.other_runnable_mean is None else round(self.other_runnable_mean, 3),
                "other_runnable_max": self.other_runnable_max, "usable_cores": self.usable_cores,
                "free_cores": self.free_cores, "samples": self.samples}


def free_cores(usable: int, other_runnable: float) -> int:
    """Cores left for us when ``other_runnable`` tasks (on average) want one each."""
    return max(0, int(math.floor(usable - other_runnable + 0.25)))  # 0.25: a task runnable 3/4 of the time counts


def _now() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _one(exclude: Sequence[int]) -> int | None:
    running = _procs_running()
    if running is None:
        return None
    return max(0, running - _own_running(exclude))


def sample_load(*, window_s: float = 0.5, samples: int = 10, exclude_pids: Sequence[int] = ()) -> LoadSample:
    """Sample other runnable tasks ``samples`` times over ``window_s`` seconds (our own pid excluded)."""
    exclude = (os.getpid(), *exclude_pids)
    seen: list[int] = []
    for i in range(max(1, samples)):
        v = _one(exclude)
        if v is not None:
            seen.append(v)
        if i + 1 < samples:
            time.sleep(window_s / max(1, samples - 1))
    return LoadSample(time_utc=_now(), loadavg=_loadavg(),
                      other_runnable_mean=(sum(seen) / len(seen)) if seen else None,
                      other_runnable_max=max(seen) if seen else None, usable_cores=usable_cores(), samples=len(seen))


class LoadMonitor:
    """Samples other runnable tasks in a background thread while a benchmark worker runs.

    ``exclude_pids`` is read at each sample (a callable), so the worker's pid can be added once it
    exists. Use as a context manager; :meth:`result` gives one :class:`LoadSample` for the window.
    """

    def __init__(self, interval_s: float = 0.2, exclude_pids=lambda: ()) -> None:
        self.interval_s = interval_s
        self.exclude_pids = exclude_pids
        self._seen: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="deploytool-load-monitor", daemon=True)
        self._t0 = ""

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            v = _one((os.getpid(), *self.exclude_pids()))
            if v is not None:
                self._seen.append(v)

    def __enter__(self) -> LoadMonitor:
        self._t0 = _now()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def result(self) -> LoadSample:
        seen = self._seen
        return LoadSample(time_utc=self._t0, loadavg=_loadavg(),
                          other_runnable_mean=(sum(seen) / len(seen)) if seen else None,
                          other_runnable_max=max(seen) if seen else None, usable_cores=usable_cores(),
                          samples=len(seen))


@dataclasses.dataclass(frozen=True)
class BusyThresholds:
    """When to call a machine busy. ``spread``: (p90 - p50) / p50 of one model's timed runs."""

    spread: float = 0.15

    def __post_init__(self) -> None:
        if isinstance(self.spread, bool) or not isinstance(self.spread, (int, float)) or not 0 < self.spread < 10:
            from deploytool.errors import ConfigError

            raise ConfigError(f"spread threshold: must be a number in (0, 10), got {self.spread!r}")


def busy_warnings(threads: int, before: LoadSample, during: LoadSample | None,
                  spreads: Sequence[tuple[str, int, float]], thresholds: BusyThresholds = BusyThresholds()) -> list[str]:
    """Plain-sentence warnings: threads above free cores before/during the run, large run-to-run spread.

    ``spreads``: (model name, seq_len, (p90 - p50) / p50) per result row.
    """
    out: list[str] = []
    for when, s in (("before", before), ("during", during)):
        if s is None or s.free_cores is None:
            continue
        if threads > s.free_cores:
            la = f", load average {s.loadavg[0]:.2f}" if s.loadavg else ""
            why = (" (a single thread is always measured: bench refuses only more threads than free cores)"
                   if when == "before" and threads <= max(1, s.free_cores) else "")
            out.append(f"busy machine {when} the benchmark: {s.other_runnable_mean:.1f} other runnable task(s) on "
                       f"{s.usable_cores} usable core(s){la}; {threads} thread(s) > {s.free_cores} free core(s): "
                       f"latencies include contention{why}")
    wide = [(n, q, v) for n, q, v in spreads if v > thresholds.spread]
    if wide:
        worst = max(wide, key=lambda x: x[2])
        out.append(f"run-to-run spread (p90-p50)/p50 above {thresholds.spread:.0%} in {len(wide)} of {len(spreads)} "
                   f"row(s) (worst {worst[0]} seq {worst[1]}: {worst[2]:.0%}): the machine was noisy")
    return out


def wait_for_free_cores(cores: int, *, timeout_s: float, poll_s: float = 2.0) -> tuple[LoadSample, float]:
    """Sample until ``cores`` cores are free or ``timeout_s`` passes; returns (last sample, seconds waited)."""
    t0 = time.monotonic()
    while True:
        s = sample_load()
        waited = time.monotonic() - t0
        if (s.free_cores is None or s.free_cores >= cores) or waited >= timeout_s:
            return s, waited
        time.sleep(poll_s)
