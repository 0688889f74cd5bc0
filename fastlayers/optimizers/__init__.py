"""Optimizers with Keras 3's names, arguments, defaults and formulas.

Each class decides its update ``kind`` and this step's scalars in Python
(``Optimizer.begin_step``); one kernel, ``update_one`` in ``csrc/_optim.pxd``, applies
them.  The formulas below are Keras 3's (keras/src/optimizers/*.py), with ``g`` the
gradient after clipping, ``t = iterations + 1`` and the weight decay
``w -= w * weight_decay * lr`` applied before the update; where PyTorch's optimizer of
the same name differs, the class docstring says how.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .. import _codes as C
from . import schedules
from .base import (Optimizer, _Param, flag, non_negative, positive, unit_interval,
                   unit_interval_open)

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "Adagrad", "Adadelta", "Adamax",
           "Nadam", "get", "serialize", "deserialize", "schedules"]


class SGD(Optimizer):
    """Keras SGD: ``w -= lr g``; with momentum ``m = momentum m - lr g; w += m``;
    Nesterov ``w += momentum m - lr g``.

    PyTorch keeps ``b = momentum b + g; w -= lr b``: the same steps while lr is constant;
    its ``weight_decay`` is an L2 term added to g, not Keras's decoupled decay.
    """

    momentum = _Param(unit_interval, "Velocity decay, in [0, 1].")
    nesterov = _Param(flag, "Nesterov momentum.")

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: Optional[float] = None, clipnorm: Optional[float] = None,
                 clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 name: Optional[str] = None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.momentum = momentum
        self.nesterov = nesterov

    @property
    def kind(self) -> int:
        if self._momentum == 0:
            return C.OPT_SGD
        return C.OPT_NESTEROV if self._nesterov else C.OPT_MOMENTUM

    def _scalars(self, lr, t):
        return (self._momentum,)


    def get_config(self):
        cfg = super().get_config()
        cfg.update(momentum=self._momentum, nesterov=self._nesterov)
        return cfg


class RMSprop(Optimizer):
    """Keras RMSprop: ``v = rho v + (1 - rho) g^2``; centered: ``a = rho a + (1 - rho) g``
    and ``v - a^2`` in place of v; ``inc = lr g / sqrt(v + epsilon)``; with momentum
    ``m = momentum m + inc; w -= m``, else ``w -= inc``.

    PyTorch (``alpha`` = rho) adds epsilon outside the root, ``sqrt(v) + eps``, and
    applies lr after the momentum buffer; the two agree as epsilon -> 0 with constant lr.
    """

    rho = _Param(unit_interval_open, "Discount of the squared-gradient average, in [0, 1).")
    momentum = _Param(unit_interval, "Momentum, in [0, 1].")
    epsilon = _Param(positive, "Added to the denominator inside the square root, > 0.")
    centered = _Param(flag, "Normalize by the gradient's variance estimate.")

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False,
                 weight_decay: Optional[float] = None, clipnorm: Optional[float] = None,
                 clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 name: Optional[str] = None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = centered

    @property
    def kind(self) -> int:
        return (C.OPT_RMSPROP + (1 if self._momentum > 0 else 0)
                + (2 if self._centered else 0))

    def _scalars(self, lr, t):
        return (self._rho, 1.0 - self._rho, self._epsilon, self._momentum)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rho=self._rho, momentum=self._momentum, epsilon=self._epsilon,
                   centered=self._centered)
        return cfg


class Adam(Optimizer):
    """Keras Adam: ``m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2)``;
    ``alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t)``; ``w -= alpha m / (sqrt(v) + epsilon)``;
    amsgrad: ``v_hat = max(v_hat, v)`` replaces v in the denominator.

    PyTorch divides by ``sqrt(v / (1 - beta_2^t)) + eps`` (epsilon after the bias
    correction), i.e. Keras's epsilon is PyTorch's ``eps * sqrt(1 - beta_2^t)``; they
    agree as epsilon -> 0.  PyTorch's default eps is 1e-8, Keras's 1e-7.
    """

    _step_dependent = True
    beta_1 = _Param(unit_interval_open, "Decay of the first moment, in [0, 1).")
    beta_2 = _Param(unit_interval_open, "Decay of the second moment, in [0, 1).")
    epsilon = _Param(positive, "Added to sqrt(v), > 0 (0 makes 0/0 on zero gradients).")
    amsgrad = _Param(flag, "Use the running maximum of v (AMSGrad).")

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False,
                 weight_decay: Optional[float] = None, clipnorm: Optional[float] = None,
                 clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 name: Optional[str] = None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = amsgrad

    @property
    def kind(self) -> int:
        return C.OPT_AMSGRAD if self._amsgrad else C.OPT_ADAM

    def _scalars(self, lr, t):
        b1, b2 = self._beta_1, self._beta_2
        return (lr * math.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t), 1.0 - b1, 1.0 - b2,
                self._epsilon)

    def _fill_step(self, buf, lr, t):
        buf[C.H_A] = lr * math.sqrt(1.0 - self._beta_2 ** t) / (1.0 - self._beta_1 ** t)


    def get_config(self):
        cfg = super().get_config()
        cfg.update(beta_1=self._beta_1, beta_2=self._beta_2, epsilon=self._epsilon,
                   amsgrad=self._amsgrad)
        return cfg


class AdamW(Adam):
    """Keras AdamW: Adam with decoupled weight decay ``w -= w * weight_decay * lr``
    (default 0.004) before the Adam step.

    PyTorch's AdamW multiplies ``w *= 1 - lr * weight_decay`` the same way (default 0.01);
    the Adam part differs as for Adam (epsilon placement).
    """

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float = 0.004,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                 amsgrad: bool = False, clipnorm: Optional[float] = None,
                 clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 name: Optional[str] = None, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay,
                         clipnorm, clipvalue, global_clipnorm, name, **kwargs)

    def _check_together(self) -> None:
        super()._check_together()
        if self.__dict__.get("_weight_decay", 0.0) is None:
            raise ValueError(f"{self._label()}: weight_decay must be a float. "
                             "Received: weight_decay=None")


class Adagrad(Optimizer):
    """Keras Adagrad: ``acc += g^2; w -= lr g / sqrt(acc + epsilon)``, the accumulator
    starting at ``initial_accumulator_value``.

    PyTorch adds eps outside the root (``sqrt(acc) + eps``), starts the accumulator at
    0 and has ``lr_decay``; the two agree as epsilon -> 0 with the same initial value.
    """

    initial_accumulator_value = _Param(non_negative, "Starting accumulator value, >= 0.")
    epsilon = _Param(non_negative, "Added inside the square root, >= 0.")

    def __init__(self, learning_rate: Any = 0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, weight_decay: Optional[float] = None,
                 clipnorm: Optional[float] = None, clipvalue: Optional[float] = None,
                 global_clipnorm: Optional[float] = None, name: Optional[str] = None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _check_together(self) -> None:
        super()._check_together()
        d = self.__dict__
        if d.get("_initial_accumulator_value", 1.0) == 0 and d.get("_epsilon", 1.0) == 0:
            raise ValueError(f"{self._label()}: initial_accumulator_value and epsilon are both "
                             "0: a zero gradient would divide 0 by 0")

    @property
    def kind(self) -> int:
        return C.OPT_ADAGRAD

    def _new_slot(self, name, like):
        return np.full(like.shape, self._initial_accumulator_value, dtype=like.dtype)

    def _scalars(self, lr, t):
        return (self._epsilon,)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(initial_accumulator_value=self._initial_accumulator_value,
                   epsilon=self._epsilon)
        return cfg


class Adadelta(Optimizer):
    """Keras Adadelta: ``a = rho a + (1 - rho) g^2``;
    ``d = -sqrt(D + epsilon) g / sqrt(a + epsilon)``; ``D = rho D + (1 - rho) d^2``;
    ``w += lr d``.  PyTorch's Adadelta is the same formula (defaults lr=1.0, eps=1e-6).
    """

    rho = _Param(unit_interval_open, "Decay rate, in [0, 1).")
    epsilon = _Param(positive, "Added inside both square roots, > 0.")

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.95, epsilon: float = 1e-7,
                 weight_decay: Optional[float] = None, clipnorm: Optional[float] = None,
                 clipvalue: Optional[float] = None, global_clipnorm: Optional[float] = None,
                 name: Optional[str] = None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    @property
    def kind(self) -> int:
        return C.OPT_ADADELTA

    def _scalars(self, lr, t):
        return (self._rho, 1.0 - self._rho, self._epsilon)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(rho=self._rho, epsilon=self._epsilon)
        return cfg


class Adamax(Optimizer):
    """Keras Adamax: ``m += (g - m)(1 - beta_1); u = max(beta_2 u, |g|)``;
    ``w -= lr m / ((1 - beta_1^t)(u + epsilon))``.

    PyTorch puts eps inside the max (``max(beta_2 u, |g| + eps)``); they agree as
    epsilon -> 0.
    """

    _step_dependent = True
    beta_1 = _Param(unit_interval_open, "Decay of the first moment, in [0, 1).")
    beta_2 = _Param(unit_interval, "Decay of the infinity norm, in [0, 1].")
    epsilon = _Param(positive, "Added to u, > 0.")

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: Optional[float] = None,
                 clipnorm: Optional[float] = None, clipvalue: Optional[float] = None,
                 global_clipnorm: Optional[float] = None, name: Optional[str] = None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    @property
    def kind(self) -> int:
        return C.OPT_ADAMAX

    def _scalars(self, lr, t):
        b1 = self._beta_1
        return (lr / (1.0 - b1 ** t), 1.0 - b1, self._beta_2, self._epsilon)

    def _fill_step(self, buf, lr, t):
        buf[C.H_A] = lr / (1.0 - self._beta_1 ** t)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(beta_1=self._beta_1, beta_2=self._beta_2, epsilon=self._epsilon)
        return cfg


def _nadam_u(beta_1: float, t: int) -> float:
    return beta_1 * (1.0 - 0.5 * 0.96 ** t)


class Nadam(Optimizer):
    """Keras Nadam: ``u_t = beta_1 (1 - 0.5 * 0.96^t)``, ``P_t = u_1 ... u_t``;
    ``m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2)``;
    ``m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t)``;
    ``v_hat = v / (1 - beta_2^t)``; ``w -= lr m_hat / (sqrt(v_hat) + epsilon)``.

    PyTorch's NAdam uses ``0.96^(t * momentum_decay)`` with momentum_decay=0.004;
    with ``momentum_decay=1`` it is this formula.
    """

    _step_dependent = True
    _state_names = ("u_product",)
    beta_1 = _Param(unit_interval_open, "Decay of the first moment, in [0, 1).")
    beta_2 = _Param(unit_interval_open, "Decay of the second moment, in [0, 1).")
    epsilon = _Param(positive, "Added to sqrt(v_hat), > 0.")

    def __init__(self, learning_rate: Any = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: Optional[float] = None,
                 clipnorm: Optional[float] = None, clipvalue: Optional[float] = None,
                 global_clipnorm: Optional[float] = None, name: Optional[str] = None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm,
                         name, **kwargs)
        self.__dict__["_u_product"] = 1.0
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    @property
    def kind(self) -> int:
        return C.OPT_NADAM

    def _corrections(self, t):
        b1 = self._beta_1
        u_t, u_next = _nadam_u(b1, t), _nadam_u(b1, t + 1)
        p_t = self._u_product * u_t
        return (u_next / (1.0 - p_t * u_next), (1.0 - u_t) / (1.0 - p_t),
                1.0 / (1.0 - self._beta_2 ** t))

    def _scalars(self, lr, t):
        b1, b2 = self._beta_1, self._beta_2
        return self._corrections(t) + (1.0 - b1, 1.0 - b2, self._epsilon)

    def _fill_step(self, buf, lr, t):
        buf[C.H_A], buf[C.H_B], buf[C.H_C] = self._corrections(t)

    def end_step(self):
        d = self.__dict__
        d["_u_product"] = self._u_product * _nadam_u(self._beta_1, d["_iterations"] + 1)
        d["_iterations"] += 1

    def _get_opt_state(self):
        return [np.array(self._u_product, dtype=np.float64)]

    def _check_opt_state(self, arrays):
        u = float(arrays[0])
        if not (math.isfinite(u) and 0 <= u <= 1):
            raise ValueError(f"{self._label()}: set_state u_product must be in [0, 1], got {u}")

    def _set_opt_state(self, arrays):
        self.__dict__["_u_product"] = float(arrays[0])

    def get_config(self):
        cfg = super().get_config()
        cfg.update(beta_1=self._beta_1, beta_2=self._beta_2, epsilon=self._epsilon)
        return cfg


ALL_OPTIMIZERS = (SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Adamax, Nadam)
_BY_NAME: Dict[str, type] = {cls.__name__.lower(): cls for cls in ALL_OPTIMIZERS}


def serialize(optimizer: Optimizer) -> Dict[str, Any]:
    """Keras's form: ``{"module", "class_name", "config", "registered_name"}``."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"serialize: expected an Optimizer, got {optimizer!r}")
    return {"module": "keras.optimizers", "class_name": type(optimizer).__name__,
            "config": optimizer.get_config(), "registered_name": None}


def deserialize(config: Dict[str, Any], custom_objects: Optional[Dict[str, Any]] = None
                ) -> Optimizer:
    """The optimizer a ``serialize()`` dict (or Keras's own) describes; built-in class
    names are case-insensitive, as in Keras."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"deserialize: expected a dict with 'class_name' and 'config', "
                         f"got {config!r}")
    name = config["class_name"]
    cls = (custom_objects or {}).get(name) or _BY_NAME.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer {name!r}; expected one of {sorted(_BY_NAME)}")
    return cls.from_config(dict(config.get("config", {})), custom_objects)


def get(identifier: Any) -> Optimizer:
    """An optimizer from a name (``"rmsprop"``, ``"adam"``..., case-insensitive), a
    ``serialize()`` dict, a class or an instance (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Unknown optimizer {identifier!r}; expected one of "
                             f"{sorted(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    raise TypeError(f"Could not interpret optimizer identifier: {identifier!r}")
