"""graph/canonical.py on hand-made graphs: ORT's flattened projection (Reshape -> Gemm -> Reshape) back to
MatMul + Add, with the weight stored either way, checked by ONNX Runtime against the graph as written."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploytool.graph.canonical import unfuse_flattened_gemms

B, S, K, N = 2, 3, 8, 5


def _graph(trans_b: int, shared: bool, alpha: float = 1.0):
    """x [B, S, K] -> two flattened projections (Reshape [B*S, K] -> Gemm -> Reshape [B, S, N]); with ``shared``
    both read one weight (ALBERT's layers, tied heads), else each its own."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(N, K) if trans_b else (K, N)).astype(np.float32)
    w2 = w1 if shared else rng.normal(size=w1.shape).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(rng.normal(size=N).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([B * S, K], np.int64), "flat"),
             numpy_helper.from_array(np.array([B, S, N], np.int64), "unflat")]
    if not shared:
        inits.append(numpy_helper.from_array(w2, "w2"))
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["xf"])]
    for i, w in ((1, "w1"), (2, "w1" if shared else "w2")):
        nodes += [helper.make_node("Gemm", ["xf", w, "b"], [f"g{i}"], transB=trans_b, alpha=alpha),
                  helper.make_node("Reshape", [f"g{i}", "unflat"], [f"y{i}"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, K])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [B, S, N]) for i in (1, 2)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(proto, x):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("shared", [False, True])
def test_flattened_gemms_become_matmul_add_with_the_weight_in_matmuls_layout(trans_b, shared):
    proto = _graph(trans_b, shared)
    x = np.random.default_rng(1).normal(size=(B, S, K)).astype(np.float32)
    want = _run(proto, x)
    model = ir.serde.deserialize_model(proto)
    assert unfuse_flattened_gemms(model) == 2
    out = ir.serde.serialize_model(model)
    ops = [n.op_type for n in out.graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 2 and ops.count("Add") == 2
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer if len(t.dims) == 2}
    assert all(w.shape == (K, N) for w in weights.values())  # MatMul's [in, out]
    assert len(weights) == (1 if shared else 2)  # a shared weight is transposed once; the [N, K] one is gone
    got = _run(out, x)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_a_scaled_gemm_is_left_as_it_is():
    model = ir.serde.deserialize_model(_graph(1, False, alpha=0.5))
    assert unfuse_flattened_gemms(model) == 0
    assert [n.op_type for n in model.graph].count("Gemm") == 2
