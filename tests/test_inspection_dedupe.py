"""``deploytool inspect`` (which counts the copies a file stores: inspection._Distinct) and the dedupe pass (which
removes them: passes.dedupe_initializers) found copies by two rules: inspect by equal values (numpy's
array_equal), the pass by equal bytes. A weight differing from another only in the sign of a zero was a copy to
inspect (counted once, its bytes reported as duplicates) but not to the pass, which keeps both. Both use the pass's
rule now (dedupe_initializers.identical: the same dtype, shape and bytes).

The model is built here: an ALBERT-like stack of layers with one tied layer, its MatMul weight and LayerNorm
scale stored once per layer (equal but separate initializers, as torch's dynamo exporter writes ALBERT), a bias
shared by every layer (one initializer read by several nodes) and a LayerNorm bias read through Identity aliases
(TorchScript's sharing)."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from deploytool.inspection import inspect_model
from deploytool.passes.dedupe_initializers import dedupe_initializers

H = 8
LAYERS = 3  # the tied layer, stored once per layer: LAYERS - 1 copies of its weight and of its LayerNorm scale


def _tied_model(path, near_copy: bool) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((H, H)).astype(np.float32)
    w[0, 0] = 0.0
    gamma = rng.standard_normal(H).astype(np.float32)
    inits = [numpy_helper.from_array(rng.standard_normal(H).astype(np.float32), "bias"),  # shared: read by all
             numpy_helper.from_array(rng.standard_normal(H).astype(np.float32), "beta")]
    nodes, h = [], "x"
    for i in range(LAYERS + near_copy):
        wi = w.copy()
        if i == LAYERS:  # the layer after the tied ones: its weight differs from theirs in one zero's sign only
            wi[0, 0] = -0.0
        inits += [numpy_helper.from_array(wi, f"w{i}"), numpy_helper.from_array(gamma.copy(), f"gamma{i}")]
        beta = "beta" if i == 0 else f"beta_alias{i}"
        if i:
            nodes.append(helper.make_node("Identity", ["beta"], [beta]))
        nodes += [helper.make_node("MatMul", [h, f"w{i}"], [f"mm{i}"]),
                  helper.make_node("Add", [f"mm{i}", "bias"], [f"add{i}"]),
                  helper.make_node("LayerNormalization", [f"add{i}", f"gamma{i}", beta], [f"h{i}"], axis=-1)]
        h = f"h{i}"
    graph = helper.make_graph(nodes, "tied", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, H])],
                              [helper.make_tensor_value_info(h, TensorProto.FLOAT, [1, 4, H])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _inspect_copies(path) -> tuple[int, int]:
    """(copies, bytes) that inspect reports: the count from its note, the bytes from duplicate_bytes."""
    r = inspect_model(path, seq_len=4)
    found = [m for n in r.notes if (m := re.match(r"(\d+) stored tensor\(s\) repeat the values", n))]
    return (int(found[0].group(1)) if found else 0), r.duplicate_bytes


def _dedupe_copies(path) -> tuple[int, int]:
    stats = dedupe_initializers(ir.load(str(path)))
    return stats.tensors, stats.bytes


def test_inspect_and_dedupe_count_the_same_copies(tmp_path):
    for near_copy in (False, True):
        path = tmp_path / f"tied{int(near_copy)}.onnx"
        _tied_model(path, near_copy)
        # built: LAYERS - 1 copies of the weight (H*H floats) and of the LayerNorm scale (H floats), and the near
        # copy's layer's scale (a copy too); the near copy's weight is another tensor; the shared bias and the
        # aliased LayerNorm bias are stored once
        want = (2 * (LAYERS - 1) + near_copy, ((LAYERS - 1) * (H * H + H) + near_copy * H) * 4)
        assert _dedupe_copies(path) == want, near_copy
        assert _inspect_copies(path) == want, near_copy


def test_inspect_counts_no_parameter_twice_and_no_copy_after_dedupe(tmp_path):
    path = tmp_path / "tied.onnx"
    _tied_model(path, near_copy=True)
    model = ir.load(str(path))
    dedupe_initializers(model)
    deduped = tmp_path / "deduped.onnx"
    ir.save(model, str(deduped))
    before, after = inspect_model(path, seq_len=4), inspect_model(deduped, seq_len=4)
    # distinct parameters: the tied layer's weight and scale once, the near copy's weight and its layer's scale
    # (a copy of the tied scale), the shared bias and the LayerNorm bias
    assert before.total_params == after.total_params == 2 * H * H + 3 * H
    assert after.duplicate_bytes == 0 and _dedupe_copies(deduped) == (0, 0)
