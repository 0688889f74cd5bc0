"""Global settings a Keras user reaches through ``keras.backend``.

``floatx`` is the dtype new layers are created with.  The learning phase is the
default value of ``training`` for plain calls and for :func:`function` without a
phase input; ``fit``/``predict``/``evaluate`` always set their own (rule R5).
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import numpy as np

_FLOATX = "float32"
_LEARNING_PHASE: Optional[bool] = None
_EPSILON = 1e-7
_NUM_THREADS: Optional[int] = None


def floatx() -> str:
    """Return the default float type of new layers: ``"float32"`` or ``"float64"``."""
    return _FLOATX


def set_floatx(value: str) -> None:
    """Set the dtype new layers create their weights in (existing layers keep theirs)."""
    global _FLOATX
    value = str(np.dtype(value))
    if value not in ("float32", "float64"):
        raise ValueError(f"set_floatx: expected 'float32' or 'float64', got {value!r}")
    _FLOATX = value


def epsilon() -> float:
    """The fuzz factor used by losses (Keras's default, 1e-7)."""
    return _EPSILON


class _LearningPhase:
    """The learning-phase placeholder.

    ``backend.function(model.inputs + [learning_phase()], outputs)`` feeds the phase
    as an input (seed 002).  Outside that pattern it reads as the current phase
    value (0 or 1), like Keras's eager ``learning_phase()``.
    """

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def value(self) -> int:
        return int(bool(_LEARNING_PHASE))

    def __int__(self) -> int:
        return self.value()

    def __bool__(self) -> bool:
        return bool(self.value())

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, _LearningPhase):
            return True
        return self.value() == other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<learning_phase: {self.value()}>"


def learning_phase() -> _LearningPhase:
    """Return the learning-phase placeholder (reads as the current phase, 0 or 1)."""
    return _LearningPhase()


def set_learning_phase(value: Optional[Any]) -> None:
    """Set the default ``training`` value of plain calls: 0/False, 1/True, or None to reset."""
    global _LEARNING_PHASE
    if value is None:
        _LEARNING_PHASE = None
        return
    if value not in (0, 1, True, False):
        raise ValueError(f"set_learning_phase: expected 0, 1 or None, got {value!r}")
    _LEARNING_PHASE = bool(value)


def default_training() -> bool:
    """The ``training`` value a plain call without ``training=`` runs with."""
    return bool(_LEARNING_PHASE)


def function(inputs: Sequence[Any], outputs: Any):
    """Build a callable from symbolic ``inputs`` to ``outputs`` (Keras's ``K.function``).

    ``inputs`` may contain :func:`learning_phase`; its value, fed at call time in the
    same position, becomes the ``training`` argument of the run.  The callable takes
    a list of arrays and returns a list of arrays.
    """
    from .engine.function import BackendFunction

    return BackendFunction(inputs, outputs)


def set_num_threads(n: Optional[int]) -> None:
    """Set the number of threads fastlayers' kernels use, in every thread of the process.

    ``n`` is a positive int, or None for the default: ``OMP_NUM_THREADS`` if set,
    else every CPU this process may run on (its affinity mask, so under
    ``taskset -c 0`` one thread).  A larger ``n`` is capped at those usable CPUs:
    more threads than cores would only wait on each other.  In a process forked
    from one that ran the kernels the team stays at one thread (OpenMP's threads
    do not survive ``fork``).

    fastlayers splits large matrix products over its own thread team and keeps
    scipy's BLAS single-threaded inside each slice (NumPy's BLAS is untouched).
    A threadpoolctl limit on OpenMP below the default lowers the team for calls
    made inside it, and while other processes keep the cores busy the kernels
    drop to one thread for a while (a team waiting for a descheduled thread is
    many times slower than one thread).
    """
    global _NUM_THREADS
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"set_num_threads: n must be a positive int or None, "
                            f"got {type(n).__name__} {n!r}")
        if n < 1:
            raise ValueError(f"set_num_threads: n must be a positive int or None, got {n!r}")
        n = int(n)
    from . import _threads

    _threads.apply(n)
    _NUM_THREADS = n


def get_num_threads() -> int:
    """The number of threads the kernels use (after the caps of :func:`set_num_threads`)."""
    from . import _threads

    return _threads.team()


def clear_session() -> None:
    """Reset auto-generated layer names (``dense``, ``dense_1``...) and the learning phase."""
    from .engine import layer as _layer

    _layer._NAME_COUNTS.clear()
    set_learning_phase(None)
