"""Keras 2 programs, ported with only the import changed, for what issue 8 lists:
multi-output return values and metrics_names, outputs without a loss, loss_weights
and weighted_metrics forms, compile's argument errors, ``[x]`` for a single input,
the merge layers and their functional helpers, Lambda, the learning phase inside
fit, BatchNormalization's moving variance and inference runs that change nothing."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers import backend as K
from fastlayers.layers import (Add, BatchNormalization, Dense, Dropout, Input, Lambda, Layer,
                               add, average, concatenate, dot, maximum, minimum, multiply,
                               subtract)
from fastlayers.models import Model


def two_outputs():
    x = Input((4,), name="x")
    h = Dense(6, activation="relu", name="h")(x)
    return Model(x, [Dense(1, name="out1")(h), Dense(3, activation="softmax", name="out2")(h)])


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 4)).astype("float32"), rng.normal(size=(n, 1)).astype("float32"),
            rng.integers(0, 3, n))


# --------------------------------------------------------------------------- return values
def test_acgan_style_unpacking_of_multi_output_results():
    m = two_outputs()
    m.compile("adam", ["mse", "sparse_categorical_crossentropy"], metrics=["accuracy"])
    x, y1, y2 = data()
    assert m.metrics_names == ["loss", "out1_loss", "out2_loss", "out1_accuracy",
                               "out2_accuracy"]
    res = m.train_on_batch(x, [y1, y2])
    assert isinstance(res, list) and len(res) == 5
    loss, l1, l2, _, _ = m.test_on_batch(x, [y1, y2])
    assert loss == pytest.approx(l1 + l2, rel=1e-5)
    ev = m.evaluate(x, [y1, y2], verbose=0)
    assert len(ev) == 5 and ev[0] == pytest.approx(ev[1] + ev[2], rel=1e-5)
    h = m.fit(x, [y1, y2], epochs=1, verbose=0)
    assert set(h.history) == set(m.metrics_names)


def test_single_output_without_metrics_returns_a_float():
    x = Input((4,))
    m = Model(x, Dense(1)(x))
    m.compile("sgd", "mse")
    xs, y, _ = data()
    assert isinstance(m.train_on_batch(xs, y), float)
    assert isinstance(m.evaluate(xs, y, verbose=0), float)
    assert m.metrics_names == ["loss"]


def test_loss_weights_list_and_dict_agree():
    x, y1, y2 = data()
    results = []
    for lw in ([0.3, 2.0], {"out1": 0.3, "out2": 2.0}):
        fl.utils.set_random_seed(7)
        m = two_outputs()
        m.compile("sgd", ["mse", "sparse_categorical_crossentropy"], loss_weights=lw)
        loss, l1, l2 = m.test_on_batch(x, [y1, y2])
        assert loss == pytest.approx(0.3 * l1 + 2.0 * l2, rel=1e-5)
        results.append(loss)
    assert results[0] == pytest.approx(results[1])


def test_output_left_out_of_the_loss_dict_is_not_trained():
    m = two_outputs()
    m.compile("sgd", {"out1": "mse"}, metrics=["mae"])
    assert m.metrics_names == ["loss", "out1_loss", "out1_mae"]
    x, y1, _ = data()
    w2 = [w.numpy() for w in m.get_layer("out2").weights]
    res = m.train_on_batch(x, {"out1": y1})
    assert len(res) == 3
    m.fit(x, {"out1": y1}, epochs=2, verbose=0)
    for w, v in zip(m.get_layer("out2").weights, w2):
        np.testing.assert_array_equal(w.value, v)


def test_none_in_a_loss_list_leaves_the_output_out():
    m = two_outputs()
    m.compile("sgd", [None, "sparse_categorical_crossentropy"])
    assert m.metrics_names == ["loss", "out2_loss"]
    x, _, y2 = data()
    w1 = m.get_layer("out1").kernel.numpy()
    m.train_on_batch(x, [None, y2])
    m.fit(x, [None, y2], epochs=1, verbose=0)
    m.evaluate(x, {"out2": y2}, verbose=0)
    np.testing.assert_array_equal(m.get_layer("out1").kernel.value, w1)
    with pytest.raises(ValueError, match="has a loss but no targets"):
        m.fit(x, [y2, None], epochs=1, verbose=0)


def test_unknown_compile_argument_is_a_type_error():
    m = two_outputs()
    with pytest.raises(TypeError, match="sample_weight_mod"):
        m.compile("sgd", "mse", sample_weight_mod="temporal")


def test_weighted_metrics_are_accepted_and_reported():
    x = Input((4,))
    m = Model(x, Dense(1)(x))
    m.compile("sgd", "mse", weighted_metrics=["mae"])
    xs, y, _ = data()
    assert len(m.metrics_names) == 2
    assert len(m.evaluate(xs, y, verbose=0)) == 2


def test_weighted_metrics_use_the_sample_weights():
    x = Input((3,))
    m = Model(x, Dense(1, kernel_initializer="ones", use_bias=False)(x))
    m.compile("sgd", "mse", metrics=["mae"], weighted_metrics=["mae"])
    # Keras 2.2.4 names weighted metrics with the prefix weighted_.
    assert m.metrics_names == ["loss", "mae", "weighted_mae"]
    xs = np.ones((4, 3), "float32")
    y = np.arange(4, dtype="float32").reshape(4, 1)
    got = m.evaluate(xs, y, sample_weight=np.array([1.0, 0, 0, 0]), verbose=0, return_dict=True)
    assert got["mae"] == pytest.approx(1.5)           # |3-0|,|3-1|,|3-2|,|3-3| unweighted
    assert got["weighted_mae"] == pytest.approx(3.0)  # only the first sample counts


# --------------------------------------------------------------------------- inputs
def test_single_input_and_output_given_in_lists_everywhere():
    x = Input((4,))
    m = Model(x, Dense(1)(x))
    m.compile("sgd", "mse")
    xs, y, _ = data()
    m.fit([xs], [y], epochs=1, verbose=0)
    assert np.shape(m.predict([xs], verbose=0)) == (16, 1)
    assert isinstance(m.evaluate([xs], [y], verbose=0), float)
    m.train_on_batch([xs], [y])
    m.test_on_batch([xs], [y])
    np.testing.assert_allclose(m.predict_on_batch([xs]), m.predict(xs, verbose=0), rtol=1e-6)


# --------------------------------------------------------------------------- merges, Lambda
def test_functional_merge_helpers_compute_what_keras_does():
    a, b = Input((3,)), Input((3,))
    outs = [add([a, b]), subtract([a, b]), multiply([a, b]), average([a, b]),
            maximum([a, b]), minimum([a, b]), concatenate([a, b]), dot([a, b], axes=1),
            dot([a, b], axes=1, normalize=True)]
    m = Model([a, b], outs)
    rng = np.random.default_rng(3)
    xa, xb = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 3)).astype("float32")
    got = m.predict([xa, xb], verbose=0)
    cos = np.sum(xa * xb, 1, keepdims=True) / (np.linalg.norm(xa, axis=1, keepdims=True)
                                                * np.linalg.norm(xb, axis=1, keepdims=True))
    want = [xa + xb, xa - xb, xa * xb, (xa + xb) / 2, np.maximum(xa, xb), np.minimum(xa, xb),
            np.concatenate([xa, xb], 1), np.sum(xa * xb, 1, keepdims=True), cos]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_siamese_model_trains_through_subtract_and_dot():
    a, b = Input((3,)), Input((3,))
    shared = Dense(4, name="enc")
    ea, eb = shared(a), shared(b)
    m = Model([a, b], Dense(1)(concatenate([subtract([ea, eb]), dot([ea, eb], axes=1)])))
    m.compile("sgd", "mse")
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    k = shared.kernel.numpy()
    first = m.train_on_batch([xa, xb], np.ones((8, 1)))
    for _ in range(20):
        last = m.train_on_batch([xa, xb], np.ones((8, 1)))
    assert last < first and not np.array_equal(shared.kernel.value, k)


def test_lambda_in_inference_and_trained_with_backprop():
    x = Input((4,))
    sq = Lambda(lambda t: t ** 2, output_shape=(4,))
    m = Model(x, sq(x))
    xs, _, _ = data()
    np.testing.assert_allclose(m.predict(xs, verbose=0), xs ** 2, rtol=1e-6)
    # Below a trained layer a Lambda needs its gradient.
    x2 = Input((4,))
    m2 = Model(x2, Dense(1)(Lambda(lambda t: t ** 2)(Dense(4)(x2))))
    with pytest.raises(ValueError, match="backprop"):
        m2.compile("sgd", "mse")
    x3 = Input((4,))
    m3 = Model(x3, Dense(1)(Lambda(lambda t: t ** 2, backprop=lambda t, y, g: 2 * t * g)(
        Dense(4, name="below")(x3))))
    m3.compile("sgd", "mse")
    k = m3.get_layer("below").kernel.numpy()
    m3.train_on_batch(xs, np.zeros((16, 1)))
    assert not np.array_equal(m3.get_layer("below").kernel.value, k)


def test_lambda_with_arguments():
    x = Input((3,))
    m = Model(x, Lambda(lambda t, k: t * k, arguments={"k": 3.0})(x))
    np.testing.assert_allclose(m.predict(np.ones((2, 3), "float32"), verbose=0), 3.0)


# --------------------------------------------------------------------------- learning phase
class PhaseProbe(Layer):
    """Records learning_phase() and runs an inner Dropout, as a Keras 2 custom layer does."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.phases = []
        self.inner = Dropout(0.5, seed=1)
        self.dropped = []

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, inputs, training=False):
        self.phases.append(int(K.learning_phase()))
        y = self.inner(inputs)  # no training= given: the phase decides
        self.dropped.append(bool(np.any(y == 0)))
        return inputs, lambda g: g


def test_learning_phase_is_one_inside_fit_and_inner_layers_train():
    x = Input((50,))
    probe = PhaseProbe()
    m = Model(x, Dense(1)(probe(x)))
    m.compile("sgd", "mse")
    xs = np.ones((8, 50), "float32")
    m.fit(xs, np.zeros((8, 1)), epochs=1, batch_size=8, verbose=0)
    assert probe.phases == [1] and probe.dropped == [True]
    m.predict(xs, verbose=0)
    assert probe.phases[-1] == 0 and probe.dropped[-1] is False
    m.evaluate(xs, np.zeros((8, 1)), verbose=0)
    assert probe.phases[-1] == 0


def test_learning_phase_scope():
    assert int(K.learning_phase()) == 0
    with K.learning_phase_scope(1):
        assert int(K.learning_phase()) == 1
        d = Dropout(0.5, seed=0)
        assert np.any(d(np.ones((4, 40), "float32")) == 0)
    assert int(K.learning_phase()) == 0
    with pytest.raises(ValueError):
        K.learning_phase_scope(2)


# --------------------------------------------------------------------------- batch norm
def test_moving_variance_uses_the_unbiased_batch_variance():
    x = Input((3,))
    bn = BatchNormalization(momentum=0.9)
    m = Model(x, bn(x))
    m.compile("sgd", "mse")
    xs = np.random.default_rng(0).normal(size=(10, 3)).astype("float32") * 2 + 1
    m.train_on_batch(xs, np.zeros((10, 3)))
    np.testing.assert_allclose(bn.moving_mean.value, 0.1 * xs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.value, 0.9 + 0.1 * xs.var(0, ddof=1),
                               rtol=1e-5)


def test_inference_runs_never_change_batch_norm_statistics():
    x = Input((3,))
    bn = BatchNormalization()
    out = bn(x, training=True)  # pinned: batch statistics even in predict
    m = Model(x, Dense(1)(out))
    m.compile("sgd", "mse")
    xs = np.random.default_rng(0).normal(size=(10, 3)).astype("float32") + 5
    before = [w.numpy() for w in m.weights]
    p = m.predict(xs, verbose=0)
    m.evaluate(xs, np.zeros((10, 1)), verbose=0)
    m.test_on_batch(xs, np.zeros((10, 1)))
    for w, v in zip(m.weights, before):
        np.testing.assert_array_equal(w.value, v)
    # ...and predict did normalize with the batch statistics (mean ~0 after bn).
    normed = fl.backend.function([x], [out])([xs])[0]
    np.testing.assert_allclose(normed.mean(0), 0, atol=1e-4)
    assert p.shape == (10, 1)


def test_model_with_partial_loss_as_keras_2_test_training():
    """Keras 2.2.4 tests/keras/engine/test_training.py::test_model_with_partial_loss."""
    a = Input(shape=(3,), name="input_a")
    a_2 = Dense(4, name="dense_1")(a)
    dp = Dropout(0.5, name="dropout")
    a_3 = dp(a_2)
    model = Model(a, [a_2, a_3])
    model.compile("sgd", {"dropout": "mse"}, metrics=["mae"])  # Keras: "rmsprop"
    input_a_np = np.random.random((10, 3))
    output_a_np = np.random.random((10, 4))
    # Targets for the outputs that have a loss only (Keras's feed outputs).
    out = model.train_on_batch(input_a_np, output_a_np)
    assert len(out) == 3 and model.metrics_names == ["loss", "dropout_loss", "dropout_mae"]
    model.test_on_batch(input_a_np, output_a_np)
    model.fit(input_a_np, [output_a_np], verbose=0)
    model.fit(input_a_np, output_a_np, validation_data=(input_a_np, [output_a_np]), verbose=0)
    model.evaluate(input_a_np, [output_a_np], verbose=0)
    # Same model with only one loss and only one target.
    x = Input(shape=(3,), name="input_a")
    y = Dense(4, name="dense_1")(x)
    y2 = Dropout(0.5, name="dropout")(y)
    model = Model(x, [y, y2])
    model.compile("sgd", [None, "mse"])
    assert isinstance(model.train_on_batch(input_a_np, [output_a_np]), list)
    model.fit(input_a_np, [output_a_np], verbose=0)
