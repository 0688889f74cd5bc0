"""Seed 000/001: a model's ``trainable`` vs its layers' ``trainable`` (shared layer)."""
import warnings

import numpy as np
import pytest

from fastlayers.layers import Dense
from fastlayers.models import Input, Model, Sequential


def data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 4)).astype("float32"), rng.random((n, 1)).astype("float32")


def build():
    inp = Input(shape=(4,))
    shared_layer = Dense(3)
    sout = shared_layer(inp)
    m1_out = Dense(1)(sout)
    m2_out = Dense(1)(sout)
    model1 = Model(inp, m1_out)
    model2 = Model(inp, m2_out)
    return shared_layer, model1, model2


def values(layer):
    return [w.numpy() for w in layer.weights]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def differ(a, b):
    return all(not np.array_equal(x, y) for x, y in zip(a, b))


def test_model_flag_leaves_layer_flags_alone():
    """The question: the layers of a frozen Sequential still say trainable=True."""
    model = Sequential([Dense(8, input_shape=(4,)), Dense(8), Dense(1)])
    model.trainable = False
    assert [layer.trainable for layer in model.layers] == [True, True, True]
    assert all(len(layer.trainable_weights) == 2 for layer in model.layers)
    assert model.trainable_weights == []
    assert len(model.non_trainable_weights) == 6
    with pytest.warns(UserWarning, match="no trainable weights"):
        model.compile("sgd", "mse")
    before = [w.numpy() for w in model.weights]
    model.fit(*data(), verbose=0)
    assert same(before, [w.numpy() for w in model.weights])


def test_model1_frozen_model2_still_trains_shared_layer():
    shared, model1, model2 = build()
    head1, head2 = model1.layers[2], model2.layers[2]
    assert model1.layers[1] is shared and model2.layers[1] is shared
    model1.trainable = False
    assert shared.trainable and head1.trainable
    with pytest.warns(UserWarning, match="no trainable weights"):
        model1.compile("sgd", "mse")
    model2.compile("sgd", "mse")
    x, y = data()
    s0, h10, h20 = values(shared), values(head1), values(head2)
    model1.fit(x, y, epochs=2, verbose=0)
    assert same(s0, values(shared)) and same(h10, values(head1)) and same(h20, values(head2))
    model2.fit(x, y, epochs=2, verbose=0)
    assert differ(s0, values(shared)) and differ(h20, values(head2))
    assert same(h10, values(head1))


def test_shared_layer_frozen_through_model1_is_frozen_for_both():
    shared, model1, model2 = build()
    head1, head2 = model1.layers[2], model2.layers[2]
    model1.layers[1].trainable = False
    model1.compile("sgd", "mse")
    model2.compile("sgd", "mse")
    assert [w.path for w in model2.trainable_weights] == [w.path for w in head2.weights]
    x, y = data()
    s0, h10, h20 = values(shared), values(head1), values(head2)
    model1.fit(x, y, verbose=0)
    assert same(s0, values(shared)) and differ(h10, values(head1)) and same(h20, values(head2))
    h11 = values(head1)
    model2.fit(x, y, verbose=0)
    assert same(s0, values(shared)) and same(h11, values(head1)) and differ(h20, values(head2))


def test_freezing_model1_after_compile_is_stale_for_model1_only():
    """R4 with a shared layer: model2's compiled set is unaffected by model1's flag."""
    shared, model1, model2 = build()
    model1.compile("sgd", "mse")
    model2.compile("sgd", "mse")
    model1.trainable = False
    x, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model2.train_on_batch(x, y)  # no warning: model2's set did not change
    s0 = values(shared)
    with pytest.warns(UserWarning, match="'model'.*compile\\(\\) again") as rec:
        model1.train_on_batch(x, y)
    assert len(rec) == 1
    assert differ(s0, values(shared))  # the compiled picture still trains it
    with pytest.warns(UserWarning, match="no trainable weights"):
        model1.compile("sgd", "mse")
    s1 = values(shared)
    model1.train_on_batch(x, y)
    assert same(s1, values(shared))


def test_example_functions(load_example):
    ex = load_example("seed000_shared_layer")
    flag, flags, n = ex.sequential_question()
    assert flag is False and flags == [True, True, True] and n == 0
    r = ex.scenario("model1.trainable=False")
    assert r["model1"][0] == []
    assert r["model2"][0] == ["model2_head/bias", "model2_head/kernel",
                              "shared_layer/bias", "shared_layer/kernel"]
    r = ex.scenario("model1.layers[1].trainable=False")
    assert r["model1"][0] == ["model1_head/bias", "model1_head/kernel"]
    assert r["model2"][0] == ["model2_head/bias", "model2_head/kernel"]
