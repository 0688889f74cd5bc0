"""SGD (with momentum and Nesterov) and Adam, each one fused kernel call per step.

An optimizer keeps its slots (velocities, moments) per weight and updates only the
weights it is handed: the compiled set of the model (R3/R4).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Sequence, Tuple

import numpy as np

from . import ops


def _check_rate(name: str, value: Any, low: float = 0.0, high: float = math.inf,
                high_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if v < low or v > high or (high_open and v >= high):
        raise ValueError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {v}")
    return v


class Optimizer:
    """Base class: ``apply(weights, grads)`` updates the weights in place."""

    def __init__(self, learning_rate: float = 0.01, name: str = "optimizer"):
        self.name = name
        self.learning_rate = learning_rate
        self.iterations = 0
        self._slots: Dict[int, Tuple[np.ndarray, ...]] = {}

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._learning_rate = _check_rate(f"{type(self).__name__}: learning_rate", value)

    def apply(self, weights: Sequence, grads: Sequence[np.ndarray]) -> None:
        """One step over ``weights`` with ``grads`` (one fused call per dtype)."""
        if len(weights) != len(grads):
            raise ValueError(f"{self.name}: {len(weights)} weights but {len(grads)} gradients")
        self.iterations += 1
        groups: Dict[np.dtype, Tuple[list, list]] = {}
        for w, g in zip(weights, grads):
            if g is None:
                continue
            if g.shape != w.shape:
                raise ValueError(f"{self.name}: gradient of {w.path} has shape {g.shape}, "
                                 f"expected {w.shape}")
            ws, gs = groups.setdefault(w.dtype, ([], []))
            ws.append(w)
            g = np.asarray(g, dtype=w.dtype)
            gs.append(g if g.flags.c_contiguous else g.copy(order="C"))
        for ws, gs in groups.values():
            self._update(ws, gs)

    def apply_gradients(self, grads_and_vars: Iterable) -> None:
        """Keras's form: an iterable of ``(gradient, weight)`` pairs."""
        pairs = list(grads_and_vars)
        self.apply([w for _, w in pairs], [np.asarray(g) for g, _ in pairs])

    # -- the engine's contract (temporary minimal version: SGD/momentum/Adam)
    global_clipnorm = None

    @property
    def kind(self) -> int:
        from . import _codes
        if isinstance(self, Adam):
            return _codes.OPT_ADAM
        if self.momentum == 0:
            return _codes.OPT_SGD
        return _codes.OPT_NESTEROV if self.nesterov else _codes.OPT_MOMENTUM

    def slots_for(self, w):
        n = 2 if isinstance(self, Adam) else (0 if self.momentum == 0 else 1)
        return self._slot(w, n) if n else ()

    def begin_step(self):
        from . import _codes
        import math
        h = np.zeros(_codes.HYPER_LEN)
        h[_codes.H_LR] = self.learning_rate
        h[_codes.H_GSCALE] = 1.0
        if isinstance(self, Adam):
            t = self.iterations + 1
            h[_codes.H_A] = self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
            h[_codes.H_B], h[_codes.H_C], h[_codes.H_D] = self.beta_1, self.beta_2, self.epsilon
        else:
            h[_codes.H_A] = self.momentum
        return h

    def end_step(self):
        self.iterations += 1

    def _slot(self, w, n: int) -> Tuple[np.ndarray, ...]:
        s = self._slots.get(id(w))
        if s is None or s[0].shape != w.shape or s[0].dtype != w.dtype:
            s = tuple(np.zeros(w.shape, dtype=w.dtype) for _ in range(n))
            self._slots[id(w)] = s
        return s

    def _update(self, weights: List, grads: List[np.ndarray]) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor arguments, JSON-ready (Keras's names)."""
        return {"name": self.name, "learning_rate": self.learning_rate}

    @classmethod
    def from_config(cls, config: dict) -> "Optimizer":
        """Rebuild an optimizer (without its state) from :meth:`get_config`'s output."""
        return cls(**config)

    # ------------------------------------------------------------------ state (saving)
    def _slots_per_weight(self) -> int:
        """How many slot arrays each weight has (velocities, moments)."""
        return 0

    def _state_extra(self) -> List[np.ndarray]:
        """Optimizer-level state after ``iterations`` (none for SGD and Adam)."""
        return []

    def get_state(self, weights: Sequence) -> List[np.ndarray]:
        """``[iterations (int64 0-d), optimizer-level state..., each weight's slots...]``.

        Copies, in the order of ``weights``; a weight never stepped yet has zero slots,
        which is the state it would start from.
        """
        n = self._slots_per_weight()
        out = [np.array(self.iterations, dtype=np.int64)]
        out += [np.array(a) for a in self._state_extra()]
        for w in weights:
            s = self._slots.get(id(w))
            if s is None or s[0].shape != w.shape or s[0].dtype != w.dtype:
                out += [np.zeros(w.shape, dtype=w.dtype) for _ in range(n)]
            else:
                out += [a.copy() for a in s[:n]]
        return out

    def set_state(self, weights: Sequence, arrays: Sequence) -> None:
        """Restore :meth:`get_state`'s output for ``weights``: all or nothing.

        Values are copied into the existing slot arrays (a compiled fused step keeps
        pointers to them), so the state must be set after ``compile()``.
        """
        n = self._slots_per_weight()
        arrays = [np.asarray(a) for a in arrays]
        n_extra = len(self._state_extra())
        want = 1 + n_extra + n * len(weights)
        if len(arrays) != want:
            raise ValueError(f"{type(self).__name__}.set_state: expected {want} arrays for "
                             f"{len(weights)} weights, got {len(arrays)}")
        it = arrays[0]
        if it.shape != () or it.dtype.kind not in "iu" or int(it) < 0:
            raise ValueError(f"{type(self).__name__}.set_state: iterations must be a "
                             f"non-negative integer scalar, got {it.dtype} {it.shape}")
        pos = 1 + n_extra
        for w in weights:
            for k in range(n):
                a = arrays[pos + k]
                if a.shape != w.shape or a.dtype != w.dtype:
                    raise ValueError(
                        f"{type(self).__name__}.set_state: slot {k} of {w.path} has "
                        f"{a.dtype} {a.shape}, expected {w.dtype} {w.shape}")
            pos += n
        self._set_state_extra(arrays[1:1 + n_extra])
        self.iterations = int(it)
        pos = 1 + n_extra
        for w in weights:
            if n:
                for slot, a in zip(self._slot(w, n), arrays[pos:pos + n]):
                    np.copyto(slot, a)
            pos += n

    def _set_state_extra(self, arrays: List[np.ndarray]) -> None:
        pass


class SGD(Optimizer):
    """Keras SGD: ``v = momentum*v - lr*g; w += v`` (Nesterov: ``w += momentum*v - lr*g``)."""

    def __init__(self, learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 name: str = "SGD"):
        super().__init__(learning_rate, name)
        self.momentum = _check_rate("SGD: momentum", momentum, 0.0, 1.0)
        self.nesterov = bool(nesterov)

    def _slots_per_weight(self) -> int:
        return 0 if self.momentum == 0.0 else 1

    def _update(self, weights, grads):
        params = [w.value for w in weights]
        if self.momentum == 0.0:
            ops.sgd_update(params, grads, None, self.learning_rate, 0.0, False)
        else:
            vel = [self._slot(w, 1)[0] for w in weights]
            ops.sgd_update(params, grads, vel, self.learning_rate, self.momentum, self.nesterov)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(momentum=self.momentum, nesterov=self.nesterov)
        return cfg


class Adam(Optimizer):
    """Keras Adam: ``lr_t = lr*sqrt(1-beta_2^t)/(1-beta_1^t)``, ``w -= lr_t*m/(sqrt(v)+epsilon)``."""

    def __init__(self, learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, name: str = "Adam"):
        super().__init__(learning_rate, name)
        self.beta_1 = _check_rate("Adam: beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = _check_rate("Adam: beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.epsilon = _check_rate("Adam: epsilon", epsilon)

    def _slots_per_weight(self) -> int:
        return 2

    def _update(self, weights, grads):
        # One step count per optimizer, like Keras's `iterations`.
        t = self.iterations
        slots = [self._slot(w, 2) for w in weights]
        ops.adam_update([w.value for w in weights], grads, [s[0] for s in slots],
                        [s[1] for s in slots], self.learning_rate, self.beta_1, self.beta_2,
                        self.epsilon, t)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return cfg


_BY_NAME = {"sgd": SGD, "adam": Adam}


def serialize(optimizer: Optimizer) -> dict:
    """Keras's layout: ``{"module", "class_name", "config", "registered_name"}``."""
    return {"module": "fastlayers.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def get(identifier: Any) -> Optimizer:
    """Resolve an optimizer from ``"sgd"``, ``"adam"``, a class or an instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, dict) and "class_name" in identifier:
        cls = _BY_NAME.get(str(identifier["class_name"]).lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier['class_name']!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls.from_config(dict(identifier.get("config") or {}))
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier!r}; expected one of {sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise TypeError(f"Could not interpret optimizer {identifier!r}")
