"""Regularizers and constraints on the convolution layers, with Keras's argument names:
weight penalties in ``model.losses`` and in the training step's loss and gradient, a
constraint applied after each update, and the rule for frozen weights (penalty
reported, no gradient, constraint never applied).  As on Dense
(tests/layers/test_regularizers.py)."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import layers as L
from fastlayers import regularizers as R

# (id, factory(**penalty args), input shape without batch, the weight of each
# regularizer/constraint argument: {argument prefix: weight attribute})
CONVS = [
    ("conv1d", lambda **kw: L.Conv1D(2, 3, **kw), (6, 2), {"kernel": "kernel"}),
    ("conv2d", lambda **kw: L.Conv2D(2, (2, 3), padding="same", **kw), (4, 5, 2),
     {"kernel": "kernel"}),
    ("conv2d-transpose", lambda **kw: L.Conv2DTranspose(2, 2, strides=2, **kw), (3, 2, 2),
     {"kernel": "kernel"}),
    ("depthwise", lambda **kw: L.DepthwiseConv2D(2, depth_multiplier=2, **kw), (4, 3, 2),
     {"depthwise": "kernel"}),
    ("separable", lambda **kw: L.SeparableConv2D(3, 2, **kw), (4, 3, 2),
     {"depthwise": "depthwise_kernel", "pointwise": "pointwise_kernel"}),
]
IDS = [c[0] for c in CONVS]


def _params():
    return pytest.mark.parametrize("make,in_shape,kernels", [c[1:] for c in CONVS], ids=IDS)


def _model(layer, in_shape, seed=0):
    inp = fl.Input(in_shape)
    m = fl.Model(inp, L.Dense(2, name="head")(L.Flatten()(layer(inp))))
    m.compile(fl.optimizers.SGD(0.1), "mse")
    rng = np.random.default_rng(seed)
    m.set_weights([rng.standard_normal(w.shape) * 0.5 for w in m.weights])
    return m


def _data(in_shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5,) + in_shape), rng.standard_normal((5, 2))


def _penalty_args(kernels, reg=None, con=None):
    kw = {}
    for prefix in kernels:
        if reg is not None:
            kw[f"{prefix}_regularizer"] = reg
        if con is not None:
            kw[f"{prefix}_constraint"] = con
    if reg is not None:
        kw["bias_regularizer"] = reg
    if con is not None:
        kw["bias_constraint"] = con
    return kw


@_params()
def test_weight_penalties_are_in_losses_loss_and_gradient(float64, make, in_shape, kernels):
    reg = R.L1L2(l1=0.05, l2=0.1)
    conv = make(**_penalty_args(kernels, reg=reg))
    plain = make()
    m, twin = _model(conv, in_shape), _model(plain, in_shape)
    regularized = [getattr(conv, a) for a in kernels.values()] + [conv.bias]
    assert all(w.regularizer is reg for w in regularized)
    assert len(m.losses) == len(regularized)
    for got, w in zip(m.losses, regularized):
        assert got == pytest.approx(reg.penalty(w.numpy()))
    x, y = _data(in_shape)
    before = [w.numpy().copy() for w in regularized]
    penalty = sum(reg.penalty(w) for w in before)
    loss = m.train_on_batch(x, y)
    assert loss == pytest.approx(twin.train_on_batch(x, y) + penalty, rel=1e-12)
    # SGD on loss + penalty: each regularized weight moves by lr * the penalty's
    # gradient more than the unregularized twin's.
    plain_ws = {w.name: w for w in plain.weights}
    for w, w0 in zip(regularized, before):
        np.testing.assert_allclose(w.numpy(), plain_ws[w.name].numpy() - 0.1 * reg.gradient(w0),
                                   rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(m.get_weights()[-2], twin.get_weights()[-2], rtol=1e-12)


@_params()
def test_constraints_project_after_each_update(float64, make, in_shape, kernels):
    con = fl.constraints.NonNeg()
    conv = make(**_penalty_args(kernels, con=con))
    plain = make()
    m, twin = _model(conv, in_shape), _model(plain, in_shape)
    x, y = _data(in_shape)
    constrained = [getattr(conv, a) for a in kernels.values()] + [conv.bias]
    assert all(w.constraint is con for w in constrained)
    plain_ws = {w.name: w for w in plain.weights}
    m.train_on_batch(x, y)
    twin.train_on_batch(x, y)
    for w in constrained:
        assert (w.numpy() >= 0).all()
        # The update was the unconstrained twin's, then the projection.
        np.testing.assert_allclose(w.numpy(), con(plain_ws[w.name].numpy()), rtol=1e-12)
    # Later steps start from the projected weights: still the twin's update + projection.
    twin.set_weights(m.get_weights())
    m.train_on_batch(x, y)
    twin.train_on_batch(x, y)
    for w in constrained:
        np.testing.assert_allclose(w.numpy(), con(plain_ws[w.name].numpy()), rtol=1e-12)


@_params()
def test_frozen_conv_penalty_is_reported_without_gradient_or_constraint(float64, make,
                                                                         in_shape, kernels):
    reg = R.L2(0.3)
    conv = make(**_penalty_args(kernels, reg=reg, con="non_neg"))
    m = _model(conv, in_shape)
    conv.trainable = False
    m.compile(fl.optimizers.SGD(0.1), "mse")
    plain = make()
    twin = _model(plain, in_shape)
    plain.trainable = False
    twin.compile(fl.optimizers.SGD(0.1), "mse")
    twin.set_weights(m.get_weights())
    before = conv.get_weights()
    assert any((w < 0).any() for w in before)  # the constraint would change them
    x, y = _data(in_shape)
    penalty = sum(reg.penalty(w) for w in before)
    assert m.losses == [pytest.approx(reg.penalty(w)) for w in before]
    assert m.train_on_batch(x, y) == pytest.approx(twin.train_on_batch(x, y) + penalty,
                                                   rel=1e-12)
    for a, b in zip(before, conv.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The head trained as if the conv had no penalty (no gradient reaches it).
    np.testing.assert_allclose(m.get_weights()[-2], twin.get_weights()[-2], rtol=1e-12)
    assert m.evaluate(x, y, verbose=0) == pytest.approx(
        twin.evaluate(x, y, verbose=0) + penalty, rel=1e-12)


@_params()
def test_config_has_keras_names_only_when_set(make, in_shape, kernels):
    plain = make().get_config()
    assert not any(k.endswith(("_regularizer", "_constraint")) for k in plain)
    kw = _penalty_args(kernels, reg=R.L2(0.25), con=fl.constraints.MaxNorm(2.0))
    kw["activity_regularizer"] = R.L1(0.5)
    layer = make(**kw)
    cfg = layer.get_config()
    assert set(k for k in cfg if k.endswith(("_regularizer", "_constraint"))) == set(kw)
    again = type(layer).from_config(cfg)
    for key in kw:
        got, want = getattr(again, key), kw[key]
        assert type(got) is type(want) and got.get_config() == want.get_config()
    assert again._activity is not None and again._activity.regularizer.l1 == 0.5
    assert again.get_config() == cfg


def test_arguments_resolve_like_dense():
    c = L.Conv2D(2, 3, kernel_regularizer="l2", bias_regularizer="l1",
                 activity_regularizer="l1_l2", kernel_constraint="max_norm",
                 bias_constraint="non_neg")
    assert isinstance(c.kernel_regularizer, R.L2) and isinstance(c.bias_regularizer, R.L1)
    assert isinstance(c.activity_regularizer, R.L1L2)
    assert isinstance(c._activity, L.ActivityRegularization)
    assert c._activity.regularizer is c.activity_regularizer
    assert c._activity.name == f"{c.name}_activity" and c._activity.dtype == c.dtype
    assert isinstance(c.kernel_constraint, fl.constraints.MaxNorm)
    assert L.Conv2D(2, 3)._activity is None and L.SeparableConv2D(2, 3)._activity is None
    d = L.DepthwiseConv2D(3, depthwise_regularizer="l2", depthwise_constraint="non_neg")
    assert isinstance(d.depthwise_regularizer, R.L2)
    assert isinstance(d.depthwise_constraint, fl.constraints.NonNeg)
    s = L.SeparableConv2D(2, 3, activity_regularizer="l2")
    assert s._activity is not None and s._depthwise._activity is None \
        and s._pointwise._activity is None
    with pytest.raises(ValueError, match="Unknown regularizer"):
        L.Conv1D(2, 3, kernel_regularizer="l3")
    with pytest.raises(ValueError):
        L.SeparableConv2D(2, 3, pointwise_constraint="nope")
    with pytest.raises(TypeError, match="depthwise_regularizer"):
        L.DepthwiseConv2D(3, kernel_regularizer="l2")
    with pytest.raises(TypeError, match="unexpected keyword"):
        L.SeparableConv2D(2, 3, kernel_regularizer="l2")


def test_dense_config_keeps_its_activity_regularizer():
    d = L.Dense(3, activity_regularizer=R.L2(0.5))
    again = L.Dense.from_config(d.get_config())
    assert isinstance(again.activity_regularizer, R.L2) and again.activity_regularizer.l2 == 0.5
    assert again._activity is not None
    assert "activity_regularizer" not in L.Dense(3).get_config()


@_params()
def test_activity_regularizer_on_a_conv_adds_its_penalty_and_gradient(float64, make,
                                                                      in_shape, kernels):
    reg = R.L2(0.5)
    conv, plain = make(activity_regularizer=reg), make()
    m, twin = _model(conv, in_shape), _model(plain, in_shape)
    x, y = _data(in_shape)
    z = plain(x)  # the conv's output with the same weights
    loss = m.train_on_batch(x, y)
    assert loss == pytest.approx(twin.train_on_batch(x, y) + reg.penalty(z) / len(x),
                                 rel=1e-10)
    # The penalty's gradient moved the conv's weights away from the twin's.
    assert not np.allclose(conv.get_weights()[0], plain.get_weights()[0])
