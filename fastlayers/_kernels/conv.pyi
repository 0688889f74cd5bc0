# Stubs for fastlayers._kernels.conv (csrc/conv.pyx).  Arrays are C-contiguous
# float32 or float64, one dtype per call; the buffer type is in the comment.
# Geometry: output (oy, ox) reads input row oy*sh - pt + ki*dh, column
# ox*sw - pl + kj*dw (zero outside).  cols may be None only for a 1x1 kernel
# with stride 1 and no padding.
from typing import Optional

import numpy as np

def conv2d_forward(
    X: np.ndarray,  # const floating[:, :, :, ::1] (n, h, w, c_in)
    W: np.ndarray,  # const floating[:, ::1] (kh * kw * c_in, filters)
    b: Optional[np.ndarray],  # const floating[::1] (filters,)
    Y: np.ndarray,  # floating[:, :, :, ::1] (n, oh, ow, filters) OUT
    cols: Optional[np.ndarray],  # floating[:, ::1] (rows >= oh * ow, kh * kw * c_in) scratch
    kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int,
    activation: int,
    Z: Optional[np.ndarray] = ...,  # floating[:, :, :, ::1] like Y, OUT pre-activation
) -> None: ...
def infer_work_size(
    nthreads: int, h: int, w: int, c: int, oh: int, ow: int, kh: int, kw: int, sh: int,
    sw: int, dh: int, dw: int, pt: int, pl: int, filters: int, winograd: bool, pool: int,
) -> int: ...
def conv2d_infer(
    X: np.ndarray,  # const floating[:, :, :, ::1] (n, h, w, c_in)
    W: np.ndarray,  # const floating[:, ::1] (kh * kw * c_in, filters)
    b: Optional[np.ndarray],  # const floating[::1] (filters,)
    Y: np.ndarray,  # floating[:, :, :, ::1] (n, oh, ow, filters), pooled (n, oh//2, ow//2, filters)
    work: np.ndarray,  # floating[::1] (>= infer_work_size(1, ...),) scratch
    oh: int, ow: int, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int,
    activation: int, winograd: bool, pool: int,  # pool: -1 none, 0 max, 1 mean (2x2/2)
) -> None: ...
def conv2d_backward(
    X: np.ndarray,  # const floating[:, :, :, ::1] (n, h, w, c_in); any shape if dW is None
    W: np.ndarray,  # const floating[:, ::1] (kh * kw * c_in, filters)
    Y: Optional[np.ndarray],  # const floating[:, ::1] (n * oh * ow, filters); unless LINEAR
    dY: np.ndarray,  # const floating[:, ::1] (n * oh * ow, filters)
    dZ: np.ndarray,  # floating[:, ::1] (n * oh * ow, filters) OUT scratch, may be dY
    dX: Optional[np.ndarray],  # floating[:, :, :, ::1] (n, h, w, c_in) OUT
    dW: Optional[np.ndarray],  # floating[:, ::1] like W, OUT or IN/OUT
    db: Optional[np.ndarray],  # floating[::1] (filters,) OUT or IN/OUT
    cols: Optional[np.ndarray],  # floating[:, ::1] scratch as in conv2d_forward
    h: int, w: int, oh: int, ow: int,
    kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int,
    activation: int,
    accumulate: bool,
    Z: Optional[np.ndarray] = ...,  # const floating[:, ::1] like dY, pre-activation
) -> None: ...
def depthwise_forward(
    X: np.ndarray,  # const floating[:, :, :, ::1] (n, h, w, c)
    W: np.ndarray,  # const floating[:, ::1] (kh * kw, c * dm)
    Y: np.ndarray,  # floating[:, :, :, ::1] (n, oh, ow, c * dm) OUT
    kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int,
) -> None: ...
def depthwise_backward(
    X: np.ndarray,  # const floating[:, :, :, ::1] (n, h, w, c)
    W: np.ndarray,  # const floating[:, ::1] (kh * kw, c * dm)
    dZ: np.ndarray,  # const floating[:, :, :, ::1] (n, oh, ow, c * dm)
    dX: Optional[np.ndarray],  # floating[:, :, :, ::1] (n, h, w, c) OUT
    dW: Optional[np.ndarray],  # floating[:, ::1] (kh * kw, c * dm) OUT
    kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int,
) -> None: ...

def get_team() -> int: ...
def _team_bound() -> bool: ...
def _omp_max_threads() -> int: ...
def _observe_split(region_ns: int, first_slice_ns: int) -> None: ...
