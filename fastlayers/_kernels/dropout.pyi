# Stubs for fastlayers._kernels.dropout (csrc/dropout.pyx).
import numpy as np

def dropout_forward(
    X: np.ndarray,  # const floating[:, ::1] (n, k)
    Y: np.ndarray,  # floating[:, ::1] (n, k) OUT, may be X
    mask: np.ndarray,  # uint8_t[:, ::1] (n, k) OUT, 1 where kept
    rate: float,  # in [0, 1)
    seed: int,  # uint64
    counter: int,  # uint64, position of element 0 in the stream
) -> None: ...
def dropout_backward(
    dY: np.ndarray,  # const floating[:, ::1] (n, k)
    mask: np.ndarray,  # const uint8_t[:, ::1] (n, k)
    rate: float,
    dX: np.ndarray,  # floating[:, ::1] (n, k) OUT, may be dY
) -> None: ...

# Every kernel module includes csrc/_team.pxi:
def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
