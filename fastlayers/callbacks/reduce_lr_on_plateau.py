"""``ReduceLROnPlateau``: multiply the learning rate by ``factor`` when progress stalls."""
from __future__ import annotations

import numpy as np

from .monitor import MonitorCallback


class ReduceLROnPlateau(MonitorCallback):
    """Keras's ``ReduceLROnPlateau``.

    After ``patience`` epochs without an improvement larger than ``min_delta``, the
    optimizer's ``learning_rate`` becomes ``max(lr * factor, min_lr)``; then
    ``cooldown`` epochs pass before waiting starts again.  The current rate is
    added to the epoch's logs as ``learning_rate``.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, **kwargs):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor}")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau: unexpected arguments {sorted(kwargs)}")
        self.factor = float(factor)
        self.min_lr = float(min_lr)
        self.patience = int(patience)
        self.verbose = verbose
        self.cooldown = int(cooldown)
        self.cooldown_counter = 0
        self.wait = 0

    def _reset(self) -> None:
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        if self._direction is None:
            self._set_monitor_op()
        optimizer = self.model.optimizer
        if logs is not None:
            logs["learning_rate"] = float(optimizer.learning_rate)
        current = self._monitor_value(logs, "Learning rate reduction")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(optimizer.learning_rate)
                # float32 comparison as Keras, so min_lr=1e-3 is "reached" at 0.0010000000474.
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
