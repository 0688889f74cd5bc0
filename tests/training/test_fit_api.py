"""fit / evaluate / predict / *_on_batch: return types and the numbers they report (Keras's)."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.layers import Dense, Dropout

pytestmark = pytest.mark.usefixtures("engine_path")  # fused step and layer-by-layer path


def make_model(k=3, out_act="softmax", seed=0):
    fl.utils.set_random_seed(seed)
    inp = fl.Input((4,))
    h = Dense(8, activation="tanh")(inp)
    return fl.Model(inp, Dense(k, activation=out_act)(h))


def twin(model):
    other = make_model(k=model.outputs[0].shape[-1],
                       out_act=model.layers[-1].activation, seed=99)
    other.set_weights(model.get_weights())
    return other


def data(n=20, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype("float32")
    y = rng.integers(0, k, n)
    return x, y


def compile_(m, metrics=("accuracy",)):
    m.compile(fl.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy",
              metrics=list(metrics) if metrics is not None else None)


# --------------------------------------------------------------------------- History
def test_history_is_the_sample_weighted_mean_of_batch_results():
    m = make_model()
    ref = twin(m)
    compile_(m, ["accuracy"])
    compile_(ref, ["accuracy"])
    x, y = data(n=22)
    bs = 8  # batches of 8, 8, 6
    h = m.fit(x, y, batch_size=bs, epochs=3, shuffle=False, verbose=0)
    assert isinstance(h, fl.callbacks.History)
    assert m.history is h
    assert h.epoch == [0, 1, 2]
    assert set(h.history) == {"loss", "accuracy"}
    for epoch in range(3):
        losses, accs, sizes = [], [], []
        for lo in range(0, 22, bs):
            loss, acc = ref.train_on_batch(x[lo:lo + bs], y[lo:lo + bs])
            losses.append(loss)
            accs.append(acc)
            sizes.append(len(x[lo:lo + bs]))
        assert h.history["loss"][epoch] == pytest.approx(np.average(losses, weights=sizes), rel=1e-9)
        assert h.history["accuracy"][epoch] == pytest.approx(np.average(accs, weights=sizes),
                                                             rel=1e-9)
        # not the plain mean of the batch losses (the last batch is smaller)
        if abs(np.mean(losses) - np.average(losses, weights=sizes)) > 1e-6:
            assert h.history["loss"][epoch] != pytest.approx(np.mean(losses), rel=1e-9)
    for a, b in zip(m.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert all(isinstance(v, float) for vs in h.history.values() for v in vs)


def test_history_metric_names():
    m = make_model(k=2, out_act="linear")
    m.compile("sgd", "mse", metrics=["mae", "mse"])
    x = np.random.default_rng(0).standard_normal((10, 4))
    y = np.random.default_rng(1).standard_normal((10, 2))
    h = m.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert list(h.history) == ["loss", "mae", "mse"]
    assert all(len(v) == 2 for v in h.history.values())


def test_fit_loss_decreases_and_epochs_zero():
    m = make_model()
    compile_(m)
    x, y = data(n=64)
    h = m.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    h0 = m.fit(x, y, epochs=0, verbose=0)
    assert h0.history == {}


def test_validation_split_uses_the_last_samples_and_adds_val_keys():
    m = make_model()
    ref = twin(m)
    compile_(m)
    compile_(ref)
    x, y = data(n=20)
    for epoch in range(2):
        h = m.fit(x, y, batch_size=5, epochs=1, validation_split=0.25, shuffle=False, verbose=0)
        assert list(h.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
        ref.fit(x[:15], y[:15], batch_size=5, epochs=1, shuffle=False, verbose=0)
        for a, b in zip(m.get_weights(), ref.get_weights()):
            np.testing.assert_array_equal(a, b)
        val_loss, val_acc = m.evaluate(x[15:], y[15:], verbose=0)
        assert h.history["val_loss"][0] == pytest.approx(val_loss, rel=1e-9)
        assert h.history["val_accuracy"][0] == pytest.approx(val_acc, rel=1e-9)


def test_validation_data_adds_val_keys_per_epoch():
    m = make_model()
    compile_(m)
    x, y = data(n=20)
    xv, yv = data(n=7, seed=1)
    h = m.fit(x, y, batch_size=6, epochs=3, validation_data=(xv, yv), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 for v in h.history.values())
    val_loss, val_acc = m.evaluate(xv, yv, verbose=0)
    assert h.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-9)
    assert h.history["val_accuracy"][-1] == pytest.approx(val_acc, rel=1e-9)


def test_validation_runs_in_inference_mode():
    """val_loss is computed without dropout, like evaluate."""
    fl.utils.set_random_seed(0)
    inp = fl.Input((4,))
    m = fl.Model(inp, Dense(1)(Dropout(0.5)(Dense(16)(inp))))
    m.compile(fl.optimizers.SGD(0.0), "mse")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 4)), rng.standard_normal((16, 1))
    h = m.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), verbose=0)
    ev = m.evaluate(x, y, verbose=0)
    assert h.history["val_loss"] == pytest.approx([ev, ev], rel=1e-9)
    assert h.history["loss"][0] != pytest.approx(ev, rel=1e-6)  # training drops


def test_fit_verbose_0_prints_nothing(capsys):
    m = make_model()
    compile_(m)
    x, y = data()
    m.fit(x, y, epochs=2, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.predict(x, verbose=0)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------- return types
def test_return_types_without_metrics():
    m = make_model()
    compile_(m, metrics=None)
    x, y = data()
    for v in (m.train_on_batch(x, y), m.test_on_batch(x, y), m.evaluate(x, y, verbose=0)):
        assert isinstance(v, float)
    assert m.evaluate(x, y, return_dict=True, verbose=0).keys() == {"loss"}
    assert m.train_on_batch(x, y, return_dict=True).keys() == {"loss"}


def test_return_types_with_metrics():
    m = make_model()
    compile_(m, ["accuracy"])
    x, y = data()
    for v in (m.train_on_batch(x, y), m.test_on_batch(x, y), m.evaluate(x, y, verbose=0)):
        assert isinstance(v, list) and len(v) == 2
        assert all(isinstance(e, float) for e in v)
        assert 0.0 <= v[1] <= 1.0
    d = m.test_on_batch(x, y, return_dict=True)
    assert list(d) == ["loss", "accuracy"]
    assert m.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(d, rel=1e-9)


def test_evaluate_is_the_sample_weighted_mean_over_batches():
    m = make_model()
    compile_(m, ["accuracy"])
    x, y = data(n=23)
    full = m.test_on_batch(x, y)
    for bs in (4, 10, 23, 100):
        got = m.evaluate(x, y, batch_size=bs, verbose=0)
        np.testing.assert_allclose(got, full, rtol=1e-6)
    # ... and it is the loss of predict's output
    p = m.predict(x, verbose=0).astype(np.float64)
    expected = -np.mean(np.log(np.clip(p[np.arange(23), y], 1e-7, 1)))
    assert full[0] == pytest.approx(expected, rel=1e-5)
    assert full[1] == pytest.approx(np.mean(p.argmax(1) == y))


def test_test_on_batch_does_not_train():
    m = make_model()
    compile_(m)
    x, y = data()
    before = m.get_weights()
    m.test_on_batch(x, y)
    m.evaluate(x, y, verbose=0)
    m.predict(x, verbose=0)
    m.predict_on_batch(x)
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    m.train_on_batch(x, y)
    assert not np.array_equal(before[0], m.get_weights()[0])


def test_train_on_batch_reports_the_loss_before_the_update():
    m = make_model()
    compile_(m, metrics=None)
    x, y = data()
    before = m.test_on_batch(x, y)
    assert m.train_on_batch(x, y) == pytest.approx(before, rel=1e-6)
    assert m.test_on_batch(x, y) < before


def test_predict_types_and_batching():
    m = make_model()
    x, _ = data(n=37)
    p = m.predict(x, verbose=0)
    assert isinstance(p, np.ndarray) and p.dtype == np.float32 and p.shape == (37, 3)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    for bs in (1, 5, 64):
        np.testing.assert_allclose(m.predict(x, batch_size=bs, verbose=0), p, rtol=1e-6, atol=1e-7)
    pb = m.predict_on_batch(x)
    assert isinstance(pb, np.ndarray)
    np.testing.assert_allclose(pb, p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m(x), p, rtol=1e-6, atol=1e-7)  # a plain call
    # predict needs no compile


def test_multi_output_predict_and_fit():
    inp = fl.Input((4,))
    h = Dense(5, activation="tanh")(inp)
    a = Dense(2, name="a")(h)
    b = Dense(3, activation="softmax", name="b")(h)
    m = fl.Model(inp, [a, b])
    m.compile(fl.optimizers.SGD(0.1), {"a": "mse", "b": "sparse_categorical_crossentropy"},
              loss_weights={"a": 1.0, "b": 0.5})
    rng = np.random.default_rng(0)
    x, ya, yb = rng.standard_normal((12, 4)), rng.standard_normal((12, 2)), rng.integers(0, 3, 12)
    p = m.predict(x, verbose=0)
    assert isinstance(p, list) and [q.shape for q in p] == [(12, 2), (12, 3)]
    la = fl.losses.get("mse")(ya.astype("float32"), p[0])
    lb = fl.losses.get("sparse_categorical_crossentropy")(yb, p[1])
    # Keras: [total, a_loss, b_loss] for several outputs, named by metrics_names.
    total, ta, tb = m.test_on_batch(x, [ya, yb])
    assert m.metrics_names == ["loss", "a_loss", "b_loss"]
    assert total == pytest.approx(la + 0.5 * lb, rel=1e-5)
    assert (ta, tb) == (pytest.approx(la, rel=1e-5), pytest.approx(lb, rel=1e-5))
    assert m.evaluate(x, {"a": ya, "b": yb}, verbose=0) == pytest.approx([total, ta, tb],
                                                                         rel=1e-6)
    h = m.fit(x, [ya, yb], epochs=2, batch_size=12, shuffle=False, verbose=0)
    assert set(h.history) == {"loss", "a_loss", "b_loss"}
    assert h.history["loss"][0] == pytest.approx(total, rel=1e-5)
    assert h.history["a_loss"][0] == pytest.approx(la, rel=1e-5)
    assert h.history["b_loss"][0] == pytest.approx(lb, rel=1e-5)


def test_sequential_fit_and_evaluate():
    m = fl.Sequential([Dense(8, activation="relu", input_shape=(4,)), Dense(3, activation="softmax")])
    compile_(m)
    x, y = data(n=30)
    h = m.fit(x, y, epochs=2, batch_size=10, verbose=0)
    assert set(h.history) == {"loss", "accuracy"}
    loss, acc = m.evaluate(x, y, verbose=0)
    assert isinstance(loss, float) and isinstance(acc, float)
    # a Sequential without input shape is built by the first fit
    s = fl.Sequential()
    s.add(Dense(3, activation="softmax"))
    compile_(s)
    s.fit(x, y, epochs=1, verbose=0)
    assert [w.shape for w in s.weights] == [(4, 3), (3,)]


# --------------------------------------------------------------------------- 3-D outputs
def _seq_model():
    fl.utils.set_random_seed(0)
    inp = fl.Input((2, 3))
    return fl.Model(inp, Dense(4, activation="softmax")(inp))


def _seq_data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 2, 3)).astype("float32"), rng.integers(0, 4, (5, 2))


def test_categorical_crossentropy_on_3d_output_is_the_mean_over_samples_and_steps():
    m = _seq_model()
    m.compile(fl.optimizers.SGD(0.1), "categorical_crossentropy", metrics=["accuracy"])
    x, labels = _seq_data()
    y = np.eye(4)[labels]
    p = m.predict(x, verbose=0).astype(np.float64)
    expected = -np.mean(np.log(np.take_along_axis(p, labels[..., None], -1)))
    loss, acc = m.test_on_batch(x, y)
    assert loss == pytest.approx(expected, rel=1e-6)
    assert acc == pytest.approx(np.mean(p.argmax(-1) == labels))
    assert m.train_on_batch(x, y)[0] == pytest.approx(expected, rel=1e-6)


def test_sparse_categorical_crossentropy_on_3d_output():
    m = _seq_model()
    m.compile(fl.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x, labels = _seq_data()
    p = m.predict(x, verbose=0).astype(np.float64)
    expected = -np.mean(np.log(np.take_along_axis(p, labels[..., None], -1)))
    assert m.test_on_batch(x, labels) == pytest.approx(expected, rel=1e-6)
