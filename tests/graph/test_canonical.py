"""graph/canonical.py on hand-made graphs: ORT's flattened projection (Reshape -> Gemm -> Reshape) back to
MatMul + Add, with the weight stored either way, checked by ONNX Runtime against the graph as written."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploytool.graph.canonical import unfuse_flattened_gemms

B, S, K, N = 2, 3, 8, 5


def _graph(trans_b: int, shared: bool, alpha: float = 1.0):
    """x [B, S, K] -> two flattened projections (Reshape [B*S, K] -> Gemm -> Reshape [B, S, N]); with ``shared``
    both read one weight (ALBERT's layers, tied heads), else each its own."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(N, K) if trans_b else (K, N)).astype(np.float32)
    w2 = w1 if shared else rng.normal(size=w1.shape).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(rng.normal(size=N).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([B * S, K], np.int64), "flat"),
             numpy_helper.from_array(np.array([B, S, N], np.int64), "unflat")]
    if not shared:
        inits.append(numpy_helper.from_array(w2, "w2"))
    nodes = [helper.make_node("Reshape", ["x", "flat"], ["xf"])]
    for i, w in ((1, "w1"), (2, "w1" if shared else "w2")):
        nodes += [helper.make_node("Gemm", ["xf", w, "b"], [f"g{i}"], transB=trans_b, alpha=alpha),
                  helper.make_node("Reshape", [f"g{i}", "unflat"], [f"y{i}"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, K])],
                              [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [B, S, N]) for i in (1, 2)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(proto, x):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("shared", [False, True])
def test_flattened_gemms_become_matmul_add_with_the_weight_in_matmuls_layout(trans_b, shared):
    proto = _graph(trans_b, shared)
    x = np.random.default_rng(1).normal(size=(B, S, K)).astype(np.float32)
    want = _run(proto, x)
    model = ir.serde.deserialize_model(proto)
    assert unfuse_flattened_gemms(model) == 2
    out = ir.serde.serialize_model(model)
    ops = [n.op_type for n in out.graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 2 and ops.count("Add") == 2
    weights = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer if len(t.dims) == 2}
    assert all(w.shape == (K, N) for w in weights.values())  # MatMul's [in, out]
    assert len(weights) == (1 if shared else 2)  # a shared weight is transposed once; the [N, K] one is gone
    got = _run(out, x)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_a_scaled_gemm_is_left_as_it_is():
    model = ir.serde.deserialize_model(_graph(1, False, alpha=0.5))
    assert unfuse_flattened_gemms(model) == 0
    assert [n.op_type for n in model.graph].count("Gemm") == 2


def test_fold_small_constants_computes_each_op_as_onnx_runtime_does():
    """Unsqueeze (axes as input, negative), Squeeze and Concat of int64 constants become initializers holding what
    ONNX Runtime computes for the same nodes; a piece that is not constant stays, and so do a Cast and a Squeeze of
    other types (a packed weight's few bytes keep the form the finder reads them by)."""
    import onnx
    from onnx import TensorProto, helper

    from deploytool.graph.canonical import fold_small_constants
    from deploytool.runtime.infer import run_onnx

    c = lambda name, arr: helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(arr, name))
    nodes = [c("six", np.array(6, np.int64)), c("ax0", np.array([0], np.int64)), c("axm1", np.array([-1], np.int64)),
             c("sq", np.arange(3, dtype=np.int64).reshape(1, 3, 1)), c("fl", np.ones((1, 2), np.float32)),
             helper.make_node("Unsqueeze", ["six", "ax0"], ["u6"]),
             helper.make_node("Unsqueeze", ["six", "axm1"], ["um"]),
             helper.make_node("Squeeze", ["sq", "ax0"], ["s1"]),
             helper.make_node("Squeeze", ["sq"], ["s_all"]),
             helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Concat", ["shp", "u6", "um"], ["mixed"], axis=0),  # not constant: stays
             helper.make_node("Concat", ["u6", "um"], ["cc"], axis=0),
             helper.make_node("Cast", ["cc"], ["cf"], to=TensorProto.FLOAT),
             helper.make_node("Squeeze", ["fl", "ax0"], ["fsq"]),
             helper.make_node("Identity", ["s1"], ["o_s1"]), helper.make_node("Identity", ["s_all"], ["o_sall"]),
             helper.make_node("Identity", ["cf"], ["o_cf"]), helper.make_node("Identity", ["mixed"], ["o_mixed"]),
             helper.make_node("Identity", ["fsq"], ["o_fsq"])]
    outs = [helper.make_tensor_value_info(n, t, None) for n, t in
            (("o_s1", TensorProto.INT64), ("o_sall", TensorProto.INT64), ("o_cf", TensorProto.FLOAT),
             ("o_mixed", TensorProto.INT64), ("o_fsq", TensorProto.FLOAT))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])], outs)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.zeros(2, np.float32)}
    want = run_onnx(proto.SerializeToString(), feeds)
    model = ir.serde.deserialize_model(proto)
    assert fold_small_constants(model) == 5  # 2 Unsqueeze, 2 int64 Squeeze, the constant Concat
    kinds = sorted(n.op_type for n in model.graph if n.op_type != "Identity")
    assert kinds == ["Cast", "Concat", "Constant", "Constant", "Shape", "Squeeze"]  # fl and ax0 still read
    got = run_onnx(ir.serde.serialize_model(model).SerializeToString(), feeds)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape and np.array_equal(got[k], want[k]), k


def test_transposed_weights_and_initializer_inputs_become_plain_weights():
    """MatMul(x, Transpose(W)) reads a [K, N] initializer after fold_transposed_weights (W gone once nothing else
    reads it; a W that a Gather also reads stays), and drop_initializer_inputs leaves only the fed inputs."""
    import onnx
    from onnx import TensorProto, helper

    from deploytool.graph.canonical import drop_initializer_inputs, fold_transposed_weights
    from deploytool.runtime.infer import run_onnx

    rng = np.random.default_rng(0)
    w, e = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    inits = [onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(e, "E")]
    nodes = [helper.make_node("Transpose", ["W"], ["wt"], perm=[1, 0]), helper.make_node("MatMul", ["x", "wt"], ["y"]),
             helper.make_node("Transpose", ["E"], ["et"]), helper.make_node("MatMul", ["x", "et"], ["z"]),
             helper.make_node("Gather", ["E", "ids"], ["g"], axis=0)]
    ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
           helper.make_tensor_value_info("ids", TensorProto.INT64, [2]),
           helper.make_tensor_value_info("W", TensorProto.FLOAT, [5, 3])]  # an initializer listed as an input
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z", "g")]
    proto = helper.make_model(helper.make_graph(nodes, "g", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rng.normal(size=(2, 3)).astype(np.float32), "ids": np.array([1, 3])}
    want = run_onnx(proto.SerializeToString(), feeds)
    model = ir.serde.deserialize_model(proto)
    assert drop_initializer_inputs(model) == ["W"]
    assert fold_transposed_weights(model) == 2
    g = model.graph
    assert [v.name for v in g.inputs] == ["x", "ids"] and "W" not in g.initializers and "E" in g.initializers
    assert sorted(n.op_type for n in g) == ["Gather", "MatMul", "MatMul"]
    assert all(list(n.inputs[1].shape) == [3, n.inputs[1].shape[1]] for n in g if n.op_type == "MatMul")
    got = run_onnx(ir.serde.serialize_model(model).SerializeToString(), feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def _run_both(proto, model, feeds):
    from deploytool.runtime.infer import run_onnx

    want = run_onnx(proto.SerializeToString(), feeds)
    got = run_onnx(ir.serde.serialize_model(model).SerializeToString(), feeds)
    for k in want:
        assert got[k].shape == want[k].shape and np.array_equal(got[k], want[k]), k


def test_fold_vector_views_folds_a_bias_viewed_per_head():
    """DeBERTa's q_bias as torch writes it without constant folding, Transpose(Reshape(Unsqueeze(Unsqueeze(b)),
    Concat(..)), [0, 2, 1, 3]), becomes one [1, heads, 1, head_size] initializer (b goes: nothing else reads it);
    a lone Unsqueeze of a vector (no Reshape: a scale's broadcast), a 2-D weight's Reshape and an int vector's stay."""
    from deploytool.graph.canonical import fold_small_constants, fold_vector_views

    i64 = lambda *v: np.array(v, np.int64)
    inits = [numpy_helper.from_array(np.arange(12, dtype=np.float32), "b"),
             numpy_helper.from_array(np.arange(6, dtype=np.float32), "s"),
             numpy_helper.from_array(np.ones((3, 4), np.float32), "w"),
             numpy_helper.from_array(np.arange(12, dtype=np.int64), "codes"),
             numpy_helper.from_array(i64(0), "ax0"), numpy_helper.from_array(i64(1, 1), "d11"),
             numpy_helper.from_array(i64(3, -1), "d3m1"), numpy_helper.from_array(i64(12), "d12"),
             numpy_helper.from_array(i64(2, 6), "d26")]
    nodes = [helper.make_node("Unsqueeze", ["b", "ax0"], ["b1"]), helper.make_node("Unsqueeze", ["b1", "ax0"], ["b2"]),
             helper.make_node("Concat", ["d11", "d3m1"], ["target"], axis=0),
             helper.make_node("Reshape", ["b2", "target"], ["b4"]),
             helper.make_node("Transpose", ["b4"], ["bh"], perm=[0, 2, 1, 3]),
             helper.make_node("Add", ["x", "bh"], ["y"]),
             helper.make_node("Unsqueeze", ["s", "ax0"], ["s1"]), helper.make_node("Mul", ["z", "s1"], ["zs"]),
             helper.make_node("Reshape", ["w", "d12"], ["wf"]), helper.make_node("Add", ["v", "wf"], ["vw"]),
             helper.make_node("Reshape", ["codes", "d26"], ["c2"]), helper.make_node("Cast", ["c2"], ["cf"], to=1),
             helper.make_node("Add", ["z", "cf"], ["zc"])]
    f = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, [2, 3, 5, 4]),
                                           helper.make_tensor_value_info("z", f, [2, 6]),
                                           helper.make_tensor_value_info("v", f, [12])],
                              [helper.make_tensor_value_info(n, f, None) for n in ("y", "zs", "vw", "zc")],
                              initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = ir.serde.deserialize_model(proto)
    fold_small_constants(model)
    assert fold_vector_views(model) == 4
    add = next(n for n in model.graph if n.op_type == "Add" and n.outputs[0].name == "y")
    assert add.inputs[1].const_value is not None and list(add.inputs[1].shape) == [1, 3, 1, 4]
    assert "b" not in model.graph.initializers
    left = sorted(n.op_type for n in model.graph)
    assert left == ["Add", "Add", "Add", "Cast", "Mul", "Reshape", "Reshape", "Unsqueeze"]
    rng = np.random.default_rng(0)
    _run_both(proto, model, {"x": rng.standard_normal((2, 3, 5, 4), np.float32),
                             "z": rng.standard_normal((2, 6), np.float32), "v": np.ones(12, np.float32)})


def test_drop_identities_removes_copies_of_computed_values_only():
    """The dynamo exporter's clones (optimize=False) go; an Identity of an initializer (TorchScript's merged
    copies, read through by the finder) and one writing a graph output stay."""
    from deploytool.graph.canonical import drop_identities

    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Identity", ["r"], ["clone"]),
             helper.make_node("Identity", ["clone"], ["clone2"]),
             helper.make_node("Identity", ["w"], ["w_copy"]), helper.make_node("Add", ["clone2", "w_copy"], ["y"]),
             helper.make_node("Identity", ["y"], ["out"])]
    f = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, [2])],
                              [helper.make_tensor_value_info("out", f, [2])],
                              initializer=[numpy_helper.from_array(np.ones(2, np.float32), "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = ir.serde.deserialize_model(proto)
    assert drop_identities(model) == 2
    assert [n.op_type for n in model.graph] == ["Relu", "Identity", "Add", "Identity"]
    _run_both(proto, model, {"x": np.array([-1.0, 2.0], np.float32)})


def test_cast_likes_become_casts_to_the_type_they_read():
    """CastLike(s, q) of SDPA's scale (dynamo, optimize=False) reads q for its type only: Cast(s, to=q's type);
    one whose model type is unknown, or that writes a graph output, stays."""
    from deploytool.graph.canonical import cast_likes_to_casts

    nodes = [helper.make_node("Shape", ["q"], ["shp"]), helper.make_node("Gather", ["shp", "last"], ["d"], axis=0),
             helper.make_node("CastLike", ["d", "q"], ["df"]), helper.make_node("Sqrt", ["df"], ["sd"]),
             helper.make_node("Mul", ["q", "sd"], ["y"]), helper.make_node("Relu", ["u"], ["ru"]),
             helper.make_node("CastLike", ["d", "ru"], ["du"]),
             helper.make_node("Add", ["du", "u"], ["z"]), helper.make_node("CastLike", ["d", "q"], ["out"])]
    f = TensorProto.FLOAT
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", f, [2, 4]),
                                           helper.make_tensor_value_info("u", TensorProto.DOUBLE, [2])],
                              [helper.make_tensor_value_info("y", f, None),
                               helper.make_tensor_value_info("z", TensorProto.DOUBLE, None),
                               helper.make_tensor_value_info("out", f, None)],
                              initializer=[numpy_helper.from_array(np.array(-1, np.int64), "last")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model = ir.serde.deserialize_model(proto)
    assert model.graph.node(6).inputs[1].type is None  # ru: no value_info, its type unknown to this CastLike
    assert cast_likes_to_casts(model) == 1
    cast = next(n for n in model.graph if n.op_type == "Cast")
    assert cast.attributes["to"].value == ir.DataType.FLOAT and cast.outputs[0].name == "df"
    assert [n.op_type for n in model.graph].count("CastLike") == 2
    _run_both(proto, model, {"q": np.arange(8, dtype=np.float32).reshape(2, 4), "u": np.ones(2)})
