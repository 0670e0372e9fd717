"""Reading a found layer's weights as numpy arrays, in the PyTorch layout ``[out, in]``.

The roles (:mod:`deploytool.graph.roles`) point at the graph's own values; these readers turn them into
float64 arrays for scoring (weight-magnitude importance) without editing anything. Packed QKV is cut
into Q, K and V by the roles contract: part p owns output features ``[p*A, (p+1)*A)``, A = all heads.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from deploytool.errors import StructureError
from deploytool.graph._util import const_tensor
from deploytool.graph.roles import AttentionBlock, Linear

__all__ = ["identical", "qkv_parts", "qkv_square_sums", "square_sums", "weight_array", "weight_out_in"]


def identical(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``b`` holds a copy of ``a``: the same dtype, the same shape and the same bytes (-0.0 is not 0.0: they
    differ in the file and, for a division, in what a node computes). The one rule for "this tensor is a copy of
    that one": the dedupe pass merges such copies, ``deploytool inspect`` counts them."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    return np.array_equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8),
                          np.ascontiguousarray(b).reshape(-1).view(np.uint8))


def weight_array(value: ir.Value) -> np.ndarray:
    """The numpy array of an initializer or a Constant output (also through Identity aliases)."""
    t = const_tensor(value)
    if t is None:
        raise StructureError(f"tensor '{value.name}' is computed in the graph, not a constant; cannot read it")
    return t.numpy()


def weight_out_in(lin: Linear) -> np.ndarray:
    """A projection's weight as float64 ``[out, in]`` (PyTorch layout), whatever its storage layout."""
    w = weight_array(lin.weight).astype(np.float64)
    return w.T if lin.layout == "in_out" else w


def qkv_parts(att: AttentionBlock) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """[(weight [out, in] float64, bias or None)] for Q, K, V, from separate or packed weights."""
    if att.q is not None and att.k is not None and att.v is not None:
        return [(weight_out_in(lin), None if lin.bias is None else weight_array(lin.bias).astype(np.float64))
                for lin in (att.q, att.k, att.v)]
    if att.qkv is not None:
        w = weight_out_in(att.qkv)  # [3*A, hidden]
        b = None if att.qkv.bias is None else weight_array(att.qkv.bias).astype(np.float64)
        rows = [np.asarray(att.part_features(i), dtype=np.int64) for i in range(3)]
        return [(w[r], None if b is None else b[r]) for r in rows]
    raise _no_qkv(att)


def square_sums(lin: Linear, axis: int) -> np.ndarray:
    """Sums of squares of a projection's ``[out, in]`` weight over ``axis`` (1: one per output feature, 0: one
    per input feature) in float64, read from the stored layout without a float64 copy of the weight
    (``einsum`` casts as it goes: ~3x faster than squaring ``weight_out_in``, same sums to rounding)."""
    w = weight_array(lin.weight)
    if lin.layout == "in_out":
        axis = 1 - axis
    return np.einsum("ij,ij->i" if axis == 1 else "ij,ij->j", w, w, dtype=np.float64)


def qkv_square_sums(att: AttentionBlock) -> list[np.ndarray]:
    """Per output feature of Q, K and V: the sum of squares of its weight row plus its bias squared (float64),
    from separate or packed weights (:func:`qkv_parts`'s contract)."""
    def bias_sq(lin: Linear) -> np.ndarray | int:
        return 0 if lin.bias is None else weight_array(lin.bias).astype(np.float64) ** 2

    if att.q is not None and att.k is not None and att.v is not None:
        return [square_sums(lin, 1) + bias_sq(lin) for lin in (att.q, att.k, att.v)]
    if att.qkv is not None:
        rows = square_sums(att.qkv, 1) + bias_sq(att.qkv)  # [3*A]
        return [rows[np.asarray(att.part_features(i), dtype=np.int64)] for i in range(3)]
    raise _no_qkv(att)


def _no_qkv(att: AttentionBlock) -> StructureError:
    return StructureError(f"attention of output node '{att.o.node.name}' has neither Q/K/V nor a packed QKV weight")
