"""Weights by path, written as ``.npz`` (read with ``allow_pickle=False``), checked before use.

Entry names follow the model's structure: ``layers/<layer>/vars/<i>`` for the
``i``-th weight of a layer (``layers/<outer>/layers/<inner>/vars/<i>`` inside nested
containers), ``layers/<layer>/state/<key>`` for non-weight state (a Dropout's mask
counter), ``optimizer/vars/<i>`` for the optimizer state.  A layer reached along two
paths (used directly and inside a nested container) is written under both: a
reloaded model holds two copies of it (configs describe each container on its own,
as Keras's do), and both get its values.
"""
from __future__ import annotations

import io
import warnings
import zipfile
import zlib
from typing import Dict, List, Tuple

import numpy as np


def _walk(container, prefix: str, weights: list, states: list) -> None:
    from ..engine.container import Container

    for layer in container.layers:
        p = f"{prefix}layers/{layer.name}/"
        if isinstance(layer, Container):
            _walk(layer, p, weights, states)
            continue
        for i, w in enumerate(layer.weights):
            weights.append((f"{p}vars/{i}", w))
        state = getattr(layer, "_saveable_state", None)
        if state is not None:
            for k, a in state().items():
                states.append((f"{p}state/{k}", a))


def tables(model) -> Tuple[List[tuple], List[tuple]]:
    """``([(entry, Weight)], [(entry, state array)])`` in a fixed order."""
    weights: list = []
    states: list = []
    _walk(model, "", weights, states)
    return weights, states


def weight_arrays(model) -> Dict[str, np.ndarray]:
    """Every weight and state array of ``model`` by entry name (copies)."""
    weights, states = tables(model)
    out = {k: w.numpy() for k, w in weights}
    out.update((k, np.array(a)) for k, a in states)
    return out


def npz_bytes(arrays: Dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    for k, a in arrays.items():
        if a.dtype.hasobject:
            raise ValueError(f"Entry {k!r} is an object array; only numeric arrays are saved")
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_npz(data: bytes, where: str) -> Dict[str, np.ndarray]:
    """Every array of an npz; object arrays (pickles) are refused, never unpickled."""
    if not data.startswith(b"PK"):
        raise ValueError(f"{where}: not an npz (zip) weights file; it may be truncated or corrupt")
    out: Dict[str, np.ndarray] = {}
    key = None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            for key in npz.files:
                out[key] = npz[key]
    except ValueError as exc:
        if key is not None and "pickle" in str(exc):
            raise ValueError(f"{where}: array {key!r} holds Python objects (a pickle); it is "
                             f"refused, never unpickled") from None
        raise ValueError(f"{where}: array {key!r} cannot be read: {exc}") from None
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError,
            NotImplementedError) as exc:
        raise ValueError(f"{where}: corrupt or truncated weights file"
                         f"{'' if key is None else f' at array {key!r}'}: {exc}") from None
    return out


def plan_assignment(model, arrays: Dict[str, np.ndarray], where: str,
                    skip_mismatch: bool = False, allow_extra_prefixes=("optimizer/",)) -> list:
    """Check ``arrays`` against the model's weights; return ``[(target, value)]`` to copy.

    Nothing is assigned here, so a failing check leaves the model as it was.
    """
    weights, states = tables(model)
    known = {k for k, _ in weights} | {k for k, _ in states}
    extra = sorted(k for k in arrays if k not in known
                   and not any(k.startswith(p) for p in allow_extra_prefixes))
    if extra and not skip_mismatch:
        raise ValueError(f"{where}: entries {extra[:5]} match no weight of model "
                         f"{model.name!r}; the file was saved from a different model")
    plan = []
    skipped = []
    for k, w in weights:
        a = arrays.get(k)
        problem = None
        if a is None:
            problem = "is missing"
        elif a.shape != w.shape:
            problem = f"has shape {a.shape}, the weight {w.path!r} has shape {w.shape}"
        elif a.dtype != w.dtype:
            problem = f"has dtype {a.dtype}, the weight {w.path!r} has dtype {w.dtype}"
        if problem is not None:
            if skip_mismatch:
                skipped.append(k)
                continue
            raise ValueError(f"{where}: entry {k!r} {problem}")
        plan.append((w.value, a))
    for k, target in states:
        a = arrays.get(k)
        if a is None:
            continue  # state is optional: files from before it existed still load
        if a.shape != target.shape or a.dtype != target.dtype:
            if skip_mismatch:
                skipped.append(k)
                continue
            raise ValueError(f"{where}: entry {k!r} has {a.dtype} {a.shape}, expected "
                             f"{target.dtype} {target.shape}")
        plan.append((target, a))
    if skipped:
        warnings.warn(f"{where}: skipped {len(skipped)} mismatched entries: {skipped[:5]}",
                      UserWarning, stacklevel=3)
    return plan


def apply_assignment(plan) -> None:
    """Copy in place: the compiled fused step keeps pointers to these arrays."""
    for target, value in plan:
        np.copyto(target, value)
