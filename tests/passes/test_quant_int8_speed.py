"""int8 speed options: residual Add + LayerNorm kept away from ORT's slow SkipLayerNormalization kernel."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
from deploytool.passes.residual_sum import residual_adds_to_sum
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=3)
FEEDS = fixed_inputs(vocab=100, lengths=(8, 5))


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _ort_ops(path, tmp_path) -> list[str]:
    """Op types of the graph ORT actually runs (after its own fusions at session creation)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # SkipLayerNormFusion's level
    so.optimized_model_filepath = str(tmp_path / f"{path.stem}.ortopt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def _out(p):
    return next(iter(run_onnx(p, FEEDS).values()))


@pytest.mark.parametrize("fusion", ["none", "attention"])
def test_default_keeps_layernorm_unfused(src, tmp_path, fusion):
    fast, fused = tmp_path / "fast.onnx", tmp_path / "fused.onnx"
    # ORT's graph both times (skip_layernorm is ORT's fusion; the native writer hands it to ORT)
    res = quantize_int8_file(src, fast, Int8Config(fusion=fusion, engine="ort"))
    quantize_int8_file(src, fused, Int8Config(fusion=fusion, skip_layernorm=True, engine="ort"))
    # 2 layers x 2 residual LayerNorms, plus the embeddings' LayerNorm on the unfused export
    assert res.stats["residual_add_as_sum"] == (5 if fusion == "none" else 4)
    ops_fast, ops_fused = _ort_ops(fast, tmp_path), _ort_ops(fused, tmp_path)
    assert "SkipLayerNormalization" not in ops_fast
    assert ops_fast.count("LayerNormalization") == 5 - (fusion == "attention")  # EmbedLayerNorm takes one
    assert ops_fused.count("SkipLayerNormalization") >= 2  # what the rewrite avoids
    # same quantized weights, same maths: only the LayerNorm kernel differs
    y, y_ref = _out(fast), _out(fused)
    assert np.abs(y - y_ref).max() < 1e-4


def test_rewrite_only_touches_residual_adds():
    h, T = onnx.helper, onnx.TensorProto
    g = h.make_graph(
        [h.make_node("Add", ["x", "bias"], ["xb"]),  # constant operand: a bias, left alone
         h.make_node("LayerNormalization", ["xb", "g", "b"], ["n1"]),
         h.make_node("Add", ["n1", "x"], ["r"]),  # residual: two computed inputs
         h.make_node("LayerNormalization", ["r", "g", "b"], ["n2"]),
         h.make_node("Add", ["n2", "x"], ["y"])],  # no LayerNorm after it: left alone
        "g", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 4])], [h.make_tensor_value_info("y", T.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.ones(4, np.float32), n) for n in ("bias", "g", "b")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((1, 3, 4)).astype(np.float32)
    before = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert residual_adds_to_sum(m) == 1
    assert [n.op_type for n in m.graph.node] == ["Add", "LayerNormalization", "Sum", "LayerNormalization", "Add"]
    after = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, atol=1e-6)
    m.opset_import[0].version = 7  # Sum has no broadcasting before opset 8: leave such models as they are
    assert residual_adds_to_sum(m) == 0
