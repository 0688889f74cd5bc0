"""Global settings and helpers a Keras user reaches through ``keras.backend``.

``floatx`` is the dtype new layers are created with.  The learning phase is the
default value of ``training`` for plain calls and for :func:`function` without a
phase input; ``fit``/``predict``/``evaluate`` always set their own (rule R5).

Values are NumPy arrays: ``get_value``/``set_value`` (and the ``batch_`` forms,
``eval``) read and write weights, ``int_shape``/``dtype`` describe tensors, weights
and arrays.  Keras functions that only make sense on a tensor graph
(``placeholder``, ``variable``, ``gradients``, ``update``...) are absent; asking for
one raises an ``AttributeError`` that says what to use instead.
"""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import numpy as np

_FLOATX = "float32"
_LEARNING_PHASE: Optional[bool] = None
from ._codes import EPSILON as _EPSILON  # the losses' clip, also in csrc/_codes.pxd
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
    """The fuzz factor used by losses (Keras's default, 1e-7; see :func:`set_epsilon`)."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    """Set the value :func:`epsilon` returns (Keras's fuzz factor).

    The compiled losses clip probabilities to ``[1e-7, 1 - 1e-7]`` with a constant
    built into the kernels (``fastlayers._codes.EPSILON``, the same as Keras's
    default); changing it here does **not** change what ``fit``/``evaluate``
    compute.  It changes only what code reading ``backend.epsilon()`` sees (your
    own losses, metrics and layers).  Layers' and optimizers' own ``epsilon=``
    arguments are separate, as in Keras.
    """
    global _EPSILON
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"set_epsilon: expected a number, got {value!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise ValueError(f"set_epsilon: expected a positive finite number, got {value!r}")
    _EPSILON = v


_IMAGE_DATA_FORMAT = "channels_last"


def image_data_format() -> str:
    """The default image layout of layers: ``"channels_last"`` (Keras's default)."""
    return _IMAGE_DATA_FORMAT


def set_image_data_format(data_format: str) -> None:
    """Set the default image layout: ``"channels_last"`` or ``"channels_first"``."""
    global _IMAGE_DATA_FORMAT
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"set_image_data_format: unknown data_format {data_format!r}; expected "
                         f"'channels_last' or 'channels_first'")
    _IMAGE_DATA_FORMAT = str(data_format)


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
        return int(default_training())

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
    """The ``training`` value a plain call without ``training=`` runs with.

    Inside ``fit`` (and a :func:`learning_phase_scope`) that is the scope's value, so a
    layer called inside a custom layer's ``forward`` during ``fit`` trains too.
    """
    if _PHASE_SCOPE:
        return _PHASE_SCOPE[-1]
    return bool(_LEARNING_PHASE)


_PHASE_SCOPE: list = []


class learning_phase_scope:
    """Context manager: ``learning_phase()`` (and plain calls' default) is ``value`` inside."""

    def __init__(self, value):
        if value not in (0, 1, True, False):
            raise ValueError(f"learning_phase_scope: expected 0 or 1, got {value!r}")
        self.value = bool(value)

    def __enter__(self):
        _PHASE_SCOPE.append(self.value)
        return self

    def __exit__(self, *exc):
        _PHASE_SCOPE.pop()
        return False


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
    """Reset what Keras's ``clear_session`` resets that exists here.

    Auto-generated layer names start again (``dense``, ``dense_1``...) and the
    learning phase set by :func:`set_learning_phase` is forgotten.  As in Keras,
    ``floatx``, ``epsilon`` and ``image_data_format`` are kept, and existing layers
    and models keep working (there is no graph or session to drop).
    """
    from .engine import layer as _layer

    _layer._NAME_COUNTS.clear()
    set_learning_phase(None)


# ---------------------------------------------------------------- values of weights
def _is_weight(x) -> bool:
    from .engine.weight import Weight

    return isinstance(x, Weight)


def _symbolic_error(fn: str, x):
    return TypeError(
        f"{fn}: {x!r} is a symbolic tensor; it has no value until data flows through it. "
        f"Use backend.function(inputs, [tensor]) or a Model to compute it")


def get_value(x) -> np.ndarray:
    """A copy of the value of a weight (or of an array or number) as a NumPy array."""
    from .engine.node import SymbolicTensor

    if _is_weight(x):
        return x.numpy()
    if isinstance(x, SymbolicTensor):
        raise _symbolic_error("get_value", x)
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, (int, float, np.number)):
        return np.asarray(x)
    raise TypeError(f"get_value: expected a weight (layer.weights[i]) or an array, got "
                    f"{type(x).__name__}")


def eval(x) -> np.ndarray:
    """The value of ``x`` (a weight or an array); Keras's ``K.eval``."""
    from .engine.node import SymbolicTensor

    if isinstance(x, SymbolicTensor):
        raise _symbolic_error("eval", x)
    return get_value(x)


def _checked_value(fn: str, x, value) -> np.ndarray:
    if not _is_weight(x):
        hint = ""
        if isinstance(x, (int, float)):
            hint = (" (an optimizer's hyperparameter is a plain attribute: assign it, e.g. "
                    "model.optimizer.learning_rate = 0.01)")
        raise TypeError(f"{fn}: expected a weight (layer.weights[i]), got "
                        f"{type(x).__name__}{hint}")
    v = np.asarray(value)
    if v.dtype.kind not in "biuf":
        raise TypeError(f"{fn}: value for {x.path!r} must be numeric, got dtype {v.dtype}")
    if v.shape != x.shape:
        raise ValueError(f"{fn}: weight {x.path!r} has shape {x.shape}, got a value of shape "
                         f"{v.shape}")
    return v


def set_value(x, value) -> None:
    """Set a weight's value (same shape; cast to the weight's dtype)."""
    v = _checked_value("set_value", x, value)
    x.assign(v)


def batch_get_value(xs: Sequence[Any]) -> list:
    """``[get_value(x) for x in xs]``."""
    return [get_value(x) for x in xs]


def batch_set_value(tuples: Sequence[Any]) -> None:
    """Set several weights from ``[(weight, value), ...]``; all are checked before any changes."""
    pairs = []
    for item in tuples:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError(f"batch_set_value: expected (weight, value) pairs, got {item!r}")
        pairs.append((item[0], _checked_value("batch_set_value", item[0], item[1])))
    for w, v in pairs:
        w.assign(v)


def int_shape(x) -> tuple:
    """The shape of a tensor, weight or array as a tuple (``None`` for the batch axis of tensors)."""
    from .engine.node import SymbolicTensor

    if isinstance(x, SymbolicTensor) or _is_weight(x):
        return tuple(x.shape)
    if hasattr(x, "shape"):
        return tuple(int(d) for d in x.shape)
    raise TypeError(f"int_shape: expected a tensor, weight or array, got {type(x).__name__}")


def dtype(x) -> str:
    """The dtype of a tensor, weight or array as a string (``"float32"``...)."""
    if hasattr(x, "dtype"):
        return str(np.dtype(x.dtype))
    raise TypeError(f"dtype: expected a tensor, weight or array, got {type(x).__name__}")


def is_keras_tensor(x) -> bool:
    """True for a symbolic tensor (``fl.Input`` or a layer's output), False for a weight.

    Anything else raises ``ValueError`` as in Keras 2 (an array is not a tensor).
    """
    from .engine.node import SymbolicTensor

    if isinstance(x, SymbolicTensor):
        return True
    if _is_weight(x):
        return False
    raise ValueError(f"Unexpectedly found an instance of type `{type(x)}`. Expected a symbolic "
                     f"tensor instance.")


# ---------------------------------------------------------------- graph-only Keras names
_GRAPH_ONLY = {
    "placeholder": "there are no placeholders: use fl.Input(shape=...) for a model input, and "
                   "feed arrays to a Model or to backend.function(inputs, outputs)",
    "variable": "there are no graph variables: create weights in a layer's build() with "
                "self.add_weight(...), keep other state in NumPy arrays, and read or write "
                "weights with backend.get_value / backend.set_value",
    "gradients": "there is no autodiff: a layer gives its gradients through forward(inputs, "
                 "training) -> (outputs, backprop); check them with "
                 "fl.utils.check_layer_gradients",
    "update": "use layer.add_update((weight, new_value)) (applied after each training step) "
              "or backend.set_value(weight, value)",
    "update_add": "use layer.add_update((weight, lambda: weight.value + delta)) or "
                  "backend.set_value",
    "update_sub": "use layer.add_update((weight, lambda: weight.value - delta)) or "
                  "backend.set_value",
    "moving_average_update": "use layer.add_update((weight, lambda: ...)) with the moving "
                             "average computed in NumPy",
    "get_session": "there is no session: models run NumPy arrays directly",
    "set_session": "there is no session: models run NumPy arrays directly",
    "stop_gradient": "there is no autodiff: freeze layers with layer.trainable = False, or "
                     "return no gradient from your backprop",
    "constant": "there are no graph constants: use a NumPy array",
}


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _GRAPH_ONLY:
        raise AttributeError(f"fastlayers.backend has no {name}() because fastlayers builds no "
                             f"tensor graph: {_GRAPH_ONLY[name]}")
    raise AttributeError(
        f"fastlayers.backend has no {name!r}. Layers, losses and Lambda functions compute on "
        f"NumPy arrays: use numpy (e.g. np.{name}) inside them; fl.backend offers floatx, "
        f"epsilon, learning_phase, function, get_value/set_value, int_shape, dtype, "
        f"image_data_format, clear_session")
