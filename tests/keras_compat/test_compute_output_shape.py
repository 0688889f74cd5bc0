"""compute_output_shape as Keras 2: the batch dimension given is kept, built-in layers
answer unbuilt, the base class returns the input shape, and a symbolic call of a
layer that does not override it still finds its shape by a dry run."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import (Activation, Add, BatchNormalization, Concatenate, Dense, Dot,
                               Dropout, Flatten, Lambda, Layer, Maximum, Multiply, Subtract)


@pytest.mark.parametrize("layer, shape, expected", [
    (lambda: Dense(7), (10, 32), (10, 7)),
    (lambda: Dense(7), (None, 32), (None, 7)),
    (lambda: Dense(7), (10, 4, 32), (10, 4, 7)),
    (lambda: Dropout(0.5), (10, 32), (10, 32)),
    (lambda: Activation("relu"), (10, 32), (10, 32)),
    (lambda: BatchNormalization(), (10, 32), (10, 32)),
    (lambda: BatchNormalization(axis=1), (10, 3, 4), (10, 3, 4)),
    (lambda: Flatten(), (10, 3, 4), (10, 12)),
    (lambda: Flatten(), (None, 3, 4), (None, 12)),
])
def test_unbuilt_builtin_layers_keep_the_batch(layer, shape, expected):
    l = layer()
    assert not l.built
    assert l.compute_output_shape(shape) == expected
    assert not l.built and l.weights == []


@pytest.mark.parametrize("layer, expected", [
    (lambda: Concatenate(), (10, 7)),
    (lambda: Concatenate(axis=1), (10, 7)),
])
def test_concatenate_unbuilt(layer, expected):
    assert layer().compute_output_shape([(10, 3), (10, 4)]) == expected


@pytest.mark.parametrize("cls", [Add, Subtract, Multiply, Maximum])
def test_merges_unbuilt(cls):
    assert cls().compute_output_shape([(10, 5), (10, 5)]) == (10, 5)


def test_dot_unbuilt():
    assert Dot(axes=1).compute_output_shape([(10, 5), (10, 5)]) == (10, 1)


def test_built_dense_checks_the_input_dimension():
    d = Dense(7)
    d.build((None, 32))
    assert d.compute_output_shape((10, 32)) == (10, 7)
    with pytest.raises(ValueError, match="last dimension 32"):
        d.compute_output_shape((10, 31))


def test_base_class_returns_the_input_shape():
    class Plain(Layer):
        def call(self, inputs):
            return inputs[:, :2]

    # Keras 2: Layer.compute_output_shape returns input_shape.
    assert Plain().compute_output_shape((10, 32)) == (10, 32)
    assert Layer().compute_output_shape([(3, 2), (3, 4)]) == [(3, 2), (3, 4)]


def test_symbolic_call_of_a_layer_without_override_uses_a_dry_run():
    class FirstTwo(Layer):
        def call(self, inputs):
            return inputs[:, :2]

    y = FirstTwo()(fl.Input((5,)))
    assert y.shape == (None, 2)


def test_symbolic_call_uses_the_override_when_given():
    class Declared(Layer):
        def compute_output_shape(self, input_shape):
            return (input_shape[0], 3)

        def call(self, inputs):
            return np.repeat(inputs[:, :1], 3, axis=1)

    y = Declared()(fl.Input((5,)))
    assert y.shape == (None, 3)


def test_lambda_output_shape_forms():
    assert Lambda(lambda x: x[:, :2], output_shape=(2,)).compute_output_shape((10, 5)) == (10, 2)
    assert Lambda(lambda x: x, output_shape=lambda s: (s[0], 9)).compute_output_shape((10, 5)) \
        == (10, 9)
    # No output_shape: a dry run, the batch dimension kept.
    assert Lambda(lambda x: x[:, :3]).compute_output_shape((10, 5)) == (10, 3)


def test_model_and_sequential_keep_the_batch():
    x = fl.Input((4,))
    m = fl.Model(x, Dense(2)(Dense(3)(x)))
    assert m.compute_output_shape((10, 4)) == (10, 2)
    s = fl.Sequential([Dense(3, input_shape=(4,)), Dense(6)])
    assert s.compute_output_shape((8, 4)) == (8, 6)

