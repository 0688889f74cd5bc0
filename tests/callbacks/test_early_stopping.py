"""EarlyStopping against Keras 3's documented rules (wait/patience, min_delta, mode,
baseline, restore_best_weights even without stopping, start_from_epoch)."""
import warnings

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.callbacks import EarlyStopping



def test_patience_counts_epochs_since_the_best(drive):
    # best at epoch 1; epochs 2, 3 do not improve: wait reaches 2 = patience at epoch 3.
    cb = EarlyStopping(monitor="val_loss", patience=2)
    model, ran = drive(cb, [1.0, 0.9, 0.95, 0.96, 0.5, 0.4])
    assert ran == 4 and cb.stopped_epoch == 3 and model.stop_training


def test_patience_zero_stops_at_first_non_improvement_but_never_at_epoch_0(drive):
    cb = EarlyStopping(monitor="loss", patience=0)
    _, ran = drive(cb, [1.0, 1.0, 0.5], monitor="loss")
    assert ran == 2 and cb.stopped_epoch == 1


def test_improvement_resets_wait(drive):
    cb = EarlyStopping(patience=2)
    _, ran = drive(cb, [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.86, 0.1])
    assert ran == 7 and cb.stopped_epoch == 6


def test_min_delta_small_gains_are_not_improvements(drive):
    cb = EarlyStopping(patience=1, min_delta=0.1)
    _, ran = drive(cb, [1.0, 0.95, 0.5])  # 0.05 < min_delta
    assert ran == 2
    cb = EarlyStopping(patience=1, min_delta=-0.1)  # Keras takes abs(min_delta)
    assert cb.min_delta == 0.1


@pytest.mark.parametrize("monitor,values,ran", [
    ("val_accuracy", [0.5, 0.6, 0.55, 0.9], 3),   # max: 0.55 < 0.6 stops (patience 1)
    ("val_loss", [0.5, 0.6, 0.55, 0.9], 2),       # min: 0.6 > 0.5 stops
    ("val_binary_accuracy", [0.5, 0.4, 0.9], 2),
    ("mean_absolute_error", [0.5, 0.6], 2),
])
def test_mode_auto_from_the_monitor_name(monitor, values, ran, drive):
    cb = EarlyStopping(monitor=monitor, patience=1)
    assert drive(cb, values, monitor=monitor)[1] == ran


def test_mode_explicit_and_unknown_name(drive):
    cb = EarlyStopping(monitor="score", mode="max", patience=0)
    assert drive(cb, [1.0, 2.0, 1.5], monitor="score")[1] == 3
    cb = EarlyStopping(monitor="score", patience=0)
    with pytest.raises(ValueError, match="mode='max'"):
        drive(cb, [1.0], monitor="score")
    with pytest.warns(UserWarning, match="unknown"):
        assert EarlyStopping(mode="bogus").mode == "auto"


def test_baseline_only_beating_it_resets_wait(drive):
    # Never below the baseline 0.5: wait is never reset, first non-improvement past
    # patience stops (Keras: improving epochs return before the check).
    cb = EarlyStopping(patience=2, baseline=0.5)
    _, ran = drive(cb, [1.0, 0.9, 0.8, 0.85, 0.7])
    assert ran == 4 and cb.stopped_epoch == 3
    cb = EarlyStopping(patience=1, baseline=0.5)
    _, ran = drive(cb, [0.4, 0.45, 0.3])  # beats the baseline at epoch 0; 0.45 is worse
    assert ran == 2


def test_restore_best_weights_when_stopped_early(drive):
    cb = EarlyStopping(patience=2, restore_best_weights=True)
    model, ran = drive(cb, [1.0, 0.5, 0.7, 0.8, 0.1])
    assert ran == 4
    assert cb.best_epoch == 1
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])


def test_restore_best_weights_also_without_early_stop(drive):
    # Keras 3 restores at the end of training whether or not it stopped early.
    cb = EarlyStopping(patience=10, restore_best_weights=True)
    model, ran = drive(cb, [1.0, 0.2, 0.7, 0.8])
    assert ran == 4 and not model.stop_training and cb.stopped_epoch == 0
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])


def test_start_from_epoch_ignores_warm_up(drive):
    cb = EarlyStopping(patience=0, start_from_epoch=3)
    _, ran = drive(cb, [1.0, 2.0, 3.0, 4.0, 5.0])
    # Epochs 0-2 ignored; epoch 3 is the first best, epoch 4 worse: stop.
    assert ran == 5 and cb.best == 4.0 and cb.stopped_epoch == 4


def test_missing_monitor_warns_and_never_stops(drive):
    cb = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(UserWarning, match="not available"):
        _, ran = drive(cb, [1.0, 2.0, 3.0], monitor="loss")
    assert ran == 3


def test_reusable_across_fits(drive):
    cb = EarlyStopping(patience=1)
    drive(cb, [1.0, 2.0])
    assert cb.stopped_epoch == 1
    _, ran = drive(cb, [5.0, 4.0, 3.0])
    assert ran == 3 and cb.stopped_epoch == 0 and cb.best == 3.0


def test_in_fit_stops_and_restores_the_best_weights():
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32")
    model = fl.Sequential([fl.layers.Dense(1, input_shape=(3,))])
    model.compile(fl.optimizers.SGD(0.05), "mse")
    snapshots = []
    record = fl.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: snapshots.append((logs["loss"], model.get_weights())))
    # A rising loss is stopped once it has not improved for 2 epochs.
    bad = fl.callbacks.LearningRateScheduler(lambda epoch: 0.05 if epoch < 3 else 3.0)
    es = EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = model.fit(x, y, epochs=30, batch_size=16, verbose=0, shuffle=False,
                         callbacks=[bad, record, es])
    losses = hist.history["loss"]
    assert len(losses) < 30 and es.stopped_epoch == len(losses) - 1
    best = int(np.nanargmin(losses))
    assert es.best_epoch == best
    for a, b in zip(model.get_weights(), snapshots[best][1]):
        np.testing.assert_array_equal(a, b)
