# Design
# ------
# The one executor of step programs (fastlayers/engine/program.py).  Python lowers
# a model into typed op records and fills the cdef struct array below through the
# typed setters of `Executor` (fastlayers/engine/executor.py does that, once per
# compile); this module only runs them: forward, losses, backward, the optimizer
# updates and the commit of state, in one nogil call per step.  It makes no
# decision that belongs to the model: which weights train, which ops run backward,
# which inputs need gradients, which batch norms use batch statistics, which
# updates fuse into the backward pass -- all are fields written by Python.
#
# A step changes nothing until it has succeeded: labels are checked before the
# forward pass; moving statistics, dropout counters and weights are written only
# in the commit phase, after every op (callbacks into Python included) has run.
# The one exception is plain SGD fused into the backward pass (one GEMM into W),
# which lowering allows only when no op can fail (no callbacks).
#
# Buffers are bound per batch size by Python (values, gradients, dropout masks,
# scratch); steady-state steps allocate nothing.
from cython cimport floating
cimport numpy as cnp
from numpy import ndarray as np_ndarray
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.math cimport sqrt, isfinite
from libc.string cimport memcpy, memset

from _act cimport ACT_LINEAR, _act_grad_rows, _act_grad_rows_z, _act_rows
from _blas cimport gemm_split, SPLIT_MIN_MADDS
from _bn cimport (_bn_backward_infer, _bn_backward_train, _bn_infer, _bn_train)
from _codes cimport (H_CLIPNORM, H_GSCALE, H_LR, LOSS_BCE, LOSS_CALLBACK, LOSS_CE,
                     LOSS_MAE, LOSS_MSE, LOSS_SPARSE_CE, OP_ACTIVATION, OP_MERGE,
                     MERGE_ADD, MERGE_SUBTRACT, MERGE_MULTIPLY, MERGE_AVERAGE, MERGE_MAXIMUM,
                     MERGE_MINIMUM,
                     OP_BATCHNORM, OP_CALLBACK, OP_CONCAT, OP_CONV, OP_DENSE, OP_DROPOUT,
                     OP_POOL, OP_TRANSPOSE, POOL_MAX, epsilon)
from _common cimport _colsum
from _conv cimport Geom, conv_backward, conv_forward
from _conv_infer cimport conv_infer, infer_work, wino_fits
from _dropout cimport _dropout_bwd, _dropout_fwd
from _loss cimport (_bce_logits, _bce_probs, _ce_logits_row, _ce_probs_row, _dist_range,
                    _dist_sum)
from _optim cimport sq_norm, update_one
from _pool cimport PGeom, pool_backward, pool_forward
from _codes cimport OP_CONV_TRANSPOSE, OP_DEPTHWISE
from _depthwise cimport dw_backward, dw_forward
from _rng cimport rng_key
from _codes cimport OP_LAYERNORM, OP_PAD2D, OP_UPSAMPLE2D
from _layernorm cimport ln_backward, ln_forward
from _resample cimport shift2d, upsample2d_backward, upsample2d_forward
from _codes cimport (OP_EMBEDDING, OP_GROUPNORM, OP_PRELU, IDS_FLOAT32, IDS_FLOAT64, IDS_INT32,
                     IDS_INT64)
from _embedding cimport emb_first_bad, emb_gather, emb_scatter_add
from _groupnorm cimport gn_backward, gn_forward
from _prelu cimport prelu_backward_rows, prelu_forward_rows

from _team cimport team, team_for_step

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)



cdef struct XOp:
    int kind
    int act
    int n_in
    int n_out
    int* ins            # (n_in,) slot indices
    int* outs           # (n_out,)
    uint8_t* want_dx    # (n_in,)
    uint8_t* acc_dx     # (n_in,)
    bint backward
    Py_ssize_t d_in     # dense: input width; concat/add: unused
    Py_ssize_t d_out    # output's last dimension (rows = n * size / d_out)
    void* W             # dense kernel / bn gamma (a ones buffer when absent)
    void* b             # dense bias / bn beta (a zeros buffer when absent), or NULL
    void* gW            # gradient buffers (NULL: not trained)
    void* gb
    bint acc_gW         # add into gW/gb (an earlier use wrote them, R8)
    bint acc_gb
    bint fused_W        # plain SGD straight into W/b in the backward pass
    bint fused_b
    # batch norm
    void* mm
    void* mv
    void* bmean
    void* bvar
    void* binv
    double eps
    double momentum
    bint batch_stats
    bint update_stats
    # dropout
    double* rate        # read every step (Dropout.rate may change after compile)
    uint64_t key
    uint64_t* counter
    # bound per batch size: the dropout mask (uint8) or a convolution's im2col scratch (aux_rows rows; NULL for a direct 1x1 kernel)
    void* aux
    Py_ssize_t aux_rows
    # conv: h w c oh ow kh kw sh sw dh dw pt pl; pool: h w c oh ow ph pw sh sw pt pl
    # depthwise: as conv (d_in = kh * kw taps, d_out = c * depth_multiplier; aux the
    # per-thread partial dW sums, aux_rows of them).  conv_transpose: the geometry of
    # the convolution it is the data gradient of (h w c: the op's output, oh ow: its
    # input; d_in = K = kh * kw * c, d_out = c; aux an im2col scratch as conv's)
    Py_ssize_t* geom
    # conv without a backward pass (set_conv_infer): a fused 2x2/2 pooling (-1: none;
    # the output slot is then the pooled one), Winograd F(2x2, 3x3); aux is then the
    # work scratch of _conv_infer.pxd (aux_rows its values).
    int pool
    bint wino
    # conv with a backward pass: the other threads' partial dW/db sums (set_conv_parts)
    void* parts
    Py_ssize_t parts_len
    # concat: per input the values per sample before the axis (outer) and chunk
    Py_ssize_t outer
    Py_ssize_t* chunk   # (n_in,) values per outer index of each input
    # transpose: (outer, t1, t2) -> (outer, t2, t1)
    Py_ssize_t t1
    Py_ssize_t t2
    # callbacks
    int callback
    # layernorm: d_out is the row width, eps the epsilon, aux the batch's row
    # statistics (2, rows): mean then inv_std.  pad2d geom: h w c H W top left (the
    # input's place in the output; negative: a crop); upsample2d geom: h w c sh sw.
    # embedding: W the (vocab, d_out) table, its ids read as ids_kind (_codes IDS_*).
    int ids_kind
    Py_ssize_t vocab
    # groupnorm: d_out channels in `groups` groups, eps, aux (2, n * groups) stats.
    Py_ssize_t groups
    # prelu: W alpha (n_alpha,), aidx (values per sample,) each value's slope.
    Py_ssize_t* aidx
    Py_ssize_t n_alpha


cdef struct XLoss:
    int kind
    int slot
    bint from_logits
    bint accumulate     # another loss on the same slot wrote its gradient first
    double weight
    Py_ssize_t k        # last dimension of the output
    const void* target  # bound per step
    const double* sw    # per-sample weights or NULL
    double value        # this step's (unweighted) loss


cdef struct XWeight:
    void* w
    void* g
    void* s0
    void* s1
    void* s2
    Py_ssize_t size
    bint fused


cdef class Executor:
    """A step program's ops as a struct array, and the loops that run them."""

    cdef XOp* ops
    cdef int n_ops
    cdef XLoss* losses
    cdef int n_losses
    cdef XWeight* wts
    cdef int n_wts
    cdef int n_slots
    cdef int* fast_in          # fast_step: slots that take its input array
    cdef list _xdims, _ydims   # try_fast: the per-sample shapes it accepts
    cdef bint _int_labels, _fast_ok
    cdef int _xtype            # try_fast: the input array's NumPy type (set_fast_input_type)
    cdef bint has_emb          # some EMBEDDING op: check_ids has work
    cdef int n_fast_in
    cdef Py_ssize_t* size      # per slot: values per sample
    cdef void** val            # per slot: bound value buffers
    cdef void** grad           # per slot: bound gradient buffers (NULL: none)
    cdef void* scratch         # bound: the largest slot, for accumulating gradients
    cdef bint f32
    cdef int nthreads          # this step's team (team_for_step(), or 1 when no product splits)
    cdef bint split_worth
    cdef Py_ssize_t n          # bound batch size
    cdef Py_ssize_t row_offset # dropout: first global row of this batch
    cdef Py_ssize_t global_n   # dropout: rows of the global batch (counter advance)
    cdef public int opt_kind
    cdef double lr             # this step's learning rate, for updates fused into backward
    cdef list _keep            # arrays whose memory the struct points into
    cdef public object callback_forward
    cdef public object callback_backward
    cdef public object callback_loss

    def __cinit__(self):
        self.ops = NULL
        self.losses = NULL
        self.wts = NULL
        self.size = NULL
        self.val = NULL
        self.grad = NULL
        self.fast_in = NULL

    def __init__(self, bint f32, int n_slots, Py_ssize_t[::1] sizes, int n_ops, int n_losses,
                 int n_weights):
        self.f32 = f32
        self.n_slots = n_slots
        self.n_ops = n_ops
        self.n_losses = n_losses
        self.n_wts = n_weights
        self._keep = []
        self.ops = <XOp*>calloc(max(n_ops, 1), sizeof(XOp))
        self.losses = <XLoss*>calloc(max(n_losses, 1), sizeof(XLoss))
        self.wts = <XWeight*>calloc(max(n_weights, 1), sizeof(XWeight))
        self.size = <Py_ssize_t*>calloc(max(n_slots, 1), sizeof(Py_ssize_t))
        self.val = <void**>calloc(max(n_slots, 1), sizeof(void*))
        self.grad = <void**>calloc(max(n_slots, 1), sizeof(void*))
        if not (self.ops and self.losses and self.wts and self.size and self.val and self.grad):
            raise MemoryError()
        if sizes.shape[0] != n_slots:
            raise ValueError("Executor: sizes must have one entry per slot")
        for i in range(n_slots):
            self.size[i] = sizes[i]
        self.n = -1
        self.nthreads = 1
        self._xtype = cnp.NPY_FLOAT if f32 else cnp.NPY_DOUBLE

    def __dealloc__(self):
        free(self.ops)
        free(self.losses)
        free(self.wts)
        free(self.size)
        free(self.val)
        free(self.grad)
        free(self.fast_in)

    def __reduce__(self):
        raise TypeError("an Executor holds pointers into one process's memory; it is rebuilt "
                        "by compile() and never pickled")

    # ------------------------------------------------------------ setup (typed setters)
    cdef void* _ptr(self, object a) except? NULL:
        if a is None:
            return NULL
        self._keep.append(a)
        return <void*><size_t>a.__array_interface__["data"][0]

    def set_op(self, int i, int kind, int act, int[::1] ins, int[::1] outs,
               uint8_t[::1] want_dx, uint8_t[::1] acc_dx, bint backward, Py_ssize_t d_in,
               Py_ssize_t d_out, int callback):
        cdef XOp* op
        if not 0 <= i < self.n_ops:
            raise IndexError(i)
        if want_dx.shape[0] != ins.shape[0] or acc_dx.shape[0] != ins.shape[0]:
            raise ValueError("set_op: want_dx/acc_dx need one flag per input")
        for s in list(ins) + list(outs):
            if not 0 <= s < self.n_slots:
                raise ValueError(f"set_op: slot {s} out of range")
        op = &self.ops[i]
        op.kind, op.act, op.backward, op.d_in, op.d_out = kind, act, backward, d_in, d_out
        op.n_in = ins.shape[0]
        op.n_out = outs.shape[0]
        op.ins = <int*>self._ptr(ins.base if ins.base is not None else ins)
        op.outs = <int*>self._ptr(outs.base if outs.base is not None else outs)
        op.want_dx = <uint8_t*>self._ptr(want_dx.base if want_dx.base is not None else want_dx)
        op.acc_dx = <uint8_t*>self._ptr(acc_dx.base if acc_dx.base is not None else acc_dx)
        op.callback = callback
        op.pool, op.wino = -1, False
        op.parts, op.parts_len = NULL, 0

    def set_conv_infer(self, int i, int pool, bint wino):
        """A CONV op without a backward pass: the pooling fused into it (-1: none,
        else POOL_MAX/POOL_AVERAGE) and whether it runs Winograd.  Before
        set_geometry, which checks the (pooled) output against it."""
        cdef XOp* op = &self.ops[i]
        if op.kind != OP_CONV or op.backward:
            raise ValueError("set_conv_infer: not a CONV op without a backward pass")
        if pool not in (-1, 0, 1):
            raise ValueError(f"set_conv_infer: pool must be -1, 0 or 1, got {pool}")
        if pool < 0 and not wino:
            raise ValueError("set_conv_infer: neither a pooling nor Winograd")
        op.pool, op.wino = pool, wino

    def set_conv_parts(self, int i, parts):
        """A CONV op's buffer for the partial dW/db sums of threads beyond the first
        (conv_parts(K, f) values each; fewer threads run when it holds fewer)."""
        cdef XOp* op = &self.ops[i]
        if op.kind != OP_CONV:
            raise ValueError("set_conv_parts: not a CONV op")
        if not isinstance(parts, np_ndarray) or parts.ndim != 1 or \
                parts.dtype.itemsize != (4 if self.f32 else 8) or parts.dtype.kind != "f" or \
                not parts.flags.c_contiguous or not parts.flags.writeable:
            raise ValueError("set_conv_parts: a writeable 1-D buffer of the program's dtype "
                             "expected")
        op.parts = self._ptr(parts)
        op.parts_len = parts.shape[0]

    def set_params(self, int i, W, b, gW, gb, bint acc_gW, bint acc_gb, bint fused_W,
                   bint fused_b):
        cdef XOp* op = &self.ops[i]
        op.W, op.b, op.gW, op.gb = self._ptr(W), self._ptr(b), self._ptr(gW), self._ptr(gb)
        op.acc_gW, op.acc_gb, op.fused_W, op.fused_b = acc_gW, acc_gb, fused_W, fused_b

    def set_batchnorm(self, int i, mm, mv, bmean, bvar, binv, double eps, double momentum,
                      bint batch_stats, bint update_stats):
        cdef XOp* op = &self.ops[i]
        op.mm, op.mv = self._ptr(mm), self._ptr(mv)
        op.bmean, op.bvar, op.binv = self._ptr(bmean), self._ptr(bvar), self._ptr(binv)
        op.eps, op.momentum = eps, momentum
        op.batch_stats, op.update_stats = batch_stats, update_stats

    def set_dropout(self, int i, double[::1] rate, uint64_t seed, uint64_t[::1] counter):
        cdef XOp* op = &self.ops[i]
        if rate.shape[0] != 1 or counter.shape[0] != 1:
            raise ValueError("set_dropout: rate and counter are one-element arrays")
        op.rate = <double*>self._ptr(rate.base if rate.base is not None else rate)
        op.key = rng_key(seed)
        op.counter = <uint64_t*>self._ptr(counter.base if counter.base is not None else counter)

    def set_concat(self, int i, Py_ssize_t outer, Py_ssize_t[::1] chunk):
        cdef XOp* op = &self.ops[i]
        op.outer = outer
        op.chunk = <Py_ssize_t*>self._ptr(chunk.base if chunk.base is not None else chunk)

    def set_geometry(self, int i, Py_ssize_t[::1] geom):
        """An image op's geometry, as documented on XOp: CONV, DEPTHWISE and
        CONV_TRANSPOSE 13 values, POOL 11, PAD2D 7, UPSAMPLE2D 5; checked against the
        op's slots (a pointer into it is kept)."""
        cdef XOp* op = &self.ops[i]
        cdef Py_ssize_t want, j, f, nonzero, isize = self.size[op.ins[0]]
        cdef Py_ssize_t osize = self.size[op.outs[0]]
        cdef bint ok
        if op.kind == OP_CONV or op.kind == OP_DEPTHWISE or op.kind == OP_CONV_TRANSPOSE:
            want, nonzero = 13, 11     # the paddings (last two) may be 0
        elif op.kind == OP_POOL:
            want, nonzero = 11, 9
        elif op.kind == OP_PAD2D:
            want, nonzero = 7, 5       # the offsets (last two) may be negative
        elif op.kind == OP_UPSAMPLE2D:
            want, nonzero = 5, 5
        else:
            raise ValueError("set_geometry: the op has no geometry")
        if geom.shape[0] != want:
            raise ValueError(f"set_geometry: {want} values expected, got {geom.shape[0]}")
        for j in range(want):
            if (j < nonzero and geom[j] < 1) or (op.kind != OP_PAD2D and geom[j] < 0):
                raise ValueError(f"set_geometry: value {j} out of range ({geom[j]})")
        if op.kind == OP_CONV:
            ok = (op.d_in == geom[2] * geom[5] * geom[6]
                  and geom[0] * geom[1] * geom[2] == isize
                  and (geom[3] * geom[4] * op.d_out == osize if op.pool < 0 else
                       (geom[3] // 2) * (geom[4] // 2) * op.d_out == osize))
            if op.wino:
                ok = ok and geom[5] == 3 and geom[6] == 3 and geom[7] == 1 and geom[8] == 1 \
                    and geom[9] == 1 and geom[10] == 1
        elif op.kind == OP_DEPTHWISE:
            ok = (op.d_in == geom[5] * geom[6] and op.d_out % geom[2] == 0
                  and geom[0] * geom[1] * geom[2] == isize
                  and geom[3] * geom[4] * op.d_out == osize)
        elif op.kind == OP_CONV_TRANSPOSE:
            f = isize // (geom[3] * geom[4])
            ok = (op.d_in == geom[5] * geom[6] * geom[2] and op.d_out == geom[2] and f >= 1
                  and geom[3] * geom[4] * f == isize
                  and geom[0] * geom[1] * geom[2] == osize)
        elif op.kind == OP_POOL:
            ok = geom[0] * geom[1] * geom[2] == isize and geom[3] * geom[4] * geom[2] == osize
        elif op.kind == OP_PAD2D:
            ok = geom[0] * geom[1] * geom[2] == isize and geom[3] * geom[4] * geom[2] == osize
        else:
            ok = (geom[0] * geom[1] * geom[2] == isize
                  and geom[0] * geom[3] * geom[1] * geom[4] * geom[2] == osize)
        if not ok:
            raise ValueError("set_geometry: the geometry does not match the op's slots")
        op.geom = <Py_ssize_t*>self._ptr(geom.base if geom.base is not None else geom)

    def set_layernorm(self, int i, double eps):
        """A LAYERNORM op's epsilon (its gamma/beta and their gradients: set_params)."""
        cdef XOp* op = &self.ops[i]
        if op.kind != OP_LAYERNORM:
            raise ValueError("set_layernorm: not a LAYERNORM op")
        if op.d_out < 1 or self.size[op.outs[0]] % op.d_out or \
                self.size[op.ins[0]] != self.size[op.outs[0]]:
            raise ValueError("set_layernorm: the row width does not match the op's slots")
        if not eps >= 0:
            raise ValueError(f"set_layernorm: epsilon must be >= 0, got {eps}")
        op.eps = eps

    def set_embedding(self, int i, Py_ssize_t vocab, int ids_kind):
        """An EMBEDDING op's table rows and how it reads its ids (the table: set_params)."""
        cdef XOp* op = &self.ops[i]
        if op.kind != OP_EMBEDDING:
            raise ValueError("set_embedding: not an EMBEDDING op")
        if vocab < 1 or op.d_out < 1 or op.n_in != 1 or \
                self.size[op.outs[0]] != self.size[op.ins[0]] * op.d_out:
            raise ValueError("set_embedding: the table does not match the op's slots")
        if ids_kind not in (IDS_FLOAT32, IDS_FLOAT64, IDS_INT32, IDS_INT64):
            raise ValueError(f"set_embedding: unknown ids kind {ids_kind}")
        op.vocab, op.ids_kind = vocab, ids_kind
        self.has_emb = True

    def set_groupnorm(self, int i, Py_ssize_t groups, double eps):
        """A GROUPNORM op's groups and epsilon (gamma/beta and their gradients: set_params)."""
        cdef XOp* op = &self.ops[i]
        if op.kind != OP_GROUPNORM:
            raise ValueError("set_groupnorm: not a GROUPNORM op")
        if groups < 1 or op.d_out < 1 or op.d_out % groups or self.size[op.outs[0]] % op.d_out \
                or self.size[op.ins[0]] != self.size[op.outs[0]]:
            raise ValueError("set_groupnorm: the groups do not match the op's slots")
        if not eps >= 0:
            raise ValueError(f"set_groupnorm: epsilon must be >= 0, got {eps}")
        op.groups, op.eps = groups, eps

    def set_prelu(self, int i, Py_ssize_t[::1] aidx, Py_ssize_t n_alpha):
        """A PRELU op's slope index per value of a sample (alpha: set_params' W)."""
        cdef XOp* op = &self.ops[i]
        cdef Py_ssize_t j
        if op.kind != OP_PRELU:
            raise ValueError("set_prelu: not a PRELU op")
        if aidx.shape[0] != self.size[op.ins[0]] or self.size[op.outs[0]] != aidx.shape[0]:
            raise ValueError("set_prelu: one slope index per value of a sample expected")
        for j in range(aidx.shape[0]):
            if not 0 <= aidx[j] < n_alpha:
                raise ValueError(f"set_prelu: slope index {aidx[j]} out of range")
        op.aidx = <Py_ssize_t*>self._ptr(aidx.base if aidx.base is not None else aidx)
        op.n_alpha = n_alpha

    def set_fast_input_type(self, int typenum):
        """The NumPy type number of the input array ``try_fast`` accepts (an integer
        input of ids; default: the program's float dtype)."""
        self._xtype = typenum

    def check_ids(self):
        """The index of the first EMBEDDING op whose bound ids name no row, else -1.

        Run before any work (as ``check_labels``), so a bad batch changes nothing.
        """
        cdef int l
        cdef XOp* op
        if not self.has_emb:
            return -1
        for l in range(self.n_ops):
            op = &self.ops[l]
            if op.kind == OP_EMBEDDING and emb_first_bad(
                    self.val[op.ins[0]], op.ids_kind, self.n * self.size[op.ins[0]],
                    op.vocab) >= 0:
                return l
        return -1

    def set_transpose(self, int i, Py_ssize_t outer, Py_ssize_t t1, Py_ssize_t t2):
        cdef XOp* op = &self.ops[i]
        op.outer, op.t1, op.t2 = outer, t1, t2

    def set_loss(self, int j, int kind, int slot, bint from_logits, bint accumulate,
                 double weight, Py_ssize_t k):
        cdef XLoss* L = &self.losses[j]
        L.kind, L.slot, L.from_logits, L.accumulate, L.weight, L.k = (
            kind, slot, from_logits, accumulate, weight, k)

    def set_weight(self, int j, w, g, s0, s1, s2, bint fused):
        cdef XWeight* r = &self.wts[j]
        r.w, r.g = self._ptr(w), self._ptr(g)
        r.s0, r.s1, r.s2 = self._ptr(s0), self._ptr(s1), self._ptr(s2)
        r.size = w.size
        r.fused = fused

    def set_optimizer(self, int kind):
        self.opt_kind = kind

    # ------------------------------------------------------------ binding
    def bind(self, Py_ssize_t n, list values, list grads, list aux, scratch):
        """Point the slots at the buffers of batch size n (Python keeps them alive).

        ``aux``: per op its per-batch buffer or None (dropout mask, argmax, im2col
        scratch, whose first dimension is its row count).
        """
        cdef int i
        if len(values) != self.n_slots or len(grads) != self.n_slots or len(aux) != self.n_ops:
            raise ValueError("bind: one value and gradient per slot, one aux buffer per op")
        for i in range(self.n_slots):
            self.val[i] = _addr(values[i])
            self.grad[i] = _addr(grads[i])
        for i in range(self.n_ops):
            self.ops[i].aux = _addr(aux[i])
            self.ops[i].aux_rows = len(aux[i]) if aux[i] is not None else 0
            if self.ops[i].kind == OP_CONV and (self.ops[i].pool >= 0 or self.ops[i].wino):
                self._check_infer_work(i)
        self.scratch = _addr(scratch)
        self.n = n
        self.row_offset = 0
        self.global_n = n
        self.split_worth = self._split_worth(n)

    cdef _check_infer_work(self, int i):
        cdef XOp* op = &self.ops[i]
        cdef Geom g
        if op.geom == NULL:
            raise ValueError("bind: a CONV op without its geometry")
        _conv_geom(op, &g)
        if op.aux_rows < infer_work(1, &g, op.d_out, op.wino, op.pool):
            raise ValueError(f"bind: op {i}'s work buffer is too small")

    cdef bint _split_worth(self, Py_ssize_t n):
        cdef int i
        cdef XOp* op
        for i in range(self.n_ops):
            op = &self.ops[i]
            if op.kind == OP_DENSE and <double>n * self.size[op.ins[0]] * op.d_out >= SPLIT_MIN_MADDS:
                return True
            if op.kind == OP_CONV and <double>n * self.size[op.outs[0]] * op.d_in >= SPLIT_MIN_MADDS:
                return True
            if op.kind == OP_DEPTHWISE and <double>n * self.size[op.outs[0]] * op.d_in >= SPLIT_MIN_MADDS:
                return True
            if op.kind == OP_CONV_TRANSPOSE and \
                    <double>n * self.size[op.ins[0]] * op.d_in >= SPLIT_MIN_MADDS:
                return True
        return False

    def set_input(self, int slot, a):
        """Point an input slot at a caller's array (C-contiguous, the program's dtype)."""
        self.val[slot] = _addr(a)

    def set_target(self, int j, t, sw):
        self.losses[j].target = _addr(t)
        self.losses[j].sw = <const double*>_addr(sw)

    def set_dropout_rows(self, Py_ssize_t row_offset, Py_ssize_t global_n):
        """Dropout counters for a shard of a global batch (data-parallel training)."""
        self.row_offset = row_offset
        self.global_n = global_n

    def loss_value(self, int j):
        return self.losses[j].value

    # ------------------------------------------------------------ running
    def set_fast_inputs(self, int[::1] slots):
        """The slots ``fast_step`` points at its input array (the input and its aliases)."""
        free(self.fast_in)
        self.fast_in = <int*>calloc(max(slots.shape[0], 1), sizeof(int))
        if self.fast_in == NULL:
            raise MemoryError()
        self.n_fast_in = slots.shape[0]
        for i in range(slots.shape[0]):
            if not 0 <= slots[i] < self.n_slots:
                raise ValueError(f"set_fast_inputs: slot {slots[i]} out of range")
            self.fast_in[i] = slots[i]

    def fast_step(self, x, y, double[::1] hyper):
        """A whole step on one input and one target array already in the program's form.

        The caller (``Runner.fast_step``) has checked the arrays' dtype, shape and
        layout and bound the batch size; this points the slots at them and runs.
        Returns NaN, having done nothing, when sparse labels are out of range.
        """
        cdef int i
        cdef void* xp = _addr(x)
        for i in range(self.n_fast_in):
            self.val[self.fast_in[i]] = xp
        self.losses[0].target = _addr(y)
        self.losses[0].sw = NULL
        self.row_offset = 0
        self.global_n = self.n
        if self.has_emb and self.check_ids() >= 0:
            return float("nan")
        if self.losses[0].kind == LOSS_SPARSE_CE and not _labels_ok(
                <const int64_t*>self.losses[0].target,
                self.n * self.size[self.losses[0].slot] // self.losses[0].k, self.losses[0].k):
            return float("nan")
        return self._step(&hyper[0])

    def set_fast_form(self, Py_ssize_t[::1] xdims, Py_ssize_t[::1] ydims, bint int_labels):
        """The per-sample shapes ``try_fast`` accepts for its input and target arrays."""
        self._xdims = list(xdims)
        self._ydims = list(ydims)
        self._int_labels = int_labels
        self._fast_ok = True

    def try_fast(self, x, y, double[::1] hyper):
        """``fast_step`` if ``x`` and ``y`` are NumPy arrays in the program's form and of
        the bound batch size; else ``None`` (nothing done: the caller converts or binds).

        The form: C-contiguous, the program's dtype (int64 labels for a sparse loss),
        per-sample shapes as set by ``set_fast_form``.
        """
        cdef cnp.ndarray a, b
        cdef int i, want = cnp.NPY_FLOAT if self.f32 else cnp.NPY_DOUBLE
        if not self._fast_ok or type(x) is not np_ndarray or type(y) is not np_ndarray:
            return None
        a, b = <cnp.ndarray>x, <cnp.ndarray>y
        if (cnp.PyArray_TYPE(a) != self._xtype or not cnp.PyArray_IS_C_CONTIGUOUS(a)
                or cnp.PyArray_NDIM(a) != len(self._xdims) + 1
                or cnp.PyArray_DIMS(a)[0] != self.n or self.n < 1):
            return None
        for i in range(len(self._xdims)):
            if cnp.PyArray_DIMS(a)[i + 1] != <Py_ssize_t>self._xdims[i]:
                return None
        if (cnp.PyArray_TYPE(b) != (cnp.NPY_INT64 if self._int_labels else want)
                or not cnp.PyArray_IS_C_CONTIGUOUS(b)
                or cnp.PyArray_NDIM(b) != len(self._ydims) + 1
                or cnp.PyArray_DIMS(b)[0] != self.n):
            return None
        for i in range(len(self._ydims)):
            if cnp.PyArray_DIMS(b)[i + 1] != <Py_ssize_t>self._ydims[i]:
                return None
        return self.fast_step(x, y, hyper)

    def check_labels(self):
        """The index of the first sparse loss whose labels are out of range, else -1.

        Run before any work, so a bad batch changes nothing.
        """
        cdef int j
        cdef XLoss* L
        for j in range(self.n_losses):
            L = &self.losses[j]
            if L.kind == LOSS_SPARSE_CE and not _labels_ok(<const int64_t*>L.target,
                                                           self.n * self.size[L.slot] // L.k, L.k):
                return j
        return -1

    def forward(self, bint training_step):
        """Run the ops forward (a training step's forward when ``training_step``)."""
        if self.f32:
            _forward[float](self, <float>0)
        else:
            _forward[double](self, <double>0)

    def losses_and_backward(self, double[::1] hyper):
        """Losses (and their gradients) then the backward pass; returns the total loss."""
        self.lr = hyper[H_LR]
        if self.f32:
            return _losses_backward[float](self, <float>0, True)
        return _losses_backward[double](self, <double>0, True)

    def backward_only(self):
        """The backward pass from output gradients the caller wrote (the public contract)."""
        if self.f32:
            _backward[float](self, <float>0)
        else:
            _backward[double](self, <double>0)

    def losses_only(self):
        if self.f32:
            return _losses_backward[float](self, <float>0, False)
        return _losses_backward[double](self, <double>0, False)

    def global_norm(self):
        """sqrt of the sum of squares of every (unfused) gradient: clipping's input."""
        cdef int j
        cdef double s = 0
        with nogil:
            for j in range(self.n_wts):
                if not self.wts[j].fused:
                    if self.f32:
                        s += sq_norm(<const float*>self.wts[j].g, self.wts[j].size)
                    else:
                        s += sq_norm(<const double*>self.wts[j].g, self.wts[j].size)
        return sqrt(s)

    def update(self, double[::1] hyper):
        """The optimizer's update of every unfused trained weight from its gradient."""
        if self.f32:
            _update[float](self, <float>0, &hyper[0])
        else:
            _update[double](self, <double>0, &hyper[0])

    def commit(self):
        """Write the step's state: moving statistics and dropout counters."""
        if self.f32:
            _commit[float](self, <float>0)
        else:
            _commit[double](self, <double>0)

    def step(self, double[::1] hyper):
        """A whole training step (no Python in between unless callbacks); the total loss.

        The caller has checked labels (``check_labels``).  Anything between gradients
        and updates (global-norm clipping, a gradient exchange) runs the phases one
        by one instead: forward, losses_and_backward, update, commit.
        """
        return self._step(&hyper[0])

    cdef double _step(self, double* hyper) except? -1:
        cdef double loss
        self.lr = hyper[H_LR]
        if self.f32:
            _forward[float](self, <float>0)
            loss = _losses_backward[float](self, <float>0, True)
            _update[float](self, <float>0, hyper)
            _commit[float](self, <float>0)
        else:
            _forward[double](self, <double>0)
            loss = _losses_backward[double](self, <double>0, True)
            _update[double](self, <double>0, hyper)
            _commit[double](self, <double>0)
        return loss

    def run_forward_only(self):
        """Inference: forward (and losses, if any targets are bound) without gradients."""
        if self.f32:
            _forward[float](self, <float>0)
        else:
            _forward[double](self, <double>0)


cdef bint _labels_ok(const int64_t* lab, Py_ssize_t rows, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(rows):
        if lab[i] < 0 or lab[i] >= k:
            return False
    return True


cdef inline void* _addr(object a):
    # The callers pass NumPy arrays (or None): their data pointer without building
    # the __array_interface__ dict (a step's largest Python cost at small sizes).
    return cnp.PyArray_DATA(<cnp.ndarray>a) if a is not None else NULL


cdef inline Py_ssize_t _rows(Executor ex, XOp* op) noexcept nogil:
    return ex.n * ex.size[op.outs[0]] // op.d_out


cdef inline void _add_into(floating* dst, const floating* src, Py_ssize_t size) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(size):
        dst[i] = dst[i] + src[i]


cdef inline void _transpose(const floating* x, floating* y, Py_ssize_t outer, Py_ssize_t t1,
                            Py_ssize_t t2, bint add) noexcept nogil:
    """y[o, j, i] = x[o, i, j] (or +=) for x of shape (outer, t1, t2)."""
    cdef Py_ssize_t o, i, j, blk = t1 * t2
    for o in range(outer):
        for i in range(t1):
            for j in range(t2):
                if add:
                    y[o * blk + j * t1 + i] += x[o * blk + i * t2 + j]
                else:
                    y[o * blk + j * t1 + i] = x[o * blk + i * t2 + j]


cdef inline void _merge_forward(Executor ex, XOp* op, floating* out,
                                Py_ssize_t size) noexcept nogil:
    """out = add/subtract/multiply/average/maximum/minimum of the op's inputs."""
    cdef int i, mode = op.act
    cdef Py_ssize_t j
    cdef const floating* x
    memcpy(out, ex.val[op.ins[0]], size * sizeof(floating))
    for i in range(1, op.n_in):
        x = <const floating*>ex.val[op.ins[i]]
        if mode == MERGE_ADD or mode == MERGE_AVERAGE:
            for j in range(size):
                out[j] = out[j] + x[j]
        elif mode == MERGE_SUBTRACT:
            for j in range(size):
                out[j] = out[j] - x[j]
        elif mode == MERGE_MULTIPLY:
            for j in range(size):
                out[j] = out[j] * x[j]
        elif mode == MERGE_MAXIMUM:
            for j in range(size):
                if x[j] > out[j]:
                    out[j] = x[j]
        else:
            for j in range(size):
                if x[j] < out[j]:
                    out[j] = x[j]
    if mode == MERGE_AVERAGE:
        for j in range(size):
            out[j] = out[j] / op.n_in


cdef inline void _merge_backward(Executor ex, XOp* op, const floating* G,
                                 Py_ssize_t size) noexcept nogil:
    """Each input's gradient; maximum/minimum route it to the first input that won."""
    cdef int i, k, mode = op.act
    cdef Py_ssize_t j
    cdef floating* dst
    cdef floating v, scale
    cdef const floating* out = <const floating*>ex.val[op.outs[0]]
    cdef const floating* x
    cdef bint taken
    for i in range(op.n_in):
        if not op.want_dx[i]:
            continue
        dst = <floating*>ex.scratch if op.acc_dx[i] else <floating*>ex.grad[op.ins[i]]
        x = <const floating*>ex.val[op.ins[i]]
        if mode == MERGE_ADD or (mode == MERGE_SUBTRACT and i == 0):
            memcpy(dst, G, size * sizeof(floating))
        elif mode == MERGE_SUBTRACT:
            for j in range(size):
                dst[j] = -G[j]
        elif mode == MERGE_AVERAGE:
            scale = <floating>(1.0 / op.n_in)
            for j in range(size):
                dst[j] = G[j] * scale
        elif mode == MERGE_MULTIPLY:
            for j in range(size):
                v = G[j]
                for k in range(op.n_in):
                    if k != i:
                        v = v * (<const floating*>ex.val[op.ins[k]])[j]
                dst[j] = v
        else:
            for j in range(size):
                taken = False
                for k in range(i):
                    if (<const floating*>ex.val[op.ins[k]])[j] == out[j]:
                        taken = True
                        break
                dst[j] = G[j] if (not taken and x[j] == out[j]) else 0
        if op.acc_dx[i]:
            _add_into(<floating*>ex.grad[op.ins[i]], <const floating*>ex.scratch, size)


cdef int _forward(Executor ex, floating tag) except -1:
    """Every op in order; runs of built-in ops go without the GIL in one stretch, a
    callback op takes it back at its place."""
    cdef int l = 0
    # The team is decided per step: the process-wide size, BLAS kept single-threaded,
    # and the starvation guard's verdict (csrc/_team.pxd).
    ex.nthreads = team_for_step() if ex.split_worth else 1
    while l < ex.n_ops:
        if ex.ops[l].kind == OP_CALLBACK:
            ex.callback_forward(l)
            l += 1
            continue
        with nogil:
            while l < ex.n_ops and ex.ops[l].kind != OP_CALLBACK:
                _forward_op(ex, &ex.ops[l], tag)
                l += 1
    return 0


cdef inline void _conv_geom(const XOp* op, Geom* g) noexcept nogil:
    cdef const Py_ssize_t* v = op.geom
    g.h, g.w, g.c, g.oh, g.ow = v[0], v[1], v[2], v[3], v[4]
    g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl = v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]


cdef inline void _pool_geom(const XOp* op, PGeom* g) noexcept nogil:
    cdef const Py_ssize_t* v = op.geom
    g.h, g.w, g.c, g.oh, g.ow = v[0], v[1], v[2], v[3], v[4]
    g.ph, g.pw, g.sh, g.sw, g.pt, g.pl = v[5], v[6], v[7], v[8], v[9], v[10]


cdef inline void _depthwise_forward(Executor ex, XOp* op, const floating* x,
                                    floating* out) noexcept nogil:
    # The taps, then bias and activation over the rows (gelu/silu/mish: a separate op).
    cdef Geom g
    _conv_geom(op, &g)
    dw_forward(ex.nthreads, &g, ex.n, op.d_out // g.c, x, <const floating*>op.W, out)
    _act_rows(out, <const floating*>op.b, out, ex.n * g.oh * g.ow, op.d_out, op.act)


cdef inline void _depthwise_backward(Executor ex, XOp* op, const floating* x, floating* G,
                                     floating* dst) noexcept nogil:
    # dZ in place of G (as Dense); dst is NULL when no input gradient is wanted.
    cdef Geom g
    cdef Py_ssize_t rows
    _conv_geom(op, &g)
    rows = ex.n * g.oh * g.ow
    _act_grad_rows(<const floating*>ex.val[op.outs[0]], G, G, rows, op.d_out, op.act)
    if op.gb != NULL:
        _colsum(G, rows, op.d_out, 1.0, <floating*>op.gb, op.acc_gb)
    if dst != NULL or op.gW != NULL:
        dw_backward(ex.nthreads, &g, ex.n, op.d_out // g.c, x, <const floating*>op.W, G, dst,
                    <floating*>op.gW, op.acc_gW, <floating*>op.aux, op.aux_rows)


cdef inline void _conv_transpose_forward(Executor ex, XOp* op, const floating* x,
                                         floating* out) noexcept nogil:
    # The data gradient of the convolution (out its input, x its output gradient),
    # then bias and activation.  x goes through scratch (free in the forward pass):
    # conv_backward's dZ is an output, and x may be the caller's read-only array.
    cdef Geom g
    cdef Py_ssize_t n = ex.n, f, size = n * ex.size[op.ins[0]]
    cdef floating* xs = <floating*>ex.scratch
    _conv_geom(op, &g)
    f = ex.size[op.ins[0]] // (g.oh * g.ow)
    memcpy(xs, x, size * sizeof(floating))
    conv_backward(ex.nthreads, &g, n, f, NULL, <const floating*>op.W, NULL, NULL, xs, xs, out,
                  NULL, NULL, <floating*>op.aux, op.aux_rows, False, ACT_LINEAR, False, False,
                  NULL, 0)
    _act_rows(out, <const floating*>op.b, out, n * g.h * g.w, op.d_out, op.act)


cdef inline void _conv_transpose_backward(Executor ex, XOp* op, const floating* x, floating* G,
                                          floating* dst) noexcept nogil:
    # dZ in place of G; the input gradient is the convolution of dZ (conv_forward),
    # whose im2col, when aux holds the whole batch, serves dW = cols(dZ).T @ x.
    cdef Geom g
    cdef Py_ssize_t n = ex.n, f, size = n * ex.size[op.ins[0]], rows
    cdef floating* xs = <floating*>ex.scratch
    _conv_geom(op, &g)
    f = ex.size[op.ins[0]] // (g.oh * g.ow)
    rows = n * g.h * g.w
    _act_grad_rows(<const floating*>ex.val[op.outs[0]], G, G, rows, op.d_out, op.act)
    if op.gb != NULL:
        _colsum(G, rows, op.d_out, 1.0, <floating*>op.gb, op.acc_gb)
    if dst != NULL:
        conv_forward(ex.nthreads, &g, n, f, G, <const floating*>op.W, NULL, dst, NULL,
                     <floating*>op.aux, op.aux_rows, ACT_LINEAR)
        _dx_finish(ex, op, 0, size, G)
    if op.gW != NULL:
        # After _dx_finish: scratch is free again.
        memcpy(xs, x, size * sizeof(floating))
        conv_backward(ex.nthreads, &g, n, f, G, <const floating*>op.W, NULL, NULL, xs, xs, NULL,
                      <floating*>op.gW, NULL, <floating*>op.aux, op.aux_rows, dst != NULL,
                      ACT_LINEAR, op.acc_gW, False, NULL, 0)


cdef inline void _layernorm_forward(Executor ex, XOp* op, const floating* x,
                                    floating* out) noexcept nogil:
    cdef Py_ssize_t rows = _rows(ex, op)
    cdef floating* mean = <floating*>op.aux
    ln_forward(x, rows, op.d_out, <const floating*>op.W, <const floating*>op.b, op.eps, out,
               mean, mean + rows)


cdef inline void _layernorm_backward(Executor ex, XOp* op, const floating* x, const floating* G,
                                     floating* dst) noexcept nogil:
    # gamma/beta each (+)= by its own flag; dst is NULL when no input gradient is wanted.
    cdef Py_ssize_t rows = _rows(ex, op)
    cdef const floating* mean = <const floating*>op.aux
    ln_backward(x, G, rows, op.d_out, <const floating*>op.W, mean, mean + rows, dst,
                <floating*>op.gW, <floating*>op.gb, op.acc_gW, op.acc_gb)


cdef inline void _emb_ops_forward(Executor ex, XOp* op, const floating* x,
                                  floating* out) noexcept nogil:
    """EMBEDDING (ids checked by check_ids first), GROUPNORM, PRELU forward."""
    cdef Py_ssize_t n = ex.n, per = ex.size[op.ins[0]]
    cdef floating* mean = <floating*>op.aux
    if op.kind == OP_EMBEDDING:
        emb_gather(ex.val[op.ins[0]], op.ids_kind, n * per, <const floating*>op.W, op.vocab,
                   op.d_out, out)
    elif op.kind == OP_GROUPNORM:
        gn_forward(x, n, per // op.d_out, op.d_out, op.groups, <const floating*>op.W,
                   <const floating*>op.b, op.eps, out, mean, mean + n * op.groups)
    else:
        prelu_forward_rows(x, n, per, <const floating*>op.W, op.aidx, out)


cdef inline void _emb_ops_backward(Executor ex, XOp* op, const floating* x, const floating* G,
                                   Py_ssize_t size) noexcept nogil:
    """EMBEDDING, GROUPNORM, PRELU backward: weight gradients (+)= by their flags,
    the input gradient into its slot (added via scratch when acc_dx)."""
    cdef Py_ssize_t n = ex.n, per = ex.size[op.ins[0]]
    cdef floating* dst
    cdef const floating* mean = <const floating*>op.aux
    if op.kind == OP_EMBEDDING:
        if op.gW != NULL:
            # The first use zeroes the whole table's gradient (rows not looked up
            # must read 0 in the update); then only the rows looked up are added to.
            if not op.acc_gW:
                memset(op.gW, 0, op.vocab * op.d_out * sizeof(floating))
            emb_scatter_add(ex.val[op.ins[0]], op.ids_kind, n * per, G, op.vocab, op.d_out,
                            <floating*>op.gW)
        if op.want_dx[0] and not op.acc_dx[0]:
            # The ids get a zero gradient (as Embedding.forward's backprop gives).
            memset(ex.grad[op.ins[0]], 0, size * sizeof(floating))
        return
    dst = _dx_dest(ex, op, 0, <floating*>G)
    if op.kind == OP_GROUPNORM:
        gn_backward(x, G, n, per // op.d_out, op.d_out, op.groups, <const floating*>op.W, mean,
                    mean + n * op.groups, dst, <floating*>op.gW, <floating*>op.gb, op.acc_gW,
                    op.acc_gb)
    else:
        prelu_backward_rows(x, G, n, per, <const floating*>op.W, op.aidx, op.n_alpha, dst,
                            <floating*>op.gW, op.acc_gW)
    if dst != NULL:
        _dx_finish(ex, op, 0, size, <floating*>G)


cdef void _forward_op(Executor ex, XOp* op, floating tag) noexcept nogil:
    cdef Geom g
    cdef PGeom pg
    cdef const Py_ssize_t* v
    cdef int i
    cdef Py_ssize_t n = ex.n, rows, size, o, off, c
    cdef floating* out = <floating*>ex.val[op.outs[0]]
    cdef const floating* x = <const floating*>ex.val[op.ins[0]]
    cdef uint64_t start
    if op.kind == OP_DENSE:
        rows = n * ex.size[op.ins[0]] // op.d_in
        gemm_split(ex.nthreads, False, False, False, rows, op.d_out, op.d_in, 1, x,
                   op.d_in, <const floating*>op.W, op.d_out, 0, out, op.d_out)
        _act_rows(out, <const floating*>op.b, out, rows, op.d_out, op.act)
    elif op.kind == OP_ACTIVATION:
        _act_rows(x, NULL, out, _rows(ex, op), op.d_out, op.act)
    elif op.kind == OP_DROPOUT:
        size = n * ex.size[op.ins[0]]
        start = op.counter[0] + <uint64_t>(ex.row_offset * ex.size[op.ins[0]])
        _dropout_fwd(x, out, <uint8_t*>op.aux, size, op.rate[0], op.key, start)
    elif op.kind == OP_BATCHNORM:
        rows = _rows(ex, op)
        if op.batch_stats:
            _bn_train(x, rows, op.d_out, <const floating*>op.W, <const floating*>op.b,
                      op.eps, out, <floating*>op.bmean, <floating*>op.bvar,
                      <floating*>op.binv)
        else:
            _bn_infer(x, rows, op.d_out, <const floating*>op.W, <const floating*>op.b,
                      <const floating*>op.mm, <const floating*>op.mv, op.eps, out)
    elif op.kind == OP_CONCAT:
        rows = n * op.outer
        size = 0
        for i in range(op.n_in):
            size = size + op.chunk[i]
        off = 0
        for i in range(op.n_in):
            c = op.chunk[i]
            x = <const floating*>ex.val[op.ins[i]]
            for o in range(rows):
                memcpy(out + o * size + off, x + o * c, c * sizeof(floating))
            off = off + c
    elif op.kind == OP_TRANSPOSE:
        _transpose(x, out, n * op.outer, op.t1, op.t2, False)
    elif op.kind == OP_MERGE:
        _merge_forward(ex, op, out, n * ex.size[op.outs[0]])
    elif op.kind == OP_CONV:
        _conv_geom(op, &g)
        if op.pool >= 0 or op.wino:
            conv_infer(ex.nthreads, &g, n, op.d_out, x, <const floating*>op.W,
                       <const floating*>op.b, out, <floating*>op.aux, op.aux_rows, op.wino,
                       op.pool, op.act)
        else:
            conv_forward(ex.nthreads, &g, n, op.d_out, x, <const floating*>op.W,
                         <const floating*>op.b, out, NULL, <floating*>op.aux, op.aux_rows,
                         op.act)
    elif op.kind == OP_POOL:
        _pool_geom(op, &pg)
        pool_forward(ex.nthreads, &pg, n, op.act == POOL_MAX, x, out, NULL)
    elif op.kind == OP_DEPTHWISE:
        _depthwise_forward(ex, op, x, out)
    elif op.kind == OP_CONV_TRANSPOSE:
        _conv_transpose_forward(ex, op, x, out)
    elif op.kind == OP_LAYERNORM:
        _layernorm_forward(ex, op, x, out)
    elif op.kind == OP_PAD2D:
        v = op.geom
        shift2d(x, n, v[0], v[1], v[2], out, v[3], v[4], v[5], v[6], False)
    elif op.kind == OP_UPSAMPLE2D:
        v = op.geom
        upsample2d_forward(x, n, v[0], v[1], v[2], v[3], v[4], out)
    elif op.kind == OP_EMBEDDING or op.kind == OP_GROUPNORM or op.kind == OP_PRELU:
        _emb_ops_forward(ex, op, x, out)


cdef double _one_loss(Executor ex, XLoss* L, floating tag, bint want_grad) noexcept nogil:
    """The loss of one output (mean over the batch, as Keras) and its weighted gradient."""
    cdef Py_ssize_t n = ex.n, i, j, per = ex.size[L.slot], size = n * per, k = L.k
    cdef Py_ssize_t rows = size // k, rps = per // k
    cdef const floating* z = <const floating*>ex.val[L.slot]
    cdef const floating* t = <const floating*>L.target
    cdef const int64_t* lab = <const int64_t*>L.target
    cdef floating* g = <floating*>ex.grad[L.slot] if want_grad else NULL
    cdef floating* dst = g
    cdef floating lo = <floating>epsilon(), hi = 1 - <floating>epsilon()
    cdef double total = 0, w = L.weight, sw = 1, scale
    cdef bint absolute
    if g != NULL and L.accumulate:
        dst = <floating*>ex.scratch
    if L.kind == LOSS_MSE or L.kind == LOSS_MAE:
        absolute = L.kind == LOSS_MAE
        if L.sw == NULL:
            # _dist_sum scales the gradient by (1 or 2)/size; the loss weight after.
            total = _dist_sum(z, t, dst, size, absolute) / size
            if dst != NULL and w != 1:
                for i in range(size):
                    dst[i] = <floating>(dst[i] * w)
        else:
            scale = (1.0 if absolute else 2.0) / size
            for i in range(n):
                sw = L.sw[i]
                total += sw * _dist_range(z + i * per, t + i * per,
                                          dst + i * per if dst != NULL else NULL, 0, per,
                                          <floating>(scale * sw * w), absolute)
            total /= size
    elif L.kind == LOSS_BCE:
        for i in range(n):
            if L.sw != NULL:
                sw = L.sw[i]
            for j in range(i * per, (i + 1) * per):
                if L.from_logits:
                    total += sw * _bce_logits(z[j], t[j], <floating>(sw * w / size),
                                              dst + j if dst != NULL else NULL)
                else:
                    total += sw * _bce_probs(z[j], t[j], lo, hi, <floating>(sw * w / size),
                                             dst + j if dst != NULL else NULL)
        total /= size
    else:
        for i in range(rows):
            if L.sw != NULL:
                sw = L.sw[i // rps]
            if L.kind == LOSS_SPARSE_CE:
                if L.from_logits:
                    total += sw * _ce_logits_row(z + i * k, NULL, lab[i],
                                                 dst + i * k if dst != NULL else NULL, k,
                                                 sw * w / rows)
                else:
                    total += sw * _ce_probs_row(z + i * k, NULL, lab[i],
                                                dst + i * k if dst != NULL else NULL, k, lo, hi,
                                                sw * w / rows)
            else:
                if L.from_logits:
                    total += sw * _ce_logits_row(z + i * k, t + i * k, -1,
                                                 dst + i * k if dst != NULL else NULL, k,
                                                 sw * w / rows)
                else:
                    total += sw * _ce_probs_row(z + i * k, t + i * k, -1,
                                                dst + i * k if dst != NULL else NULL, k, lo, hi,
                                                sw * w / rows)
        total /= rows
    if g != NULL and L.accumulate:
        _add_into(g, dst, size)
    return total


cdef double _losses_backward(Executor ex, floating tag, bint backward) except? -1:
    cdef int j
    cdef XLoss* L
    cdef double total = 0
    for j in range(ex.n_losses):
        L = &ex.losses[j]
        if L.kind == LOSS_CALLBACK:
            L.value = ex.callback_loss(j, backward)
        else:
            with nogil:
                L.value = _one_loss(ex, L, tag, backward and ex.grad[L.slot] != NULL)
        total += L.weight * L.value
    if backward:
        _backward(ex, tag)
    return total


cdef inline floating* _dx_dest(Executor ex, XOp* op, int i, floating* like) noexcept nogil:
    """Where input i's gradient goes: its slot, or scratch when it must be added in."""
    if not op.want_dx[i]:
        return NULL
    return <floating*>ex.scratch if op.acc_dx[i] else <floating*>ex.grad[op.ins[i]]


cdef inline void _dx_finish(Executor ex, XOp* op, int i, Py_ssize_t size,
                            floating* like) noexcept nogil:
    if op.want_dx[i] and op.acc_dx[i]:
        _add_into(<floating*>ex.grad[op.ins[i]], <const floating*>ex.scratch, size)


cdef int _backward(Executor ex, floating tag) except -1:
    """Ops in reverse, those that run backward; built-in runs without the GIL."""
    cdef int l = ex.n_ops - 1
    while l >= 0:
        if not ex.ops[l].backward:
            l -= 1
            continue
        if ex.ops[l].kind == OP_CALLBACK:
            ex.callback_backward(l)
            l -= 1
            continue
        with nogil:
            while l >= 0 and ex.ops[l].kind != OP_CALLBACK:
                if ex.ops[l].backward:
                    _backward_op(ex, &ex.ops[l], tag)
                l -= 1
    return 0


cdef void _backward_op(Executor ex, XOp* op, floating tag) noexcept nogil:
    cdef Geom g
    cdef PGeom pg
    cdef const Py_ssize_t* v
    cdef int i
    cdef Py_ssize_t n = ex.n, rows, o, off, c, total
    cdef floating* G = <floating*>ex.grad[op.outs[0]]
    cdef floating* dst
    cdef const floating* x = <const floating*>ex.val[op.ins[0]]
    cdef Py_ssize_t size = n * ex.size[op.ins[0]]
    cdef floating lr
    if op.kind == OP_DENSE:
        rows = size // op.d_in
        _act_grad_rows(<const floating*>ex.val[op.outs[0]], G, G, rows, op.d_out, op.act)
        if op.want_dx[0]:
            gemm_split(ex.nthreads, False, False, True, rows, op.d_in, op.d_out, 1, G,
                       op.d_out, <const floating*>op.W, op.d_out,
                       1 if op.acc_dx[0] else 0, <floating*>ex.grad[op.ins[0]], op.d_in)
        if op.fused_W:
            lr = <floating>ex.lr
            gemm_split(ex.nthreads, True, True, False, op.d_in, op.d_out, rows, -lr, x,
                       op.d_in, G, op.d_out, 1, <floating*>op.W, op.d_out)
        elif op.gW != NULL:
            gemm_split(ex.nthreads, True, True, False, op.d_in, op.d_out, rows, 1, x,
                       op.d_in, G, op.d_out, 1 if op.acc_gW else 0, <floating*>op.gW,
                       op.d_out)
        if op.fused_b:
            _colsum(G, rows, op.d_out, -ex.lr, <floating*>op.b, True)
        elif op.gb != NULL:
            _colsum(G, rows, op.d_out, 1.0, <floating*>op.gb, op.acc_gb)
    elif op.kind == OP_ACTIVATION:
        dst = _dx_dest(ex, op, 0, G)
        if dst != NULL:
            # gelu/silu/mish read their input (the pre-activation), the rest Y.
            _act_grad_rows_z(x, <const floating*>ex.val[op.outs[0]], G, dst,
                             _rows(ex, op), op.d_out, op.act)
            _dx_finish(ex, op, 0, size, G)
    elif op.kind == OP_DROPOUT:
        dst = _dx_dest(ex, op, 0, G)
        if dst != NULL:
            _dropout_bwd(G, <uint8_t*>op.aux, dst, size, op.rate[0])
            _dx_finish(ex, op, 0, size, G)
    elif op.kind == OP_BATCHNORM:
        dst = _dx_dest(ex, op, 0, G)
        rows = _rows(ex, op)
        if op.batch_stats:
            _bn_backward_train(x, G, rows, op.d_out, <const floating*>op.W,
                               <const floating*>op.bmean, <const floating*>op.binv, dst,
                               <floating*>op.gW, <floating*>op.gb, op.acc_gW)
        else:
            _bn_backward_infer(x, G, rows, op.d_out, <const floating*>op.W,
                               <const floating*>op.mm, <const floating*>op.mv, op.eps,
                               dst, <floating*>op.gW, <floating*>op.gb, op.acc_gW)
        if dst != NULL:
            _dx_finish(ex, op, 0, size, G)
    elif op.kind == OP_CONCAT:
        rows = n * op.outer
        total = 0
        for i in range(op.n_in):
            total = total + op.chunk[i]
        off = 0
        for i in range(op.n_in):
            c = op.chunk[i]
            dst = <floating*>ex.grad[op.ins[i]]
            if op.want_dx[i]:
                for o in range(rows):
                    if op.acc_dx[i]:
                        _add_into(dst + o * c, G + o * total + off, c)
                    else:
                        memcpy(dst + o * c, G + o * total + off, c * sizeof(floating))
            off = off + c
    elif op.kind == OP_TRANSPOSE:
        if op.want_dx[0]:
            _transpose(G, <floating*>ex.grad[op.ins[0]], n * op.outer, op.t2, op.t1,
                       op.acc_dx[0])
    elif op.kind == OP_MERGE:
        _merge_backward(ex, op, G, n * ex.size[op.outs[0]])
    elif op.kind == OP_CONV:
        # dZ in place of G (as Dense); the forward pass left the batch's im2col in
        # aux when it holds the whole batch (Python sized it so for trained kernels).
        _conv_geom(op, &g)
        dst = _dx_dest(ex, op, 0, G)
        conv_backward(ex.nthreads, &g, n, op.d_out, x, <const floating*>op.W,
                      <const floating*>ex.val[op.outs[0]], NULL, G, G, dst,
                      <floating*>op.gW, <floating*>op.gb, <floating*>op.aux, op.aux_rows,
                      True, op.act, op.acc_gW, op.acc_gb, <floating*>op.parts,
                      op.parts_len)
        if dst != NULL:
            _dx_finish(ex, op, 0, size, G)
    elif op.kind == OP_POOL:
        dst = _dx_dest(ex, op, 0, G)
        if dst != NULL:
            _pool_geom(op, &pg)
            pool_backward(ex.nthreads, &pg, n, op.act == POOL_MAX, x,
                          <const floating*>ex.val[op.outs[0]], G, NULL, dst)
            _dx_finish(ex, op, 0, size, G)
    elif op.kind == OP_DEPTHWISE:
        dst = _dx_dest(ex, op, 0, G)
        _depthwise_backward(ex, op, x, G, dst)
        if dst != NULL:
            _dx_finish(ex, op, 0, size, G)
    elif op.kind == OP_CONV_TRANSPOSE:
        _conv_transpose_backward(ex, op, x, G, _dx_dest(ex, op, 0, G))
    elif op.kind == OP_LAYERNORM:
        dst = _dx_dest(ex, op, 0, G)
        _layernorm_backward(ex, op, x, G, dst)
        if dst != NULL:
            _dx_finish(ex, op, 0, size, G)
    elif op.kind == OP_PAD2D:
        # The reverse copy (offsets negated), added in place when another use wrote dX.
        if op.want_dx[0]:
            v = op.geom
            shift2d(G, n, v[3], v[4], v[2], <floating*>ex.grad[op.ins[0]], v[0], v[1], -v[5],
                    -v[6], op.acc_dx[0])
    elif op.kind == OP_UPSAMPLE2D:
        if op.want_dx[0]:
            v = op.geom
            upsample2d_backward(G, n, v[0], v[1], v[2], v[3], v[4],
                                <floating*>ex.grad[op.ins[0]], op.acc_dx[0])
    elif op.kind == OP_EMBEDDING or op.kind == OP_GROUPNORM or op.kind == OP_PRELU:
        _emb_ops_backward(ex, op, x, G, size)


cdef int _update(Executor ex, floating tag, double* hyper) except -1:
    cdef int j
    cdef XWeight* r
    with nogil:
        for j in range(ex.n_wts):
            r = &ex.wts[j]
            if r.fused:
                continue
            update_one(ex.opt_kind, hyper, <floating*>r.w, <floating*>r.g, <floating*>r.s0,
                       <floating*>r.s1, <floating*>r.s2, r.size)
    return 0


cdef int _commit(Executor ex, floating tag) except -1:
    cdef int l
    cdef XOp* op
    cdef Py_ssize_t j, c, rows
    cdef floating* mm
    cdef floating* mv
    cdef const floating* bm
    cdef const floating* bv
    cdef double mom, unbias
    with nogil:
        for l in range(ex.n_ops):
            op = &ex.ops[l]
            if op.kind == OP_DROPOUT:
                op.counter[0] = op.counter[0] + <uint64_t>(ex.global_n * ex.size[op.ins[0]])
            elif op.kind == OP_BATCHNORM and op.batch_stats and op.update_stats:
                # moving = momentum * moving + (1 - momentum) * batch statistic, the
                # variance unbiased (n / (n - 1), R7); a batch of one row keeps it biased.
                rows = _rows(ex, op)
                unbias = <double>rows / (rows - 1) if rows > 1 else 1.0
                mm, mv = <floating*>op.mm, <floating*>op.mv
                bm, bv = <const floating*>op.bmean, <const floating*>op.bvar
                mom = op.momentum
                for j in range(op.d_out):
                    mm[j] = <floating>(mom * mm[j] + (1 - mom) * bm[j])
                    mv[j] = <floating>(mom * mv[j] + (1 - mom) * bv[j] * unbias)
    return 0
