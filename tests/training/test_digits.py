"""End to end: an MLP learns scikit-learn's bundled 8x8 digits (no download)."""
import time

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Activation, BatchNormalization, Dense, Dropout

datasets = pytest.importorskip("sklearn.datasets")
model_selection = pytest.importorskip("sklearn.model_selection")


@pytest.fixture(scope="module")
def digits():
    X, y = datasets.load_digits(return_X_y=True)
    X = (X / 16.0).astype("float32")
    return model_selection.train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def _accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


def test_mlp_reaches_95_percent_on_held_out_digits(digits):
    xtr, xte, ytr, yte = digits
    start = time.perf_counter()
    fl.utils.set_random_seed(0)
    model = fl.Sequential([Dense(64, activation="relu", input_shape=(64,)),
                           Dense(10, activation="softmax")])
    model.compile(fl.optimizers.Adam(0.005), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    h = model.fit(xtr, ytr, batch_size=32, epochs=20, verbose=0)
    loss, acc = model.evaluate(xte, yte, verbose=0)
    elapsed = time.perf_counter() - start
    assert acc >= 0.95, acc
    assert acc == pytest.approx(_accuracy(model, xte, yte))
    assert h.history["loss"][-1] < h.history["loss"][0] / 5
    assert elapsed < 10, f"took {elapsed:.1f} s"


def test_mlp_with_batchnorm_and_dropout_on_digits(digits):
    """BN, dropout, SGD with momentum, logits and a validation split."""
    xtr, xte, ytr, yte = digits
    fl.utils.set_random_seed(0)
    model = fl.Sequential([Dense(64, use_bias=False, input_shape=(64,)), BatchNormalization(),
                           Activation("relu"), Dropout(0.2), Dense(10)])
    model.compile(fl.optimizers.SGD(0.05, momentum=0.9),
                  fl.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    h = model.fit(xtr, ytr, batch_size=32, epochs=20, validation_split=0.1, verbose=0)
    assert h.history["val_accuracy"][-1] >= 0.93
    assert _accuracy(model, xte, yte) >= 0.95
    # predict is deterministic (inference: no dropout, moving statistics)
    np.testing.assert_array_equal(model.predict(xte, verbose=0), model.predict(xte, verbose=0))
