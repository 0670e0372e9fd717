"""``graph._util.value_rank``: the rank of an activation no shape declares, read from the ops that build it, checked
against what ONNX Runtime computes (the ranks of the outputs it returns), on a graph written as exporters write
their mask and attention arithmetic without declared intermediate shapes."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploytool import onnx_io
from deploytool.graph._util import value_rank
from deploytool.runtime.infer import run_onnx


def _graph(tmp_path):
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("Shape", ["x"], ["sx"]),  # x: [B, S, 12]
        helper.make_node("Gather", ["sx", "zero"], ["b"], axis=0),
        helper.make_node("Gather", ["sx", "one"], ["s"], axis=0),
        helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]),
        helper.make_node("Unsqueeze", ["s", "ax0"], ["s1"]),
        helper.make_node("Concat", ["b1", "s1", "three", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["heads"]),  # [B, S, 3, 4]
        helper.make_node("Transpose", ["heads"], ["q"], perm=[0, 2, 1, 3]),  # [B, 3, S, 4]
        helper.make_node("Transpose", ["heads"], ["kt"], perm=[0, 2, 3, 1]),  # [B, 3, 4, S]
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),  # [B, 3, S, S]
        # the mask to Shape(scores), as ONNX's Expand arithmetic writes it: Where(Equal(shape, -1), ones, shape)
        helper.make_node("Shape", ["scores"], ["ss"]),
        helper.make_node("Reshape", ["ss", "minus1"], ["ssv"]),
        helper.make_node("Shape", ["ssv"], ["ssl"]),
        helper.make_node("ConstantOfShape", ["ssl"], ["ones"], value=numpy_helper.from_array(np.array([1], np.int64))),
        helper.make_node("Equal", ["ssv", "minus1"], ["isneg"]),
        helper.make_node("Where", ["isneg", "ones", "ssv"], ["eshape"]),
        helper.make_node("Unsqueeze", ["mask", "ax12"], ["m4"]),  # [B, 1, 1, S]
        helper.make_node("Expand", ["m4", "eshape"], ["m"]),
        helper.make_node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["scores", "mf"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "ax3"], ["red"], keepdims=0),  # [B, 3, S]
        helper.make_node("ReduceMax", ["masked"], ["all"], keepdims=0),  # every axis: a scalar
        helper.make_node("Range", ["zero", "s", "one"], ["pos"]),  # [S]
        helper.make_node("Flatten", ["masked"], ["flat"], axis=3),
    ]
    inits = [i64("zero", 0), i64("one", 1), i64("ax0", [0]), i64("ax12", [1, 2]), i64("three", [3]), i64("ax3", [3]),
             i64("minus1", [-1])]
    outs = ["scores", "m", "masked", "red", "all", "pos", "flat"]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", 12]),
                     helper.make_tensor_value_info("mask", TensorProto.INT64, ["B", "S"])],
        [helper.make_tensor_value_info(o, TensorProto.INT64 if o in ("m", "pos") else TensorProto.FLOAT, None)
         for o in outs], initializer=inits)
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path, outs


def test_value_rank_is_the_rank_onnx_runtime_computes(tmp_path):
    path, outs = _graph(tmp_path)
    model = onnx_io.load_model(path)
    values = {v.name: v for n in model.graph for v in n.outputs}
    for o in outs:
        values[o].shape = None  # nothing declared: the rules alone
    got = {o: value_rank(values[o]) for o in outs}
    rng = np.random.default_rng(0)
    ran = run_onnx(path, {"x": rng.standard_normal((2, 5, 12)).astype(np.float32),
                          "mask": np.ones((2, 5), np.int64)})
    assert got == {o: ran[o].ndim for o in outs}
    assert got["masked"] == 4 and got["all"] == 0 and got["pos"] == 1
