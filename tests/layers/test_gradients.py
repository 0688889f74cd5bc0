"""Numerical gradient checks, in float64, of every built-in layer.

``fl.utils.check_layer_gradients`` compares the layer's backprop with central
differences of ``sum(R * layer(x))`` for the inputs and for every weight created
trainable.  Each case also checks the forward values against a NumPy formula, so a
layer whose forward and backward are consistently wrong cannot pass.
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Activation, Add, BatchNormalization, Concatenate, Dense, Dropout, Flatten

ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "leaky_relu", "elu", "selu",
               "silu", "swish", "softplus", "softsign", "hard_sigmoid", "relu6", "exponential",
               "mish", "log_softmax"]


def rand(*shape, seed=0, scale=1.0):
    # Offset from the checker's own seed (0): inputs drawn from the same stream as its
    # random projection R would make R a linear function of x, and batch norm's input
    # gradient of sum(R * bn(x)) then vanishes (a meaningless, ill-conditioned check).
    return np.random.default_rng(1000 + seed).standard_normal(shape) * scale


def np_act(z, name):
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    from fastlayers import _reference, ops
    return _reference._act(z, ops.ACTIVATIONS[name])  # the later codes' NumPy twins


def check(layer, inputs, training):
    res = fl.utils.check_layer_gradients(layer, inputs, training=training, tolerance=1e-6)
    assert res.ok, res
    assert len(res.input_errors) == (len(inputs) if isinstance(inputs, list) else 1)
    return res


def randomize_weights(layer, seed=1):
    """Non-trivial weights (bias and beta are zero at creation, gamma one)."""
    rng = np.random.default_rng(seed)
    vals = []
    for w in layer.get_weights():
        vals.append(rng.standard_normal(w.shape) * 0.5)
    layer.set_weights(vals)


# --------------------------------------------------------------------------- Dense
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3)], ids=["2d", "3d"])
def test_dense_gradients(float64, activation, use_bias, shape):
    layer = Dense(4, activation=activation, use_bias=use_bias)
    x = rand(*shape)
    layer.build((None,) + shape[1:])
    randomize_weights(layer)
    assert [w.name for w in layer.weights] == (["kernel", "bias"] if use_bias else ["kernel"])
    res = check(layer, x, training=True)
    assert set(res.weight_errors) == ({"kernel", "bias"} if use_bias else {"kernel"})
    # forward against NumPy
    W = layer.get_weights()[0]
    z = x @ W + (layer.get_weights()[1] if use_bias else 0.0)
    y = layer(x)
    assert y.shape == shape[:-1] + (4,)
    np.testing.assert_allclose(y, np_act(z, activation), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- Activation
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4)], ids=["2d", "3d"])
def test_activation_gradients(float64, activation, shape):
    layer = Activation(activation)
    x = rand(*shape, scale=2.0)
    res = check(layer, x, training=False)
    assert res.weight_errors == {}
    np.testing.assert_allclose(layer(x), np_act(x, activation), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- Dropout
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.7])
def test_dropout_gradients_training(float64, rate):
    layer = Dropout(rate, seed=7)
    x = rand(5, 6)
    check(layer, x, training=True)
    y = layer(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-14)
    if rate > 0:
        assert 0 < (~kept).sum() < x.size


def test_dropout_gradients_inference_is_identity(float64):
    layer = Dropout(0.5, seed=7)
    x = rand(4, 3)
    check(layer, x, training=False)
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_dropout_gradient_uses_the_forward_mask(float64):
    """The check above rewinds the counter; here the mask of one call is checked directly."""
    layer = Dropout(0.5, seed=11)
    x = rand(6, 5)
    y = layer(x, training=True)
    mask = y != 0
    # one graph step: output gradient ones -> input gradient mask / (1 - rate)
    inp = fl.Input((5,))
    m = fl.Model(inp, Dropout(0.5, seed=11)(inp))
    dx = _input_gradient(m, x, np.ones_like(x))
    np.testing.assert_allclose(dx, mask / 0.5)


def _input_gradient(model, x, g):
    _, bp = model.forward(x, training=True)
    res = bp(g)
    return res[0] if isinstance(res, tuple) else res


# --------------------------------------------------------------------------- BatchNormalization
def _bn_reference(x, gamma, beta, mean, var, eps, axis):
    shape = [1] * x.ndim
    shape[axis] = -1
    r = lambda v: np.reshape(v, shape)  # noqa: E731
    return (x - r(mean)) / np.sqrt(r(var) + eps) * r(gamma) + r(beta)


BN_CASES = {
    "2d": dict(shape=(6, 3), kwargs={}),
    "3d_axis-1": dict(shape=(3, 2, 4), kwargs={"axis": -1}),
    "3d_axis1": dict(shape=(3, 4, 2), kwargs={"axis": 1}),
    "nocenter": dict(shape=(6, 3), kwargs={"center": False}),
    "noscale": dict(shape=(6, 3), kwargs={"scale": False}),
    "noscale_nocenter": dict(shape=(6, 3), kwargs={"center": False, "scale": False}),
}


def _bn(case):
    spec = BN_CASES[case]
    layer = BatchNormalization(**spec["kwargs"])
    x = rand(*spec["shape"], scale=2.0) + 0.5
    layer.build((None,) + spec["shape"][1:])
    randomize_weights(layer)
    # a positive moving variance
    w = layer.get_weights()
    w[-1] = np.abs(w[-1]) + 0.5
    layer.set_weights(w)
    axis = layer.axis % len(spec["shape"])
    return layer, x, axis


def _expected_weight_names(layer):
    return (["gamma"] if layer.scale else []) + (["beta"] if layer.center else []) + \
        ["moving_mean", "moving_variance"]


@pytest.mark.parametrize("case", list(BN_CASES))
def test_batchnorm_gradients_training(float64, case):
    layer, x, axis = _bn(case)
    before = layer.get_weights()
    res = check(layer, x, training=True)
    assert set(res.weight_errors) == {n for n in ("gamma", "beta") if n in _expected_weight_names(layer)}
    for a, b in zip(before, layer.get_weights()):  # the checker restores the state
        np.testing.assert_array_equal(a, b)
    # forward: batch statistics over every axis but `axis`, biased variance
    red = tuple(i for i in range(x.ndim) if i != axis)
    mean, var = x.mean(axis=red), x.var(axis=red)
    names = _expected_weight_names(layer)
    vals = dict(zip(names, before))
    gamma = vals.get("gamma", np.ones_like(mean))
    beta = vals.get("beta", np.zeros_like(mean))
    y = layer(x, training=True)
    np.testing.assert_allclose(y, _bn_reference(x, gamma, beta, mean, var, 1e-3, axis), rtol=1e-10,
                               atol=1e-12)
    # ... and the moving statistics moved by (1 - momentum)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.99 * vals["moving_mean"] + 0.01 * mean,
                               rtol=1e-12)
    # (the moving variance from the unbiased batch variance, DESIGN.md R7)
    m = x.size // x.shape[axis]
    np.testing.assert_allclose(layer.moving_variance.numpy(),
                               0.99 * vals["moving_variance"] + 0.01 * var * m / (m - 1),
                               rtol=1e-12)


@pytest.mark.parametrize("case", list(BN_CASES))
def test_batchnorm_gradients_inference(float64, case):
    layer, x, axis = _bn(case)
    before = layer.get_weights()
    check(layer, x, training=False)
    vals = dict(zip(_expected_weight_names(layer), before))
    c = vals["moving_mean"].shape
    y = layer(x, training=False)
    np.testing.assert_allclose(
        y, _bn_reference(x, vals.get("gamma", np.ones(c)), vals.get("beta", np.zeros(c)),
                         vals["moving_mean"], vals["moving_variance"], 1e-3, axis),
        rtol=1e-10, atol=1e-12)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", ["2d", "3d_axis1"])
def test_batchnorm_frozen_gradients_training_mode(float64, case):
    """Frozen BN runs in inference mode even under training=True (R7)."""
    layer, x, axis = _bn(case)
    layer.trainable = False
    before = layer.get_weights()
    check(layer, x, training=True)
    y_train = layer(x, training=True)
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)
    layer.trainable = True
    np.testing.assert_allclose(y_train, layer(x, training=False), rtol=1e-14)


# --------------------------------------------------------------------------- Flatten / merges
@pytest.mark.parametrize("shape", [(3, 4), (3, 2, 4), (2, 2, 3, 2)])
def test_flatten_gradients(float64, shape):
    layer = Flatten()
    x = rand(*shape)
    check(layer, x, training=False)
    y = layer(x)
    np.testing.assert_array_equal(y, x.reshape(shape[0], -1))


@pytest.mark.parametrize("axis,shapes", [
    (-1, [(3, 2), (3, 4)]),
    (-1, [(3, 2), (3, 1), (3, 3)]),
    (1, [(2, 2, 3), (2, 1, 3)]),
    (-1, [(2, 2, 3), (2, 2, 1)]),
])
def test_concatenate_gradients(float64, axis, shapes):
    layer = Concatenate(axis=axis)
    xs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    check(layer, xs, training=False)
    np.testing.assert_array_equal(layer(xs), np.concatenate(xs, axis=axis))


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2)])
def test_add_gradients(float64, n, shape):
    layer = Add()
    xs = [rand(*shape, seed=i) for i in range(n)]
    check(layer, xs, training=False)
    np.testing.assert_allclose(layer(xs), sum(xs), rtol=1e-14)


def test_gradient_check_catches_a_wrong_backprop(float64):
    """The checker itself must fail on a layer whose backward is wrong."""

    class Wrong(fl.layers.Layer):
        def forward(self, x, training=False):
            return x ** 2, lambda g: g * x  # should be 2 * g * x

    with pytest.raises(AssertionError):
        fl.utils.check_layer_gradients(Wrong(), rand(3, 2))
