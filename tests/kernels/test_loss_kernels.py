"""Loss kernels (value and gradient of the batch mean) against the reference."""
import numpy as np
import pytest

from fastlayers import _reference as R
from fastlayers import ops
from fastlayers._kernels import losses as K

DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
# (n, k)
SHAPES = {"1x1": (1, 1), "batch1": (1, 7), "odd": (7, 13), "empty": (0, 5)}
LAYOUTS = ["contig", "noncontig", "readonly"]
CASES = [pytest.param(dt, shape, layout, id=f"{dt.name}-{name}-{layout}")
         for dt in DTYPES for name, shape in SHAPES.items() for layout in LAYOUTS]
C = np.ascontiguousarray

# name -> (ops function, reference function, how y_pred and y_true are drawn)
ELEMENTWISE = {
    "mse": (lambda p, t, **kw: ops.mse(p, t, **kw), lambda p, t, g: R.mse(p, t, g)),
    "mae": (lambda p, t, **kw: ops.mae(p, t, **kw), lambda p, t, g: R.mae(p, t, g)),
    "bce_probs": (lambda p, t, **kw: ops.binary_crossentropy(p, t, **kw),
                  lambda p, t, g: R.binary_crossentropy(p, t, g, False)),
    "bce_logits": (lambda p, t, **kw: ops.binary_crossentropy(p, t, from_logits=True, **kw),
                   lambda p, t, g: R.binary_crossentropy(p, t, g, True)),
}


def draw_pred_true(make, name, shape, dtype, layout):
    if name == "bce_probs":
        # Some predictions beyond the clip range, to cover the zero-gradient branch.
        p = make(shape, dtype, layout, low=-0.1, high=1.1)
        return p, make(shape, dtype, layout, low=0, high=1)
    if name == "bce_logits":
        return 4 * make(shape, dtype, layout), make(shape, dtype, layout, low=0, high=1)
    return make(shape, dtype, layout), make(shape, dtype, layout)


def check_loss(got, expected_loss, expected_grad, dtype, close):
    loss, grad = got
    assert isinstance(loss, float)
    if np.isnan(expected_loss):
        assert np.isnan(loss)
    else:
        close(loss, expected_loss, dtype=dtype)
    assert grad.dtype == dtype
    close(grad, expected_grad)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_elementwise_loss_matches_reference(dtype, shape, layout, name, make, close):
    op, ref = ELEMENTWISE[name]
    p, t = draw_pred_true(make, name, shape, dtype, layout)
    G = np.empty(shape, dtype)
    expected = ref(C(p), C(t), G)
    check_loss(op(p, t), expected, G, dtype, close)
    loss, grad = op(p, t, want_grad=False)
    assert grad is None
    assert np.isnan(loss) if np.isnan(expected) else np.isclose(loss, expected, rtol=1e-6)


def draw_logits_probs(make, shape, dtype, layout, from_logits):
    if from_logits:
        return 3 * make(shape, dtype, layout)
    # Unnormalised positive rows; one tiny entry exercises the clip.
    P = make(shape, dtype, layout, low=0.01, high=1)
    if P.size:
        P = P.copy()
        P.flat[0] = 1e-9
    return P


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_sparse_categorical_crossentropy_matches_reference(dtype, shape, layout, from_logits,
                                                           make, close, rng):
    n, k = shape
    Z = draw_logits_probs(make, shape, dtype, layout, from_logits)
    labels = rng.integers(0, k, n)
    if layout == "noncontig":
        labels = np.repeat(labels, 2)[::2]
    G = np.empty(shape, dtype)
    expected = R.softmax_crossentropy_sparse(C(Z), C(labels), G, from_logits)
    got = ops.sparse_categorical_crossentropy(Z, labels, from_logits=from_logits)
    check_loss(got, expected, G, dtype, close)


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
@pytest.mark.parametrize("dtype,shape,layout", CASES)
def test_categorical_crossentropy_matches_reference(dtype, shape, layout, from_logits, make,
                                                    close):
    Z = draw_logits_probs(make, shape, dtype, layout, from_logits)
    Y = make(shape, dtype, layout, low=0, high=1)
    G = np.empty(shape, dtype)
    expected = R.softmax_crossentropy(C(Z), C(Y), G, from_logits)
    check_loss(ops.categorical_crossentropy(Z, Y, from_logits=from_logits), expected, G,
               dtype, close)


@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probs"])
def test_categorical_and_sparse_agree_on_one_hot(from_logits, make, rng, close):
    dtype = np.dtype(np.float64)
    Z = draw_logits_probs(make, (7, 13), dtype, "contig", from_logits)
    labels = rng.integers(0, 13, 7)
    one_hot = np.eye(13)[labels]
    a = ops.sparse_categorical_crossentropy(Z, labels, from_logits=from_logits)
    b = ops.categorical_crossentropy(Z, one_hot, from_logits=from_logits)
    close(a[0], b[0], dtype=dtype)
    close(a[1], b[1])


def test_softmax_crossentropy_from_logits_is_stable():
    Z = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    loss, grad = ops.sparse_categorical_crossentropy(Z, [0], from_logits=True)
    assert loss == 0.0 and np.all(np.isfinite(grad))
    loss, _ = ops.binary_crossentropy(np.array([[-200.0, 200.0]]), np.array([[1.0, 0.0]]),
                                      from_logits=True)
    assert np.isclose(loss, 200.0)


def test_losses_accept_leading_axes_and_column_targets(make, close):
    dtype = np.dtype(np.float64)
    p, t = make((2, 3, 4), dtype), make((2, 3, 4), dtype)
    loss, grad = ops.mse(p, t)
    close(loss, float(((p - t) ** 2).mean()), dtype=dtype)
    assert grad.shape == p.shape
    col = make((5, 1), dtype)
    y = make((5,), dtype)
    close(ops.mae(col, y)[0], float(np.abs(col[:, 0] - y).mean()), dtype=dtype)
    Z = make((2, 3, 4), dtype)
    labels = np.array([[0, 1, 2], [3, 0, 1]])
    loss, grad = ops.sparse_categorical_crossentropy(Z, labels[..., None], from_logits=True)
    flat = ops.sparse_categorical_crossentropy(Z.reshape(6, 4), labels.reshape(6),
                                               from_logits=True)
    close(loss, flat[0], dtype=dtype)
    close(grad.reshape(6, 4), flat[1])


def numeric_gradient(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        up = f(x)
        x[idx] = old - h
        down = f(x)
        x[idx] = old
        g[idx] = (up - down) / (2 * h)
    return g


def _fd_cases():
    rng = np.random.default_rng(7)
    t = rng.uniform(0, 1, (3, 4))
    labels = np.array([0, 3, 2])
    probs = rng.uniform(0.05, 1, (3, 4))
    return {
        "mse": (lambda p: ops.mse(p, t), rng.standard_normal((3, 4))),
        # mae's kink is at p == t, which random draws avoid.
        "mae": (lambda p: ops.mae(p, t), rng.standard_normal((3, 4))),
        "bce_probs": (lambda p: ops.binary_crossentropy(p, t), rng.uniform(0.05, 0.95, (3, 4))),
        "bce_logits": (lambda p: ops.binary_crossentropy(p, t, from_logits=True),
                       rng.standard_normal((3, 4))),
        "cce_logits": (lambda p: ops.categorical_crossentropy(p, t, from_logits=True),
                       rng.standard_normal((3, 4))),
        "cce_probs": (lambda p: ops.categorical_crossentropy(p, t), probs),
        "sparse_logits": (lambda p: ops.sparse_categorical_crossentropy(p, labels,
                                                                         from_logits=True),
                          rng.standard_normal((3, 4))),
        "sparse_probs": (lambda p: ops.sparse_categorical_crossentropy(p, labels), probs.copy()),
    }


FD_CASES = _fd_cases()


@pytest.mark.parametrize("name", list(FD_CASES))
def test_loss_gradient_matches_finite_differences(name):
    f, x = FD_CASES[name]
    x = x.copy()
    _, grad = f(x)
    numeric = numeric_gradient(lambda v: f(v)[0], x)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_raw_loss_kernels_accept_readonly_inputs(dtype, make, close, rng):
    p, t = make((7, 13), dtype, "readonly"), make((7, 13), dtype, "readonly", low=0, high=1)
    for kernel, ref, extra in ((K.mse, R.mse, ()), (K.mae, R.mae, ()),
                               (K.binary_crossentropy, R.binary_crossentropy, (True,)),
                               (K.softmax_crossentropy, R.softmax_crossentropy, (True,))):
        G, E = np.empty((7, 13), dtype), np.empty((7, 13), dtype)
        close(kernel(p, t, G, *extra), ref(p, t, E, *extra), dtype=dtype)
        close(G, E)
    labels = rng.integers(0, 13, 7)
    labels.setflags(write=False)
    assert np.isfinite(K.softmax_crossentropy_sparse(p, labels, None, True))


def test_raw_sparse_kernel_rejects_out_of_range_labels():
    Z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="labels"):
        K.softmax_crossentropy_sparse(Z, np.array([0, 3]), None, True)
