"""Seed 002: dropout keeps dropping in a frozen model (``trainable`` is not ``training``)."""
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import backend as K
from fastlayers import layers, models


class Probe(layers.Layer):
    """Identity recording (training, fraction of zeros) at every run."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        self.seen.append((training, float(np.mean(x == 0))))
        return x, lambda dy: dy


def seed_model():
    inp = layers.Input(shape=(10,))
    out = layers.Dropout(0.5)(inp)
    model = models.Model(inp, out)
    model.layers[-1].trainable = False
    with pytest.warns(UserWarning, match="no trainable weights"):
        model.compile(optimizer="adam", loss="mse")
    return model


def test_reproducible_example_function_with_learning_phase():
    model = seed_model()
    func = K.function(model.inputs + [K.learning_phase()], model.outputs)
    x = np.ones((1, 10))
    train = func([x, 1])
    assert isinstance(train, list) and len(train) == 1
    assert train[0].dtype == np.float32 and train[0].shape == (1, 10)
    assert set(np.unique(train[0])) <= {0.0, 2.0}
    test = func([x, 0])
    np.testing.assert_array_equal(test[0], np.ones((1, 10), "float32"))
    # Over many training-phase calls about half the units drop, with fresh masks.
    outs = np.concatenate([func([x, 1])[0] for _ in range(50)])
    assert 0.4 < (outs == 0).mean() < 0.6
    assert len({o.tobytes() for o in outs}) > 40


def test_reproducible_example_is_the_seed_output(load_example):
    ex = load_example("seed002_dropout_frozen")
    train, test = ex.reproducible_example()
    assert (train == 0).any() and set(np.unique(train)) <= {0.0, 2.0}
    np.testing.assert_array_equal(test, np.ones((1, 10)))


def test_seed_model_predict_after_compile_is_identity():
    model = seed_model()
    x = np.ones((3, 10), "float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    assert model.evaluate(x, x, verbose=0) == 0.0


def two_frozen_models_and_ab(probe_a):
    rng = np.random.default_rng(0)
    x = rng.random((64, 10)).astype("float32")

    def sub(name, probe):
        inp = layers.Input(shape=(10,))
        h = layers.Dense(16, name=f"{name}_dense")(inp)  # linear: zeros come from dropout only
        h = layers.Dropout(0.5, name=f"{name}_dropout")(h)
        if probe is not None:
            h = probe(h)
        m = models.Model(inp, layers.Dense(4, name=f"{name}_out")(h), name=name)
        m.compile("adam", "mse")
        m.fit(x, rng.random((64, 4)), epochs=1, verbose=0)
        return m

    model_A = sub("model_A", probe_a)
    model_B = sub("model_B", None)
    model_A.trainable = False
    model_B.trainable = False
    inp = layers.Input(shape=(10,))
    new_dense = layers.Dense(1, name="new_dense")
    model_AB = models.Model(inp, new_dense(layers.Concatenate()([model_A(inp), model_B(inp)])))
    model_AB.compile(optimizer="sgd", loss="mse")
    return x, model_A, model_B, new_dense, model_AB


def test_dropout_drops_while_training_the_merged_model():
    probe = Probe()
    x, model_A, model_B, new_dense, model_AB = two_frozen_models_and_ab(probe)
    probe.seen.clear()
    model_AB.fit(x, np.zeros((64, 1)), batch_size=64, epochs=3, verbose=0)
    assert [t for t, _ in probe.seen] == [True, True, True]
    assert all(0.35 < frac < 0.65 for _, frac in probe.seen)
    probe.seen.clear()
    model_AB.predict(x, batch_size=64, verbose=0)
    model_AB.evaluate(x, np.zeros((64, 1)), batch_size=64, verbose=0)
    assert probe.seen == [(False, 0.0), (False, 0.0)]


def test_only_the_new_dense_trains_in_the_merged_model():
    x, model_A, model_B, new_dense, model_AB = two_frozen_models_and_ab(None)
    assert [l.trainable for l in model_A.layers + model_B.layers] == [True] * 8
    assert model_AB.trainable_weights == new_dense.trainable_weights
    frozen = model_A.get_weights() + model_B.get_weights()
    d0 = new_dense.get_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_AB.fit(x, np.zeros((64, 1)), epochs=2, verbose=0)
    after = model_A.get_weights() + model_B.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(frozen, after))
    assert all(not np.array_equal(a, b) for a, b in zip(d0, new_dense.get_weights()))


def test_training_loss_sees_dropout_even_with_nothing_updated():
    """train_on_batch's loss is computed in training mode: with SGD(0) nothing moves,
    yet the loss differs from the inference loss and from call to call."""
    x, model_A, model_B, new_dense, model_AB = two_frozen_models_and_ab(None)
    model_AB.compile(fl.optimizers.SGD(0.0), "mse")
    y = np.zeros((64, 1))
    test = model_AB.test_on_batch(x, y)
    train = [model_AB.train_on_batch(x, y) for _ in range(3)]
    assert all(abs(t - test) > 1e-6 for t in train) and len(set(train)) == 3
    assert model_AB.test_on_batch(x, y) == test


def test_example_merged_model(load_example):
    ex = load_example("seed002_dropout_frozen")
    r = ex.merged_model_ab()
    assert r["changed"] == ["new_dense/bias", "new_dense/kernel"]
    assert len(r["unchanged"]) == 8
    assert r["dropout_active"] is True
    assert not np.allclose(r["a_train"], r["a_test"])
    assert not np.allclose(r["a_train"], r["a_train2"])
