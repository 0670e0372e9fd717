"""deploytool.runtime.cast: ONNX Runtime's Cast gives numpy's float16 bits (round to nearest even,
overflow to +-inf, NaN kept, subnormals), for any shape, read-only inputs included."""

from __future__ import annotations

import numpy as np
import pytest

from deploytool.runtime.cast import float32_to_float16


@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 5), (2, 3, 70_001)])
def test_float32_to_float16_is_numpys_cast(shape):
    rng = np.random.default_rng(0)
    n = int(np.prod(shape))
    a = (rng.standard_normal(n) * np.exp(rng.uniform(-20, 14, n))).astype(np.float32)
    special = np.array([0, -0.0, np.nan, np.inf, -np.inf, 65504, 65519, 65520, -7e4, 2.0 ** -24, 2.0 ** -25,
                        3e-8, -1e-9, 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11], np.float32)
    k = min(n, special.size)
    a[:k] = special[:k]
    a = a.reshape(shape)
    a.flags.writeable = False  # weights come from read-only file maps
    with np.errstate(over="ignore"):
        want = a.astype(np.float16)
    got = float32_to_float16(a)
    assert got.dtype == np.float16 and got.shape == a.shape
    np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_float32_to_float16_takes_strided_views():
    a = np.arange(24, dtype=np.float32).reshape(4, 6) / 7
    got = float32_to_float16(a.T)
    np.testing.assert_array_equal(got, a.T.astype(np.float16))


def test_float32_to_float16_writes_into_out_and_checks_it():
    a = np.linspace(-3, 3, 1000, dtype=np.float32)
    out = np.zeros(1200, np.float16)
    got = float32_to_float16(a, out=out[100:1100])
    assert np.shares_memory(got, out)
    np.testing.assert_array_equal(out[100:1100], a.astype(np.float16))
    assert not out[:100].any() and not out[1100:].any()
    with pytest.raises(ValueError, match="float16 array of 1000"):
        float32_to_float16(a, out=np.zeros(999, np.float16))
    with pytest.raises(ValueError, match="C-contiguous"):
        float32_to_float16(a, out=np.zeros(2000, np.float16)[::2])
