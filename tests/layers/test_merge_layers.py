"""The merge layers: Keras's forward values, gradients (numerical check), and training through them."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Average, Dense, Dot, Maximum, Minimum, Multiply, Subtract, Add

REFERENCE = {
    Add: lambda xs: xs[0] + xs[1] + xs[2],
    Subtract: lambda xs: xs[0] - xs[1],
    Multiply: lambda xs: xs[0] * xs[1] * xs[2],
    Average: lambda xs: (xs[0] + xs[1] + xs[2]) / 3,
    Maximum: lambda xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2]),
    Minimum: lambda xs: np.minimum(np.minimum(xs[0], xs[1]), xs[2]),
}


def _inputs(k, shape=(5, 3, 4), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(k)]


@pytest.mark.parametrize("cls", list(REFERENCE))
def test_merge_forward_matches_numpy_and_gradients_check(float64, cls):
    k = 2 if cls is Subtract else 3
    xs = _inputs(k)
    layer = cls()
    np.testing.assert_allclose(layer(xs), REFERENCE[cls](xs + [0] * (3 - k)) if k == 3
                               else REFERENCE[cls](xs), rtol=1e-12)
    fl.utils.check_layer_gradients(cls(), xs)


def test_subtract_needs_exactly_two_inputs():
    a, b, c = fl.Input((3,)), fl.Input((3,)), fl.Input((3,))
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        Subtract()([a, b, c])
    with pytest.raises(ValueError, match="one shape"):
        Add()([a, fl.Input((4,))])


@pytest.mark.parametrize("normalize", [False, True])
def test_dot_forward_and_gradient(float64, normalize):
    a, b = _inputs(2, shape=(6, 4))
    y = Dot(axes=1, normalize=normalize)([a, b])
    if normalize:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
    np.testing.assert_allclose(y, np.sum(a * b, axis=1, keepdims=True), rtol=1e-10)
    fl.utils.check_layer_gradients(Dot(axes=1, normalize=normalize), _inputs(2, shape=(6, 4)))


def test_functional_helpers_build_the_layers_and_train_through_them():
    inp = fl.Input((4,))
    h1, h2 = Dense(3, name="h1")(inp), Dense(3, name="h2")(inp)
    out = fl.layers.add([fl.layers.multiply([h1, h2]), fl.layers.subtract([h1, h2]),
                         fl.layers.maximum([h1, h2]), fl.layers.minimum([h1, h2]),
                         fl.layers.average([h1, h2])])
    out = fl.layers.concatenate([out, fl.layers.dot([h1, h2], axes=1)])
    m = fl.Model(inp, Dense(1)(out))
    m.compile(fl.optimizers.SGD(0.002), "mse")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 4)).astype("float32")
    y = x[:, :1] * 2
    first = m.evaluate(x, y, verbose=0)
    m.fit(x, y, epochs=30, batch_size=8, verbose=0)
    assert m.evaluate(x, y, verbose=0) < first
    kinds = [op.kind.name for op in m.step_program.ops]
    assert kinds.count("MERGE") == 6 and "CALLBACK" in kinds  # Dot runs as a callback op
