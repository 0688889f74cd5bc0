# Design
# ------
# The standalone pooling kernels: validation here, the loops in _pool.pxd (shared
# with the executor's POOL op).
from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memset

from _pool cimport PGeom, pool_backward, pool_forward

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)


cdef inline const floating* _cp4(const floating[:, :, :, ::1] a) noexcept nogil:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef inline floating* _p4(floating[:, :, :, ::1] a) noexcept nogil:
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0 or a.shape[3] == 0:
        return NULL
    return &a[0, 0, 0, 0]


cdef int _pgeom(str fn, PGeom* g, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c, Py_ssize_t oh,
                Py_ssize_t ow, int ph, int pw, int sh, int sw, int pt, int pl) except -1:
    if ph < 1 or pw < 1 or sh < 1 or sw < 1 or pt < 0 or pl < 0:
        raise ValueError(f"{fn}: pool size and strides must be >= 1, padding >= 0")
    g.h, g.w, g.c, g.oh, g.ow = h, w, c, oh, ow
    g.ph, g.pw, g.sh, g.sw, g.pt, g.pl = ph, pw, sh, sw, pt, pl
    return 0


def max_pool2d_forward(const floating[:, :, :, ::1] X,  # (n, h, w, c) IN
                       floating[:, :, :, ::1] Y,        # (n, oh, ow, c) OUT
                       int64_t[:, :, :, ::1] argmax,    # (n, oh, ow, c) OUT: iy * w + ix
                       int ph, int pw, int sh, int sw, int pt, int pl):
    """Y = max over each window; argmax gets where each maximum was."""
    cdef Py_ssize_t n = X.shape[0], h = X.shape[1], w = X.shape[2], c = X.shape[3]
    cdef Py_ssize_t oh = Y.shape[1], ow = Y.shape[2], inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    if Y.shape[0] != n or Y.shape[3] != c:
        raise ValueError("max_pool2d_forward: Y must be (n, oh, ow, c)")
    if argmax.shape[0] != n or argmax.shape[1] != oh or argmax.shape[2] != ow \
            or argmax.shape[3] != c:
        raise ValueError("max_pool2d_forward: argmax does not match Y")
    _pgeom("max_pool2d_forward", &g, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    if n * outper == 0:
        return
    if inper == 0:
        # Every window is empty: 0 and no maximum (argmax -1).
        Y[...] = 0
        argmax[...] = -1
        return
    cdef const floating* xp = _cp4(X)
    cdef floating* yp = _p4(Y)
    cdef int64_t* ap = &argmax[0, 0, 0, 0]
    with nogil:
        pool_forward(team(), &g, n, True, xp, yp, ap)



def max_pool2d_backward(const floating[:, :, :, ::1] dY,    # (n, oh, ow, c) IN
                        const int64_t[:, :, :, ::1] argmax,  # (n, oh, ow, c) IN
                        floating[:, :, :, ::1] dX):          # (n, h, w, c) OUT
    """dX = 0, then dY added at each window's argmax."""
    cdef Py_ssize_t n = dY.shape[0], oh = dY.shape[1], ow = dY.shape[2], c = dY.shape[3]
    cdef Py_ssize_t h = dX.shape[1], w = dX.shape[2], inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    if dX.shape[0] != n or dX.shape[3] != c:
        raise ValueError("max_pool2d_backward: dX must be (n, h, w, c)")
    if argmax.shape[0] != n or argmax.shape[1] != oh or argmax.shape[2] != ow \
            or argmax.shape[3] != c:
        raise ValueError("max_pool2d_backward: argmax does not match dY")
    _pgeom("max_pool2d_backward", &g, h, w, c, oh, ow, 1, 1, 1, 1, 0, 0)
    if n * inper == 0:
        return
    if outper == 0:
        memset(&dX[0, 0, 0, 0], 0, n * inper * sizeof(floating))
        return
    cdef const floating* dyp = _cp4(dY)
    cdef const int64_t* ap = &argmax[0, 0, 0, 0]
    cdef floating* dxp = _p4(dX)
    with nogil:
        pool_backward(team(), &g, n, True, NULL, NULL, dyp, ap, dxp)



def avg_pool2d_forward(const floating[:, :, :, ::1] X,  # (n, h, w, c) IN
                       floating[:, :, :, ::1] Y,        # (n, oh, ow, c) OUT
                       int ph, int pw, int sh, int sw, int pt, int pl):
    """Y = mean over the real (unpadded) elements of each window."""
    cdef Py_ssize_t n = X.shape[0], h = X.shape[1], w = X.shape[2], c = X.shape[3]
    cdef Py_ssize_t oh = Y.shape[1], ow = Y.shape[2], inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    if Y.shape[0] != n or Y.shape[3] != c:
        raise ValueError("avg_pool2d_forward: Y must be (n, oh, ow, c)")
    _pgeom("avg_pool2d_forward", &g, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    if n * outper == 0:
        return
    if inper == 0:
        memset(&Y[0, 0, 0, 0], 0, n * outper * sizeof(floating))
        return
    cdef const floating* xp = _cp4(X)
    cdef floating* yp = _p4(Y)
    with nogil:
        pool_forward(team(), &g, n, False, xp, yp, NULL)



def avg_pool2d_backward(const floating[:, :, :, ::1] dY,  # (n, oh, ow, c) IN
                        floating[:, :, :, ::1] dX,        # (n, h, w, c) OUT
                        int ph, int pw, int sh, int sw, int pt, int pl):
    """dX = each window's dY spread evenly over its real elements."""
    cdef Py_ssize_t n = dY.shape[0], oh = dY.shape[1], ow = dY.shape[2], c = dY.shape[3]
    cdef Py_ssize_t h = dX.shape[1], w = dX.shape[2], inper = h * w * c
    cdef Py_ssize_t outper = oh * ow * c
    cdef PGeom g
    if dX.shape[0] != n or dX.shape[3] != c:
        raise ValueError("avg_pool2d_backward: dX must be (n, h, w, c)")
    _pgeom("avg_pool2d_backward", &g, h, w, c, oh, ow, ph, pw, sh, sw, pt, pl)
    if n * inper == 0:
        return
    if outper == 0:
        memset(&dX[0, 0, 0, 0], 0, n * inper * sizeof(floating))
        return
    cdef const floating* dyp = _cp4(dY)
    cdef floating* dxp = _p4(dX)
    with nogil:
        pool_backward(team(), &g, n, False, NULL, NULL, dyp, NULL, dxp)
