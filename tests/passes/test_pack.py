"""Packed ternary/binary models: equal to the fake-quantized fp32 model, bits really stored, sizes.

Tolerances: where activations stay fp32 (MatMulNBits accuracy_level 0, embeddings) the packed model
equals the fp32 model with quantized weights to 1e-5. The int8-kernel paths (speed, densest, binary:
DynamicQuantizeMatMul) also quantize activations per tensor to uint8 at run time; there the stated
tolerance is 2e-2 absolute on LayerNorm-scaled outputs (measured ~5e-4), and the stored codes are
checked bit-exactly against the quantizer instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from deploytool import onnx_io
from deploytool.errors import PassRefusedError
from deploytool.passes.pack_weights import (
    PACKING_KEY, FakeQuantWeightsPass, PackConfig, PackWeightsPass, pack_file,
)
from deploytool.quant import binarize, ternarize
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=3)
FEEDS = fixed_inputs(vocab=100, lengths=(8, 5))


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _run(path_or_bytes):
    out = run_onnx(path_or_bytes, FEEDS)
    return next(iter(out.values()))


def _reference(src, config):
    model = onnx_io.load_model(src)
    FakeQuantWeightsPass(config)(model)
    return _run(_bytes(model))


def _bytes(model):
    import onnx_ir as ir

    return ir.serde.serialize_model(model).SerializeToString()


CASES = [  # weights, runtime, granularity, embeddings, tolerance
    ("ternary", "memory", "row", None, 1e-5),
    ("binary", "memory", "layer", None, 1e-5),
    ("ternary", "memory", "layer", "int8", 1e-5),
    ("ternary", "memory", "row", "fp32", 1e-5),
    ("ternary", "speed", "layer", None, 2e-2),
    ("ternary", "speed", "row", None, 2e-2),
    ("ternary", "densest", "row", None, 2e-2),
    ("binary", "speed", "row", None, 2e-2),
    ("binary", "densest", "layer", "binary", 2e-2),
]


@pytest.mark.parametrize("weights,runtime,granularity,embeddings,tol", CASES)
def test_packed_equals_fake_quantized(src, tmp_path, weights, runtime, granularity, embeddings, tol):
    cfg = PackConfig(weights=weights, runtime=runtime, granularity=granularity, embeddings=embeddings,
                     accuracy_level=0)
    out = tmp_path / "packed.onnx"
    res = pack_file(src, out, cfg)
    y, ref, y32 = _run(out), _reference(src, cfg), _run(src)
    assert np.abs(y - ref).max() <= tol
    # and the quantization really changed the model (the comparison is not vacuous)
    assert np.abs(ref - y32).max() > 10 * tol
    # 2 layers x (Q, K, V, O, FFN in, FFN out) + the word embeddings unless they stay fp32
    assert res.stats["weights_packed"] == (12 if embeddings == "fp32" else 13)
    assert res.bytes_after < res.bytes_before


def _decode_trit5(data: np.ndarray, n: int) -> np.ndarray:
    digits = []
    for byte in data.tolist():
        for _ in range(5):
            digits.append(byte % 3 - 1)
            byte //= 3
    return np.array(digits[:n], np.int8)


def _decode_2bit(data: np.ndarray, n: int) -> np.ndarray:
    vals = []
    for byte in data.ravel().tolist():
        vals.extend(((byte >> s) & 3) - 2 for s in (0, 2, 4, 6))
    return np.array(vals[:n], np.int8)


def _pair_bytes(t: onnx.TensorProto, n: int) -> np.ndarray:
    """A weight's packed bytes, stored in pairs as little-endian uint16 (one zero byte padding an odd count)."""
    assert t.data_type == onnx.TensorProto.UINT16 and list(t.dims) == [-(-n // 2)]
    raw = np.frombuffer(t.raw_data, np.uint8)
    assert raw.size == 2 * -(-n // 2) and not raw[n:].any()
    return raw[:n]


@pytest.mark.parametrize("weights,runtime,granularity", [("ternary", "speed", "row"), ("ternary", "densest", "layer"),
                                                         ("binary", "speed", "layer"), ("ternary", "memory", "row")])
def test_stored_codes_are_the_quantizer_codes(src, tmp_path, weights, runtime, granularity):
    cfg = PackConfig(weights=weights, runtime=runtime, granularity=granularity)
    out = tmp_path / "p.onnx"
    pack_file(src, out, cfg)
    orig = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(src)).graph.initializer}
    packed = onnx.load(str(out))
    inits = {t.name: t for t in packed.graph.initializer}
    record = json.loads({p.key: p.value for p in packed.metadata_props}[PACKING_KEY])
    checked = 0
    for name, info in record.items():
        if info["role"] == "embedding":
            continue
        w = orig[name].astype(np.float32)  # MatMul B: [K, N]
        quant = binarize if weights == "binary" else ternarize
        codes, alpha = quant(w.T, granularity)  # PyTorch layout [N, K]
        stem = name.replace("::", "_").replace("/", "_")
        if runtime == "memory":
            t = inits[stem + "_nbits2"]
            blob = numpy_helper.to_array(t)  # [N, blocks, bs/4]
            k = w.shape[0]
            got = np.stack([_decode_2bit(blob[j], blob.shape[1] * blob.shape[2] * 4)[:k] for j in range(blob.shape[0])])
            np.testing.assert_array_equal(got, codes)
            assert t.data_type == onnx.TensorProto.UINT8
        elif info["scheme"] == "ternary2":
            t = inits[stem + "_int2"]
            assert t.data_type == onnx.TensorProto.INT2 and len(t.raw_data) == -(-w.size // 4)
            np.testing.assert_array_equal(numpy_helper.to_array(t).astype(np.int8), codes.T)
        elif info["scheme"] == "trit5":
            t = inits[stem + "_trit5"]
            raw = _pair_bytes(t, -(-w.size // 5))
            np.testing.assert_array_equal(_decode_trit5(raw, w.size).reshape(w.shape), codes.T)
        else:
            t = inits[stem + "_binary1"]
            bits = np.unpackbits(_pair_bytes(t, -(-w.size // 8)), bitorder="little")[: w.size].reshape(w.shape)
            np.testing.assert_array_equal(bits.astype(np.int8) * 2 - 1, codes.T)
        assert name not in inits  # the fp32 weight is gone
        checked += 1
    assert checked == 12


def test_metadata_and_roles(src, tmp_path):
    out = tmp_path / "p.onnx"
    res = pack_file(src, out, PackConfig(weights="ternary", runtime="densest"))
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    record = json.loads(meta[PACKING_KEY])
    roles = sorted(r["role"] for r in record.values())
    assert roles.count("attention") == 8 and roles.count("ffn") == 4 and roles.count("embedding") == 1
    emb = next(r for r in record.values() if r["role"] == "embedding")
    assert emb["shape"] == [100, 32] and emb["scheme"] == "trit5"
    lin = next(r for r in record.values() if r["role"] == "ffn")
    assert lin["scheme"] == "trit5" and 1.6 <= lin["bits"] < 1.7
    assert "qat" in res.stats["note"]
    assert set(res.stats["by_role"]) == {"attention", "ffn", "embedding"}


def test_pooler_and_classifier_stay_fp32(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", exporter="torch", task="sequence-classification", **SHAPE)
    res = pack_file(src, tmp_path / "p.onnx", PackConfig(weights="binary", runtime="memory"))
    reasons = " ".join(s.reason for s in res.skipped)
    assert res.stats["weights_packed"] == 13 and "pooler" in reasons


@pytest.mark.parametrize("weights,runtime,target", [("ternary", "speed", 14.9), ("ternary", "densest", 18.0),
                                                    ("binary", "speed", 28.0)])
def test_linear_weights_shrink_by_target(tiny_onnx, tmp_path, weights, runtime, target):
    src = tiny_onnx("bert", exporter="torch", layers=1, hidden=128, heads=4, ffn=512, vocab=100)
    res = pack_file(src, tmp_path / "p.onnx", PackConfig(weights=weights, runtime=runtime, embeddings="fp32"))
    for role in ("attention", "ffn"):
        r = res.stats["by_role"][role]
        assert r["bytes_before"] / r["bytes_after"] >= target, (role, r)


def test_ort_folds_the_unpacking_subgraph(src, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "p.onnx"
    pack_file(src, out, PackConfig(weights="ternary", runtime="densest", embeddings="fp32"))
    packed = onnx.load(str(out))
    tables = {t.name for t in packed.graph.initializer if list(t.dims) == [256, 5]}
    pairs = {t.name for t in packed.graph.initializer if t.data_type == onnx.TensorProto.UINT16}
    made = {o: n for n in packed.graph.node for o in n.output}
    lookups = [n for n in packed.graph.node if n.op_type == "Gather" and n.input[1] in made
               and made[n.input[1]].op_type == "Cast" and made[n.input[1]].input[0] in pairs]
    assert len(lookups) == 12  # one two-byte -> 10 trits lookup per packed linear weight
    assert len({n.input[0] for n in lookups}) == 1 and len(tables) == 1  # one pair table, made from one byte table
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    opt = onnx.load(str(tmp_path / "opt.onnx"))
    ops = [n.op_type for n in opt.graph.node]
    assert ops.count("DynamicQuantizeMatMul") == 12
    assert not any(n.op_type == "Gather" and n.input[0] in tables for n in opt.graph.node)  # all folded
    assert not any(set(n.input) & pairs for n in opt.graph.node)


@pytest.mark.parametrize("scheme,decode", [
    ("ternary2", lambda b: [((b >> (2 * i)) & 3) - 2 for i in range(4)]),  # packing.py: code t + 2, low bits first
    ("trit5", lambda b: [(b // 3 ** i) % 3 - 1 for i in range(5)]),  # base 3, first trit least significant
    ("binary1", lambda b: [1 if (b >> i) & 1 else -1 for i in range(8)]),  # bit (s > 0), first weight in bit 0
])
def test_unpack_table_decodes_every_byte(scheme, decode):
    """The lookup table the packed graph unpacks with, against each format restated from packing.py's doc;
    and it inverts the packer on every code combination a byte can hold."""
    import itertools

    from deploytool.passes.pack_graph import unpack_table
    from deploytool.quant import packing

    table = unpack_table(scheme)
    assert table.dtype == np.int8 and table.shape == (256, packing.PER_BYTE[scheme])
    valid = 243 if scheme == "trit5" else 256
    assert table[:valid].tolist() == [decode(b) for b in range(valid)]
    values = (-1, 1) if scheme == "binary1" else (-1, 0, 1)
    combos = np.array(list(itertools.product(values, repeat=packing.PER_BYTE[scheme])), np.int8)
    pack = {"ternary2": packing.pack_2bit, "trit5": packing.pack_trit5, "binary1": packing.pack_bits}[scheme]
    np.testing.assert_array_equal(table[pack(combos)[:, 0]], combos)


@pytest.mark.parametrize("scheme,decode", [
    ("trit5", lambda b: [(b // 3 ** i) % 3 - 1 for i in range(5)]),
    ("binary1", lambda b: [1 if (b >> i) & 1 else -1 for i in range(8)]),
])
def test_pair_lookup_decodes_every_two_bytes(tmp_path, scheme, decode):
    """The two-byte lookup a packed weight unpacks with, as ONNX Runtime folds it from the byte table: every
    uint16 value gives its first byte's values (the low byte, first in the file), then its second's."""
    import onnx_ir as ir
    import onnxruntime as ort

    from deploytool.passes.pack_graph import _Builder, _unpack_pairs, pair_values

    x = ir.Value(name="x", type=ir.TensorType(ir.DataType.UINT16), shape=ir.Shape([65536]))
    graph = ir.Graph([x], [], nodes=[], name="g", opset_imports={"": 17})
    b = _Builder(graph)
    y = _unpack_pairs(b, x, scheme, "t")
    graph.extend(b.take())
    graph.outputs.append(y)
    path = tmp_path / "pairs.onnx"
    ir.save(ir.Model(graph, ir_version=10), path)
    every = np.arange(65536, dtype=np.uint16)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": every})[0]
    valid = 243 if scheme == "trit5" else 256
    for v in list(range(0, 65536, 97)) + [valid - 1 + 256 * (valid - 1)]:
        assert got[v].tolist() == decode(v & 255) + decode(v >> 8), v
    # the file's bytes read as pairs: a weight's bytes in order, an odd count padded with one zero byte
    np.testing.assert_array_equal(pair_values(np.array([1, 2, 3], np.uint8)), np.array([513, 3], np.uint16))


def test_speed_upgrades_opset_or_refuses(src, tmp_path):
    out = tmp_path / "p.onnx"
    res = pack_file(src, out, PackConfig(runtime="speed"))
    assert {o.domain: o.version for o in onnx.load(str(out)).opset_import}[""] == 25
    assert "-> 25" in str(res.stats["opset"])
    with pytest.raises(PassRefusedError, match="opset 17 is too old for INT2"):
        pack_file(src, tmp_path / "q.onnx", PackConfig(runtime="speed", upgrade_opset=False))
    assert not (tmp_path / "q.onnx").exists()
    # densest and memory need no upgrade
    pack_file(src, tmp_path / "d.onnx", PackConfig(runtime="densest", upgrade_opset=False))
    assert {o.domain: o.version for o in onnx.load(str(tmp_path / "d.onnx")).opset_import}[""] == 17


def test_upgrade_keeps_layernorm_written_into_an_older_opset():
    """ORT's optimizer writes LayerNormalization (opset 17) and its own SimplifiedLayerNormalization into
    the default domain of opset-14 graphs (RoBERTa / ModernBERT, TorchScript exporter at 14, O1 and up);
    onnx's converter has no adapter for them and pack --runtime speed refused those files. Both must come
    through unchanged."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    import onnx_ir as ir

    from deploytool.passes.upgrade_opset import upgrade_opset

    rng = np.random.default_rng(0)
    g, b = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("LayerNormalization", ["r", "g", "b"], ["n"], axis=-1, epsilon=1e-5),
         helper.make_node("SimplifiedLayerNormalization", ["n", "g"], ["y"], axis=-1, epsilon=1e-5)],
        "ln", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        [numpy_helper.from_array(g, "g"), numpy_helper.from_array(b, "b")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    conv = ir.serde.serialize_model(upgrade_opset(ir.serde.deserialize_model(proto), 25))
    assert {o.domain: o.version for o in conv.opset_import} == {"": 25}
    assert [(n.domain, n.op_type) for n in conv.graph.node] == [("", "Relu"), ("", "LayerNormalization"),
                                                                 ("", "SimplifiedLayerNormalization")]
    x = rng.normal(size=(2, 8)).astype(np.float32)
    y = ort.InferenceSession(conv.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    r = np.maximum(x, 0).astype(np.float64)
    n = (r - r.mean(-1, keepdims=True)) / np.sqrt(r.var(-1, keepdims=True) + 1e-5) * g + b
    want = n / np.sqrt((n * n).mean(-1, keepdims=True) + 1e-5) * g
    assert np.abs(y - want).max() < 1e-5


def test_int2_weights_are_held_packed_in_memory(src):
    """The pass holds each INT2 weight as its packed bytes (four codes a byte), not the int8 codes until the model
    is written (BERT-base: 85 MB of codes held, ~60 MB of the pass's peak), and they decode to TWN's codes."""
    import onnx_ir as ir

    model = onnx_io.load_model(src)
    weights = {v.name: np.asarray(v.const_value.numpy(), np.float32) for v in model.graph.initializers.values()
               if v.const_value is not None and len(v.shape or ()) == 2}
    from deploytool.passes.pack_weights import pack_pipeline

    pack_pipeline(PackConfig(weights="ternary"))(model)  # the opset upgrade INT2 needs, then the packing
    int2 = [v for v in model.graph.initializers.values() if v.dtype == ir.DataType.INT2]
    assert len(int2) == 12
    for v in int2:
        t = v.const_value
        n = int(np.prod(t.shape.numpy()))
        assert np.asarray(t.raw).nbytes == -(-n // 4)  # packed, not one byte a code
        w = next(a for k, a in weights.items() if v.name.startswith(k.replace("::", "_").replace("/", "_")))
        want, _ = ternarize(w.T, "layer")
        np.testing.assert_array_equal(t.numpy().astype(np.int8), want.T)


def test_pass_refuses_packed_model(src):
    model = onnx_io.load_model(src)
    PackWeightsPass(PackConfig(runtime="memory"))(model)
    with pytest.raises(PassRefusedError, match="already packed"):
        PackWeightsPass(PackConfig(runtime="memory"))(model)


@pytest.mark.parametrize("family, exporter", [("bert", "torch"), ("roberta", "dynamo"), ("distilbert", "optimum")])
@pytest.mark.parametrize("weights, embeddings, positions", [
    ("ternary", "ternary", "fp32"), ("binary", "binary", "int8"), ("ternary", "int8", "ternary"),
    ("split-binary", "binary", "binary"), ("split-binary", "split-binary", "split-binary"),
])
def test_gate_memory_reference_equals_the_fp32_fake_quantized_file(tiny_onnx, tmp_path, family, exporter, weights,
                                                                   embeddings, positions):
    """The gate's in-memory reference (tables kept as row codes, gathered rows dequantized in the graph)
    computes bit for bit what the fake-quantized fp32 file computes (every table multiplied out), both run
    the same way (no graph optimization, no prepacking), for exports of three tools and each table scheme."""
    from deploytool.passes.pack_weights import build_gate_reference, build_memory_reference
    from deploytool.runtime import verify as V
    from deploytool.runtime.infer import make_session

    src = tiny_onnx(family, exporter, **SHAPE)
    cfg = PackConfig(weights=weights, embeddings=embeddings, position_embeddings=positions, runtime="memory")
    feeds = V.gate_feeds(V.gate_plan(onnx_io.load_proto(src, load_external_data=False), src))
    (tmp_path / "m").mkdir()
    (tmp_path / "f").mkdir()
    mem = build_memory_reference(src, tmp_path / "m", cfg)
    graph = onnx.load(str(mem.path), load_external_data=False).graph
    scales = [n for n in graph.node if n.op_type == "Gather" and "_row_scale" in n.input[0]]
    tables = 1 + (positions != "fp32") * (1 if family == "distilbert" else 2)  # word; position (and token type)
    assert len(scales) >= tables * (2 if embeddings == "split-binary" else 1)  # one per plane
    read = {n.input[0] for n in graph.node if n.op_type == "Gather"}
    word, = (t for t in graph.initializer if t.name in read and "word_embeddings" in t.name and len(t.dims) == 2)
    assert word.data_type == onnx.TensorProto.INT8  # the word rows are gathered as codes, not multiplied out
    # every linear weight is its codes (two planes for split-binary) times its scales in the graph, not fp32 arrays
    planes = 2 if weights == "split-binary" else 1
    casts = [n for n in graph.node if n.op_type == "Cast" and "_codes" in n.input[0]]
    n_linear = sum(1 for t in graph.initializer if t.name.endswith("_codes" if planes == 1 else "_codes1"))
    assert n_linear >= 4 * 2 and len(casts) == planes * n_linear, (n_linear, len(casts))
    if planes == 2:
        assert sum(1 for t in graph.initializer if t.name.endswith("_codes2")) == n_linear
    got = V.reference_outputs(mem, feeds)
    sess = make_session(build_gate_reference(src, tmp_path / "f", cfg),
                        session_config={"session.disable_prepacking": "1"}, optimize=False)
    names = [o.name for o in sess.get_outputs()]
    declared = {i.name for i in sess.get_inputs()}
    want = dict(zip(names, sess.run(names, {k: v for k, v in feeds.items() if k in declared})))
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("weights", ["ternary", "binary"])
@pytest.mark.parametrize("granularity", ["layer", "row"])
def test_gate_memory_reference_makes_each_weight_from_its_codes_in_the_graph(tmp_path, weights, granularity):
    """The gate's in-memory reference holds each one-plane weight as int8 codes and a scale that
    ``Mul(Cast(codes), scale)`` multiplies out as it runs, in either layout (MatMul's [in, out]; Gemm transB=1's
    [out, in], its row scales a column) and for a weight two MatMuls share: the outputs equal, bit for bit, those
    of the fake-quantized fp32 file, and the codes are TWN/BWN's of the weight restated here."""
    from onnx import TensorProto, helper

    from deploytool.passes.pack_weights import build_gate_reference, build_memory_reference
    from deploytool.runtime import verify as V
    from deploytool.runtime.infer import make_session

    rng = np.random.default_rng(3)
    w_in_out = (rng.normal(size=(16, 24)) * 0.05).astype(np.float32)
    w_out_in = (rng.normal(size=(12, 24)) * 0.05).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]),
             helper.make_node("Gemm", ["h", "w2"], ["y"], transB=1),
             helper.make_node("MatMul", ["x", "w1"], ["z"])]  # w1 read twice
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 12]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 24])],
        [numpy_helper.from_array(w_in_out, "w1"), numpy_helper.from_array(w_out_in, "w2")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    cfg = PackConfig(weights=weights, granularity=granularity, runtime="memory", embeddings="fp32")
    feeds = {"x": rng.normal(size=(3, 16)).astype(np.float32)}
    (tmp_path / "m").mkdir()
    (tmp_path / "f").mkdir()
    mem = build_memory_reference(src, tmp_path / "m", cfg)
    ref_graph = onnx.load(str(mem.path), load_external_data=False).graph
    casts = [n for n in ref_graph.node if n.op_type == "Cast"]
    in_graph = {t.name: numpy_helper.to_array(t) for t in ref_graph.initializer if t.data_location != 1}
    held = {**in_graph, **mem.initializers}  # small tensors stay in the graph file, big ones are arrays
    assert len(casts) == 2 and not {"w1", "w2"} & set(held)  # no float32 weight held
    codes = {n.input[0]: held[n.input[0]] for n in casts}
    assert all(c.dtype == np.int8 for c in codes.values())

    def restated(w_out_in_layout: np.ndarray) -> np.ndarray:  # TWN / BWN codes, [out, in]
        a = np.abs(w_out_in_layout.astype(np.float64))
        if weights == "binary":
            return np.where(w_out_in_layout >= 0, 1, -1)
        delta = 0.7 * (a.mean() if granularity == "layer" else a.mean(axis=1, keepdims=True))
        return np.sign(w_out_in_layout) * (a > delta)

    by_shape = {c.shape: c for c in codes.values()}
    np.testing.assert_array_equal(by_shape[(16, 24)], restated(w_in_out.T).T)  # kept in the [in, out] layout
    np.testing.assert_array_equal(by_shape[(12, 24)], restated(w_out_in))
    got = V.reference_outputs(mem, feeds)
    sess = make_session(build_gate_reference(src, tmp_path / "f", cfg),
                        session_config={"session.disable_prepacking": "1"}, optimize=False)
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert set(got) == set(want) == {"y", "z"}
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert np.abs(got["z"] - feeds["x"] @ w_in_out).max() > 1e-3  # the weights really were quantized


def test_gate_memory_reference_of_a_weight_also_read_inside_a_subgraph(tmp_path):
    """A weight an If branch reads too (from the outer scope): pack leaves it fp32, and the in-memory
    reference builds, keeps it a float32 tensor (no Cast of codes) and computes what the fp32 file computes."""
    from onnx import TensorProto, helper

    from deploytool.passes.pack_weights import build_gate_reference, build_memory_reference
    from deploytool.runtime import verify as V
    from deploytool.runtime.infer import make_session

    rng = np.random.default_rng(5)
    w = (rng.normal(size=(16, 16)) * 0.05).astype(np.float32)
    branch = lambda name, op: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["h", "w"], [f"{name}_out"])], name, [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("ReduceSum", ["h"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=branch("t", "MatMul"), else_branch=branch("e", "Add"))]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(-1e9, np.float32), "zero")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    cfg = PackConfig(weights="ternary", runtime="memory", embeddings="fp32")
    feeds = {"x": rng.normal(size=(16, 16)).astype(np.float32)}
    (tmp_path / "m").mkdir()
    (tmp_path / "f").mkdir()
    mem = build_memory_reference(src, tmp_path / "m", cfg)
    assert not [n for n in onnx.load(str(mem.path), load_external_data=False).graph.node if n.op_type == "Cast"]
    got = V.reference_outputs(mem, feeds)
    sess = make_session(build_gate_reference(src, tmp_path / "f", cfg),
                        session_config={"session.disable_prepacking": "1"}, optimize=False)
    want = sess.run(None, feeds)[0]
    np.testing.assert_array_equal(got["y"], want)
    np.testing.assert_allclose(want, (feeds["x"] @ w) @ w, atol=1e-6)  # the branch ran, on the fp32 weight


def test_gate_memory_reference_keeps_a_gathered_graph_output(tmp_path):
    """A table whose Gather output is also a graph output (a model that returns its embeddings): the rows
    dequantized in the reference's graph take that output's place and name, with the values the fp32
    fake-quantized file gives."""
    from onnx import TensorProto, helper

    from deploytool.passes.pack_weights import build_gate_reference, build_memory_reference
    from deploytool.runtime import verify as V
    from deploytool.runtime.infer import make_session

    rng = np.random.default_rng(0)
    table = (rng.normal(size=(200, 16)) * 0.05).astype(np.float32)
    w = (rng.normal(size=(16, 16)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["emb"]), helper.make_node("MatMul", ["emb", "w"], ["y"])],
        "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["b", "s", 16]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 16])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(w, "w")])
    src = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    cfg = PackConfig(weights="ternary", embeddings="ternary", runtime="memory")
    feeds = {"input_ids": rng.integers(0, 200, (2, 5)).astype(np.int64)}
    (tmp_path / "m").mkdir()
    (tmp_path / "f").mkdir()
    mem = build_memory_reference(src, tmp_path / "m", cfg)
    ref_graph = onnx.load(str(mem.path), load_external_data=False).graph
    assert [o.name for o in ref_graph.output] == ["emb", "y"]
    assert any(n.op_type == "Gather" and n.input[0].endswith("_row_scale") for n in ref_graph.node)
    got = V.reference_outputs(mem, feeds)
    sess = make_session(build_gate_reference(src, tmp_path / "f", cfg),
                        session_config={"session.disable_prepacking": "1"}, optimize=False)
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("weights, runtime", [("ternary", "densest"), ("binary", "speed"), ("split-binary", "speed"),
                                              ("ternary", "speed")])
def test_lookup_unpack_computes_what_the_arithmetic_unpack_did(src, tmp_path, weights, runtime):
    """The packed file against the same file with its two-byte lookups rewritten into one-byte lookups, and that
    one with every lookup rewritten into the int32 Div/Mod/Sub arithmetic deploytool wrote before
    (benchmarks/pack_load.py's peers, restated from the older pack_graph.py): no pair is left in the first, no
    lookup in the second, and ONNX Runtime gives the same bytes for all three (weights folded at load, and the
    embedding rows unpacked at run time)."""
    import importlib.util
    import sys

    import onnxruntime as ort

    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(bench))  # pack_load imports its neighbours
    try:
        spec = importlib.util.spec_from_file_location("pack_load", bench / "pack_load.py")
        pack_load = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(pack_load)
    finally:
        sys.path.remove(str(bench))
    out, bytewise, peer = tmp_path / "p.onnx", tmp_path / "bytes.onnx", tmp_path / "arith.onnx"
    pack_file(src, out, PackConfig(weights=weights, runtime=runtime))
    pairs = pack_load.byte_lookup_peer(out, bytewise)  # the two-byte lookups back to one byte at a time
    rewritten = pack_load.arithmetic_peer(bytewise, peer)
    def lookups(path) -> int:
        """Gathers from an int8 [256, k] table (one row per byte value): the unpack lookup, by its shape, not
        by the names the writer gives its tables (which renaming tools change)."""
        m = onnx.load(str(path))
        tables = {t.name for t in m.graph.initializer
                  if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2 and t.dims[0] == 256}
        return sum(n.op_type == "Gather" and n.input[0] in tables for n in m.graph.node)

    assert rewritten >= 1 and rewritten == lookups(bytewise)  # (ternary speed: the word embedding's rows only)
    assert lookups(peer) == 0
    uint16 = lambda path: sum(t.data_type == onnx.TensorProto.UINT16 for t in onnx.load(str(path)).graph.initializer)  # noqa: E731
    assert pairs == uint16(out) == lookups(bytewise) - lookups(out) and uint16(bytewise) == 0
    assert (pairs == 0) == (runtime == "speed" and weights == "ternary")  # INT2 weights: no lookup
    rng = np.random.default_rng(0)
    results = []
    for path in (out, bytewise, peer):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: (rng.integers(0, 100, size=(2, 7)) if i.name == "input_ids" else np.ones((2, 7))).astype(np.int64)
                 for i in sess.get_inputs()}
        rng = np.random.default_rng(0)  # the same ids for both
        results.append(sess.run(None, feeds))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("family, exporter", [("bert", "torch"), ("roberta", "dynamo")])
@pytest.mark.parametrize("weights, runtime", [("binary", "speed"), ("ternary", "densest"), ("split-binary", "speed")])
def test_odd_shapes_unpack_through_the_padded_pair(tiny_onnx, tmp_path, family, exporter, weights, runtime):
    """Weights whose packed bytes do not fill whole pairs (hidden 36, FFN 37: 36 x 37 = 1332 values; 1-bit: 166.5
    bytes, 5 trits: 267 bytes): the zero byte that pads the last pair is cut off again, the stored pairs decode
    (restated here) to the quantizer's codes, and ONNX Runtime computes what the fake-quantized model computes."""
    src = tiny_onnx(family, exporter, layers=1, hidden=36, heads=3, ffn=37, seed=7)
    cfg = PackConfig(weights=weights, runtime=runtime, embeddings="fp32")
    out = tmp_path / "p.onnx"
    res = pack_file(src, out, cfg)
    assert res.gate.verified is True
    packed = onnx.load(str(out))
    inits = {t.name: t for t in packed.graph.initializer}
    orig = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(src)).graph.initializer}
    record = json.loads({p.key: p.value for p in packed.metadata_props}[PACKING_KEY])
    per = 5 if runtime == "densest" else 8
    padded = 0
    for name, info in record.items():
        w = orig[name].astype(np.float32)
        layout_kn = w if info["shape"] == list(w.shape) else w.T  # MatMul B [K, N] (a Gemm's transB: [N, K])
        stem = name.replace("::", "_").replace("/", "_")
        t = next(t for k, t in inits.items() if k.startswith(stem + "_") and t.data_type == onnx.TensorProto.UINT16)
        planes = 2 if weights == "split-binary" else 1
        n = layout_kn.size * planes
        raw = _pair_bytes(t, -(-n // per))
        padded += raw.size % 2
        if per == 5:
            got = _decode_trit5(raw, n)
            want = ternarize(layout_kn.T, "layer")[0].T
        else:
            got = np.unpackbits(raw, bitorder="little")[:n].astype(np.int8) * 2 - 1
            if planes == 1:
                want = binarize(layout_kn.T, "layer")[0].T
            else:  # planes side by side: [K, 2N], plane 1's columns first
                from deploytool.quant.quantizers import binarize_planes
                s1, s2, *_ = binarize_planes(layout_kn.T, "layer")
                want = np.concatenate([s1.T, s2.T], 1)
        np.testing.assert_array_equal(got.reshape(want.shape), want)
    assert padded >= 1  # an odd byte count was padded (36 x 37 x planes values)
    y, ref = run_onnx(out, FEEDS), run_onnx(_bytes(_fake_quantized(src, cfg)), FEEDS)
    for k in ref:
        cos = float((y[k] * ref[k]).sum() / np.linalg.norm(y[k]) / np.linalg.norm(ref[k]))
        assert cos > 0.99, (k, cos)


def _fake_quantized(src, config):
    model = onnx_io.load_model(src)
    FakeQuantWeightsPass(config)(model)
    return model
