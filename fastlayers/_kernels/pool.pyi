# Stubs for fastlayers._kernels.pool (csrc/pool.pyx).  NHWC arrays, C-contiguous,
# float32 or float64; argmax is int64 (flat index iy * w + ix in the sample).
import numpy as np

def max_pool2d_forward(
    X: np.ndarray,  # const floating[:, :, :, ::1] (n, h, w, c)
    Y: np.ndarray,  # floating[:, :, :, ::1] (n, oh, ow, c) OUT
    argmax: np.ndarray,  # int64_t[:, :, :, ::1] (n, oh, ow, c) OUT
    ph: int, pw: int, sh: int, sw: int, pt: int, pl: int,
) -> None: ...
def max_pool2d_backward(
    dY: np.ndarray,  # const floating[:, :, :, ::1] (n, oh, ow, c)
    argmax: np.ndarray,  # const int64_t[:, :, :, ::1] (n, oh, ow, c)
    dX: np.ndarray,  # floating[:, :, :, ::1] (n, h, w, c) OUT
) -> None: ...
def avg_pool2d_forward(
    X: np.ndarray,  # const floating[:, :, :, ::1] (n, h, w, c)
    Y: np.ndarray,  # floating[:, :, :, ::1] (n, oh, ow, c) OUT
    ph: int, pw: int, sh: int, sw: int, pt: int, pl: int,
) -> None: ...
def avg_pool2d_backward(
    dY: np.ndarray,  # const floating[:, :, :, ::1] (n, oh, ow, c)
    dX: np.ndarray,  # floating[:, :, :, ::1] (n, h, w, c) OUT
    ph: int, pw: int, sh: int, sw: int, pt: int, pl: int,
) -> None: ...

def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
