# Stubs for fastlayers._kernels.layernorm (csrc/layernorm.pyx).  C-contiguous
# float32 or float64, one dtype per call; statistics are per row.
from typing import Optional

import numpy as np

def layernorm_forward(
    X: np.ndarray,  # const floating[:, ::1] (m, d)
    gamma: Optional[np.ndarray],  # const floating[::1] (d,)
    beta: Optional[np.ndarray],  # const floating[::1] (d,)
    epsilon: float,
    Y: np.ndarray,  # floating[:, ::1] (m, d) OUT, may be X
    mean: np.ndarray,  # floating[::1] (m,) OUT
    inv_std: np.ndarray,  # floating[::1] (m,) OUT
) -> None: ...
def layernorm_backward(
    X: np.ndarray,  # const floating[:, ::1] (m, d)
    dY: np.ndarray,  # const floating[:, ::1] (m, d)
    gamma: Optional[np.ndarray],  # const floating[::1] (d,)
    mean: np.ndarray,  # const floating[::1] (m,)
    inv_std: np.ndarray,  # const floating[::1] (m,)
    dX: Optional[np.ndarray],  # floating[:, ::1] (m, d) OUT
    dgamma: Optional[np.ndarray],  # floating[::1] (d,) OUT or IN/OUT
    dbeta: Optional[np.ndarray],  # floating[::1] (d,) OUT or IN/OUT
    accumulate: bool,
) -> None: ...

def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
