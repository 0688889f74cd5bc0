"""CSVLogger, TerminateOnNaN, LambdaCallback, CallbackList, History, ProgbarLogger."""
import csv
import math

import numpy as np
import pytest

import fastlayers as fl
from fastlayers.callbacks import (Callback, CallbackList, CSVLogger, History, LambdaCallback,
                                  ProgbarLogger, TerminateOnNaN)


def log_epochs(cb, rows, FakeModel):
    cb.set_model(FakeModel())
    cb.on_train_begin()
    for e, logs in enumerate(rows):
        cb.on_epoch_end(e, dict(logs))
    cb.on_train_end()


def test_csv_columns_sorted_epoch_first(tmp_path, FakeModel):
    f = tmp_path / "log.csv"
    log_epochs(CSVLogger(str(f)), [{"loss": 1.0, "val_loss": 2.0, "acc": 0.5},
                                   {"loss": 0.5, "val_loss": 1.0, "acc": 0.75}], FakeModel)
    rows = list(csv.reader(open(f)))
    assert rows[0] == ["epoch", "acc", "loss", "val_loss"]
    assert rows[1] == ["0", "0.5", "1.0", "2.0"] and rows[2] == ["1", "0.75", "0.5", "1.0"]


def test_csv_without_validation_adds_val_columns_as_NA(tmp_path, FakeModel):
    f = tmp_path / "log.csv"
    log_epochs(CSVLogger(str(f), separator=";"), [{"loss": 1.0}], FakeModel)
    rows = list(csv.reader(open(f), delimiter=";"))
    assert rows == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"]]


def test_csv_append_writes_one_header(tmp_path, FakeModel):
    f = tmp_path / "log.csv"
    log_epochs(CSVLogger(str(f), append=True), [{"loss": 1.0, "val_loss": 1.0}], FakeModel)
    log_epochs(CSVLogger(str(f), append=True), [{"loss": 0.5, "val_loss": 0.5}], FakeModel)
    rows = list(csv.reader(open(f)))
    assert [r[0] for r in rows] == ["epoch", "0", "0"] and len(rows) == 3
    log_epochs(CSVLogger(str(f)), [{"loss": 0.1, "val_loss": 0.1}], FakeModel)
    assert len(list(csv.reader(open(f)))) == 2  # append=False starts afresh


def test_csv_in_fit(tmp_path):
    model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
    model.compile("sgd", "mse", metrics=["mae"])
    x = np.ones((10, 2), "float32")
    f = tmp_path / "fit.csv"
    hist = model.fit(x, np.zeros((10, 1), "float32"), epochs=3, verbose=0,
                     validation_split=0.2, callbacks=[CSVLogger(str(f))])
    rows = list(csv.DictReader(open(f)))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "mae", "val_loss", "val_mae"}
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(hist.history["val_loss"])


def test_terminate_on_nan_stops_after_that_batch(FakeModel):
    cb = TerminateOnNaN()
    model = FakeModel()
    cb.set_model(model)
    cb.on_train_batch_end(0, {"loss": 1.0})
    assert not model.stop_training
    cb.on_train_batch_end(1, {"loss": float("nan")})
    assert model.stop_training
    model.stop_training = False
    cb.on_train_batch_end(2, {"loss": float("inf")})
    assert model.stop_training
    with pytest.raises(RuntimeError, match="NaN or Inf"):
        TerminateOnNaN(raise_error=True).on_train_batch_end(0, {"loss": math.nan})


def test_terminate_on_nan_in_fit():
    model = fl.Sequential([fl.layers.Dense(1, input_shape=(2,))])
    model.compile(fl.optimizers.SGD(1e30), "mse")
    x = np.full((64, 2), 1e10, "float32")
    batches = []
    spy = LambdaCallback(on_train_batch_end=lambda b, logs: batches.append(logs["loss"]))
    with np.errstate(all="ignore"):
        hist = model.fit(x, np.ones((64, 1), "float32"), epochs=5, batch_size=8, verbose=0,
                         callbacks=[TerminateOnNaN(), spy])
    assert len(hist.history["loss"]) == 1
    assert not math.isfinite(batches[-1]) and all(math.isfinite(b) for b in batches[:-1])
    assert len(batches) < 8


def test_lambda_callback_hooks_and_extra_attributes(FakeModel):
    calls = []
    cb = LambdaCallback(on_train_begin=lambda logs: calls.append("tb"),
                        on_epoch_end=lambda e, logs: calls.append(("ee", e)),
                        on_test_batch_end=lambda b, logs: calls.append(("teb", b)),
                        note="hi")
    assert cb.note == "hi"
    cb.on_train_begin()
    cb.on_epoch_end(3, {})
    cb.on_epoch_begin(0)  # not given: the base no-op
    cb.on_test_batch_end(1, {})
    assert calls == ["tb", ("ee", 3), ("teb", 1)]
    with pytest.raises(TypeError, match="callable"):
        LambdaCallback(on_epoch_end=3)


class Recorder(Callback):
    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log

    def on_epoch_end(self, epoch, logs=None):
        self.log.append((self.name, epoch, dict(logs)))
        logs[self.name] = epoch


def test_callback_list_order_params_model_and_history(FakeModel):
    log = []
    a, b = Recorder("a", log), Recorder("b", log)
    model = FakeModel()
    cl = CallbackList([a, [b]], add_history=True, model=model, epochs=2, steps=5, verbose=0)
    assert len(cl) == 3 and isinstance(cl.callbacks[-1], History)
    assert a.model is model and b.params == {"epochs": 2, "steps": 5, "verbose": 0}
    cl.on_train_begin()
    logs = {"loss": 1.0}
    cl.on_epoch_end(0, logs)
    assert [x[0] for x in log] == ["a", "b"]
    assert log[1][2] == {"loss": 1.0, "a": 0}  # each sees what earlier ones added
    assert cl.history.history == {"loss": [1.0], "a": [0], "b": [0]}
    assert model.history is cl.history
    for hook in ("on_test_begin", "on_predict_end", "on_train_end"):
        getattr(cl, hook)()
    cl.on_predict_batch_begin(0)
    with pytest.raises(TypeError, match="not a fastlayers"):
        CallbackList([object()])


def test_train_batch_hooks_reach_the_old_on_batch_names():
    seen = []

    class Old(Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(batch)

    Old().on_train_batch_end(4, {})
    assert seen == [4]


def test_history_epoch_restarts_when_reused(FakeModel):
    h = History()
    h.set_model(FakeModel())
    h.on_train_begin()
    h.on_epoch_end(0, {"loss": 1.0})
    h.on_train_begin()
    h.on_epoch_end(0, {"loss": 2.0})
    assert h.epoch == [0] and h.history == {"loss": [1.0, 2.0]}


def test_progbar_logger_lines(capsys):
    cb = ProgbarLogger()
    cb.set_params({"epochs": 2, "steps": 3, "verbose": 1})
    cb.on_train_begin()
    for e in range(2):
        cb.on_epoch_begin(e)
        for b in range(3):
            cb.on_train_batch_end(b, {"loss": 0.5})
        cb.on_epoch_end(e, {"loss": 0.25, "val_loss": float("nan")})
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    finals = [l for l in out.splitlines() if l.startswith("3/3")]
    assert len(finals) == 2
    assert "loss: 0.2500" in finals[0] and "val_loss: NaN" in finals[0] and "/step" in finals[0]
    cb = ProgbarLogger()
    cb.set_params({"epochs": 1, "steps": None, "verbose": 2})
    cb.on_predict_begin()
    for b in range(4):
        cb.on_predict_batch_end(b)
    cb.on_predict_end()
    assert capsys.readouterr().out.startswith("4/4 - ")
