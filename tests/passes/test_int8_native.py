"""The native streaming int8 writer (passes/int8_native.py) against fp32, ORT's path and a restated rule."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from deploytool.errors import ConfigError
from deploytool.passes.int8_native import int8_weight
from deploytool.passes.quantize_int8 import Int8Config, Int8QuantizePass, quantize_int8_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import exact_int8_codes, fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=5)
NATIVE = Int8Config(engine="native")
ORT = Int8Config(engine="ort")
# for checks of the graph against fp32 with a tight bound: codes this CPU multiplies exactly (int8 unless its
# u8 x s8 kernel saturates, as on x86 without VNNI; then uint8, the same integers)
EXACT = Int8Config(engine="native", weights=exact_int8_codes())


def _reference_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: scale = max|W| / 127 (1 for a zero column), codes = round half to even, clipped."""
    absmax = np.abs(w.astype(np.float64)).max(axis=0)
    scale = np.where(absmax == 0, 1.0, absmax / 127).astype(np.float32)
    codes = np.clip(np.round(w.astype(np.float32) / scale), -127, 127).astype(np.int8)
    return codes, scale


def _ops(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def _constant_weight_matmuls(path) -> list[str]:
    g = onnx.load(str(path)).graph
    consts = {i.name for i in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in g.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in consts]


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _out(path, feeds) -> np.ndarray:
    return next(iter(run_onnx(path, feeds).values()))


@pytest.fixture(scope="module")
def bert(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def test_weight_rule_matches_a_restated_reference():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(300, 9)).astype(np.float32)  # more rows than one block of the writer
    w[:, 3] = 0.0
    w[:, 4] = 0.0
    w[:6, 4] = [127.0, 0.5, 1.5, 2.5, -0.5, -1.5]  # scale exactly 1: ties go to the even code
    codes, scale = int8_weight([w[:, :4], w[:, 4:]])  # two parts side by side, as Q|K|V are
    ref_codes, ref_scale = _reference_int8(w)
    assert np.array_equal(codes, ref_codes)
    np.testing.assert_allclose(scale, ref_scale, rtol=1e-7)
    assert codes[:6, 4].tolist() == [127, 0, 2, 2, 0, -2]
    assert scale[3] == 1.0 and not codes[:, 3].any()
    # per tensor: one scale over every part
    codes_t, scale_t = int8_weight([w[:, :4], w[:, 4:]], per_channel=False)
    assert np.ndim(scale_t) == 0 and np.isclose(float(scale_t), np.abs(w).max() / 127, rtol=1e-7)
    assert np.array_equal(codes_t, np.clip(np.round(w / np.float32(scale_t)), -127, 127).astype(np.int8))


@pytest.mark.parametrize("family,task", [("bert", "feature-extraction"), ("roberta", "feature-extraction"),
                                         ("distilbert", "feature-extraction"), ("bert", "sequence-classification")])
def test_native_graph_and_gate(tiny_onnx, tmp_path, family, task):
    src = tiny_onnx(family, exporter="torch", task=task, **SHAPE)
    res = quantize_int8_file(src, tmp_path / "n.onnx", NATIVE)
    assert res.stats["engine"] == "native", res.skipped
    assert res.gate.verified  # the file runner's ORT gate ran the output
    assert not res.skipped
    ops = _ops(tmp_path / "n.onnx")
    assert ops["QAttention"] == SHAPE["layers"] and ops["DynamicQuantizeLinear"] == SHAPE["layers"]
    assert ops["Softmax"] == 0 and ops["Attention"] == 0
    assert _constant_weight_matmuls(tmp_path / "n.onnx") == []
    # O, FFN in and out per layer, plus the pooler / classifier head
    assert ops["DynamicQuantizeMatMul"] >= 3 * SHAPE["layers"]
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3))
    got, ref = run_onnx(tmp_path / "n.onnx", feeds), run_onnx(src, feeds)
    for k in ref:
        assert got[k].shape == ref[k].shape
        assert _cos(got[k], ref[k]) > 0.99, k


def test_native_is_as_close_to_fp32_as_ort(bert, tmp_path):
    quantize_int8_file(bert, tmp_path / "n.onnx", NATIVE)
    res = quantize_int8_file(bert, tmp_path / "o.onnx", ORT)
    assert res.stats["engine"] == "ort" and res.stats["quantized_ops"].get("QAttention") == SHAPE["layers"]
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3), seed=2)
    n, o, ref = (_out(p, feeds) for p in (tmp_path / "n.onnx", tmp_path / "o.onnx", bert))
    err_n, err_o = np.abs(n - ref).max(), np.abs(o - ref).max()
    assert _cos(n, o) > 0.995
    assert err_n <= 2 * err_o + 1e-3, (err_n, err_o)


def test_native_weights_are_the_restated_rule(bert, tmp_path):
    from deploytool.graph import find_structure
    from deploytool.graph.weights import weight_array
    from deploytool.onnx_io import load_model

    quantize_int8_file(bert, tmp_path / "n.onnx", NATIVE)
    out = onnx.load(str(tmp_path / "n.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in out.graph.initializer}
    st = find_structure(load_model(bert))
    att = st.layers[0].attention
    wqkv = np.concatenate([weight_array(lin.weight) for lin in (att.q, att.k, att.v)], axis=1)
    qatt = next(n for n in out.graph.node if n.op_type == "QAttention")
    codes, scale = _reference_int8(wqkv)
    assert inits[qatt.input[1]].dtype == np.int8
    assert np.array_equal(inits[qatt.input[1]], codes)
    np.testing.assert_allclose(inits[qatt.input[4]], scale, rtol=1e-7)
    ffn = st.layers[1].ffn.intermediate
    w = weight_array(ffn.weight)
    codes, scale = _reference_int8(w)
    dq = next(n for n in out.graph.node if n.op_type == "DynamicQuantizeMatMul"
              and inits.get(n.input[1]) is not None and inits[n.input[1]].shape == w.shape
              and np.array_equal(inits[n.input[1]], codes))
    np.testing.assert_allclose(inits[dq.input[2]], scale, rtol=1e-7)
    # the word embedding table: int8 per hidden feature, read by Gather -> Cast(float) -> Mul(scale)
    table = weight_array(st.embeddings["word"])
    codes, scale = _reference_int8(table)
    gather = next(n for n in out.graph.node if n.op_type == "Gather" and inits.get(n.input[0]) is not None
                  and inits[n.input[0]].shape == table.shape)
    assert inits[gather.input[0]].dtype == np.int8 and np.array_equal(inits[gather.input[0]], codes)
    cast = next(n for n in out.graph.node if n.op_type == "Cast" and n.input[0] == gather.output[0])
    assert onnx.helper.get_attribute_value(cast.attribute[0]) == onnx.TensorProto.FLOAT
    mul = next(n for n in out.graph.node if n.op_type == "Mul" and cast.output[0] in n.input)
    np.testing.assert_allclose(inits[next(i for i in mul.input if i != cast.output[0])], scale, rtol=1e-7)
    assert not [n for n in out.graph.node if n.op_type == "DequantizeLinear"]


def test_word_rows_are_the_dequantized_table(bert, tmp_path):
    """The fp32 rows the int8 graph feeds the embedding sum are codes x scale of the restated rule
    (the Gather -> Cast -> Mul output, exposed as a graph output and run by ONNX Runtime)."""
    from deploytool.graph import find_structure
    from deploytool.graph.weights import weight_array
    from deploytool.onnx_io import load_model

    quantize_int8_file(bert, tmp_path / "n.onnx", NATIVE)
    out = onnx.load(str(tmp_path / "n.onnx"))
    table = weight_array(find_structure(load_model(bert)).embeddings["word"])
    codes, scale = _reference_int8(table)
    gather = next(n for n in out.graph.node if n.op_type == "Gather" and n.input[0] in
                  {t.name for t in out.graph.initializer if tuple(t.dims) == table.shape})
    cast = next(n for n in out.graph.node if n.op_type == "Cast" and n.input[0] == gather.output[0])
    mul = next(n for n in out.graph.node if n.op_type == "Mul" and cast.output[0] in n.input)
    out.graph.output.append(onnx.helper.make_tensor_value_info(mul.output[0], onnx.TensorProto.FLOAT, None))
    onnx.save(out, str(tmp_path / "rows.onnx"))
    ids = np.array([[0, 1, 2, 3, table.shape[0] - 1, 5, 6], [7, 8, 9, 10, 11, 12, 13]], np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    rows = run_onnx(tmp_path / "rows.onnx", feeds)[mul.output[0]]
    expected = codes.astype(np.float32)[ids] * scale
    np.testing.assert_array_equal(rows, expected)


@pytest.mark.parametrize("codes", ["int8", "uint8"])
def test_padding_mask_reaches_qattention(tiny_onnx, tmp_path, codes):
    """Scaled-up weights make attention peaked: a padded row must match the fp32 model only on its own
    tokens if the mask is applied (the unmasked fp32 model is the control that shows it matters).
    int8 codes only where this CPU multiplies u8 x s8 exactly: on x86 without VNNI the scaled-up weights
    saturate its int16 pairs (runtime/int8_kernel.py) and the int8 file's error is the kernel's, not the mask's."""
    from deploytool.runtime.int8_kernel import u8s8_exact

    if codes == "int8" and not u8s8_exact():
        pytest.skip("this CPU's u8 x s8 kernel saturates (no VNNI): the uint8 case checks the mask here")
    src = tiny_onnx("bert", exporter="torch", weight_scale=8.0, **SHAPE)
    quantize_int8_file(src, tmp_path / "n.onnx", Int8Config(engine="native", weights=codes))
    feeds = fixed_inputs(vocab=100, lengths=(8, 3), seed=4)
    unmasked = dict(feeds, attention_mask=np.ones_like(feeds["attention_mask"]))
    n, ref, ctl = _out(tmp_path / "n.onnx", feeds), _out(src, feeds), _out(src, unmasked)
    err_native = np.abs(n[1, :3] - ref[1, :3]).max()
    err_unmasked = np.abs(ctl[1, :3] - ref[1, :3]).max()
    assert err_unmasked > 0.3  # the mask changes the padded row's tokens
    assert err_native < 0.5 * err_unmasked, (err_native, err_unmasked)


def test_weights_are_lazy_until_written(bert):
    from deploytool.onnx_io import load_model

    model = load_model(bert)
    res = Int8QuantizePass(NATIVE)(model)
    assert res.stats["engine"] == "native"
    int8 = [v for v in model.graph.initializers.values() if v.dtype == ir.DataType.INT8]
    assert int8 and all(isinstance(v.const_value, ir.LazyTensor) for v in int8)


def test_sliced_model_falls_back_to_ort_with_a_reason(bert, tmp_path):
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

    sliced = tmp_path / "s.onnx"
    slice_file(bert, sliced, SliceConfig(width=0.75, depth=1.0))
    res = quantize_int8_file(sliced, tmp_path / "q.onnx", NATIVE)
    assert res.stats["engine"] == "ort"
    why = [s.reason for s in res.skipped if s.node == "engine"]
    assert len(why) == 1 and "wide in a 32-wide layer" in why[0] and "ORT's quantizer" in why[0], res.skipped
    feeds = fixed_inputs(vocab=100, lengths=(8, 5))
    assert _cos(_out(tmp_path / "q.onnx", feeds), _out(sliced, feeds)) > 0.99


def test_configs_the_native_writer_does_not_take_fall_back(bert, tmp_path):
    res = quantize_int8_file(bert, tmp_path / "u.onnx", Int8Config(engine="native", fusion="none"))
    assert res.stats["engine"] == "ort" and res.stats["fusion"] == "none"
    # the user's choice of an ORT-only option is a note, not a skip
    assert "fusion=none" in res.stats["engine_note"]
    assert not any(s.node == "engine" for s in res.skipped), res.skipped


def test_engine_is_validated():
    with pytest.raises(ConfigError, match="engine"):
        Int8Config(engine="onnx")
    assert Int8Config(engine="NATIVE").engine.value == "native"


def _hand_built(tmp_path, mask: str | None):
    """The hand-built attention layer of deploytool.testing.graphs (constant Reshape shapes, input x),
    with a mask term added to the scaled scores: ``padding`` = (1 - mask) * -10000 (BERT's), ``inverted`` =
    mask * -10000 (masks the kept keys), ``positive`` = (1 - mask) * +10000; None: no mask."""
    from onnx import TensorProto, helper, numpy_helper

    from deploytool.testing.graphs import attention_layer_model

    proto = attention_layer_model(hidden=16, heads=4, ffn=32)
    g = proto.graph
    if mask is not None:
        g.input.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]))
        big = 10000.0 if mask == "positive" else -10000.0
        g.initializer.extend([numpy_helper.from_array(np.array([1, 2], np.int64), "mask_axes"),
                              numpy_helper.from_array(np.array(1.0, np.float32), "one"),
                              numpy_helper.from_array(np.array(big, np.float32), "big")])
        kept = "mf" if mask == "inverted" else "inv"
        extra = [helper.make_node("Unsqueeze", ["attention_mask", "mask_axes"], ["m4"], name="mask/Unsqueeze"),
                 helper.make_node("Cast", ["m4"], ["mf"], name="mask/Cast", to=TensorProto.FLOAT),
                 helper.make_node("Sub", ["one", "mf"], ["inv"], name="mask/Sub"),
                 helper.make_node("Mul", [kept, "big"], ["mterm"], name="mask/Mul"),
                 helper.make_node("Add", ["scaled", "mterm"], ["masked"], name="scores/mask")]
        nodes = list(g.node)
        at = next(i for i, n in enumerate(nodes) if n.op_type == "Softmax")
        nodes[at].input[0] = "masked"
        del g.node[:]
        g.node.extend(nodes[:at] + extra + nodes[at:])
    proto.ir_version = 9  # what ONNX Runtime reads
    path = tmp_path / f"layer_{mask}.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("mask", [None, "padding"])
def test_hand_built_layer(tmp_path, mask):
    src = _hand_built(tmp_path, mask)
    res = quantize_int8_file(src, tmp_path / "n.onnx", EXACT)
    assert res.stats["engine"] == "native", res.skipped
    q = next(n for n in onnx.load(str(tmp_path / "n.onnx")).graph.node if n.op_type == "QAttention")
    assert (len(q.input) > 5 and q.input[5] != "") == (mask is not None)  # the mask reaches QAttention
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((2, 6, 16)).astype(np.float32)}
    if mask is not None:
        feeds["attention_mask"] = np.array([[1] * 6, [1, 1, 1, 0, 0, 0]], np.int64)
    assert _cos(_out(tmp_path / "n.onnx", feeds), _out(src, feeds)) > 0.99


@pytest.mark.parametrize("mask", ["inverted", "positive"])
def test_a_mask_that_is_not_padding_falls_back(tmp_path, mask):
    src = _hand_built(tmp_path, mask)
    res = quantize_int8_file(src, tmp_path / "n.onnx", NATIVE, verify=False)
    assert res.stats["engine"] == "ort"
    assert any(s.node == "engine" and "not the padding mask" in s.reason for s in res.skipped), res.skipped


def test_external_data_in_and_out(bert, tmp_path, monkeypatch):
    """An input with external data, and an output over the (lowered) size limit: one data file beside the
    output, the same numbers as from the single-file input."""
    from deploytool import onnx_io

    quantize_int8_file(bert, tmp_path / "small.onnx", NATIVE)
    folder = tmp_path / "in"
    folder.mkdir()
    onnx.save_model(onnx.load(str(bert)), str(folder / "model.onnx"), save_as_external_data=True,
                    location="model.onnx.data", size_threshold=1024)
    monkeypatch.setattr(onnx_io, "EXTERNAL_DATA_BYTES", 0)
    res = quantize_int8_file(folder / "model.onnx", tmp_path / "big.onnx", NATIVE)
    assert res.stats["engine"] == "native" and res.gate.verified
    proto = onnx.load(str(tmp_path / "big.onnx"), load_external_data=False)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    assert len(locations) == 1 and (tmp_path / locations.pop()).is_file()
    feeds = fixed_inputs(vocab=100, lengths=(8, 5))
    np.testing.assert_array_equal(_out(tmp_path / "big.onnx", feeds), _out(tmp_path / "small.onnx", feeds))


@pytest.mark.parametrize("name", ["bert", "bert-idsonly"])
def test_sdpa_export_scales_taken_from_shapes(tmp_path, name):
    """transformers' default attention (SDPA) exported by TorchScript scales Q and K by Sqrt(1/Sqrt(head size))
    computed from Shape at run time (and, without a mask input, adds a mask of ones made from shapes): the
    writer evaluates those from the attention's shapes and still writes QAttention."""
    from deploytool.testing import conformance as C

    case = C.MODEL_BY_NAME[name]
    src = C.export(case, "torchscript-17", tmp_path / "sdpa")
    assert _ops(src)["Sqrt"] >= 2 * case_layers(src)  # the run-time scales are there
    res = quantize_int8_file(src, tmp_path / "n.onnx", EXACT)
    assert res.stats["engine"] == "native", res.skipped
    ops = _ops(tmp_path / "n.onnx")
    assert ops["QAttention"] == case_layers(src) and ops["Softmax"] == 0
    q = next(n for n in onnx.load(str(tmp_path / "n.onnx")).graph.node if n.op_type == "QAttention")
    assert not any(a.name == "scale" for a in q.attribute)  # the product is 1/sqrt(head size), QAttention's own
    assert (len(q.input) > 5 and q.input[5] != "") == (name == "bert")
    feeds = C.feeds(case)
    got, ref = run_onnx(tmp_path / "n.onnx", feeds), run_onnx(src, feeds)
    for k in ref:
        assert _cos(got[k], ref[k]) > 0.99, k


def case_layers(path) -> int:
    return sum(n.op_type == "Softmax" for n in onnx.load(str(path)).graph.node)


def test_per_tensor_scales(bert, tmp_path):
    res = quantize_int8_file(bert, tmp_path / "t.onnx", Int8Config(engine="native", per_channel=False))
    assert res.stats["engine"] == "native" and res.stats["per_channel"] is False
    out = onnx.load(str(tmp_path / "t.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in out.graph.initializer}
    scales = [inits[n.input[4]] for n in out.graph.node if n.op_type == "QAttention"]
    scales += [inits[n.input[2]] for n in out.graph.node if n.op_type == "DynamicQuantizeMatMul"]
    assert scales and all(s.size == 1 for s in scales)
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3))
    assert _cos(_out(tmp_path / "t.onnx", feeds), _out(bert, feeds)) > 0.98


@pytest.mark.parametrize("mask", [None, "padding", "inverted", "positive"])
def test_mask_probes_reach_the_same_verdict_in_the_reference_evaluator(tmp_path, monkeypatch, mask):
    """The planner's probes run in ONNX Runtime; with ORT refusing every probe subgraph (the fallback), ONNX's
    reference evaluator must reach the same engine and the same reasons."""
    from deploytool.passes import int8_native

    src = _hand_built(tmp_path, mask)
    seen = []
    real = int8_native._ProbeEvaluator._ort_session

    def counted(proto):
        seen.append(proto)
        return real(proto)

    monkeypatch.setattr(int8_native._ProbeEvaluator, "_ort_session", staticmethod(counted))
    first = quantize_int8_file(src, tmp_path / "ort.onnx", NATIVE, verify=False)
    assert seen or mask is None  # a mask term is probed
    monkeypatch.setattr(int8_native._ProbeEvaluator, "_ort_session", staticmethod(lambda proto: None))
    second = quantize_int8_file(src, tmp_path / "ref.onnx", NATIVE, verify=False)
    assert first.stats["engine"] == second.stats["engine"] == ("native" if mask in (None, "padding") else "ort")
    assert [(s.node, s.reason) for s in first.skipped] == [(s.node, s.reason) for s in second.skipped]


def test_int8_pass_does_not_load_the_reference_evaluator(bert, tmp_path):
    """The probes run in ONNX Runtime, which the pass imports anyway: ONNX's reference evaluator (~0.1 s to
    import) stays out of the process (a fresh one: other tests may have imported it here)."""
    import subprocess
    import sys

    code = ("import sys; from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file; "
            f"r = quantize_int8_file({str(bert)!r}, {str(tmp_path / 'q.onnx')!r}, Int8Config(engine='native')); "
            "print(r.stats['engine'], 'onnx.reference' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["native", "False"]


# ----------------------------------------------------------------------------------------- --fusion onnx
ONNX_ATT = Int8Config(engine="native", fusion="onnx", weights=exact_int8_codes())


def test_onnx_attention_computes_what_qattention_does(bert, tmp_path):
    """``fusion="onnx"``: ONNX's Attention (opset 23) fed an int8 Q|K|V DynamicQuantizeMatMul, against the
    default file's QAttention on the same int8 codes (another kernel and op: ORT's contrib QAttention). A padded
    batch: the mask must reach it; a row of one, as the benchmark runs it, and the padded row on its tokens."""
    qa, ox = tmp_path / "qa.onnx", tmp_path / "ox.onnx"
    quantize_int8_file(bert, qa, EXACT)
    res = quantize_int8_file(bert, ox, ONNX_ATT)
    assert res.stats["fusion"] == "onnx" and res.stats["opset"] == "17 -> 23"
    ops = _ops(ox)
    assert ops["Attention"] == SHAPE["layers"] and "QAttention" not in ops and "DynamicQuantizeLinear" not in ops
    assert ops["DynamicQuantizeMatMul"] == _ops(qa)["DynamicQuantizeMatMul"] + SHAPE["layers"]
    m = onnx.load(str(ox))
    assert {o.domain: o.version for o in m.opset_import}[""] == 23
    for n in m.graph.node:
        if n.op_type == "Attention":
            attrs = {a.name: a.i for a in n.attribute}
            assert attrs["q_num_heads"] == attrs["kv_num_heads"] == SHAPE["heads"] and len(n.input) == 4
    feeds = fixed_inputs(vocab=100, lengths=(8, 3), seed=4)
    a, b = _out(ox, feeds), _out(qa, feeds)
    np.testing.assert_allclose(a[0], b[0], atol=1e-4)
    np.testing.assert_allclose(a[1, :3], b[1, :3], atol=1e-4)
    one = {k: v[:1] for k, v in feeds.items()}
    np.testing.assert_allclose(_out(ox, one), _out(qa, one), atol=1e-5)
    assert _cos(a, _out(bert, feeds)) > 0.99


def test_onnx_attention_applies_the_padding_mask(tiny_onnx, tmp_path):
    """As test_padding_mask_reaches_qattention: peaked attention, the unmasked fp32 model as the control."""
    src = tiny_onnx("bert", exporter="torch", weight_scale=8.0, **SHAPE)
    quantize_int8_file(src, tmp_path / "o.onnx", Int8Config(engine="native", fusion="onnx", weights="uint8"))
    feeds = fixed_inputs(vocab=100, lengths=(8, 3), seed=4)
    unmasked = dict(feeds, attention_mask=np.ones_like(feeds["attention_mask"]))
    o, ref, ctl = _out(tmp_path / "o.onnx", feeds), _out(src, feeds), _out(src, unmasked)
    err_onnx = np.abs(o[1, :3] - ref[1, :3]).max()
    err_unmasked = np.abs(ctl[1, :3] - ref[1, :3]).max()
    assert err_unmasked > 0.3
    assert err_onnx < 0.5 * err_unmasked, (err_onnx, err_unmasked)


def test_onnx_attention_file_is_read_by_the_finder(bert, tmp_path):
    """The int8 file's 3-D Attention (head count in q_num_heads / kv_num_heads) is an encoder layer to the
    structure finder (inspect, the cost model): one attribute site per count, the packed Q|K|V behind the Split."""
    from deploytool.graph import find_structure
    from deploytool.onnx_io import load_model

    quantize_int8_file(bert, tmp_path / "o.onnx", ONNX_ATT)
    s = find_structure(load_model(tmp_path / "o.onnx"))
    assert len(s.layers) == SHAPE["layers"]
    for layer in s.layers:
        att = layer.attention
        assert (att.num_heads, att.head_size) == (SHAPE["heads"], SHAPE["hidden"] // SHAPE["heads"])
        assert att.qkv is not None and att.qkv.node.op_type == "DynamicQuantizeMatMul"
        assert sorted(h.attribute for h in att.head_sites) == ["kv_num_heads", "q_num_heads"]


def test_onnx_attention_options_are_refused_in_one_line(bert, tmp_path):
    with pytest.raises(ConfigError, match="native engine only"):
        Int8Config(engine="ort", fusion="onnx")
    with pytest.raises(ConfigError, match="dynamic int8"):
        Int8Config(fusion="onnx", static=True, calib_data="x.csv")


def test_onnx_attention_on_a_graph_the_writer_cannot_read_falls_back_to_qattention(bert, tmp_path):
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

    sliced = tmp_path / "s.onnx"
    slice_file(bert, sliced, SliceConfig(width=0.75, depth=1.0))
    res = quantize_int8_file(sliced, tmp_path / "q.onnx", Int8Config(fusion="onnx"))
    assert res.stats["engine"] == "ort"
    assert any(s.node == "fusion" and "ONNX's Attention" in s.reason for s in res.skipped), res.skipped
    feeds = fixed_inputs(vocab=100, lengths=(8, 5))
    assert _cos(_out(tmp_path / "q.onnx", feeds), _out(sliced, feeds)) > 0.99


def test_a_split_by_num_outputs_is_read_as_the_sized_one(bert, tmp_path):
    """Opset 18's Split(num_outputs=3) without sizes in place of the writer's sized Split: the same Q|K|V parts
    (each Attention was read as three heads-wide projections 3A wide, the whole Q|K|V for each)."""
    from deploytool.graph import find_structure
    from deploytool.onnx_io import load_model

    quantize_int8_file(bert, tmp_path / "o.onnx", ONNX_ATT)
    m = onnx.load(str(tmp_path / "o.onnx"))
    for n in m.graph.node:
        if n.op_type == "Split":
            del n.input[1:]
            n.attribute.append(onnx.helper.make_attribute("num_outputs", 3))
    onnx.save(m, str(tmp_path / "n.onnx"))
    feeds = fixed_inputs(vocab=100, lengths=(8, 3), seed=4)
    np.testing.assert_array_equal(_out(tmp_path / "n.onnx", feeds), _out(tmp_path / "o.onnx", feeds))
    s = find_structure(load_model(tmp_path / "n.onnx"))
    assert [la.attention.num_heads for la in s.layers] == [SHAPE["heads"]] * SHAPE["layers"]
    assert all(la.attention.qkv is not None and la.attention.qkv.out_features == 3 * SHAPE["hidden"]
               for la in s.layers)


def test_albert_shared_layer_keeps_one_qkv_bias(tmp_path, tiny_onnx):
    """ALBERT runs one layer's weights in every layer: the writer shared the packed QKV weight but wrote the packed
    bias once per layer (3 equal [96] vectors in a 3-layer file). One stored bias, read by every QAttention; a model
    whose layers have their own biases (BERT) keeps one per layer. Reference: PyTorch's num_parameters() without
    the pooler (the export does not use it), which inspect now matches without a duplicate."""
    import torch
    from transformers import AlbertConfig, AlbertModel

    from deploytool.export import export
    from deploytool.export.config import ExportConfig
    from deploytool.inspection import inspect_model

    torch.manual_seed(0)
    model = AlbertModel(AlbertConfig(embedding_size=16, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                     intermediate_size=64, vocab_size=100, max_position_embeddings=64))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    model.save_pretrained(tmp_path / "albert")
    export(ExportConfig(model=str(tmp_path / "albert")), tmp_path / "albert.onnx")
    res = quantize_int8_file(tmp_path / "albert.onnx", tmp_path / "q.onnx", NATIVE)
    assert res.stats["engine"] == "native" and res.gate.verified
    g = onnx.load(str(tmp_path / "q.onnx")).graph
    qatt = [n for n in g.node if n.op_type == "QAttention"]
    assert len(qatt) == 3 and len({n.input[1] for n in qatt}) == 1 and len({n.input[2] for n in qatt}) == 1
    r = inspect_model(tmp_path / "q.onnx")
    assert r.total_params == model.num_parameters() - sum(p.numel() for p in model.pooler.parameters())
    assert r.duplicate_bytes == 0
    quantize_int8_file(tiny_onnx("bert", exporter="torch", **SHAPE), tmp_path / "b.onnx", NATIVE)
    bert = [n for n in onnx.load(str(tmp_path / "b.onnx")).graph.node if n.op_type == "QAttention"]
    assert len({n.input[2] for n in bert}) == SHAPE["layers"]
