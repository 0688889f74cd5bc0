# Stubs for fastlayers._kernels.activations (csrc/activations.pyx).
from typing import Optional

import numpy as np

LINEAR: int
RELU: int
SIGMOID: int
TANH: int
SOFTMAX: int
COUNT: int

def needs_input(act: int) -> bool: ...

def activation_forward(
    X: np.ndarray,  # const floating[:, ::1] (n, k)
    Y: np.ndarray,  # floating[:, ::1] (n, k) OUT, may be X
    act: int,
) -> None: ...
def activation_backward(
    Y: np.ndarray,  # const floating[:, ::1] (n, k) forward output
    dY: np.ndarray,  # const floating[:, ::1] (n, k)
    dX: np.ndarray,  # floating[:, ::1] (n, k) OUT, may be dY
    act: int,
    Z: Optional[np.ndarray] = ...,  # const floating[:, ::1] (n, k) forward input; needs_input
) -> None: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
