"""The numbers ``pack`` stores: codes and scales of a weight for each scheme (one plane, or two for
split-binary), of embedding rows and of fused QKV weights, their byte packing, and the fp32 values the
packed model computes with (the verification gate's reference)."""

from __future__ import annotations

from typing import Any

import numpy as np

from deploytool.passes.pack_config import PackConfig, WeightScheme
from deploytool.quant import packing
from deploytool.quant.quantizers import (
    Granularity,
    binarize,
    binarize_planes,
    dequantize,
    quantize_int8_rows,
    ternarize,
)

_UNPACK = {  # scheme -> (values per byte, divisors, modulus, multiplier, offset): code -> value
    "ternary2": (4, [1, 4, 16, 64], 4, 1, 2),
    "trit5": (5, [1, 3, 9, 27, 81], 3, 1, 1),
    "binary1": (8, [1, 2, 4, 8, 16, 32, 64, 128], 2, 2, 1),
}


_BITS = {"ternary2": 2.0, "trit5": 8 / 5, "binary1": 1.0, "int8": 8.0}


def _pack_codes(codes: np.ndarray, scheme: str) -> np.ndarray:
    """Pack along the last axis in chunks (rows, or runs of whole bytes of a flat array): the same bytes
    as one call, with the packers' int32 temporaries a few MB instead of several times the codes."""
    fn = {"ternary2": packing.pack_2bit, "trit5": packing.pack_trit5}.get(scheme, packing.pack_bits)
    if codes.ndim >= 2 and codes.shape[0] > _EMBEDDING_CHUNK_ROWS:
        return np.concatenate([fn(codes[i:i + _EMBEDDING_CHUNK_ROWS])
                               for i in range(0, codes.shape[0], _EMBEDDING_CHUNK_ROWS)])
    step = packing.PER_BYTE[scheme] * (1 << 20)
    if codes.ndim == 1 and codes.size > step:
        return np.concatenate([fn(codes[i:i + step]) for i in range(0, codes.size, step)])
    return fn(codes)


def _quantize(w_out_in: np.ndarray, config: PackConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes [P*N, K], alpha (scalar, or [P*N]) and the number of planes P of a [N, K] weight.

    split-binary stacks its two planes along N (rows of plane 1, then of plane 2), each row with its
    own scale; ternary and binary are one plane."""
    if config.weights is WeightScheme.SPLIT_BINARY:
        s1, s2, a1, a2, _ = binarize_planes(w_out_in, config.granularity)
        n = w_out_in.shape[0]
        alpha = np.concatenate([np.broadcast_to(a1, (n,)), np.broadcast_to(a2, (n,))]).astype(np.float32)
        if s1.flags.f_contiguous and not s1.flags.c_contiguous:
            # the W.T view of an [in, out] weight: its planes side by side in W's own layout, [K, 2N], one copy
            # of whole rows, seen as [2N, K] (the [K, N] kernels' B is then a plain view, not a transposing copy)
            return np.concatenate([s1.T, s2.T], 1).T, alpha, 2
        return np.concatenate([s1, s2], 0), alpha, 2
    fn = binarize if config.weights is WeightScheme.BINARY else ternarize
    codes, alpha = fn(w_out_in, config.granularity)
    return codes, alpha, 1


def _codes_and_alpha(target: Any, config: PackConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Codes in the PyTorch layout [P*N, K], alpha (scalar or [P*N]) and the planes P."""
    # np.asarray: a float32 weight is read where it lies (mapped from the input), not copied first; the
    # quantizers never write into their input
    from deploytool.quant.quantizers import naming_weight

    w = np.asarray(target.weight.const_value.numpy(), dtype=np.float32)
    with naming_weight(target.weight.name):
        return _quantize(w if target.layout == "out_in" else w.T, config)


def _planes_sum(deq: np.ndarray, planes: int) -> np.ndarray:
    """[P*N, K] dequantized planes -> [N, K], their sum."""
    return deq if planes == 1 else deq.reshape(planes, -1, deq.shape[1]).sum(axis=0, dtype=np.float32)


def fake_quantized_weight(target_weight: np.ndarray, layout: str, config: PackConfig) -> np.ndarray:
    """The fp32 weight the packed model computes with (same layout as the input weight)."""
    w_out_in = target_weight if layout == "out_in" else target_weight.T
    codes, alpha, planes = _quantize(w_out_in, config)
    if planes == 1 and layout != "out_in":  # alpha * codes written straight in the [in, out] layout
        a = np.asarray(alpha, dtype=np.float32)
        out = np.empty(codes.shape[::-1], dtype=np.float32)
        return np.multiply(codes.T, a if a.ndim == 0 else a[None, :], out=out, dtype=np.float32)
    deq = _planes_sum(dequantize(codes, alpha), planes)
    return deq if layout == "out_in" else deq.T.copy()


# rows of an embedding table quantized at once (each row has its own scale, so chunks give the same
# codes): bounds the float temporaries to a few MB instead of several copies of the table
_EMBEDDING_CHUNK_ROWS = 4096


def _embedding_codes(table: np.ndarray, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    if table.shape[0] > _EMBEDDING_CHUNK_ROWS:
        from deploytool.onnx_io import row_chunks

        parts = [_embedding_codes(part, scheme) for _, part in row_chunks(table, _EMBEDDING_CHUNK_ROWS)]
        return np.concatenate([c for c, _ in parts]), np.concatenate([a for _, a in parts])
    table = np.asarray(table, dtype=np.float32)
    if scheme == "int8":
        return quantize_int8_rows(table)
    if scheme == "binary1":
        return binarize(table, Granularity.ROW)
    if scheme == "binary1x2":  # codes [rows, 2H] = [s1 | s2], alpha [rows, 2]
        s1, s2, a1, a2, _ = binarize_planes(table, Granularity.ROW)
        return np.concatenate([s1, s2], 1), np.stack([a1, a2], 1).astype(np.float32)
    return ternarize(table, Granularity.ROW)


def _qkv_codes(arr: np.ndarray, config: PackConfig) -> tuple[np.ndarray, np.ndarray]:
    """Codes [3A, K] and per-column alpha [3A]: Q, K and V quantized as three matrices (as unfused)."""
    a = arr.shape[1] // 3
    codes, alphas = [], []
    for i in range(3):
        c, al, _ = _quantize(np.ascontiguousarray(arr[:, i * a:(i + 1) * a].T), config)
        codes.append(c)
        alphas.append(np.broadcast_to(al, (c.shape[0],)) if al.ndim == 0 else al)
    return np.concatenate(codes, 0), np.concatenate(alphas).astype(np.float32)


def _qkv_fake_quantized(arr: np.ndarray, config: PackConfig) -> np.ndarray:
    """The fp32 [K, 3A] QKV weight the packed Attention computes with."""
    deq = dequantize(*_qkv_codes(arr, config))  # [3 * P * A, K]
    planes = 2 if config.weights is WeightScheme.SPLIT_BINARY else 1
    if planes > 1:
        deq = deq.reshape(3, planes, -1, deq.shape[1]).sum(axis=1, dtype=np.float32).reshape(-1, deq.shape[1])
    return deq.T.copy()


def _dequantized_embedding(table: np.ndarray, scheme: str) -> np.ndarray:
    """``dequantize(*_embedding_codes(table, scheme))`` row chunk by row chunk (each row has its own
    scale: the same values, with temporaries of a few MB instead of three copies of the table)."""
    from deploytool.onnx_io import row_chunks

    out = np.empty(table.shape, dtype=np.float32)
    for i, part in row_chunks(table, _EMBEDDING_CHUNK_ROWS):
        codes, alpha = _embedding_codes(part, scheme)
        if scheme == "binary1x2":
            h = part.shape[1]
            out[i:i + len(part)] = codes[:, :h] * alpha[:, :1] + codes[:, h:] * alpha[:, 1:]
        else:  # dequantize's one multiply, written in place (no temporary chunk to copy)
            np.multiply(codes, np.asarray(alpha, dtype=np.float32)[:, None], out=out[i:i + len(part)],
                        dtype=np.float32)
    return out
