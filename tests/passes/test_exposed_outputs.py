"""A model that also exposes a tensor inside a layer as a graph output (an FFN activation, a projection): a pass
that changes its width declares the width it now computes (the stale declaration failed ONNX's full shape check
and made ONNX Runtime warn "Error merging shape info" on every load)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from deploytool.errors import PassRefusedError
from deploytool.passes.prune_ffn import FFNPruneConfig, prune_ffn_file
from deploytool.passes.slice_subnetwork import SliceConfig, slice_file


def _tap(src, dst, op_type: str, nth: int = 0):
    """``src`` with the output of its ``nth`` node of ``op_type`` also exposed (through an Identity), undeclared
    width taken from the graph as exported."""
    m = onnx.load(str(src))
    node = [n for n in m.graph.node if n.op_type == op_type][nth]
    inferred = onnx.shape_inference.infer_shapes(m)
    info = {v.name: v for v in inferred.graph.value_info}[node.output[0]]
    m.graph.node.append(helper.make_node("Identity", [node.output[0]], ["tap"], name="tap_identity"))
    dims = [d.dim_value or d.dim_param for d in info.type.tensor_type.shape.dim]
    m.graph.output.append(helper.make_tensor_value_info("tap", onnx.TensorProto.FLOAT, dims))
    onnx.save(m, str(dst))
    return dims


def _expose(src, dst, op_type: str, nth: int = 0) -> None:
    """``src`` with the output of its ``nth`` node of ``op_type`` itself a graph output named ``tap`` (as torch's
    export with output_attentions names each layer's Softmax output ``att_i``; no Identity between)."""
    m = onnx.load(str(src))
    node = [n for n in m.graph.node if n.op_type == op_type][nth]
    old = node.output[0]
    for n in m.graph.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = "tap"
    node.output[0] = "tap"
    m.graph.output.append(helper.make_tensor_value_info("tap", onnx.TensorProto.FLOAT, None))
    onnx.save(m, str(dst))


@pytest.mark.parametrize("how", ["slice", "prune-ffn"])
def test_a_tapped_ffn_activation_declares_its_new_width(tiny_onnx, tmp_path, how):
    src = tmp_path / "tap.onnx"
    dims = _tap(tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64), src, "Erf")
    assert dims[-1] == 64
    out = tmp_path / "out.onnx"
    if how == "slice":
        slice_file(src, out, SliceConfig(width=0.5, depth=1.0))
    else:
        prune_ffn_file(src, out, FFNPruneConfig(keep=0.5))
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    declared = [d.dim_value or d.dim_param for d in {o.name: o for o in m.graph.output}["tap"].type.tensor_type.shape.dim]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(out), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones((1, 5), np.int64) for i in sess.get_inputs()}
    got = sess.run(["tap"], feeds)[0]
    assert declared[-1] == got.shape[-1] == 32


def test_a_slice_that_drops_a_layer_whose_inside_is_an_output_refuses(tiny_onnx, tmp_path):
    """A graph output exposing a tensor inside a layer that depth removes (its attention probabilities, as an
    export with output_attentions has): the output would still be computed, with the removed layer's full
    weights, from the previous layer's output. Refused, naming the output and the layer; nothing written."""
    src = tmp_path / "tap.onnx"
    _tap(tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64), src, "Softmax", nth=1)
    before = src.read_bytes()
    out = tmp_path / "out.onnx"
    with pytest.raises(PassRefusedError, match=r"graph output 'tap' is computed inside layer 1 .*, which is removed"):
        slice_file(src, out, SliceConfig(width=1.0, depth=0.5))
    assert not out.exists() and src.read_bytes() == before
    # the same output inside a kept layer: sliced, the output computed by the layer that stays
    _tap(tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64), src, "Softmax", nth=0)
    slice_file(src, out, SliceConfig(width=1.0, depth=0.5))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones((1, 5), np.int64) for i in sess.get_inputs()}
    assert sess.run(["tap"], feeds)[0].shape == (1, 4, 5, 5)


@pytest.mark.parametrize("engine", ["native", "ort"])
def test_int8_keeps_exposed_attention_probabilities(tiny_onnx, tmp_path, engine):
    """An export exposing a layer's attention probabilities (output_attentions): ORT's attention fusion removed the
    Softmax computing them and its quantizer failed ('Invalid model with unknown initializers/tensors'). Either
    engine now leaves that layer alone unfused (the other gets its fused attention:
    tests/passes/test_int8_exposed_attention.py), saying why; the exposed output is still computed and close to the
    fp32 model's."""
    from deploytool.passes.quantize_int8 import Int8Config, quantize_int8_file

    src = tmp_path / "tap.onnx"
    _expose(tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64), src, "Softmax", nth=0)
    out = tmp_path / "out.onnx"
    r = quantize_int8_file(src, out, Int8Config(engine=engine))
    assert r.stats["engine"] == engine and r.stats["unfused_attention_layers"] == [0]
    assert any(s.node == "layer 0" and "graph output" in s.reason and "'tap'" in s.reason for s in r.skipped)
    assert r.stats["quantized_ops"]["QAttention"] == 1
    feeds = {i.name: np.random.default_rng(0).integers(1, 90, (2, 7)) for i in
             ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()}
    feeds = {k: (np.ones_like(v) if k == "attention_mask" else v if k == "input_ids" else np.zeros_like(v))
             for k, v in feeds.items()}
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(["tap"], feeds)[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["tap"], feeds)[0]
    assert got.shape == want.shape == (2, 4, 7, 7)
    assert np.abs(got - want).max() < 0.05


def test_reorder_leaves_a_layer_with_exposed_attention_probabilities_in_order(tiny_onnx, tmp_path):
    """Reordering heads permutes a layer's attention probabilities: exposed as an output (output_attentions), the
    output would change meaning (the gate refused the written model after all the work). That layer keeps its head
    order, a Skip naming the output; the other layer is reordered and every output is the input model's."""
    from deploytool.passes.reorder import ReorderConfig, reorder_file

    src = tmp_path / "tap.onnx"
    _expose(tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64), src, "Softmax", nth=0)
    out = tmp_path / "out.onnx"
    r = reorder_file(src, out, ReorderConfig())
    orders = r.stats["head_order"]
    assert orders[0] == [0, 1, 2, 3] and orders[1] != [0, 1, 2, 3]
    assert [s.node for s in r.skipped] == ["layer 0"] and "graph output 'tap'" in r.skipped[0].reason
    sess_in = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones((2, 6), np.int64) for i in sess_in.get_inputs()}
    feeds["input_ids"] = np.arange(12, dtype=np.int64).reshape(2, 6) + 3
    want = dict(zip([o.name for o in sess_in.get_outputs()], sess_in.run(None, feeds)))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-5)


def test_reorder_leaves_a_layer_with_an_exposed_ffn_activation_in_order(tiny_onnx, tmp_path):
    from deploytool.passes.reorder import ReorderConfig, reorder_file

    src = tmp_path / "tap.onnx"
    _tap(tiny_onnx("bert", exporter="torch", layers=2, hidden=32, heads=4, ffn=64), src, "Erf", nth=1)
    r = reorder_file(src, tmp_path / "out.onnx", ReorderConfig())
    assert [s.node for s in r.skipped] == ["layer 1"] and "FFN neurons not reordered: graph output 'tap'" in \
        r.skipped[0].reason
    assert r.modified  # the other layer's neurons and every layer's heads were reordered


def test_a_depth_slice_says_when_removed_layers_hidden_states_repeat(tiny_onnx, tmp_path):
    """An export exposing every hidden state (output_hidden_states): a removed layer passes its input through, so
    its hidden-state output repeats the previous one (the outputs keep their names and number, where transformers'
    smaller model returns fewer). By design; the result says so in one line, naming the outputs."""
    from click.testing import CliRunner

    from deploytool import onnx_io
    from deploytool.cli import main
    from deploytool.graph import find_structure

    base = tiny_onnx("bert", exporter="torch", layers=4, hidden=32, heads=4, ffn=64)
    outs = [la.output.name for la in find_structure(onnx_io.load_model(base)).layers]
    m = onnx.load(str(base))
    for i, name in enumerate(outs):
        m.graph.node.append(helper.make_node("Identity", [name], [f"hs_{i + 1}"], name=f"hs_identity_{i + 1}"))
        m.graph.output.append(helper.make_tensor_value_info(f"hs_{i + 1}", onnx.TensorProto.FLOAT, None))
    src = tmp_path / "hs.onnx"
    onnx.save(m, str(src))
    out = tmp_path / "out.onnx"
    r = slice_file(src, out, SliceConfig(width=1.0, depth=0.5))
    assert r.stats["layers_kept"] == [0, 2]
    assert r.stats["note"].startswith("hidden-state outputs of removed layers pass the previous one through: "
                                      "'hs_2' repeats 'hs_1'; ")
    assert "'hs_4' repeat 'hs_3'" in r.stats["note"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones((1, 5), np.int64) for i in sess.get_inputs()}
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    np.testing.assert_array_equal(got["hs_2"], got["hs_1"])
    np.testing.assert_array_equal(got["hs_4"], got["hs_3"])
    assert not np.array_equal(got["hs_3"], got["hs_1"])
    cli = CliRunner().invoke(main, ["slice", str(src), "--width", "1", "--depth", "0.5", "-o", str(tmp_path / "c.onnx")])
    assert cli.exit_code == 0, cli.output
    assert [ln for ln in cli.output.splitlines() if ln.startswith("note: hidden-state outputs")] == \
        ["note: " + r.stats["note"]]
    # an export exposing only the last hidden state: nothing repeats, no note
    assert "note" not in slice_file(base, tmp_path / "plain.onnx", SliceConfig(width=1.0, depth=0.5)).stats
