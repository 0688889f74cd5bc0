"""The shared part of callbacks that watch one logged quantity (min or max is better)."""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from .callback import Callback

# Names whose larger values are better; everything else with "loss"/"error" is minimised.
_MAXIMISED = ("acc", "accuracy", "auc", "precision", "recall", "f1", "r2", "iou")
_MINIMISED = ("loss", "error", "mse", "mae", "mape", "msle", "crossentropy", "hinge")


def direction_of(monitor: str) -> Optional[str]:
    """``"min"`` or ``"max"`` from a logged name (``val_`` prefix ignored), or None."""
    name = monitor[4:] if monitor.startswith("val_") else monitor
    name = name.lower()
    if name == "loss" or name.endswith("_loss"):
        return "min"
    parts = name.split("_")
    if any(p in _MAXIMISED for p in parts) or name.endswith("accuracy"):
        return "max"
    if any(p in _MINIMISED or p.endswith("error") for p in parts):
        return "min"
    return None


class MonitorCallback(Callback):
    """Tracks ``self.best`` of ``monitor`` with Keras's ``mode``/``min_delta`` rules.

    ``mode="auto"`` reads the direction from the name: losses and errors are
    minimised, accuracies (and AUC, precision, recall) maximised; any other name
    needs an explicit ``mode``.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "auto", baseline=None,
                 min_delta: float = 0.0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode {mode!r} is unknown, fallback to auto mode.",
                          stacklevel=3)
            mode = "auto"
        self.monitor = monitor
        self.mode = mode
        self.best = baseline
        self.min_delta = abs(float(min_delta))
        self._direction: Optional[str] = None

    def _set_monitor_op(self) -> None:
        direction = self.mode if self.mode != "auto" else direction_of(self.monitor)
        if direction is None:
            raise ValueError(
                f"{type(self).__name__} callback received monitor={self.monitor!r}, but cannot "
                f"tell whether that quantity should be maximized or minimized. Pass mode='max' "
                f"to monitor the highest value, or mode='min' for the lowest.")
        self._direction = direction

    @property
    def monitor_op(self):
        """``np.less`` or ``np.greater`` once the direction is known (else None)."""
        if self._direction is None:
            return None
        return np.less if self._direction == "min" else np.greater

    def _is_improvement(self, value, reference) -> bool:
        if self._direction is None:
            self._set_monitor_op()
        if reference is None:
            return True
        if self._direction == "min":
            return bool(value + self.min_delta < reference)
        return bool(value - self.min_delta > reference)

    def _monitor_value(self, logs, what: str):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"{what} conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}", stacklevel=3)
            return None
        return float(value)
