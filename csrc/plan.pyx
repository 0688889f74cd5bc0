# Design
# ------
# The fused training step.  For a chain of built-in layers (Dense, Dropout,
# Activation, BatchNormalization) the whole step -- forward, loss, backward, optimizer update -- runs
# here in one nogil call, so the per-step cost of Python is one method call.
#
# Python decides everything beforehand (fastlayers/engine/plan.py): which layers'
# weights are updated (the compiled set, R3/R4), which input gradients are needed
# (R9: the backward pass stops at the lowest layer with something to train), which
# dropout layers drop, the loss and the optimizer.  This module only executes that
# decision, on buffers Python allocated once per batch size: steady-state steps
# allocate nothing.
#
# The arithmetic is the kernels' own (the same header-only helpers as dense.pyx,
# dropout.pyx, losses.pyx and optim.pyx), so a step here equals a step through
# the layer-by-layer Python path -- with one deliberate exception: plain SGD on a
# Dense weight is one GEMM straight into W (alpha = -lr, beta = 1), which needs no
# gradient buffer and no extra pass (DESIGN.md "Performance notes").  A weight is
# only ever updated after its layer's input gradient has been computed from it.
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.math cimport pow, sqrt
from libc.string cimport memcpy


from _act cimport ACT_LINEAR, _act_grad_rows, _act_rows

from _blas cimport SPLIT_MIN_MADDS, gemm_split
from _common cimport _chunks, _colsum
from _bn cimport (_bn_backward_infer, _bn_backward_train, _bn_infer, _bn_train,
                 _bn_update_moving)
from _dropout cimport _dropout_bwd, _dropout_fwd
from _loss cimport (_bce_logits, _bce_probs, _ce_logits_row, _ce_probs_row, _mae_sum,
                    _mse_sum)
from _optim cimport _adam_one, _sgd_one
from _rng cimport rng_key
from _team cimport team

include "_team.pxi"  # binds this module to the process-wide team (csrc/_team.pxd)

cdef enum:
    OP_DENSE = 0
    OP_DROPOUT = 1
    OP_ACTIVATION = 2
    OP_BATCHNORM = 3

cdef enum:
    LOSS_MSE = 0
    LOSS_MAE = 1
    LOSS_BCE = 2
    LOSS_CE = 3
    LOSS_SPARSE_CE = 4

cdef enum:
    OPT_SGD = 0
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAM = 3

OP_KINDS = {"dense": OP_DENSE, "dropout": OP_DROPOUT, "activation": OP_ACTIVATION,
            "batchnorm": OP_BATCHNORM}
LOSS_KINDS = {"mse": LOSS_MSE, "mae": LOSS_MAE, "bce": LOSS_BCE, "ce": LOSS_CE,
              "sparse_ce": LOSS_SPARSE_CE}
OPT_KINDS = {"sgd": OPT_SGD, "momentum": OPT_MOMENTUM, "nesterov": OPT_NESTEROV,
             "adam": OPT_ADAM}

cdef double _EPSILON = 1e-7

cdef struct Op:
    int kind
    int act
    Py_ssize_t d_in
    Py_ssize_t d_out
    void* W          # (d_in, d_out) IN/OUT
    void* b          # (d_out,) IN/OUT or NULL
    void* gW         # gradient scratch for optimizers that need one, else NULL
    void* gb
    void* s1W        # momentum velocity or Adam first moment
    void* s1b
    void* s2W        # Adam second moment
    void* s2b
    bint train_w
    bint train_b
    bint mode_train  # training behaviour in training steps (pinned training=False: never;
                     # batch norm frozen in the compiled picture: never, R7)
    bint mode_infer  # training behaviour in inference runs (pinned training=True)
    bint batch_mode  # batch norm: this run normalized with batch statistics
    void* mm         # batch norm: moving mean, moving variance (c,) IN/OUT
    void* mv
    void* bmean      # batch norm: this run's batch mean, variance, 1/std (c,) scratch
    void* bvar
    void* binv
    double eps
    double bn_momentum
    double rate
    uint64_t key
    uint64_t* counter
    void* out        # (n, d_out), bound per batch size
    void* grad       # (n, d_out)
    uint8_t* mask    # (n, d_out) for dropout


cdef inline void* _addr(object a):
    return <void*><size_t>a.__array_interface__["data"][0] if a is not None else NULL


cdef class TrainPlan:
    """A compiled chain of built-in layers; see the module's design note."""

    cdef Op* ops
    cdef const void** vals     # per op: the array the next op reads (outputs or aliases)
    cdef int n_ops
    cdef int nthreads          # team size of the current run
    cdef int lowest            # lowest op with something to train; -1: nothing
    cdef int loss_kind
    cdef bint from_logits
    cdef int opt_kind
    cdef double momentum, beta_1, beta_2, epsilon
    cdef bint f32
    cdef Py_ssize_t d_in, d_out, bound_n
    cdef bint split_worth      # some product of the bound batch size is worth splitting
    cdef object dtype
    cdef list _keep
    cdef dict _buffers
    cdef dict _staging         # batch size -> (inputs, targets) for gathered batches
    cdef public bint bad_labels

    def __cinit__(self):
        self.ops = NULL
        self.vals = NULL

    def __init__(self, dtype, list specs, str loss, bint from_logits, str optimizer,
                 double momentum=0.0, double beta_1=0.9, double beta_2=0.999,
                 double epsilon=1e-7):
        import numpy as np

        cdef int i
        cdef Op* op
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"TrainPlan: dtype must be float32 or float64, got {dtype}")
        self.f32 = self.dtype == np.float32
        if not specs:
            raise ValueError("TrainPlan: no layers")
        self.n_ops = len(specs)
        self.ops = <Op*>calloc(self.n_ops, sizeof(Op))
        self.vals = <const void**>calloc(self.n_ops, sizeof(void*))
        if self.ops == NULL or self.vals == NULL:
            raise MemoryError()
        self.loss_kind = LOSS_KINDS[loss]
        self.from_logits = from_logits
        self.opt_kind = OPT_KINDS[optimizer]
        self.momentum, self.beta_1, self.beta_2, self.epsilon = momentum, beta_1, beta_2, epsilon
        self._keep = []
        self._buffers = {}
        self._staging = {}
        self.bound_n = -1
        self.lowest = -1
        for i, spec in enumerate(specs):
            op = &self.ops[i]
            op.kind = OP_KINDS[spec["kind"]]
            op.act = spec.get("act", ACT_LINEAR)
            op.d_in = spec["d_in"]
            op.d_out = spec["d_out"]
            for name in ("W", "b", "gW", "gb", "s1W", "s1b", "s2W", "s2b", "counter", "mm", "mv",
                         "bmean", "bvar", "binv"):
                a = spec.get(name)
                if a is not None:
                    if not a.flags.c_contiguous or (name != "counter" and a.dtype != self.dtype):
                        raise ValueError(f"TrainPlan: {name} of op {i} must be C-contiguous "
                                         f"{self.dtype}")
                    self._keep.append(a)
            op.W = _addr(spec.get("W"))
            op.b = _addr(spec.get("b"))
            op.gW = _addr(spec.get("gW"))
            op.gb = _addr(spec.get("gb"))
            op.s1W = _addr(spec.get("s1W"))
            op.s1b = _addr(spec.get("s1b"))
            op.s2W = _addr(spec.get("s2W"))
            op.s2b = _addr(spec.get("s2b"))
            op.counter = <uint64_t*>_addr(spec.get("counter"))
            op.mm = _addr(spec.get("mm"))
            op.mv = _addr(spec.get("mv"))
            op.bmean = _addr(spec.get("bmean"))
            op.bvar = _addr(spec.get("bvar"))
            op.binv = _addr(spec.get("binv"))
            op.eps = spec.get("eps", 0.0)
            op.bn_momentum = spec.get("bn_momentum", 0.0)
            op.train_w = spec.get("train_w", False)
            op.train_b = spec.get("train_b", False)
            op.mode_train = spec.get("mode_train", False)
            op.mode_infer = spec.get("mode_infer", False)
            op.rate = spec.get("rate", 0.0)
            op.key = rng_key(<uint64_t>spec.get("seed", 0))
            if op.kind == OP_DENSE and op.W == NULL:
                raise ValueError(f"TrainPlan: dense op {i} has no W")
            if op.kind == OP_DROPOUT and op.counter == NULL:
                raise ValueError(f"TrainPlan: dropout op {i} has no counter")
            if op.kind == OP_BATCHNORM and (op.mm == NULL or op.mv == NULL or op.bmean == NULL
                                            or op.bvar == NULL or op.binv == NULL
                                            or op.d_in != op.d_out):
                raise ValueError(f"TrainPlan: batchnorm op {i} lacks its statistics")
            if op.kind == OP_BATCHNORM and (op.train_w and op.gW == NULL
                                            or op.train_b and op.gb == NULL):
                raise ValueError(f"TrainPlan: batchnorm op {i} lacks gradient buffers")
            if self.opt_kind != OPT_SGD and (op.train_w and (op.gW == NULL or op.s1W == NULL)
                                             or op.train_b and (op.gb == NULL or op.s1b == NULL)):
                raise ValueError(f"TrainPlan: op {i} lacks optimizer buffers")
            if self.opt_kind == OPT_ADAM and (op.train_w and op.s2W == NULL
                                              or op.train_b and op.s2b == NULL):
                raise ValueError(f"TrainPlan: op {i} lacks Adam buffers")
            if i > 0 and op.d_in != self.ops[i - 1].d_out:
                raise ValueError(f"TrainPlan: op {i} input size does not match op {i - 1}")
            if op.train_w or op.train_b:
                if self.lowest < 0:
                    self.lowest = i
        self.d_in = self.ops[0].d_in
        self.d_out = self.ops[self.n_ops - 1].d_out

    def __dealloc__(self):
        free(self.ops)
        free(<void*>self.vals)

    def describe(self):
        """Per op, what a training step computes: the plan's R9 decisions, as data.

        A list of dicts with ``kind``, ``dW`` (kernel gradient/update), ``db``,
        ``dX`` (input gradient) and ``backward`` (visited by the backward pass).
        """
        kinds = {v: k for k, v in OP_KINDS.items()}
        rows = []
        for i in range(self.n_ops):
            op = &self.ops[i]
            visited = self.lowest >= 0 and i >= self.lowest
            rows.append({"kind": kinds[op.kind], "dW": bool(op.train_w), "db": bool(op.train_b),
                         "dX": visited and i > self.lowest, "backward": visited})
        return rows

    cdef int _bind(self, Py_ssize_t n) except -1:
        """Point the ops at the buffers of batch size n (allocated on first use)."""
        import numpy as np

        cdef int i
        cdef Op* op
        if n == self.bound_n:
            return 0
        bufs = self._buffers.get(n)
        if bufs is None:
            bufs = []
            for i in range(self.n_ops):
                op = &self.ops[i]
                shape = (n, op.d_out)
                bufs.append((np.empty(shape, self.dtype), np.empty(shape, self.dtype),
                             np.empty(shape, np.uint8) if op.kind == OP_DROPOUT else None))
            self._buffers[n] = bufs
        self.split_worth = False
        for i in range(self.n_ops):
            op = &self.ops[i]
            out, grad, mask = bufs[i]
            op.out = _addr(out)
            op.grad = _addr(grad)
            op.mask = <uint8_t*>_addr(mask)
            if op.kind == OP_DENSE and <double>n * op.d_in * op.d_out >= SPLIT_MIN_MADDS:
                self.split_worth = True
        self.bound_n = n
        return 0

    def last_output(self, Py_ssize_t n, bint training=True):
        """The output of the last step or run with batch size n (a view, reused)."""
        return self._buffer_of_last(n, training)

    def try_step(self, X, T, optimizer):
        """A training step if X and T are already in the plan's form, else None.

        The form: C-contiguous buffers of the plan's dtype, X (n, d_in) with n >= 1;
        T int64 labels (n,) for sparse cross-entropy, else (n, d_out).  Checking
        here, in C, keeps the per-step Python cost of train_on_batch to one call.
        Reads ``optimizer.learning_rate`` and advances ``optimizer.iterations``;
        raises ValueError (and takes no step) on labels out of range.
        """
        if self.f32:
            return _try_step(self, <float>0, X, T, optimizer)
        return _try_step(self, <double>0, X, T, optimizer)

    def try_step_rows(self, X, T, order, Py_ssize_t lo, Py_ssize_t hi, optimizer):
        """Like try_step, on rows order[lo:hi] of the whole data set X, T.

        The rows are gathered straight into buffers of the plan (split over the
        team), which is how ``fit`` feeds shuffled batches without a per-batch
        NumPy gather.  Returns None when X, T are not in the plan's form.
        """
        import numpy as np

        cdef Py_ssize_t n = hi - lo
        if n < 1:
            return None
        staging = self._staging.get(n)
        if staging is None:
            if self.loss_kind == LOSS_SPARSE_CE:
                targets = np.empty(n, np.int64)
            else:
                targets = np.empty((n, self.d_out), self.dtype)
            staging = (np.empty((n, self.d_in), self.dtype), targets)
            self._staging[n] = staging
        if self.f32:
            ok = _gather_rows(<float>0, X, T, order, lo, hi, staging[0], staging[1],
                              self.loss_kind == LOSS_SPARSE_CE)
        else:
            ok = _gather_rows(<double>0, X, T, order, lo, hi, staging[0], staging[1],
                              self.loss_kind == LOSS_SPARSE_CE)
        if not ok:
            return None
        return self.try_step(staging[0], staging[1], optimizer)

    def forward(self, X, bint training=False):
        """Run the layers only; returns the output buffer (valid until the next call)."""
        cdef Py_ssize_t n = X.shape[0]
        self._bind(n)
        if self.f32:
            _run_forward[float](self, X, n, training)
        else:
            _run_forward[double](self, X, n, training)
        return self._buffer_of_last(n, training)

    def _buffer_of_last(self, Py_ssize_t n, bint training):
        # An inactive final dropout aliases its input: return that buffer instead.
        cdef int i = self.n_ops - 1
        while i >= 0 and self.ops[i].kind == OP_DROPOUT and not (
                self.ops[i].mode_train if training else self.ops[i].mode_infer):
            i -= 1
        return self._buffers[n][i][0] if i >= 0 else None


cdef inline void _begin(TrainPlan p) noexcept nogil:
    """Pick the team size for this run: the OpenMP team, if a product is worth it."""
    p.nthreads = team() if p.split_worth else 1


cdef bint _gather_rows(floating tag, object X, object T, object order, Py_ssize_t lo,
                       Py_ssize_t hi, object x_out, object t_out, bint sparse) except -1:
    """Copy rows order[lo:hi] of X and T into x_out, t_out; False if not in form."""
    cdef const floating[:, ::1] x
    cdef const floating[:, ::1] t
    cdef const int64_t[::1] lab
    cdef const int64_t[::1] idx
    cdef floating[:, ::1] xo = x_out
    cdef floating[:, ::1] to
    cdef int64_t[::1] lo_ = None
    cdef Py_ssize_t n = hi - lo, rows, i, r, d, k = 0
    cdef bint bad = False
    try:
        x = X
        idx = order
        if sparse:
            lab = T
            lo_ = t_out
        else:
            t = T
            to = t_out
    except (ValueError, TypeError, BufferError):
        return False
    rows = x.shape[0]
    d = x.shape[1]
    if lo < 0 or hi > idx.shape[0] or d != xo.shape[1] or n != xo.shape[0]:
        return False
    if sparse:
        if lab.shape[0] != rows:
            return False
    else:
        k = t.shape[1]
        if t.shape[0] != rows or k != to.shape[1]:
            return False
    with nogil:
        for i in range(n):
            r = idx[lo + i]
            if r < 0 or r >= rows:
                bad = True
                break
        if not bad:
            _copy_rows(&x[0, 0], &idx[lo], &xo[0, 0], n, d)
            if sparse:
                for i in range(n):
                    lo_[i] = lab[idx[lo + i]]
            else:
                _copy_rows(&t[0, 0], &idx[lo], &to[0, 0], n, k)
    if bad:
        raise ValueError("row index out of range")
    return True


cdef void _copy_rows(const floating* src, const int64_t* idx, floating* dst, Py_ssize_t n,
                     Py_ssize_t d) noexcept nogil:
    """dst[i] = src[idx[i]] for n rows of d values, split over the team when large."""
    cdef int nc = _chunks(n * d), c
    cdef Py_ssize_t i
    if nc == 1:
        for i in range(n):
            memcpy(dst + i * d, src + idx[i] * d, d * sizeof(floating))
        return
    for c in prange(nc, num_threads=nc, schedule='static'):
        for i in range(n * c // nc, n * (c + 1) // nc):
            memcpy(dst + i * d, src + idx[i] * d, d * sizeof(floating))


cdef object _try_step(TrainPlan p, floating tag, object X, object T, object optimizer):
    # `tag` only selects the float/double specialization.  Acquiring the typed views checks dtype, rank and contiguity; a mismatch
    # only means "not in the plan's form", so the caller converts and retries.
    cdef const floating[:, ::1] x
    cdef const floating[:, ::1] targets
    cdef const int64_t[::1] labels
    cdef const void* t
    cdef Py_ssize_t n
    cdef double lr, lr_t = 0.0, loss
    cdef long it
    try:
        x = X
        if p.loss_kind == LOSS_SPARSE_CE:
            labels = T
        else:
            targets = T
    except (ValueError, TypeError, BufferError):
        return None
    n = x.shape[0]
    if n < 1 or x.shape[1] != p.d_in:
        return None
    if p.loss_kind == LOSS_SPARSE_CE:
        if labels.shape[0] != n:
            return None
        t = &labels[0]
    else:
        if targets.shape[0] != n or targets.shape[1] != p.d_out:
            return None
        t = &targets[0, 0]
    # The optimizer's settings are read every step, as the layer path reads them.
    if p.opt_kind == OPT_ADAM:
        p.beta_1 = optimizer.beta_1
        p.beta_2 = optimizer.beta_2
        p.epsilon = optimizer.epsilon
    elif p.opt_kind == OPT_SGD:
        if optimizer.momentum != 0:
            return None  # momentum turned on after compile: the plan has no velocities
    else:
        p.momentum = optimizer.momentum
        p.opt_kind = OPT_NESTEROV if optimizer.nesterov else OPT_MOMENTUM
    lr = optimizer.learning_rate
    it = optimizer.iterations + 1
    if p.opt_kind == OPT_ADAM:
        lr_t = lr * sqrt(1 - pow(p.beta_2, it)) / (1 - pow(p.beta_1, it))
    p._bind(n)
    with nogil:
        _begin(p)
        loss = _step(p, &x[0, 0], t, n, lr, lr_t)
    if p.bad_labels:
        raise ValueError(f"labels must be in [0, {p.d_out})")
    optimizer.iterations = it
    return loss


cdef int _run_forward(TrainPlan p, const floating[:, ::1] X, Py_ssize_t n,
                      bint training) except -1:
    if n < 1 or X.shape[0] != n or X.shape[1] != p.d_in:
        raise ValueError(f"TrainPlan.forward: X must have shape (n >= 1, {p.d_in}), "
                         f"got ({X.shape[0]}, {X.shape[1]})")
    with nogil:
        _begin(p)
        _forward(p, &X[0, 0], n, training)
    return 0


cdef void _forward(TrainPlan p, const floating* x, Py_ssize_t n, bint training) noexcept nogil:
    cdef int l
    cdef Op* op
    cdef const floating* inp = x
    cdef floating* out
    cdef Py_ssize_t size
    cdef bint drop
    cdef uint64_t c
    for l in range(p.n_ops):
        op = &p.ops[l]
        out = <floating*>op.out
        if op.kind == OP_DENSE:
            gemm_split(p.nthreads, False, False, False, n, op.d_out, op.d_in, 1, inp, op.d_in,
                       <const floating*>op.W, op.d_out, 0, out, op.d_out)
            _act_rows(out, <const floating*>op.b, out, n, op.d_out, op.act)
        elif op.kind == OP_ACTIVATION:
            _act_rows(inp, NULL, out, n, op.d_out, op.act)
        elif op.kind == OP_BATCHNORM:
            op.batch_mode = op.mode_train if training else op.mode_infer
            if op.batch_mode:
                _bn_train(inp, n, op.d_out, <const floating*>op.W, <const floating*>op.b,
                          op.eps, out, <floating*>op.bmean, <floating*>op.bvar,
                          <floating*>op.binv)
                _bn_update_moving(<floating*>op.mm, <floating*>op.mv, <const floating*>op.bmean,
                                  <const floating*>op.bvar, op.d_out, op.bn_momentum)
            else:
                _bn_infer(inp, n, op.d_out, <const floating*>op.W, <const floating*>op.b,
                          <const floating*>op.mm, <const floating*>op.mv, op.eps, out)
        else:
            drop = op.mode_train if training else op.mode_infer
            if not drop or op.rate == 0:
                # Identity: the next op reads this op's input directly.
                p.vals[l] = inp
                continue
            size = n * op.d_out
            c = op.counter[0]
            _dropout_fwd(inp, out, op.mask, size, op.rate, op.key, c)
            op.counter[0] = c + <uint64_t>size
        p.vals[l] = out
        inp = out


cdef double _loss(TrainPlan p, const floating* z, const void* target, floating* g,
                  Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Loss of the batch (mean, as Keras) and its gradient into g; NaN on bad labels."""
    cdef Py_ssize_t i, size = n * k
    cdef double total = 0, inv_n = 1.0 / n
    cdef floating lo = <floating>_EPSILON, hi = 1 - <floating>_EPSILON
    cdef floating inv = <floating>(1.0 / size)
    cdef const floating* t = <const floating*>target
    cdef const int64_t* lab = <const int64_t*>target
    if p.loss_kind == LOSS_MSE:
        return _mse_sum(z, t, g, size) / size
    if p.loss_kind == LOSS_MAE:
        return _mae_sum(z, t, g, size) / size
    if p.loss_kind == LOSS_BCE:
        for i in range(size):
            if p.from_logits:
                total += _bce_logits(z[i], t[i], inv, g + i)
            else:
                total += _bce_probs(z[i], t[i], lo, hi, inv, g + i)
        return total / size
    if p.loss_kind == LOSS_SPARSE_CE:
        for i in range(n):
            if lab[i] < 0 or lab[i] >= k:
                p.bad_labels = True
                return 0
        for i in range(n):
            if p.from_logits:
                total += _ce_logits_row(z + i * k, NULL, lab[i], g + i * k, k, inv_n)
            else:
                total += _ce_probs_row(z + i * k, NULL, lab[i], g + i * k, k, lo, hi, inv_n)
        return total * inv_n
    for i in range(n):
        if p.from_logits:
            total += _ce_logits_row(z + i * k, t + i * k, -1, g + i * k, k, inv_n)
        else:
            total += _ce_probs_row(z + i * k, t + i * k, -1, g + i * k, k, lo, hi, inv_n)
    return total * inv_n


cdef inline void _apply(TrainPlan p, floating* w, const floating* g, floating* s1,
                        floating* s2, Py_ssize_t size, double lr, double lr_t) noexcept nogil:
    """The optimizer's update of one weight from its gradient g (the kernels' own loops)."""
    if p.opt_kind == OPT_ADAM:
        _adam_one(w, g, s1, s2, size, <floating>lr_t, <floating>p.beta_1, <floating>p.beta_2,
                  <floating>(1 - p.beta_1), <floating>(1 - p.beta_2), <floating>p.epsilon)
    else:
        _sgd_one(w, g, s1 if p.opt_kind != OPT_SGD else NULL, size, <floating>lr,
                 <floating>p.momentum, p.opt_kind == OPT_NESTEROV)


cdef void _update(TrainPlan p, Op* op, const floating* X, floating* G, Py_ssize_t n,
                  double lr, double lr_t) noexcept nogil:
    """Apply the optimizer to a dense op's weights from its input X and dZ = G."""
    cdef Py_ssize_t d_in = op.d_in, d_out = op.d_out
    cdef floating lr_f = <floating>lr
    if p.opt_kind == OPT_SGD:
        # One GEMM straight into W; the bias takes the column sums the same way.
        if op.train_w:
            gemm_split(p.nthreads, True, True, False, d_in, d_out, n, -lr_f, X, d_in, G, d_out,
                       1, <floating*>op.W, d_out)
        if op.train_b:
            _colsum(G, n, d_out, -lr, <floating*>op.b, True)
        return
    if op.train_w:
        gemm_split(p.nthreads, True, True, False, d_in, d_out, n, 1, X, d_in, G, d_out, 0,
                   <floating*>op.gW, d_out)
        _apply(p, <floating*>op.W, <const floating*>op.gW, <floating*>op.s1W,
               <floating*>op.s2W, d_in * d_out, lr, lr_t)
    if op.train_b:
        _colsum(G, n, d_out, 1.0, <floating*>op.gb, False)
        _apply(p, <floating*>op.b, <const floating*>op.gb, <floating*>op.s1b,
               <floating*>op.s2b, d_out, lr, lr_t)


cdef double _step(TrainPlan p, const floating* x, const void* target, Py_ssize_t n,
                  double lr, double lr_t) noexcept nogil:
    cdef int l
    cdef Op* op
    cdef Op* last = &p.ops[p.n_ops - 1]
    cdef floating* G
    cdef floating* prev_g
    cdef const floating* X
    cdef Py_ssize_t size
    cdef double loss
    cdef bint want_dx
    p.bad_labels = False
    _forward(p, x, n, True)
    loss = _loss(p, <const floating*>p.vals[p.n_ops - 1], target, <floating*>last.grad,
                 n, last.d_out)
    if p.bad_labels or p.lowest < 0:
        return loss
    # An inactive final dropout passed its input through: its gradient is the
    # loss gradient itself, already in last.grad.
    l = p.n_ops - 1
    while l >= p.lowest:
        op = &p.ops[l]
        G = <floating*>op.grad
        X = x if l == 0 else <const floating*>p.vals[l - 1]
        want_dx = l > p.lowest
        prev_g = <floating*>p.ops[l - 1].grad if want_dx else NULL
        if op.kind == OP_DENSE:
            _act_grad_rows(<const floating*>op.out, G, G, n, op.d_out, op.act)
            if want_dx:
                gemm_split(p.nthreads, False, False, True, n, op.d_in, op.d_out, 1, G, op.d_out,
                           <const floating*>op.W, op.d_out, 0, prev_g, op.d_in)
            _update(p, op, X, G, n, lr, lr_t)
        elif op.kind == OP_ACTIVATION:
            if want_dx:
                _act_grad_rows(<const floating*>op.out, G, prev_g, n, op.d_out, op.act)
        elif op.kind == OP_BATCHNORM:
            if op.batch_mode:
                _bn_backward_train(X, G, n, op.d_out, <const floating*>op.W,
                                   <const floating*>op.bmean, <const floating*>op.binv, prev_g,
                                   <floating*>op.gW if op.train_w else NULL,
                                   <floating*>op.gb if op.train_b else NULL, False)
            else:
                _bn_backward_infer(X, G, n, op.d_out, <const floating*>op.W,
                                   <const floating*>op.mm, <const floating*>op.mv, op.eps, prev_g,
                                   <floating*>op.gW if op.train_w else NULL,
                                   <floating*>op.gb if op.train_b else NULL, False)
            if op.train_w:
                _apply(p, <floating*>op.W, <const floating*>op.gW, <floating*>op.s1W,
                       <floating*>op.s2W, op.d_out, lr, lr_t)
            if op.train_b:
                _apply(p, <floating*>op.b, <const floating*>op.gb, <floating*>op.s1b,
                       <floating*>op.s2b, op.d_out, lr, lr_t)
        elif want_dx:
            size = n * op.d_out
            if p.vals[l] == <const void*>X:
                memcpy(prev_g, G, size * sizeof(floating))
            else:
                _dropout_bwd(G, op.mask, prev_g, size, op.rate)
        l -= 1
    return loss
