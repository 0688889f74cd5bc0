# Stubs for fastlayers._kernels.dense (csrc/dense.pyx).  Arrays are C-contiguous
# float32 or float64, one dtype per call; the buffer type is in the comment.
from typing import Optional

import numpy as np

LINEAR: int
RELU: int
SIGMOID: int
TANH: int
SOFTMAX: int

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
def _gemm_split_memview(
    nthreads: int,
    split_rows: bool,
    trans_a: bool,
    trans_b: bool,
    alpha: float,
    A: np.ndarray,  # const floating[:, ::1], op(A) is (m, k)
    B: np.ndarray,  # const floating[:, ::1], op(B) is (k, n)
    beta: float,
    C: np.ndarray,  # floating[:, ::1] (m, n) IN/OUT
) -> None: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
