"""int8 (dynamic on fused graphs, static with calibration texts) and fp16 with an honest host note."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

from deploytool.errors import ConfigError, PassRefusedError
from deploytool.passes.fp16 import Fp16Config, convert_fp16_file
from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import exact_int8_codes, fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=3)
FEEDS = fixed_inputs(vocab=100, lengths=(8, 5))


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _out(p):
    return next(iter(run_onnx(p, FEEDS).values()))


def _cos(a, b):
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("fusion,per_channel", [("mha", True), ("attention", True), ("none", False)])
def test_dynamic_int8(src, tmp_path, fusion, per_channel):
    cwd_before = set(os.listdir("."))
    out = tmp_path / "q.onnx"
    # ORT's graph (the native writer's default is tested in tests/passes/test_int8_native.py)
    res = quantize_int8_file(src, out, Int8Config(per_channel=per_channel, fusion=fusion, engine="ort"))
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    if fusion == "mha":
        assert res.stats["fused_ops"]["MultiHeadAttention"] == 2
    if fusion == "attention":
        assert "QAttention" in ops
    # fused graphs quantize the word embeddings too (QEmbedLayerNormalization)
    assert res.bytes_after < (0.8 if fusion == "none" else 0.6) * res.bytes_before
    y, y32 = _out(out), _out(src)
    assert _cos(y, y32).min() > 0.99
    assert 1e-5 < np.abs(y - y32).max() < 0.2  # really quantized, still close
    assert set(os.listdir(".")) == cwd_before  # no temp files left behind (no quant_pre_process)


def test_static_int8_with_calibration_texts(src, tmp_path):
    from deploytool.testing.toy_text import toy_csv, toy_tokenizer

    tok = tmp_path / "tok"
    toy_tokenizer(tok)
    data = toy_csv(tmp_path / "calib.csv", n=40)
    out = tmp_path / "s.onnx"
    res = quantize_int8_file(src, out, Int8Config(static=True, calib_data=str(data), tokenizer=str(tok), calib_size=16,
                                                  fusion="none"))
    assert res.stats["calibration_samples"] == 16
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert ops.count("QuantizeLinear") > 10
    assert _cos(_out(out), _out(src)).min() > 0.95
    # the same texts without their labels calibrate the same way: calibration reads text only
    import csv

    rows = list(csv.DictReader(data.open()))
    text_only = tmp_path / "texts.csv"
    with text_only.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([[r["text"]] for r in rows])
    out2 = tmp_path / "s2.onnx"
    res2 = quantize_int8_file(src, out2, Int8Config(static=True, calib_data=str(text_only), tokenizer=str(tok),
                                                    calib_size=16, fusion="none"))
    assert res2.stats["calibration_samples"] == 16
    assert _cos(_out(out2), _out(src)).min() > 0.95


def test_static_int8_takes_path_objects_for_its_files(src, tmp_path):
    """``Int8Config(calib_data=Path(...), tokenizer=Path(...))`` was refused ("calib_data: expected a non-empty
    string, got PosixPath"), where every other file field of every config takes a path object: the config holds
    the path's string (equal to the config given strings) and calibrates the same file."""
    from pathlib import Path

    from deploytool.testing.toy_text import toy_csv, toy_tokenizer

    tok = tmp_path / "tok"
    toy_tokenizer(tok)
    data = toy_csv(tmp_path / "calib.csv", n=20)
    by_path = Int8Config(static=True, calib_data=Path(data), tokenizer=Path(tok), calib_size=8, fusion="none")
    by_str = Int8Config(static=True, calib_data=str(data), tokenizer=str(tok), calib_size=8, fusion="none")
    assert by_path == by_str and by_path.calib_data == str(data) and by_path.tokenizer == str(tok)
    a = quantize_int8_file(src, tmp_path / "a.onnx", by_path)
    quantize_int8_file(src, tmp_path / "b.onnx", by_str)
    assert a.stats["calibration_samples"] == 8 and (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    for bad in ("", 3, b"calib.csv"):
        with pytest.raises(ConfigError, match=r"^calib_data: expected a non-empty string or a file path, got "):
            Int8Config(static=True, calib_data=bad)


def test_static_needs_a_tokenizer(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    with pytest.raises(ConfigError, match="tokenizer"):
        quantize_int8_file(src, tmp_path / "s.onnx",
                           Int8Config(static=True, calib_data="x.csv", tokenizer=str(tmp_path)))
    assert not (tmp_path / "s.onnx").exists()


def test_static_without_tokenizer_says_where_it_looked(tiny_onnx, tmp_path, monkeypatch):
    """Without --tokenizer static int8 reads the tokenizer from the source the export recorded (a folder as it
    was typed, relative to where the export ran). Not found, the message said '--tokenizer: tiny-bert not found'
    as if the user had given --tokenizer; now it says the path came from the export's record and to pass
    --tokenizer."""
    src = tiny_onnx("bert", exporter="torch", **SHAPE)  # deploytool.source = "tiny-bert"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-bert").mkdir()  # a folder of that name here, without a tokenizer
    with pytest.raises(ConfigError) as e:
        quantize_int8_file(src, tmp_path / "s.onnx", Int8Config(static=True, calib_data="x.csv"))
    msg = str(e.value)
    assert "'tiny-bert'" in msg and "the export recorded" in msg and "pass --tokenizer" in msg, msg
    assert not (tmp_path / "s.onnx").exists()


def test_int8_refuses_quantized_model(src, tmp_path):
    out = tmp_path / "q.onnx"
    quantize_int8_file(src, out, Int8Config(fusion="none"))
    with pytest.raises(PassRefusedError, match="already quantized"):
        quantize_int8_file(out, tmp_path / "q2.onnx", Int8Config())


def test_fp16_says_what_this_host_runs(src, tmp_path):
    out = tmp_path / "h.onnx"
    res = convert_fp16_file(src, out, Fp16Config())
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64  # io types kept
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    assert res.bytes_after < 0.8 * res.bytes_before
    y, y32 = _out(out), _out(src)
    assert y.dtype == np.float32 and np.abs(y - y32).max() < 2e-2
    n = res.stats["inserted_precision_casts"]
    assert isinstance(n, int)
    if n:  # x86 without fp16 arithmetic: ORT falls back to fp32 kernels and says so
        assert "runs the model in fp32" in res.stats["host_note"]
    assert "ARM64" in res.stats["arm_note"]
    with pytest.raises(PassRefusedError, match="fp16"):
        convert_fp16_file(out, tmp_path / "h2.onnx", Fp16Config())


def _casts_in_optimized_model(path, tmp_path) -> int:
    """The reference: ORT's optimized model of ``path`` written to disk, its InsertedPrecisionFreeCast nodes counted."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    m = onnx.load(str(tmp_path / "optimized.onnx"))
    return sum(n.name.startswith("InsertedPrecisionFreeCast_") for n in m.graph.node)


def test_fp16_of_a_model_without_float_weights_is_refused_as_such(tmp_path):
    """A model with no float32 initializer (nothing to convert) was a VerificationError naming the pass's class
    ("Fp16ConvertPass: the converter left no fp16 weight"), as if a converted model had failed the gate: it is the
    pass refusing its input, before any work."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    src = tmp_path / "id.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])), str(src))
    with pytest.raises(PassRefusedError) as e:
        convert_fp16_file(src, tmp_path / "h.onnx", Fp16Config())
    assert str(e.value) == "model has no float32 weight to convert to fp16 (no float initializer)"
    assert not (tmp_path / "h.onnx").exists()


def test_fp16_host_casts_are_counted_by_the_gate_run(src, tmp_path):
    """The host check counts the casts in the gate's own session (its profiler's record of the one run), in
    process and in the gate's process alike, as many as ORT's optimized model holds; without a gate, not at all
    (no ONNX Runtime session of the output: the host note says it was not checked)."""
    from deploytool.runtime.verify import gate_feeds, gate_plan, verify_model_isolated

    import platform

    out = tmp_path / "h.onnx"
    convert_fp16_file(src, out, Fp16Config(check_host=False))
    expected = _casts_in_optimized_model(out, tmp_path)
    if platform.machine() in ("x86_64", "AMD64"):  # no fp16 kernels in ORT's x86 CPU provider: something to count
        assert expected > 0
    gated = convert_fp16_file(src, tmp_path / "g.onnx", Fp16Config())
    assert gated.gate.verified and gated.gate.inserted_casts == expected
    assert gated.stats["inserted_precision_casts"] == expected
    unverified = convert_fp16_file(src, tmp_path / "u.onnx", Fp16Config(), verify=False)
    assert unverified.gate is None or unverified.gate.inserted_casts is None
    assert unverified.stats["inserted_precision_casts"] is None and "not checked" in unverified.stats["host_note"]
    proto = onnx.load(str(out))
    report = verify_model_isolated(out, gate_feeds(gate_plan(proto, out)), count_casts=True)
    assert report.inserted_casts == expected
    assert verify_model_isolated(out, gate_feeds(gate_plan(proto, out))).inserted_casts is None


def test_ort_engine_on_an_opset14_export_declares_opset_17(tmp_path):
    """ORT's optimizer writes LayerNormalization (opset 17) into a TorchScript opset-14 DistilBERT; the ORT
    engine's output used to be refused by onnx.checker. It is written at opset 17 and computes what the
    fp32 model computes (cosine of the hidden states); the input stays at opset 14."""
    import onnxruntime as ort

    from deploytool.testing import conformance as C

    case = next(c for c in C.MODELS if c.name == "distilbert")
    src = C.export(case, "torchscript-14", tmp_path)
    before = src.read_bytes()
    dst = tmp_path / "q.onnx"
    # weights this CPU multiplies exactly (uint8 where its u8 x s8 kernel saturates): the bound is the graph's
    quantize_int8_file(src, dst, Int8Config(engine="ort", weights=exact_int8_codes()))
    out = onnx.load(str(dst))
    assert {o.domain: o.version for o in out.opset_import}[""] == 17
    assert any(n.op_type == "LayerNormalization" for n in out.graph.node)
    assert src.read_bytes() == before and {o.domain: o.version for o in onnx.load(str(src)).opset_import}[""] == 14
    feeds = C.feeds(case)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    got = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    cos = float((ref * got).sum() / (np.linalg.norm(ref) * np.linalg.norm(got)))
    assert cos > 0.99, cos


def test_ort_engine_quantizer_runs_beside_nothing_of_ours(src, tmp_path, monkeypatch):
    """ORT's quantizer starts when nothing of ORT's optimizer is still alive (its symbolic shape inference
    holds a copy of the model and refers to itself through its table of bound methods: only a full
    collection frees it; on BERT-base such garbage held 1.1 GB through the whole quantizer run) and reads
    an input whose weights are in an external-data file (written tensor by tensor from the fused proto, no
    serialized copy of the whole model beside it)."""
    import gc

    import onnxruntime.quantization as oq

    seen = {}
    real = oq.quantize_dynamic

    def spy(model_input, model_output, **kw):
        m = onnx.load(str(model_input), load_external_data=False)
        big = [t for t in m.graph.initializer if np.prod(t.dims) * 4 > 1024]
        seen["big"] = len(big)
        seen["external"] = sum(t.data_location == onnx.TensorProto.EXTERNAL for t in big)
        seen["optimizer_objects_alive"] = sum(
            any(c.__name__ in ("OnnxModel", "SymbolicShapeInference") for c in type(o).__mro__)
            for o in gc.get_objects())
        return real(model_input, model_output, **kw)

    monkeypatch.setattr(oq, "quantize_dynamic", spy)
    gc.disable()  # as in a process where no automatic full collection happens to fall in between
    try:
        res = quantize_int8_file(src, tmp_path / "q.onnx", Int8Config(engine="ort"))
    finally:
        gc.enable()
    assert res.stats["engine"] == "ort" and res.stats["fused_ops"].get("Attention") == 2
    assert seen["big"] > 4 and seen["external"] == seen["big"]
    assert seen["optimizer_objects_alive"] == 0
    assert _cos(_out(tmp_path / "q.onnx"), _out(src)).min() > 0.99
