"""The callback base class and ``History`` (the object ``fit`` returns)."""
from __future__ import annotations

from typing import Dict, List, Optional


class Callback:
    """Base class; override the hooks you need (Keras's names and call order).

    ``fit`` calls ``on_train_begin``, then per epoch ``on_epoch_begin``, per batch
    ``on_train_batch_begin``/``on_train_batch_end``, and ``on_epoch_end`` with the
    epoch's logs (``val_*`` included); ``evaluate`` and ``predict`` call the
    ``on_test_*`` and ``on_predict_*`` hooks.  A callback sets
    ``self.model.stop_training = True`` to end ``fit`` after the current batch.
    """

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs: Optional[dict] = None): pass
    def on_train_end(self, logs: Optional[dict] = None): pass
    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None): pass
    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None): pass
    def on_test_begin(self, logs: Optional[dict] = None): pass
    def on_test_end(self, logs: Optional[dict] = None): pass
    def on_predict_begin(self, logs: Optional[dict] = None): pass
    def on_predict_end(self, logs: Optional[dict] = None): pass
    def on_test_batch_begin(self, batch: int, logs: Optional[dict] = None): pass
    def on_test_batch_end(self, batch: int, logs: Optional[dict] = None): pass
    def on_predict_batch_begin(self, batch: int, logs: Optional[dict] = None): pass
    def on_predict_batch_end(self, batch: int, logs: Optional[dict] = None): pass

    # Keras's backwards-compatible aliases: the train-batch hooks call these.
    def on_batch_begin(self, batch: int, logs: Optional[dict] = None): pass
    def on_batch_end(self, batch: int, logs: Optional[dict] = None): pass

    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None):
        self.on_batch_end(batch, logs=logs)


class History(Callback):
    """Records each epoch's logs: ``history.history["loss"]`` is a list, one value per epoch."""

    def __init__(self):
        super().__init__()
        self.epoch: List[int] = []
        self.history: Dict[str, List[float]] = {}

    def on_train_begin(self, logs=None):
        # As Keras: ``epoch`` restarts, ``history`` keeps growing when reused.
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
        if self.model is not None:
            self.model.history = self
