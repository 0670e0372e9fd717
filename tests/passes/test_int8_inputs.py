"""int8 on inputs other passes and tools produce: head-pruned models (per-layer heads), fp16 models (upcast)."""

from __future__ import annotations

import numpy as np
import pytest

from deploytool.passes.fp16 import Fp16Config, convert_fp16_file
from deploytool.passes.prune_heads import HeadPruneConfig, prune_heads_file
from deploytool.passes.quantize_int8 import Fusion, Int8Config, quantize_int8_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs


def test_fused_int8_of_a_head_pruned_model(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", "torch", layers=2)
    pruned = tmp_path / "p.onnx"
    prune_heads_file(src, pruned, HeadPruneConfig(heads={0: [1, 3]}))
    q = tmp_path / "q.onnx"
    quantize_int8_file(pruned, q, Int8Config(fusion=Fusion.ATTENTION))
    feeds = fixed_inputs()
    a = run_onnx(pruned, feeds)["last_hidden_state"]
    b = run_onnx(q, feeds)["last_hidden_state"]
    cos = float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.98


def _fp16_file(tiny_onnx, tmp_path, source: str):
    """(the fp32 source, an fp16 file made from it): deploytool's fp16 pass (ORT's converter, fp32 inputs and
    outputs kept), or ONNX Runtime's transformer optimizer (level 2: fused Attention, SkipLayerNorm) with its
    float16 conversion, inputs and outputs fp16 too."""
    src = tiny_onnx("bert", "torch", layers=2)
    h = tmp_path / f"{source}.onnx"
    if source == "deploytool-fp16":
        convert_fp16_file(src, h, Fp16Config(check_host=False))
    else:
        import onnx
        from onnxruntime.transformers.onnx_model import OnnxModel

        from deploytool.testing.conformance import optimize

        optimize(src, 2, tmp_path / "o2.onnx")
        m = OnnxModel(onnx.load(str(tmp_path / "o2.onnx")))
        m.convert_float_to_float16(keep_io_types=False)
        m.save_model_to_file(str(h))
    return src, h


def _fp16_anywhere(path) -> list[str]:
    import onnx

    proto = onnx.load(str(path))
    half = onnx.TensorProto.FLOAT16
    g = proto.graph
    found = [t.name for t in g.initializer if t.data_type == half]
    found += [v.name for v in [*g.input, *g.output, *g.value_info] if v.type.tensor_type.elem_type == half]
    for n in g.node:
        for a in n.attribute:
            if (n.op_type == "Cast" and a.name == "to" and a.i == half) or (a.t.data_type == half and a.HasField("t")):
                found.append(n.name or n.op_type)
    return found


@pytest.mark.parametrize("engine", ["native", "ort"])
@pytest.mark.parametrize("source", ["deploytool-fp16", "ort-optimizer-fp16"])
def test_int8_of_an_fp16_file_upcasts_it_first(tiny_onnx, tmp_path, source, engine):
    """Files users bring in fp16 (deploytool's, ONNX Runtime's optimizer's with fp16 inputs and outputs): int8
    upcasts them to fp32 first (exact), so the int8 file computes the fp32 model's values; its interface stays the
    file's own (an fp16 output is cast back to fp16 at the end, under its name)."""
    import onnx

    src, h = _fp16_file(tiny_onnx, tmp_path, source)
    assert _fp16_anywhere(h)
    q = tmp_path / "q.onnx"
    res = quantize_int8_file(h, q, Int8Config(engine=engine))
    assert res.gate.verified and res.stats["upcast_from_fp16"]["weights"] > 10

    def io(path):
        g = onnx.load(str(path)).graph
        return [(v.name, v.type.tensor_type.elem_type) for v in [*g.input, *g.output]]

    interface = [name for name, t in io(h) if t == onnx.TensorProto.FLOAT16]
    assert io(q) == io(h)
    # fp16 nowhere but the declared interface and the one cast per fp16 output that makes it
    assert sorted(_fp16_anywhere(q)) == sorted(interface + [f"{n}/deploytool_cast" for n in interface])
    feeds = fixed_inputs()
    a = run_onnx(src, feeds)["last_hidden_state"].astype(np.float64)
    b = run_onnx(q, feeds)["last_hidden_state"]
    assert b.dtype == run_onnx(h, feeds)["last_hidden_state"].dtype
    b = b.astype(np.float64)
    cos = float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))
    assert cos > 0.98


def test_upcast_of_an_fp16_file_is_the_fp32_model_with_its_weights_rounded_to_fp16(tiny_onnx, tmp_path):
    """The upcast alone computes what the fp32 source computes once each weight is rounded to fp16 and back
    (numpy on the source's own initializers: the reference knows nothing of the pass)."""
    import onnx
    from onnx import numpy_helper

    from deploytool import onnx_io
    from deploytool.passes.upcast_fp16 import UpcastFp16Pass

    src, h = _fp16_file(tiny_onnx, tmp_path, "deploytool-fp16")
    model = onnx_io.load_model(h)
    res = UpcastFp16Pass()(model)
    assert res.modified
    up = onnx_io.save_streamed(model, tmp_path / "up.onnx")
    assert _fp16_anywhere(up) == [] and _fp16_anywhere(h)
    proto = onnx.load(str(src))
    for t in proto.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT and t.dims:
            rounded = numpy_helper.to_array(t).astype(np.float16).astype(np.float32)
            t.CopyFrom(numpy_helper.from_array(rounded, t.name))
    onnx.save(proto, str(tmp_path / "rounded.onnx"))
    feeds = fixed_inputs()
    ref = run_onnx(tmp_path / "rounded.onnx", feeds)["last_hidden_state"]
    got = run_onnx(up, feeds)["last_hidden_state"]
    assert np.max(np.abs(got - ref)) <= 1e-5 * max(1.0, float(np.max(np.abs(ref))))
    again = UpcastFp16Pass()(onnx_io.load_model(src))  # an fp32 model: nothing to do
    assert not again.modified and "upcast_from_fp16" not in again.stats


@pytest.mark.parametrize("edit", ["attention-bias", "causal"])
def test_int8_of_an_ort_fused_attention_with_a_bias_or_causal(tmp_path, edit):
    """ONNX Runtime's quantizer turns every fused Attention into a QAttention, which has no input for an attention
    bias: it used to drop the bias silently (the output then matched the unbiased graph's int8 output exactly). Such
    a node now runs as MatMul (quantized like every projection), Split and MultiHeadAttention with the bias (until
    2026-12-03 it stayed an fp32 Attention); a causal one becomes a QAttention that stays causal. Checked against
    the edited fp32 graph: the int8 output is nearer to it than to the unedited graph's."""
    pytest.importorskip("onnxruntime.transformers.optimizer")
    import onnx

    from deploytool.testing import conformance as C
    from deploytool.testing.fused import add_attention_bias, make_unidirectional

    case = C.MODEL_BY_NAME["bert"]
    base = C.optimize(C.export(case, "torchscript-17", tmp_path / "e"), 2, tmp_path / "o2.onnx", raw_mask=True)
    # a bias table large enough to move the output well past this tiny random model's int8 error (cosine ~0.965)
    src = (add_attention_bias(base, tmp_path / "edited.onnx", scale=2.0) if edit == "attention-bias"
           else make_unidirectional(base, tmp_path / "edited.onnx"))
    fused = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Attention"]
    layers = len(fused)
    dst = tmp_path / "q.onnx"
    res = quantize_int8_file(src, dst, Int8Config())
    out = onnx.load(str(dst))
    ops = [n.op_type for n in out.graph.node]
    if edit == "attention-bias":
        assert "Attention" not in ops and "QAttention" not in ops and ops.count("MultiHeadAttention") == layers
        mha = [n for n in out.graph.node if n.op_type == "MultiHeadAttention"]
        assert {n.input[5] for n in mha} == {n.input[5] for n in fused}  # each layer's own slice of the table
        # one mask for all (ORT's optimizer, run again before quantizing, may hand it over from the embeddings it
        # fuses); the padded rows below check it masks
        assert len({n.input[4] for n in mha}) == 1 and all(n.input[4] for n in mha)
        # every projection is int8, the QKV ones too: one integer GEMM per layer's QKV, O and two FFN, and the pooler
        assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") == 4 * layers + 1, ops
        assert res.stats["attention_bias_as_mha"] == layers
        # the finder reads the int8 QKV (MatMulInteger, its scale, the bias Add) before the Split as the layer's
        # packed QKV projection, with the fused node's bias
        from onnx import numpy_helper

        from deploytool import onnx_io
        from deploytool.graph import find_structure
        from deploytool.graph._util import const_tensor

        s = find_structure(onnx_io.load_model(dst))
        inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(src)).graph.initializer}
        assert s.num_layers == layers
        for layer, n in zip(s.layers, fused):
            a = layer.attention
            assert a.fused.op_type == "MultiHeadAttention" and a.qkv.node.op_type == "MatMulInteger"
            assert a.qkv.out_features == 3 * a.num_heads * a.head_size
            np.testing.assert_array_equal(const_tensor(a.qkv.bias).numpy(), inits[n.input[2]])
        assert not [s for s in res.skipped if "attention bias" in s.reason], res.skipped
    else:
        qatt = [n for n in out.graph.node if n.op_type == "QAttention"]
        assert len(qatt) == layers
        assert all(any(a.name == "unidirectional" and a.i == 1 for a in n.attribute) for n in qatt)
    feeds = C.feeds(case)

    def first(path):
        return next(iter(run_onnx(path, feeds).values())).ravel().astype(np.float64)

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    got, want, unedited = first(dst), first(src), first(base)
    assert cos(got, want) > cos(got, unedited) + (0.05 if edit == "attention-bias" else 0.005)


def test_attention_bias_as_multihead_attention_is_the_fused_attention(tmp_path):
    """The rewrite int8 quantizes (MatMul, Add, Split, MultiHeadAttention) computes what ORT's fused Attention
    computes with the same attention bias, raw mask and weights (fp32, before any quantizing)."""
    pytest.importorskip("onnxruntime.transformers.optimizer")
    import onnx

    from deploytool.passes.quantize_int8 import _attention_bias_as_mha
    from deploytool.testing import conformance as C
    from deploytool.testing.fused import add_attention_bias

    case = C.MODEL_BY_NAME["distilbert"]
    base = C.optimize(C.export(case, "optimum", tmp_path / "e"), 2, tmp_path / "o2.onnx", raw_mask=True)
    src = add_attention_bias(base, tmp_path / "edited.onnx")
    m = onnx.load(str(src))
    layers = sum(n.op_type == "Attention" for n in m.graph.node)
    assert _attention_bias_as_mha(m) == layers >= 2
    assert [n.op_type for n in m.graph.node].count("MultiHeadAttention") == layers
    onnx.save(m, str(tmp_path / "mha.onnx"))
    feeds = C.feeds(case)
    for name, want in run_onnx(src, feeds).items():
        np.testing.assert_allclose(run_onnx(tmp_path / "mha.onnx", feeds)[name], want, atol=1e-5)


def test_upcast_drops_the_casts_it_made_no_ops_and_keeps_a_graph_outputs():
    """x (fp32) -> Cast(fp16) -> Mul by an fp16 constant -> Cast(fp32) -> y: after the upcast the first cast is fp32
    to fp32 and goes; the last one, which names the graph output, stays; the model computes x * c in fp32."""
    import onnx
    import onnx_ir as ir
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from deploytool.passes.upcast_fp16 import UpcastFp16Pass

    c = np.array([0.5, -2.0, 3.0], np.float16)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
         helper.make_node("Mul", ["h", "c"], ["m"]),
         helper.make_node("Cast", ["m"], ["y"], to=TensorProto.FLOAT)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], [numpy_helper.from_array(c, "c")])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                                         ir_version=8))
    res = UpcastFp16Pass()(model)
    assert res.stats["upcast_from_fp16"] == {"weights": 1, "casts_dropped": 1, "fp16_inputs_outputs_kept": 0}
    proto = ir.serde.serialize_model(model)
    assert [n.op_type for n in proto.graph.node] == ["Mul", "Cast"]
    assert proto.graph.initializer[0].data_type == onnx.TensorProto.FLOAT
    x = np.array([[1.0, 2.0, 3.0], [-1.5, 0.25, 8.0]], np.float32)
    y = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y, x * c.astype(np.float32))


def test_upcast_keeps_an_fp16_interface():
    """x (fp16) -> MatMul by an fp16 weight -> Add an fp16 bias -> y (fp16): after the upcast x and y are still declared
    fp16 (an application feeding and reading fp16 keeps working), the weights are fp32, and y equals numpy's fp32
    product of the same values rounded to fp16 at the end (the reference: numpy on the graph's own arrays)."""
    import onnx
    import onnx_ir as ir
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from deploytool.passes.upcast_fp16 import UpcastFp16Pass

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float16)
    b = rng.standard_normal(3).astype(np.float16)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                                         ir_version=8))
    res = UpcastFp16Pass()(model)
    assert res.stats["upcast_from_fp16"] == {"weights": 2, "casts_dropped": 0, "fp16_inputs_outputs_kept": 2}
    proto = ir.serde.serialize_model(model)
    assert [(v.name, v.type.tensor_type.elem_type) for v in [*proto.graph.input, *proto.graph.output]] == \
        [("x", TensorProto.FLOAT16), ("y", TensorProto.FLOAT16)]
    assert {t.data_type for t in proto.graph.initializer} == {TensorProto.FLOAT}
    onnx.checker.check_model(proto)
    x = rng.standard_normal((2, 4)).astype(np.float16)
    y = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert y.dtype == np.float16
    want = (x.astype(np.float32) @ w.astype(np.float32) + b.astype(np.float32)).astype(np.float16)
    np.testing.assert_allclose(y.astype(np.float32), want.astype(np.float32), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("engine", ["native", "ort"])
def test_int8_of_an_fp16_file_with_fp16_constants_in_an_if_branch(tiny_onnx, tmp_path, engine):
    """ORT's optimizer (level 2) and fp16 conversion of DeBERTa-v2 leave its relative-position buckets in an If
    branch: a Cast to fp16 and a Div by an fp16 constant of the branch's own. The upcast made the Cast fp32 and left
    the branch's constant fp16, so the int8 file's Div read fp32 and fp16 and ORT refused to load it (caught only by
    the gate). The branch's constants are upcast too: the file loads and the branch computes what it did."""
    import onnx
    from onnx import TensorProto, helper

    _, h = _fp16_file(tiny_onnx, tmp_path, "deploytool-fp16")
    m = onnx.load(str(h))
    half = onnx.numpy_helper.from_array(np.array(2.0, np.float16), "two_fp16")
    then = helper.make_graph(
        [helper.make_node("Cast", ["ids_shape"], ["shape_fp16"], to=TensorProto.FLOAT16),
         helper.make_node("Div", ["shape_fp16", "two_fp16"], ["halved"]),
         helper.make_node("Cast", ["halved"], ["then_out"], to=TensorProto.FLOAT)],
        "then", [], [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [2])], initializer=[half])
    other = helper.make_graph([helper.make_node("Cast", ["ids_shape"], ["else_out"], to=TensorProto.FLOAT)], "else",
                              [], [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [2])])
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(True), "if_cond"))
    m.graph.node.extend([helper.make_node("Shape", ["input_ids"], ["ids_shape"], name="ids_shape"),
                         helper.make_node("If", ["if_cond"], ["halfshape"], name="If_buckets", then_branch=then,
                                          else_branch=other)])
    m.graph.output.append(helper.make_tensor_value_info("halfshape", TensorProto.FLOAT, [2]))
    src = tmp_path / "if.onnx"
    onnx.save(m, str(src))
    q = tmp_path / "q.onnx"
    res = quantize_int8_file(src, q, Int8Config(engine=engine))
    assert res.gate.verified
    feeds = fixed_inputs()
    np.testing.assert_array_equal(run_onnx(q, feeds)["halfshape"], np.array(feeds["input_ids"].shape) / 2)
    assert not _fp16_anywhere(q)
