"""Learning-rate schedules (``fl.optimizers.schedules``): Keras 3's names, arguments,
defaults and formulas.

A schedule is a callable of the optimizer step -- ``optimizer.iterations`` before
the update, 0 on the first step -- returning the learning rate as a float.  It is
evaluated once per step, in Python, by ``Optimizer.begin_step`` (Keras computes the
same formulas in the dtype of ``initial_learning_rate``, float32 by default; here
they run in double).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional, Sequence

__all__ = [
    "LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay", "PiecewiseConstantDecay",
    "CosineDecay", "PolynomialDecay", "serialize", "deserialize",
]


def _number(cls: str, name: str, value: Any, positive: bool = False,
            allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{cls}: {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{cls}: {name} must be finite, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{cls}: Argument `{name}` must be > 0. Received: {name}={value!r}")
    return value


def _flag(cls: str, name: str, value: Any) -> bool:
    if isinstance(value, bool) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{cls}: {name} must be a bool, got {value!r}")


class LearningRateSchedule:
    """Base class: subclasses implement ``__call__(step) -> float`` and ``get_config``."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`.")

    def get_config(self) -> Dict[str, Any]:
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `get_config()` "
            "in order to be serializable.")

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "LearningRateSchedule":
        """The schedule ``get_config()`` describes."""
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored when
    ``staircase``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str = "ExponentialDecay"):
        c = type(self).__name__
        self.initial_learning_rate = _number(c, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(c, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _number(c, "decay_rate", decay_rate)
        self.staircase = _flag(c, "staircase", staircase)
        self.name = name

    def __call__(self, step: int) -> float:
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate) * float(self.decay_rate) ** p

    def get_config(self) -> Dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the ratio
    floored when ``staircase``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str = "InverseTimeDecay"):
        c = type(self).__name__
        self.initial_learning_rate = _number(c, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(c, "decay_steps", decay_steps, positive=True)
        self.decay_rate = _number(c, "decay_rate", decay_rate)
        self.staircase = _flag(c, "staircase", staircase)
        self.name = name

    def __call__(self, step: int) -> float:
        p = float(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return float(self.initial_learning_rate) / (1.0 + float(self.decay_rate) * p)

    def get_config(self) -> Dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last."""

    def __init__(self, boundaries: Sequence[float], values: Sequence[float],
                 name: str = "PiecewiseConstant"):
        c = type(self).__name__
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                f"{c}: The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                f"values={values} of length {len(values)}.")
        for i, b in enumerate(boundaries):
            _number(c, f"boundaries[{i}]", b)
        for i, v in enumerate(values):
            _number(c, f"values[{i}]", v)
        if any(b1 >= b2 for b1, b2 in zip(boundaries, boundaries[1:])):
            raise ValueError(f"{c}: boundaries must be strictly increasing, got {boundaries}")
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step: int) -> float:
        for b, v in zip(self.boundaries, self.values):
            if step <= b:
                return float(v)
        return float(self.values[-1])

    def get_config(self) -> Dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Optional linear warmup from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then cosine decay over ``decay_steps`` to ``alpha`` times the
    starting rate: ``lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps)) + alpha)``,
    with ``s = min(step - warmup_steps, decay_steps)``."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, alpha: float = 0.0,
                 name: str = "CosineDecay", warmup_target: Optional[float] = None,
                 warmup_steps: float = 0):
        c = type(self).__name__
        self.initial_learning_rate = _number(c, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(c, "decay_steps", decay_steps, positive=True)
        self.alpha = _number(c, "alpha", alpha)
        self.name = name
        self.warmup_target = _number(c, "warmup_target", warmup_target, allow_none=True)
        self.warmup_steps = _number(c, "warmup_steps", warmup_steps)
        if self.warmup_target is not None and self.warmup_steps < 0:
            raise ValueError(f"{c}: warmup_steps must be >= 0, got {warmup_steps!r}")

    def _decay(self, step: float, start: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * (step / self.decay_steps)))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step: int) -> float:
        lr0 = float(self.initial_learning_rate)
        s = float(step)
        if self.warmup_target is None:
            return self._decay(min(s, self.decay_steps), lr0)
        warm = float(self.warmup_steps)
        s = min(s, self.decay_steps + warm)
        if s < warm:
            return (float(self.warmup_target) - lr0) * (s / warm) + lr0
        return self._decay(s - warm, float(self.warmup_target))

    def get_config(self) -> Dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class PolynomialDecay(LearningRateSchedule):
    """``(lr0 - end) * (1 - s / decay_steps) ** power + end`` with ``s = min(step,
    decay_steps)``; with ``cycle`` the horizon is the first multiple of
    ``decay_steps`` not below ``step`` (``decay_steps`` itself at step 0)."""

    def __init__(self, initial_learning_rate: float, decay_steps: float,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str = "PolynomialDecay"):
        c = type(self).__name__
        self.initial_learning_rate = _number(c, "initial_learning_rate", initial_learning_rate)
        self.decay_steps = _number(c, "decay_steps", decay_steps, positive=True)
        self.end_learning_rate = _number(c, "end_learning_rate", end_learning_rate)
        self.power = _number(c, "power", power)
        self.cycle = _flag(c, "cycle", cycle)
        self.name = name

    def __call__(self, step: int) -> float:
        s = float(step)
        horizon = float(self.decay_steps)
        if self.cycle:
            horizon *= 1.0 if s == 0 else math.ceil(s / self.decay_steps)
        else:
            s = min(s, horizon)
        lr0, end = float(self.initial_learning_rate), float(self.end_learning_rate)
        return (lr0 - end) * (1.0 - s / horizon) ** float(self.power) + end

    def get_config(self) -> Dict[str, Any]:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


_BY_NAME = {cls.__name__: cls for cls in (ExponentialDecay, InverseTimeDecay,
                                          PiecewiseConstantDecay, CosineDecay, PolynomialDecay)}


def serialize(schedule: LearningRateSchedule) -> Dict[str, Any]:
    """Keras's form: ``{"module", "class_name", "config", "registered_name"}``."""
    if not isinstance(schedule, LearningRateSchedule):
        raise TypeError(f"serialize: expected a LearningRateSchedule, got {schedule!r}")
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config: Dict[str, Any], custom_objects: Optional[Dict[str, Any]] = None
                ) -> LearningRateSchedule:
    """The schedule a ``serialize()`` dict (or Keras's own) describes."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"deserialize: expected a dict with 'class_name' and 'config', "
                         f"got {config!r}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _BY_NAME.get(name)
    if cls is None:
        raise ValueError(f"Unknown learning rate schedule {name!r}; expected one of "
                         f"{sorted(_BY_NAME)} or a class in custom_objects")
    return cls.from_config(dict(config.get("config", {})))
