"""int8 on an export that exposes some layers' attention probabilities (output_attentions for those layers), on
either engine: only those layers stay unfused (their projections int8, their attention core fp32, their
probabilities still outputs); every other layer gets its fused attention (the native writer's QAttention, or ORT's
fused Attention quantized). Before, one exposed layer sent the whole model to ORT's quantizer, unfused."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
from onnx import helper

from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
from deploytool.runtime.infer import run_onnx
from deploytool.testing.attentions import export_exposing_attentions
from deploytool.testing.tiny import fixed_inputs, tiny_model

LAYERS = 3
SHAPE = dict(layers=LAYERS, hidden=32, heads=4, ffn=64, seed=5)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _constant_weight_matmuls(g: onnx.GraphProto) -> list[str]:
    consts = {i.name for i in g.initializer}
    return [n.name for n in g.node if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in consts]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("exposed")
    cache = {}

    def make(layers: tuple[int, ...]):
        if layers not in cache:
            cache[layers] = export_exposing_attentions(tiny_model("bert", **SHAPE),
                                                       root / f"att_{'_'.join(map(str, layers))}.onnx", list(layers))
        return cache[layers]

    return make


# per engine: the int8 GEMM op its unfused projections become, and the file it is compared with for accuracy (the
# ORT engine's for native; for ORT, the whole model quantized unfused, which engine 'ort' wrote for such a file
# before its exposed layers were kept out of ORT's fusion alone)
ENGINES = {"native": ("DynamicQuantizeMatMul", {"engine": "ort"}),
           "ort": ("MatMulInteger", {"engine": "ort", "fusion": "none"})}


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("exposed", [(1,), (0, 2), (0, 1, 2)])
def test_only_exposed_layers_stay_unfused(exported, tmp_path, exposed, engine):
    gemm, baseline = ENGINES[engine]
    src = exported(exposed)
    out = tmp_path / "n.onnx"
    r = quantize_int8_file(src, out, Int8Config(engine=engine))
    assert r.stats["engine"] == engine and r.gate.verified
    if engine == "ort":
        assert r.stats["fusion"] == "attention"
    assert r.stats["unfused_attention_layers"] == list(exposed)
    assert [s.node for s in r.skipped] == [f"layer {i}" for i in exposed]
    for s, i in zip(r.skipped, exposed):
        assert f"'attentions_{i}'" in s.reason and "graph output" in s.reason and "stays fp32" in s.reason
    g = onnx.load(str(out)).graph
    ops = collections.Counter(n.op_type for n in g.node)
    assert ops["QAttention"] == LAYERS - len(exposed)
    assert ops["Softmax"] == len(exposed)  # the exposed layers' own, computing their outputs
    assert not any(n.domain == "deploytool.held" for n in g.node)
    assert _constant_weight_matmuls(g) == []  # the exposed layers' Q/K/V/O are int8 too
    # O, FFN in and out in every layer, and Q, K, V of each exposed one
    assert ops[gemm] == 3 * LAYERS + 3 * len(exposed)
    assert [o.name for o in g.output] == ["last_hidden_state"] + [f"attentions_{i}" for i in exposed]

    # as close to the fp32 model as the baseline file, every output kept
    base = tmp_path / "base.onnx"
    quantize_int8_file(src, base, Int8Config(**baseline))
    feeds = fixed_inputs(vocab=100, lengths=(8, 5, 3), seed=2)
    got, via_base, ref = run_onnx(out, feeds), run_onnx(base, feeds), run_onnx(src, feeds)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape, k
        assert _cos(got[k], ref[k]) > 0.99, k
        err, err_base = np.abs(got[k] - ref[k]).max(), np.abs(via_base[k] - ref[k]).max()
        assert err <= 2 * err_base + 1e-3, (k, err, err_base)
        if k.startswith("attentions_"):
            assert err < 0.05, (k, err)
            # padded keys still get no probability
            assert np.all(got[k][1, :, :, 5:] == 0) and np.all(got[k][2, :, :, 3:] == 0)


@pytest.mark.parametrize("engine", list(ENGINES))
def test_a_probability_read_through_an_identity_is_exposed_too(exported, tmp_path, engine):
    """The probabilities of layer 1 read by a node outside the attention (an Identity whose output is the graph
    output) rather than being the output themselves: layer 1 alone stays unfused (kept out of ORT's fusion by the ORT engine), named with the reader."""
    m = onnx.load(str(exported(())))
    soft = [n for n in m.graph.node if n.op_type == "Softmax"][1]
    m.graph.node.append(helper.make_node("Identity", [soft.output[0]], ["tap"], name="tap_identity"))
    m.graph.output.append(helper.make_tensor_value_info("tap", onnx.TensorProto.FLOAT, None))
    src = tmp_path / "tap.onnx"
    onnx.save(m, str(src))
    r = quantize_int8_file(src, tmp_path / "n.onnx", Int8Config(engine=engine))
    assert r.stats["engine"] == engine and r.stats["unfused_attention_layers"] == [1]
    assert [s.node for s in r.skipped] == ["layer 1"] and "'tap_identity' (Identity)" in r.skipped[0].reason
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "n.onnx")).graph.node)
    assert ops["QAttention"] == LAYERS - 1 and ops["Softmax"] == 1
    feeds = fixed_inputs(vocab=100, lengths=(8, 5), seed=3)
    got, ref = run_onnx(tmp_path / "n.onnx", feeds), run_onnx(src, feeds)
    assert _cos(got["last_hidden_state"], ref["last_hidden_state"]) > 0.99
    assert np.abs(got["tap"] - ref["tap"]).max() < 0.05


def test_onnx_fusion_keeps_the_exposed_layer_unfused_too(exported, tmp_path):
    """fusion=onnx (ONNX's Attention op): the same per-layer rule."""
    src = exported((1,))
    r = quantize_int8_file(src, tmp_path / "n.onnx", Int8Config(engine="native", fusion="onnx"))
    assert r.stats["engine"] == "native" and r.stats["unfused_attention_layers"] == [1]
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "n.onnx")).graph.node)
    assert ops["Attention"] == LAYERS - 1 and ops["Softmax"] == 1
    feeds = fixed_inputs(vocab=100, lengths=(8, 5), seed=3)
    got, ref = run_onnx(tmp_path / "n.onnx", feeds), run_onnx(src, feeds)
    assert _cos(got["last_hidden_state"], ref["last_hidden_state"]) > 0.99
    assert np.abs(got["attentions_1"] - ref["attentions_1"]).max() < 0.05


@pytest.mark.parametrize("options", [{"per_channel": False}, {"weights": "uint8"}])
def test_exposed_layer_with_per_tensor_scales_or_uint8_codes(exported, tmp_path, options):
    """The exposed layer's projections take the config's scales and codes as every other (one scale per weight;
    uint8 codes with their zero points): ORT runs the file (the gate), the outputs as close to fp32."""
    src = exported((1,))
    r = quantize_int8_file(src, tmp_path / "n.onnx", Int8Config(engine="native", **options))
    assert r.stats["engine"] == "native" and r.gate.verified and r.stats["unfused_attention_layers"] == [1]
    g = onnx.load(str(tmp_path / "n.onnx")).graph
    inits = {t.name: t for t in g.initializer}
    dq = [n for n in g.node if n.op_type == "DynamicQuantizeMatMul"]
    assert len(dq) == 3 * LAYERS + 3
    for n in dq:
        assert (inits[n.input[1]].data_type == onnx.TensorProto.UINT8) == (options.get("weights") == "uint8")
        assert (list(inits[n.input[2]].dims) == []) == (options.get("per_channel") is False)
    feeds = fixed_inputs(vocab=100, lengths=(8, 5), seed=4)
    got, ref = run_onnx(tmp_path / "n.onnx", feeds), run_onnx(src, feeds)
    assert _cos(got["last_hidden_state"], ref["last_hidden_state"]) > 0.99
    assert np.abs(got["attentions_1"] - ref["attentions_1"]).max() < 0.05


# ------------------------------------------------------------------------------------------- engine 'ort'
# ORT's attention fusion removed the exposed layer's Softmax with the rest of its attention (it does not check what
# else reads a node it removes), so one exposed layer sent the whole model to ORT's quantizer unfused. The layers
# the native writer leaves unfused are now kept out of ORT's fusion; the others get ORT's fused attention.


def test_ort_engine_mha_fusion_keeps_the_exposed_layer_unfused_too(exported, tmp_path):
    """fusion=mha (ORT's MultiHeadAttention around int8 Q/K/V/O): the same per-layer rule."""
    src = exported((1,))
    r = quantize_int8_file(src, tmp_path / "o.onnx", Int8Config(engine="ort", fusion="mha"))
    assert r.stats["fusion"] == "mha" and r.stats["unfused_attention_layers"] == [1]
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "o.onnx")).graph.node)
    assert ops["MultiHeadAttention"] == LAYERS - 1 and ops["Softmax"] == 1
    feeds = fixed_inputs(vocab=100, lengths=(8, 5), seed=3)
    got, ref = run_onnx(tmp_path / "o.onnx", feeds), run_onnx(src, feeds)
    assert _cos(got["last_hidden_state"], ref["last_hidden_state"]) > 0.99
    assert np.abs(got["attentions_1"] - ref["attentions_1"]).max() < 0.05
