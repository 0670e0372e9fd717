"""The int8 pass's graph choices: fused attention without BiasGelu by default, constant Reshape shapes."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest

from deploytool.errors import ConfigError
from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file
from deploytool.passes.static_reshape import PROBES, constant_reshape_shapes
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=64, seed=3)


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _ops(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_default_is_fused_attention_with_bias_in_the_gemm(src, tmp_path):
    res = quantize_int8_file(src, tmp_path / "d.onnx", Int8Config())
    ops = _ops(tmp_path / "d.onnx")
    assert ops["QAttention"] == 2 and ops["BiasGelu"] == 0 and ops["SkipLayerNormalization"] == 0
    assert res.stats["fusion"] == "attention"
    # BiasGelu is ORT's fusion (the native writer hands it to ORT): compare with ORT's default graph
    quantize_int8_file(src, tmp_path / "o.onnx", Int8Config(engine="ort"))
    quantize_int8_file(src, tmp_path / "b.onnx", Int8Config(bias_gelu=True))
    assert _ops(tmp_path / "b.onnx")["BiasGelu"] == 2
    feeds = fixed_inputs(vocab=100, lengths=(8, 5))
    a, b, ref = (next(iter(run_onnx(p, feeds).values())) for p in (tmp_path / "o.onnx", tmp_path / "b.onnx", src))
    assert np.abs(a - b).max() < 1e-4  # the same maths, only where the bias is added
    assert np.abs(a - ref).max() < 0.2


def test_config_refuses_non_bool_switches():
    with pytest.raises(ConfigError, match="bias_gelu"):
        Int8Config(bias_gelu="yes")
    with pytest.raises(ConfigError, match="static_reshape"):
        Int8Config(static_reshape=1)


@pytest.mark.parametrize("batch,seq", [(4, 9), (1, 1), (2, 16)])
def test_constant_reshape_shapes_keep_batch_and_sequence_dynamic(src, batch, seq):
    assert (batch, seq) not in PROBES  # shapes never seen while the rewrite was decided
    proto = onnx.load(str(src))
    before = onnx.ModelProto()
    before.CopyFrom(proto)
    stats = constant_reshape_shapes(proto)
    assert stats["reshapes"] == 4 * SHAPE["layers"] and stats["nodes_removed"] > 10
    consts = {i.name for i in proto.graph.initializer}
    assert all(n.input[1] in consts for n in proto.graph.node if n.op_type == "Reshape")
    assert sum(n.op_type == "Shape" for n in proto.graph.node) < sum(n.op_type == "Shape" for n in before.graph.node)
    feeds = fixed_inputs(vocab=100, lengths=(seq,) * batch)
    got = run_onnx(proto.SerializeToString(), feeds)
    ref = run_onnx(before.SerializeToString(), feeds)
    for k in ref:
        assert got[k].shape == ref[k].shape and np.array_equal(got[k], ref[k]), k


def test_static_reshape_option_in_the_pass(src, tmp_path):
    res = quantize_int8_file(src, tmp_path / "s.onnx", Int8Config(fusion="none", static_reshape=True))
    assert res.stats["static_reshape"]["reshapes"] == 4 * SHAPE["layers"]
    assert _ops(tmp_path / "s.onnx")["Concat"] < _ops(src)["Concat"]


@pytest.mark.parametrize("width", [0.5, 0.75])
def test_sliced_heads_are_quantized_unfused_and_stay_close(src, tmp_path, width):
    """A slice keeps fewer heads than the export's metadata names and an attention narrower than the hidden
    state: ORT's fusion would compute wrong attention, so the pass quantizes the unfused graph and says why."""
    from deploytool.passes.slice_subnetwork import SliceConfig, slice_file

    sliced = tmp_path / "s.onnx"
    slice_file(src, sliced, SliceConfig(width=width, depth=1.0))
    res = quantize_int8_file(sliced, tmp_path / "q.onnx", Int8Config())
    assert res.stats["fusion"] == "none"
    assert any(s.node == "fusion" and "narrower" not in s.reason and "wide in a 32-wide model" in s.reason
               for s in res.skipped), res.skipped
    assert _ops(tmp_path / "q.onnx")["QAttention"] == 0
    feeds = fixed_inputs(vocab=100, lengths=(8, 5))
    a, ref = (next(iter(run_onnx(p, feeds).values())) for p in (tmp_path / "q.onnx", sliced))
    assert np.abs(a - ref).max() < 0.2
