"""Ternary (TWN, as in TernaryBERT) and binary (BWN, as in BinaryBERT) weight quantizers.

Weights are in the PyTorch layout ``[rows, cols]`` = ``[out_features, in_features]`` (embeddings:
``[vocab, hidden]``); "row" granularity means one scale per row (per output feature, per token).

Ternary (Li & Liu 2016, TWN; Zhang et al. 2020, TernaryBERT)::

    delta = 0.7 * mean(|W|)                       # over the whole matrix ("layer") or one row ("row")
    t     = sign(W) where |W| > delta, else 0     # t in {-1, 0, 1}
    alpha = mean(|W| over the entries with |W| > delta)   (0 where no entry exceeds delta)
    W_t   = alpha * t

Binary (Rastegari et al. 2016, BWN; Bai et al. 2021, BinaryBERT)::

    s     = sign(W) with sign(0) = +1             # s in {-1, 1}
    alpha = mean(|W|)                             # per matrix or per row
    W_b   = alpha * s

int8 rows (embeddings ``--embeddings int8``): symmetric, ``scale = max|row| / 127``,
``q = round(W / scale)`` clipped to [-127, 127].

All functions return the integer codes (int8) and float32 scales; ``alpha`` has shape ``()`` for
"layer" and ``[rows]`` for "row". :func:`dequantize` gives ``alpha * codes`` (broadcast per row).
"""

from __future__ import annotations

import enum

import numpy as np

from deploytool.errors import ConfigError


class Granularity(str, enum.Enum):
    """How many scales a weight matrix gets: one ("layer") or one per row ("row")."""

    LAYER = "layer"
    ROW = "row"


def _granularity(g: Granularity | str) -> Granularity:
    try:
        return Granularity(g)
    except ValueError:
        raise ConfigError(f"granularity: expected one of {[x.value for x in Granularity]}, got {g!r}") from None


def _as_matrix(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2:
        raise ConfigError(f"weight: expected a 2-D matrix, got shape {list(w.shape)}")
    return w


def ternarize(w: np.ndarray, granularity: Granularity | str = "layer") -> tuple[np.ndarray, np.ndarray]:
    """TWN ternary quantization: returns ``(t in {-1,0,1} as int8, alpha float32)``."""
    g = _granularity(granularity)
    w = _as_matrix(w)
    a = np.abs(w)
    keep = (None, None) if g is Granularity.LAYER else (1, True)
    axis, keepdims = keep
    delta = 0.7 * a.mean(axis=axis, keepdims=bool(keepdims))
    mask = a > delta
    t = (np.sign(w) * mask).astype(np.int8)
    count = mask.sum(axis=axis, keepdims=bool(keepdims))
    total = (a * mask).sum(axis=axis, keepdims=bool(keepdims), dtype=np.float64)
    alpha = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    if g is Granularity.ROW:
        alpha = alpha.reshape(-1)
    return t, np.asarray(alpha, dtype=np.float32)


def binarize(w: np.ndarray, granularity: Granularity | str = "layer") -> tuple[np.ndarray, np.ndarray]:
    """BWN binary quantization: returns ``(s in {-1,1} as int8, alpha float32)``."""
    g = _granularity(granularity)
    w = _as_matrix(w)
    s = np.where(w >= 0, 1, -1).astype(np.int8)
    if g is Granularity.LAYER:
        alpha = np.asarray(np.abs(w).mean(dtype=np.float64), dtype=np.float32)
    else:
        alpha = np.abs(w).mean(axis=1, dtype=np.float64).astype(np.float32)
    return s, alpha


def quantize_int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: returns ``(q int8 in [-127,127], scale float32 [rows])``."""
    w = _as_matrix(w)
    scale = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize(codes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``alpha * codes`` as float32 (alpha a scalar or one value per row)."""
    alpha = np.asarray(alpha, dtype=np.float32)
    c = np.asarray(codes).astype(np.float32)
    return (c * (alpha if alpha.ndim == 0 else alpha[:, None])).astype(np.float32)
