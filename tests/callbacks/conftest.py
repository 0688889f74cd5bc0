"""A stand-in model for driving callbacks epoch by epoch, as fit would."""
import numpy as np
import pytest


class FakeOptimizer:
    def __init__(self, lr=0.1):
        self.learning_rate = lr


class FakeModel:
    """Weights are one array whose value is the epoch that produced it."""

    def __init__(self, lr=0.1):
        self.stop_training = False
        self.optimizer = FakeOptimizer(lr)
        self.weights = [np.zeros(2)]
        self.saved = []
        self.name = "fake"

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, ws):
        self.weights = [np.array(w) for w in ws]

    def save(self, path):
        self.saved.append(("model", path))
        open(path, "w").close()

    def save_weights(self, path):
        self.saved.append(("weights", path))
        open(path, "w").close()


def drive(cb, values, monitor="val_loss", model=None, extra=None):
    """Run ``cb`` over epochs whose ``monitor`` takes ``values``; weights = epoch number.

    Returns (model, epochs run).
    """
    model = model or FakeModel()
    cb.set_model(model)
    cb.set_params({"epochs": len(values), "steps": 1, "verbose": 0})
    cb.on_train_begin()
    ran = 0
    for epoch, v in enumerate(values):
        cb.on_epoch_begin(epoch)
        model.weights = [np.full(2, float(epoch))]
        logs = {monitor: v}
        logs.update(extra or {})
        cb.on_epoch_end(epoch, logs)
        ran += 1
        if model.stop_training:
            break
    cb.on_train_end()
    return model, ran


@pytest.fixture
def fake_model():
    return FakeModel()


@pytest.fixture(name="drive")
def _drive():
    return drive


@pytest.fixture(name="FakeModel")
def _fake_model_cls():
    return FakeModel
