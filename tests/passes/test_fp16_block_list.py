"""fp16's ``op_block_list`` (Python API only): an entry no node of the model has is said, not ignored.

Op types are case-sensitive: ``Fp16Config(op_block_list=["softmax"])`` (or a typo) kept nothing in fp32 and the
result said nothing. Each such entry is now a ``Skip`` naming it, with the op type it was likely meant to be.
"""

from __future__ import annotations

import onnx

from deploytool.passes import transform
from deploytool.passes.fp16 import Fp16Config


def _fp32_nodes(path) -> set[str]:
    """The op types of the nodes whose float outputs the written file keeps in fp32 (read from its value info)."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    fp32 = {v.name for v in m.graph.value_info if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    return {n.op_type for n in m.graph.node if any(o in fp32 for o in n.output) and n.op_type != "Cast"}


def test_a_block_list_entry_that_matches_no_node_is_a_skip_with_the_op_meant(tiny_onnx, tmp_path):
    src = tiny_onnx("bert")
    ops = {n.op_type for n in onnx.load(str(src)).graph.node}
    assert "Softmax" in ops and "softmax" not in ops
    r = transform(src, tmp_path / "a.onnx", Fp16Config(op_block_list=("softmax", "Softmax", "Nope"), check_host=False))
    assert [s.node for s in r.skipped] == ["softmax", "Nope"]
    assert "did you mean 'Softmax'?" in r.skipped[0].reason and "case-sensitive" in r.skipped[0].reason
    assert "did you mean" not in r.skipped[1].reason
    assert "skipped=2" in r.summary()
    assert "Softmax" in _fp32_nodes(tmp_path / "a.onnx")  # the entry that matched still keeps Softmax in fp32
    plain = transform(src, tmp_path / "b.onnx", Fp16Config(op_block_list=("Softmax",), check_host=False))
    assert plain.skipped == []
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()  # the same file
