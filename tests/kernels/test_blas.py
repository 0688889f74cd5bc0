"""csrc/_blas.pxd's gemm_split, every branch, against a NumPy product.

Reached through the test hook fastlayers._kernels.dense._gemm_split_memview, which
takes the team size and split axis from the caller: the row slices (the forward
product and the dW product), the column slices (the dX product), each with either
operand transposed, the serial fallbacks (one thread, too few rows or columns to
split, too little work), teams larger than the slices, and sizes that are not
multiples of the 16-wide slice alignment.
"""
import numpy as np
import pytest

from fastlayers import _threads
from fastlayers._kernels.dense import _gemm_split_memview as gemm_split

SPLIT_MIN_MADDS = 1 << 20  # csrc/_blas.pxd
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def operands(rng, dtype, m, n, k, trans_a, trans_b):
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    return A, B, C


def expected(alpha, A, B, beta, C, trans_a, trans_b):
    a = A.T if trans_a else A
    b = B.T if trans_b else B
    return alpha * (a.astype(np.float64) @ b.astype(np.float64)) + beta * C.astype(np.float64)


def check(dtype, nthreads, split_rows, trans_a, trans_b, m, n, k, alpha=1.0, beta=0.0, seed=0):
    rng = np.random.default_rng(seed)
    A, B, C = operands(rng, dtype, m, n, k, trans_a, trans_b)
    want = expected(alpha, A, B, beta, C, trans_a, trans_b)
    A.setflags(write=False)  # inputs may be read-only
    B.setflags(write=False)
    gemm_split(nthreads, split_rows, trans_a, trans_b, alpha, A, B, beta, C)
    scale = max(1.0, np.abs(want).max())
    np.testing.assert_allclose(C / scale, want / scale, **TOL[dtype])


@pytest.fixture(autouse=True)
def forget_oversubscription():
    # Teams larger than the machine wait on each other, which the starvation
    # guard (csrc/_team.pxd) takes for a busy machine: do not pass that on.
    yield
    _threads.reset_guard()


DTYPES = [np.float32, np.float64]
FLAGS = [(False, False), (True, False), (False, True), (True, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("trans_a, trans_b", FLAGS)
@pytest.mark.parametrize("split_rows", [True, False])
@pytest.mark.parametrize("nthreads", [2, 3])
def test_split_slices_match_numpy(dtype, trans_a, trans_b, split_rows, nthreads):
    # 131 x 97 x 89 is just above the split threshold; neither 131 nor 97 is a
    # multiple of 16, so the last slice is short.
    m, n, k = 131, 97, 89
    assert m * n * k >= SPLIT_MIN_MADDS
    check(dtype, nthreads, split_rows, trans_a, trans_b, m, n, k)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("split_rows", [True, False])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True)])
def test_split_with_alpha_and_accumulating_beta(dtype, split_rows, trans_a, trans_b):
    # The three products of a Dense layer: forward (rows, N N), dW (rows, T N) and
    # the SGD update into W (alpha = -lr, beta = 1), dX (columns, N T).
    check(dtype, 2, split_rows, trans_a, trans_b, 150, 120, 70, alpha=-0.25, beta=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("split_rows", [True, False])
def test_more_threads_than_slices(dtype, split_rows):
    # 40 rows/columns in 16-aligned slices make 3 slices: threads 4..7 get none.
    size = 40
    m, n = (size, 700) if split_rows else (700, size)
    check(dtype, 8, split_rows, False, False, m, n, 60)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nthreads, split_rows, m, n, k", [
    (1, True, 131, 97, 89),     # one thread
    (2, True, 31, 700, 100),    # 31 rows: fewer than two aligned slices
    (2, False, 700, 31, 100),   # 31 columns
    (2, True, 64, 64, 64),      # below SPLIT_MIN_MADDS
    (2, False, 33, 33, 33),
])
@pytest.mark.parametrize("trans_a, trans_b", FLAGS)
def test_serial_fallback_matches_numpy(dtype, nthreads, split_rows, m, n, k, trans_a, trans_b):
    check(dtype, nthreads, split_rows, trans_a, trans_b, m, n, k, alpha=0.5, beta=-1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_empty_inner_dimension_scales_c(dtype, beta):
    rng = np.random.default_rng(1)
    C = rng.standard_normal((5, 7)).astype(dtype)
    want = beta * C
    gemm_split(2, True, False, False, 1.0, np.empty((5, 0), dtype), np.empty((0, 7), dtype),
               beta, C)
    np.testing.assert_array_equal(C, want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_output_is_a_no_op(dtype):
    C = np.empty((0, 7), dtype)
    gemm_split(2, True, False, False, 1.0, np.empty((0, 3), dtype), np.ones((3, 7), dtype),
               0.0, C)
    assert C.shape == (0, 7)


def test_hook_rejects_shapes_that_do_not_agree():
    A = np.ones((4, 3))
    with pytest.raises(ValueError, match="op\\(A\\)"):
        gemm_split(2, True, False, False, 1.0, A, np.ones((3, 5)), 0.0, np.empty((5, 5)))
    with pytest.raises(ValueError, match="op\\(B\\)"):
        gemm_split(2, True, False, False, 1.0, A, np.ones((4, 5)), 0.0, np.empty((4, 5)))
    with pytest.raises(ValueError, match="nthreads"):
        gemm_split(0, True, False, False, 1.0, A, np.ones((3, 5)), 0.0, np.empty((4, 5)))
