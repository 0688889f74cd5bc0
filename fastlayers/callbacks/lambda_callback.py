"""``LambdaCallback``: a callback made of plain functions."""
from __future__ import annotations

from .callback import Callback

_HOOKS = ("on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
          "on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end",
          "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end")


class LambdaCallback(Callback):
    """Keras's ``LambdaCallback``: ``on_epoch_end=lambda epoch, logs: ...`` and so on.

    Epoch hooks take ``(epoch, logs)``, batch hooks ``(batch, logs)``, begin/end
    hooks ``(logs)``.  Other keyword arguments become attributes, as in Keras.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        given = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end)
        for name in list(kwargs):
            if name in _HOOKS:
                given[name] = kwargs.pop(name)
        self.__dict__.update(kwargs)
        for name, fn in given.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback: {name} must be callable, got {fn!r}")
                setattr(self, name, _with_default_logs(name, fn))


def _with_default_logs(name: str, fn):
    # Keras's signatures, with logs optional so a bare hook call works too.
    if name.endswith(("_begin", "_end")) and ("epoch" in name or "batch" in name):
        def hook(index, logs=None):
            return fn(index, logs)
    else:
        def hook(logs=None):
            return fn(logs)
    hook.__wrapped__ = fn
    return hook
