"""Helpers for the structured-pruning tests: apply a pass in memory and run ORT on the result."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir


def apply_in_memory(proto: onnx.ModelProto, pass_) -> tuple[bytes, object]:
    """Apply ``pass_`` to a fresh IR copy of ``proto``; return (checked model bytes, result)."""
    model = ir.serde.deserialize_model(proto)
    result = pass_(model)
    out = ir.serde.serialize_model(result.model)
    onnx.checker.check_model(out)
    return out.SerializeToString(), result


def run_bytes(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """The first output of an ONNX model given as bytes (ORT, 1 thread)."""
    from deploytool.runtime.infer import run_onnx

    out = run_onnx(model_bytes, feeds)
    return next(iter(out.values()))


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
