"""Callbacks: ``History`` (returned by ``fit``) and the base class."""
from __future__ import annotations

from typing import Dict, List, Optional


class Callback:
    """Base class; override the hooks you need (Keras's names)."""

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
    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None): pass
    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None): pass


class History(Callback):
    """Records each epoch's logs: ``history.history["loss"]`` is a list, one value per epoch."""

    def __init__(self):
        super().__init__()
        self.epoch: List[int] = []
        self.history: Dict[str, List[float]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)
