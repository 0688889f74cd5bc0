"""Seed 004: ``training`` (call argument) and ``trainable`` (attribute) are independent;
BatchNormalization is the one exception."""
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers import backend as K
from fastlayers.layers import BatchNormalization, Dense, Dropout, Flatten
from fastlayers.models import Input, Model, Sequential


# --------------------------------------------------------------------------- training=True
@pytest.mark.parametrize("head", [False, True])
def test_dropout_training_true_applies_at_inference_too(head):
    inp = Input(shape=(40,))
    y = Dropout(0.5)(inp, training=True)
    out = Dense(40, kernel_initializer="ones", use_bias=False)(y) if head else y
    model = Model(inp, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.compile("sgd", "mse")
    x = np.ones((8, 40), "float32")
    drop_part = Model(inp, y)  # the dropout's own output, through the same pinned node
    for run in (lambda: drop_part.predict(x, verbose=0), lambda: drop_part(x, training=False),
                lambda: drop_part.predict_on_batch(x),
                lambda: K.function([inp, K.learning_phase()], [y])([x, 0])[0]):
        out_ = run()
        assert 0.3 < (out_ == 0).mean() < 0.7 and set(np.unique(out_)) <= {0.0, 2.0}
    # evaluate/test_on_batch of the whole model also see dropped inputs.
    target = model.predict(x, verbose=0)
    assert not np.allclose(target, model.predict(x, verbose=0))
    loss = model.evaluate(x, x @ np.ones((40, 40), "float32") if head else x, verbose=0)
    assert loss > 0.1
    assert model.test_on_batch(x, x @ np.ones((40, 40), "float32") if head else x) > 0.1


# --------------------------------------------------------------------------- trainable=False
def ResNet50Base(input_shape=(32, 32, 3), weights=None):
    return Sequential([Flatten(input_shape=input_shape), Dense(16, activation="relu"),
                       Dense(8, activation="relu")], name="resnet50_base")


def test_seed_sequential_with_nested_base_is_built_at_once():
    model = Sequential([ResNet50Base(input_shape=(32, 32, 3), weights="pretrained"), Dense(10)])
    model.layers[0].trainable = False
    assert model.layers[0].trainable_weights == []
    assert len(model.trainable_weights) == 2


def test_frozen_base_in_sequential_trains_only_the_dense():
    model = Sequential([ResNet50Base(input_shape=(32, 32, 3), weights="pretrained"), Dense(10)])
    model.layers[0].trainable = False
    assert model.layers[0].trainable_weights == []
    assert len(model.trainable_weights) == 2
    assert all(l.trainable for l in model.layers[0].layers)
    model.compile("adam", "mse")
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 32, 32, 3)), rng.random((16, 10))
    base0, dense0 = model.layers[0].get_weights(), model.layers[1].get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(base0, model.layers[0].get_weights()))
    assert all(not np.array_equal(a, b) for a, b in zip(dense0, model.layers[1].get_weights()))


def test_example_frozen_base(load_example):
    ex = load_example("seed004_training_vs_trainable")
    assert ex.frozen_base() == (False, True)


# --------------------------------------------------------------------------- AutoScaleDropout
def test_example_autoscale_dropout_learns_its_scale(load_example):
    ex = load_example("seed004_training_vs_trainable")
    n, s0, s1, pred, direct = ex.autoscale(frozen=False)
    assert n == 1 and s0 == 1.0 and abs(s1 - 1.5) < 0.1
    assert (pred == 0).any() and (direct == 0).any()


def test_example_frozen_autoscale_dropout_keeps_scale_and_still_drops(load_example):
    ex = load_example("seed004_training_vs_trainable")
    n, s0, s1, pred, direct = ex.autoscale(frozen=True)
    assert n == 0 and s0 == s1 == 1.0
    assert 0.2 < (pred == 0).mean() < 0.8 and set(np.unique(pred)) <= {0.0, 2.0}
    assert 0.2 < (direct == 0).mean() < 0.8


def test_seed_autoscale_snippet(load_example):
    AutoScaleDropout = load_example("autoscale_dropout").AutoScaleDropout
    x = np.ones((4, 30), "float32")
    layer = AutoScaleDropout(0.5)
    y = layer(x, training=True)
    assert len(layer.trainable_weights) == 1
    assert (y == 0).any() and set(np.unique(y)) <= {0.0, 2.0}
    layer = AutoScaleDropout(0.5)
    layer.trainable = False
    y = layer(x, training=True)
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 1
    assert (y == 0).any() and set(np.unique(y)) <= {0.0, 2.0}
    np.testing.assert_array_equal(layer(x, training=False), x)


# --------------------------------------------------------------------------- BatchNormalization
class Probe(fl.layers.Layer):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen = []

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        self.seen.append(np.array(x))
        return x, lambda dy: dy


@pytest.mark.parametrize("freeze", ["bn", "container"])
def test_frozen_bn_runs_in_inference_mode_under_fit(freeze):
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, (32, 3)).astype("float32")
    bn, probe = BatchNormalization(), Probe()
    inner_in = Input(shape=(3,))
    body = Model(inner_in, bn(inner_in), name="body")
    inp = Input(shape=(3,))
    model = Model(inp, Dense(1)(probe(body(inp))))
    bn.moving_mean.assign([4.0, 5.0, 6.0])
    bn.moving_variance.assign([2.0, 3.0, 4.0])
    if freeze == "bn":
        bn.trainable = False
    else:
        body.trainable = False
    model.compile("sgd", "mse")
    state = bn.get_weights()
    model.fit(x, np.zeros((32, 1)), batch_size=32, epochs=2, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(state, bn.get_weights()))
    expect = (x - [4.0, 5.0, 6.0]) / np.sqrt(np.array([2.0, 3.0, 4.0]) + 1e-3)
    assert len(probe.seen) == 2
    for seen in probe.seen:
        np.testing.assert_allclose(seen, expect, rtol=1e-5, atol=1e-5)


def test_trainable_bn_uses_batch_statistics_under_fit(load_example):
    ex = load_example("seed004_training_vs_trainable")
    changed, same = ex.frozen_batchnorm(freeze=False)
    assert changed == {"gamma": True, "beta": True, "moving_mean": True, "moving_variance": True}
    assert same is False
    changed, same = ex.frozen_batchnorm(freeze=True)
    assert not any(changed.values()) and same is True


def test_dropout_is_not_bn_frozen_dropout_still_drops_under_fit():
    """The BN exception does not extend to other layers: a frozen Dropout in a frozen
    container still drops under fit."""
    probe = Probe()
    inner_in = Input(shape=(50,))
    drop = Dropout(0.5)
    body = Model(inner_in, drop(inner_in), name="body")
    drop.trainable = False
    body.trainable = False
    inp = Input(shape=(50,))
    model = Model(inp, Dense(1)(probe(body(inp))))
    model.compile("sgd", "mse")
    model.fit(np.ones((8, 50)), np.zeros((8, 1)), batch_size=8, verbose=0)
    assert 0.3 < (probe.seen[0] == 0).mean() < 0.7
