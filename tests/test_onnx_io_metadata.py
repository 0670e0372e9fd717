"""A pass's output holds no exporter provenance (``deploytool.onnx_io.strip_exporter_metadata``, the module doc
says why); every other ``metadata_props`` entry, a user's own included, is written as it was read."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from deploytool.onnx_io import strip_exporter_metadata

TORCH = {"pkg.torch.onnx.stack_trace": 'File "/home/someone/model.py", line 12, in forward',
         "pkg.torch.onnx.class_hierarchy": "['M', 'torch.nn.modules.linear.Linear']",
         "namespace": ": M/lin: torch.nn.modules.linear.Linear", "pkg.onnxscript.rewriter.rule_name": "r"}


def _props(entries) -> dict[str, str]:
    return {p.key: p.value for p in entries}


def _graph_model() -> onnx.ModelProto:
    """Relu -> If (one Identity per branch), every node carrying the torch exporter's keys; a user's key on the
    Relu; a 'namespace' on its own (not the exporter's) on the If's else-branch node."""
    def branch(name, extra):
        n = helper.make_node("Identity", ["r"], [f"{name}_out"], name=f"{name}_id")
        helper.set_metadata_props(n, extra)
        return helper.make_graph([n], name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT,
                                                                               [2])])

    relu = helper.make_node("Relu", ["x"], ["r"], name="relu")
    helper.set_metadata_props(relu, {**TORCH, "acme.reviewed": "yes"})
    cond = helper.make_node("If", ["c"], ["y"], name="if", then_branch=branch("then", TORCH),
                            else_branch=branch("else", {"namespace": "acme/block1"}))
    helper.set_metadata_props(cond, TORCH)
    g = helper.make_graph([relu, cond], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                                              helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
                          initializer=[helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])],
                          value_info=[helper.make_tensor_value_info("w", TensorProto.FLOAT, [2])])
    helper.set_metadata_props(g.value_info[0], {"pkg.torch.export.graph_signature.InputSpec.kind": "PARAMETER"})
    helper.set_metadata_props(g.input[0], {"pkg.torch.onnx.original_node_name": "x"})
    g.metadata_props.add(key="pkg.torch.export.ExportedProgram.graph_signature", value="# inputs ...")
    m = helper.make_model(g)
    helper.set_metadata_props(m, {"deploytool.family": "bert", "acme.owner": "team"})
    return m


def test_strip_keeps_what_is_not_the_exporters():
    m = _graph_model()
    size = m.ByteSize()
    dropped = strip_exporter_metadata(m)
    g = m.graph
    assert _props(g.node[0].metadata_props) == {"acme.reviewed": "yes"}
    assert _props(g.node[1].metadata_props) == {}
    branches = {a.name: a.g for a in g.node[1].attribute}
    then, other = branches["then_branch"], branches["else_branch"]
    assert _props(then.node[0].metadata_props) == {}
    assert _props(other.node[0].metadata_props) == {"namespace": "acme/block1"}  # not beside the exporter's keys
    assert _props(g.input[0].metadata_props) == {} and _props(g.metadata_props) == {}
    assert [v.name for v in g.value_info] == []  # it only restated the initializer 'w' once its metadata went
    assert _props(m.metadata_props) == {"deploytool.family": "bert", "acme.owner": "team"}
    assert 0 < dropped <= size - m.ByteSize() <= dropped + 16  # the enclosing messages' length bytes shrink too
    assert strip_exporter_metadata(m) == 0


@pytest.mark.slow
def test_pass_output_of_a_dynamo_export_has_no_stack_traces(tmp_path):
    """A user's own dynamo export (its stack traces and all) sliced: before, the output kept the metadata of every
    node the slice kept (161,445 of its 242,922 bytes); now none of it (79,662 bytes), while the user's own node and
    model annotations are kept and the result says how many bytes were left out."""
    from deploytool.export.config import Exporter, Task
    from deploytool.export.torch_export import export_torch
    from deploytool.passes import transform
    from deploytool.passes.slice_subnetwork import SliceConfig
    from deploytool.testing.tiny import tiny_model

    src = tmp_path / "dynamo.onnx"
    export_torch(tiny_model("bert"), src, task=Task.FEATURE_EXTRACTION, exporter=Exporter.DYNAMO)
    m = onnx.load(str(src))
    first = m.graph.node[0]
    first.metadata_props.add(key="acme.reviewed", value="yes")
    m.metadata_props.add(key="acme.owner", value="team")
    onnx.save(m, str(src))
    before = strip_exporter_metadata(onnx.load(str(src)))
    assert before > 0.5 * src.stat().st_size  # what this test is about

    dst = tmp_path / "sliced.onnx"
    result = transform(src, dst, SliceConfig(width=0.5))
    out = onnx.load(str(dst))
    keys = {p.key for n in out.graph.node for p in n.metadata_props} \
        | {p.key for v in (*out.graph.input, *out.graph.output, *out.graph.value_info) for p in v.metadata_props} \
        | {p.key for p in out.graph.metadata_props}
    assert keys == {"acme.reviewed"}
    assert _props(next(n for n in out.graph.node if n.name == first.name).metadata_props) == {"acme.reviewed": "yes"}
    assert _props(out.metadata_props)["acme.owner"] == "team"
    assert result.to_dict()["exporter_metadata_bytes_dropped"] > 0.5 * before  # the sliced-away nodes' are gone too
    assert dst.stat().st_size < 0.5 * src.stat().st_size


@pytest.mark.parametrize("external", [False, True])
def test_save_proto_writes_no_exporter_metadata(tmp_path, external):
    """save_proto / staged_proto, the writer of export, fuse, the QNN quantizer's file and fit's external copy, hold
    to the rule as the pass writer does (before, they wrote the exporter's keys as they were); a copy asks to keep
    them (keep_exporter_metadata)."""
    from deploytool.onnx_io import save_proto

    out = tmp_path / "m.onnx"
    save_proto(_graph_model(), out, external=external)
    m = onnx.load(str(out))
    assert _props(m.graph.node[0].metadata_props) == {"acme.reviewed": "yes"}
    assert _props(m.graph.node[1].metadata_props) == {} and _props(m.graph.metadata_props) == {}
    assert _props(m.metadata_props) == {"deploytool.family": "bert", "acme.owner": "team"}
    kept = tmp_path / "copy.onnx"
    save_proto(_graph_model(), kept, external=external, keep_exporter_metadata=True)
    assert _props(onnx.load(str(kept)).graph.node[1].metadata_props) == TORCH


@pytest.mark.slow
def test_fused_dynamo_export_has_no_stack_traces(tmp_path):
    """fuse (ORT's transformer optimizer) leaves each node it does not fuse as it was: the fused file of a user's
    dynamo export held the exporter's stack traces of every such node; now none, the user's own node annotation
    kept, and the result says how many bytes were left out."""
    from deploytool.export.config import Exporter, Task
    from deploytool.export.torch_export import export_torch
    from deploytool.runtime.fuse import fuse_transformer
    from deploytool.testing.tiny import tiny_model

    src = tmp_path / "dynamo.onnx"
    export_torch(tiny_model("bert"), src, task=Task.FEATURE_EXTRACTION, exporter=Exporter.DYNAMO)
    m = onnx.load(str(src))
    first = m.graph.node[0]
    first.metadata_props.add(key="acme.reviewed", value="yes")
    onnx.save(m, str(src))

    dst = tmp_path / "fused.onnx"
    result = fuse_transformer(src, dst)
    out = onnx.load(str(dst))
    keys = {p.key for n in out.graph.node for p in n.metadata_props} \
        | {p.key for v in (*out.graph.input, *out.graph.output, *out.graph.value_info) for p in v.metadata_props} \
        | {p.key for p in out.graph.metadata_props}
    assert keys == {"acme.reviewed"}
    assert result.exporter_metadata_bytes_dropped > 0.3 * src.stat().st_size
    assert dst.stat().st_size < 0.6 * src.stat().st_size
