# Stubs for fastlayers._kernels.losses (csrc/losses.pyx).  Each returns the mean
# loss and writes its gradient w.r.t. the prediction into G unless G is None.
# An empty batch returns NaN.
from typing import Optional

import numpy as np

EPSILON: float

def mse(
    Yp: np.ndarray,  # const floating[:, ::1] (n, k)
    Yt: np.ndarray,  # const floating[:, ::1] (n, k)
    G: Optional[np.ndarray],  # floating[:, ::1] (n, k) OUT
) -> float: ...
def mae(Yp: np.ndarray, Yt: np.ndarray, G: Optional[np.ndarray]) -> float: ...
def binary_crossentropy(
    P: np.ndarray,  # const floating[:, ::1] (n, k) probabilities or logits
    Yt: np.ndarray,  # const floating[:, ::1] (n, k)
    G: Optional[np.ndarray],  # floating[:, ::1] (n, k) OUT
    from_logits: bool,
) -> float: ...
def softmax_crossentropy_sparse(
    Z: np.ndarray,  # const floating[:, ::1] (n, k) logits or probabilities
    labels: np.ndarray,  # const int64_t[::1] (n,), in [0, k)
    G: Optional[np.ndarray],  # floating[:, ::1] (n, k) OUT
    from_logits: bool,
) -> float: ...
def softmax_crossentropy(
    Z: np.ndarray,  # const floating[:, ::1] (n, k)
    Yt: np.ndarray,  # const floating[:, ::1] (n, k) target distributions
    G: Optional[np.ndarray],  # floating[:, ::1] (n, k) OUT
    from_logits: bool,
) -> float: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
