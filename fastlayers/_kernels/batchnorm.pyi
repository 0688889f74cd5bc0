# Stubs for fastlayers._kernels.batchnorm (csrc/batchnorm.pyx).  gamma/beta may be
# None (scale=False / center=False).
from typing import Optional

import numpy as np

def batchnorm_forward_train(
    X: np.ndarray,  # const floating[:, ::1] (n, c), n >= 1
    gamma: Optional[np.ndarray],  # const floating[::1] (c,)
    beta: Optional[np.ndarray],  # const floating[::1] (c,)
    eps: float,
    Y: np.ndarray,  # floating[:, ::1] (n, c) OUT, may be X
    mean: np.ndarray,  # floating[::1] (c,) OUT
    var: np.ndarray,  # floating[::1] (c,) OUT, biased
    inv_std: np.ndarray,  # floating[::1] (c,) OUT
) -> None: ...
def batchnorm_forward_infer(
    X: np.ndarray,  # const floating[:, ::1] (n, c)
    gamma: Optional[np.ndarray],  # const floating[::1] (c,)
    beta: Optional[np.ndarray],  # const floating[::1] (c,)
    moving_mean: np.ndarray,  # const floating[::1] (c,)
    moving_var: np.ndarray,  # const floating[::1] (c,)
    eps: float,
    Y: np.ndarray,  # floating[:, ::1] (n, c) OUT, may be X
) -> None: ...
def batchnorm_update_moving(
    moving_mean: np.ndarray,  # floating[::1] (c,) IN/OUT
    moving_var: np.ndarray,  # floating[::1] (c,) IN/OUT
    mean: np.ndarray,  # const floating[::1] (c,)
    var: np.ndarray,  # const floating[::1] (c,)
    momentum: float,
) -> None: ...
def batchnorm_backward_train(
    X: np.ndarray,  # const floating[:, ::1] (n, c)
    dY: np.ndarray,  # const floating[:, ::1] (n, c)
    gamma: Optional[np.ndarray],  # const floating[::1] (c,)
    mean: np.ndarray,  # const floating[::1] (c,)
    inv_std: np.ndarray,  # const floating[::1] (c,)
    dX: Optional[np.ndarray],  # floating[:, ::1] (n, c) OUT, may be dY
    dgamma: Optional[np.ndarray],  # floating[::1] (c,) OUT or IN/OUT
    dbeta: Optional[np.ndarray],  # floating[::1] (c,) OUT or IN/OUT
    accumulate: bool,
) -> None: ...
def batchnorm_backward_infer(
    X: np.ndarray,  # const floating[:, ::1] (n, c)
    dY: np.ndarray,  # const floating[:, ::1] (n, c)
    gamma: Optional[np.ndarray],  # const floating[::1] (c,)
    moving_mean: np.ndarray,  # const floating[::1] (c,)
    moving_var: np.ndarray,  # const floating[::1] (c,)
    eps: float,
    dX: Optional[np.ndarray],  # floating[:, ::1] (n, c) OUT, may be dY
    dgamma: Optional[np.ndarray],  # floating[::1] (c,) OUT or IN/OUT
    dbeta: Optional[np.ndarray],  # floating[::1] (c,) OUT or IN/OUT
    accumulate: bool,
) -> None: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
