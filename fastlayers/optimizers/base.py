"""The optimizer base class: hyperparameters, state and the per-step scalars.

An optimizer is data the engine executes.  Python decides everything here, once per
step, in :meth:`Optimizer.begin_step`: the kind of update (:attr:`Optimizer.kind`, an
``OPT_*`` code of ``fastlayers._codes``) and a float64 array ``hyper`` of this
step's scalars (scheduled learning rate, weight decay, clip thresholds, bias
corrections).  The kernel ``update_one`` of ``csrc/_optim.pxd`` applies them to one
weight; the engine's compiled step and :meth:`Optimizer.apply` (the eager path) both
call it.  The protocol the engine follows for one step::

    hyper = opt.begin_step()            # changes nothing; may raise
    slots = opt.slots_for(w)            # per weight, same arrays every step
    if opt.global_clipnorm is not None: # after every gradient is complete
        hyper[H_GSCALE] = opt.global_norm_scale(sum of sq_norm(g) over all g)
    update_one(opt.kind, hyper, w, g, *slots)  for every weight
    opt.end_step()                      # iterations += 1 (and Nadam's product)

Formulas and defaults are Keras 3's (keras/src/optimizers/*.py): gradients are
clipped first (``clipnorm`` per weight, ``global_clipnorm`` over all of them, or
``clipvalue``: one of the three at most), then the decoupled weight decay
``w -= w * weight_decay * lr``, then the update.
"""
from __future__ import annotations

import array
import inspect
import math
import numbers
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .. import _codes, ops
from .._codes import H_CLIPNORM, H_CLIPVALUE, H_GSCALE, H_LR, H_WD, HYPER_LEN, SLOT_NAMES
from . import schedules as _schedules

_MISSING = object()
_INF = math.inf


# ---------------------------------------------------------------------------
# Checks of one hyperparameter value: return it as stored, or raise with the tail of
# a message ("must be ..., got ...") that _Param prefixes with optimizer and argument.

def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"must be finite, got {value!r}")
    return v


def _in_range(low: float, high: float, high_open: bool) -> Callable[[Any], float]:
    bracket = ")" if high_open else "]"

    def check(value: Any) -> float:
        v = _real(value)
        if v < low or v > high or (high_open and v >= high):
            raise ValueError(f"must be in [{low:g}, {high:g}{bracket}, got {value!r}")
        return v
    return check


def _positive(value: Any) -> float:
    v = _real(value)
    if v <= 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return v


def _non_negative(value: Any) -> float:
    v = _real(value)
    if v < 0:
        raise ValueError(f"must be >= 0, got {value!r}")
    return v


def _optional(check: Callable[[Any], float]) -> Callable[[Any], Optional[float]]:
    def optional(value: Any) -> Optional[float]:
        return None if value is None else check(value)
    return optional


def _flag(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"must be a bool, got {value!r}")


unit_interval = _in_range(0.0, 1.0, high_open=False)       # momentum
unit_interval_open = _in_range(0.0, 1.0, high_open=True)   # decay rates: 1 would divide by 0
positive = _positive                                       # epsilon: 0 makes 0/0
non_negative = _non_negative
flag = _flag


class _Param:
    """A validated hyperparameter: assigning a bad value raises and changes nothing."""

    def __init__(self, check: Callable[[Any], Any], doc: str = ""):
        self.check = check
        self.__doc__ = doc

    def __set_name__(self, owner, name: str) -> None:
        self.name = name
        self.attr = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj.__dict__[self.attr]

    def __set__(self, obj, value) -> None:
        try:
            v = self.check(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{obj._label()}: {self.name} {exc}") from None
        old = obj.__dict__.get(self.attr, _MISSING)
        obj.__dict__[self.attr] = v
        try:
            obj._check_together()
        except ValueError:
            if old is _MISSING:
                del obj.__dict__[self.attr]
            else:
                obj.__dict__[self.attr] = old
            raise
        obj._version += 1


def _weight_array(w: Any, where: str) -> np.ndarray:
    """The array an optimizer updates in place for ``w`` (a Weight or an ndarray)."""
    a = getattr(w, "value", w)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{where} must be a Weight or a numpy array, got {type(w).__name__}")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{where} has dtype {a.dtype}; expected float32 or float64")
    if not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{where} must be a writeable C-contiguous array")
    return a


def _accepts_step(fn: Callable) -> bool:
    """Whether a learning-rate callable takes the step (else it takes no argument,
    as Keras 3 calls plain callables)."""
    if isinstance(fn, _schedules.LearningRateSchedule):
        return True
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL):
            return True
    return False


# Keras 3 arguments fastlayers accepts only at their defaults (a Keras config carries them).
_KERAS_DEFAULTS = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                   "loss_scale_factor": None, "gradient_accumulation_steps": None}


class Optimizer:
    """Base class of the optimizers: hyperparameters, per-weight state, one step.

    Subclasses set ``_step_dependent`` when their scalars depend on the step count,
    and implement ``kind`` and ``_scalars(lr, t)`` (the ``H_A``.. slots of ``hyper``).
    """

    _step_dependent = False   # per-step scalars depend on iterations (bias corrections)
    _state_names: Tuple[str, ...] = ()   # optimizer-level state saved by get_state

    weight_decay = _Param(_optional(_non_negative),
                          "Decoupled weight decay: ``w -= w * weight_decay * lr`` each step.")
    clipnorm = _Param(_optional(_positive), "Clip each weight's gradient to this L2 norm.")
    clipvalue = _Param(_optional(_positive), "Clip each gradient element to [-v, v].")
    global_clipnorm = _Param(_optional(_positive),
                             "Clip all gradients together to this global L2 norm.")

    def __init__(self, learning_rate: Any, weight_decay: Optional[float] = None,
                 clipnorm: Optional[float] = None, clipvalue: Optional[float] = None,
                 global_clipnorm: Optional[float] = None, name: Optional[str] = None,
                 **kwargs):
        d = self.__dict__
        d["_version"] = 0
        d["_iterations"] = 0
        d["_slots"] = {}            # id(weight) -> [weight, {slot name: array}, kind, tuple]
        d["_buf"] = array.array("d", [0.0] * HYPER_LEN)
        d["_hyper"] = np.frombuffer(d["_buf"], dtype=np.float64)
        d["_cache_version"], d["_cache_lr"], d["_cache_step"] = -1, None, -1
        if name is None:
            from ..engine.layer import _snake, unique_name
            name = unique_name(_snake(type(self).__name__))
        self.name = name
        self._keras_extras(kwargs)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            raise ValueError(f"{self._label()}: Only one of `clipnorm`, `clipvalue` and "
                             f"`global_clipnorm` can be set. Received: clipnorm={clipnorm}, "
                             f"clipvalue={clipvalue}, global_clipnorm={global_clipnorm}")
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm

    def _keras_extras(self, kwargs: Dict[str, Any]) -> None:
        if kwargs.pop("decay", None) is not None:
            warnings.warn("Argument `decay` is no longer supported and will be ignored.",
                          stacklevel=3)
        use_ema = bool(kwargs.get("use_ema", False))
        for key, default in _KERAS_DEFAULTS.items():
            if key in kwargs:
                value = kwargs.pop(key)
                if key.startswith("ema_") and not use_ema:
                    continue  # Keras reads these only with use_ema
                if value != default and not (key == "use_ema" and not value):
                    raise ValueError(f"{self._label()}: {key}={value!r} is not supported "
                                     f"(only the default, {default!r})")
        if kwargs:
            raise ValueError(f"{self._label()}: Argument(s) not recognized: {kwargs}")

    def _label(self) -> str:
        return f"{type(self).__name__} {self.__dict__.get('name', '?')!r}"

    def _check_together(self) -> None:
        """Constraints between hyperparameters (after one was set; raises ValueError)."""
        d = self.__dict__
        clips = [(k, d.get("_" + k)) for k in ("clipnorm", "clipvalue", "global_clipnorm")]
        if sum(v is not None for _, v in clips) > 1:
            got = ", ".join(f"{k}={v}" for k, v in clips)
            raise ValueError(f"{self._label()}: Only one of `clipnorm`, `clipvalue` and "
                             f"`global_clipnorm` can be set. Received: {got}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} iterations={self._iterations}>"

    # ------------------------------------------------------------------ learning rate, step

    @property
    def learning_rate(self) -> float:
        """This step's learning rate (a schedule evaluated at ``iterations``, as in Keras).

        Assign a float, a ``schedules.LearningRateSchedule`` or a callable taking the step
        (or no argument).
        """
        return self._lr_at(self._iterations)

    @learning_rate.setter
    def learning_rate(self, value: Any) -> None:
        d = self.__dict__
        if isinstance(value, _schedules.LearningRateSchedule) or (
                callable(value) and not isinstance(value, numbers.Number)):
            d["_lr_fn"], d["_lr_takes_step"], d["_lr"] = value, _accepts_step(value), None
        else:
            try:
                v = _non_negative(value)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{self._label()}: learning_rate {exc}") from None
            d["_lr_fn"], d["_lr_takes_step"], d["_lr"] = None, False, v
        self._version += 1

    @property
    def learning_rate_schedule(self) -> Optional[Callable]:
        """The schedule or callable behind ``learning_rate``, or None for a constant."""
        return self._lr_fn

    def _lr_at(self, step: int) -> float:
        fn = self._lr_fn
        if fn is None:
            return self._lr
        value = fn(step) if self._lr_takes_step else fn()
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{self._label()}: the learning rate schedule {fn!r} returned "
                             f"{value!r} at step {step}; expected a finite number >= 0")
        return v

    @property
    def iterations(self) -> int:
        """Steps taken so far (Keras's ``iterations``)."""
        return self._iterations

    @iterations.setter
    def iterations(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{self._label()}: iterations must be an integer, got {value!r}")
        if value < 0:
            raise ValueError(f"{self._label()}: iterations must be >= 0, got {value!r}")
        self.__dict__["_iterations"] = int(value)

    # ------------------------------------------------------------------ what the engine runs

    @property
    def kind(self) -> int:
        """The ``OPT_*`` code of the update, from the current hyperparameters."""
        raise NotImplementedError(
            f"{self._label()}: an optimizer subclass must define `kind` (an OPT_* code of "
            "fastlayers._codes) and `_scalars(lr, t)`; the kernel runs the update, so a "
            "Python `update_step` is not supported")

    @property
    def n_slots(self) -> int:
        """How many state arrays each weight has under the current ``kind`` (0..3)."""
        return _codes.N_SLOTS[self.kind]

    def _scalars(self, lr: float, t: int) -> Sequence[float]:
        """The kind-specific slots ``H_A``.. of ``hyper`` for step ``t`` (from 1)."""
        return ()

    def _fill_step(self, buf: array.array, lr: float, t: int) -> None:
        """Rewrite the ``H_A``.. slots that depend on the learning rate or the step ``t``
        (bias corrections); the others change only with the hyperparameters."""

    def begin_step(self) -> np.ndarray:
        """Fill and return this step's float64 scalars (``HYPER_LEN``; layout in
        ``fastlayers._codes``).  The same array every call; changes no state, so a step
        that fails after it leaves the optimizer as it was."""
        d = self.__dict__
        buf = d["_buf"]
        step = d["_iterations"]
        lr = d["_lr"] if d["_lr_fn"] is None else self._lr_at(step)
        # The scalars are a function of (hyperparameters, lr, step): refill only what
        # changed.  A schedule is called every step (a user's callable need not be pure).
        if d["_version"] != d["_cache_version"]:
            wd, cv, cn = d["_weight_decay"], d["_clipvalue"], d["_clipnorm"]
            buf[H_LR] = lr
            buf[H_WD] = lr * wd if wd else 0.0
            buf[H_CLIPVALUE] = _INF if cv is None else cv
            buf[H_CLIPNORM] = _INF if cn is None else cn
            i = H_GSCALE + 1
            for v in self._scalars(lr, step + 1):
                buf[i] = v
                i += 1
            while i < HYPER_LEN:
                buf[i] = 0.0
                i += 1
            d["_cache_version"], d["_cache_lr"], d["_cache_step"] = d["_version"], lr, step
        elif lr != d["_cache_lr"] or (self._step_dependent and step != d["_cache_step"]):
            wd = d["_weight_decay"]
            buf[H_LR] = lr
            buf[H_WD] = lr * wd if wd else 0.0
            self._fill_step(buf, lr, step + 1)
            d["_cache_lr"], d["_cache_step"] = lr, step
        buf[H_GSCALE] = 1.0  # the engine may have written last step's factor
        return d["_hyper"]

    def global_norm_scale(self, sq_norm: float) -> float:
        """The factor ``H_GSCALE`` for gradients whose squares sum to ``sq_norm``
        (Keras's ``clip_by_global_norm``: 1 within the norm, NaN for a non-finite one)."""
        c = self._global_clipnorm
        norm = math.sqrt(sq_norm) if sq_norm >= 0 else math.nan
        if c is None:
            return 1.0
        if not math.isfinite(norm):
            return math.nan
        return 1.0 if norm <= c else c / norm

    def end_step(self) -> None:
        """The step happened: ``iterations += 1`` (subclasses with optimizer-level
        state, Nadam's momentum product, advance it too)."""
        self.__dict__["_iterations"] += 1

    def slots_for(self, weight: Any) -> Tuple[np.ndarray, ...]:
        """The weight's state arrays for the current ``kind``: created once (zeros, or
        the optimizer's initial value), same shape and dtype, C-contiguous, the same
        array objects every step.  Keyed by the weight object, which is kept alive."""
        rec = self._slots.get(id(weight))
        kind = self.kind
        if rec is not None and rec[2] == kind:
            return rec[3]
        arr = _weight_array(weight, f"{self._label()}: weight {getattr(weight, 'path', '')}")
        if rec is None:
            rec = [weight, {}, None, ()]
            self._slots[id(weight)] = rec
        named = rec[1]
        names = SLOT_NAMES[kind]
        for n in names:
            if n not in named:
                named[n] = self._new_slot(n, arr)
        rec[2], rec[3] = kind, tuple(named[n] for n in names)
        return rec[3]

    def _slot(self, weight: Any, n: int) -> Tuple[np.ndarray, ...]:
        """The first ``n`` slots of ``weight``."""
        return self.slots_for(weight)[:n]

    def _new_slot(self, name: str, like: np.ndarray) -> np.ndarray:
        return np.zeros(like.shape, dtype=like.dtype)

    @property
    def fusable(self) -> bool:
        """Plain SGD with nothing between gradient and update (no clipping, no weight
        decay): the engine may then update single-use weights inside the backward pass
        (one GEMM into W).  Read at compile and every step."""
        d = self.__dict__
        return self.kind == _codes.OPT_SGD and all(
            d.get(k) is None for k in ("_weight_decay", "_clipnorm", "_clipvalue",
                                       "_global_clipnorm"))

    # ------------------------------------------------------------------ the eager step

    def apply(self, weights: Sequence[Any], grads: Sequence[Any]) -> None:
        """One step on ``weights`` (Weights or float arrays, updated in place) with
        ``grads`` (None entries are skipped).  Validated first: a bad call raises and
        changes neither weights nor optimizer state.  (Keras 3's ``apply`` takes
        ``(grads, variables)``; this keeps fastlayers's ``(weights, grads)`` order.)"""
        if len(weights) != len(grads):
            raise ValueError(f"{self._label()}: {len(weights)} weights but "
                             f"{len(grads)} gradients")
        items: List[Tuple[Any, np.ndarray, np.ndarray]] = []
        seen = set()
        for i, (w, g) in enumerate(zip(weights, grads)):
            if g is None:
                continue
            where = f"{self._label()}: weight {getattr(w, 'path', i)!s}"
            arr = _weight_array(w, where)
            if id(arr) in seen:
                raise ValueError(f"{where} appears twice; it would be updated twice")
            seen.add(id(arr))
            g = np.asarray(g)
            if g.dtype.kind not in "fiu":
                raise TypeError(f"{where}: gradient has dtype {g.dtype}; expected real numbers")
            if g.shape != arr.shape:
                raise ValueError(f"{where}: gradient has shape {g.shape}, expected {arr.shape}")
            if g.dtype != arr.dtype or not g.flags.c_contiguous:
                g = np.array(g, dtype=arr.dtype, order="C")
            items.append((w, arr, g))
        hyper = self.begin_step()
        kind = self.kind
        groups: Dict[np.dtype, Tuple[list, list, list]] = {}
        n = _codes.N_SLOTS[kind]
        for w, arr, g in items:
            ps, gs, ss = groups.setdefault(arr.dtype, ([], [], [[] for _ in range(n)]))
            ps.append(arr)
            gs.append(g)
            for j, s in enumerate(self.slots_for(w)):
                ss[j].append(s)
        if self._global_clipnorm is not None and items:
            hyper[H_GSCALE] = self.global_norm_scale(sum(ops.sq_norm(g) for _, _, g in items))
        for ps, gs, ss in groups.values():
            ops.optimizer_update(kind, hyper, ps, gs, ss)
        self.end_step()

    def apply_gradients(self, grads_and_vars: Iterable) -> int:
        """Keras's form: an iterable of ``(gradient, weight)`` pairs; returns ``iterations``."""
        pairs = list(grads_and_vars)
        self.apply([w for _, w in pairs], [g for g, _ in pairs])
        return self._iterations

    # ------------------------------------------------------------------ state

    def _get_opt_state(self) -> List[np.ndarray]:
        return []

    def _set_opt_state(self, arrays: Sequence[np.ndarray]) -> None:
        pass

    def get_state(self, weights: Sequence[Any]) -> List[np.ndarray]:
        """Copies of ``[iterations (int64), optimizer-level state..., each weight's
        slots in the order of weights]``, for saving."""
        out = [np.array(self._iterations, dtype=np.int64)] + self._get_opt_state()
        for w in weights:
            out.extend(s.copy() for s in self.slots_for(w))
        return out

    def set_state(self, weights: Sequence[Any], arrays: Sequence[Any]) -> None:
        """Restore what :meth:`get_state` returned for the same weights, all or nothing
        (every array is checked before anything is written)."""
        targets: List[Tuple[str, Optional[np.ndarray]]] = [("iterations", None)]
        targets += [(n, None) for n in self._state_names]
        for w in weights:
            path = getattr(w, "path", "weight")
            targets += [(f"{path} slot {n}", s)
                        for n, s in zip(SLOT_NAMES[self.kind], self.slots_for(w))]
        arrays = list(arrays)
        if len(arrays) != len(targets):
            raise ValueError(f"{self._label()}: set_state expects {len(targets)} arrays "
                             f"(iterations, {len(self._state_names)} optimizer state, "
                             f"{len(targets) - 1 - len(self._state_names)} slots), "
                             f"got {len(arrays)}")
        values = []
        for (label, target), a in zip(targets, arrays):
            a = np.asarray(a)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{self._label()}: set_state {label} has dtype {a.dtype}")
            shape = () if target is None else target.shape
            if a.shape != shape:
                raise ValueError(f"{self._label()}: set_state {label} has shape {a.shape}, "
                                 f"expected {shape}")
            values.append(a)
        it = values[0]
        if not (np.isfinite(it) and float(it) == int(it) and int(it) >= 0):
            raise ValueError(f"{self._label()}: set_state iterations must be a "
                             f"non-negative integer, got {it!r}")
        k = 1 + len(self._state_names)
        self._check_opt_state(values[1:k])
        self.__dict__["_iterations"] = int(it)
        self._set_opt_state(values[1:k])
        for (_, target), a in zip(targets[k:], values[k:]):
            np.copyto(target, a, casting="unsafe")
        self._version += 1

    def _check_opt_state(self, arrays: Sequence[np.ndarray]) -> None:
        pass

    @property
    def variables(self) -> List[np.ndarray]:
        """Keras-3-style list: ``iterations`` (a copy), optimizer-level state, then every
        slot array created so far (the live arrays), per weight in first-use order."""
        out = [np.array(self._iterations, dtype=np.int64)] + self._get_opt_state()
        for rec in self._slots.values():
            out.extend(rec[1].values())
        return out

    # ------------------------------------------------------------------ config

    def get_config(self) -> Dict[str, Any]:
        """Keras's config: constructor arguments (a schedule as ``{"class_name",
        "config"}``; a plain callable as itself, which is not JSON-serializable)."""
        fn = self._lr_fn
        if fn is None:
            lr: Any = self._lr
        elif isinstance(fn, _schedules.LearningRateSchedule):
            lr = _schedules.serialize(fn)
        else:
            lr = fn
        cfg = {"name": self.name, "learning_rate": lr, "weight_decay": self._weight_decay,
               "clipnorm": self._clipnorm, "global_clipnorm": self._global_clipnorm,
               "clipvalue": self._clipvalue}
        cfg.update(_KERAS_DEFAULTS)
        return cfg

    @classmethod
    def from_config(cls, config: Dict[str, Any], custom_objects: Optional[Dict] = None):
        """The optimizer ``get_config()`` describes (fresh state)."""
        config = dict(config)
        lr = config.get("learning_rate")
        if isinstance(lr, dict):
            config["learning_rate"] = _schedules.deserialize(lr, custom_objects)
        return cls(**config)
