"""The cost model: FLOPs/bytes per op from the graph, roofline projection on a profile."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploytool.bench.cost_model import CostModel, OpCost, model_error, op_costs, project_latency
from deploytool.errors import ConfigError
from deploytool.profiles import load_profile


def _matmul_model(path, k=64, n=128, dtype=np.float32):
    """input_ids -> Gather(embeddings [50, k]) -> MatMul(W [k, n]) -> Relu: a 3-op 'encoder'."""
    rng = np.random.default_rng(0)
    tdt = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["x"]),
             helper.make_node("MatMul", ["x", "W"], ["y"]),
             helper.make_node("Relu", ["y"], ["out"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"])],
                          [helper.make_tensor_value_info("out", tdt, ["b", "s", n])],
                          [numpy_helper.from_array(rng.standard_normal((50, k)).astype(dtype), "E"),
                           numpy_helper.from_array(rng.standard_normal((k, n)).astype(dtype), "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


def test_op_costs_count_flops_and_bytes_per_op(tmp_path):
    costs = {c.op_type: c for c in op_costs(_matmul_model(tmp_path / "m.onnx"), seq_len=16)}
    mm = costs["MatMul"]
    assert mm.flops == 2 * 16 * 64 * 128 and mm.precision == "fp32"
    assert mm.bytes == 4 * (16 * 64 + 64 * 128 + 16 * 128)  # x, W, y
    assert costs["Relu"].flops == 16 * 128
    assert costs["Gather"].flops == 0 and costs["Gather"].bytes > 0
    half = {c.op_type: c for c in op_costs(_matmul_model(tmp_path / "h.onnx", dtype=np.float16), seq_len=16)}
    assert half["MatMul"].precision == "fp16" and half["MatMul"].bytes == mm.bytes / 2


def test_projection_is_a_roofline(tmp_path):
    pi4, pi5 = load_profile("raspberry-pi-4"), load_profile("raspberry-pi-5")
    cm = CostModel(compute_efficiency=1.0, memory_efficiency=1.0, op_overhead_us=0.0)
    big = [OpCost("mm", "MatMul", "fp32", flops=1e9, bytes=1e3)]  # compute-bound
    p = project_latency(big, pi4, seq_len=128, model=cm)
    assert p.latency_ms == pytest.approx(1e9 / (pi4.compute.peak("fp32") * 1e9) * 1e3)
    assert p.memory_bound_ops == 0 and p.label == "projected"
    # fp16 on a core without fp16 arithmetic runs at the fp32 peak; with it, twice as fast
    half = [dataclasses.replace(big[0], precision="fp16")]
    assert project_latency(half, pi4, seq_len=128, model=cm).latency_ms == pytest.approx(p.latency_ms)
    # ... and moves fp32 operands behind inserted casts: a memory-bound fp16 op costs twice the bytes
    half_mem = [OpCost("mm", "MatMul", "fp16", flops=1e3, bytes=1e8)]
    assert project_latency(half_mem, pi4, seq_len=8, model=cm).latency_ms == pytest.approx(2e8 / 12.8e9 * 1e3)
    assert project_latency(half_mem, pi5, seq_len=8, model=cm).latency_ms == pytest.approx(1e8 / 17.1e9 * 1e3)
    assert project_latency(half, pi5, seq_len=128, model=cm).latency_ms == pytest.approx(
        1e9 / (pi5.compute.peak("fp16") * 1e9) * 1e3)
    # memory-bound op: bytes / bandwidth
    mem = [OpCost("add", "Add", "fp32", flops=1e3, bytes=1e8)]
    q = project_latency(mem, pi4, seq_len=8, model=cm)
    assert q.latency_ms == pytest.approx(1e8 / 12.8e9 * 1e3) and q.memory_bound_ops == 1
    # one thread of four: a quarter of the peak; free ops cost nothing; overhead per op
    assert project_latency(big, pi4, seq_len=128, model=cm, threads=1).latency_ms == pytest.approx(4 * p.latency_ms)
    free = [OpCost("shape", "Shape", "fp32", 0, 8, free=True)]
    assert project_latency(free, pi4, seq_len=8).latency_ms == 0
    assert project_latency(mem, pi4, seq_len=8, model=CostModel(1, 1, 10)).overhead_ms == pytest.approx(0.01)
    cal = project_latency(big, pi4, seq_len=128, model=cm, calibration={"fp32": 2.0})
    assert cal.latency_ms == pytest.approx(2 * p.latency_ms) and "calibrated" in cal.label


def test_cost_model_config_and_error():
    with pytest.raises(ConfigError, match="compute_efficiency"):
        CostModel(compute_efficiency=1.5)
    with pytest.raises(ConfigError, match="op_overhead_us"):
        CostModel(op_overhead_us=-1)
    assert model_error(12.0, 10.0) == pytest.approx(0.2)


def test_packed_ternary_weights_are_read_as_int8(tiny_onnx, tmp_path):
    from deploytool.passes.pack_weights import PackConfig, pack_file

    src = tiny_onnx()
    dst = tmp_path / "t.onnx"
    pack_file(src, dst, PackConfig(weights="ternary"))
    fp32 = op_costs(src, seq_len=8)
    tern = op_costs(dst, seq_len=8)
    f_mm = sum(c.flops for c in fp32 if c.op_type == "MatMul" and c.precision == "fp32")
    t_mm = sum(c.flops for c in tern if c.precision == "int8")
    assert t_mm > 0 and t_mm == pytest.approx(f_mm, rel=0.35)  # projections (int8) ~ fp32 MatMul FLOPs
    # the INT2 -> Cast(int8) of each weight is folded at session creation: the kernel reads int8 weights,
    # 1 byte each (tiny model: hidden 32, seq 8; a 32x32 projection reads x, W, its scale and writes y)
    dqmm = [c.bytes for c in tern if c.op_type == "DynamicQuantizeMatMul"]
    base = 4 * 8 * 32 + 32 * 32 + 4 + 4 * 8 * 32
    assert min(dqmm) in (base, base + 4 * 32)  # (+ the fp32 bias where the packer folds it into the op)


def _fused_model(path, vocab=1000, hidden=32, heads=4, ffn=64):
    """ORT's fused encoder ops written by hand: EmbedLayerNormalization -> Attention -> MatMul -> MatMul."""
    rng = np.random.default_rng(0)
    f = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32))  # noqa: E731
    inits = [f(vocab, hidden), f(64, hidden), f(2, hidden), f(hidden), f(hidden), f(hidden, 3 * hidden), f(3 * hidden),
             f(hidden, ffn), f(ffn, hidden)]
    for t, name in zip(inits, ["word", "pos", "seg", "gamma", "beta", "Wqkv", "bqkv", "W1", "W2"]):
        t.name = name
    ms = "com.microsoft"
    nodes = [helper.make_node("EmbedLayerNormalization", ["input_ids", "token_type_ids", "word", "pos", "seg", "gamma",
                                                          "beta"], ["emb", "emb_mask_index"], domain=ms, epsilon=1e-12),
             helper.make_node("Attention", ["emb", "Wqkv", "bqkv"], ["att"], domain=ms, num_heads=heads),
             helper.make_node("MatMul", ["att", "W1"], ["h"]), helper.make_node("MatMul", ["h", "W2"], ["out"])]
    ids = [helper.make_tensor_value_info(n, TensorProto.INT32, ["b", "s"]) for n in ("input_ids", "token_type_ids")]
    g = helper.make_graph(nodes, "g", ids, [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)])
    m.ir_version = 9
    onnx.save(m, str(path))
    return path


def test_fused_attention_and_embedding_ops_are_costed_by_what_they_do(tmp_path):
    s, h, ffn, vocab = 16, 32, 64, 1000
    costs = op_costs(_fused_model(tmp_path / "f.onnx", vocab=vocab, hidden=h, ffn=ffn), seq_len=s)
    att = [c for c in costs if c.op_type == "Attention"]
    # the QKV projection is a GEMM of [s, h] x [h, 3h], the attention itself Q K^T and P V over s x s
    assert sorted(c.kind for c in att) == ["attention", "gemm"]
    qkv = next(c for c in att if c.kind == "gemm")
    assert qkv.flops == 2 * s * h * 3 * h and qkv.precision == "fp32"
    assert next(c for c in att if c.kind == "attention").flops == 2 * 2 * s * s * h
    # the embedding reads s rows of each table, never the whole vocabulary
    emb = next(c for c in costs if c.op_type == "EmbedLayerNormalization")
    assert emb.bytes < 4 * vocab * h / 4 and emb.bytes >= 4 * s * h * 2
    # every GEMM carries the model's weight footprint: all GEMM weights, each counted once
    footprint = 4 * (h * 3 * h + h * ffn + ffn * h)
    assert {c.footprint for c in costs if c.kind == "gemm"} == {footprint}
    assert all(c.footprint == 0 for c in costs if c.kind != "gemm")


@pytest.mark.parametrize("runtime", ["speed", "memory"])
def test_packed_fused_attention_is_costed_as_the_fused_one(tmp_path, runtime):
    """pack turns a fused Attention into QAttention on int8 codes (speed) or MatMulNBits + Split +
    MultiHeadAttention (memory): the same QKV GEMM and the same attention over s x s, costed as such."""
    from deploytool.passes.pack_weights import PackConfig, pack_file

    s, h = 16, 32
    src = _fused_model(tmp_path / "f.onnx", hidden=h)
    dst = tmp_path / "p.onnx"
    # a lone fused Attention: no encoder structure to read, no pooler to keep fp32 (pack_head: every weight)
    pack_file(src, dst, PackConfig(weights="ternary", runtime=runtime, pack_head=True), verify=False)
    costs = op_costs(dst, seq_len=s)
    ops = {c.op_type for c in costs}
    assert ("QAttention" in ops) == (runtime == "speed") and ("MultiHeadAttention" in ops) == (runtime == "memory")
    qkv = [c for c in costs if c.kind == "gemm" and c.flops == 2 * s * h * 3 * h]
    assert len(qkv) == 1 and qkv[0].precision == "int8"  # int8 activations in both (accuracy_level 4)
    att = [c for c in costs if c.kind == "attention"]
    assert [c.flops for c in att] == [2 * 2 * s * s * h]


def test_onnx_attention_is_costed_as_attention(tiny_onnx, tmp_path):
    """int8 --fusion onnx writes ONNX's Attention (opset 23, 3-D Q/K/V) behind one int8 Q|K|V GEMM: the GEMM as
    int8, the attention itself Q K^T and P V over s x s (it was costed as one element-wise op), as QAttention's."""
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    s = 16
    src = tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64, seed=5)
    qa, ox = tmp_path / "qa.onnx", tmp_path / "ox.onnx"
    quantize_int8_file(src, qa, Int8Config())
    quantize_int8_file(src, ox, Int8Config(fusion="onnx"))
    a_qa = sorted(c.flops for c in op_costs(qa, seq_len=s) if c.kind == "attention")
    a_ox = sorted(c.flops for c in op_costs(ox, seq_len=s) if c.kind == "attention")
    assert a_ox and a_ox == a_qa
    g_qa = sorted(c.flops for c in op_costs(qa, seq_len=s) if c.kind == "gemm" and c.precision == "int8")
    g_ox = sorted(c.flops for c in op_costs(ox, seq_len=s) if c.kind == "gemm" and c.precision == "int8")
    assert g_ox == g_qa
