"""repack: a packed file moved to another runtime keeps its codes and scales.

The reference is ``pack`` run directly with the target runtime on the fp32 model (it quantizes the fp32
weights again; repack never sees them): the repacked file must store the very same packed bytes and scales
for every linear weight, record the same entries and compute the same outputs. Plus: a file already in the
target runtime is copied byte for byte, a phone bundle's .ort keeps MatMulNBits weights small, and bad
input is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from deploytool import onnx_io
from deploytool.cli import main
from deploytool.errors import PassRefusedError
from deploytool.passes.pack_weights import PACKING_KEY, FakeQuantWeightsPass, PackConfig, pack_file
from deploytool.passes.repack import RepackConfig, repack_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=3)
FEEDS = fixed_inputs(vocab=100, lengths=(8, 5))
RUNTIMES = ("speed", "densest", "memory")
_PACKED_SUFFIXES = ("_int2", "_trit5", "_binary1", "_nbits2", "_scales", "_alpha")


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


@pytest.fixture(scope="module")
def packed(src, tmp_path_factory):
    """(weights, runtime) -> the file ``pack`` writes from the fp32 model, made once."""
    root = tmp_path_factory.mktemp("packed")
    cache: dict[tuple[str, str], object] = {}

    def make(weights: str, runtime: str, source=src, **extra):
        key = (weights, runtime, str(source), tuple(sorted(extra.items())))
        if key not in cache:
            out = root / f"{weights}_{runtime}_{len(cache)}.onnx"
            pack_file(source, out, PackConfig(weights=weights, runtime=runtime, **extra))
            cache[key] = out
        return cache[key]

    return make


def _linear_arrays(path, record: dict) -> dict[tuple[str, str], np.ndarray]:
    """Each packed linear weight's stored arrays, by (record key, what): the packed bytes and the scales,
    found by pack's naming (``<weight>_<form>``), whatever suffix a name clash added."""
    m = onnx.load(str(path))
    out = {}
    linear = {k for k, v in record.items() if "note" not in v}  # tables too
    for t in m.graph.initializer:
        stem = t.name
        for key in linear:
            base = key.replace("::", "_").replace("/", "_") + "_"
            if stem.startswith(base):
                what = stem[len(base):].split("_")[0]
                out[(key, what)] = numpy_helper.to_array(t) if t.data_type != onnx.TensorProto.INT2 else \
                    np.frombuffer(t.raw_data, np.uint8)
    return out


def _record(path) -> dict:
    m = onnx.load(str(path), load_external_data=False)
    return json.loads({p.key: p.value for p in m.metadata_props}[PACKING_KEY])


@pytest.mark.parametrize("weights", ["ternary", "binary", "split-binary"])
@pytest.mark.parametrize("source, target", [(s, t) for s in RUNTIMES for t in RUNTIMES if s != t])
def test_repack_stores_what_pack_stores_for_the_target(packed, tmp_path, weights, source, target):
    out = tmp_path / "r.onnx"
    res = repack_file(packed(weights, source), out, RepackConfig(runtime=target))
    assert res.gate.verified is True
    direct = packed(weights, target)
    rec_out, rec_direct = _record(out), _record(direct)
    assert rec_out == rec_direct  # linear weights and tables alike
    lin = {k for k, v in rec_direct.items() if not k.startswith("m.embeddings")}
    got, want = _linear_arrays(out, rec_out), _linear_arrays(direct, rec_direct)
    assert got.keys() == want.keys() and got
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))
    y, ref = run_onnx(out, FEEDS), run_onnx(direct, FEEDS)
    for k in ref:  # the same kernels on the same weights, the bias inside them in both
        np.testing.assert_array_equal(y[k], ref[k])
    assert res.stats["weights_converted"] + res.stats["weights_already_in_runtime"] == len(lin)
    if res.stats["weights_converted"]:
        meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
        assert json.loads(meta["deploytool.variant"])["chain"][-1] == f"repack({target})"
    else:  # binary in speed and densest: one form, the file copied as it is
        assert out.read_bytes() == packed(weights, source).read_bytes()


@pytest.mark.parametrize("family, exporter", [("bert", "torch"), ("roberta", "dynamo")])
@pytest.mark.parametrize("weights, source, target", [("ternary", "speed", "memory"), ("binary", "memory", "densest"),
                                                     ("split-binary", "densest", "memory"),
                                                     ("ternary", "memory", "speed"), ("ternary", "speed", "densest"),
                                                     ("ternary", "densest", "memory")])
def test_odd_shapes_and_other_exports(tiny_onnx, packed, tmp_path, family, exporter, weights, source, target):
    """Hidden 36, FFN 37 (padded bytes and blocks), row scales, a RoBERTa from the dynamo exporter: the
    repacked weights are still pack's own for the target."""
    fp32 = tiny_onnx(family, exporter, layers=1, hidden=36, heads=3, ffn=37, seed=7)
    out = tmp_path / "r.onnx"
    repack_file(packed(weights, source, fp32, granularity="row"), out, RepackConfig(runtime=target))
    direct = packed(weights, target, fp32, granularity="row")
    got, want = _linear_arrays(out, _record(out)), _linear_arrays(direct, _record(direct))
    assert got.keys() == want.keys() and got
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))
    assert _record(out) == _record(direct)
    assert _opset_ir(out) == _opset_ir(direct)  # 25 only where INT2 weights remain (to speed)
    y, ref = run_onnx(out, FEEDS), run_onnx(direct, FEEDS)
    for k in ref:
        np.testing.assert_array_equal(y[k], ref[k])


def _opset_ir(path) -> tuple[int, int]:
    """The default-domain opset and the IR version of the file at ``path``."""
    m = onnx.load(str(path), load_external_data=False)
    return {o.domain: o.version for o in m.opset_import}[""], m.ir_version


@pytest.mark.parametrize("target", ["memory", "densest"])
def test_leaving_int2_weights_writes_the_opset_pack_writes(src, packed, tmp_path, target):
    """speed's INT2 weights need opset 25 and IR 11, which ONNX Runtime before 1.23 (phones ship 1.17-1.20)
    cannot load; a file repacked to memory or densest holds none and is written at the opset and IR version
    ``pack --runtime <target>`` writes for the same fp32 input (its own, 17 and 8 here), where it passes the
    checker, runs and computes what pack's file computes. Repacked to speed again, it is at 25 again."""
    speed = packed("ternary", "speed")
    direct = packed("ternary", target)
    assert _opset_ir(speed) == (25, 11) and _opset_ir(direct) == _opset_ir(src) < (25, 11)
    out = tmp_path / "r.onnx"
    res = repack_file(speed, out, RepackConfig(runtime=target))
    assert res.gate.verified is True
    assert _opset_ir(out) == _opset_ir(direct)
    assert res.stats["opset"] == f"25 -> {_opset_ir(src)[0]}"
    onnx.checker.check_model(str(out), full_check=True)
    y, ref = run_onnx(out, FEEDS), run_onnx(direct, FEEDS)
    for k in ref:
        np.testing.assert_array_equal(y[k], ref[k])
    back = tmp_path / "s.onnx"
    repack_file(out, back, RepackConfig(runtime="speed"))
    assert _opset_ir(back) == (25, 11)
    y, ref = run_onnx(back, FEEDS), run_onnx(speed, FEEDS)
    for k in ref:
        np.testing.assert_array_equal(y[k], ref[k])


def test_a_file_that_does_not_record_its_input_opset_keeps_25(packed, tmp_path):
    """A speed file packed before pack recorded its input's opset: repack cannot know which opset to go back
    to, keeps 25 and says so in its stats."""
    old = tmp_path / "old.onnx"
    m = onnx.load(str(packed("ternary", "speed")))
    kept = [p for p in m.metadata_props if p.key != "deploytool.packing.input_opset"]
    assert len(kept) == len(m.metadata_props) - 1
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    onnx.save(m, str(old))
    out = tmp_path / "r.onnx"
    res = repack_file(old, out, RepackConfig(runtime="memory"))
    assert _opset_ir(out) == (25, 11)
    assert "opset 25 kept" in res.stats["opset_note"] and "opset" not in res.stats


def test_memory_with_fp32_activations_computes_the_fake_quantized_model(src, packed, tmp_path):
    """accuracy level 0 (fp32 activations): the repacked speed file equals the fp32 model with the quantizer's
    weights (made here by FakeQuantWeightsPass from the fp32 model) to 1e-5."""
    import onnx_ir as ir

    out = tmp_path / "r.onnx"
    repack_file(packed("ternary", "speed"), out, RepackConfig(runtime="memory", accuracy_level=0))
    model = onnx_io.load_model(src)
    FakeQuantWeightsPass(PackConfig(weights="ternary"))(model)
    y, ref = run_onnx(out, FEEDS), run_onnx(ir.serde.serialize_model(model).SerializeToString(), FEEDS)
    for k in ref:
        np.testing.assert_allclose(y[k], ref[k], rtol=0, atol=1e-5)
    nbits = [n for n in onnx.load(str(out)).graph.node if n.op_type == "MatMulNBits"]
    assert nbits and all(a.i == 0 for n in nbits for a in n.attribute if a.name == "accuracy_level")


def test_the_same_runtime_is_a_byte_copy(packed, tmp_path):
    src = packed("ternary", "densest")
    out = tmp_path / "same.onnx"
    res = repack_file(src, out, RepackConfig(runtime="densest"))
    assert not res.modified and res.stats["weights_converted"] == 0
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_binary_speed_and_densest_are_one_form(packed, tmp_path):
    """Binary weights are 1 bit in both int8-kernel runtimes: nothing to convert, and no opset upgrade."""
    out = tmp_path / "b.onnx"
    res = repack_file(packed("binary", "densest"), out, RepackConfig(runtime="speed"))
    assert res.stats["weights_converted"] == 0 and "opset" not in res.stats


def test_speed_upgrades_the_opset_only_for_ternary(packed, tmp_path):
    src = packed("ternary", "memory")
    assert onnx.load(str(src)).opset_import[0].version < 25
    out = tmp_path / "t.onnx"
    res = repack_file(src, out, RepackConfig(runtime="speed"))
    assert res.stats["opset"].endswith("-> 25")
    assert {o.domain: o.version for o in onnx.load(str(out)).opset_import}[""] == 25
    with pytest.raises(PassRefusedError, match="too old for INT2"):
        repack_file(src, tmp_path / "no.onnx", RepackConfig(runtime="speed", upgrade_opset=False))
    assert not (tmp_path / "no.onnx").exists()


def test_the_bundle_ort_keeps_memory_weights_packed(tiny_onnx, packed, tmp_path):
    """What repack is for: ONNX Runtime's ORT-format converter folds the speed runtime's unpacking into int8
    weights; the repacked memory file's MatMulNBits weights stay 2 bits in the .ort."""
    from deploytool import bundle

    speed = packed("ternary", "speed", tiny_onnx("bert", "torch", layers=2, hidden=64, heads=4, ffn=256, seed=5))
    mem = tmp_path / "m.onnx"
    repack_file(speed, mem, RepackConfig(runtime="memory"))
    ort_speed = bundle.ort_size_mb(speed, "runtime", tmp_path)
    ort_mem = bundle.ort_size_mb(mem, "runtime", tmp_path)
    linear_int8 = sum(int(np.prod(v["shape"])) for k, v in _record(speed).items() if not k.startswith("m.embeddings"))
    # the speed .ort holds every linear weight as int8 (1 byte each), the memory one 2 bits (a quarter byte)
    assert (ort_speed - ort_mem) * 1e6 > 0.5 * linear_int8, (ort_speed, ort_mem, linear_int8)


def test_ternary_tables_move_with_the_runtime(packed, tmp_path):
    """speed -> densest: the word table goes from 2 bits to 5 trits a byte, its codes unchanged (decoded here
    with the packers' own inverse, ``packing.unpack_2bit`` / ``unpack_trit5``), and back for memory."""
    from deploytool.quant import packing

    src = packed("ternary", "speed")
    out, back = tmp_path / "d.onnx", tmp_path / "m.onnx"
    res = repack_file(src, out, RepackConfig(runtime="densest"))
    assert res.stats["tables_converted"] == 1 and not res.skipped
    repack_file(out, back, RepackConfig(runtime="memory"))
    key = "m.embeddings.word_embeddings.weight"
    arrays = [_linear_arrays(p, _record(p)) for p in (src, out, back)]
    forms = [next(w for (k, w) in a if k == key and w != "alpha") for a in arrays]
    assert forms == ["ternary2", "trit5", "ternary2"]
    width = _record(src)[key]["shape"][1]
    codes = [packing.unpack_2bit(arrays[0][(key, "ternary2")], width),
             packing.unpack_trit5(arrays[1][(key, "trit5")], width),
             packing.unpack_2bit(arrays[2][(key, "ternary2")], width)]
    np.testing.assert_array_equal(codes[0], codes[1])
    np.testing.assert_array_equal(codes[0], codes[2])
    assert arrays[2][(key, "ternary2")].tobytes() == arrays[0][(key, "ternary2")].tobytes()


def _sha(p) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_bad_inputs_are_refused_in_one_line(src, packed, tmp_path):
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    int8 = tmp_path / "int8.onnx"
    quantize_int8_file(src, int8, Int8Config())
    mem = packed("ternary", "memory")
    # a MatMulNBits whose blocks have scales of their own (another tool's 2-bit file, not pack's): 16-wide
    # blocks first (the tiny model's K fits one block of pack's default), then one block's scale doubled
    blocks = tmp_path / "blocks.onnx"
    repack_file(packed("ternary", "speed"), blocks, RepackConfig(runtime="memory", block_size=16))
    m = onnx.load(str(blocks))
    t = next(t for t in m.graph.initializer if t.name.endswith("_scales"))
    a = numpy_helper.to_array(t).copy()
    a[1] *= 2
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    per_block = tmp_path / "per_block.onnx"
    onnx.save(m, str(per_block))
    cases = [
        (src, "memory", "no 'deploytool.packing' record"),
        (int8, "memory", "no 'deploytool.packing' record"),
        (per_block, "speed", "scale per block"),
        (mem, "fast", "runtime: expected one of"),
    ]
    for path, runtime, needle in cases:
        before = _sha(path)
        out = tmp_path / "o.onnx"
        res = CliRunner().invoke(main, ["repack", str(path), "--runtime", runtime, "-o", str(out)])
        assert res.exit_code == 2, (path, res.output)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], lines
        assert "Traceback" not in res.output and not out.exists()
        assert not list(tmp_path.glob(".o.onnx*"))
        assert _sha(path) == before
    res = CliRunner().invoke(main, ["repack", str(mem), "--runtime", "speed", "--accuracy-level", "0",
                                    "-o", str(tmp_path / "o.onnx")])
    assert res.exit_code == 2 and "only used by --runtime memory" in res.stderr


def test_pack_on_a_packed_file_points_to_repack(packed, tmp_path):
    with pytest.raises(PassRefusedError, match="deploytool repack --runtime memory"):
        pack_file(packed("binary", "speed"), tmp_path / "x.onnx", PackConfig(weights="binary", runtime="memory"))


def test_repack_cli_writes_and_reports(packed, tmp_path):
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["repack", str(packed("binary", "speed")), "--runtime", "memory", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "repack: wrote" in res.output and "weights_converted: 12" in res.output
    assert "verified: ran in ONNX Runtime" in res.output
    assert any(n.op_type == "MatMulNBits" for n in onnx.load(str(out)).graph.node)


@pytest.mark.parametrize("target", ["densest", "memory"])
def test_the_gate_in_its_own_process_compares_with_the_input(packed, tmp_path, monkeypatch, target):
    """An input over the size where the gate runs in a process of its own (lowered to 0 here): the gate's process
    runs the packed input while repack works and compares the output with it (equal for speed -> densest, the
    same kernels; a cosine for memory), and the verdict is the same as in process."""
    from deploytool.passes import base

    monkeypatch.setattr(base, "BIG_MODEL_BYTES", 0)
    out = tmp_path / "g.onnx"
    res = repack_file(packed("ternary", "speed"), out, RepackConfig(runtime=target))
    assert res.gate.verified is True and res.gate.process == "separate" and res.gate.reference_reused is True


@pytest.fixture(scope="module")
def distilbert_o2(tmp_path_factory):
    """A DistilBERT exported by optimum and optimized by ONNX Runtime at O2: a fused EmbedLayerNormalization
    reads the whole word table, a fused Attention each layer's QKV weight."""
    pytest.importorskip("optimum.exporters.onnx")
    pytest.importorskip("onnxruntime.transformers.optimizer")
    from deploytool.testing import conformance as C

    case = C.MODEL_BY_NAME["distilbert"]
    work = tmp_path_factory.mktemp("repack_o2")
    return C.optimize(C.export(case, "optimum", work), 2, work / "distilbert-O2.onnx"), C.feeds(case)


def test_fused_attention_left_on_fp32_keeps_its_storage(distilbert_o2, tmp_path, monkeypatch):
    """A fused Attention that ``pack`` left reading its QKV unpacked to fp32 at load (a past state: pack's choice
    forced here, an encoder export has none; files of split-binary weights packed before 2026-12-03): repack to
    speed keeps that storage (it does not invent a kernel for it), moves every other weight, says so in its skips,
    and computes what the input computes up to the other weights' int8 activations."""
    from deploytool.passes import pack_weights

    o2, feeds = distilbert_o2
    packed, out = tmp_path / "p.onnx", tmp_path / "r.onnx"
    with monkeypatch.context() as mp:
        mp.setattr(pack_weights, "_fused_kernel_blocker", lambda node, config: "it reads a past state")
        pack_file(o2, packed, PackConfig(weights="ternary", runtime="memory"))
    layers = sum(1 for n in onnx.load(str(o2)).graph.node if n.op_type == "Attention")
    res = repack_file(packed, out, RepackConfig(runtime="speed"))
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("Attention") == layers and "QAttention" not in ops and "MatMulNBits" not in ops
    assert ops.count("DynamicQuantizeMatMul") == 3 * layers  # output and both FFN weights moved
    kept = [s for s in res.skipped if "fused Attention QKV kept as stored" in s.reason]
    assert len(kept) == layers, res.skipped
    record = _record(out)
    assert all("past state" in record[k.node]["note"] for k in kept)
    y, ref = run_onnx(out, feeds), run_onnx(packed, feeds)
    for k in ref:
        a, b = y[k].ravel().astype(np.float64), ref[k].ravel().astype(np.float64)
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 0.999


@pytest.mark.parametrize("frm,to", [("speed", "memory"), ("memory", "speed"), ("memory", "densest")])
def test_fused_attention_with_an_attention_bias(distilbert_o2, tmp_path, frm, to):
    """A fused Attention with an attention bias runs as the QKV's linear kernel, Split and MultiHeadAttention in
    every runtime; repack moves that kernel (read as a plain linear weight: the Split and the MultiHeadAttention
    with its bias stay) and the file is what ``pack --runtime <to>`` writes: same record, same outputs."""
    from deploytool.testing.fused import add_attention_bias

    o2, feeds = distilbert_o2
    src = add_attention_bias(o2, tmp_path / "bias.onnx")
    packed, direct, out = tmp_path / "p.onnx", tmp_path / "d.onnx", tmp_path / "r.onnx"
    pack_file(src, packed, PackConfig(weights="ternary", runtime=frm))
    pack_file(src, direct, PackConfig(weights="ternary", runtime=to))
    res = repack_file(packed, out, RepackConfig(runtime=to))
    assert not res.skipped, res.skipped
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    layers = sum(1 for n in onnx.load(str(src)).graph.node if n.op_type == "Attention")
    assert ops.count("MultiHeadAttention") == layers and "Attention" not in ops and "QAttention" not in ops
    assert _record(out) == _record(direct)
    assert _opset_ir(out) == _opset_ir(direct)
    y, ref = run_onnx(out, feeds), run_onnx(direct, feeds)
    for k in ref:
        np.testing.assert_array_equal(y[k], ref[k])


@pytest.mark.parametrize("weights,frm,to", [("ternary", "speed", "densest"), ("ternary", "speed", "memory"),
                                            ("ternary", "memory", "speed"), ("binary", "memory", "densest"),
                                            ("split-binary", "speed", "memory"), ("split-binary", "memory", "densest")])
def test_fused_embed_layernorm_and_fused_attention_file(distilbert_o2, tmp_path, weights, frm, to):
    """The fused table moves to the target's packing on both of its paths (5 trits a byte for densest); a
    fused Attention's QKV moves between QAttention (speed, densest) and MatMulNBits + MultiHeadAttention
    (memory) with the same codes; the file computes what ``pack --runtime <to>`` computes from the fp32 file.
    Two binary planes: their QKV kernel (DynamicQuantizeMatMul or MatMulNBits over both planes, then Split and
    MultiHeadAttention) moves like a plain linear weight's."""
    o2, feeds = distilbert_o2
    packed, direct, out = tmp_path / "p.onnx", tmp_path / "d.onnx", tmp_path / "r.onnx"
    pack_file(o2, packed, PackConfig(weights=weights, runtime=frm))
    pack_file(o2, direct, PackConfig(weights=weights, runtime=to))
    res = repack_file(packed, out, RepackConfig(runtime=to))
    if to == "densest" and weights == "ternary":
        assert res.stats["tables_converted"] >= 1
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    layers = sum(1 for n in onnx.load(str(o2)).graph.node if n.op_type == "Attention")
    assert "Attention" not in ops and not res.skipped, res.skipped
    kernel = "MultiHeadAttention" if to == "memory" or weights == "split-binary" else "QAttention"
    assert ops.count(kernel) == layers
    if weights == "split-binary":  # the QKV's kernel moved too: the target's kernel only, none of the input's left
        want, gone = ("MatMulNBits", "DynamicQuantizeMatMul") if to == "memory" else ("DynamicQuantizeMatMul", "MatMulNBits")
        assert ops.count(want) == 4 * layers and gone not in ops, ops
    assert _record(out) == _record(direct)
    assert _opset_ir(out) == _opset_ir(direct)
    y, ref = run_onnx(out, feeds), run_onnx(direct, feeds)
    for k in ref:
        np.testing.assert_array_equal(y[k], ref[k])
