"""pack's refold of DeBERTa's folded relative-position projections (deploytool.passes.pack_refold): the table is
found from the constants and the weights, each constant's layouts, and the refusals. The result against
transformers' DeBERTa with ternary weights: tests/e2e/test_conformance.py (DEBERTA's O1 row, CHAIN_GRAPHS)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from deploytool.passes import pack_refold as R


def _folded(heads=2, head_size=3, axis=0):
    return R._Folded(reader=None, index=0, axis=axis, linear=None, heads=heads, head_size=head_size, layer=0,
                     family="deberta-v2")


@pytest.mark.parametrize("form,shape", [("hrd", (2, 10, 3)), ("hdr", (2, 3, 10)), ("hrd", (6, 10, 3)),
                                        ("flat", (1, 10, 6))])
def test_rows_and_back(form, shape):
    f = _folded(axis=-1 if form == "flat" else 0)
    rng = np.random.default_rng(0)
    p = rng.standard_normal((10, 6))
    c = R._from_rows(p, form, f, shape)
    assert c.shape == shape
    np.testing.assert_array_equal(R._to_rows(c, form, f), p)
    if form == "hrd":  # head h's rows are p's columns h * head_size ..
        np.testing.assert_array_equal(c[1], p[:, 3:6])
        if shape[0] == 6:  # tiled over a fixed batch: every copy the same
            np.testing.assert_array_equal(c[4], c[0])
    if form == "hdr":
        np.testing.assert_array_equal(c[1], p[:, 3:6].T)


def test_forms_of_a_shape():
    f = _folded(heads=2, head_size=4)
    assert R._forms(f, (2, 10, 4)) == ["hrd"]
    assert R._forms(f, (2, 4, 10)) == ["hdr"]
    assert R._forms(f, (2, 4, 4)) == ["hrd", "hdr"]  # 2 * span == head_size: both readings tried
    assert R._forms(f, (3, 10, 4)) == []  # no whole number of head copies
    assert R._forms(_folded(heads=2, head_size=4, axis=-1), (1, 10, 8)) == ["flat"]


def _case(hidden=8, outs=(4, 4, 4), rows=10, seed=0):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((rows, hidden))
    weights = [rng.standard_normal((hidden, n)) for n in outs]
    biases = [rng.standard_normal(n) for n in outs]
    consts = [(table @ w + b).astype(np.float32) for w, b in zip(weights, biases)]
    folded = [_folded(heads=n // 2, head_size=2, axis=-1) for n in outs]
    return table, weights, biases, [c.reshape(1, rows, -1) for c in consts], folded


def test_fit_finds_the_table():
    table, weights, biases, consts, folded = _case()
    got = R._fit(consts, ["flat"] * 3, folded, weights, biases)
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, table, rtol=1e-5, atol=1e-5)


def test_fit_refuses_too_few_features():
    # one [8, 4] weight: only 4 of the table's 8 features are seen
    _, weights, biases, consts, folded = _case(outs=(4,))
    assert R._fit(consts, ["flat"], folded, weights, biases) == \
        "the kept Q/K weights determine only 4 of the table's 8 features"


def test_fit_refuses_constants_of_other_weights():
    # the constants of other weights than the ones given (DeBERTa's own pos_key_proj / pos_query_proj)
    _, weights, biases, consts, folded = _case()
    _, others, _, _, _ = _case(seed=1)
    assert R._fit(consts, ["flat"] * 3, folded, others, biases) == "not one table's projections by Q's and K's weights"


def _fp16(a):
    """``a`` rounded to fp16 and held as float32: what pack's first pass (the exact upcast) makes of an fp16 file."""
    return np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float32)


def _case_fp16(hidden=24, layers=3, rows=16, seed=0, scale=0.05):
    """A table projected by each layer's Q and K weights and biases, folded in float32 and then rounded to fp16 with
    the weights: what ONNX Runtime's transformer optimizer with ``--float16`` writes (it folds, then converts)."""
    table, weights, biases, consts, folded = _case(hidden=hidden, outs=(hidden,) * (2 * layers), rows=rows, seed=seed)
    weights = [w * scale for w in weights]
    biases = [b * scale for b in biases]
    consts = [_fp16(table @ w + b).reshape(1, rows, -1) for w, b in zip(weights, biases)]
    return table, [_fp16(w) for w in weights], [_fp16(b) for b in biases], consts, folded


# fp16's machine epsilon, 2**-10, written out: the test's own number, not the module's
FP16_EPS = 2.0 ** -10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_reads_fp16_constants(seed):
    """ORT's --float16 file holds each constant and weight rounded to fp16 (measured 0.2 to 0.7 fp16 epsilons of the
    constant's scale apart on its tiny DeBERTa-v2/v3): the table is still found (it was refused against a 1e-4 check)
    and reproduces every constant to within an fp16 ulp of its scale."""
    table, weights, biases, consts, folded = _case_fp16(seed=seed)
    rows = [np.asarray(c, dtype=np.float64).reshape(16, -1) for c in consts]
    errs = [np.max(np.abs(table @ w + b - r)) / np.max(np.abs(r)) for r, w, b in zip(rows, weights, biases)]
    assert max(errs) > 1e-4  # the case is about: the true table itself misses the float32 check
    got = R._fit(consts, ["flat"] * len(consts), folded, weights, biases)
    assert isinstance(got, np.ndarray), got
    for r, w, b in zip(rows, weights, biases):
        assert np.max(np.abs(got @ w + b - r)) <= FP16_EPS * np.max(np.abs(r))


def test_fit_refuses_fp16_constants_that_are_not_the_projection():
    """The fp16 tolerance is a few fp16 ulps, not a loose check: fp16 constants of other weights are refused, and so
    is one whose table differs from the others' in one position by 1% of the constant's scale (about ten fp16 ulps)."""
    table, weights, biases, consts, folded = _case_fp16()
    _, others, _, _, _ = _case_fp16(seed=1)
    why = "not one table's projections by Q's and K's weights"
    assert R._fit(consts, ["flat"] * 6, folded, others, biases) == why
    assert isinstance(R._fit(consts, ["flat"] * 6, folded, weights, biases), np.ndarray)  # the case itself fits
    table, weights, biases, consts, folded = _case_fp16()
    moved = table.copy()
    moved[5] += 0.01 * np.max(np.abs(consts[4])) * weights[4][:, 0] / np.sum(weights[4][:, 0] ** 2)
    consts[4] = _fp16(moved @ weights[4] + biases[4]).reshape(consts[4].shape)
    assert R._fit(consts, ["flat"] * 6, folded, weights, biases) == why


def test_fit_keeps_the_float32_check_for_float32_constants():
    """float32 constants (not fp16 values) off by fp16-sized amounts (5e-4 of their scale) are still refused: the
    looser check is for constants and weights that hold fp16 values only, whatever a zero bias holds."""
    table, weights, biases, _, folded = _case(hidden=24, outs=(24,) * 6, rows=16)
    rng = np.random.default_rng(3)
    zero = [np.zeros_like(b) for b in biases]
    consts = [table @ w for w in weights]
    consts = [(c + 5e-4 * np.max(np.abs(c)) * rng.choice([-1.0, 1.0], c.shape)).astype(np.float32).reshape(1, 16, -1)
              for c in consts]
    assert R._fit(consts, ["flat"] * 6, folded, weights, zero) == "not one table's projections by Q's and K's weights"


def test_fit_rtol_follows_the_values_held():
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((4, 5)).astype(np.float32)
    assert R.fit_rtol(x32, x32) == 1e-4
    assert R.fit_rtol(_fp16(x32), x32) == 4 * FP16_EPS  # an fp16 constant (or weight): four fp16 ulps of its scale
    assert R.fit_rtol(x32, _fp16(x32)) == 4 * FP16_EPS
    assert R.fit_rtol(np.array([1e6, 0.5]), x32) == 1e-4  # beyond fp16's range: not fp16 values


def test_fit_refuses_tables_of_two_sizes():
    _, weights, biases, consts, folded = _case()
    consts[1] = consts[1][:, :5]
    assert R._fit(consts, ["flat"] * 3, folded, weights, biases) == "their tables differ in size"


@pytest.mark.slow  # DeBERTa's export and ORT's optimizer
def test_pack_records_the_refold_and_leaves_the_input(tmp_path):
    """On DeBERTa-v2 after ORT's optimizer every layer's two folded constants are computed again (recorded in the
    pass's stats), none of the old constants is left, and the input file is unchanged."""
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.testing import conformance as C

    src = C.optimize(C.export(C.MODEL_BY_NAME["deberta-v2"], "torchscript-17", tmp_path / "x"), 1,
                     tmp_path / "deberta.O1.onnx")
    before = src.read_bytes()
    old = {t.name for t in onnx.load(str(src)).graph.initializer if len(t.dims) == 3}
    result = transform(src, tmp_path / "packed.onnx", PackConfig(weights="ternary"))
    assert result.stats["relative_positions_refolded"] == 2 * C.LAYERS
    assert src.read_bytes() == before
    out = onnx.load(str(tmp_path / "packed.onnx"))
    names = {t.name for t in out.graph.initializer}
    assert sum(n.endswith("_packed") for n in names) == 2 * C.LAYERS
    assert not old & names
    record = json.loads({p.key: p.value for p in out.metadata_props}["deploytool.packing"])
    assert sum(r["role"] == "attention" for r in record.values()) == 4 * C.LAYERS


def test_structure_without_separate_q_and_k_is_refused():
    att = SimpleNamespace(rel_constants=[(SimpleNamespace(name="n"), 0, 0)], rel_constant_proj=[None], q=None, k=None,
                          num_heads=2, head_size=3)
    st = SimpleNamespace(layers=[SimpleNamespace(index=3, attention=att)], family="deberta-v2")
    with pytest.raises(Exception, match=r"^deberta-v2: .*\(no separate Q and K projections\); .* layer 3's is read "
                                        r"by 'n'$"):
        R.folded_projections(st)


@pytest.mark.parametrize("name", ["deberta-v2", "deberta-v3"])
def test_pack_of_ort_float16_deberta(tmp_path, name):
    """ONNX Runtime's ``--float16`` file of a tiny DeBERTa-v2/v3 (conformance's torchscript-17-ortfp16: ORT folded
    each layer's relative-position projections, then rounded them and the weights to fp16) packs: every folded
    constant is computed again with the packed weights (8 = 2 per layer, none of the fp16 constants left), the
    output passes pack's gate (ONNX Runtime on the output against the fake-quantized input) and is as close as
    fp16 allows to transformers' model with its weights ternarized by TWN (conformance's independent reference). It
    was refused: 'not one table's projections by Q's and K's weights'."""
    from deploytool.passes import transform
    from deploytool.passes.pack_weights import PackConfig
    from deploytool.testing import conformance as C

    cells = C.run_matrix([C.MODEL_BY_NAME[name]], ("torchscript-17-ortfp16",), (0,), ("pack",), work=tmp_path / "w")
    assert [(c.status, c.reference) for c in cells] == [("close", "twn-ternary")], cells
    src = tmp_path / "w" / "exports" / f"{name}-torchscript-17-ortfp16.onnx"
    folded = {t.name for t in onnx.load(str(src)).graph.initializer
              if len(t.dims) == 3 and t.data_type == onnx.TensorProto.FLOAT16}
    assert len(folded) == 2 * C.LAYERS  # the file this is about: each layer's P_q and P_k, fp16
    result = transform(src, tmp_path / "packed.onnx", PackConfig(weights="ternary"))  # verify=True: the gate ran
    assert result.stats["relative_positions_refolded"] == 2 * C.LAYERS
    out = onnx.load(str(tmp_path / "packed.onnx"))
    assert not folded & {t.name for t in out.graph.initializer}


def test_refold_writes_the_constant_in_its_own_dtype():
    """refold on a graph that holds its folded constants and weights in fp16 (as ORT's --float16 file does, without
    pack's upcast first) writes each rebuilt constant as fp16, ``table Q(W) + b`` rounded to fp16, in the place of
    the old one (it wrote float32 into the fp16 graph)."""
    import onnx_ir as ir

    table, weights, biases, consts, _ = _case_fp16(hidden=8, layers=1, rows=6)
    graph = ir.Graph([], [], nodes=[], name="g")

    def init(name, arr):
        v = ir.Value(name=name, shape=ir.Shape(arr.shape), type=ir.TensorType(ir.DataType.FLOAT16))
        v.const_value = ir.Tensor(np.asarray(arr, dtype=np.float16), name=name)
        graph.register_initializer(v)
        return v

    folded, quantized = [], {}
    for i, (w, b, c) in enumerate(zip(weights, biases, consts)):
        linear = SimpleNamespace(weight=init(f"w{i}", w), bias=init(f"b{i}", b), layout="in_out")
        node = ir.node("Identity", [init(f"c{i}", c)], name=f"read{i}")
        graph.append(node)
        graph.outputs.append(node.outputs[0])
        folded.append(R._Folded(node, 0, -1, linear, heads=4, head_size=2, layer=0, family="deberta-v2"))
        quantized[id(linear)] = np.sign(w) * np.mean(np.abs(w))  # a ternary stand-in for the packed weight
    assert R.refold(graph, folded, lambda linear: quantized[id(linear)]) == 2
    for i, f in enumerate(folded):
        new = f.reader.inputs[0]
        assert new.name == f"c{i}_packed" and f"c{i}" not in graph.initializers
        got = new.const_value.numpy()
        assert got.dtype == np.float16 and got.shape == consts[i].shape
        want = (table @ quantized[id(f.linear)] + biases[i]).reshape(consts[i].shape)
        np.testing.assert_allclose(got, want, rtol=0, atol=4 * FP16_EPS * np.max(np.abs(want)))
