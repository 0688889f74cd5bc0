"""Seeded random fills for the noise layers, against the reference."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import noise as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]


@pytest.mark.parametrize("shape", [(1,), (7, 13), (0, 3), (181, 191)],
                         ids=["1", "odd", "empty", "parallel"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_fills_match_reference(dtype, shape):
    seed, counter = 99, 2 ** 40 + 5
    n = ops.random_normal(shape, dtype, seed, counter)
    expected = np.empty(shape, dtype)
    R.normal_fill(expected, seed, counter)
    assert n.dtype == dtype and n.shape == shape
    # libm and NumPy may round log/cos differently in the last bit.
    np.testing.assert_allclose(n, expected, rtol=1e-6 if dtype == np.float32 else 1e-13,
                               atol=1e-6 if dtype == np.float32 else 1e-13)
    u = ops.random_uniform(shape, dtype, seed, counter)
    R.uniform_fill(expected, seed, counter)
    np.testing.assert_array_equal(u, expected)


def test_uniforms_are_dropouts_stream():
    u = ops.random_uniform((5, 7), np.float64, 3, 11)
    _, mask = ops.dropout_forward(np.ones((5, 7)), 0.4, 3, 11)
    np.testing.assert_array_equal(mask, u >= 0.4)


def test_normals_are_standard_and_deterministic():
    z = ops.random_normal((200_000,), np.float64, 1, 0)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs((z > 1.96).mean() - 0.025) < 0.002
    np.testing.assert_array_equal(z[:10], ops.random_normal((10,), np.float64, 1, 0))
    # Element i uses positions counter + 2i, + 2i + 1: a later counter is a shifted view.
    np.testing.assert_array_equal(z[3:13], ops.random_normal((10,), np.float64, 1, 6))
    assert not np.array_equal(z[:10], ops.random_normal((10,), np.float64, 2, 0))


def test_fill_errors():
    with pytest.raises(TypeError, match="random_normal: dtype must be float32 or float64"):
        ops.random_normal((3,), np.int32, 0, 0)
    with pytest.raises(ValueError, match="random_uniform: seed must be an integer"):
        ops.random_uniform((3,), np.float32, -1, 0)


def test_raw_fill_kernels():
    out = np.empty(6, np.float32)
    K.normal_fill(out, 5, 0)
    assert np.all(np.isfinite(out))
    K.uniform_fill(out, 5, 0)
    assert np.all((out >= 0) & (out < 1))
