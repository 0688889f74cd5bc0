"""Shared fixtures of the kernel suite: the tolerance table and array builders.

Every test compares ``fastlayers.ops`` (the compiled kernels behind validation)
with ``fastlayers._reference`` (NumPy), thinc ``ALL_OPS`` style, per dtype with
the tolerances below (sklearn ``RTOL`` style).  float32 gets an absolute term
because two BLAS builds (numpy's and scipy's) round GEMM sums differently; the
differences sit near float32 epsilon times the size of the summed terms.
"""
import numpy as np
import pytest

TOLERANCE = {
    np.dtype(np.float32): dict(rtol=1e-5, atol=1e-6),
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-12),
}


def _assert_close(actual, expected, dtype=None, scale=1.0, err_msg=""):
    dtype = np.dtype(dtype if dtype is not None else np.asarray(expected).dtype)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"] * scale,
                               atol=tol["atol"] * scale, err_msg=err_msg)


@pytest.fixture
def close():
    """close(actual, expected, dtype=None, scale=1.0): assert_allclose at the table's tolerance."""
    return _assert_close


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


def _build(rng, shape, dtype, layout, low=None, high=None):
    """An array of `shape` and `dtype` in `layout`: contig, noncontig or readonly.

    noncontig is a transpose, or a strided slice of a larger array when a
    transpose would still be contiguous, so
    the wrappers must copy it to contiguous memory.
    """
    def draw(s):
        if low is None:
            return rng.standard_normal(s).astype(dtype)
        return rng.uniform(low, high, s).astype(dtype)

    if layout == "contig":
        return draw(shape)
    if layout == "readonly":
        a = draw(shape)
        a.setflags(write=False)
        return a
    if layout == "noncontig":
        if len(shape) >= 2 and min(shape) > 1:
            a = draw(shape[::-1]).T
        else:
            a = draw(shape[:-1] + (2 * shape[-1],))[..., ::2]
        if a.size > 1:
            assert not a.flags.c_contiguous
        return a
    raise ValueError(layout)


@pytest.fixture
def make(rng):
    """make(shape, dtype, layout="contig", low=None, high=None) -> array."""
    def make(shape, dtype, layout="contig", low=None, high=None):
        return _build(rng, tuple(shape), dtype, layout, low, high)
    return make
