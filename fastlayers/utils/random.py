"""The library's seeded random state (initializers, dropout seeds, shuffling)."""
from __future__ import annotations

import random as _pyrandom
from typing import Optional

import numpy as np

_GENERATOR = np.random.default_rng()


def set_random_seed(seed: int) -> None:
    """Seed fastlayers' generator, NumPy's global one and Python's ``random``.

    Initial weights, dropout seeds and ``fit``'s shuffling all follow it, so the
    same seed gives the same run.
    """
    global _GENERATOR
    seed = int(seed)
    _GENERATOR = np.random.default_rng(seed)
    np.random.seed(seed % (2 ** 32))
    _pyrandom.seed(seed)


def generator(seed=None) -> np.random.Generator:
    """A generator: the global one, or one made from ``seed`` (an int or a Generator)."""
    if seed is None:
        return _GENERATOR
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(int(seed))


def draw_seed(seed: Optional[int] = None) -> int:
    """A 63-bit seed: ``seed`` itself, or one drawn from the global generator."""
    if seed is not None:
        return int(seed) & ((1 << 63) - 1)
    return int(_GENERATOR.integers(0, 2 ** 63 - 1))
