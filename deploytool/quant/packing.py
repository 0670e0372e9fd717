"""Exact bit packers for ternary and binary codes, along the last axis, low bits first.

- 2 bits per weight: code ``c = t + 2`` in {1, 2, 3} (the unsigned 2-bit code with zero point 2 that
  ``com.microsoft.MatMulNBits`` bits=2 expects); four codes per byte,
  ``byte = c0 | c1 << 2 | c2 << 4 | c3 << 6``. Padding uses code 2 (the value 0).
  (ONNX's own INT2 tensor type stores two's complement instead; onnx_ir packs that one.)
- 5 trits per byte (3^5 = 243 <= 256, 1.6 bits per weight): ``c = t + 1`` in {0, 1, 2},
  ``byte = c0 + 3 c1 + 9 c2 + 27 c3 + 81 c4``. Padding uses c = 1 (the value 0).
- 1 bit per weight: bit ``b = (s > 0)`` for s in {-1, 1}; eight per byte, first weight in bit 0.
  Padding uses bit 0.

Each packer maps ``[..., n]`` to ``[..., packed_len(n, scheme)]`` uint8; each unpacker takes the
packed array and ``n`` and returns the int8 codes ``[..., n]`` again (exact round trip).
"""

from __future__ import annotations

import numpy as np

from deploytool.quant._compiled import kernels

PER_BYTE = {"ternary2": 4, "trit5": 5, "binary1": 8}
TRIT_POWERS = np.array([1, 3, 9, 27, 81], dtype=np.int32)


def packed_len(n: int, scheme: str) -> int:
    """Bytes per row of ``n`` values for scheme "ternary2" | "trit5" | "binary1"."""
    k = PER_BYTE[scheme]
    return -(-n // k)


def _check_values(x: np.ndarray, allowed: tuple[int, ...], what: str, dtype=np.int32, *,
                  copy: bool = True) -> np.ndarray:
    """``x`` as ``dtype`` once every value is in ``allowed`` (else ValueError): a copy the packers write into,
    or with ``copy=False`` ``x`` itself when it has that type already (for packers that only read it)."""
    x = np.asarray(x)
    if x.size:
        if x.dtype.kind in "iu" and allowed == tuple(range(allowed[0], allowed[-1] + 1)):
            ok = allowed[0] <= x.min() and x.max() <= allowed[-1]  # whole numbers in a run: two reductions
        elif x.dtype.kind in "iu" and allowed == (-1, 1):  # signs: in [-1, 1] and no 0
            ok = -1 <= x.min() and x.max() <= 1 and np.count_nonzero(x) == x.size
        else:
            ok = np.isin(x, allowed).all()
        if not ok:
            raise ValueError(f"{what}: values must be in {allowed}")
    return x.astype(dtype, copy=copy)


def _pad(codes: np.ndarray, per: int, fill: int) -> np.ndarray:
    n = codes.shape[-1]
    pad = (-n) % per
    if pad:
        widths = [(0, 0)] * (codes.ndim - 1) + [(0, pad)]
        codes = np.pad(codes, widths, constant_values=fill)
    return codes.reshape(*codes.shape[:-1], -1, per)


def _pack_rows_compiled(t: np.ndarray, per: int) -> np.ndarray | None:
    """:func:`pack_2bit` (per 4) or :func:`pack_trit5` (per 5) of int8 codes in the compiled loop (one pass, no
    temporaries), or None where it does not apply (not built, not int8, no values): the numpy code then."""
    t = np.asarray(t)
    if kernels is None or t.dtype != np.int8 or t.ndim == 0 or t.size == 0:
        return None
    x = np.ascontiguousarray(t)
    out = np.empty(x.shape[:-1] + (packed_len(x.shape[-1], "trit5" if per == 5 else "ternary2"),), np.uint8)
    if not kernels.pack_rows(x.reshape(-1), x.shape[-1], out.reshape(-1), per):
        raise ValueError(f"ternary: values must be in {(-1, 0, 1)}")
    return out


def pack_2bit(t: np.ndarray) -> np.ndarray:
    """Ternary codes {-1,0,1} -> uint8, four per byte as ``t + 2``, low bits first."""
    out = _pack_rows_compiled(t, 4)
    return out if out is not None else _pack_2bit_numpy(t)


def _pack_2bit_numpy(t: np.ndarray) -> np.ndarray:
    c = _check_values(t, (-1, 0, 1), "ternary", np.int8).view(np.uint8)  # a copy: -1 reads 255
    c += 2  # mod 256: -1, 0, 1 -> 1, 2, 3
    c = _pad(c, 4, 2)
    # bytes only (no int32 temporaries): the four codes of a byte OR-ed at their shifts
    return c[..., 0] | (c[..., 1] << 2) | (c[..., 2] << 4) | (c[..., 3] << 6)


def unpack_2bit(packed: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(packed, dtype=np.uint8).astype(np.int32)
    c = (p[..., None] >> np.array([0, 2, 4, 6], dtype=np.int32)) & 3
    return (c.reshape(*p.shape[:-1], -1)[..., :n] - 2).astype(np.int8)


def pack_trit5(t: np.ndarray) -> np.ndarray:
    """Ternary codes {-1,0,1} -> uint8, five trits per byte (base 3, first trit least significant)."""
    out = _pack_rows_compiled(t, 5)
    return out if out is not None else _pack_trit5_numpy(t)


def _pack_trit5_numpy(t: np.ndarray) -> np.ndarray:
    c = _check_values(t, (-1, 0, 1), "ternary", np.int8).view(np.uint8)  # a copy: -1 reads 255
    c += 1  # mod 256: -1, 0, 1 -> 0, 1, 2
    c = _pad(c, 5, 1)
    # bytes only (at most 2 + 6 + 18 + 54 + 162 = 242: no overflow, no int32 temporaries)
    out = c[..., 4] * np.uint8(81)
    for i, w in ((3, 27), (2, 9), (1, 3)):
        out += c[..., i] * np.uint8(w)
    out += c[..., 0]
    return out


def unpack_trit5(packed: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(packed, dtype=np.uint8).astype(np.int32)
    c = (p[..., None] // TRIT_POWERS) % 3
    return (c.reshape(*p.shape[:-1], -1)[..., :n] - 1).astype(np.int8)


def pack_bits(s: np.ndarray) -> np.ndarray:
    """Binary codes {-1,1} -> uint8, eight per byte, first weight in the lowest bit."""
    b = _check_values(s, (-1, 1), "binary", np.int8, copy=False) > 0  # read only: no copy of int8 codes
    return np.packbits(b, axis=-1, bitorder="little")  # the last byte's missing bits are 0


def unpack_bits(packed: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(packed, dtype=np.uint8).astype(np.int32)
    b = (p[..., None] >> np.arange(8, dtype=np.int32)) & 1
    return (b.reshape(*p.shape[:-1], -1)[..., :n] * 2 - 1).astype(np.int8)
