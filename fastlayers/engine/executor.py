"""Run step programs on the compiled executor (``fastlayers._kernels.executor``).

:class:`Runner` turns a :class:`~fastlayers.engine.program.StepProgram` into the
executor's struct array once, keeps the buffers of the last few batch sizes, and
runs steps.  It is the only importer of the compiled executor.  Custom layers (and
losses the executor does not know) run here, called back from the executor at
their place in the program, through the public ``forward``/``backprop`` contract.

One model may be used from several threads: a lock per runner serializes its
steps (the buffers are the runner's); two models still run side by side.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, List, Optional, Sequence

import numpy as np

from .. import _codes
from .layer import split_backprop_result
from .program import OpKind, StepProgram

# Batch sizes whose buffers a runner keeps (least recently used dropped first).  A
# server answering ragged batch sizes keeps at most this many sets of buffers.
BUFFER_CACHE_SIZES = 4

# A convolution whose kernel trains may keep its whole batch's im2col from the forward
# pass for dW when that takes at most this many bytes; otherwise the im2col runs in
# chunks (ops._cols_buffer), again in backward.  0: never keep.  Each thread runs its
# samples' backward chunk by chunk in its cache (csrc/_conv.pxd, _bwd_threads), and
# the im2col done again there beat a kept one read back from memory: cnn-mnist's
# step 7.9-8.4 ms against 9.1-9.4 ms (2 threads, min of 15 runs, three rounds).
COLS_KEEP_BYTES = 0

# The ops whose geometry (op.kwargs["geom"]) the executor reads.
_IMAGE_OPS = (OpKind.CONV, OpKind.POOL, OpKind.DEPTHWISE, OpKind.CONV_TRANSPOSE, OpKind.PAD2D,
              OpKind.UPSAMPLE2D)


def _infer_plan(op):
    """(pool, winograd) for a CONV op the forward-only kernel runs, else None."""
    if op.kind != OpKind.CONV or op.backward:
        return None
    from .. import ops

    h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
    wino = ops._winograd_pays(kh, kw, sh, sw, dh, dw, c, op.pool >= 0)
    if op.pool < 0 and not wino:
        return None
    return op.pool, wino


def _partial_sum_threads() -> int:
    """Threads beyond the first a convolution's backward may give its own dW/db sums."""
    from .. import _threads

    return max(_threads.usable_cores() - 1, 0)


def _last_dim(shape) -> int:
    return int(shape[-1]) if shape else 1


class Runner:
    """A program bound to the compiled executor; ``optimizer`` only for training programs."""

    busy = False  # eager runners: buffers in use by a call whose backprop is pending

    def __init__(self, program: StepProgram, optimizer=None, lock=None):
        from .._kernels.executor import Executor

        self.program = program
        self.optimizer = optimizer
        self.dtype = np.dtype(program.dtype)
        # A model's runners share its lock: a predict cannot read weights a training
        # step in another thread is writing (steps of one model run one at a time).
        self._lock = lock if lock is not None else threading.RLock()
        slots = program.slots
        sizes = np.array([s.size for s in slots], dtype=np.intp)
        self._input_slots = set(program.inputs)
        self._input_aliases = [s for s in slots if s.alias_of in self._input_slots]
        ex = Executor(self.dtype == np.float32, len(slots), sizes, len(program.ops),
                      len(program.losses), len(program.weights))
        self._ex = ex
        self._keep: list = []
        # Gradient buffers: one per trained weight (R8), shared by all of its uses.
        self.grads = [np.zeros(w.shape, self.dtype) for w in program.weights]
        gindex = {id(w): i for i, w in enumerate(program.weights)}
        self._gindex = gindex
        self._bp: List[Optional[Callable]] = [None] * len(program.ops)
        for i, op in enumerate(program.ops):
            self._set_op(ex, i, op, slots, gindex)
        seen_loss_slots = set()
        self._loss_acc: List[bool] = []   # another loss wrote this buffer's gradient first
        for j, term in enumerate(program.losses):
            root = self._root(term.slot)
            self._loss_acc.append(root in seen_loss_slots)
            ex.set_loss(j, term.kind, term.slot, term.from_logits, self._loss_acc[j],
                        term.weight, _last_dim(slots[term.slot].shape))
            seen_loss_slots.add(root)
        if program.backprop and optimizer is not None:
            for j, (w, fused) in enumerate(zip(program.weights, program.fused)):
                s = tuple(optimizer.slots_for(w)) + (None, None, None)
                ex.set_weight(j, w.value, self.grads[j], s[0], s[1], s[2], fused)
            ex.set_optimizer(optimizer.kind)
        self._opt_setup = _optimizer_setup(optimizer) if optimizer is not None else None
        self._opt_version = getattr(optimizer, "_version", None)
        self._regularized = program.regularized
        self._form = None
        self._sparse = bool(program.losses) and program.losses[0].kind == _codes.LOSS_SPARSE_CE
        form = self._make_form()
        if form:
            ex.set_fast_form(np.array(form[1], dtype=np.intp), np.array(form[3], dtype=np.intp),
                             form[2] == np.int64)
            ex.set_fast_input_type(form[0].num)
        self._embeds = any(op.kind == OpKind.EMBEDDING for op in program.ops)
        s0 = program.inputs[0] if program.inputs else 0
        ex.set_fast_inputs(np.array([s0] + [a.index for a in self._input_aliases
                                            if a.alias_of == s0], dtype=np.intc))
        ex.callback_forward = self._callback_forward
        ex.callback_backward = self._callback_backward
        ex.callback_loss = self._callback_loss
        self._bindings: "OrderedDict[int, tuple]" = OrderedDict()
        self._bound = None
        self._targets: list = []
        self.n = 0

    def _root(self, s: int) -> int:
        a = self.program.slots[s].alias_of
        return s if a is None else a

    # ------------------------------------------------------------ setup
    def _set_op(self, ex, i, op, slots, gindex) -> None:
        ins = np.array(op.inputs, dtype=np.intc)
        outs = np.array(op.outputs, dtype=np.intc)
        want = np.array(op.want_dx, dtype=np.uint8)
        acc = np.array(op.acc_dx, dtype=np.uint8)
        out_shape = slots[op.outputs[0]].shape if op.outputs else ()
        d_in, d_out = 0, _last_dim(out_shape)
        if op.kind == OpKind.DENSE:
            d_in = int(op.weights[0].shape[0])
        elif op.kind == OpKind.CONV:
            d_in = int(np.prod(op.weights[0].shape[:-1]))  # K = kh * kw * c_in
        elif op.kind == OpKind.DEPTHWISE:
            d_in = int(np.prod(op.weights[0].shape[:2]))   # taps per output value
        elif op.kind == OpKind.CONV_TRANSPOSE:
            d_in = int(np.prod(op.weights[0].shape[:-1]))  # K = kh * kw * filters
        elif op.kind == OpKind.LAYERNORM:
            d_out = int(op.kwargs["width"])  # the normalized values per row
        ex.set_op(i, int(op.kind), int(op.act), ins, outs, want, acc, op.backward, d_in, d_out, i)
        if op.kind in (OpKind.DENSE, OpKind.CONV, OpKind.BATCHNORM):
            self._set_params(ex, i, op, gindex)
        if op.kind in (OpKind.DEPTHWISE, OpKind.CONV_TRANSPOSE):
            self._set_kernel_bias(ex, i, op, gindex)
        elif op.kind == OpKind.LAYERNORM:
            self._set_layernorm(ex, i, op, gindex)
        plan = _infer_plan(op)
        if plan is not None:
            ex.set_conv_infer(i, *plan)
        if op.kind == OpKind.CONV and op.backward and any(op.train):
            # Each thread beyond the first sums its samples' dW and db apart (K * f + f
            # values), for the largest team the machine allows.
            K, f = d_in, int(op.weights[0].shape[-1])
            parts = np.empty(_partial_sum_threads() * (K * f + f), self.dtype)
            self._keep.append(parts)
            ex.set_conv_parts(i, parts)
        if op.kind in _IMAGE_OPS:
            geom = np.array(op.kwargs["geom"], dtype=np.intp)
            self._keep.append(geom)
            ex.set_geometry(i, geom)
        if op.kind == OpKind.DROPOUT:
            ex.set_dropout(i, op.kwargs["rate"], op.seed, op.counter)
        elif op.kind == OpKind.CONCAT:
            shape = slots[op.outputs[0]].shape
            ax = op.axis
            outer = int(np.prod(shape[:ax])) if ax > 0 else 1
            chunk = np.array([int(np.prod(slots[s].shape[ax:])) for s in op.inputs], dtype=np.intp)
            ex.set_concat(i, outer, chunk)
        elif op.kind == OpKind.TRANSPOSE:
            t1, t2 = op.kwargs["dims"]
            ex.set_transpose(i, op.axis, t1, t2)
        if op.kind in (OpKind.EMBEDDING, OpKind.GROUPNORM, OpKind.PRELU):
            self._set_emb_op(ex, i, op, gindex)

    def _set_params(self, ex, i, op, gindex) -> None:
        layer = op.layer
        if op.kind in (OpKind.DENSE, OpKind.CONV):
            W, b = op.weights[0], (op.weights[1] if len(op.weights) > 1 else None)
            tw, tb = op.train[0], (op.train[1] if b is not None else False)
            aw, ab = op.acc_grad[0], (op.acc_grad[1] if b is not None else False)
            fw, fb = op.fused_sgd[0], (op.fused_sgd[1] if b is not None else False)
            ex.set_params(i, W.value, b.value if b is not None else None,
                          self.grads[gindex[id(W)]] if tw and not fw else None,
                          self.grads[gindex[id(b)]] if tb and not fb else None, aw, ab, fw, fb)
            return
        c = layer.moving_mean.shape[0]
        gamma, beta = layer.gamma, layer.beta
        ones, zeros = np.ones(c, self.dtype), np.zeros(c, self.dtype)
        self._keep += [ones, zeros]
        flags = dict(zip((id(w) for w in op.weights), zip(op.train, op.acc_grad)))
        tg, ag = flags.get(id(gamma), (False, False)) if gamma is not None else (False, False)
        tb, ab = flags.get(id(beta), (False, False)) if beta is not None else (False, False)
        # The batch-norm kernels take one accumulate flag (acc_gW) for both parameter
        # gradients: equal when both train (same uses), else the trained one's -- a
        # beta-only (scale=False) layer used twice must add its second use's gradient.
        acc = ag if tg else ab
        ex.set_params(i, gamma.value if gamma is not None else ones,
                      beta.value if beta is not None else zeros,
                      self.grads[gindex[id(gamma)]] if tg else None,
                      self.grads[gindex[id(beta)]] if tb else None, acc, acc, False, False)
        stats = [np.empty(c, self.dtype) for _ in range(3)]
        self._keep += stats
        ex.set_batchnorm(i, layer.moving_mean.value, layer.moving_variance.value, *stats,
                         op.epsilon, op.momentum, op.batch_stats, op.update_stats)

    def _set_kernel_bias(self, ex, i, op, gindex) -> None:
        """A DEPTHWISE/CONV_TRANSPOSE op's kernel, optional bias and their gradients
        (never a fused update: lowering fuses Dense ops only)."""
        W, b = op.weights[0], (op.weights[1] if len(op.weights) > 1 else None)
        tw, tb = op.train[0], (op.train[1] if b is not None else False)
        aw, ab = op.acc_grad[0], (op.acc_grad[1] if b is not None else False)
        ex.set_params(i, W.value, b.value if b is not None else None,
                      self.grads[gindex[id(W)]] if tw else None,
                      self.grads[gindex[id(b)]] if tb else None, aw, ab, False, False)

    def _set_layernorm(self, ex, i, op, gindex) -> None:
        """gamma/beta (absent: NULL, the kernel skips them) and each one's gradient."""
        layer = op.layer
        flags = dict(zip((id(w) for w in op.weights), zip(op.train, op.acc_grad)))
        gamma, beta = layer.gamma, layer.beta
        tg, ag = flags.get(id(gamma), (False, False)) if gamma is not None else (False, False)
        tb, ab = flags.get(id(beta), (False, False)) if beta is not None else (False, False)
        ex.set_params(i, gamma.value if gamma is not None else None,
                      beta.value if beta is not None else None,
                      self.grads[gindex[id(gamma)]] if tg else None,
                      self.grads[gindex[id(beta)]] if tb else None, ag, ab, False, False)
        ex.set_layernorm(i, op.epsilon)

    def _set_emb_op(self, ex, i, op, gindex) -> None:
        """EMBEDDING (the table), GROUPNORM (gamma/beta) or PRELU (alpha): each
        weight (absent: NULL) and its own gradient buffer and accumulate flag."""
        layer = op.layer
        flags = dict(zip((id(w) for w in op.weights), zip(op.train, op.acc_grad)))
        if op.kind == OpKind.GROUPNORM:
            params = (layer.gamma, layer.beta)
        else:
            params = (op.weights[0], None)
        tf = [flags.get(id(w), (False, False)) if w is not None else (False, False)
              for w in params]
        ex.set_params(i, *(w.value if w is not None else None for w in params),
                      *(self.grads[gindex[id(w)]] if t[0] else None for w, t in zip(params, tf)),
                      tf[0][1], tf[1][1], False, False)
        if op.kind == OpKind.EMBEDDING:
            ids = self.program.slots[op.inputs[0]].dtype
            ex.set_embedding(i, int(op.weights[0].shape[0]), _codes.IDS_KINDS[ids.name])
        elif op.kind == OpKind.GROUPNORM:
            ex.set_groupnorm(i, int(op.kwargs["groups"]), op.epsilon)
        else:
            aidx = np.array(op.kwargs["alpha_index"], dtype=np.intp)  # owned, writeable
            self._keep.append(aidx)
            ex.set_prelu(i, aidx, int(op.weights[0].value.size))

    # ------------------------------------------------------------ binding
    def _bind(self, n: int) -> tuple:
        b = self._bindings.get(n)
        if b is None:
            prog = self.program
            # A slot no op reads or writes (a convolution's output its pooling was
            # fused into) gets no buffer.
            used = {self._root(s) for op in prog.ops for s in op.inputs + op.outputs}
            used |= {self._root(s) for s in prog.outputs}
            used |= {self._root(t.slot) for t in prog.losses}
            values = [None if s.index in self._input_slots or s.alias_of is not None
                      or s.index not in used else
                      np.empty((n,) + s.shape, self.dtype) for s in prog.slots]
            grads = [np.zeros((n,) + s.shape, self.dtype)
                     if prog.backprop and s.index not in self._input_slots
                     and s.alias_of is None and s.index in used else None
                     for s in prog.slots]
            self._alias_views(n, values)
            self._alias_views(n, grads)
            aux = [self._aux(op, n) for op in prog.ops]
            biggest = max([n * s.size for s in prog.slots if self._root(s.index) in used]
                          + [1])
            scratch = np.empty(biggest, self.dtype)
            b = (values, grads, aux, scratch)
            self._bindings[n] = b
            while len(self._bindings) > BUFFER_CACHE_SIZES:
                self._bindings.popitem(last=False)
        else:
            self._bindings.move_to_end(n)
        if self._bound is not b:
            self._ex.bind(n, *b)
            self._bound = b
        self.n = n
        return b

    def _aux(self, op, n: int):
        """An op's per-batch buffer: a dropout mask, a convolution's im2col scratch,
        depthwise dW partial sums, layer/group norm statistics.  Max pooling keeps no
        argmax: its backward finds the maxima again."""
        prog = self.program
        if op.kind == OpKind.DROPOUT:
            return np.empty((n,) + prog.slots[op.inputs[0]].shape, np.uint8)
        plan = _infer_plan(op)
        if plan is not None:
            from .. import _threads
            from .._kernels.conv import infer_work_size

            f = int(op.weights[0].shape[-1])
            return np.empty(infer_work_size(_threads.team(), *op.kwargs["geom"], f, plan[1],
                                            plan[0]), self.dtype)
        if op.kind in (OpKind.CONV, OpKind.CONV_TRANSPOSE):
            # CONV_TRANSPOSE: the im2col of the convolution whose data gradient it is.
            return self._cols(op, n)
        if op.kind == OpKind.DEPTHWISE:
            from .. import _threads

            # One partial dW sum per thread beyond the first (dW sums every sample).
            parts = _threads.team() - 1 if op.train and op.train[0] else 0
            size = int(np.prod(op.weights[0].shape))
            return np.empty((parts, size), self.dtype) if parts > 0 else None
        if op.kind == OpKind.LAYERNORM:
            # The batch's row statistics (mean, inv_std), read again by backward.
            rows = n * prog.slots[op.outputs[0]].size // int(op.kwargs["width"])
            return np.empty((2, rows), self.dtype)
        if op.kind == OpKind.GROUPNORM:
            # Each (sample, group)'s statistics (mean, inv_std), read again by backward.
            return np.empty((2, n * int(op.kwargs["groups"])), self.dtype)
        return None

    def _cols(self, op, n: int):
        """A convolution's im2col scratch: the whole batch when its kernel trains and
        the batch fits COLS_KEEP_BYTES (dW reads the forward pass's), else chunks."""
        from .. import ops

        h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
        K = kh * kw * c
        whole = bool(op.train and op.train[0]) and \
            n * oh * ow * K * self.dtype.itemsize <= COLS_KEEP_BYTES
        return ops._cols_buffer(self.dtype, n, oh, ow, K,
                                ops._is_direct(kh, kw, sh, sw, pt, pl, oh, ow, h, w), whole)

    def _alias_views(self, n: int, arrays: list) -> None:
        """Alias slots view their root's buffer with their own shape (a reshape, no copy)."""
        for s in self.program.slots:
            if s.alias_of is not None and arrays[s.alias_of] is not None:
                arrays[s.index] = arrays[s.alias_of].reshape((n,) + s.shape)

    def _set_data(self, xs: Sequence[np.ndarray], ys, sws, rows=None) -> None:
        n = len(xs[0])
        values, _, _, _ = self._bind(n)
        ex = self._ex
        for s, x in zip(self.program.inputs, xs):
            values[s] = x
            ex.set_input(s, x)
        if self._input_aliases:
            for s in self._input_aliases:
                v = values[s.alias_of].reshape((n,) + s.shape)
                values[s.index] = v
                ex.set_input(s.index, v)
        # Dropout draws by the row's place in the global batch (data-parallel shards).
        ex.set_dropout_rows(*(rows or (0, n)))
        self._targets = []
        if ys is not None:
            for j, term in enumerate(self.program.losses):
                y = ys[term.output]
                sw = sws[term.output] if sws is not None else None
                ex.set_target(j, y if term.kind != _codes.LOSS_CALLBACK else None, sw)
                self._targets.append((y, sw))

    # ------------------------------------------------------------ running
    def fast_form(self, x, y) -> bool:
        """Whether one input and one target array are already in the program's form.

        The form: C-contiguous arrays of the program's dtype and shapes (labels int64),
        at least one sample.  ``train_on_batch`` then skips its conversions.
        """
        form = self._form
        if form is None:
            form = self._form = self._make_form()
        if not form or type(x) is not np.ndarray or type(y) is not np.ndarray:
            return False
        xshape, ydtype, yshape = form[1], form[2], form[3]
        n = x.shape[0] if x.ndim else 0
        return (x.dtype == form[0] and x.shape[1:] == xshape and n > 0
                and x.flags.c_contiguous and y.dtype == ydtype and y.shape[0] == n
                and y.shape[1:] == yshape and y.flags.c_contiguous)

    def _make_form(self):
        prog = self.program
        if len(prog.inputs) != 1 or len(prog.losses) != 1:
            return ()
        term = prog.losses[0]
        want = prog.slots[term.slot].shape
        if term.kind == _codes.LOSS_CALLBACK:
            return ()
        x = prog.slots[prog.inputs[0]]  # float, or integer ids for an Embedding
        if term.kind == _codes.LOSS_SPARSE_CE:
            return (x.dtype, x.shape, np.dtype(np.int64), want[:-1])
        return (x.dtype, x.shape, self.dtype, want)

    def try_fast(self, x, y):
        """One training step if ``x``, ``y`` are already in the program's form, else None.

        The whole check and step are one C call when nothing changed since the last
        one (same batch size, same optimizer settings); otherwise the Python side
        checks (``fast_form``) and binds first.
        """
        opt = self.optimizer
        if self._opt_version == opt._version and opt.global_clipnorm is None \
                and not self._regularized:
            with self._lock:
                total = self._ex.try_fast(x, y, opt.begin_step())
                if total is not None:
                    if total != total and self._embeds and self._ex.check_ids() >= 0:
                        return self._bad_ids(self._ex.check_ids(), x)
                    if total != total and self._sparse and self._ex.check_labels() >= 0:
                        # NaN with nothing done: a label out of range (a NaN loss from a
                        # step that ran has its labels in range).
                        self._targets = [(y, None)]
                        return self._bad_labels(0)
                    opt.end_step()
                    return total
        if not self.fast_form(x, y):
            return None
        return self.fast_step(x, y)

    def fast_step(self, x, y) -> float:
        """A training step on arrays in the program's form (``fast_form``): the loss."""
        with self._lock:
            opt = self.optimizer
            if self._opt_version != opt._version:
                self._check_optimizer()  # may set the executor up again: before binding
            if opt.global_clipnorm is not None or self._regularized:
                self._set_data([x], [y], None)
                self._check_ids()
                if self._ex.check_labels() >= 0:
                    return self._bad_labels(0)
                return self._run_step(None)
            if len(x) != self.n or self._bound is None:
                self._bind(len(x))
            total = self._ex.fast_step(x, y, opt.begin_step())
            if total != total and self._embeds and self._ex.check_ids() >= 0:
                self._bad_ids(self._ex.check_ids(), x)
            if total != total and self.program.losses[0].kind == _codes.LOSS_SPARSE_CE \
                    and self._ex.check_labels() >= 0:
                self._targets = [(y, None)]
                return self._bad_labels(0)
            opt.end_step()
            return total

    def _check_ids(self) -> None:
        """Refuse a batch whose ids some Embedding cannot look up (before any work)."""
        if self._embeds:
            l = self._ex.check_ids()
            if l >= 0:
                self._bad_ids(l)

    def _bad_ids(self, l: int, x=None):
        """Raise for op ``l``'s ids (``x``: the fast path's one input array, which all
        ids slots view; else the bound input arrays)."""
        op = self.program.ops[l]
        ids = x if x is not None else self._bound[0][op.inputs[0]]
        vocab = int(op.weights[0].shape[0])
        r = np.rint(ids) if ids.dtype.kind == "f" else ids
        bad = np.asarray(ids)[~((r >= 0) & (r < vocab))].reshape(-1)
        got = f", got {bad[0]}" if bad.size else ""
        raise ValueError(f"Layer {op.layer.name!r} (Embedding): ids must be in [0, {vocab}) "
                         f"(rounded to integers){got}; the batch was not run")

    def _bad_labels(self, j: int):
        term = self.program.losses[j]
        k = _last_dim(self.program.slots[term.slot].shape)
        raise ValueError(f"{term.loss.name}: labels must be in [0, {k}); output "
                         f"{term.output} got a label out of range")

    def train_step(self, xs, ys, sws=None, gradient_hook=None, rows=None):
        """One training step; returns ``(total, per_output_losses, outputs)``.

        ``gradient_hook(grads)``, when given, runs at the point where the summed
        gradients of the whole compiled set are complete and no weight has moved
        (data-parallel averaging); it may change the arrays in place.  ``rows``
        ``(row_offset, global_rows)`` places this batch in a global batch (dropout).
        """
        with self._lock:
            if self._opt_version != self.optimizer._version:
                self._check_optimizer()
            if gradient_hook is not None and any(self.program.fused):
                self._unfuse()  # the hook must see every gradient before any update
            self._set_data(xs, ys, sws, rows)
            self._check_ids()
            bad = self._ex.check_labels()
            if bad >= 0:
                self._bad_labels(bad)
            total = self._run_step(gradient_hook)
            return total, self._loss_values(), self._outputs()

    def _run_step(self, gradient_hook) -> float:
        """Forward, losses, backward, [gradients ready], updates, commit; then end_step."""
        opt = self.optimizer
        ex = self._ex
        hyper = opt.begin_step()
        regularized = self._regularized
        if gradient_hook is None and opt.global_clipnorm is None and not regularized:
            total = ex.step(hyper)
        else:
            ex.forward(True)
            total = ex.losses_and_backward(hyper)
            self.gradients_ready(hyper, gradient_hook)
            ex.update(hyper)
            if regularized:
                self._apply_constraints()
            ex.commit()
        opt.end_step()
        return total

    def _apply_constraints(self) -> None:
        """Project the trained weights that have a constraint (frozen ones never move)."""
        for w in self.program.weights:
            if w.constraint is not None:
                np.copyto(w.value, w.constraint(w.value), casting="same_kind")

    def _check_optimizer(self) -> None:
        """A hyperparameter changed: re-set the executor if its kind or fusing changed."""
        self._opt_version = self.optimizer._version
        if _optimizer_setup(self.optimizer) != self._opt_setup:
            self._optimizer_changed()

    def _unfuse(self) -> None:
        from .program import unfused

        self.__init__(unfused(self.program), self.optimizer, self._lock)

    def _optimizer_changed(self) -> None:
        """The optimizer's kind or clipping changed after compile(): set the executor up again.

        The executor was given the kind, the slots and the fused updates once; a
        switch such as ``opt.nesterov = True`` or momentum turned on after compile()
        takes effect from the next step (as the settings read per step do), with no
        update fused into the backward pass any more.
        """
        from .program import for_optimizer

        self.__init__(for_optimizer(self.program, self.optimizer), self.optimizer, self._lock)

    def gradients_ready(self, hyper, gradient_hook=None) -> None:
        """The point between gradients and updates: every gradient summed, no weight moved.

        The data-parallel exchange runs here (``gradient_hook``), then global-norm
        clipping, which must see the averaged gradients.
        """
        if self._regularized:
            # The penalties' gradients join the loss's before anything else sees them.
            for w, g in zip(self.program.weights, self.grads):
                if w.regularizer is not None:
                    g += w.regularizer.gradient(w.value).astype(g.dtype, copy=False)
        if gradient_hook is not None:
            gradient_hook([g for g, f in zip(self.grads, self.program.fused) if not f])
        opt = self.optimizer
        if opt.global_clipnorm is not None:
            gn = self._ex.global_norm()
            hyper[_codes.H_GSCALE] = opt.global_norm_scale(gn * gn)

    def run(self, xs, ys=None, sws=None):
        """Forward only (and the losses when targets are given): ``(total, per_output, outs)``.

        The commit afterwards advances dropout counters, and writes moving statistics
        only where the program says so (``update_stats``: an eager training call).
        """
        with self._lock:
            self._set_data(xs, ys, sws)
            self._check_ids()
            ex = self._ex
            if ys is not None:
                bad = ex.check_labels()
                if bad >= 0:
                    self._bad_labels(bad)
            ex.run_forward_only()
            total = ex.losses_only() if ys is not None else None
            # Dropout counters always advance (a pinned training=True drops anew each
            # call); moving statistics only where the program updates state (R7).
            ex.commit()
            return total, self._loss_values(), self._outputs()

    def _loss_values(self) -> List[float]:
        vals = [0.0] * (max([t.output for t in self.program.losses] + [-1]) + 1)
        for j, t in enumerate(self.program.losses):
            vals[t.output] = self._ex.loss_value(j)
        return vals

    def _outputs(self) -> List[np.ndarray]:
        values = self._bound[0]
        return [values[s] for s in self.program.outputs]

    # ------------------------------------------------------------ callbacks
    def _callback_forward(self, i: int) -> None:
        op = self.program.ops[i]
        layer = op.layer
        values = self._bound[0]
        xs = [values[s] for s in op.inputs]
        x = xs if op.list_input else xs[0]
        training = op.training
        if op.backward:
            if type(layer).forward is _base_forward():
                raise NotImplementedError(
                    f"Layer {layer.name!r} ({type(layer).__name__}) defines call() but no "
                    f"forward(); to train through it, define forward(inputs, training) "
                    f"returning (outputs, backprop)")
            targs = {"training": training} if layer._takes_training("forward") else {}
            y, bp = layer.forward(x, **targs, **op.kwargs)
            self._bp[i] = bp
        else:
            y = _call_inference(layer, x, training, op.kwargs)
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        if len(ys) != len(op.outputs):
            raise ValueError(f"Layer {layer.name!r} returned {len(ys)} outputs, expected "
                             f"{len(op.outputs)}")
        for s, v in zip(op.outputs, ys):
            dst = values[s]
            v = np.asarray(v)
            if v.shape != dst.shape:
                raise ValueError(f"Layer {layer.name!r} returned an output of shape {v.shape}, "
                                 f"expected {dst.shape} (from compute_output_shape)")
            np.copyto(dst, v, casting="same_kind")

    def _callback_backward(self, i: int) -> None:
        op = self.program.ops[i]
        layer = op.layer
        bp, self._bp[i] = self._bp[i], None
        grads = self._bound[1]
        gs = [grads[s] for s in op.outputs]
        res = bp(gs[0] if len(gs) == 1 else gs)
        own = list(layer.weights)
        dx, dws = split_backprop_result(res, bool(own))
        if not dws and any(op.train):
            raise ValueError(
                f"Layer {layer.name!r}: backprop must return (grad_inputs, weight_grads) with one "
                f"gradient per weight ({len(own)}); it returned none, so the layer's trainable "
                f"weights would never train")
        if dws and len(dws) != len(own):
            raise ValueError(f"Layer {layer.name!r}: backprop returned {len(dws)} weight gradients, "
                             f"the layer has {len(own)} weights")
        for w, g, t, acc in zip(op.weights, dws, op.train, op.acc_grad):
            if not t:
                continue
            buf = self.grads[self._gindex[id(w)]]
            if g is None:
                if not acc:
                    buf[...] = 0
                continue
            g = np.asarray(g, dtype=w.dtype)
            if g.shape != w.shape:
                raise ValueError(f"Layer {layer.name!r}: gradient for {w.name!r} has shape "
                                 f"{g.shape}, expected {w.shape}")
            if acc:
                buf += g
            else:
                np.copyto(buf, g)
        dxs = list(dx) if op.list_input else [dx]
        for s, d, want, acc in zip(op.inputs, dxs, op.want_dx, op.acc_dx):
            if not want:
                continue
            dst = grads[s]
            if d is None:
                if not acc:
                    dst[...] = 0
                continue
            d = np.asarray(d)
            if d.shape != dst.shape:
                raise ValueError(f"Layer {layer.name!r}: input gradient has shape {d.shape}, "
                                 f"expected {dst.shape}")
            if acc:
                dst += d
            else:
                np.copyto(dst, d, casting="same_kind")

    def _callback_loss(self, j: int, backward: bool) -> float:
        term = self.program.losses[j]
        y, sw = self._targets[j]
        pred = self._bound[0][term.slot]
        value, g = term.loss.loss_and_grad(y, pred, want_grad=backward)
        if sw is not None:
            raise ValueError(f"{term.loss.name}: sample weights need a built-in loss")
        if backward:
            dst = self._bound[1][term.slot]
            g = np.asarray(g) * term.weight
            if self._loss_acc[j]:
                dst += g
            else:
                np.copyto(dst, g, casting="same_kind")
        return float(value)


def _optimizer_setup(opt) -> tuple:
    """What the executor is given once about an optimizer (the rest is read per step)."""
    return (opt.kind, opt.global_clipnorm is not None, opt.fusable)


def _base_forward():
    from .layer import Layer

    return Layer.forward


def _call_inference(layer, x, training, kwargs):
    from .layer import Layer

    if type(layer).call is Layer.call:
        targs = {"training": training} if layer._takes_training("forward") else {}
        return layer.forward(x, **targs, **kwargs)[0]
    cargs = {"training": training} if layer._takes_training("call") else {}
    return layer.call(x, **cargs, **kwargs)


class VJPRunner(Runner):
    """A runner of a ``vjp`` program: forward, then gradients from given output gradients.

    This is how built-in layers and containers offer the public
    ``forward(inputs, training) -> (outputs, backprop)`` contract: the same ops, run
    by the same executor.
    """

    def _bind(self, n: int) -> tuple:
        b = super()._bind(n)
        grads = b[1]
        for s in self.program.inputs:
            if grads[s] is None or grads[s].shape[0] != n:
                grads[s] = np.zeros((n,) + self.program.slots[s].shape, self.dtype)
                self._alias_views(n, grads)
                self._ex.bind(n, *b)
        return b

    def forward(self, xs):
        with self._lock:
            self._set_data(xs, None, None)
            self._check_ids()
            self._ex.run_forward_only()
            self._ex.commit()
            return [o.copy() for o in self._outputs()]

    def backward(self, gs):
        """``(input_grads, weight_grads)`` for output gradients ``gs`` (after ``forward``)."""
        with self._lock:
            grads = self._bound[1]
            for s, g in zip(self.program.outputs, gs):
                g = np.asarray(g)
                if g.shape != grads[s].shape:
                    raise ValueError(f"backprop: output gradient has shape {g.shape}, expected "
                                     f"{grads[s].shape}")
                np.copyto(grads[s], g, casting="same_kind")
            self._ex.backward_only()
            dxs = [grads[s].copy() for s in self.program.inputs]
            dws = {id(w): g.copy() for w, g in zip(self.program.weights, self.grads)}
            return dxs, dws
