"""ONNX Runtime's fp16 converter (``onnxruntime.transformers.float16``) on a graph without its weights, for
the fp16 pass (:mod:`deploytool.passes.fp16`), which computes the fp16 weights itself as it writes them.

:func:`convert_graph_to_float16` retypes the graph: float initializers, computations and value types become
fp16 except ORT's default blocked op types and the caller's, with Casts at the graph's inputs and outputs
when ``keep_io_types``. It also returns the converter's clamping bounds (its ``min_positive_val`` and
``max_finite_val`` defaults), which the weights must be converted with.
"""

from __future__ import annotations

import contextlib
import inspect

import onnx

from deploytool.errors import DeployError
from deploytool.quiet_logs import quiet_logs

__all__ = ["convert_graph_to_float16"]


def convert_graph_to_float16(proto: onnx.ModelProto, *, keep_io_types: bool, op_block_list: tuple[str, ...] = (),
                             node_block_list: tuple[str, ...] = ()) -> tuple[onnx.ModelProto, tuple[float, float]]:
    """``proto`` retyped to fp16 by ORT's converter (its initializers may carry no data: their shapes come
    from ``dims``), and the converter's ``(min_positive_val, max_finite_val)``. ``node_block_list``: names of
    nodes kept in fp32 (with Casts around them) besides the blocked op types. ORT's warnings are kept
    quiet; a converter failure is one :class:`DeployError` line."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    block = list(DEFAULT_OP_BLOCK_LIST) + list(op_block_list)
    try:
        with _shapes_from_dims(), quiet_logs(["onnxruntime.transformers.float16"]):
            out = convert_float_to_float16(proto, keep_io_types=keep_io_types, op_block_list=block,
                                           node_block_list=list(node_block_list) or None)
    except Exception as e:
        raise DeployError(f"fp16: conversion failed ({type(e).__name__}: {e})") from e
    params = inspect.signature(convert_float_to_float16).parameters
    return out, (params["min_positive_val"].default, params["max_finite_val"].default)


@contextlib.contextmanager
def _shapes_from_dims():
    """While converting: ORT's converter takes a converted initializer's shape from its data
    (``make_value_info_from_tensor``: ``numpy_helper.to_array(t).shape``); the fp16 pass's initializers
    carry no data (it is converted as the file is written), so read the same shape from ``dims``. Scoped to
    the call and put back after it (the one patch of a third-party function in deploytool: the alternative
    is a full copy of the weights in memory)."""
    import onnxruntime.transformers.float16 as f16
    from onnx import helper

    original = f16.make_value_info_from_tensor

    def from_dims(tensor):
        return helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))

    f16.make_value_info_from_tensor = from_dims
    try:
        yield
    finally:
        f16.make_value_info_from_tensor = original
