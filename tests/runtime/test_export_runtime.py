"""runtime.infer.run_onnx (feed casting/dropping) and runtime.fuse.fuse_transformer on tiny exports."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

from deploytool.errors import DeployError
from deploytool.runtime.fuse import fuse_transformer
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs


def test_run_onnx_casts_and_drops_feeds(tiny_onnx):
    path = tiny_onnx("distilbert", "torch")  # declares input_ids and attention_mask only
    feeds = fixed_inputs(lengths=(6, 2))
    ref = run_onnx(path, feeds)["last_hidden_state"]  # token_type_ids is dropped
    as_int32 = {k: v.astype(np.int32) for k, v in feeds.items()}
    from_bytes = run_onnx(path.read_bytes(), as_int32, threads=2,
                          session_config={"session.intra_op.allow_spinning": "0"})["last_hidden_state"]
    np.testing.assert_array_equal(ref, from_bytes)
    with pytest.raises(DeployError, match="attention_mask"):
        run_onnx(path, {"input_ids": feeds["input_ids"]})


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_fuse_torch_export_has_attention_and_same_outputs(tiny_onnx, tmp_path, family):
    src = tiny_onnx(family, "torch")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    result = fuse_transformer(src, tmp_path / "fused.onnx")
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest  # input untouched
    assert (result.num_heads, result.hidden_size) == (4, 32)  # read from the export's metadata
    assert result.fused_ops["Attention"] == 2  # one per layer
    assert result.fused_ops["SkipLayerNormalization"] == 4
    assert result.fused_ops["BiasGelu"] + result.fused_ops["FastGelu"] == 2
    if family == "bert":
        assert result.fused_ops["EmbedLayerNormalization"] == 1
    assert result.nodes_after < result.nodes_before
    fused = onnx.load(str(result.path))
    assert sum(n.op_type == "Attention" for n in fused.graph.node) == 2
    meta = {p.key: p.value for p in fused.metadata_props}
    assert meta["deploytool.fused"] == "ort-bert" and meta["deploytool.num_heads"] == "4"
    feeds = fixed_inputs(lengths=(9, 3, 6), seed=2)
    if family == "roberta":
        feeds["input_ids"][feeds["attention_mask"] == 0] = 1  # RoBERTa's pad token
    a = run_onnx(src, feeds)["last_hidden_state"]
    b = run_onnx(result.path, feeds)["last_hidden_state"]
    np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)


def test_fuse_dynamo_export_does_not_fuse_attention(tiny_onnx, tmp_path):
    # FACTS.md: on the dynamo export only SkipLayerNorm/BiasGelu fuse; why the default is TorchScript
    result = fuse_transformer(tiny_onnx("bert", "dynamo"), tmp_path / "fused.onnx")
    assert not result.attention_fused
    assert result.fused_ops["SkipLayerNormalization"] == 4


def test_tiny_fused_onnx_fixture(tiny_fused_onnx):
    path = tiny_fused_onnx("bert", "sequence-classification")
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Attention") == 2 and ops.count("EmbedLayerNormalization") == 1
    assert run_onnx(path, fixed_inputs(lengths=(5, 2)))["logits"].shape == (2, 2)


@pytest.mark.parametrize("opset", [17, 18])
def test_ort_rms_norm_is_written_back_as_standard_ops(opset):
    """``SimplifiedLayerNormalization`` in the default domain (ORT's RMSNorm, what its optimizer fuses T5's norm
    into) is rewritten as Pow/ReduceMean/Add/Sqrt/Div/Mul: ``onnx.checker`` accepts the graph, ONNX Runtime computes
    what the numpy formula computes, and a node whose inverse-std output is read is left alone."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from deploytool.runtime.fuse import standard_rms_norms

    rng = np.random.default_rng(0)
    w = rng.standard_normal(6).astype(np.float32)
    nodes = [helper.make_node("SimplifiedLayerNormalization", ["x", "w"], ["y"], name="rms", epsilon=1e-3, axis=-1),
             helper.make_node("SimplifiedLayerNormalization", ["y", "w"], ["z", "inv"], name="kept", epsilon=1e-3)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 6])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3, 6]),
                           helper.make_tensor_value_info("inv", TensorProto.FLOAT, [2, 3, 1])],
                          [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    before = proto.SerializeToString()
    assert standard_rms_norms(proto) == 1
    assert [n.op_type for n in proto.graph.node] == ["Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul",
                                                     "SimplifiedLayerNormalization"]
    x = rng.standard_normal((2, 3, 6)).astype(np.float32)
    y = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-3) * w
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = ort.InferenceSession(before, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, y / np.sqrt((y * y).mean(-1, keepdims=True) + 1e-3) * w, rtol=1e-4, atol=1e-5)
    proto.graph.node.pop()  # the kept node: ORT's op, which the checker does not know
    proto.graph.output.pop()
    proto.graph.output[0].name = "y"
    onnx.checker.check_model(proto)
