# Stubs for fastlayers._kernels.dense (csrc/dense.pyx).  Arrays are C-contiguous
# float32 or float64, one dtype per call; the buffer type is in the comment.
from typing import Optional

import numpy as np

LINEAR: int
RELU: int
SIGMOID: int
TANH: int
SOFTMAX: int

def set_omp_threads(n: int) -> None: ...
def get_omp_threads() -> int: ...
def dense_forward(
    X: np.ndarray,  # const floating[:, ::1] (n, d_in)
    W: np.ndarray,  # const floating[:, ::1] (d_in, units)
    b: Optional[np.ndarray],  # const floating[::1] (units,)
    Y: np.ndarray,  # floating[:, ::1] (n, units) OUT
    activation: int,
    Z: Optional[np.ndarray] = ...,  # floating[:, ::1] (n, units) OUT: X @ W + b
) -> None: ...
def dense_backward(
    X: np.ndarray,  # const floating[:, ::1] (n, d_in); any shape if dW is None, never None
    W: np.ndarray,  # const floating[:, ::1] (d_in, units)
    Y: Optional[np.ndarray],  # const floating[:, ::1] (n, units); needed unless LINEAR
    dY: np.ndarray,  # const floating[:, ::1] (n, units)
    dZ: np.ndarray,  # floating[:, ::1] (n, units) OUT, may be dY
    dX: Optional[np.ndarray],  # floating[:, ::1] (n, d_in) OUT
    dW: Optional[np.ndarray],  # floating[:, ::1] (d_in, units) OUT or IN/OUT
    db: Optional[np.ndarray],  # floating[::1] (units,) OUT or IN/OUT
    activation: int,
    accumulate: bool,
    Z: Optional[np.ndarray] = ...,  # const floating[:, ::1] (n, units) pre-activation; gelu/silu/mish
) -> None: ...
