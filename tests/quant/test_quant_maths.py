"""Ternary/binary quantizers against an independent loop-based numpy reference; packers byte-exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deploytool.errors import ConfigError
from deploytool.passes.pack_weights import PackConfig, Runtime, WeightScheme
from deploytool.passes.quantize_int8 import Int8Config
from deploytool.quant import (
    Granularity, binarize, dequantize, pack_2bit, pack_bits, pack_trit5, quantize_int8_rows, ternarize,
    unpack_2bit, unpack_bits, unpack_trit5,
)


def _twn_reference(w):
    """TWN on one matrix or row, written out element by element (float64)."""
    flat = [float(x) for x in np.ravel(w)]
    delta = 0.7 * sum(abs(x) for x in flat) / len(flat)
    big = [abs(x) for x in flat if abs(x) > delta]
    alpha = sum(big) / len(big) if big else 0.0
    t = [(1 if x > 0 else -1) if abs(x) > delta else 0 for x in flat]
    return np.array(t).reshape(np.shape(w)), alpha


def _bwn_reference(w):
    flat = [float(x) for x in np.ravel(w)]
    return np.array([1 if x >= 0 else -1 for x in flat]).reshape(np.shape(w)), sum(abs(x) for x in flat) / len(flat)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ternarize_matches_reference(seed):
    w = np.random.default_rng(seed).normal(size=(7, 13)).astype(np.float32) * 0.05
    t, a = ternarize(w, "layer")
    rt, ra = _twn_reference(w)
    assert t.dtype == np.int8 and a.shape == ()
    np.testing.assert_array_equal(t, rt)
    assert a == pytest.approx(ra, rel=1e-6)
    t, a = ternarize(w, Granularity.ROW)
    assert a.shape == (7,)
    for i in range(7):
        rt, ra = _twn_reference(w[i])
        np.testing.assert_array_equal(t[i], rt)
        assert a[i] == pytest.approx(ra, rel=1e-6)
    deq = dequantize(t, a)
    np.testing.assert_allclose(deq, t * a[:, None], rtol=1e-7)


def test_ternarize_transposed_view_and_signed_zeros_match_reference():
    """The pack pass quantizes ``W.T`` views of [in, out] weights; zeros of either sign stay 0."""
    w = np.random.default_rng(3).normal(size=(13, 7)).astype(np.float32) * 0.05
    w[0, :3] = [0.0, -0.0, 0.0]
    w[4, 2] = -0.0
    for g in ("layer", "row"):
        t, a = ternarize(w.T, g)
        assert t.dtype == np.int8 and t.shape == (7, 13)
        rows = [w.T] if g == "layer" else list(w.T)
        for i, r in enumerate(rows):
            rt, ra = _twn_reference(r)
            np.testing.assert_array_equal(t if g == "layer" else t[i], rt)
            assert (a if g == "layer" else a[i]) == pytest.approx(ra, rel=1e-6)


def _at_threshold(w: np.ndarray, i: int, j: int, above: bool) -> None:
    """Set ``w[i, j]`` to the float32 just above (or at-or-below) TWN's float64 threshold of ``w``, the
    threshold counting that entry (found by iteration: the entry moves the mean by ~1/size of itself)."""
    for _ in range(20):
        delta = 0.7 * np.abs(w.astype(np.float64)).mean()
        lo = np.float32(delta)
        if float(lo) > delta:
            lo = np.nextafter(lo, np.float32(-np.inf))
        w[i, j] = np.nextafter(lo, np.float32(np.inf)) if above else lo


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("above", [True, False])
@pytest.mark.parametrize("transposed", [False, True])
def test_ternarize_threshold_is_twns_in_float64(seed, above, transposed):
    """An entry one float32 step from the threshold ``0.7 mean|W|`` (float64) is kept exactly when above it,
    as TWN in float64 keeps it (a threshold rounded to float32 first could go either way), for whole
    matrices (layout as stored or the W.T view the packer quantizes) and rows."""
    rng = np.random.default_rng(seed)
    w = (rng.normal(size=(257, 300)) * 0.05).astype(np.float32)  # > 64K entries: more than one block
    _at_threshold(w, 3, 5, above)
    x = np.ascontiguousarray(w.T).T if transposed else w
    t, a = ternarize(x, "layer")
    a64 = np.abs(w.astype(np.float64))
    keep = a64 > 0.7 * a64.mean()
    assert bool(keep[3, 5]) is above
    np.testing.assert_array_equal(t, np.sign(w).astype(np.int8) * keep)
    assert a == pytest.approx(a64[keep].mean(), rel=1e-6)
    r = w[3:4].copy()
    _at_threshold(r, 0, 5, above)
    t, a = ternarize(r, "row")
    rt, ra = _twn_reference(r[0])
    np.testing.assert_array_equal(t[0], rt)
    assert t[0, 5] == (1 if above else 0) and a[0] == pytest.approx(ra, rel=1e-6)


@pytest.mark.parametrize("shape", [(32, 32), (768, 3072), (3, 70000)])
def test_ternarize_of_a_ternary_weight_is_itself(shape):
    """A weight that is already ``alpha * t`` (what QAT saves) comes back bit for bit, scale included, also
    over many blocks: the kept magnitudes are summed exactly (a float32 sum is off by a rounding)."""
    rng = np.random.default_rng(5)
    t0 = rng.integers(-1, 2, size=shape).astype(np.int8)
    for g, alphas in (("layer", rng.uniform(0.01, 0.1, 12).astype(np.float32)),
                      ("row", [rng.uniform(0.01, 0.1, shape[0]).astype(np.float32)])):
        for alpha in alphas:
            w = dequantize(t0, alpha)
            for x in (w, np.ascontiguousarray(w.T).T):
                t, a = ternarize(x, g)
                np.testing.assert_array_equal(a, alpha)
                np.testing.assert_array_equal(dequantize(t, a), w)


@pytest.mark.parametrize("seed", [0, 1])
def test_binarize_matches_reference(seed):
    w = np.random.default_rng(seed).normal(size=(5, 9)).astype(np.float32)
    w[0, 0] = 0.0  # sign(0) = +1
    s, a = binarize(w, "layer")
    rs, ra = _bwn_reference(w)
    np.testing.assert_array_equal(s, rs)
    assert a == pytest.approx(ra, rel=1e-6)
    s, a = binarize(w, "row")
    for i in range(5):
        rs, ra = _bwn_reference(w[i])
        np.testing.assert_array_equal(s[i], rs)
        assert a[i] == pytest.approx(ra, rel=1e-6)


@pytest.mark.parametrize("order", ["C", "F"])
def test_binary_signs_keep_the_weight_s_memory_order(order):
    """binarize's signs (the reference's values) come back in the weight's own memory order: the W.T view of
    an [in, out] weight is F-ordered, and signs written C-ordered from it were a transposing walk over the whole
    matrix (BERT-large binary packing 3.3 -> 6 s until this was caught)."""
    w = np.asarray(np.random.default_rng(3).normal(size=(6, 10)).astype(np.float32), order=order)
    w[1, 2] = 0.0
    w[2, 3] = -0.0
    s, _ = binarize(w, "row")
    want, _ = _bwn_reference(w)
    np.testing.assert_array_equal(s, want)
    assert s.dtype == np.int8 and (s.flags.c_contiguous if order == "C" else s.flags.f_contiguous)


def test_ternary_zero_row_has_zero_alpha():
    w = np.zeros((2, 4), np.float32)
    w[1] = [1, -2, 0.1, 3]
    t, a = ternarize(w, "row")
    assert a[0] == 0 and not t[0].any() and a[1] > 0


def test_int8_rows():
    w = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    q, s = quantize_int8_rows(w)
    assert np.abs(q).max() == 127
    np.testing.assert_allclose(q * s[:, None], w, atol=s.max() / 2 + 1e-7)


def test_pack_known_bytes():
    # 2-bit: codes t+2 = [1, 2, 3, 2] -> 1 | 2<<2 | 3<<4 | 2<<6
    assert pack_2bit(np.array([-1, 0, 1, 0])).tolist() == [1 + 8 + 48 + 128]
    # 5 trits: codes t+1 = [0, 1, 2, 1, 0] -> 0 + 3 + 18 + 27 + 0
    assert pack_trit5(np.array([-1, 0, 1, 0, -1])).tolist() == [48]
    # 1 bit, first weight in bit 0; padding bits 0
    assert pack_bits(np.array([1, -1, -1, 1, 1, 1, 1, 1, 1])).tolist() == [0b11111001, 0b1]
    assert pack_2bit(np.zeros((3, 9), np.int8)).shape == (3, 3)
    assert pack_trit5(np.zeros((3, 11), np.int8)).shape == (3, 3)
    with pytest.raises(ValueError):
        pack_2bit(np.array([2]))
    for bad in (np.array([-2, 0], np.int64), np.array([0.5, 1.0]), np.array([1, 2], np.uint8)):
        with pytest.raises(ValueError, match="values must be in"):
            pack_2bit(bad)
    # any numeric dtype holding -1/0/1 packs to the same bytes
    for dtype in (np.int8, np.int32, np.int64, np.float32):
        assert pack_2bit(np.array([[-1, 0, 1, 0, 1]], dtype)).tolist() == [[1 + 8 + 48 + 128, 3 + 8 + 32 + 128]]


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=17), elements=st.integers(-1, 1)))
def test_ternary_packers_round_trip(t):
    n = t.shape[-1]
    np.testing.assert_array_equal(unpack_2bit(pack_2bit(t), n), t)
    np.testing.assert_array_equal(unpack_trit5(pack_trit5(t), n), t)
    s = np.where(t >= 0, 1, -1).astype(np.int8)
    np.testing.assert_array_equal(unpack_bits(pack_bits(s), n), s)


def test_configs_validate_on_construction():
    with pytest.raises(ConfigError, match="weights"):
        PackConfig(weights="3bit")
    with pytest.raises(ConfigError, match="weights"):
        PackConfig(weights="int8")
    with pytest.raises(ConfigError, match="runtime"):
        PackConfig(runtime="fastest")
    with pytest.raises(ConfigError, match="granularity"):
        PackConfig(granularity="column")
    with pytest.raises(ConfigError, match="embeddings"):
        PackConfig(embeddings="int4")
    with pytest.raises(ConfigError, match="block_size"):
        PackConfig(block_size=48)
    with pytest.raises(ConfigError, match="calib"):
        Int8Config(static=True)
    with pytest.raises(ConfigError, match="fusion"):
        Int8Config(fusion="all")
    c = PackConfig(weights="binary", runtime="densest")
    assert c.weights is WeightScheme.BINARY and c.runtime is Runtime.DENSEST and c.embeddings is WeightScheme.BINARY
    assert c.linear_scheme == "binary1" and PackConfig().linear_scheme == "ternary2"
    assert PackConfig(runtime="densest").linear_scheme == "trit5"


@pytest.mark.parametrize("shape", [(257, 300), (3, 70001), (1, 5)])
@pytest.mark.parametrize("granularity", ["layer", "row"])
def test_greedy_planes_equal_the_rule_over_the_whole_matrix(shape, granularity):
    """binarize_planes' greedy planes, computed a block at a time, are the rule computed over the whole matrix
    at once (restated here: s1 = sign(W), alpha1 = mean|W| in float64, the residual W - float32(alpha1) s1 the
    same way), bit for bit, over many blocks and with a length that is no multiple of numpy's buffer; and a
    matrix with one two-plane row among greedy ones takes the row-exact rule for that row only."""
    from deploytool.quant.quantizers import binarize_planes

    rng = np.random.default_rng(11)
    w = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    w[0, 0] = 0.0  # sign(0) = +1
    axis = None if granularity == "layer" else 1
    s1 = np.where(w >= 0, 1, -1).astype(np.int8)
    a1 = np.abs(w).mean(axis=axis, dtype=np.float64, keepdims=True)
    r = w - s1.astype(np.float32) * a1.astype(np.float32)
    s2 = np.where(r >= 0, 1, -1).astype(np.int8)
    a2 = np.abs(r).mean(axis=axis, dtype=np.float64, keepdims=True)
    for x in (w, np.ascontiguousarray(w.T).T):  # as stored, and the W.T view of an [in, out] weight
        p1, p2, b1, b2, exact = binarize_planes(x, granularity)
        assert not exact
        np.testing.assert_array_equal(p1, s1)
        np.testing.assert_array_equal(p2, s2)
        np.testing.assert_array_equal(np.reshape(b1, -1), a1.astype(np.float32).reshape(-1))
        np.testing.assert_array_equal(np.reshape(b2, -1), a2.astype(np.float32).reshape(-1))
    if granularity == "row" and shape[0] > 1:
        m = w.copy()
        m[1] = np.where(rng.random(shape[1]) < 0.5, 0.03, -0.01).astype(np.float32)  # |W| in {0.03, 0.01}
        p1, p2, b1, b2, exact = binarize_planes(m, "row")
        assert not exact
        assert b1[1] == np.float32(0.02) and b2[1] == np.float32(0.01)
        np.testing.assert_array_equal(p1[2:], s1[2:])


@pytest.mark.parametrize("n", [1, 8191, 8192, 65536 * 3 + 12345, 1_000_003])
def test_blockwise_float64_sums_are_numpys_own(n):
    """Summed a block of 2^16 at a time (what the block-by-block quantizers do), a float32 array's float64 sum is
    the very number numpy's one call gives (``sum(dtype=np.float64)``, which ``mean`` uses), not one ulp off."""
    from deploytool.quant.quantizers import _BLOCK, _add64

    x = np.abs(np.random.default_rng(n).standard_normal(n).astype(np.float32)) * np.float32(0.05)
    total = 0.0
    for i in range(0, n, _BLOCK):
        total = _add64(total, x[i:i + _BLOCK])
    assert total == x.sum(dtype=np.float64)
    assert total / n == x.reshape(1, -1).mean(axis=1, dtype=np.float64)[0]
    naive = sum(float(x[i:i + _BLOCK].sum(dtype=np.float64)) for i in range(0, n, _BLOCK))
    if n > 2 * _BLOCK:  # the point of restating numpy's order: a plain sum of block sums differs on these
        assert naive != total


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("fn, granularity", [
    ("ternarize", "layer"), ("ternarize", "row"), ("binarize", "layer"), ("binarize", "row"),
    ("binarize_planes", "layer"), ("binarize_planes", "row"), ("quantize_int8_rows", None),
])
def test_a_weight_with_nan_or_inf_is_refused_not_zeroed(fn, granularity, bad):
    """TWN's threshold of a NaN mean keeps no entry: the weight became zeros with a zero scale, silently; BWN's
    scale became NaN. Every quantizer refuses such a weight (a DeployError, one line)."""
    from deploytool.errors import DeployError
    from deploytool.quant import quantizers as q

    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 40)).astype(np.float32)
    f = getattr(q, fn)
    f(w, granularity) if granularity else f(w)  # finite: fine
    w[3, 7] = bad
    with pytest.raises(q.NonFiniteWeightError, match="holds NaN or inf") as info:
        f(w, granularity) if granularity else f(w)
    assert isinstance(info.value, DeployError)
