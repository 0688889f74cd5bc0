"""Lambda: NumPy functions in a graph; trained through only with a backprop function."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Dense, Lambda


def test_lambda_in_inference_with_and_without_output_shape():
    inp = fl.Input((4,))
    doubled = Lambda(lambda x: 2 * x)(inp)
    summed = Lambda(lambda x, k: k * x.sum(axis=1, keepdims=True), output_shape=(1,),
                    arguments={"k": 3.0})(inp)
    m = fl.Model(inp, [doubled, summed])
    assert doubled.shape == (None, 4) and summed.shape == (None, 1)
    x = np.arange(8, dtype="float32").reshape(2, 4)
    a, b = m.predict(x, verbose=0)
    np.testing.assert_allclose(a, 2 * x)
    np.testing.assert_allclose(b, 3 * x.sum(axis=1, keepdims=True))


def test_lambda_without_backprop_on_a_trained_path_is_refused_at_compile():
    inp = fl.Input((4,))
    m = fl.Model(inp, Dense(1)(Lambda(np.tanh)(Dense(3)(inp))))
    with pytest.raises(ValueError, match="no backprop function"):
        m.compile("sgd", "mse")
    # Frozen below it: nothing needs its gradient, so it compiles and trains the head.
    m.layers[1].trainable = False
    m.compile("sgd", "mse")
    m.train_on_batch(np.ones((2, 4), "float32"), np.zeros((2, 1), "float32"))


def test_lambda_with_backprop_trains_through(float64):
    inp = fl.Input((4,))
    first = Dense(3)
    act = Lambda(np.tanh, backprop=lambda x, y, g: g * (1 - y ** 2))
    m = fl.Model(inp, Dense(1)(act(first(inp))))
    m.compile(fl.optimizers.SGD(0.1), "mse")
    w0 = first.get_weights()[0].copy()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 4))
    m.train_on_batch(x, x[:, :1])
    assert not np.array_equal(w0, first.get_weights()[0])
    fl.utils.check_layer_gradients(Lambda(np.tanh, backprop=lambda x, y, g: g * (1 - y ** 2)),
                                   rng.standard_normal((3, 4)))
