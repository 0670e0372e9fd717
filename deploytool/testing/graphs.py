"""Small hand-built ONNX graphs that are NOT Transformer encoders (for StructureError tests)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper


def cnn_model() -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> MatMul -> Softmax (first node named 'conv1')."""
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.random(108, dtype=np.float32))
    fc = helper.make_tensor("fc", TensorProto.FLOAT, [4, 2], rng.random(8, dtype=np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu1"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "fc"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["prob"], name="softmax")]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 2])], [w, fc])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def mlp_model() -> onnx.ModelProto:
    """MatMul -> Relu -> MatMul (last node named 'mm2')."""
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [8, 16], rng.random(128, dtype=np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [16, 2], rng.random(32, dtype=np.float32))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w1, w2])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
