# Stubs for fastlayers._kernels.param_act (csrc/param_act.pyx): activations with
# run-time parameters.  (n, k) arrays are C-contiguous float32 or float64.
from typing import Optional

import numpy as np

def relu_forward(
    X: np.ndarray,  # const floating[:, ::1] (n, k)
    Y: np.ndarray,  # floating[:, ::1] (n, k) OUT
    negative_slope: float, max_value: float, threshold: float,  # max_value inf: no clip
) -> None: ...
def relu_backward(
    X: np.ndarray,  # const floating[:, ::1] (n, k) forward input
    dY: np.ndarray,  # const floating[:, ::1] (n, k)
    dX: np.ndarray,  # floating[:, ::1] (n, k) OUT, may be dY
    negative_slope: float, max_value: float, threshold: float,
) -> None: ...
def elu_forward(X: np.ndarray, Y: np.ndarray, alpha: float) -> None: ...
def elu_backward(X: np.ndarray, dY: np.ndarray, dX: np.ndarray, alpha: float) -> None: ...
def prelu_forward(
    X: np.ndarray,  # const floating[:, ::1] (n, k)
    alpha: np.ndarray,  # const floating[::1] (k,)
    Y: np.ndarray,  # floating[:, ::1] (n, k) OUT
) -> None: ...
def prelu_backward(
    X: np.ndarray,  # const floating[:, ::1] (n, k)
    alpha: np.ndarray,  # const floating[::1] (k,)
    dY: np.ndarray,  # const floating[:, ::1] (n, k)
    dX: Optional[np.ndarray],  # floating[:, ::1] (n, k) OUT
    dalpha: Optional[np.ndarray],  # floating[::1] (k,) OUT
) -> None: ...

def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
