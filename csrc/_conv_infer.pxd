# Header-only forward-only 2-D convolution (channels_last): the loops of a
# convolution that has no backward pass (a frozen base under a trained head,
# predict, evaluate), shared by conv.pyx and executor.pyx.  `cdef inline` only:
# see _blas.pxd.
#
# Two things a training convolution cannot do are done here:
#
# * Winograd F(2x2, 3x3) for 3x3 kernels with stride and dilation 1: each 2x2
#   block of outputs ("tile") is computed from its 4x4 input patch with 16
#   products instead of 36.  The patch goes through V = B^T d B, the kernel
#   through U = G g G^T, and the 16 elementwise products over channels are 16
#   BLAS GEMMs M[k] = V[k] @ U[k] (tiles x c_in by c_in x filters); the outputs
#   are A^T M A.  A training convolution needs its im2col for dW anyway.
# * A 2x2 pooling with stride 2 ("valid") fused into the convolution: each pooled
#   value is the max (or mean) of one tile, taken while the tile is in cache, so
#   the convolution's output is never written.  The direct path (im2col + GEMM,
#   for kernels Winograd does not cover) fuses it per pair of output rows.
#
# Work is split into units -- a tile row (s, ty) or, on the direct path, a pair
# of output rows (s, py) -- and each thread takes a contiguous range of units in
# chunks whose scratch stays in its core's L2 (about CHUNK_VALUES values).  A
# chunk's tiles are consecutive, so with pooling tile t *is* pooled output t and
# every loop after the input gather runs over contiguous memory.
#
# The caller's `work` holds the shared part (U and a row of zeros for padding)
# and one private share per thread; infer_work() gives its size, and a team
# larger than the shares it was sized for uses fewer threads (never overruns).
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

from _act cimport ACT_LINEAR, ACT_RELU, _act_rows_serial
from _blas cimport SPLIT_MIN_MADDS, gemm
from _codes cimport POOL_AVERAGE, POOL_MAX
from _pool cimport nan_max
from _conv cimport Geom, _im2col_row, _ox_range
from _team cimport fl_blas_single


cdef enum:
    # Scratch values a thread's chunk holds: 512 KB in float32, inside a 1 MB L2.
    CHUNK_VALUES = 1 << 17


cdef inline bint _max_first(int pool, int act) noexcept nogil:
    """Pool before bias + act: equal for max pooling under relu and linear (monotone,
    and rounding x + b is monotone in x), one pass over the pooled values instead of
    four over the outputs."""
    return pool == POOL_MAX and (act == ACT_RELU or act == ACT_LINEAR)


cdef inline bint wino_fits(const Geom* g) noexcept nogil:
    """The geometry Winograd F(2x2, 3x3) computes here."""
    return g.kh == 3 and g.kw == 3 and g.sh == 1 and g.sw == 1 and g.dh == 1 and g.dw == 1


cdef inline void _units(const Geom* g, bint wino, int pool, Py_ssize_t* per_row,
                        Py_ssize_t* rows) noexcept nogil:
    """A sample's units (rows[0]) and the outputs of one unit (per_row[0]): tiles of
    a tile row (Winograd) or output columns of a row pair (direct, pooled)."""
    if wino:
        if pool >= 0:
            rows[0], per_row[0] = g.oh // 2, g.ow // 2
        else:
            rows[0], per_row[0] = (g.oh + 1) // 2, (g.ow + 1) // 2
    else:
        rows[0], per_row[0] = g.oh // 2, g.ow


cdef inline Py_ssize_t _unit_values(const Geom* g, Py_ssize_t f, bint wino,
                                    int pool) noexcept nogil:
    cdef Py_ssize_t per_row, rows
    _units(g, wino, pool, &per_row, &rows)
    if wino:
        return 16 * per_row * (g.c + f)
    return 2 * per_row * (g.kh * g.kw * g.c + f)


cdef inline Py_ssize_t _chunk_units(const Geom* g, Py_ssize_t f, bint wino,
                                    int pool) noexcept nogil:
    cdef Py_ssize_t u = CHUNK_VALUES // _unit_values(g, f, wino, pool)
    return u if u >= 1 else 1


cdef inline Py_ssize_t _share(const Geom* g, Py_ssize_t f, bint wino, int pool) noexcept nogil:
    """Scratch values of one thread: a chunk's V, M and padded input rows
    (Winograd) or its im2col rows and outputs (direct)."""
    cdef Py_ssize_t per_row, rows, cu = _chunk_units(g, f, wino, pool)
    _units(g, wino, pool, &per_row, &rows)
    if wino:
        return cu * 16 * per_row * (g.c + f) + 4 * (2 * per_row + 2) * g.c
    return cu * 2 * per_row * (g.kh * g.kw * g.c + f)


cdef inline Py_ssize_t _shared(const Geom* g, Py_ssize_t f, bint wino) noexcept nogil:
    return 16 * g.c * f + g.w * g.c if wino else 0


cdef inline Py_ssize_t infer_work(int nt, const Geom* g, Py_ssize_t f, bint wino,
                                  int pool) noexcept nogil:
    """Values of `work` for a team of nt threads."""
    return _shared(g, f, wino) + (nt if nt > 1 else 1) * _share(g, f, wino, pool)


# ------------------------------------------------------------------ Winograd
cdef inline void _axpy_set(floating* dst, const floating* a, const floating* b,
                           floating sb, Py_ssize_t m) noexcept nogil:
    """dst = a + sb * b (sb is +1 or -1)."""
    cdef Py_ssize_t i
    if sb > 0:
        for i in range(m):
            dst[i] = a[i] + b[i]
    else:
        for i in range(m):
            dst[i] = a[i] - b[i]


cdef inline void wino_weights(Py_ssize_t c, Py_ssize_t f,
                              const floating* W,   # (3, 3, c, f) IN
                              floating* U) noexcept nogil:  # (16, c, f) OUT
    """U[a, b] = (G g G^T)[a, b] for every (channel, filter), G the F(2, 3) kernel
    transform [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]]."""
    cdef double G[4][3]
    cdef Py_ssize_t a, b, i, j, k, m = c * f
    cdef floating coef
    cdef floating* dst
    cdef const floating* src
    G[0][0], G[0][1], G[0][2] = 1, 0, 0
    G[1][0], G[1][1], G[1][2] = .5, .5, .5
    G[2][0], G[2][1], G[2][2] = .5, -.5, .5
    G[3][0], G[3][1], G[3][2] = 0, 0, 1
    for a in range(4):
        for b in range(4):
            dst = U + (a * 4 + b) * m
            memset(dst, 0, m * sizeof(floating))
            for i in range(3):
                for j in range(3):
                    coef = <floating>(G[a][i] * G[b][j])
                    if coef == 0:
                        continue
                    src = W + (i * 3 + j) * m
                    for k in range(m):
                        dst[k] += coef * src[k]


cdef inline void _wino_gather(const floating* X, const Geom* g, Py_ssize_t s, Py_ssize_t ty,
                              Py_ssize_t tx, const floating* zeros, floating* R,
                              floating* V, Py_ssize_t vstride) noexcept nogil:
    """V[k] rows of the tx tiles of tile row ty of sample s: B^T d B of each 4x4
    patch, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].

    First along the patch rows over whole (zero-padded) input rows into R (4 rows
    of wp columns), then along the columns tile by tile into V[k] (k = 4 r + q, at
    V + k * vstride, tile-major, c per tile)."""
    cdef Py_ssize_t c = g.c, wp = 2 * tx + 2, r, iy, j0, j1, x, ch, q
    cdef Py_ssize_t lenr = wp * c
    cdef const floating* d[4]
    cdef floating* Rr
    cdef floating* dst
    cdef const floating* src
    for r in range(4):
        iy = 2 * ty - g.pt + r
        d[r] = X + (s * g.h + iy) * g.w * c if 0 <= iy < g.h else zeros
    # Padded column j is input column j - pl: the valid ones are [j0, j1).
    j0 = g.pl if g.pl < wp else wp
    j1 = g.pl + g.w if g.pl + g.w < wp else wp
    for r in range(4):
        Rr = R + r * lenr
        if j0 > 0:
            memset(Rr, 0, j0 * c * sizeof(floating))
        if j1 < wp:
            memset(Rr + j1 * c, 0, (wp - j1) * c * sizeof(floating))
    if j0 < j1:
        # Each d[r] points at input column 0, which is padded column pl.
        _axpy_set(R + j0 * c, d[0] + (j0 - g.pl) * c, d[2] + (j0 - g.pl) * c, -1, (j1 - j0) * c)
        _axpy_set(R + lenr + j0 * c, d[1] + (j0 - g.pl) * c, d[2] + (j0 - g.pl) * c, 1,
                  (j1 - j0) * c)
        _axpy_set(R + 2 * lenr + j0 * c, d[2] + (j0 - g.pl) * c, d[1] + (j0 - g.pl) * c, -1,
                  (j1 - j0) * c)
        _axpy_set(R + 3 * lenr + j0 * c, d[1] + (j0 - g.pl) * c, d[3] + (j0 - g.pl) * c, -1,
                  (j1 - j0) * c)
    for r in range(4):
        Rr = R + r * lenr
        for q in range(4):
            dst = V + (4 * r + q) * vstride
            for x in range(tx):
                src = Rr + 2 * x * c
                if q == 0:
                    for ch in range(c):
                        dst[x * c + ch] = src[ch] - src[2 * c + ch]
                elif q == 1:
                    for ch in range(c):
                        dst[x * c + ch] = src[c + ch] + src[2 * c + ch]
                elif q == 2:
                    for ch in range(c):
                        dst[x * c + ch] = src[2 * c + ch] - src[c + ch]
                else:
                    for ch in range(c):
                        dst[x * c + ch] = src[c + ch] - src[3 * c + ch]


cdef inline void _pool4(const floating* y0, const floating* y1, const floating* y2,
                        const floating* y3, floating* Y, Py_ssize_t m, int pool) noexcept nogil:
    """Y = max or mean of the four tile outputs (a NaN wins the max, as in pooling)."""
    cdef Py_ssize_t i
    if pool == POOL_AVERAGE:
        for i in range(m):
            Y[i] = (y0[i] + y1[i] + y2[i] + y3[i]) * <floating>0.25
        return
    for i in range(m):
        Y[i] = nan_max(nan_max(nan_max(y0[i], y1[i]), y2[i]), y3[i])


cdef inline void _pool_rows(floating* top, const floating* bot, Py_ssize_t pw, Py_ssize_t f,
                            floating* Y, int pool) noexcept nogil:
    """Y (pw, f) = the 2x2/2 pooling of two output rows (top, bot: >= 2 pw columns of
    f): first down the pairs of rows, in place into top (one long loop), then across."""
    cdef Py_ssize_t i, x, j, m = 2 * pw * f
    cdef const floating* a
    if pool == POOL_AVERAGE:
        for i in range(m):
            top[i] = top[i] + bot[i]
        for x in range(pw):
            a = top + 2 * x * f
            for j in range(f):
                Y[x * f + j] = (a[j] + a[f + j]) * <floating>0.25
        return
    for i in range(m):
        top[i] = nan_max(top[i], bot[i])
    for x in range(pw):
        a = top + 2 * x * f
        for j in range(f):
            Y[x * f + j] = nan_max(a[j], a[f + j])


cdef inline void _im2col_t_row(const floating* X, const Geom* g, Py_ssize_t s, Py_ssize_t oy,
                               floating* colsT, Py_ssize_t ld) noexcept nogil:
    """Output row oy of a one-channel, column-stride-1 convolution into the transposed
    im2col: tap k's ow values at colsT + k * ld.  Each tap's values are one run of an
    input row (a memcpy), where the row layout would take a strided store per value."""
    cdef Py_ssize_t ki, kj, iy, lo, hi, k
    cdef floating* dst
    for kj in range(g.kw):
        _ox_range(g, kj, &lo, &hi)
        for ki in range(g.kh):
            k = ki * g.kw + kj
            dst = colsT + k * ld
            iy = oy * g.sh - g.pt + ki * g.dh
            if iy < 0 or iy >= g.h or lo >= hi:
                memset(dst, 0, g.ow * sizeof(floating))
                continue
            if lo > 0:
                memset(dst, 0, lo * sizeof(floating))
            memcpy(dst + lo, X + (s * g.h + iy) * g.w + lo - g.pl + kj * g.dw,
                   (hi - lo) * sizeof(floating))
            if hi < g.ow:
                memset(dst + hi, 0, (g.ow - hi) * sizeof(floating))


cdef enum:
    # Values per block of the output transform: the block's 16 inputs and 4 outputs
    # live in local arrays, so its loops vectorize (no aliasing with M is possible).
    OUT_BLOCK = 16


cdef inline void _wino_out(floating* M, Py_ssize_t ms, Py_ssize_t total, floating* dst,
                           bint pooled) noexcept nogil:
    """A^T m A for every (tile, filter) value of a chunk, A^T = [[1, 1, 1, 0],
    [0, 1, -1, -1]]: the four outputs back into M[0], M[1] (top row), M[4], M[5]
    (bottom row), or (pooled) their max (NaN-propagating) into dst."""
    cdef floating v[16][OUT_BLOCK]
    cdef floating o[4][OUT_BLOCK]
    cdef floating s00, s01, s02, s03, s10, s11, s12, s13
    cdef Py_ssize_t i0, j, k, nb
    i0 = 0
    while i0 < total:
        nb = OUT_BLOCK if total - i0 >= OUT_BLOCK else total - i0
        if nb == OUT_BLOCK:
            for k in range(16):
                for j in range(OUT_BLOCK):
                    v[k][j] = M[k * ms + i0 + j]
        else:
            for k in range(16):
                for j in range(OUT_BLOCK):
                    v[k][j] = M[k * ms + i0 + j] if j < nb else 0
        for j in range(OUT_BLOCK):
            s00 = v[0][j] + v[4][j] + v[8][j]
            s01 = v[1][j] + v[5][j] + v[9][j]
            s02 = v[2][j] + v[6][j] + v[10][j]
            s03 = v[3][j] + v[7][j] + v[11][j]
            s10 = v[4][j] - v[8][j] - v[12][j]
            s11 = v[5][j] - v[9][j] - v[13][j]
            s12 = v[6][j] - v[10][j] - v[14][j]
            s13 = v[7][j] - v[11][j] - v[15][j]
            o[0][j] = s00 + s01 + s02
            o[1][j] = s01 - s02 - s03
            o[2][j] = s10 + s11 + s12
            o[3][j] = s11 - s12 - s13
        if pooled:
            for j in range(nb):
                dst[i0 + j] = nan_max(nan_max(nan_max(o[0][j], o[1][j]), o[2][j]), o[3][j])
        else:
            for j in range(nb):
                M[i0 + j] = o[0][j]
                M[ms + i0 + j] = o[1][j]
                M[4 * ms + i0 + j] = o[2][j]
                M[5 * ms + i0 + j] = o[3][j]
        i0 += nb


cdef inline void _tile_row(const floating* left, const floating* right, Py_ssize_t tiles,
                           Py_ssize_t f, floating* dst, Py_ssize_t ow, const floating* b,
                           int act) noexcept nogil:
    """One output row from its tiles' left and right outputs (tiles x f each), with
    bias and relu/linear (act) on the way; an odd last column has no right output."""
    cdef Py_ssize_t x, j, ox
    cdef const floating* src
    cdef floating* o
    cdef floating t
    for x in range(2 * tiles):
        ox = x
        if ox >= ow:
            break
        src = (left if (x & 1) == 0 else right) + (x >> 1) * f
        o = dst + ox * f
        if b == NULL and act == ACT_LINEAR:
            for j in range(f):
                o[j] = src[j]
        elif b == NULL:
            for j in range(f):
                t = src[j]
                o[j] = 0 if t < 0 else t
        elif act == ACT_LINEAR:
            for j in range(f):
                o[j] = src[j] + b[j]
        else:
            for j in range(f):
                t = src[j] + b[j]
                o[j] = 0 if t < 0 else t


cdef inline void _wino_chunk(const Geom* g, Py_ssize_t f, Py_ssize_t u0, Py_ssize_t u1,
                             const floating* X, const floating* U, const floating* b,
                             floating* Y, int act, int pool, const floating* zeros,
                             floating* share, Py_ssize_t cu) noexcept nogil:
    """Units (tile rows) u0..u1 of the batch, cu at a time, on the calling thread."""
    cdef Py_ssize_t per_row, rows, u, s, ty, k, T, m, c = g.c, a, oy
    cdef Py_ssize_t vstride, mstride
    cdef floating* V
    cdef floating* M
    cdef floating* R
    cdef floating* dst
    cdef bint after = _max_first(pool, act)
    cdef bint fused
    _units(g, True, pool, &per_row, &rows)
    while u0 < u1:
        m = cu if cu < u1 - u0 else u1 - u0
        T = m * per_row
        vstride, mstride = T * c, T * f
        V = share
        M = V + 16 * vstride
        R = M + 16 * mstride
        for u in range(m):
            s, ty = (u0 + u) // rows, (u0 + u) % rows
            _wino_gather(X, g, s, ty, per_row, zeros, R, V + u * per_row * c, vstride)
        for k in range(16):
            gemm(False, False, <int>T, <int>f, <int>c, 1, V + k * vstride, <int>c,
                 U + k * c * f, <int>f, 0, M + k * mstride, <int>f)
        if pool >= 0:
            # Tile t of the chunk is pooled output u0 * per_row + t.
            dst = Y + u0 * per_row * f
            if after:
                _wino_out(M, mstride, T * f, dst, True)
                _act_rows_serial(dst, b, dst, T, f, act)
            else:
                _wino_out(M, mstride, T * f, NULL, False)
                for a in range(4):
                    k = (a & 1) + 4 * (a >> 1)   # the outputs: M[0], M[1], M[4], M[5]
                    _act_rows_serial(M + k * mstride, b, M + k * mstride, T, f, act)
                _pool4(M, M + mstride, M + 4 * mstride, M + 5 * mstride, dst, T * f, pool)
        else:
            _wino_out(M, mstride, T * f, NULL, False)
            fused = act == ACT_RELU or act == ACT_LINEAR
            if not fused:
                for a in range(4):
                    k = (a & 1) + 4 * (a >> 1)
                    _act_rows_serial(M + k * mstride, b, M + k * mstride, T, f, act)
            for u in range(m):
                s, ty = (u0 + u) // rows, (u0 + u) % rows
                for a in range(2):
                    oy = 2 * ty + a
                    if oy < g.oh:
                        # Output row oy: tile x's left and right columns are 2x, 2x + 1.
                        _tile_row(M + 4 * a * mstride + u * per_row * f,
                                  M + (4 * a + 1) * mstride + u * per_row * f, per_row, f,
                                  Y + (s * g.oh + oy) * g.ow * f, g.ow,
                                  b if fused else NULL, act if fused else ACT_LINEAR)
        u0 += m


# ------------------------------------------------------------------ direct, pooled
cdef inline void _direct_chunk(const Geom* g, Py_ssize_t f, Py_ssize_t u0, Py_ssize_t u1,
                               const floating* X, const floating* W, const floating* b,
                               floating* Y, int act, int pool, floating* share,
                               Py_ssize_t cu) noexcept nogil:
    """Row pairs u0..u1 of the batch, cu at a time: im2col of both rows, one GEMM,
    bias and activation, and the 2x2 pooling into Y while the chunk is in cache."""
    cdef Py_ssize_t rows = g.oh // 2, pw = g.ow // 2, K = g.kh * g.kw * g.c
    cdef Py_ssize_t m, u, s, py, r, rowlen = g.ow * K
    cdef floating* cols = share
    cdef floating* O
    cdef floating* top
    cdef bint after = _max_first(pool, act)
    cdef bint transposed = g.c == 1 and g.sw == 1
    while u0 < u1:
        m = cu if cu < u1 - u0 else u1 - u0
        O = cols + m * 2 * rowlen
        for u in range(m):
            s, py = (u0 + u) // rows, (u0 + u) % rows
            for r in range(2):
                if transposed:
                    _im2col_t_row(X, g, s, 2 * py + r, cols + (2 * u + r) * g.ow, m * 2 * g.ow)
                else:
                    _im2col_row(X, g, s, 2 * py + r, cols + (2 * u + r) * rowlen)
        if transposed:
            gemm(True, False, <int>(m * 2 * g.ow), <int>f, <int>K, 1, cols,
                 <int>(m * 2 * g.ow), W, <int>f, 0, O, <int>f)
        else:
            gemm(False, False, <int>(m * 2 * g.ow), <int>f, <int>K, 1, cols, <int>K, W,
                 <int>f, 0, O, <int>f)
        if not after:
            _act_rows_serial(O, b, O, m * 2 * g.ow, f, act)
        for u in range(m):
            top = O + 2 * u * g.ow * f
            _pool_rows(top, top + g.ow * f, pw, f, Y + (u0 + u) * pw * f, pool)
        if after:
            _act_rows_serial(Y + u0 * pw * f, b, Y + u0 * pw * f, m * pw, f, act)
        u0 += m


cdef inline void conv_infer(int nt, const Geom* g, Py_ssize_t n, Py_ssize_t f,
                            const floating* X,   # (n, h, w, c) IN
                            const floating* W,   # (kh * kw * c, f) IN
                            const floating* b,   # (f,) IN or NULL
                            floating* Y,         # (n, oh, ow, f), pooled (n, oh//2, ow//2, f)
                            floating* work, Py_ssize_t work_len,
                            bint wino, int pool, int act) noexcept nogil:
    """Y = act(conv(X, W) + b), then pooled 2x2/2 when pool >= 0.

    wino: Winograd F(2x2, 3x3) (wino_fits(g) must hold); else the direct im2col +
    GEMM, which this function runs only with a fused pooling (conv_forward does the
    rest).  work_len >= infer_work(1, ...); more threads when it holds more shares.
    """
    cdef Py_ssize_t per_row, rows, units, cu, share, shared, lo, hi
    cdef floating* zeros = NULL
    cdef const floating* U = NULL
    cdef int t, team
    _units(g, wino, pool, &per_row, &rows)
    units = n * rows
    if units == 0 or per_row == 0 or f == 0:
        return
    cu = _chunk_units(g, f, wino, pool)
    share = _share(g, f, wino, pool)
    shared = _shared(g, f, wino)
    team = nt if nt > 1 else 1
    if (work_len - shared) // share < team:
        team = <int>((work_len - shared) // share)
    if team > units:
        team = <int>units
    if <double>n * g.oh * g.ow * g.kh * g.kw * g.c * f < SPLIT_MIN_MADDS:
        team = 1
    if team < 1:
        team = 1
    if wino:
        wino_weights(g.c, f, W, work)
        U = work
        zeros = work + 16 * g.c * f
        memset(zeros, 0, g.w * g.c * sizeof(floating))
    if team == 1:
        if wino:
            _wino_chunk(g, f, 0, units, X, U, b, Y, act, pool, zeros, work + shared, cu)
        else:
            _direct_chunk(g, f, 0, units, X, W, b, Y, act, pool, work + shared, cu)
        return
    fl_blas_single()
    for t in prange(team, num_threads=team, schedule='static'):
        lo = units * t // team
        hi = units * (t + 1) // team
        if wino:
            _wino_chunk(g, f, lo, hi, X, U, b, Y, act, pool, zeros,
                        work + shared + t * share, cu)
        else:
            _direct_chunk(g, f, lo, hi, X, W, b, Y, act, pool, work + shared + t * share, cu)
