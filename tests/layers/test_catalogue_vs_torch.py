"""The catalogue against PyTorch (an optional oracle, as tests/training/test_torch_reference.py).

Keras-specific conventions (same-padding split, weight layouts) are tested elsewhere;
here torch checks the arithmetic, forward and backward, in float64.
"""
import numpy as np
import pytest

from fastlayers import layers as L
from fastlayers import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def nhwc(a):
    return a.permute(0, 2, 3, 1)


def nchw(a):
    return a.permute(0, 3, 1, 2)


@pytest.mark.parametrize("name, fn", [
    ("gelu", lambda x: F.gelu(x)), ("elu", F.elu), ("selu", F.selu), ("silu", F.silu),
    ("softplus", F.softplus), ("mish", F.mish), ("hard_sigmoid", F.hardsigmoid),
    ("relu6", F.relu6), ("leaky_relu", lambda x: F.leaky_relu(x, 0.2)),
    ("softsign", F.softsign), ("log_softmax", lambda x: F.log_softmax(x, dim=-1)),
    ("exponential", torch.exp),
])
def test_activations_and_gradients(name, fn, rng):
    x = rng.uniform(-5, 5, (4, 7))
    g = rng.standard_normal((4, 7))
    tx = t(x, True)
    ty = fn(tx)
    ty.backward(t(g))
    y = ops.activation_forward(x, name)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    # torch's hardsigmoid backward scales by a float32 1/6 (ours is exact).
    rtol = 1e-7 if name == "hard_sigmoid" else 1e-10
    np.testing.assert_allclose(ops.activation_backward(y, g, name, X=x), tx.grad.numpy(),
                               rtol=rtol, atol=1e-12)


def test_conv2d_and_its_gradients(rng):
    x, W, b = rng.standard_normal((2, 9, 8, 3)), rng.standard_normal((3, 2, 3, 4)), \
        rng.standard_normal(4)
    tx, tW, tb = t(x, True), t(W, True), t(b, True)
    ty = nhwc(F.conv2d(nchw(tx), tW.permute(3, 2, 0, 1), tb, stride=(2, 1), dilation=1))
    g = rng.standard_normal(ty.shape)
    ty.backward(t(g))
    y = ops.conv2d_forward(x, W, b, (2, 1), "valid")
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    dx, dW, db = ops.conv2d_backward(x, W, y, g, (2, 1), "valid")
    for ours, theirs in ((dx, tx), (dW, tW), (db, tb)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-11, atol=1e-11)


def test_conv2d_transpose_layer(float64, rng):
    layer = L.Conv2DTranspose(3, (3, 2), strides=2)
    x = rng.standard_normal((2, 3, 4, 2))
    y = layer(x)
    k, b = layer.get_weights()  # (kh, kw, filters, in)
    theirs = F.conv_transpose2d(nchw(t(x)), t(k).permute(3, 2, 0, 1), t(b), stride=2)
    np.testing.assert_allclose(y, nhwc(theirs).numpy(), rtol=1e-12, atol=1e-12)


def test_pooling(rng):
    x = rng.standard_normal((2, 7, 6, 3))
    theirs = nhwc(F.max_pool2d(nchw(t(x)), (3, 2), (2, 2))).numpy()
    np.testing.assert_array_equal(ops.max_pool2d_forward(x, (3, 2), (2, 2))[0], theirs)
    theirs = nhwc(F.avg_pool2d(nchw(t(x)), (3, 2), (2, 2))).numpy()
    np.testing.assert_allclose(ops.avg_pool2d_forward(x, (3, 2), (2, 2)), theirs, rtol=1e-12)


def test_layer_and_group_normalization(float64, rng):
    x = rng.standard_normal((3, 4, 6)) * 3 + 1
    ln = L.LayerNormalization()
    ln.build((None, 4, 6))
    ln.set_weights([rng.standard_normal(6), rng.standard_normal(6)])
    g, b = ln.get_weights()
    np.testing.assert_allclose(ln(x), F.layer_norm(t(x), (6,), t(g), t(b), 1e-3).numpy(),
                               rtol=1e-10, atol=1e-12)
    gn = L.GroupNormalization(3)
    gn.build((None, 4, 6))
    gn.set_weights([rng.standard_normal(6), rng.standard_normal(6)])
    g, b = gn.get_weights()
    theirs = F.group_norm(t(x).permute(0, 2, 1), 3, t(g), t(b), 1e-3).permute(0, 2, 1)
    np.testing.assert_allclose(gn(x), theirs.numpy(), rtol=1e-10, atol=1e-12)


def test_embedding_gradient(float64, rng):
    layer = L.Embedding(9, 4)
    ids = np.array([[1, 3, 3], [8, 0, 1]])
    layer.build((None, 3))
    y, bp = layer.forward(ids.astype(float))
    W = t(layer.get_weights()[0], True)
    ty = F.embedding(torch.tensor(ids), W)
    g = rng.standard_normal(ty.shape)
    ty.backward(t(g))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_allclose(bp(g)[1][0], W.grad.numpy(), rtol=1e-12)
