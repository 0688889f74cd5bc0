# Stubs for fastlayers._kernels.optim (csrc/optim.pyx).  Every list holds 1-D
# C-contiguous arrays of one float dtype (floating[::1]); params[i], grads[i] and
# the state arrays at i have the same length.
from typing import List, Optional

import numpy as np

def sgd_update(
    params: List[np.ndarray],  # IN/OUT
    grads: List[np.ndarray],  # IN (const)
    velocities: Optional[List[np.ndarray]],  # IN/OUT; None: plain SGD, momentum 0
    lr: float,
    momentum: float,
    nesterov: bool,
) -> None: ...
def adam_update(
    params: List[np.ndarray],  # IN/OUT
    grads: List[np.ndarray],  # IN (const)
    ms: List[np.ndarray],  # IN/OUT
    vs: List[np.ndarray],  # IN/OUT
    lr: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
    t: int,  # step number, from 1
) -> None: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
