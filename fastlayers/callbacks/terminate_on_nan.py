"""``TerminateOnNaN``: stop training at the first batch whose loss is NaN or infinite."""
from __future__ import annotations

import math

from .callback import Callback


class TerminateOnNaN(Callback):
    """Keras's ``TerminateOnNaN``: sets ``model.stop_training`` (or, with
    ``raise_error=True``, raises ``RuntimeError``) when a batch's loss is NaN/Inf."""

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = bool(raise_error)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isnan(loss) or math.isinf(loss):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. "
                                   f"Loss value: {loss}. Terminating training immediately.")
            print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True
