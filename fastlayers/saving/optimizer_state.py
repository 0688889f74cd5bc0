"""The optimizer state beside the weights: ``optimizer/keys`` and ``optimizer/vars/<i>``.

``optimizer/keys`` names, in order, the weight entries (``layers/.../vars/<i>``) the
optimizer updates (the compiled set); ``optimizer/vars/<i>`` are the arrays of
``optimizer.get_state(those weights)``.  Like Keras, weights files carry the state
of a compiled model's optimizer, and loading restores it when the model is compiled
for the same weights.
"""
from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional

import numpy as np

from . import weights as _weights
from .compile_config import compiled_state


def _keys(model, compiled) -> list:
    table, _ = _weights.tables(model)
    key_of: Dict[int, str] = {}
    for k, w in table:
        key_of.setdefault(id(w), k)
    return [key_of.get(id(w)) for w in compiled]


def optimizer_arrays(model) -> Dict[str, np.ndarray]:
    """The entries for a compiled model's optimizer state (``{}`` when not compiled)."""
    state = compiled_state(model)
    if state is None:
        return {}
    opt, compiled = state
    out = {"optimizer/keys": np.array(_keys(model, compiled), dtype=np.str_)}
    for i, a in enumerate(opt.get_state(compiled)):
        out[f"optimizer/vars/{i}"] = np.asarray(a)
    return out


def plan_restore(model, arrays: Dict[str, np.ndarray], where: str) -> Optional[Callable[[], None]]:
    """Check the saved optimizer state against ``model``; return the step that sets it.

    ``None`` when there is nothing to restore (no state saved, model not compiled, or
    compiled for other weights, with a warning).  A state that does not fit raises a
    ValueError naming the entry, before anything is changed.
    """
    state = compiled_state(model)
    if state is None or "optimizer/keys" not in arrays:
        return None
    opt, compiled = state
    saved_keys = [str(k) for k in np.atleast_1d(arrays["optimizer/keys"])]
    if arrays["optimizer/keys"].dtype.kind != "U":
        raise ValueError(f"{where}: entry 'optimizer/keys' must be an array of strings")
    if saved_keys != _keys(model, compiled):
        warnings.warn(f"{where}: the model is compiled for other trainable weights than the "
                      f"saved optimizer state was ({len(saved_keys)} saved, {len(compiled)} "
                      f"now; a compile that was stale when saved does this); the optimizer "
                      f"state is not restored", UserWarning, stacklevel=4)
        return None
    saved = []
    while f"optimizer/vars/{len(saved)}" in arrays:
        saved.append(arrays[f"optimizer/vars/{len(saved)}"])
    current = opt.get_state(compiled)
    if len(saved) != len(current):
        raise ValueError(f"{where}: {len(saved)} optimizer/vars entries, the model's "
                         f"{type(opt).__name__} has {len(current)}")
    for i, (a, b) in enumerate(zip(saved, current)):
        if a.shape != b.shape or a.dtype.kind != np.asarray(b).dtype.kind:
            raise ValueError(f"{where}: entry 'optimizer/vars/{i}' has {a.dtype} {a.shape}, "
                             f"expected {np.asarray(b).dtype} {np.shape(b)}")

    def restore() -> None:
        opt.set_state(compiled, [a.astype(np.asarray(b).dtype, copy=False)
                                 for a, b in zip(saved, current)])

    return restore
