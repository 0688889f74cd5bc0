# Stubs for fastlayers._kernels.optim (csrc/optim.pyx).  Every list holds 1-D
# C-contiguous arrays of one float dtype (floating[::1]); params[i], grads[i] and
# slots[j][i] have the same length.  Codes and the hyper layout: fastlayers._codes.
from typing import Dict, List

import numpy as np

def slot_count(kind: int) -> int: ...  # per-weight state arrays of kind; -1 if unknown
def codes() -> Dict[str, int]: ...  # the compiled OPT_*/H_* values of csrc/_codes.pxd
def sq_norm(g: np.ndarray) -> float: ...  # const floating[::1]; sum of squares in double
def apply_update(
    kind: int,  # an OPT_* code
    hyper: np.ndarray,  # const double[::1] (HYPER_LEN,): this step's scalars
    params: List[np.ndarray],  # IN/OUT
    grads: List[np.ndarray],  # IN (const; never written)
    slots: List[List[np.ndarray]],  # slot_count(kind) lists, IN/OUT
) -> None: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
