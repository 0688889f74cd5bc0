"""``CallbackList``: one object that forwards every hook to a list of callbacks."""
from __future__ import annotations

from typing import Iterable, Optional

from .callback import Callback, History


class CallbackList(Callback):
    """Calls each hook on every callback, in order (Keras's ``CallbackList``).

    ``add_history``/``add_progbar`` append a :class:`History` / ``ProgbarLogger`` when
    the list has none; ``model`` and ``**params`` are passed to ``set_model`` and
    ``set_params`` of every callback.
    """

    def __init__(self, callbacks: Optional[Iterable[Callback]] = None, add_history: bool = False,
                 add_progbar: bool = False, model=None, **params):
        super().__init__()
        self.callbacks = list(_flatten(callbacks))
        for cb in self.callbacks:
            if not isinstance(cb, Callback) and not _duck_callback(cb):
                raise TypeError(f"CallbackList: {cb!r} is not a fastlayers.callbacks.Callback")
        self._history = next((c for c in self.callbacks if isinstance(c, History)), None)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        if add_progbar:
            from .progbar_logger import ProgbarLogger

            if not any(isinstance(c, ProgbarLogger) for c in self.callbacks):
                self.callbacks.append(ProgbarLogger())
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    @property
    def history(self) -> Optional[History]:
        """The list's :class:`History` (``None`` when it has none)."""
        return self._history

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self) -> int:
        return len(self.callbacks)

    def set_model(self, model) -> None:
        self.model = model
        if self._history is not None:
            model.history = self._history
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict) -> None:
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_test_begin(self, logs=None): self._call("on_test_begin", logs)
    def on_test_end(self, logs=None): self._call("on_test_end", logs)
    def on_predict_begin(self, logs=None): self._call("on_predict_begin", logs)
    def on_predict_end(self, logs=None): self._call("on_predict_end", logs)
    def on_batch_begin(self, batch, logs=None): self._call("on_batch_begin", batch, logs)
    def on_batch_end(self, batch, logs=None): self._call("on_batch_end", batch, logs)
    def on_train_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)
    def on_test_batch_begin(self, batch, logs=None): self._call("on_test_batch_begin", batch, logs)
    def on_test_batch_end(self, batch, logs=None): self._call("on_test_batch_end", batch, logs)
    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs)


def _duck_callback(cb) -> bool:
    return all(callable(getattr(cb, h, None)) for h in ("set_model", "set_params", "on_epoch_end"))


def _flatten(callbacks):
    if callbacks is None:
        return
    if isinstance(callbacks, CallbackList):
        yield from callbacks.callbacks
        return
    if isinstance(callbacks, Callback) or _duck_callback(callbacks):
        yield callbacks
        return
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"CallbackList: {callbacks!r} is not a fastlayers.callbacks.Callback "
                        f"(nor a list of them)")
    for cb in callbacks:
        yield from _flatten(cb)
