"""Weight initializers with Keras's names and fan conventions."""
from __future__ import annotations

import math
from typing import Any, Callable, Tuple

import numpy as np

from .utils import random as _random


def _fans(shape: Tuple[int, ...]) -> Tuple[float, float]:
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    receptive = float(np.prod(shape[:-2])) if len(shape) > 2 else 1.0
    return shape[-2] * receptive, shape[-1] * receptive


def _seed_config(seed):
    # A Generator cannot be written to JSON; an unseeded initializer draws afresh anyway.
    return int(seed) if isinstance(seed, (int, np.integer)) else None


class Initializer:
    """Base class: ``init(shape, dtype)`` returns a new array."""

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments, JSON-ready (Keras's names)."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Initializer":
        """Rebuild an initializer from :meth:`get_config`'s output."""
        return cls(**config)


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every element equal to ``value``."""

    def __init__(self, value: float = 0.0):
        self.value = value

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": float(self.value)}


class RandomNormal(Initializer):
    """Normal with ``mean`` and ``stddev``."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype="float32"):
        rng = _random.generator(self.seed)
        return rng.normal(self.mean, self.stddev, size=shape).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": _seed_config(self.seed)}


class RandomUniform(Initializer):
    """Uniform on [minval, maxval)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype="float32"):
        rng = _random.generator(self.seed)
        return rng.uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": _seed_config(self.seed)}


class TruncatedNormal(Initializer):
    """Normal redrawn outside two standard deviations."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype="float32"):
        rng = _random.generator(self.seed)
        out = rng.normal(size=shape)
        bad = np.abs(out) > 2
        while bad.any():
            out[bad] = rng.normal(size=int(bad.sum()))
            bad = np.abs(out) > 2
        return (self.mean + self.stddev * out).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": _seed_config(self.seed)}


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: scale / fan, normal (truncated) or uniform."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: invalid mode {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "normal", "uniform"):
            raise ValueError(f"VarianceScaling: invalid distribution {distribution!r}")
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = _fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        scale = self.scale / max(1.0, fan)
        rng = _random.generator(self.seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, size=shape).astype(dtype)
        if self.distribution == "truncated_normal":
            # 0.879... is the stddev of a unit normal truncated to [-2, 2].
            std = math.sqrt(scale) / 0.87962566103423978
            return TruncatedNormal(0.0, std, seed=rng)(shape, dtype)
        return rng.normal(0.0, math.sqrt(scale), size=shape).astype(dtype)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": _seed_config(self.seed)}


class GlorotUniform(VarianceScaling):
    """Uniform in ±sqrt(6 / (fan_in + fan_out)) (Keras's default kernel initializer)."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)

    def get_config(self):
        return {"seed": _seed_config(self.seed)}


class GlorotNormal(VarianceScaling):
    """Truncated normal with stddev sqrt(2 / (fan_in + fan_out))."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)

    def get_config(self):
        return {"seed": _seed_config(self.seed)}


class HeNormal(VarianceScaling):
    """Truncated normal with stddev sqrt(2 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)

    def get_config(self):
        return {"seed": _seed_config(self.seed)}


class HeUniform(VarianceScaling):
    """Uniform in ±sqrt(6 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)

    def get_config(self):
        return {"seed": _seed_config(self.seed)}


class LecunNormal(VarianceScaling):
    """Truncated normal with stddev sqrt(1 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "truncated_normal", seed)

    def get_config(self):
        return {"seed": _seed_config(self.seed)}


class LecunUniform(VarianceScaling):
    """Uniform in ±sqrt(3 / fan_in)."""

    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "uniform", seed)

    def get_config(self):
        return {"seed": _seed_config(self.seed)}


_BY_NAME = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "random_normal": RandomNormal, "random_uniform": RandomUniform,
    "truncated_normal": TruncatedNormal,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_normal": HeNormal, "he_uniform": HeUniform,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
}


_BY_CLASS = {c.__name__: c for c in set(_BY_NAME.values()) | {VarianceScaling}}


def serialize(initializer: Any) -> Any:
    """Keras's layout ``{"module", "class_name", "config", "registered_name"}``.

    A name (``"zeros"``) is written as given; a plain function only when registered
    with :func:`fastlayers.utils.register_serializable`.
    """
    if initializer is None or isinstance(initializer, str):
        return initializer
    if isinstance(initializer, dict):
        return dict(initializer)
    if isinstance(initializer, type) and issubclass(initializer, Initializer):
        initializer = initializer()
    from .saving.registry import registered_name_of

    registered = registered_name_of(initializer if isinstance(initializer, Initializer)
                                    else initializer)
    if isinstance(initializer, Initializer):
        cls = type(initializer)
        if cls.__name__ in _BY_CLASS and _BY_CLASS[cls.__name__] is cls:
            return {"module": "fastlayers.initializers", "class_name": cls.__name__,
                    "config": initializer.get_config(), "registered_name": None}
        if registered is None:
            raise ValueError(f"Cannot serialize initializer {initializer!r}: register its class "
                             f"with fastlayers.utils.register_serializable()")
        return {"module": cls.__module__, "class_name": cls.__name__,
                "config": initializer.get_config(), "registered_name": registered}
    if registered is None:
        raise ValueError(f"Cannot serialize initializer {initializer!r}: a plain function must be "
                         f"registered with fastlayers.utils.register_serializable()")
    return {"module": getattr(initializer, "__module__", None), "class_name": "function",
            "config": registered, "registered_name": "function"}


def _from_dict(identifier: dict, custom_objects=None) -> Callable:
    from .saving.registry import resolve

    name = identifier.get("class_name")
    config = identifier.get("config") or {}
    if name == "function":
        fn = resolve(config, custom_objects)
        if fn is None:
            raise ValueError(f"Unknown initializer function {config!r}: register it or pass it "
                             f"in custom_objects")
        return fn
    cls = resolve(identifier.get("registered_name") or name, custom_objects) or _BY_CLASS.get(name)
    if cls is None:
        raise ValueError(f"Unknown initializer class {name!r}; expected one of "
                         f"{sorted(_BY_CLASS)}")
    if not isinstance(config, dict):
        raise ValueError(f"Initializer {name!r}: config must be a dict, got {config!r}")
    return cls.from_config(dict(config)) if hasattr(cls, "from_config") else cls(**config)


def get(identifier: Any) -> Callable:
    """Resolve an initializer from a name, an instance, a serialized dict or a callable."""
    if isinstance(identifier, dict):
        return _from_dict(identifier)
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in _BY_NAME:
            raise ValueError(
                f"Unknown initializer {identifier!r}; expected one of {sorted(_BY_NAME)}")
        return _BY_NAME[key]()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret initializer {identifier!r}")
