"""The catalogue against Keras 3 itself (an optional peer, NumPy backend): the same
arguments and the same weights give the same outputs, so Keras arrays move over with
``set_weights`` unchanged (names, shapes, order)."""
import os
import sys

import numpy as np
import pytest

from fastlayers import layers as L
from fastlayers import ops

if "keras" not in sys.modules:
    os.environ.setdefault("KERAS_BACKEND", "numpy")  # no TensorFlow needed
keras = pytest.importorskip("keras")

CASES = [
    ("Conv2D", dict(filters=3, kernel_size=(2, 4), strides=2, padding="same"), (2, 7, 6, 2)),
    ("Conv2D", dict(filters=2, kernel_size=3, dilation_rate=2, padding="same",
                    activation="gelu"), (1, 7, 6, 2)),
    ("Conv1D", dict(filters=3, kernel_size=3, padding="causal", dilation_rate=2), (2, 7, 2)),
    ("Conv1D", dict(filters=3, kernel_size=4, strides=3, padding="same"), (2, 8, 2)),
    ("Conv2DTranspose", dict(filters=3, kernel_size=(3, 2), strides=2, padding="same"),
     (2, 3, 4, 2)),
    ("Conv2DTranspose", dict(filters=2, kernel_size=4, strides=3), (1, 3, 2, 2)),
    ("DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=2, padding="same"), (2, 4, 5, 3)),
    ("SeparableConv2D", dict(filters=4, kernel_size=2, depth_multiplier=2), (2, 4, 5, 3)),
    ("MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (2, 6, 7, 2)),
    ("AveragePooling2D", dict(pool_size=(2, 3), strides=(1, 2), padding="same"), (2, 5, 6, 2)),
    ("AveragePooling1D", dict(pool_size=3, padding="same"), (2, 7, 2)),
    ("GlobalAveragePooling1D", {}, (2, 5, 3)),
    ("GlobalMaxPooling2D", dict(keepdims=True), (2, 3, 4, 3)),
    ("LayerNormalization", dict(axis=[1, 2]), (2, 3, 4, 2)),
    ("GroupNormalization", dict(groups=2), (2, 3, 4)),
    ("PReLU", dict(shared_axes=[1, 2], alpha_initializer="random_normal"), (2, 3, 4, 2)),
    ("ReLU", dict(max_value=1.5, negative_slope=0.1, threshold=0.5), (3, 6)),
    ("LeakyReLU", {}, (3, 6)),
    ("ELU", dict(alpha=0.7), (3, 6)),
    ("Softmax", dict(axis=1), (2, 3, 4)),
    ("ZeroPadding2D", dict(padding=((1, 0), (2, 1))), (2, 3, 2, 2)),
    ("Cropping2D", dict(cropping=((1, 0), (0, 2))), (2, 3, 4, 2)),
    ("UpSampling2D", dict(size=(2, 3)), (2, 2, 2, 1)),
    ("Permute", dict(dims=(2, 1)), (2, 3, 4)),
    ("RepeatVector", dict(n=3), (2, 4)),
    ("Reshape", dict(target_shape=(-1, 2)), (2, 3, 4)),
]


@pytest.mark.parametrize("name,kwargs,shape", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_same_weights_same_outputs(name, kwargs, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype("float32")
    theirs = getattr(keras.layers, name)(**kwargs)
    expected = np.asarray(theirs(x))
    ours = getattr(L, name)(**kwargs)
    ours(x)  # build
    keras_weights = [np.asarray(w) for w in theirs.weights]
    assert [w.name for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]
    # Random values rather than the initial ones (biases start at zero).
    values = [rng.standard_normal(w.shape).astype("float32") for w in keras_weights]
    for w, v in zip(theirs.weights, values):
        w.assign(v)
    ours.set_weights(values)
    np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=2e-5, atol=2e-5)
    assert expected.shape == ours(x).shape


def test_embedding_and_activation_names():
    ids = np.array([[1, 4, 4], [0, 6, 2]])
    theirs = keras.layers.Embedding(7, 3)
    theirs(ids)
    ours = L.Embedding(7, 3)
    ours(ids)
    ours.set_weights([np.asarray(w) for w in theirs.weights])
    np.testing.assert_array_equal(ours(ids), np.asarray(theirs(ids)))
    x = np.linspace(-5, 5, 23).astype(np.float32)[None]
    for name in ops.ACTIVATIONS:
        np.testing.assert_allclose(ops.activation_forward(x, name),
                                   np.asarray(keras.activations.get(name)(x)),
                                   rtol=2e-6, atol=2e-6, err_msg=name)
