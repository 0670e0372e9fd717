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
