"""A NumPy reference for Keras's sample-weighted losses, for the engine to match.

Keras ("sum_over_batch_size"): per-sample losses ``l_i`` (mean over the last axis
for MSE/MAE), then ``sum(w_i * l_i) / n`` over the ``n`` samples of the batch --
the weights are *not* renormalised.  An epoch's logged loss is the mean of those
batch values weighted by batch size.  The engine tests at the end run once
``fit``/``test_on_batch`` take ``sample_weight``.
"""
import inspect

import numpy as np
import pytest

import fastlayers as fl

EPS = 1e-7


def per_sample_loss(loss_name, y_true, y_pred, from_logits=False):
    """Each sample's loss, shape ``(n,)`` (Keras's formulas, float64)."""
    y_pred = np.asarray(y_pred, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.float64)
    n = len(y_pred)
    if loss_name in ("mse", "mean_squared_error"):
        return ((y_pred - y_true.reshape(y_pred.shape)) ** 2).reshape(n, -1).mean(axis=1)
    if loss_name in ("mae", "mean_absolute_error"):
        return np.abs(y_pred - y_true.reshape(y_pred.shape)).reshape(n, -1).mean(axis=1)
    if loss_name == "binary_crossentropy":
        y_true = y_true.reshape(y_pred.shape)
        if from_logits:
            z = y_pred
            per = np.maximum(z, 0) - z * y_true + np.log1p(np.exp(-np.abs(z)))
        else:
            p = np.clip(y_pred, EPS, 1 - EPS)
            per = -(y_true * np.log(p) + (1 - y_true) * np.log(1 - p))
        return per.reshape(n, -1).mean(axis=1)
    if from_logits:
        z = y_pred - y_pred.max(axis=-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    else:
        p = y_pred / y_pred.sum(axis=-1, keepdims=True)
        logp = np.log(np.clip(p, EPS, 1 - EPS))
    if loss_name == "categorical_crossentropy":
        return -(y_true * logp).sum(axis=-1)
    if loss_name == "sparse_categorical_crossentropy":
        labels = y_true.reshape(n).astype(np.int64)
        return -logp[np.arange(n), labels]
    raise ValueError(f"no reference for {loss_name!r}")


def weighted_loss_reference(loss_name, y_true, y_pred, sample_weight=None, from_logits=False):
    """Keras's batch loss with sample weights: ``sum(w_i * l_i) / n``."""
    per = per_sample_loss(loss_name, y_true, y_pred, from_logits)
    if sample_weight is None:
        return float(per.mean())
    w = np.asarray(sample_weight, dtype=np.float64).reshape(len(per))
    return float((w * per).sum() / len(per))


def _case(name, rng, n=6, k=3):
    if name in ("mse", "mae"):
        return rng.normal(size=(n, k)), rng.normal(size=(n, k))
    if name == "binary_crossentropy":
        return rng.integers(0, 2, (n, 1)).astype(float), rng.uniform(0.05, 0.95, (n, 1))
    p = rng.uniform(0.1, 1, (n, k))
    p /= p.sum(axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    if name == "sparse_categorical_crossentropy":
        return labels, p
    return fl.utils.to_categorical(labels, k), p


NAMES = ["mse", "mae", "binary_crossentropy", "categorical_crossentropy",
         "sparse_categorical_crossentropy"]


@pytest.mark.parametrize("name", NAMES)
def test_unit_weights_equal_the_library_loss(name, float64):
    y, p = _case(name, np.random.default_rng(0))
    ours = fl.losses.get(name)(y, p)
    assert weighted_loss_reference(name, y, p) == pytest.approx(ours, rel=1e-12)
    assert weighted_loss_reference(name, y, p, np.ones(len(p))) == pytest.approx(ours, rel=1e-12)


def test_weights_are_not_renormalised():
    y, p = np.zeros((4, 1)), np.array([[1.0], [2.0], [3.0], [4.0]])
    # per-sample 1, 4, 9, 16; weights 2, 0, 0, 0 -> 2 / 4, not 2 / 2
    assert weighted_loss_reference("mse", y, p, [2, 0, 0, 0]) == 0.5
    assert weighted_loss_reference("mse", y, p, [1, 1, 1, 1]) == 7.5


def test_class_weight_is_the_same_as_the_sample_weights_it_makes():
    from fastlayers.engine.data import class_weight_to_sample_weights

    y, p = _case("sparse_categorical_crossentropy", np.random.default_rng(1))
    w = class_weight_to_sample_weights(y, {0: 2.0, 2: 0.5})
    manual = np.where(y == 0, 2.0, np.where(y == 2, 0.5, 1.0))
    assert weighted_loss_reference("sparse_categorical_crossentropy", y, p, w) == \
        pytest.approx(weighted_loss_reference("sparse_categorical_crossentropy", y, p, manual))


def test_logits_forms_agree_with_probabilities():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 4))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 5)
    w = rng.uniform(0, 2, 5)
    a = weighted_loss_reference("sparse_categorical_crossentropy", labels, z, w, from_logits=True)
    b = weighted_loss_reference("sparse_categorical_crossentropy", labels, p, w)
    assert a == pytest.approx(b, rel=1e-9)


_ENGINE_WEIGHTS = "sample_weight" in inspect.signature(fl.Model.test_on_batch).parameters


@pytest.mark.skipif(not _ENGINE_WEIGHTS, reason="engine: test_on_batch(sample_weight=) not there yet")
@pytest.mark.parametrize("name", NAMES)
def test_engine_test_on_batch_matches_reference(name, float64):
    rng = np.random.default_rng(3)
    k = 1 if name == "binary_crossentropy" else 3
    act = "sigmoid" if k == 1 else ("softmax" if "crossentropy" in name else None)
    model = fl.Sequential([fl.layers.Dense(k, activation=act, input_shape=(4,))])
    model.compile("sgd", name)
    x = rng.normal(size=(6, 4))
    y, _ = _case(name, rng, n=6, k=k)
    w = rng.uniform(0, 3, 6)
    got = model.test_on_batch(x, y, sample_weight=w)
    want = weighted_loss_reference(name, y, model.predict(x, verbose=0), w)
    assert got == pytest.approx(want, rel=1e-10)


@pytest.mark.skipif("sample_weight" not in inspect.signature(fl.Model.fit).parameters,
                    reason="engine: fit(sample_weight=) not there yet")
def test_engine_fit_weighted_equals_generator_and_class_weight(float64):
    """Arrays with sample_weight, a generator of (x, y, w) and class_weight: same training."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(24, 4))
    y = rng.integers(0, 3, 24)
    cw = {0: 2.0, 1: 0.5}
    from fastlayers.engine.data import class_weight_to_sample_weights

    w = class_weight_to_sample_weights(y, cw).astype(np.float64)

    def train(kind):
        fl.utils.set_random_seed(0)
        model = fl.Sequential([fl.layers.Dense(3, activation="softmax", input_shape=(4,))])
        model.compile(fl.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        if kind == "arrays":
            model.fit(x, y, sample_weight=w, batch_size=8, epochs=2, shuffle=False, verbose=0)
        elif kind == "class_weight":
            model.fit(x, y, class_weight=cw, batch_size=8, epochs=2, shuffle=False, verbose=0)
        else:
            def batches():
                while True:
                    for lo in range(0, 24, 8):
                        yield x[lo:lo + 8], y[lo:lo + 8], w[lo:lo + 8]
            model.fit(batches(), steps_per_epoch=3, epochs=2, verbose=0)
        return model.get_weights()

    ref = train("arrays")
    for kind in ("class_weight", "generator"):
        for a, b in zip(ref, train(kind)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
