"""The gate's reference held in memory (``runtime.verify.memory_reference``, issue #17).

A model's big tensors become arrays that ONNX Runtime uses in place (a graph file of a few KB, an empty
placeholder file it must never read), except a table only Gather nodes read, which goes to a data file
ORT maps. What must hold, against references independent of that code (the model's own file in ORT,
and the file numpy's values were saved to): the same outputs; a lazy tensor's computed values are the
ones the session runs on; the arrays are really used in place; the placeholder stays empty.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from deploytool import onnx_io
from deploytool.runtime import verify as V
from deploytool.runtime.infer import make_session

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)


@pytest.fixture(scope="module")
def src(tiny_onnx):
    return tiny_onnx("bert", exporter="torch", **SHAPE)


def _feeds(src):
    return V.gate_feeds(V.gate_plan(onnx_io.load_proto(src, load_external_data=False), src))


def _file_outputs(path, feeds):
    """The file's outputs in ORT with the same kernels (no graph optimization, no prepacking)."""
    sess = make_session(path, session_config={"session.disable_prepacking": "1"}, optimize=False)
    names = [o.name for o in sess.get_outputs()]
    declared = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, {k: v for k, v in feeds.items() if k in declared})))


def _gathered_tables(path) -> set[str]:
    """Initializers that Gather nodes, and only they, read as their data (from the file's own graph)."""
    proto = onnx.load(str(path), load_external_data=False)
    readers: dict[str, set[tuple[str, int]]] = {}
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, set()).add((node.op_type, i))
    return {t.name for t in proto.graph.initializer if readers.get(t.name) == {("Gather", 0)}}


def test_outputs_equal_the_models_file(src, tmp_path):
    feeds = _feeds(src)
    model = onnx_io.load_model(src)
    ref = V.memory_reference(model, tmp_path)
    tables = _gathered_tables(src)
    assert len(tables) == 3  # word, position and token-type embeddings
    assert ref.path.stat().st_size < 50_000  # the graph only: no weight was written into it
    assert ref.placeholder.stat().st_size == 0
    assert (tmp_path / "reference.data").stat().st_size >= sum(
        model.graph.initializers[t].const_value.nbytes for t in tables)
    big = {n for n, v in model.graph.initializers.items() if v.const_value.nbytes > onnx_io.INLINE_BYTES}
    assert set(ref.initializers) == big - tables and ref.initializers
    got = V.reference_outputs(ref, feeds)
    want = _file_outputs(src, feeds)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])


def test_lazy_tensors_are_computed_into_the_reference(src, tmp_path):
    """Doubled weights, computed lazily: the reference gives what a file holding the doubled weights gives."""
    feeds = _feeds(src)
    model = onnx_io.load_model(src)
    doubled = [v for v in model.graph.initializers.values()
               if v.const_value.nbytes > onnx_io.INLINE_BYTES and len(v.shape) == 2][:4]
    assert len(doubled) == 4
    for v in doubled:
        arr = v.const_value.numpy()
        v.const_value = ir.LazyTensor(lambda a=arr: ir.Tensor(a * np.float32(2)), dtype=v.const_value.dtype,
                                      shape=v.const_value.shape, name=v.name)
    (tmp_path / "m").mkdir()
    ref = V.memory_reference(model, tmp_path / "m")
    proto = onnx.load(str(src))
    for t in proto.graph.initializer:
        if t.name in {v.name for v in doubled}:
            t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) * np.float32(2), t.name))
    onnx.save(proto, str(tmp_path / "doubled.onnx"))
    got = V.reference_outputs(ref, feeds)
    want = _file_outputs(tmp_path / "doubled.onnx", feeds)
    plain = _file_outputs(src, feeds)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert any(not np.array_equal(plain[k], want[k]) for k in want)  # the doubling mattered


def test_arrays_are_used_in_place(src, tmp_path):
    """No copy: writing into an array after the session exists changes what the session computes."""
    feeds = _feeds(src)
    model = onnx_io.load_model(src)
    for v in model.graph.initializers.values():  # arrays of this test's own, writable
        v.const_value = ir.Tensor(v.const_value.numpy().copy(), name=v.name)
    ref = V.memory_reference(model, tmp_path)
    sess = V._session(ref)
    declared = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in declared}
    before = sess.run(None, feeds)[0]
    scaled = 0
    for a in ref.initializers.values():
        if a.ndim == 2:
            a *= np.float32(3)
            scaled += 1
    assert scaled
    after = sess.run(None, feeds)[0]
    assert not np.array_equal(before, after)
    assert ref.placeholder.stat().st_size == 0
