"""The compiled TWN/BWN loops (deploytool.quant._kernels) give the numpy code's numbers bit for bit.

The numpy code (``_ternarize_layer_numpy``, ``_ternarize_rows_numpy``, ``_binarize_numpy``) is the rule, itself checked against an
element-by-element reference in test_quant_maths.py; the kernels restate its float64 sums in numpy's own
association, so codes and scales must be equal, not close: a threshold or scale one ulp apart would make the
packed bytes depend on whether the machine that installed deploytool had a C compiler.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from deploytool.quant import quantizers as Q
from deploytool.quant.quantizers import NonFiniteWeightError, ternarize

needs_kernels = pytest.mark.skipif(Q._kernels is None, reason="deploytool.quant._kernels not built")


def test_the_kernels_are_built():
    """setup_env.sh builds them (a C compiler is on every machine this project runs on); a silent build failure
    would leave every pack on the slower numpy code. DEPLOYTOOL_ALLOW_NO_KERNELS=1 accepts their absence."""
    if os.environ.get("DEPLOYTOOL_ALLOW_NO_KERNELS") == "1":
        pytest.skip("their absence is allowed here")
    assert Q._kernels is not None, "deploytool.quant._kernels is not built: run `bash scripts/setup_env.sh`"


def _same(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].dtype == b[0].dtype == np.int8 and a[0].shape == b[0].shape
    assert a[1].dtype == b[1].dtype == np.float32 and a[1].shape == b[1].shape
    assert a[1].tobytes() == b[1].tobytes(), (a[1], b[1])


def _wide(rng, shape) -> np.ndarray:
    signs = rng.choice([-1.0, 1.0], shape)
    return (signs * rng.uniform(1, 2, shape) * np.exp2(rng.integers(0, 40, shape))).astype(np.float32)


def _weights():
    rng = np.random.default_rng(7)
    shapes = [(1, 1), (1, 7), (3, 8), (5, 129), (64, 768), (768, 64), (2, 65536), (1, 70001), (7, 9000),
              (3, 8192), (13, 16385), (300, 257)]
    for shape in shapes:
        for scale in (0.05, 1e-30, 3e4):  # ordinary, far below float32's normal range's start, large
            yield f"{shape}x{scale:g}", (rng.standard_normal(shape) * scale).astype(np.float32)
    for shape in ((3, 70001), (40, 9000), (200, 768)):
        # magnitudes over 40 binades, each sum near the largest: float64 sums of them round, so any other association than numpy's gives
        # another number (ordinary weights span few enough binades that float64 sums them exactly in any order)
        yield f"{shape}-wide", _wide(rng, shape)
    w = rng.choice(np.array([-0.3, 0.0, 0.3], np.float32), size=(96, 200))  # already ternary (a QAT model)
    yield "ternary", w
    w = (rng.standard_normal((40, 100)) * 0.05).astype(np.float32)
    w[:5] = 0.0  # all-zero rows: no entry kept, scale 0
    w[5, :50] = -0.0
    w[6] = np.float32(1e-45)  # subnormals
    yield "zeros-and-subnormals", w
    w = (rng.standard_normal((50, 333)) * 0.05).astype(np.float32)
    delta = 0.7 * np.abs(w.astype(np.float64)).mean()
    w[0, :10] = np.float32(delta)  # entries at the threshold (float32 rounding either side)
    w[1, :10] = np.nextafter(np.float32(delta), np.float32(np.inf))
    w[2, :10] = -np.float32(delta)
    yield "at-threshold", w


@needs_kernels
@pytest.mark.parametrize("name, w", list(_weights()), ids=lambda v: v if isinstance(v, str) else "")
def test_ternary_and_binary_equal_the_numpy_code(name, w):
    for view in (w, w.T, np.asfortranarray(w), w[:, ::2] if w.shape[1] > 1 else w):  # C, F and strided
        _same(Q._ternarize_layer(view), Q._ternarize_layer_numpy(view))
        _same(Q._ternarize_rows(view), Q._ternarize_rows_numpy(view))
        for g in (Q.Granularity.LAYER, Q.Granularity.ROW):
            _same(Q.binarize(view, g), Q._binarize_numpy(view, g))
            assert Q.binarize(view, g)[0].strides == Q._binarize_numpy(view, g)[0].strides
        u = np.ascontiguousarray(view)
        for units in (u, u.reshape(1, -1)):  # rows, and the whole matrix as one unit
            got, want = Q._greedy_planes(units), Q._greedy_planes_numpy(units)
            for g_, w_ in zip(got, want):
                assert g_.dtype == w_.dtype and g_.shape == w_.shape and g_.tobytes() == w_.tobytes()
        # the codes lie in memory as the numpy code lays them (the weight's own order: no transposing copy later)
        assert Q._ternarize_layer(view)[0].strides == Q._ternarize_layer_numpy(view)[0].strides


@needs_kernels
@pytest.mark.parametrize("n", [1, 7, 8, 127, 128, 129, 8191, 8192, 8193, 65535, 65536, 65537, 3 * 65536 + 77])
def test_layer_sum_is_the_numpy_codes_association(n):
    """The float64 sum of |x| the kernel gives is, to the bit, the numpy code's: blocks of 2^16 values, each
    summed by numpy (``sum(dtype=np.float64)``) and added to a running float in turn."""
    x = _wide(np.random.default_rng(n), (n,))
    expected = 0.0
    for i in range(0, n, Q._BLOCK):
        expected += float(np.abs(x[i:i + Q._BLOCK]).sum(dtype=np.float64))
    assert Q._kernels.layer_abs_sum(x) == expected
    if n > 2 * Q._BLOCK:  # the point of the association: a plain float64 sum of these values is another number
        assert float(np.abs(x).astype(np.float64).cumsum()[-1]) != expected


@needs_kernels
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("granularity", ["layer", "row"])
@pytest.mark.parametrize("fn", [ternarize, Q.binarize])
def test_non_finite_weights_are_refused_by_the_kernels(bad, granularity, fn):
    w = np.random.default_rng(1).standard_normal((9, 40)).astype(np.float32)
    w[4, 17] = bad
    for view in (w, w.T):
        with pytest.raises(NonFiniteWeightError):
            fn(view, granularity)


@needs_kernels
def test_kernels_refuse_wrong_buffers():
    """Misuse from Python is an exception, never a read past a buffer."""
    x = np.zeros(10, np.float32)
    with pytest.raises(TypeError):
        Q._kernels.layer_abs_sum(np.zeros(10, np.float64))
    with pytest.raises(ValueError):
        Q._kernels.layer_codes(x, 0.1, np.empty(9, np.int8))
    with pytest.raises(ValueError):
        Q._kernels.ternarize_rows(x, 3, np.empty(10, np.int8), np.empty(3, np.float32))
    with pytest.raises((TypeError, BufferError, ValueError)):
        Q._kernels.layer_abs_sum(np.zeros((4, 4), np.float32)[:, ::2])  # not contiguous


@needs_kernels
@pytest.mark.parametrize("shape", [(1,), (4,), (5,), (7,), (3, 1), (3, 9), (2, 3, 11), (64, 768), (1, 1 << 20)])
def test_compiled_packers_equal_the_numpy_code(shape):
    from deploytool.quant import packing

    t = np.random.default_rng(len(shape)).integers(-1, 2, shape).astype(np.int8)
    for view in (t, t.T) if t.ndim == 2 else (t,):
        for fast, slow in ((packing.pack_2bit, packing._pack_2bit_numpy),
                           (packing.pack_trit5, packing._pack_trit5_numpy)):
            got, want = fast(view), slow(view)
            assert got.dtype == want.dtype == np.uint8 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)


@needs_kernels
@pytest.mark.parametrize("bad", [2, -2, 127, -128])
def test_compiled_packers_refuse_what_is_not_a_trit(bad):
    from deploytool.quant import packing

    t = np.zeros((3, 17), np.int8)
    t[2, 16] = bad
    for fn in (packing.pack_2bit, packing.pack_trit5):
        with pytest.raises(ValueError, match=r"values must be in \(-1, 0, 1\)"):
            fn(t)
