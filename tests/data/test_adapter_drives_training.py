"""The adapter feeding the engine: a loop of train_on_batch over its batches trains
exactly as model.fit on the same arrays, whatever form the data come in."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.engine.data import fit_data


def make_model():
    fl.utils.set_random_seed(0)
    model = fl.Sequential([fl.layers.Dense(5, activation="relu", input_shape=(4,)),
                           fl.layers.Dense(3, activation="softmax")])
    model.compile(fl.optimizers.SGD(0.1, momentum=0.5), "sparse_categorical_crossentropy")
    return model


rng = np.random.default_rng(0)
X = rng.normal(size=(30, 4)).astype("float32")
Y = rng.integers(0, 3, 30)


class Batches(fl.utils.PyDataset):
    def __len__(self):
        return 4  # 8, 8, 8, 6 rows: no IndexError is ever needed

    def __getitem__(self, i):
        return X[i * 8:(i + 1) * 8], Y[i * 8:(i + 1) * 8]


def generator():
    while True:
        for i in range(4):
            yield X[i * 8:(i + 1) * 8], Y[i * 8:(i + 1) * 8]


def loop(model, data, epochs=3):
    for _ in range(epochs):
        for xs, ys, sws in data.train.epoch():
            assert sws is None
            model.train_on_batch(xs[0], ys[0])
    return model.get_weights()


@pytest.mark.parametrize("form", ["arrays", "pydataset", "generator"])
def test_same_weights_as_fit_on_arrays(form):
    ref = make_model()
    ref.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    if form == "arrays":
        data = fit_data(X, Y, batch_size=8, shuffle=False)
    elif form == "pydataset":
        data = fit_data(Batches(), shuffle=False)
    else:
        data = fit_data(generator(), steps_per_epoch=4)
    for a, b in zip(ref.get_weights(), loop(make_model(), data)):
        np.testing.assert_array_equal(a, b)


def test_shuffled_arrays_same_as_fit_under_the_same_seed():
    ref = make_model()
    fl.utils.set_random_seed(42)
    ref.fit(X, Y, batch_size=8, epochs=3, shuffle=True, verbose=0)
    model = make_model()
    fl.utils.set_random_seed(42)
    got = loop(model, fit_data(X, Y, batch_size=8, shuffle=True))
    for a, b in zip(ref.get_weights(), got):
        np.testing.assert_array_equal(a, b)
