"""Dropout: masks bit-exact with the reference, deterministic, and unbiased."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import dropout as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
SHAPES = {"1x1": (1, 1), "batch1": (1, 13), "odd": (7, 13), "empty": (0, 5),
          "parallel": (181, 191)}  # > 32k elements: the OpenMP path
LAYOUTS = ["contig", "noncontig", "readonly"]
CASES = [pytest.param(dt, shape, layout, id=f"{dt.name}-{name}-{layout}")
         for dt in DTYPES for name, shape in SHAPES.items() for layout in LAYOUTS]
C = np.ascontiguousarray


def reference(X, rate, seed, counter):
    Y, mask = np.empty(X.shape, X.dtype), np.empty(X.shape, np.uint8)
    R.dropout_forward(C(X), Y, mask, rate, seed, counter)
    return Y, mask


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.9])
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_dropout_forward_matches_reference(dtype, shape, layout, rate, make):
    X = make(shape, dtype, layout)
    seed, counter = 1234567, 2 ** 40 + 3
    Y, mask = ops.dropout_forward(X, rate, seed, counter)
    eY, emask = reference(X, rate, seed, counter)
    assert mask.dtype == np.uint8 and Y.dtype == dtype
    np.testing.assert_array_equal(mask, emask)  # exactly the same bits
    np.testing.assert_array_equal(Y, eY)  # one multiply per kept element: exact too


@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_dropout_backward_matches_reference(dtype, shape, layout, make):
    X, dY = make(shape, dtype), make(shape, dtype, layout)
    _, mask = ops.dropout_forward(X, 0.4, 9, 0)
    dX = ops.dropout_backward(dY, mask, 0.4)
    expected = np.empty(shape, dtype)
    R.dropout_backward(C(dY), mask, 0.4, expected)
    np.testing.assert_array_equal(dX, expected)
    np.testing.assert_array_equal(ops.dropout_backward(dY, mask.astype(bool), 0.4), expected)


def test_dropout_is_deterministic_in_seed_and_counter(make):
    X = make((64, 33), np.float32)
    a = ops.dropout_forward(X, 0.5, seed=7, counter=100)[1]
    np.testing.assert_array_equal(a, ops.dropout_forward(X, 0.5, seed=7, counter=100)[1])
    assert not np.array_equal(a, ops.dropout_forward(X, 0.5, seed=7, counter=101)[1])
    assert not np.array_equal(a, ops.dropout_forward(X, 0.5, seed=8, counter=100)[1])
    # The stream is indexed by counter + flat index: a later counter is a shifted view.
    b = ops.dropout_forward(X.reshape(-1)[33:], 0.5, seed=7, counter=133)[1]
    np.testing.assert_array_equal(a.reshape(-1)[33:], b)


def test_dropout_mask_independent_of_thread_count(make):
    X = make((181, 191), np.float64)
    import fastlayers as fl
    try:
        fl.backend.set_num_threads(1)
        one = ops.dropout_forward(X, 0.5, 3, 0)[1]
        fl.backend.set_num_threads(2)
        two = ops.dropout_forward(X, 0.5, 3, 0)[1]
    finally:
        fl.backend.set_num_threads(None)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keep_rate_and_mean_are_unbiased(rate):
    X = np.ones((400, 250), np.float64)
    Y, mask = ops.dropout_forward(X, rate, seed=2024, counter=0)
    keep = mask.mean()
    sigma = np.sqrt(rate * (1 - rate) / X.size)
    assert abs(keep - (1 - rate)) < 5 * sigma
    assert abs(Y.mean() - 1.0) < 5 * sigma / (1 - rate)
    # Neighbouring seeds are not correlated (the seed is hashed first).
    other = ops.dropout_forward(X, rate, seed=2025, counter=0)[1]
    agree = (mask == other).mean()
    expected_agree = (1 - rate) ** 2 + rate ** 2
    assert abs(agree - expected_agree) < 5 * np.sqrt(expected_agree * (1 - expected_agree)
                                                     / X.size)


def test_dropout_uniforms_fill_the_unit_interval():
    u = R.dropout_uniform(seed=1, counter=0, size=100_000)
    assert u.min() >= 0 and u.max() < 1
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(hist - 10_000) < 600)


def test_dropout_in_place_and_out_buffers(make):
    X = make((7, 13), np.float32)
    eY, emask = reference(X, 0.5, 11, 5)
    out, mask = np.empty_like(X), np.empty((7, 13), np.uint8)
    Y, m = ops.dropout_forward(X, 0.5, 11, 5, out=out, mask=mask)
    assert Y is out and m is mask
    ops.dropout_forward(X, 0.5, 11, 5, out=X)
    np.testing.assert_array_equal(X, eY)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_raw_dropout_kernels_accept_readonly_inputs(dtype, make):
    X = make((7, 13), dtype, "readonly")
    Y, mask = np.empty((7, 13), dtype), np.empty((7, 13), np.uint8)
    K.dropout_forward(X, Y, mask, 0.25, 5, 6)
    eY, emask = reference(X, 0.25, 5, 6)
    np.testing.assert_array_equal(mask, emask)
    np.testing.assert_array_equal(Y, eY)
    mask.setflags(write=False)
    dX = np.empty_like(Y)
    K.dropout_backward(X, mask, 0.25, dX)
    np.testing.assert_array_equal(dX, eY)
    with pytest.raises(ValueError, match="rate"):
        K.dropout_forward(X, Y, np.empty((7, 13), np.uint8), 1.0, 5, 6)
