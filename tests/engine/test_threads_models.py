"""One model used from several threads: safe and correct (issue 10, threads)."""
import threading

import numpy as np

import fastlayers as fl
from fastlayers.layers import Dense


def _model(seed=0):
    fl.utils.set_random_seed(seed)
    m = fl.Sequential([Dense(32, activation="relu", input_shape=(16,)), Dense(4)])
    m.compile(fl.optimizers.SGD(0.01), "mse")
    return m


def test_predict_beside_training_and_ragged_predicts_give_right_answers():
    m = _model()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16)).astype("float32")
    y = rng.standard_normal((64, 4)).astype("float32")
    errors, stop = [], threading.Event()

    def train():
        while not stop.is_set():
            m.train_on_batch(x, y)

    def predict(n):
        for _ in range(200):
            xs = x[:n]
            with m._step_lock():  # compare against a prediction with the same weights
                want = m.predict_on_batch(xs)
                got = m.predict_on_batch(xs)
            if not np.array_equal(want, got) or got.shape != (n, 4):
                errors.append(n)

    threads = [threading.Thread(target=train)] + [threading.Thread(target=predict, args=(n,))
                                                  for n in (3, 17, 64)]
    for t in threads[1:]:
        t.start()
    threads[0].start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert not errors


def test_two_models_train_in_two_threads_like_alone():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 16)).astype("float32")
    y = rng.standard_normal((32, 4)).astype("float32")
    alone = _model(3)
    for _ in range(50):
        alone.train_on_batch(x, y)
    a, b = _model(3), _model(3)

    def run(m):
        for _ in range(50):
            m.train_on_batch(x, y)

    ts = [threading.Thread(target=run, args=(m,)) for m in (a, b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for m in (a, b):
        for u, v in zip(m.get_weights(), alone.get_weights()):
            np.testing.assert_array_equal(u, v)
