"""Argument checks shared by the convolutional catalogue's layers (Keras's rules)."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .. import initializers


def int_tuple(owner: str, name: str, value, n: int, minimum: int = 1) -> Tuple[int, ...]:
    """An int or a length-n sequence of ints, each >= minimum, as a tuple."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value,) * n
    try:
        value = tuple(value)
    except TypeError:
        raise ValueError(f"{owner}: {name} must be an int or a tuple of {n} ints, "
                         f"got {value!r}") from None
    if len(value) != n or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                              or v < minimum for v in value):
        raise ValueError(f"{owner}: {name} must be an int or a tuple of {n} ints >= "
                         f"{minimum}, got {value!r}")
    return tuple(int(v) for v in value)


def padding_mode(owner: str, padding, allowed=("valid", "same")) -> str:
    p = padding.lower() if isinstance(padding, str) else padding
    if p not in allowed:
        raise ValueError(f"{owner}: padding must be one of {allowed}, got {padding!r}")
    return p


def channels_last(owner: str, data_format) -> None:
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{owner}: only data_format='channels_last' is supported, "
                         f"got {data_format!r}")


def initializer(identifier):
    """Resolve an initializer, accepting Keras's "uniform"/"normal" aliases."""
    aliases = {"uniform": "random_uniform", "normal": "random_normal"}
    if isinstance(identifier, str) and identifier.lower() in aliases:
        identifier = aliases[identifier.lower()]
    initializers.get(identifier)  # fail at construction, not at build
    return identifier


def check_input(layer, x: np.ndarray, ndim: int, last: int = None) -> None:
    """A clear error for an eager array of the wrong rank or channel count."""
    if x.ndim != ndim:
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) expects {ndim}-D "
                         f"inputs (batch axis included), got shape {x.shape}")
    if last is not None and x.shape[-1] != last:
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) expects {last} "
                         f"channels on the last axis, got shape {x.shape}")


def check_shape_rank(layer, input_shape, ndim: int) -> None:
    if not isinstance(input_shape, tuple) or len(input_shape) != ndim:
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) expects {ndim}-D "
                         f"inputs (batch axis included), got shape {input_shape}")


def keras_name(cls, kwargs: dict) -> dict:
    """kwargs with Keras's default layer name when none is given: Keras's
    snake case keeps a digit with the word before it (Conv2D -> conv2d,
    MaxPooling2D -> max_pooling2d), where the base class would write conv2_d."""
    import re

    from ..engine.layer import unique_name

    if kwargs.get("name") is None:
        s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", cls.__name__)
        kwargs = dict(kwargs, name=unique_name(re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()))
    return kwargs
