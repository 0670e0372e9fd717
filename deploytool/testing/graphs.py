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


def attention_layer_model(pre_ln: bool = False, hidden: int = 8, heads: int = 2, ffn: int = 16) -> onnx.ModelProto:
    """One hand-built self-attention layer with constant Reshape shapes ([0, 0, heads, d], [0, 0, hidden]).

    post-LN (``pre_ln=False``): a BERT-style encoder layer with a ReLU FFN, which the structure finder
    must read. ``pre_ln=True``: LayerNorm first and the residual adds the un-normalised input, as in
    GPT-style decoders, which the finder refuses (naming the residual Add).
    """
    rng = np.random.default_rng(0)
    d = hidden // heads
    inits = []

    def const(name, arr):
        arr = np.asarray(arr)
        dtype = TensorProto.INT64 if arr.dtype.kind == "i" else TensorProto.FLOAT
        inits.append(helper.make_tensor(name, dtype, list(arr.shape), arr.reshape(-1).tolist()))
        return name

    def linear(x, name, k, n):
        const(f"{name}.w", rng.standard_normal((k, n)).astype(np.float32))
        const(f"{name}.b", rng.standard_normal(n).astype(np.float32))
        return [helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}.mm"], name=f"{name}/MatMul"),
                helper.make_node("Add", [f"{name}.mm", f"{name}.b"], [f"{name}.out"], name=f"{name}/Add")], \
            f"{name}.out"

    def layer_norm(x, name):
        const(f"{name}.g", np.ones(hidden, np.float32))
        const(f"{name}.beta", np.zeros(hidden, np.float32))
        return helper.make_node("LayerNormalization", [x, f"{name}.g", f"{name}.beta"], [f"{name}.out"],
                                name=name, axis=-1), f"{name}.out"

    const("split_shape", np.array([0, 0, heads, d], np.int64))
    const("merge_shape", np.array([0, 0, hidden], np.int64))
    const("scale", np.array(float(np.sqrt(d)), np.float32))
    nodes = []
    src = "x"
    if pre_ln:
        n, src = layer_norm("x", "ln_pre")
        nodes.append(n)
    heads_out = {}
    for role in "qkv":
        lin, out = linear(src, role, hidden, hidden)
        nodes += lin
        nodes.append(helper.make_node("Reshape", [out, "split_shape"], [f"{role}.split"], name=f"{role}/Reshape"))
        perm = [0, 2, 3, 1] if role == "k" else [0, 2, 1, 3]
        nodes.append(helper.make_node("Transpose", [f"{role}.split"], [f"{role}.t"], name=f"{role}/Transpose", perm=perm))
        heads_out[role] = f"{role}.t"
    nodes += [helper.make_node("MatMul", [heads_out["q"], heads_out["k"]], ["scores"], name="scores/MatMul"),
              helper.make_node("Div", ["scores", "scale"], ["scaled"], name="scores/Div"),
              helper.make_node("Softmax", ["scaled"], ["probs"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["probs", heads_out["v"]], ["ctx"], name="context/MatMul"),
              helper.make_node("Transpose", ["ctx"], ["ctx.t"], name="context/Transpose", perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ctx.t", "merge_shape"], ["ctx.merged"], name="context/Reshape")]
    lin, o = linear("ctx.merged", "o", hidden, hidden)
    nodes += lin
    nodes.append(helper.make_node("Add", [o, "x"], ["res1"], name="attention/residual"))
    n, h1 = layer_norm("res1", "ln1")
    nodes.append(n)
    lin, inter = linear(h1, "ffn_in", hidden, ffn)
    nodes += lin
    nodes.append(helper.make_node("Relu", [inter], ["act"], name="ffn/Relu"))
    lin, out = linear("act", "ffn_out", ffn, hidden)
    nodes += lin
    nodes.append(helper.make_node("Add", [out, h1], ["res2"], name="ffn/residual"))
    n, y = layer_norm("res2", "ln2")
    nodes.append(n)
    nodes.append(helper.make_node("Identity", [y], ["y"], name="output"))
    g = helper.make_graph(nodes, "attention_layer",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", hidden])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", hidden])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
