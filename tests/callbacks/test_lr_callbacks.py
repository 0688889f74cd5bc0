"""ReduceLROnPlateau (patience, factor, cooldown, min_lr, min_delta) and
LearningRateScheduler (both schedule signatures), as Keras 3 documents them."""
import numpy as np
import pytest

import fastlayers as fl
from fastlayers.callbacks import LearningRateScheduler, ReduceLROnPlateau


def run_plateau(cb, values, FakeModel, lr=1.0):
    model = FakeModel(lr)
    cb.set_model(model)
    cb.on_train_begin()
    lrs, logged = [], []
    for epoch, v in enumerate(values):
        logs = {"val_loss": v}
        cb.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
        lrs.append(model.optimizer.learning_rate)
    return lrs, logged


def test_reduces_after_patience_epochs_without_improvement(FakeModel):
    cb = ReduceLROnPlateau(factor=0.5, patience=2)
    lrs, logged = run_plateau(cb, [1.0, 1.0, 1.0, 1.0, 1.0], FakeModel)
    # wait: e1 -> 1, e2 -> 2 = patience: halve; e3 -> 1, e4 -> 2: halve again.
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    # logs carry the rate in force during the epoch (read before any reduction)
    assert logged == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_min_delta_default_1e_4(FakeModel):
    cb = ReduceLROnPlateau(factor=0.5, patience=1)
    lrs, _ = run_plateau(cb, [1.0, 1.0 - 5e-5, 1.0 - 2e-4], FakeModel)
    assert lrs == [1.0, 0.5, 0.5]


def test_cooldown_pauses_counting(FakeModel):
    cb = ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2)
    lrs, _ = run_plateau(cb, [1.0] * 7, FakeModel)
    # reduce at e1 (counter = 2); e2 counts the counter down to 1 and waits not;
    # e3 counts it to 0, is out of cooldown, wait=1 = patience: reduce again.
    assert lrs == [1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]


def test_min_lr_is_a_floor(FakeModel):
    cb = ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.05)
    lrs, _ = run_plateau(cb, [1.0] * 4, FakeModel)
    assert lrs == [1.0, pytest.approx(0.1), 0.05, 0.05]


def test_mode_max_and_bad_factor(FakeModel):
    cb = ReduceLROnPlateau(monitor="val_loss", mode="max", factor=0.5, patience=1)
    lrs, _ = run_plateau(cb, [1.0, 2.0, 1.5], FakeModel)
    assert lrs == [1.0, 1.0, 0.5]
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)


def test_plateau_on_a_real_optimizer():
    model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
    model.compile(fl.optimizers.SGD(0.1), "mse")
    x = np.ones((8, 2), "float32")
    y = np.zeros((8, 1), "float32")
    cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    hist = model.fit(x, y, epochs=3, verbose=0, callbacks=[cb])
    # epoch 0 is the first best; epochs 1 and 2 cannot improve by 1e9: two halvings.
    assert model.optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** 2)
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05])


def test_scheduler_one_and_two_argument_forms(FakeModel):
    model = FakeModel(1.0)
    seen = []
    cb = LearningRateScheduler(lambda epoch, lr: (seen.append(lr), lr * 0.5)[1])
    cb.set_model(model)
    for e in range(3):
        cb.on_epoch_begin(e)
        logs = {}
        cb.on_epoch_end(e, logs)
        assert logs["learning_rate"] == model.optimizer.learning_rate
    assert seen == [1.0, 0.5, 0.25] and model.optimizer.learning_rate == 0.125
    cb = LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    cb.set_model(model)
    cb.on_epoch_begin(4)
    assert model.optimizer.learning_rate == pytest.approx(0.02)


def test_scheduler_rejects_non_numbers(FakeModel):
    cb = LearningRateScheduler(lambda epoch, lr: "fast")
    cb.set_model(FakeModel())
    with pytest.raises(ValueError, match="should be a float"):
        cb.on_epoch_begin(0)
    with pytest.raises(TypeError, match="callable"):
        LearningRateScheduler(0.1)


def test_scheduler_drives_fit():
    model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
    model.compile(fl.optimizers.Adam(0.1), "mse")
    x = np.ones((8, 2), "float32")
    hist = model.fit(x, np.zeros((8, 1), "float32"), epochs=3, verbose=0,
                     callbacks=[LearningRateScheduler(lambda e: 10.0 ** -(e + 1))])
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.01, 0.001])
