"""The activation codes of the kernels, Python side (the Cython side is the enum
in ``csrc/_act.pxd``; ``tests/kernels/test_act_codes.py`` checks the two agree).

Codes 0-4 are fixed: the fused training plan and saved models use them.
"""
from __future__ import annotations

from typing import Dict, FrozenSet

# Keras's string names -> kernel code.  "swish" and "silu" are one function.
ACTIVATION_CODES: Dict[str, int] = {
    "linear": 0,
    "relu": 1,
    "sigmoid": 2,
    "tanh": 3,
    "softmax": 4,
    "gelu": 5,
    "leaky_relu": 6,
    "elu": 7,
    "selu": 8,
    "silu": 9,
    "swish": 9,
    "softplus": 10,
    "softsign": 11,
    "hard_sigmoid": 12,
    "relu6": 13,
    "exponential": 14,
    "mish": 15,
    "log_softmax": 16,
}

# The codes of the pxd enum (ACT_<NAME>), one name per code.
ENUM_NAMES: Dict[str, int] = {
    "LINEAR": 0, "RELU": 1, "SIGMOID": 2, "TANH": 3, "SOFTMAX": 4, "GELU": 5,
    "LEAKY_RELU": 6, "ELU": 7, "SELU": 8, "SILU": 9, "SOFTPLUS": 10, "SOFTSIGN": 11,
    "HARD_SIGMOID": 12, "RELU6": 13, "EXPONENTIAL": 14, "MISH": 15, "LOG_SOFTMAX": 16,
}
COUNT = 17

# Activations whose derivative needs the pre-activation input (not only the
# output): whoever runs their backward must keep the input alive.
NEEDS_INPUT: FrozenSet[str] = frozenset({"gelu", "silu", "swish", "mish"})

# Activations computed over the whole last axis rather than elementwise.
ROW_WISE: FrozenSet[str] = frozenset({"softmax", "log_softmax"})

# The fixed constants of the named functions (keras.activations defaults).
LEAKY_RELU_SLOPE = 0.2
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
