"""Head and FFN pruning on ONNX vs transformers' own ``prune_heads`` and nn.Linear slicing."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from deploytool.errors import ConfigError
from deploytool.passes.prune_ffn import FFNPruneConfig, prune_ffn_file
from deploytool.passes.prune_heads import HeadPruneConfig, parse_heads_spec, prune_heads_file
from deploytool.testing import reference as ref
from deploytool.testing.prune_cases import max_diff, run_bytes
from deploytool.testing.tiny import fixed_inputs

SHAPE = dict(layers=2, hidden=32, heads=4, ffn=48, seed=8)  # shared with the sweep's fused base


def test_parse_heads_spec():
    assert parse_heads_spec("0:1,3;2:0") == {0: (1, 3), 2: (0,)}
    assert parse_heads_spec(" 1:2 ; ") == {1: (2,)}
    for bad in ("", "0", "x:1", "0:1;0:2"):
        with pytest.raises(ConfigError):
            parse_heads_spec(bad)


def test_head_config_validation():
    with pytest.raises(ConfigError, match="exactly one"):
        HeadPruneConfig()
    with pytest.raises(ConfigError, match="ratio"):
        HeadPruneConfig(ratio=1.0)
    with pytest.raises(ConfigError, match="head id"):
        HeadPruneConfig(heads={0: [-1]})
    with pytest.raises(ConfigError, match="twice"):
        HeadPruneConfig(heads={0: [1, 1]})
    with pytest.raises(ConfigError, match="keep"):
        FFNPruneConfig(keep=float("nan"))


def test_ids_and_fractions_from_numpy_are_taken_as_the_numbers_they_are(tiny_onnx, tmp_path):
    """Ids picked with numpy (``np.argsort(scores)[:2]``, its items np.int64) and fractions from a numpy grid were
    refused in words that contradict them ("head id np.int64(1) must be an integer >= 0", "ratio: np.float32(0.5)
    out of range"): they are the same ids and fractions, held as Python numbers, and prune the same heads."""
    scores = np.array([0.3, 0.1, 0.9, 0.2])
    drop = np.argsort(scores)[:2]  # heads 1 and 3
    by_numpy = HeadPruneConfig(heads={np.int64(0): drop, 1: [np.int64(2)]})
    assert by_numpy == HeadPruneConfig(heads={0: [1, 3], 1: [2]})
    assert all(type(k) is int and all(type(h) is int for h in v) for k, v in by_numpy.heads.items())
    assert json.dumps(by_numpy.heads) == '{"0": [1, 3], "1": [2]}'
    assert HeadPruneConfig(ratio=np.float32(0.5)) == HeadPruneConfig(ratio=0.5)
    assert type(HeadPruneConfig(ratio=np.float32(0.5)).ratio) is float
    assert FFNPruneConfig(neurons={np.int64(1): np.arange(3)}) == FFNPruneConfig(neurons={1: [0, 1, 2]})
    assert FFNPruneConfig(keep=np.float32(0.25)) == FFNPruneConfig(keep=0.25)
    src = tiny_onnx("bert", **SHAPE)
    a = prune_heads_file(src, tmp_path / "a.onnx", by_numpy)
    b = prune_heads_file(src, tmp_path / "b.onnx", HeadPruneConfig(heads={0: [1, 3], 1: [2]}))
    assert a.counts.heads_per_layer == b.counts.heads_per_layer
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    json.dumps(a.to_dict())


@pytest.mark.parametrize(("make", "message"), [
    (lambda: HeadPruneConfig(ratio="0.5"), "ratio: expected a fraction 0 <= ratio < 1 of each layer's heads, got str '0.5'"),
    (lambda: HeadPruneConfig(ratio=True), "ratio: expected a fraction 0 <= ratio < 1 of each layer's heads, got bool True"),
    (lambda: HeadPruneConfig(ratio=[0.5]), "ratio: expected a fraction 0 <= ratio < 1 of each layer's heads, got list"),
    (lambda: FFNPruneConfig(keep="0.5"), "keep: expected a fraction 0 < keep <= 1 of each layer's neurons, got str '0.5'"),
    (lambda: HeadPruneConfig(heads={0: np.array([[1]])}), "heads: layer 0: expected a list of head ids, got ndarray"),
    (lambda: HeadPruneConfig(heads={0: [np.float32(1)]}), "heads: layer 0 head id np.float32(1.0) must be an integer >= 0"),
    (lambda: HeadPruneConfig(heads={0: [np.bool_(True)]}), "heads: layer 0 head id np.True_ must be an integer >= 0"),
])
def test_a_fraction_of_the_wrong_type_is_said_to_be_one_not_out_of_range(make, message):
    """``ratio="0.5"`` (a number read from text) was "ratio: '0.5' out of range", ``ratio=True`` "True out of
    range": the value is no number at all, and the message says what it is."""
    with pytest.raises(ConfigError) as e:
        make()
    assert str(e.value) == message


@pytest.mark.parametrize("family,exporter", [("bert", "torch"), ("distilbert", "torch")])
def test_prune_heads_matches_transformers(tiny_onnx, tiny_torch_model, tmp_path, family, exporter):
    src = tiny_onnx(family, exporter=exporter, **SHAPE)
    heads = {0: [0, 2, 3], 1: [1]}
    dst = tmp_path / "h.onnx"
    res = prune_heads_file(src, dst, HeadPruneConfig(heads=heads))
    onnx.checker.check_model(onnx.load(str(dst)), full_check=True)
    assert res.counts.heads_per_layer == [1, 3]
    want = ref.prune_heads_reference(tiny_torch_model(family, **SHAPE), heads)
    for lengths in [(8, 5, 3), (12, 2)]:
        feeds = fixed_inputs(lengths=lengths)
        assert max_diff(run_bytes(dst.read_bytes(), feeds), ref.torch_outputs(want, feeds)) <= 1e-4


def test_ratio_removes_least_important(tiny_onnx, tiny_torch_model, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    imp = tmp_path / "imp.json"
    imp.write_text(json.dumps({"format": "deploytool-importance/1", "heads": [[4, 1, 3, 2], [0.1, 0.4, 0.3, 0.2]],
                               "neurons": [[1.0] * 48] * 2, "source": "test", "model": "tiny"}))
    res = prune_heads_file(src, tmp_path / "r.onnx", HeadPruneConfig(ratio=0.5, importance=imp))
    assert res.stats["heads_removed"] == {"0": [1, 3], "1": [0, 3]}
    assert res.stats["importance"] == "test"
    want = ref.prune_heads_reference(tiny_torch_model("bert", **SHAPE), {0: [1, 3], 1: [0, 3]})
    feeds = fixed_inputs()
    assert max_diff(run_bytes((tmp_path / "r.onnx").read_bytes(), feeds), ref.torch_outputs(want, feeds)) <= 1e-4


def test_ratio_without_file_names_the_fallback(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    res = prune_heads_file(src, tmp_path / "m.onnx", HeadPruneConfig(ratio=0.25))
    assert res.stats["importance"] == "weight-magnitude (data-free)"
    assert res.counts.heads_per_layer == [3, 3]


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_prune_ffn_matches_reference(tiny_onnx, tiny_torch_model, tmp_path, family):
    src = tiny_onnx(family, exporter="torch", **SHAPE)
    rng = np.random.default_rng(3)
    drop = {0: sorted(rng.choice(48, 30, replace=False).tolist()), 1: [0, 47]}
    dst = tmp_path / "f.onnx"
    res = prune_ffn_file(src, dst, FFNPruneConfig(neurons=drop))
    assert res.counts.neurons_per_layer == [18, 46]
    keep = {i: [j for j in range(48) if j not in set(v)] for i, v in drop.items()}
    model = tiny_torch_model(family, **SHAPE)
    want = ref.ffn_reference(model, keep)
    feeds = fixed_inputs(lengths=(8, 5, 3))
    assert max_diff(run_bytes(dst.read_bytes(), feeds), ref.torch_outputs(want, feeds)) <= 1e-4
    assert res.counts.params_before - res.counts.params_after == ref.num_params(model) - ref.num_params(want)


def test_prune_ffn_keep_fraction(tiny_onnx, tmp_path):
    src = tiny_onnx("bert", exporter="torch", **SHAPE)
    res = prune_ffn_file(src, tmp_path / "k.onnx", FFNPruneConfig(keep=0.25))
    assert res.counts.neurons_per_layer == [12, 12]
    assert res.stats["importance"] == "weight-magnitude (data-free)"


def _heads_of_fused_reference(path, layer: int, drop: list[int]) -> onnx.ModelProto:
    """The fused graph with ``drop`` heads of the ``layer``-th fused Attention removed by hand, restated in numpy:
    each third of the QKV weight and bias keeps the other heads' columns, the output projection their rows,
    num_heads shrinks, and the layer's attention bias reads its own copy of the table with those heads only."""
    from onnx import numpy_helper

    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    att = [n for n in m.graph.node if n.op_type == "Attention"][layer]
    heads = next(a.i for a in att.attribute if a.name == "num_heads")
    w = numpy_helper.to_array(inits[att.input[1]])
    a = w.shape[1] // 3
    d = a // heads
    keep = [h for h in range(heads) if h not in drop]
    within = np.concatenate([np.arange(h * d, (h + 1) * d) for h in keep])
    cols = np.concatenate([t * a + within for t in range(3)])

    def put(name, arr):
        new = numpy_helper.from_array(np.ascontiguousarray(arr), name + f"__ref_L{layer}")
        m.graph.initializer.append(new)
        return new.name

    att.input[1] = put(att.input[1], w[:, cols])
    att.input[2] = put(att.input[2], numpy_helper.to_array(inits[att.input[2]])[cols])
    for x in att.attribute:
        if x.name == "num_heads":
            x.i = len(keep)
    o = next(n for n in m.graph.node if n.op_type == "MatMul" and n.input[0] == att.output[0])
    o.input[1] = put(o.input[1], numpy_helper.to_array(inits[o.input[1]])[within, :])
    sl = next(n for n in m.graph.node if n.output[0] == att.input[5])  # Slice(table, ...)
    sl.input[0] = put(sl.input[0], numpy_helper.to_array(inits[sl.input[0]])[:, keep])
    return m


@pytest.mark.parametrize("drop", [[0], [1, 3]])
def test_prune_heads_of_a_fused_attention_with_an_attention_bias(tmp_path, drop):
    """ORT's fused Attention reading a per-head attention bias (a relative position bias table, as
    ``deploytool.testing.fused`` adds): the heads go from the bias too (it used to keep all of them, and ONNX
    Runtime refused the pruned file at the gate: nothing was written). Equal to the numpy restatement; reorder
    (every head kept, permuted) keeps the outputs."""
    pytest.importorskip("onnxruntime.transformers.optimizer")
    from deploytool.passes.reorder import ReorderConfig, reorder_file
    from deploytool.testing import conformance as C
    from deploytool.testing.fused import add_attention_bias

    case = C.MODEL_BY_NAME["bert"]
    o2 = C.optimize(C.export(case, "torchscript-17", tmp_path / "e"), 2, tmp_path / "o2.onnx", raw_mask=True)
    src = add_attention_bias(o2, tmp_path / "bias.onnx")
    dst = tmp_path / "pruned.onnx"
    prune_heads_file(src, dst, HeadPruneConfig(heads={1: drop}))
    feeds = C.feeds(case)
    got = run_bytes(dst.read_bytes(), feeds)
    want = run_bytes(_heads_of_fused_reference(src, 1, drop).SerializeToString(), feeds)
    assert max_diff(got, want) <= 1e-4
    # the heads' bias matters: the same pruning with the table's first heads instead is far off
    wrong = _heads_of_fused_reference(src, 1, drop)
    sl = next(n for n in wrong.graph.node if n.input[0].endswith("__ref_L1"))
    t = next(t for t in wrong.graph.initializer if t.name == sl.input[0])
    from onnx import numpy_helper

    table = numpy_helper.to_array(next(x for x in onnx.load(str(src)).graph.initializer if x.name == "attn_bias_table"))
    t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(table[:, :table.shape[1] - len(drop)]), t.name))
    assert max_diff(got, run_bytes(wrong.SerializeToString(), feeds)) > 1e-2
    out = tmp_path / "reordered.onnx"
    reorder_file(src, out, ReorderConfig())
    assert max_diff(run_bytes(out.read_bytes(), feeds), run_bytes(src.read_bytes(), feeds)) <= 1e-4


def test_a_second_head_pass_on_mpnet_equals_one_combined_prune(tmp_path):
    """A pass on a pass's output: MPNet's shared relative position bias gets a per-layer Gather of the kept heads
    from the first pass, and a second pass adds its own. Before 2026-12-03 both Gathers had one node name, so ONNX
    Runtime refused the second output at the gate ("two nodes with same node name"): prune-heads, slice or reorder
    could not be run again on an MPNet they had edited. Reference: transformers' ``prune_heads`` once, with both
    prunes' heads in the original numbering (pruning keeps the order of what is left)."""
    import copy

    from deploytool.passes import transform
    from deploytool.passes.reorder import ReorderConfig
    from deploytool.passes.slice_subnetwork import SliceConfig
    from deploytool.runtime.infer import run_onnx
    from deploytool.testing import conformance as C

    case = C.MODEL_BY_NAME["mpnet"]
    base = C.build_model(case)
    src = C.export(case, "optimum", tmp_path / "e")
    first = C.prune_heads_spec()
    second = {0: [0], 2: [1, 2], 3: [0]}  # numbered among the heads the first prune left
    mid, dst = tmp_path / "mid.onnx", tmp_path / "dst.onnx"
    prune_heads_file(src, mid, HeadPruneConfig(heads=first))
    prune_heads_file(mid, dst, HeadPruneConfig(heads=second))
    combined = {}
    for i in range(C.LAYERS):
        left = [h for h in range(C.HEADS) if h not in first.get(i, [])]
        combined[i] = sorted(set(first.get(i, [])) | {left[b] for b in second.get(i, [])})
    want_model = copy.deepcopy(base)
    C._prune_heads(want_model, combined)
    feeds = C.feeds(case)
    want = C.torch_outputs(want_model, feeds)
    got = run_onnx(dst, feeds)
    name = next(k for k in got if k in want)
    assert np.abs(got[name] - want[name]).max() <= 1e-4
    # the wrong composition (the second prune's heads taken in the original numbering) is far off
    wrong = copy.deepcopy(base)
    C._prune_heads(wrong, {i: sorted(set(first.get(i, [])) | set(second.get(i, []))) for i in range(C.LAYERS)})
    assert np.abs(got[name] - C.torch_outputs(wrong, feeds)[name]).max() > 1e-2
    # and slice / reorder on an edited MPNet are written too (they were refused at the gate)
    transform(mid, tmp_path / "s.onnx", SliceConfig(width=0.75, depth=0.5))
    transform(mid, tmp_path / "r.onnx", ReorderConfig())
    np.testing.assert_allclose(run_onnx(tmp_path / "r.onnx", feeds)[name], run_onnx(mid, feeds)[name], atol=1e-4)


def test_prune_and_reorder_heads_of_ort_multi_head_attention(tiny_onnx, tiny_torch_model, tmp_path):
    """ORT's transformer optimizer with ``use_multi_head_attention``: MultiHeadAttention nodes on separate Q/K/V
    projections, their three biases packed in its input 3. That bias follows the heads (it kept all of them: the
    pruned model did not run, and a reorder changed the outputs; the gate refused both)."""
    import warnings

    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    from deploytool.passes.reorder import ReorderConfig, reorder_file

    options = FusionOptions("bert")
    options.use_multi_head_attention = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = optimize_model(str(tiny_onnx("bert", exporter="torch", **SHAPE)), model_type="bert", num_heads=0,
                             hidden_size=0, opt_level=0, optimization_options=options)
    src = tmp_path / "mha.onnx"
    opt.save_model_to_file(str(src))
    assert sum(n.op_type == "MultiHeadAttention" for n in onnx.load(str(src)).graph.node) == 2
    heads = {0: [0, 2, 3], 1: [1]}
    dst = tmp_path / "h.onnx"
    prune_heads_file(src, dst, HeadPruneConfig(heads=heads))
    want = ref.prune_heads_reference(tiny_torch_model("bert", **SHAPE), heads)
    feeds = fixed_inputs(lengths=(8, 5, 3))
    assert max_diff(run_bytes(dst.read_bytes(), feeds), ref.torch_outputs(want, feeds)) <= 1e-4
    reordered = tmp_path / "r.onnx"
    reorder_file(src, reordered, ReorderConfig())
    assert max_diff(run_bytes(reordered.read_bytes(), feeds), run_bytes(src.read_bytes(), feeds)) <= 1e-4


def test_a_head_count_node_no_layer_node_reads_is_refused_not_edited_aside(tiny_onnx):
    """A head site whose node the finder did not place in its layer, nor any reader of it, is not copied for the
    layer (the copy would be read by nothing: the head count left as it was while the weights lose heads, a model
    that fails or, broadcast, computes something else). ModernBERT at ONNX Runtime's level 99 of an fp16 model had
    its layers' attention outside their nodes (their Wqkv reads the pre-LN norm through a Cast): prune-heads wrote
    layer 1's Reshape to [.., 3, 6, 4] over 4 heads, caught only by the gate."""
    import onnx_ir as ir

    from deploytool.errors import StructureError
    from deploytool.graph.finder import find_structure
    from deploytool.passes import _surgery as S

    model = ir.load(str(tiny_onnx("bert", exporter="torch", **SHAPE)))
    layer = find_structure(model).layers[1]
    site = next(s for s in layer.attention.head_sites if s.kind != "attribute")
    readers = {id(u.node) for o in site.node.outputs for u in o.uses()}
    layer.nodes = [n for n in layer.nodes if id(n) != id(site.node) and id(n) not in readers]
    before = S.get_array(site.value).copy()
    with pytest.raises(StructureError, match="read by no node"):
        S.keep_heads(model.graph, layer, [0, 1])
    np.testing.assert_array_equal(S.get_array(site.value), before)
