"""pack's opset upgrade (17 -> 25 for INT2 weights): the shortcut that bumps the opset alone, without converting
the whole graph, must give what onnx's version converter gives, and must step aside wherever an adapter applies."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploytool import onnx_io
from deploytool.passes import upgrade_opset as U
from deploytool.runtime.infer import run_onnx
from deploytool.testing.tiny import fixed_inputs


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Tiny BERT-family files as users bring them: TorchScript at opsets 14 and 17, the dynamo exporter,
    optimum, and ONNX Runtime's optimizer at levels 1 and 2 over the opset-14 export."""
    from deploytool.export import ExportConfig, export_loaded
    from deploytool.testing.conformance import optimize
    from deploytool.testing.tiny import tiny_model

    root = tmp_path_factory.mktemp("upgrade")
    out = {}
    for family, exporter, opset in [("bert", "torch", 14), ("bert", "torch", 17), ("roberta", "dynamo", None),
                                    ("distilbert", "optimum", None)]:
        path = root / f"{family}-{exporter}-{opset}.onnx"
        export_loaded(tiny_model(family, task="feature-extraction", layers=2), path,
                      ExportConfig(model=f"tiny-{family}", exporter=exporter, **({"opset": opset} if opset else {})))
        out[path.stem] = path
    for level in (1, 2):
        out[f"ort-O{level}"] = optimize(out["bert-torch-14"], level, root / f"ort-O{level}.onnx")
    return out


def _nodes(model: ir.Model) -> list[bytes]:
    """Each node as bytes, without its metadata: the converter drops the dynamo exporter's (stack traces), which
    the shortcut keeps."""
    out = []
    for n in ir.serde.serialize_model(model).graph.node:
        n.ClearField("metadata_props")
        n.ClearField("doc_string")
        out.append(n.SerializeToString())
    return out


@pytest.mark.parametrize("name", ["bert-torch-14", "bert-torch-17", "roberta-dynamo-None", "distilbert-optimum-None",
                                  "ort-O1", "ort-O2"])
def test_the_shortcut_is_the_version_converters_result(exports, name):
    src = exports[name]
    model = onnx_io.load_model(src)
    old = model.opset_imports[""]
    if old >= 25:
        pytest.skip(f"exported at opset {old}: nothing to upgrade")
    # TorchScript at 14 writes LayerNorm with ReduceMean, whose axes the converter moves to an input: whole graph
    assert U._no_adapter_applies(model, 25) is (name not in ("bert-torch-14",)), [
        n.op_type for n in model.graph if n.op_type.startswith("Reduce")]
    full = U.upgrade_opset(onnx_io.load_model(src), 25)  # always the whole graph through the converter
    res = U.UpgradeOpsetPass(25)(model)
    assert res.stats["opset"] == f"{old} -> 25" and model.opset_imports[""] == full.opset_imports[""] == 25
    assert _nodes(model) == _nodes(full)
    out = onnx_io.save_streamed(model, src.parent / f"{name}-up.onnx")
    feeds = fixed_inputs()
    a, b = run_onnx(src, feeds), run_onnx(out, feeds)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5)  # ORT may pick other kernels at 25


def _graph(nodes, inits, opset):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                                        ir_version=8))


def test_a_node_an_adapter_changes_takes_the_whole_conversion():
    """ReduceMean's axes became an input at opset 18: the converter rewrites it, so the shortcut must not apply,
    and the upgraded model must compute the same."""
    model = _graph([helper.make_node("Relu", ["x"], ["r"]),
                    helper.make_node("ReduceMean", ["r"], ["y"], axes=[-1], keepdims=1)], [], 17)
    assert not U._no_adapter_applies(model, 25)
    U.UpgradeOpsetPass(25)(model)
    proto = ir.serde.serialize_model(model)
    (mean,) = [n for n in proto.graph.node if n.op_type == "ReduceMean"]
    assert len(mean.input) == 2 and not [a for a in mean.attribute if a.name == "axes"]
    import onnxruntime as ort

    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    y = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, np.maximum(x, 0).mean(-1, keepdims=True), rtol=1e-6)


@pytest.mark.parametrize("name", ["bert-torch-14", "bert-torch-17", "roberta-dynamo-None", "ort-O1", "ort-O2"])
def test_lowering_undoes_the_upgrade(exports, name, tmp_path):
    """repack's way back (lower_opset): a file upgraded to 25 and lowered to its own opset again has that opset,
    what the upgrade rewrote in its old form (ReduceMean's axes an attribute again below 18), passes the checker
    at that opset and computes what the export computes."""
    src = exports[name]
    model = onnx_io.load_model(src)
    old, old_ir = model.opset_imports[""], model.ir_version
    if old >= 25:
        pytest.skip(f"exported at opset {old}")
    U.UpgradeOpsetPass(25)(model)
    assert U.lower_opset(model, old, old_ir) is None
    assert model.opset_imports[""] == old and model.ir_version == old_ir
    out = onnx_io.save_streamed(model, tmp_path / "low.onnx")
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto, full_check=True)
    want = [len(n.input) for n in onnx.load(str(src)).graph.node if n.op_type == "ReduceMean"]
    assert [len(n.input) for n in proto.graph.node if n.op_type == "ReduceMean"] == want
    feeds = fixed_inputs()
    a, b = run_onnx(src, feeds), run_onnx(out, feeds)
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5)


def test_lowering_refuses_what_the_older_opset_cannot_say():
    """A Split by num_outputs (an opset-18 attribute) has no form at 17: lower_opset says why and leaves the
    model as it was; a Split by sizes is the same op at 13 and 25 and passes."""
    sizes = numpy_helper.from_array(np.array([4, 4], np.int64), "s")
    ok = _graph([helper.make_node("Split", ["x", "s"], ["y", "z"], axis=-1)], [sizes], 25)
    assert U.lower_opset(ok, 17, 8) is None and ok.opset_imports[""] == 17 and ok.ir_version == 8
    bad = _graph([helper.make_node("Split", ["x"], ["y", "z"], axis=-1, num_outputs=2)], [], 25)
    bad.ir_version = 11
    why = U.lower_opset(bad, 17, 8)
    assert why and "Split" in why
    assert bad.opset_imports[""] == 25 and bad.ir_version == 11 and [n.op_type for n in bad.graph] == ["Split"]


def test_the_shortcut_steps_aside_for_shape_reading_adapters_subgraphs_and_old_opsets():
    g = numpy_helper.from_array(np.ones(3, np.float32), "g")
    b = numpy_helper.from_array(np.zeros(3, np.float32), "b")
    norm = _graph([helper.make_node("GroupNormalization", ["x", "g", "b"], ["y"], num_groups=3)], [g, b], 18)
    assert not U._no_adapter_applies(norm, 25)
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "c")
    branchy = _graph([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=then)], [cond], 17)
    assert not U._no_adapter_applies(branchy, 25)
    old = _graph([helper.make_node("Relu", ["x"], ["y"])], [], 11)
    assert not U._no_adapter_applies(old, 25)
    assert U._no_adapter_applies(_graph([helper.make_node("Relu", ["x"], ["y"])], [], 17), 25)
    assert onnx.defs.onnx_opset_version() >= 25


@pytest.fixture(scope="module")
def opset11(tmp_path_factory):
    """A tiny DistilBERT as the legacy export writes it: TorchScript at opset 11 with eager attention (SDPA exports
    from opset 14 on only), no intermediate shapes declared; its attention mask reaches the scores through an
    Expand to ``Shape(scores)``."""
    from deploytool.testing.conformance import MODEL_BY_NAME, export

    return export(MODEL_BY_NAME["distilbert"], "torchscript-11", tmp_path_factory.mktemp("opset11"))


def _softmax_inputs(model: ir.Model) -> list[ir.Value]:
    return [n.inputs[0] for n in model.graph if n.op_type == "Softmax"]


def test_an_opset11_softmax_over_the_last_axis_stays_one_softmax(opset11):
    """Before opset 13 a Softmax flattens its input to 2-D at its axis; onnx's converter keeps that with Flatten,
    Softmax and Reshape around each attention Softmax, because neither the file nor ONNX's shape inference gives
    the scores' rank, and the finder then saw no attention scores (pack at runtime speed refused every such file,
    and on ALBERT after ORT's optimizer packed some layers' Q/K/V as a classifier's). The pass reads the rank from
    the graph and the converter only writes axis -1."""
    from deploytool.graph import find_structure
    from deploytool.graph._util import value_rank

    proto = onnx.load(opset11)
    inferred = {v.name: v for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    model = onnx_io.load_model(opset11)
    names = [v.name for v in _softmax_inputs(model)]
    assert len(names) == 4 and all(not inferred[n].type.tensor_type.HasField("shape") for n in names)
    assert [value_rank(v) for v in _softmax_inputs(model)] == [4] * 4
    plain = onnx.version_converter.convert_version(proto, 13)  # what the converter alone writes
    assert sum(n.op_type == "Flatten" for n in plain.graph.node) == 4

    from deploytool.testing.conformance import MODEL_BY_NAME, feeds as case_feeds

    before = run_onnx(opset11, feeds := case_feeds(MODEL_BY_NAME["distilbert"]))
    U.UpgradeOpsetPass(13)(model)
    assert model.opset_imports[""] == 13
    assert not [n for n in model.graph if n.op_type in ("Flatten",)]
    assert all(n.attributes["axis"].value == -1 for n in model.graph if n.op_type == "Softmax")
    out = model.graph.outputs[0]
    path = opset11.with_name("upgraded.onnx")
    onnx_io.save_model(model, path)
    after = run_onnx(path, feeds)
    np.testing.assert_allclose(after[out.name], before[out.name], rtol=0, atol=1e-6)
    assert len(find_structure(onnx_io.load_model(path)).layers) == len(find_structure(onnx_io.load_model(opset11)).layers)


def test_an_upgrade_for_packing_writes_an_ir_version_older_runtimes_read(opset11, tmp_path):
    """pack --runtime memory/densest upgrades an opset-11 export to 13 only (Split and axes as inputs); it was
    given IR 11, which ONNX Runtime before 1.20 refuses (1.17, on phones, reads IR 9 at most), though nothing in
    it needs more than IR 7. The upgrade to 25 (INT2 weights) still writes IR 11."""
    assert onnx.load(opset11).ir_version <= 9
    model = onnx_io.load_model(opset11)
    U.UpgradeOpsetPass(13)(model)
    assert model.opset_imports[""] == 13 and model.ir_version <= 9
    path = tmp_path / "13.onnx"
    onnx_io.save_model(model, path)
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx_io.load_model(opset11)
    U.UpgradeOpsetPass(25)(model)
    assert (model.opset_imports[""], model.ir_version) == (25, 11)


def test_a_softmax_over_another_axis_keeps_the_converters_flatten(tmp_path):
    """Only a Softmax over its input's last axis is declared: over axis 1 of a 3-D input, opset 11's softmax
    is over axes 1 and 2 together, which the converter's Flatten keeps (and the outputs stay equal)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], axis=1),
                               helper.make_node("Softmax", ["x"], ["z"], axis=2)], "g", [x], [y, z])
    src = tmp_path / "sm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=7), src)
    model = onnx_io.load_model(src)
    U.UpgradeOpsetPass(13)(model)
    flattened = [n for n in model.graph if n.op_type == "Flatten"]
    assert len(flattened) == 1 and flattened[0].attributes["axis"].value == 1
    dst = tmp_path / "sm13.onnx"
    onnx_io.save_model(model, dst)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}
    want, got = run_onnx(src, feeds), run_onnx(dst, feeds)
    for k in ("y", "z"):
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-7)
