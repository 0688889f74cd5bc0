# Header-only image copies over NHWC arrays for the executor's PAD2D and
# UPSAMPLE2D ops (ZeroPadding2D, Cropping2D, nearest UpSampling2D).  `cdef
# inline` only: see _blas.pxd.
#
# shift2d places an (h, w, c) image into an (H, W, c) one at a row/column offset:
# a positive offset pads (zeros around it), a negative one crops (a window of
# the input).  Its backward is the same copy the other way, with the offsets
# negated.  Rows of channels are contiguous, so each row is at most a memset, a
# memcpy and a memset.  Memory-bound and single-threaded.
from cython cimport floating
from libc.string cimport memcpy, memset


cdef inline void _add_row(floating* dst, const floating* src, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        dst[j] = dst[j] + src[j]


cdef inline void shift2d(const floating* X,  # (n, h, w, c) IN
                         Py_ssize_t n, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                         floating* Y,        # (n, H, W, c) OUT (IN/OUT when add)
                         Py_ssize_t H, Py_ssize_t W, Py_ssize_t top, Py_ssize_t left,
                         bint add) noexcept nogil:
    """Y[:, y + top, x + left] = X[:, y, x] where both exist, Y = 0 elsewhere.

    With ``add`` the copied values are added into Y and the rest of Y is left as it
    is (a gradient added into another use's).
    """
    cdef Py_ssize_t s, r, y, x0, x1, k, row = W * c
    cdef const floating* src
    cdef floating* dst
    # Input columns x0 .. x1 - 1 land in output columns x0 + left ..
    x0 = -left if left < 0 else 0
    x1 = W - left if W - left < w else w
    k = (x1 - x0) * c if x1 > x0 else 0
    for s in range(n):
        for r in range(H):
            dst = Y + (s * H + r) * row
            y = r - top
            if y < 0 or y >= h or k == 0:
                if not add:
                    memset(dst, 0, row * sizeof(floating))
                continue
            src = X + ((s * h + y) * w + x0) * c
            if add:
                _add_row(dst + (x0 + left) * c, src, k)
                continue
            memset(dst, 0, (x0 + left) * c * sizeof(floating))
            memcpy(dst + (x0 + left) * c, src, k * sizeof(floating))
            memset(dst + (x0 + left) * c + k, 0, (row - (x0 + left) * c - k) * sizeof(floating))


cdef inline void upsample2d_forward(const floating* X,  # (n, h, w, c) IN
                                    Py_ssize_t n, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                                    Py_ssize_t sh, Py_ssize_t sw,
                                    floating* Y) noexcept nogil:  # (n, h*sh, w*sw, c) OUT
    """Nearest upsampling: each pixel repeated sh times down and sw times across."""
    cdef Py_ssize_t s, y, x, b, a, row = w * sw * c
    cdef floating* first
    for s in range(n):
        for y in range(h):
            first = Y + (s * h + y) * sh * row
            for x in range(w):
                for b in range(sw):
                    memcpy(first + (x * sw + b) * c, X + ((s * h + y) * w + x) * c,
                           c * sizeof(floating))
            for a in range(1, sh):
                memcpy(first + a * row, first, row * sizeof(floating))


cdef inline void upsample2d_backward(const floating* dY,  # (n, h*sh, w*sw, c) IN
                                     Py_ssize_t n, Py_ssize_t h, Py_ssize_t w, Py_ssize_t c,
                                     Py_ssize_t sh, Py_ssize_t sw,
                                     floating* dX,        # (n, h, w, c) OUT (IN/OUT when add)
                                     bint add) noexcept nogil:
    """dX = the sum of dY over each pixel's sh x sw block (added into dX with ``add``)."""
    cdef Py_ssize_t s, y, x, a, b, row = w * sw * c
    cdef floating* dst
    cdef const floating* block
    for s in range(n):
        for y in range(h):
            block = dY + (s * h + y) * sh * row
            for x in range(w):
                dst = dX + ((s * h + y) * w + x) * c
                if not add:
                    memset(dst, 0, c * sizeof(floating))
                for a in range(sh):
                    for b in range(sw):
                        _add_row(dst, block + a * row + (x * sw + b) * c, c)
