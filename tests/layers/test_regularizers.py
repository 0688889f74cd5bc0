"""Regularizers and constraints: Keras's formulas, and the rule for frozen weights.

A frozen weight's penalty is reported in the loss as Keras reports it, contributes no
gradient, and its constraint is never applied (it does not move).
"""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Dense


def test_penalties_and_gradients_match_the_formulas(float64):
    w = np.random.default_rng(0).standard_normal((4, 3))
    for reg, pen, grad in [
            ("l2", 0.01 * np.sum(w ** 2), 0.02 * w),
            ("l1", 0.01 * np.sum(np.abs(w)), 0.01 * np.sign(w)),
            (fl.regularizers.L1L2(l1=0.1, l2=0.2), 0.1 * np.abs(w).sum() + 0.2 * (w ** 2).sum(),
             0.1 * np.sign(w) + 0.4 * w)]:
        r = fl.regularizers.get(reg)
        assert r.penalty(w) == pytest.approx(pen)
        np.testing.assert_allclose(r.gradient(w), grad)
    with pytest.raises(ValueError, match="Unknown regularizer"):
        fl.regularizers.get("l3")
    with pytest.raises(ValueError, match=">= 0"):
        fl.regularizers.L2(-1)


def test_l2_step_equals_sgd_on_the_penalized_loss(float64):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    m = fl.Sequential([Dense(2, input_shape=(4,), kernel_regularizer=fl.regularizers.L2(0.1),
                             use_bias=False)])
    m.compile(fl.optimizers.SGD(0.1), "mse")
    W = m.layers[0].kernel.numpy()
    loss = m.train_on_batch(x, y)
    p = x @ W
    want_loss = np.mean((p - y) ** 2) + 0.1 * np.sum(W ** 2)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    g = x.T @ (2 * (p - y) / p.size) + 0.2 * W
    np.testing.assert_allclose(m.layers[0].kernel.numpy(), W - 0.1 * g, rtol=1e-10)
    assert m.losses == [pytest.approx(0.1 * np.sum(m.layers[0].kernel.numpy() ** 2))]
    assert m.evaluate(x, y, verbose=0) == pytest.approx(
        np.mean((x @ m.layers[0].kernel.numpy() - y) ** 2) + m.losses[0], rel=1e-10)


def test_frozen_weight_penalty_is_reported_but_it_does_not_move(float64):
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 1))
    frozen = Dense(3, kernel_regularizer="l2", kernel_constraint="non_neg", name="frozen")
    m = fl.Sequential([fl.Input((4,)), frozen, Dense(1)])
    frozen.trainable = False
    m.compile(fl.optimizers.SGD(0.1), "mse")
    before = frozen.get_weights()
    loss = m.train_on_batch(x, y)
    assert loss > m.test_on_batch(x, y) - 1  # includes the penalty (positive)
    for a, b in zip(before, frozen.get_weights()):
        np.testing.assert_array_equal(a, b)  # no gradient, no constraint
    assert (before[0] < 0).any()             # the constraint would have changed it


def test_constraints_apply_after_each_update(float64):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 3))
    m = fl.Sequential([Dense(3, input_shape=(4,), kernel_constraint=fl.constraints.MaxNorm(0.5),
                             bias_constraint="non_neg")])
    m.compile(fl.optimizers.SGD(0.5), "mse")
    for _ in range(3):
        m.train_on_batch(x, y)
        k, b = m.layers[0].get_weights()
        assert np.all(np.sqrt((k ** 2).sum(axis=0)) <= 0.5 + 1e-9) and np.all(b >= 0)
    u = fl.constraints.UnitNorm()(np.array([[3.0], [4.0]]))
    np.testing.assert_allclose(u, [[0.6], [0.8]], rtol=1e-6)


def test_config_round_trip_keeps_regularizers_and_constraints():
    d = Dense(3, kernel_regularizer=fl.regularizers.L1L2(0.1, 0.2), bias_constraint="max_norm")
    cfg = d.get_config()
    again = Dense.from_config(cfg)
    assert isinstance(again.kernel_regularizer, fl.regularizers.L1L2)
    assert again.kernel_regularizer.l2 == 0.2 and isinstance(again.bias_constraint,
                                                             fl.constraints.MaxNorm)


def test_activity_regularizer_adds_the_mean_penalty_and_its_gradient(float64):
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 4)), rng.standard_normal((8, 2))
    d = Dense(2, input_shape=(4,), use_bias=False, activity_regularizer=fl.regularizers.L2(0.5))
    m = fl.Sequential([d])
    m.compile(fl.optimizers.SGD(0.1), "mse")
    W = d.kernel.numpy()
    loss = m.train_on_batch(x, y)
    p = x @ W
    assert loss == pytest.approx(np.mean((p - y) ** 2) + 0.5 * np.sum(p ** 2) / 8, rel=1e-10)
    g = x.T @ (2 * (p - y) / p.size + 2 * 0.5 * p / 8)
    np.testing.assert_allclose(d.kernel.numpy(), W - 0.1 * g, rtol=1e-10)
    # The layer's backprop is the identity plus the penalty's gradient (mean over the batch).
    a = fl.layers.ActivityRegularization(l1=0.1, l2=0.2)
    z = rng.standard_normal((3, 4))
    out, bp = a.forward(z, training=True)
    np.testing.assert_array_equal(out, z)
    assert a._penalty == pytest.approx((0.1 * np.abs(z).sum() + 0.2 * (z ** 2).sum()) / 3)
    np.testing.assert_allclose(bp(np.ones_like(z)), 1 + (0.1 * np.sign(z) + 0.4 * z) / 3)
