"""The statistics behind every accuracy deploytool prints (numpy only, no scipy).

- **Wilson score interval** of a proportion k/n (Wilson 1927): with z = 1.96 for 95%,
  centre = (k + z²/2) / (n + z²), half-width = z·sqrt(k(n-k)/n + z²/4) / (n + z²). Unlike the
  normal ("Wald") interval it stays inside [0, 1] and keeps its coverage near 0% and 100%.
- **Exact McNemar test** of two classifiers evaluated on the same examples: only the discordant
  examples count, b (A right, B wrong) and c (A wrong, B right). Under "same accuracy" each
  discordant example goes either way with probability 1/2, so the two-sided p-value is
  min(1, 2·P[Binomial(b + c, 1/2) <= min(b, c)]). It is the exact sign test on the paired
  differences, which is what :func:`sign_test` computes for any paired scores (e.g. per-query
  recall@10 of two embedding models): ties drop out, the signs are counted.
- **Mean interval** of per-example scores in [0, 1] (per-query recall@10): mean ± z·s/sqrt(n),
  clipped to [0, 1] (the central limit theorem over the examples, which are independent where the
  pairs inside one example are not).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Z95", "wilson_interval", "mcnemar_exact", "sign_test", "mean_interval", "ALPHA"]

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
ALPHA = 0.05  # a difference with p >= ALPHA is reported as a tie


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials, as fractions in [0, 1]."""
    k, n = int(k), int(n)
    if n <= 0:
        return (float("nan"), float("nan"))
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n] (got k={k}, n={n})")
    z2 = z * z
    denom = n + z2
    centre = (k + z2 / 2) / denom
    half = z * math.sqrt(k * (n - k) / n + z2 / 4) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _binom_cdf_half(k: int, n: int) -> float:
    """P[Binomial(n, 1/2) <= k], summed in log space (exact for the n of an evaluation split)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    m = max(logs)
    return math.exp(m + math.log(sum(math.exp(v - m) for v in logs)) - n * math.log(2))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0 (got {b}, {c})")
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * _binom_cdf_half(min(b, c), n))


def sign_test(a, b) -> tuple[float, int, int]:
    """Exact two-sided sign test of paired scores: (p, #a better, #b better). For 0/1 correctness
    vectors this is the exact McNemar test."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same shape (got {a.shape} and {b.shape})")
    better = int((a > b).sum())
    worse = int((a < b).sum())
    return mcnemar_exact(better, worse), better, worse


def mean_interval(scores, z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high) of per-example scores in [0, 1]: mean ± z·s/sqrt(n), clipped to [0, 1]."""
    x = np.asarray(scores, dtype=np.float64)
    n = x.size
    if n == 0:
        return (float("nan"),) * 3
    m = float(x.mean())
    if n == 1:
        return (m, 0.0, 1.0)
    half = z * float(x.std(ddof=1)) / math.sqrt(n)
    return (m, max(0.0, m - half), min(1.0, m + half))
