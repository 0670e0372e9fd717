"""Reordering by importance leaves outputs unchanged; slicing afterwards keeps the most important units."""

from __future__ import annotations


import numpy as np
import onnx
import pytest

from deploytool.errors import ConfigError, InputFileError
from deploytool.importance import (MAGNITUDE_SOURCE, importance_from_dict, load_importance,
                                   magnitude_importance, save_importance)
from deploytool.passes.reorder import ReorderConfig, reorder_file
from deploytool.passes.slice_subnetwork import SliceConfig, slice_file
from deploytool.testing import reference as ref
from deploytool.testing.prune_cases import max_diff, run_bytes
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)  # shared with other tests' exports
ROBERTA = dict(layers=2, hidden=32, heads=8, ffn=40, seed=4)  # the sweep's roberta base


def test_importance_roundtrip_and_validation(tmp_path):
    p = save_importance(tmp_path / "i.json", [[1, 2], [3, 4]], [[0.5] * 3] * 2, source="unit", model="m")
    imp = load_importance(p)
    assert imp.heads == ((1.0, 2.0), (3.0, 4.0)) and imp.source == "unit"
    assert imp.head_order(0) == [1, 0]
    assert imp.neuron_order(1) == [0, 1, 2]  # ties keep the current order
    with pytest.raises(ConfigError, match="format"):
        importance_from_dict({"format": "x", "heads": [], "neurons": []})
    with pytest.raises(ConfigError, match="nan"):
        importance_from_dict({"format": "deploytool-importance/1", "heads": [[float("nan")]], "neurons": [[1]]})
    with pytest.raises(ConfigError, match="neurons. has 2"):
        importance_from_dict({"format": "deploytool-importance/1", "heads": [[1]], "neurons": [[1], [2]]})
    with pytest.raises(InputFileError):
        load_importance(tmp_path / "missing.json")


@pytest.mark.parametrize("family,exporter,shape", [("bert", "torch", SHAPE), ("roberta", "torch", ROBERTA),
                                                  ("bert", "dynamo", dict(layers=3, hidden=24, heads=3, ffn=40, seed=2))])
def test_reorder_keeps_outputs(tiny_onnx, tmp_path, family, exporter, shape):
    src = tiny_onnx(family, exporter=exporter, **shape)
    dst = tmp_path / "r.onnx"
    res = reorder_file(src, dst, ReorderConfig())
    assert res.stats["importance"] == MAGNITUDE_SOURCE and res.modified
    onnx.checker.check_model(onnx.load(str(dst)), full_check=True)
    for lengths in [(8, 5, 3), (10,)]:
        feeds = fixed_inputs(lengths=lengths)
        assert max_diff(run_bytes(dst.read_bytes(), feeds), run_bytes(src.read_bytes(), feeds)) <= 1e-5
    # after the reorder, the magnitude importance of the new model is sorted (most important first)
    import onnx_ir as ir

    from deploytool.graph import find_structure

    imp = magnitude_importance(find_structure(ir.load(str(dst))))
    for i in range(shape["layers"]):
        assert imp.head_order(i) == list(range(shape["heads"]))
        assert imp.neuron_order(i) == list(range(shape["ffn"]))


def test_reorder_then_slice_keeps_most_important(tiny_onnx, tiny_torch_model, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    heads = [[0.1, 0.9, 0.5, 0.7], [0.3, 0.2, 0.8, 0.1]]
    rng = np.random.default_rng(0)
    neurons = rng.random((2, 48)).tolist()
    imp = save_importance(tmp_path / "imp.json", heads, neurons, source="test")
    reorder_file(src, tmp_path / "r.onnx", ReorderConfig(importance=imp))
    slice_file(tmp_path / "r.onnx", tmp_path / "s.onnx", SliceConfig(width=0.5))
    keep_ffn = {i: sorted(np.argsort(-np.asarray(neurons[i]), kind="stable")[:24].tolist()) for i in range(2)}
    want = ref.subnetwork_reference(tiny_torch_model("bert", **SHAPE), {0: [0, 2], 1: [1, 3]}, keep_ffn)
    feeds = fixed_inputs(lengths=(8, 5, 3))
    assert max_diff(run_bytes((tmp_path / "s.onnx").read_bytes(), feeds), ref.torch_outputs(want, feeds)) <= 1e-4


def test_column_take_by_blocks_moves_the_same_values():
    """Whole-head column selections are copied a block at a time: the result must be numpy's own fancy
    indexing of those columns, for permutations, subsets, runs of adjacent heads and non-block selections."""
    from deploytool.passes._surgery import _column_blocks, _column_take, head_features

    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 48)).astype(np.float32)  # 6 heads of 8
    cases = {
        "permutation": head_features([4, 0, 5, 1, 2, 3], 8),
        "adjacent heads": head_features([2, 3, 0, 1], 8),  # runs of two heads: blocks of 16 columns
        "subset": head_features([5, 2], 8),
        "a run of columns": np.arange(12, 36),  # two aligned blocks of 12
        "neurons": rng.permutation(48)[:30],  # no blocks: column by column
    }
    for name, idx in cases.items():
        idx = np.asarray(idx, dtype=np.int64)
        got = _column_take(idx)(w)
        assert got.flags.c_contiguous, name
        np.testing.assert_array_equal(got, w[:, idx], err_msg=name)
    assert _column_blocks(head_features([4, 0, 5, 1, 2, 3], 8)) == 8
    assert _column_blocks(head_features([2, 3, 0, 1], 8)) == 16
    assert _column_blocks(np.arange(12, 36)) == 12  # two aligned blocks of 12
    assert _column_blocks(np.array([0, 2, 1])) == 1


def test_repeated_neuron_ids_refused(tiny_onnx, tmp_path):
    from deploytool.errors import PassRefusedError
    from deploytool.graph.structure import find_structure
    from deploytool.onnx_io import load_model
    from deploytool.passes._surgery import keep_neurons

    model = load_model(tiny_onnx("bert", "torch", **SHAPE))
    layer = find_structure(model).layers[0]
    with pytest.raises(PassRefusedError, match="FFN neuron ids repeat"):
        keep_neurons(model.graph, layer, [0, 1, 1] + list(range(3, SHAPE["ffn"])))
