"""Losses and updates added by layers (Keras 2's ``add_loss`` / ``add_update``).

A layer keeps two kinds of entries.  *Standing* ones are added outside any run
(in ``build``, or ``model.add_loss(lambda: ...)`` by the user) and stay.  *Run*
ones are added while the layer runs -- inside its ``call``/``forward`` during an
eager call, a dry run, or a model's step -- and belong to that run: the next run
of the layer replaces them.  A model's step:

* clears the run entries of the layers it reaches before it starts;
* adds the value of every added loss (standing and run) to the total loss it
  reports (training and evaluation, as Keras 2's ``total_loss``);
* after a *successful training* step only, applies every update (standing and
  run); evaluation and prediction never apply them.

Added losses are numbers to NumPy layers: they contribute no gradient (a layer's
``backprop`` must include the gradient of its own added loss if it should train).
Nothing here runs while no live layer holds an entry (``HOLDERS``), so models
without added losses or updates keep the executor's fast paths.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Iterable, List

import numpy as np

# The layers holding entries; while it is empty, steps skip this module entirely.
HOLDERS: "weakref.WeakSet" = weakref.WeakSet()


def active() -> bool:
    """Whether some live layer holds an added loss or update."""
    return len(HOLDERS) > 0

_STATE = threading.local()


def _depth() -> int:
    return getattr(_STATE, "depth", 0)


def _entries(layer, kind: str, scope: str) -> list:
    key = f"_{scope}_{kind}"
    d = layer.__dict__
    if key not in d:
        d[key] = []
    return d[key]


def _check_loss(layer, value):
    if callable(value):
        return value
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim != 0:
        raise TypeError(f"Layer {layer.name!r}: add_loss expects a number or a zero-argument "
                        f"callable returning one, got {value!r}")
    return float(a)


def _check_update(layer, value):
    from .weight import Weight

    if callable(value):
        return value
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Weight):
        w, new = value
        if not callable(new):
            new = np.asarray(new)
            if new.shape != w.shape:
                raise ValueError(f"Layer {layer.name!r}: add_update for {w.path!r} gives shape "
                                 f"{new.shape}, the weight has shape {w.shape}")
            new = new.copy()
        return (w, new)
    if isinstance(value, tuple):
        raise TypeError(f"Layer {layer.name!r}: add_update expects a zero-argument callable or a "
                        f"pair (weight, new_value) with a weight from layer.weights, got "
                        f"{value!r}")
    # Anything else is kept for bookkeeping (Keras 2 keeps any op; get_updates_for lists
    # it) and refused with a clear error if a training step has to run it.
    return value


def _inputs_key(inputs):
    if inputs is None:
        return None
    seq = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return tuple(id(t) for t in seq)


def add(layer, kind: str, values, inputs=None) -> None:
    """Register losses or updates on ``layer`` (run entries inside a run, else standing).

    ``inputs`` makes them conditional on those inputs, for ``get_losses_for`` /
    ``get_updates_for`` (Keras 2); they run like the others.
    """
    items = list(values) if isinstance(values, list) else [values]
    check = _check_loss if kind == "losses" else _check_update
    checked = [check(layer, v) for v in items]  # all checked before any is kept
    scope = "run" if _depth() > 0 else "standing"
    _entries(layer, kind, scope).extend(checked)
    _entries(layer, f"{kind}_for", scope).extend([_inputs_key(inputs)] * len(checked))
    if checked:
        HOLDERS.add(layer)


def get_for(layer, kind: str, inputs) -> list:
    """The entries of ``layer`` added with ``inputs`` (``None``: the unconditional ones)."""
    key = _inputs_key(inputs)
    d = layer.__dict__
    out = []
    for scope in ("standing", "run"):
        out += [e for e, k in zip(d.get(f"_{scope}_{kind}", []),
                                  d.get(f"_{scope}_{kind}_for", [])) if k == key]
    return out


def _reset_run(d: dict, kind: str) -> None:
    d[f"_run_{kind}"] = []
    d[f"_run_{kind}_for"] = []


def _layers(layer, skip_frozen: bool = False) -> List[object]:
    """``layer`` and, for a container, every layer and container it reaches (once each).

    ``skip_frozen`` leaves out a layer or container whose ``trainable`` is false, with
    everything inside it (Keras 2: a frozen layer or model has no ``updates``).
    """
    from .container import Container

    out, seen = [], set()

    def visit(l):
        if id(l) in seen or (skip_frozen and not l.trainable):
            return
        seen.add(id(l))
        out.append(l)
        if isinstance(l, Container):
            for inner in l.layers:
                visit(inner)

    visit(layer)
    return out


def collect(layer, kind: str) -> list:
    """Every entry of ``kind`` of ``layer`` and the layers it reaches, standing first.

    Updates of frozen layers and of layers inside a frozen container are left out
    (Keras 2: ``updates`` is ``[]`` for a layer or model with ``trainable=False``).
    """
    out = []
    for l in _layers(layer, skip_frozen=kind == "updates"):
        d = l.__dict__
        out += d.get(f"_standing_{kind}", [])
        out += d.get(f"_run_{kind}", [])
    return out


def _own(layer, kind: str) -> list:
    d = layer.__dict__
    return list(d.get(f"_standing_{kind}", [])) + list(d.get(f"_run_{kind}", []))


def loss_values(layer) -> List[float]:
    """The added losses of ``layer`` (and its layers), callables evaluated now."""
    return [float(l()) if callable(l) else float(l) for l in collect(layer, "losses")]


def _clear_run(layers: Iterable) -> None:
    for l in layers:
        d = l.__dict__
        for kind in ("losses", "updates"):
            if d.get(f"_run_{kind}"):
                _reset_run(d, kind)
        _release(l)


def _release(layer) -> None:
    d = layer.__dict__
    if not any(d.get(f"_{scope}_{kind}") for scope in ("run", "standing")
               for kind in ("losses", "updates")):
        HOLDERS.discard(layer)


class run:
    """A run of ``layers``: their earlier run entries are cleared on entry.

    Entries added inside belong to the run; ``discard`` drops them on exit (a dry
    run on zeros).  Nested runs (a layer called inside another's ``call``) add to
    the outer run.  A plain class, not a generator: every eager call enters one.
    """

    __slots__ = ("layers", "discard")

    def __init__(self, layers, discard: bool = False):
        self.layers = layers
        self.discard = discard

    def __enter__(self):
        depth = getattr(_STATE, "depth", 0)
        if depth == 0 and HOLDERS:
            _clear_run(_layers_of(self.layers))
        _STATE.depth = depth + 1
        return self

    def __exit__(self, *exc):
        _STATE.depth -= 1
        if self.discard and HOLDERS:
            _clear_run(_layers_of(self.layers))
        return False


def _layers_of(layers) -> List[object]:
    out = []
    for l in layers:
        out += _layers(l)
    return out


class _Step:
    """What a model's step does with added losses and updates (see the module docstring).

    Standing losses are evaluated before the step runs, so a callable reading weights
    sees the values the step's loss was computed with (as Keras's one graph does);
    run losses are read after the layers added them.
    """

    def __init__(self, model, training: bool):
        self.model = model
        self.training = training
        self.layers = _layers(model) if active() else []
        self.before = sum(_values(l.__dict__.get("_standing_losses", ())) for l in self.layers)
        if training:
            # A standing update that cannot run fails before the step moves any weight.
            for l in self.layers:
                for u in l.__dict__.get("_standing_updates", ()):
                    _runnable(u)

    def total(self, total):
        """The step's total loss plus the model's added losses."""
        if not active():
            return total
        if not self.layers:
            self.layers = _layers(self.model)  # the first entry was added during this step
        extra = self.before + sum(_values(l.__dict__.get("_run_losses", ()))
                                  for l in self.layers)
        return float(total) + extra if extra else total

    def done(self, picture=None) -> None:
        """After a successful training step: apply every update of the model's layers.

        With the compiled ``picture`` (R4), a layer runs its updates when the picture
        reaches it along some path with every flag true; containers' own updates
        follow their live flags.
        """
        if not (self.training and active()):
            return
        if picture is None:
            updates = collect(self.model, "updates")
        else:
            from .container import Container

            live = {key[-1] for key, frozen in picture.frozen.items() if not frozen}
            updates = []
            for l in _layers(self.model):
                if isinstance(l, Container):
                    if l in _layers(self.model, skip_frozen=True):
                        updates += _own(l, "updates")
                elif id(l) in live:
                    updates += _own(l, "updates")
        for u in updates:
            _apply(u)
        # Run updates belong to this step: they have run.
        for l in _layers(self.model):
            if l.__dict__.get("_run_updates"):
                _reset_run(l.__dict__, "updates")
                _release(l)


def _values(losses) -> float:
    return sum(float(l()) if callable(l) else float(l) for l in losses)


def _runnable(update) -> None:
    if not (callable(update) or isinstance(update, tuple)):
        raise TypeError(f"add_update: {update!r} cannot run in a training step; an update is a "
                        f"zero-argument callable or a pair (weight, new_value)")


def _apply(update) -> None:
    if callable(update):
        update()
        return
    _runnable(update)
    w, new = update
    w.assign(new() if callable(new) else new)


@contextlib.contextmanager
def step(model, training: bool):
    """A model's step (training or evaluation) as a run of the model; yields a :class:`_Step`."""
    with run([model]):
        yield _Step(model, training)


def needed(program) -> bool:
    """Whether a step of ``program`` must go through :func:`step`.

    Only custom layers (callback ops) can add entries while a step runs, so a
    program without them needs it only while some entry exists.
    """
    if active():
        return True
    flag = program.__dict__.get("_may_add_extras")
    if flag is None:
        flag = program.__dict__["_may_add_extras"] = program.has_callbacks
    return flag
