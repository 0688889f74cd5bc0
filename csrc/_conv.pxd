# Header-only 2-D convolution (channels_last) lowered to BLAS GEMM, shared by
# conv.pyx (the standalone kernels) and executor.pyx (the compiled step).
# `cdef inline` only: see _blas.pxd.
#
# im2col copies each output position's receptive field into one row of `cols`
# (kh*kw*c_in values, ordered (ki, kj, channel) like the Keras kernel (kh, kw, c_in,
# filters) flattened), so the convolution is cols @ W, one BLAS call per chunk of
# samples; the data gradient is the transposed product followed by col2im, which
# adds each row back onto the input positions it came from.  Conv1D is this with
# height 1 (causal padding is a left padding pl).
#
# `cols` is the caller's scratch: its row count fixes how many samples go through
# one GEMM.  When it holds the whole batch, the forward pass leaves the batch's
# im2col in it and the backward pass computes dW from it without a second im2col.
# A 1x1 kernel with stride 1 and no padding needs no im2col (cols is X itself):
# the caller passes cols = NULL.  Bias and activation are fused after the GEMM
# exactly as in dense (_act.pxd).
#
# Every (row, tap) reads or writes X only after a bounds test (per tap, not per
# element), so no padding or stride given here can reach outside the buffers.
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from libc.stdint cimport int64_t

from _act cimport ACT_LINEAR, _act_grad_rows_serial, _act_grad_rows_z, _act_rows, _act_rows_serial
from _blas cimport SPLIT_MIN_MADDS, gemm, gemm_split
from _common cimport COL_BLOCK, _colsum, _colsum_block
from _team cimport fl_blas_single, fl_now_ns, fl_team_observe


cdef enum:
    # Below this many copied elements im2col/col2im run on one thread.
    COPY_MIN_ELEMENTS = 1 << 18
    # im2col values a thread handles at a time: half a MB in float32, so a chunk is
    # still in the core's L2 when its GEMM (forward) or col2im (backward) reads it.
    CHUNK_ELEMENTS = 1 << 17


cdef inline int _copy_chunks(int nt, Py_ssize_t work) noexcept nogil:
    # im2col/col2im are memory-bound copies: a thread team pays off only for
    # hundreds of kilobytes, far above the elementwise kernels' PARALLEL_MIN_ELEMENTS.
    return 1 if work < COPY_MIN_ELEMENTS else nt


cdef struct Geom:
    Py_ssize_t h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl


cdef inline void _ox_range(const Geom* g, Py_ssize_t kj, Py_ssize_t* lo,
                           Py_ssize_t* hi) noexcept nogil:
    """The outputs ox whose tap kj reads inside the input: 0 <= ox*sw - pl + kj*dw < w."""
    cdef Py_ssize_t off = kj * g.dw - g.pl   # ix = ox * sw + off
    cdef Py_ssize_t a = 0, b
    if off < 0:
        a = (-off + g.sw - 1) // g.sw
    b = (g.w - 1 - off) // g.sw + 1 if g.w - 1 - off >= 0 else 0
    if b > g.ow:
        b = g.ow
    if a > b:
        a = b
    lo[0] = a
    hi[0] = b


cdef inline void _im2col_row(const floating* X, const Geom* g, Py_ssize_t s, Py_ssize_t oy,
                             floating* cols) noexcept nogil:
    """cols rows of output row oy of sample s (ow rows of kh*kw*c values).

    Tap by tap, over the outputs whose tap lands inside the input (computed once
    per tap), so the copy loops carry no bounds test: the first layers have 1-3
    channels, where a test or a library call per tap would cost more than the copy.
    """
    cdef Py_ssize_t ox, ki, kj, iy, ch, lo, hi, K = g.kh * g.kw * g.c, c = g.c
    cdef Py_ssize_t step = g.sw * c
    cdef floating* dst
    cdef const floating* src
    for ki in range(g.kh):
        iy = oy * g.sh - g.pt + ki * g.dh
        for kj in range(g.kw):
            dst = cols + (ki * g.kw + kj) * c
            if iy < 0 or iy >= g.h:
                for ox in range(g.ow):
                    for ch in range(c):
                        dst[ox * K + ch] = 0
                continue
            _ox_range(g, kj, &lo, &hi)
            for ox in range(lo):
                for ch in range(c):
                    dst[ox * K + ch] = 0
            if lo < hi:
                src = X + ((s * g.h + iy) * g.w + lo * g.sw - g.pl + kj * g.dw) * c
                if c == 1:
                    for ox in range(lo, hi):
                        dst[ox * K] = src[(ox - lo) * step]
                else:
                    for ox in range(lo, hi):
                        for ch in range(c):
                            dst[ox * K + ch] = src[(ox - lo) * step + ch]
            for ox in range(hi, g.ow):
                for ch in range(c):
                    dst[ox * K + ch] = 0


cdef inline void _im2col(int nt, const floating* X, const Geom* g, Py_ssize_t s0,
                         Py_ssize_t ns, floating* cols) noexcept nogil:
    cdef Py_ssize_t r, nrows = ns * g.oh, rowlen = g.ow * g.kh * g.kw * g.c
    cdef int nc = _copy_chunks(nt, nrows * rowlen), t
    if nc == 1:
        for r in range(nrows):
            _im2col_row(X, g, s0 + r // g.oh, r % g.oh, cols + r * rowlen)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for r in range(nrows * t // nc, nrows * (t + 1) // nc):
            _im2col_row(X, g, s0 + r // g.oh, r % g.oh, cols + r * rowlen)


cdef inline void _col2im_sample(const floating* cols, const Geom* g, Py_ssize_t s,
                                floating* dX) noexcept nogil:
    """dX[s] += the rows of cols of sample s, each tap added where it was read.

    Tap by tap over the valid outputs (as _im2col_row), so no bounds test per
    element; the adds of one tap never collide (distinct outputs of one tap read
    distinct inputs), so the order of the sums is fixed.
    """
    cdef Py_ssize_t oy, ox, ki, kj, iy, ch, lo, hi, K = g.kh * g.kw * g.c, c = g.c
    cdef Py_ssize_t step = g.sw * c
    cdef const floating* src
    cdef floating* dst
    for oy in range(g.oh):
        for ki in range(g.kh):
            iy = oy * g.sh - g.pt + ki * g.dh
            if iy < 0 or iy >= g.h:
                continue
            for kj in range(g.kw):
                _ox_range(g, kj, &lo, &hi)
                if lo >= hi:
                    continue
                src = cols + oy * g.ow * K + (ki * g.kw + kj) * c
                dst = dX + ((s * g.h + iy) * g.w + lo * g.sw - g.pl + kj * g.dw) * c
                if c == 1:
                    for ox in range(lo, hi):
                        dst[(ox - lo) * step] += src[ox * K]
                else:
                    for ox in range(lo, hi):
                        for ch in range(c):
                            dst[(ox - lo) * step + ch] += src[ox * K + ch]


cdef inline void _col2im(int nt, const floating* cols, const Geom* g, Py_ssize_t s0,
                         Py_ssize_t ns, floating* dX) noexcept nogil:
    # Parallel over samples only: the windows of one sample overlap, two samples' never.
    cdef Py_ssize_t s, per = g.h * g.w * g.c, K = g.kh * g.kw * g.c
    memset(dX + s0 * per, 0, ns * per * sizeof(floating))
    cdef int nc = _copy_chunks(nt, ns * g.oh * g.ow * K), t
    if nc > ns:
        nc = <int>ns
    if nc <= 1:
        for s in range(ns):
            _col2im_sample(cols + s * g.oh * g.ow * K, g, s0 + s, dX)
        return
    for t in prange(nc, num_threads=nc, schedule='static'):
        for s in range(ns * t // nc, ns * (t + 1) // nc):
            _col2im_sample(cols + s * g.oh * g.ow * K, g, s0 + s, dX)


cdef inline void _fill_rows(floating* y, const floating* b, Py_ssize_t rows,
                            Py_ssize_t f) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(y + i * f, b, f * sizeof(floating))


cdef inline void _fwd_range(const Geom* g, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t f,
                            const floating* X, const floating* W, const floating* b,
                            floating* Y, floating* Z, floating* cols, bint keep,
                            Py_ssize_t cs, int act) noexcept nogil:
    """Samples s0..s1 on the calling thread, cs at a time: im2col into cols (at the
    samples' own rows when it keeps the batch, else from its start), one GEMM, bias
    and activation while the chunk is in cache."""
    cdef Py_ssize_t per = g.oh * g.ow, K = g.kh * g.kw * g.c, s = s0, ns, rows
    cdef floating* c
    cdef floating* out
    while s < s1:
        ns = cs if cs < s1 - s else s1 - s
        rows = ns * per
        c = cols + s * per * K if keep else cols
        _im2col(1, X, g, s, ns, c)
        out = (Z if Z != NULL else Y) + s * per * f
        if b != NULL:
            # The bias first and the product added to it: BLAS then skips its own pass
            # zeroing C (beta = 0), and no pass adds the bias after.
            _fill_rows(out, b, rows, f)
        gemm(False, False, <int>rows, <int>f, <int>K, 1, c, <int>K, W, <int>f,
             1 if b != NULL else 0, out, <int>f)
        if Z != NULL:
            _act_rows_serial(out, NULL, Y + s * per * f, rows, f, act)
        else:
            _act_rows_serial(out, NULL, out, rows, f, act)
        s += ns


cdef inline int _conv_team(int nt, Py_ssize_t n, Py_ssize_t per, Py_ssize_t K,
                           Py_ssize_t f) noexcept nogil:
    if nt < 2 or n < 2 or <double>n * per * K * f < SPLIT_MIN_MADDS:
        return 1
    return <int>n if n < nt else nt


cdef inline void _shares(Py_ssize_t per, Py_ssize_t K, Py_ssize_t cols_rows, bint keep,
                         int* team, Py_ssize_t* share, Py_ssize_t* cs) noexcept nogil:
    """How the threads share cols: cs samples per chunk (about CHUNK_ELEMENTS im2col
    values), and -- when cols does not keep the batch -- share samples of it each,
    with fewer threads if it has room for fewer."""
    cs[0] = CHUNK_ELEMENTS // (per * K) if per * K > 0 else 1
    if cs[0] < 1:
        cs[0] = 1
    share[0] = cols_rows // per
    if not keep:
        if team[0] > share[0]:
            team[0] = <int>share[0] if share[0] > 0 else 1
        share[0] = share[0] // team[0]
        if cs[0] > share[0]:
            cs[0] = share[0]


cdef inline void _fwd_split(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t f,
                            const floating* X, const floating* W, const floating* b,
                            floating* Y, floating* Z, floating* cols, Py_ssize_t cols_rows,
                            int act) noexcept nogil:
    """conv_forward with every im2col and GEMM split over the team (few samples)."""
    cdef Py_ssize_t per = g.oh * g.ow, K = g.kh * g.kw * g.c, s0 = 0, ns = cols_rows // per
    cdef floating* out = Z if Z != NULL else Y
    while s0 < n:
        if ns > n - s0:
            ns = n - s0
        _im2col(nt, X, g, s0, ns, cols)
        gemm_split(nt, True, False, False, <int>(ns * per), <int>f, <int>K, 1, cols, <int>K,
                   W, <int>f, 0, out + s0 * per * f, <int>f)
        s0 += ns
    _act_rows(out, b, out, n * per, f, ACT_LINEAR if Z != NULL else act)
    if Z != NULL:
        _act_rows(Z, NULL, Y, n * per, f, act)


cdef inline void conv_forward(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t f,
                              const floating* X,   # (n, h, w, c) IN
                              const floating* W,   # (K, f) IN, K = kh * kw * c
                              const floating* b,   # (f,) IN or NULL
                              floating* Y,         # (n, oh, ow, f) OUT
                              floating* Z,         # like Y: the pre-activation, or NULL
                              floating* cols,      # (cols_rows, K) scratch, NULL: direct
                              Py_ssize_t cols_rows, int act) noexcept nogil:
    """Y = act(conv(X, W) + b); Z, if given, keeps the pre-activation.

    With a team, each thread takes a contiguous range of samples and runs im2col,
    GEMM and activation on chunks of about CHUNK_ELEMENTS im2col values, so a chunk
    is written and read in its core's cache.  When cols holds the whole batch it is
    left holding the batch's im2col (for dW); otherwise each thread uses its own
    share of cols.
    """
    cdef Py_ssize_t per = g.oh * g.ow, K = g.kh * g.kw * g.c, cs, share, lo, hi
    cdef bint keep
    cdef int t, team
    cdef floating* out = Z if Z != NULL else Y
    cdef int64_t start
    cdef int64_t stamps[2]
    cdef int64_t* marks = stamps
    if n == 0 or per == 0 or f == 0:
        return
    if cols == NULL:
        gemm_split(nt, True, False, False, <int>(n * per), <int>f, <int>K, 1, X, <int>K,
                   W, <int>f, 0, out, <int>f)
        _act_rows(out, b, out, n * per, f, ACT_LINEAR if Z != NULL else act)
        if Z != NULL:
            _act_rows(Z, NULL, Y, n * per, f, act)
        return
    keep = cols_rows >= n * per
    team = _conv_team(nt, n, per, K, f)
    _shares(per, K, cols_rows, keep, &team, &share, &cs)
    if team < nt and nt > 1 and <double>n * per * K * f >= SPLIT_MIN_MADDS:
        # Fewer samples than threads (a large image, batch of one): split each product.
        _fwd_split(nt, g, n, f, X, W, b, Y, Z, cols, cols_rows, act)
        return
    if team == 1:
        _fwd_range(g, 0, n, f, X, W, b, Y, Z, cols, keep, cs, act)
        return
    fl_blas_single()
    start = fl_now_ns()
    for t in prange(team, num_threads=team, schedule='static'):
        if t == 0:
            marks[0] = fl_now_ns()
        lo = n * t // team
        hi = n * (t + 1) // team
        _fwd_range(g, lo, hi, f, X, W, b, Y, Z,
                   cols if keep else cols + t * share * per * K, keep, cs, act)
        if t == 0:
            marks[1] = fl_now_ns()
    fl_team_observe(fl_now_ns() - start, marks[1] - marks[0])


cdef inline void _dx_range(const Geom* g, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t f,
                           const floating* W, const floating* dZ, floating* dX,
                           floating* cols, Py_ssize_t cs) noexcept nogil:
    """dX of samples s0..s1 on the calling thread, cs at a time: the GEMM into the
    samples' rows of cols, then col2im while they are in cache."""
    cdef Py_ssize_t per = g.oh * g.ow, K = g.kh * g.kw * g.c, s = s0, ns
    while s < s1:
        ns = cs if cs < s1 - s else s1 - s
        gemm(False, True, <int>(ns * per), <int>K, <int>f, 1, dZ + s * per * f, <int>f,
             W, <int>f, 0, cols + s * per * K, <int>K)
        _col2im(1, cols + s * per * K, g, s, ns, dX)
        s += ns


cdef inline Py_ssize_t conv_parts(Py_ssize_t K, Py_ssize_t f) noexcept nogil:
    """Values of one thread's partial sums (dW, then db) in conv_backward's `parts`."""
    return K * f + f


cdef inline void _colsum_serial(const floating* A, Py_ssize_t n, Py_ssize_t k,
                                floating* out, bint add) noexcept nogil:
    cdef Py_ssize_t j0 = 0
    while j0 < k:
        _colsum_block(A, n, k, j0, j0 + COL_BLOCK if j0 + COL_BLOCK < k else k, 1.0, out, add)
        j0 += COL_BLOCK


cdef inline void _bwd_range(const Geom* g, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t f,
                            const floating* X, const floating* W, const floating* Y,
                            const floating* Zin, const floating* dY, floating* dZ,
                            floating* dX, floating* dW, floating* db, bint add_w, bint add_b,
                            floating* cols, bint keep, Py_ssize_t cs, int act) noexcept nogil:
    """The backward pass of samples s0..s1 on the calling thread, cs at a time, each
    chunk while it is in cache: dZ = dY * act', db (+)= its column sums, dW (+)= its
    im2col (kept from the forward pass, or again) transposed @ dZ, then dX from
    dZ @ W.T by col2im.  dW/db here are the thread's own sums (add_*: into them)."""
    cdef Py_ssize_t per = g.oh * g.ow, K = g.kh * g.kw * g.c, s = s0, ns, rows, o
    cdef floating* c
    while s < s1:
        ns = cs if cs < s1 - s else s1 - s
        rows = ns * per
        o = s * per * f
        _act_grad_rows_serial(Zin + o if Zin != NULL else NULL, Y + o if Y != NULL else NULL,
                              dY + o, dZ + o, rows, f, act)
        if db != NULL:
            _colsum_serial(dZ + o, rows, f, db, add_b)
            add_b = True
        c = cols + s * per * K if keep else cols
        if dW != NULL:
            if not keep:
                _im2col(1, X, g, s, ns, c)
            gemm(True, False, <int>K, <int>f, <int>rows, 1, c, <int>K, dZ + o, <int>f,
                 1 if add_w else 0, dW, <int>f)
            add_w = True
        if dX != NULL:
            gemm(False, True, <int>rows, <int>K, <int>f, 1, dZ + o, <int>f, W, <int>f, 0, c,
                 <int>K)
            _col2im(1, c, g, s, ns, dX)
        s += ns


cdef inline bint _bwd_threads(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t f,
                              const floating* X, const floating* W, const floating* Y,
                              const floating* Zin, const floating* dY, floating* dZ,
                              floating* dX, floating* dW, floating* db, floating* cols,
                              Py_ssize_t cols_rows, bint keep, int act, bint acc_w, bint acc_b,
                              floating* parts, Py_ssize_t parts_len) noexcept nogil:
    """conv_backward as a range of samples per thread (see _bwd_range); threads after
    the first sum dW/db into their share of `parts`, added in after.  False (nothing
    done) when the team would need more parts than given, or has fewer samples than
    threads (conv_backward then splits each product instead)."""
    cdef Py_ssize_t per = g.oh * g.ow, K = g.kh * g.kw * g.c, cs, share, lo, hi, i, P
    cdef int t, team = _conv_team(nt, n, per, K, f)
    cdef floating* pw
    cdef bint sums = dW != NULL or db != NULL
    P = conv_parts(K, f)
    if team < nt and nt > 1 and <double>n * per * K * f >= SPLIT_MIN_MADDS:
        return False
    if sums and team > 1 and (parts == NULL or parts_len < (team - 1) * P):
        return False
    _shares(per, K, cols_rows, keep, &team, &share, &cs)
    if team == 1:
        _bwd_range(g, 0, n, f, X, W, Y, Zin, dY, dZ, dX, dW, db, acc_w, acc_b, cols, keep, cs,
                   act)
        return True
    fl_blas_single()
    for t in prange(team, num_threads=team, schedule='static'):
        lo = n * t // team
        hi = n * (t + 1) // team
        pw = parts + (t - 1) * P
        _bwd_range(g, lo, hi, f, X, W, Y, Zin, dY, dZ, dX,
                   (dW if t == 0 else pw) if dW != NULL else NULL,
                   (db if t == 0 else pw + K * f) if db != NULL else NULL,
                   acc_w if t == 0 else False, acc_b if t == 0 else False,
                   cols if keep else cols + t * share * per * K, keep, cs, act)
    for t in range(1, team):
        pw = parts + (t - 1) * P
        if dW != NULL:
            for i in range(K * f):
                dW[i] += pw[i]
        if db != NULL:
            for i in range(f):
                db[i] += pw[K * f + i]
    return True


cdef inline void conv_backward(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t f,
                               const floating* X,    # (n, h, w, c) IN; unread without dW
                               const floating* W,    # (K, f) IN
                               const floating* Y,    # (n * oh * ow, f) IN or NULL if linear
                               const floating* Zin,  # pre-activation, for gelu/silu/mish
                               const floating* dY,   # (n * oh * ow, f) IN
                               floating* dZ,         # like dY OUT scratch, may be dY
                               floating* dX,         # (n, h, w, c) OUT or NULL
                               floating* dW,         # (K, f) OUT (IN/OUT if acc_w) or NULL
                               floating* db,         # (f,) OUT (IN/OUT if acc_b) or NULL
                               floating* cols, Py_ssize_t cols_rows,
                               bint cols_hold_x,     # cols has this batch's whole im2col
                               int act, bint acc_w, bint acc_b,
                               floating* parts,      # (parts_len,) scratch or NULL: thread sums
                               Py_ssize_t parts_len) noexcept nogil:
    """dZ = dY * act'; db (+)= dZ.sum(0); dW (+)= cols.T @ dZ; dX = col2im(dZ @ W.T).

    With room in `parts` for the other threads' partial dW/db (conv_parts() values
    per thread beyond the first) each thread runs a range of samples end to end,
    chunk by chunk in its cache; otherwise the products are split over the team."""
    cdef Py_ssize_t per = g.oh * g.ow, K = g.kh * g.kw * g.c, rows_all = n * per
    cdef Py_ssize_t s0 = 0, ns, rows, cs
    cdef floating beta
    cdef int t, team
    if cols != NULL and rows_all > 0 and K > 0 and f > 0 and (dW == NULL or X != NULL or
                                                             cols_hold_x):
        if _bwd_threads(nt, g, n, f, X, W, Y, Zin, dY, dZ, dX, dW, db, cols, cols_rows,
                        cols_rows >= rows_all and cols_hold_x, act, acc_w, acc_b, parts,
                        parts_len):
            return
    _act_grad_rows_z(Zin, Y, dY, dZ, rows_all, f, act)
    if db != NULL:
        _colsum(dZ, rows_all, f, 1.0, db, acc_b)
    if dW != NULL and (rows_all == 0 or K == 0) and not acc_w:
        memset(dW, 0, K * f * sizeof(floating))
    if rows_all == 0 or K == 0 or f == 0:
        if dX != NULL:
            memset(dX, 0, n * g.h * g.w * g.c * sizeof(floating))
        return
    if cols == NULL:
        if dW != NULL:
            gemm_split(nt, True, True, False, <int>K, <int>f, <int>rows_all, 1, X, <int>K,
                       dZ, <int>f, 1 if acc_w else 0, dW, <int>f)
        if dX != NULL:
            gemm_split(nt, True, False, True, <int>rows_all, <int>K, <int>f, 1, dZ, <int>f,
                       W, <int>f, 0, dX, <int>K)
        return
    if cols_rows >= rows_all:
        # cols holds the batch: dW from the forward pass's im2col (when it left it
        # there), then cols is free for the data gradient, a range of samples per
        # thread (each sample's col2im touches only its own dX).
        if dW != NULL:
            if not cols_hold_x:
                _im2col(nt, X, g, 0, n, cols)
            gemm_split(nt, True, True, False, <int>K, <int>f, <int>rows_all, 1, cols, <int>K,
                       dZ, <int>f, 1 if acc_w else 0, dW, <int>f)
        if dX != NULL:
            cs = CHUNK_ELEMENTS // (per * K)
            if cs < 1:
                cs = 1
            team = _conv_team(nt, n, per, K, f)
            if team < nt and nt > 1 and <double>n * per * K * f >= SPLIT_MIN_MADDS:
                # Fewer samples than threads: split the product and the col2im instead.
                gemm_split(nt, True, False, True, <int>rows_all, <int>K, <int>f, 1, dZ,
                           <int>f, W, <int>f, 0, cols, <int>K)
                _col2im(nt, cols, g, 0, n, dX)
            elif team == 1:
                _dx_range(g, 0, n, f, W, dZ, dX, cols, cs)
            else:
                fl_blas_single()
                for t in prange(team, num_threads=team, schedule='static'):
                    _dx_range(g, n * t // team, n * (t + 1) // team, f, W, dZ, dX, cols, cs)
        return
    ns = cols_rows // per
    while s0 < n:
        if ns > n - s0:
            ns = n - s0
        rows = ns * per
        if dW != NULL:
            _im2col(nt, X, g, s0, ns, cols)
            beta = 1 if (acc_w or s0 > 0) else 0
            gemm_split(nt, True, True, False, <int>K, <int>f, <int>rows, 1, cols, <int>K,
                       dZ + s0 * per * f, <int>f, beta, dW, <int>f)
        if dX != NULL:
            gemm_split(nt, True, False, True, <int>rows, <int>K, <int>f, 1,
                       dZ + s0 * per * f, <int>f, W, <int>f, 0, cols, <int>K)
            _col2im(nt, cols, g, s0, ns, dX)
        s0 += ns
