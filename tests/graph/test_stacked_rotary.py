"""The finder's two NomicBERT forms, on hand-made graphs: ``torch.stack`` taken apart again (a Concat of
Unsqueezes on one new axis, indexed by a Gather, or by a Split into ones and Squeezes) is the stacked tensor only
where every axis is that one new axis; rotary embeddings on the first r features with the rest concatenated back
are looked through only where both Slices cut at the same r. Checked against ONNX Runtime's own values: what the
finder calls the same tensor is the same tensor."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploytool.graph.finder import _Finder
from deploytool.runtime.infer import run_onnx


def _c(name, v):
    return numpy_helper.from_array(np.array(v, np.int64), name)


def _save(path, nodes, inputs, outputs, inits):
    """Float inputs [B, S, 4, 8], outputs of any shape, opset 17."""
    info = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["B", "S", 4, 8]) for x in inputs]
    outs = [helper.make_tensor_value_info(y, TensorProto.FLOAT, None) for y in outputs]
    m = helper.make_model(helper.make_graph(nodes, "g", info, outs, inits), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path)
    return path


def _stack_graph(tmp_path, unsq_axes=(2, 2, 2), cat_axis=2, take="gather", take_axis=2):
    """a, b, c [B, S, 4, 8] stacked on axis 2 ([B, S, 3, 4, 8]) and taken apart again; outputs the parts taken."""
    nodes, inits = [], [_c("i0", 0), _c("i1", 1), _c("i2", 2), _c("ones", [1, 1, 1])]
    for k, (x, a) in enumerate(zip("abc", unsq_axes)):
        inits.append(_c(f"ax{k}", [a]))
        nodes.append(helper.make_node("Unsqueeze", [x, f"ax{k}"], [f"u{k}"]))
    nodes.append(helper.make_node("Concat", ["u0", "u1", "u2"], ["st"], axis=cat_axis))
    if take == "gather":
        nodes += [helper.make_node("Gather", ["st", f"i{k}"], [f"t{k}"], axis=take_axis) for k in range(3)]
    else:
        inits.append(_c("sq", [take_axis]))
        nodes.append(helper.make_node("Split", ["st", "ones"], ["s0", "s1", "s2"], axis=take_axis))
        nodes += [helper.make_node("Squeeze", [f"s{k}", "sq"], [f"t{k}"]) for k in range(3)]
    return _save(tmp_path / "stack.onnx", nodes, "abc", [f"t{k}" for k in range(3)], inits)


def _found(path):
    model = ir.load(str(path))
    f = _Finder(model)
    by_out = {n.outputs[0].name: n for n in model.graph}
    got = []
    for k in range(3):
        node = by_out[f"t{k}"]
        x = f._stacked(node)
        got.append(None if x is None else x.name)
    return got


@pytest.mark.parametrize("take", ["gather", "split"])
def test_a_stack_taken_apart_is_its_parts(tmp_path, take):
    path = _stack_graph(tmp_path, take=take)
    assert _found(path) == ["a", "b", "c"]
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal((2, 5, 4, 8)).astype(np.float32) for x in "abc"}
    outs = run_onnx(path, feeds)
    for k, x in enumerate("abc"):
        np.testing.assert_array_equal(outs[f"t{k}"], feeds[x])  # ORT agrees: the part taken is the part stacked


@pytest.mark.parametrize("kw", [dict(unsq_axes=(2, 2, 3), cat_axis=2), dict(take_axis=1), dict(cat_axis=3),
                                dict(take="split", take_axis=1)],
                         ids=["one-unsqueeze-elsewhere", "gather-on-another-axis", "concat-on-another-axis",
                              "split-on-another-axis"])
def test_not_a_stack_where_an_axis_differs(tmp_path, kw):
    path = _stack_graph(tmp_path, **kw)
    assert _found(path) == [None, None, None]


def _partial_graph(tmp_path, tail_start="r", r=4):
    """y [B, S, H, 8]: Concat([y[..., :r] * cos + rotate_half(y[..., :r]) * sin, y[..., tail_start:]], -1)."""
    half = r // 2
    cos = numpy_helper.from_array(np.cos(np.arange(r, dtype=np.float32))[None, None, None, :], "cos")
    sin = numpy_helper.from_array(np.sin(np.arange(r, dtype=np.float32))[None, None, None, :], "sin")
    inits = [cos, sin, _c("zero", [0]), _c("r", [r]), _c("r2", [r + 1] if tail_start == "other" else [r]),
             _c("half", [half]), _c("big", [2 ** 62]), _c("last", [-1])]
    nodes = [
        helper.make_node("Slice", ["y", "zero", "r", "last"], ["lo"]),
        helper.make_node("Slice", ["lo", "zero", "half", "last"], ["lo1"]),
        helper.make_node("Slice", ["lo", "half", "r", "last"], ["lo2"]),
        helper.make_node("Neg", ["lo2"], ["nlo2"]),
        helper.make_node("Concat", ["nlo2", "lo1"], ["rh"], axis=-1),
        helper.make_node("Mul", ["lo", "cos"], ["c"]),
        helper.make_node("Mul", ["rh", "sin"], ["s"]),
        helper.make_node("Add", ["c", "s"], ["rot"]),
        helper.make_node("Slice", ["y", "r2", "big", "last"], ["tail"]),
        helper.make_node("Concat", ["rot", "tail"], ["out"], axis=-1),
    ]
    return _save(tmp_path / "partial.onnx", nodes, ["y"], ["out"], inits)


def _partial_source(path):
    model = ir.load(str(path))
    cat = next(n for n in model.graph if n.outputs[0].name == "out")
    x = _Finder(model)._partial_rotary(cat)
    return None if x is None else x.name


def test_rotary_on_the_first_features_is_looked_through(tmp_path):
    path = _partial_graph(tmp_path)
    assert _partial_source(path) == "y"
    y = np.random.default_rng(0).standard_normal((1, 3, 4, 8)).astype(np.float32)
    out = run_onnx(path, {"y": y})["out"]
    np.testing.assert_array_equal(out[..., 4:], y[..., 4:])  # the rest passed on as is


def test_a_tail_cut_elsewhere_is_not_rotary(tmp_path):
    assert _partial_source(_partial_graph(tmp_path, tail_start="other")) is None
