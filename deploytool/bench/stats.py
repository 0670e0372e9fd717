"""Latency statistics (numpy only)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = ["LatencyStats", "summarize", "paired_ratio"]


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Latency of ``n`` runs in milliseconds. Percentiles use numpy's linear interpolation."""

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in dataclasses.asdict(self).items()}


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Summary of latency samples (ms). ``std`` is the sample standard deviation (ddof=1)."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError("summarize needs a non-empty 1-D sequence of latencies")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return LatencyStats(
        n=int(a.size),
        mean_ms=float(a.mean()),
        std_ms=float(a.std(ddof=1)) if a.size > 1 else 0.0,
        min_ms=float(a.min()),
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        max_ms=float(a.max()),
    )


def paired_ratio(samples_ms: Sequence[float], reference_ms: Sequence[float]) -> float:
    """Median of run-by-run latency ratios against a reference measured interleaved with it.

    Run i of each model ran back to back, so slow phases of a noisy machine hit both and cancel
    in the ratio.
    """
    a = np.asarray(samples_ms, dtype=np.float64)
    b = np.asarray(reference_ms, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError("paired_ratio needs two equally long, non-empty sample lists")
    return float(np.median(a / np.maximum(b, 1e-12)))
