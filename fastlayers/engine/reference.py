"""The NumPy twin of the compiled executor: the same step program, in plain NumPy.

:class:`ReferenceRunner` runs a :class:`~fastlayers.engine.program.StepProgram` --
forward, losses, backward, the point where gradients are complete, the optimizer
update and the commit of state -- with the kernel twins of
:mod:`fastlayers._reference`.  Like the compiled executor it decides nothing: every
choice (which weights train, which ops run backward, which inputs want a gradient,
who adds into a gradient buffer, batch or moving statistics, fused SGD updates,
dropout seeds and counters) is read from the program's fields.  It exists so tests
can run one program on both executors and compare weights and state; it is slow
and allocates freely.

It works on the real state the program points at (weights, optimizer slots, moving
statistics, dropout counters), like :class:`~fastlayers.engine.executor.Runner`,
and has the same ``train_step``/``run`` signatures, so it can stand in for a
model's compiled runner (``model._compiled.train = ReferenceRunner(...)``) and run
``fit`` too.  Each step works on fresh buffers: a compiled buffer that is read
before the step wrote it would show up as a difference between the two.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _codes
from .. import _reference as ref
from .executor import _base_forward, _call_inference
from .program import OpKind, StepProgram, for_optimizer, unfused

__all__ = ["ReferenceRunner", "update"]


def update(kind: int, hyper: np.ndarray, w: np.ndarray, g: np.ndarray,
           slots: Sequence[np.ndarray]) -> None:
    """One optimizer update of one weight in place, from its complete gradient ``g``:
    the optimizers' own NumPy twin (``fastlayers._reference.update_reference``)."""
    ref.update_reference(kind, hyper, w, g, slots)


_update = update


def _rate(op) -> float:
    """A dropout op's rate now (read every step, as the executor does)."""
    return float(op.kwargs["rate"][0])


def _merge(mode: int, xs):
    """The MERGE op's forward in NumPy, left to right like the kernel."""
    y = xs[0].copy()
    for x in xs[1:]:
        if mode in (_codes.MERGE_ADD, _codes.MERGE_AVERAGE):
            y = y + x
        elif mode == _codes.MERGE_SUBTRACT:
            y = y - x
        elif mode == _codes.MERGE_MULTIPLY:
            y = y * x
        elif mode == _codes.MERGE_MAXIMUM:
            y = np.maximum(y, x)
        else:
            y = np.minimum(y, x)
    return y / len(xs) if mode == _codes.MERGE_AVERAGE else y


def _merge_grad(mode: int, xs, i: int, G):
    """Input ``i``'s gradient; maximum/minimum go to the first input that attains it."""
    if mode == _codes.MERGE_ADD or (mode == _codes.MERGE_SUBTRACT and i == 0):
        return G
    if mode == _codes.MERGE_SUBTRACT:
        return -G
    if mode == _codes.MERGE_AVERAGE:
        return G / len(xs)
    if mode == _codes.MERGE_MULTIPLY:
        out = G
        for k, x in enumerate(xs):
            if k != i:
                out = out * x
        return out
    y = _merge(mode, xs)
    taken = np.zeros(y.shape, bool)
    for k in range(i):
        taken |= xs[k] == y
    return np.where(~taken & (xs[i] == y), G, 0)


def _last_dim(shape) -> int:
    return int(shape[-1]) if shape else 1


class ReferenceRunner:
    """A step program run in NumPy; ``optimizer`` only for training programs.

    ``train_step(xs, ys, sws=None)`` returns ``(total, per_output_losses, outputs)``
    as :meth:`Runner.train_step <fastlayers.engine.executor.Runner.train_step>` does;
    ``run(xs, ys=None)`` is the forward-only call (losses when targets are given).
    Inputs are standardized arrays (what ``Model._standardize_x``/``_y``/``_sw`` make).
    """

    def __init__(self, program: StepProgram, optimizer=None):
        self.program = program
        self.optimizer = optimizer
        self.dtype = np.dtype(program.dtype)
        self.grads: List[np.ndarray] = [np.zeros(w.shape, self.dtype) for w in program.weights]
        self._gindex = {id(w): i for i, w in enumerate(program.weights)}
        self._inputs = set(program.inputs)
        self._bp: List[Optional[Callable]] = [None] * len(program.ops)
        self._stats: Dict[int, tuple] = {}   # op index -> (mean, var, inv_std) of this step
        self._masks: Dict[int, np.ndarray] = {}
        self.values: List[Optional[np.ndarray]] = []
        self.slot_grads: List[Optional[np.ndarray]] = []
        self.loss_values: List[float] = [0.0] * len(program.losses)
        self._targets: list = []
        self.n = 0

    # ------------------------------------------------------------ buffers
    def _root(self, s: int) -> int:
        a = self.program.slots[s].alias_of
        return s if a is None else a

    def _shape(self, s: int) -> tuple:
        return (self.n,) + self.program.slots[s].shape

    def _val(self, s: int) -> np.ndarray:
        """The value of slot ``s`` (an alias is its root's buffer reshaped)."""
        return self.values[self._root(s)].reshape(self._shape(s))

    def _grad(self, s: int) -> Optional[np.ndarray]:
        g = self.slot_grads[self._root(s)]
        return None if g is None else g.reshape(self._shape(s))

    def _put_grad(self, s: int, value: np.ndarray, add: bool) -> None:
        """Write (or add) the gradient of slot ``s``, as the op's acc_dx flag says."""
        dst = self._grad(s)
        value = np.asarray(value).reshape(dst.shape)
        if add:
            dst += value.astype(self.dtype, copy=False)
        else:
            dst[...] = value

    def _set_data(self, xs, ys, sws) -> None:
        prog = self.program
        n = len(xs[0])
        self.n = n
        self.rows = (0, n)
        self.values = [None] * len(prog.slots)
        for s, x in zip(prog.inputs, xs):
            x = np.asarray(x)
            want = prog.slots[s].dtype  # the program's float dtype, or integer ids
            if x.dtype != want or x.shape != self._shape(s):
                raise ValueError(f"ReferenceRunner: input for slot {s} must be {want} of "
                                 f"shape {self._shape(s)}, got {x.dtype} {x.shape}")
            self.values[s] = x
        # Fresh zeros every step (the compiled buffers live across steps): a compiled
        # gradient read before this step's first writer wrote it shows as a difference.
        self.slot_grads = [np.zeros(self._shape(s.index), self.dtype)
                           if prog.backprop and (prog.vjp or s.index not in self._inputs)
                           and s.alias_of is None else None for s in prog.slots]
        self._targets = []
        if ys is not None:
            for term in prog.losses:
                self._targets.append((ys[term.output],
                                      sws[term.output] if sws is not None else None))

    def _check_ids(self) -> None:
        """Every Embedding op's ids name rows of its table (before any op runs)."""
        for op in self.program.ops:
            if op.kind == OpKind.EMBEDDING:
                vocab = op.weights[0].shape[0]
                if ref.embedding_rows(self._val(op.inputs[0]), vocab) is None:
                    raise ValueError(f"Layer {op.layer.name!r} (Embedding): ids must be in "
                                     f"[0, {vocab}) (rounded to integers); the batch was not run")

    def _check_labels(self, what: str) -> None:
        for j, term in enumerate(self.program.losses):
            if term.kind != _codes.LOSS_SPARSE_CE:
                continue
            k = _last_dim(self.program.slots[term.slot].shape)
            lab = np.asarray(self._targets[j][0])
            if lab.size and (lab.min() < 0 or lab.max() >= k):
                raise ValueError(f"{term.loss.name}: labels must be in [0, {k}); output "
                                 f"{term.output} got a label out of range ({what})")

    # ------------------------------------------------------------ running
    def train_step(self, xs, ys, sws=None, gradient_hook=None, rows=None):
        """One training step; returns ``(total, per_output_losses, outputs)``.

        ``rows`` ``(row_offset, global_rows)`` places the batch in a global batch: the
        dropout masks start at the offset and the counters advance by the global rows.
        """
        opt = self.optimizer
        # The compiled runner's rule for an optimizer changed after compile().
        self.program = for_optimizer(self.program, opt)
        if gradient_hook is not None:
            self.program = unfused(self.program)
        self._set_data(xs, ys, sws)
        self.rows = rows or (0, self.n)
        self._check_ids()
        self._check_labels("train_step")
        hyper = opt.begin_step()
        self.forward()
        total = self.losses(backward=True)
        self.backward(hyper)
        self.gradients_ready(hyper, gradient_hook)
        self.update(hyper)
        self.commit()
        opt.end_step()
        return total, self._loss_list(), self._outputs()

    def run(self, xs, ys=None, sws=None):
        """Forward only (losses when targets are given); ``(total, per_output, outs)``."""
        self._set_data(xs, ys, sws)
        self._check_ids()
        if ys is not None:
            self._check_labels("run")
        self.forward()
        total = self.losses(backward=False) if ys is not None else None
        self.commit()
        return total, self._loss_list(), self._outputs()

    def vjp(self, xs, gs):
        """A ``vjp`` program (the public ``forward``/``backprop`` contract) in one call.

        Forward (state committed, as an eager call does), then the backward pass
        from output gradients ``gs``; returns ``(outputs, input_grads, weight_grads)``
        with ``weight_grads`` keyed by ``id(weight)`` as ``VJPRunner.backward`` gives.
        """
        if not self.program.vjp:
            raise ValueError("ReferenceRunner.vjp: the program was not lowered with vjp=True")
        self._set_data(xs, None, None)
        self._check_ids()
        self.forward()
        self.commit()
        outs = [o.copy() for o in self._outputs()]
        for s, g in zip(self.program.outputs, gs):
            self._put_grad(s, np.asarray(g), False)
        self.backward()
        dxs = [self._grad(s).copy() for s in self.program.inputs]
        return outs, dxs, {id(w): g.copy() for w, g in zip(self.program.weights, self.grads)}

    def _outputs(self) -> List[np.ndarray]:
        return [self._val(s) for s in self.program.outputs]

    def _loss_list(self) -> List[float]:
        vals = [0.0] * (max([t.output for t in self.program.losses] + [-1]) + 1)
        for j, t in enumerate(self.program.losses):
            vals[t.output] = self.loss_values[j]
        return vals

    # ------------------------------------------------------------ forward
    def forward(self) -> None:
        """Every op of the program in order."""
        for i, op in enumerate(self.program.ops):
            if op.kind == OpKind.CALLBACK:
                self._callback_forward(i, op)
                continue
            x = self._val(op.inputs[0])
            out_shape = self._shape(op.outputs[0])
            if op.kind == OpKind.DENSE:
                W = op.weights[0].value
                b = op.weights[1].value if len(op.weights) > 1 else None
                X = x.reshape(-1, W.shape[0])
                Y = np.empty((X.shape[0], W.shape[1]), self.dtype)
                ref.dense_forward(X, W, b, Y, op.act)
            elif op.kind == OpKind.ACTIVATION:
                X = x.reshape(-1, _last_dim(out_shape))
                Y = np.empty_like(X)
                ref.activation_forward(X, Y, op.act)
            elif op.kind == OpKind.DROPOUT:
                # Counter-based mask: u(seed, counter + i) over the flat batch.
                Y = np.empty_like(x)
                mask = np.empty(x.shape, np.uint8)
                ref.dropout_forward(x, Y, mask, _rate(op), op.seed,
                                   int(op.counter[0]) + self.rows[0] * x[0].size)
                self._masks[i] = mask
            elif op.kind == OpKind.BATCHNORM:
                Y = self._bn_forward(i, op, x, out_shape)
            elif op.kind == OpKind.CONCAT:
                Y = np.concatenate([self._val(s) for s in op.inputs], axis=op.axis + 1)
            elif op.kind == OpKind.TRANSPOSE:
                t1, t2 = op.kwargs["dims"]
                Y = x.reshape(-1, t1, t2).transpose(0, 2, 1)
            elif op.kind == OpKind.MERGE:
                Y = _merge(op.act, [self._val(s) for s in op.inputs])
            elif op.kind == OpKind.CONV:
                h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
                W = op.weights[0].value
                b = op.weights[1].value if len(op.weights) > 1 else None
                Y = np.empty((self.n, oh, ow, W.shape[-1]), self.dtype)
                ref.conv2d_forward(x.reshape(self.n, h, w, c), W.reshape(-1, W.shape[-1]), b, Y,
                                   None, kh, kw, sh, sw, dh, dw, pt, pl, op.act)
                if op.pool >= 0:
                    # The fused 2x2/2 pooling (program._fuse_pooling), as the POOL op.
                    P = np.empty((self.n, oh // 2, ow // 2, Y.shape[-1]), self.dtype)
                    if op.pool == _codes.POOL_MAX:
                        ref.max_pool2d_forward(Y, P, np.empty(P.shape, np.int64), 2, 2, 2, 2,
                                               0, 0)
                    else:
                        ref.avg_pool2d_forward(Y, P, 2, 2, 2, 2, 0, 0)
                    Y = P
            elif op.kind == OpKind.POOL:
                Y = self._pool_forward(i, op, x)
            elif op.kind == OpKind.DEPTHWISE:
                Y = self._dw_forward(op, x)
            elif op.kind == OpKind.CONV_TRANSPOSE:
                Y = self._convt_forward(op, x)
            elif op.kind == OpKind.LAYERNORM:
                Y = self._ln_forward(i, op, x)
            elif op.kind == OpKind.PAD2D:
                h, w, c, H, W, top, left = op.kwargs["geom"]
                Y = np.empty((self.n, H, W, c), self.dtype)
                ref.pad2d_forward(x.reshape(self.n, h, w, c), Y, top, left)
            elif op.kind == OpKind.UPSAMPLE2D:
                h, w, c, sh, sw = op.kwargs["geom"]
                Y = np.empty((self.n, h * sh, w * sw, c), self.dtype)
                ref.upsample2d_forward(x.reshape(self.n, h, w, c), Y, sh, sw)
            elif op.kind in (OpKind.EMBEDDING, OpKind.GROUPNORM, OpKind.PRELU):
                Y = self._emb_ops_forward(i, op, x)
            else:
                raise ValueError(f"ReferenceRunner: unknown op kind {op.kind!r}")
            self.values[op.outputs[0]] = np.ascontiguousarray(Y, self.dtype).reshape(out_shape)

    def _pool_forward(self, i, op, x):
        h, w, c, oh, ow, ph, pw, sh, sw, pt, pl = op.kwargs["geom"]
        X = x.reshape(self.n, h, w, c)
        Y = np.empty((self.n, oh, ow, c), self.dtype)
        if op.act == _codes.POOL_MAX:
            arg = np.empty(Y.shape, np.int64)
            ref.max_pool2d_forward(X, Y, arg, ph, pw, sh, sw, pt, pl)
            self._masks[i] = arg
        else:
            ref.avg_pool2d_forward(X, Y, ph, pw, sh, sw, pt, pl)
        return Y

    def _conv_backward(self, op, x, G) -> None:
        h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
        W = op.weights[0].value
        f = W.shape[-1]
        W2 = W.reshape(-1, f)
        rows = (self.n * oh * ow, f)
        Y = self._val(op.outputs[0]).reshape(rows)
        dX = np.empty((self.n, h, w, c), self.dtype) if op.want_dx[0] else None
        dW = np.empty(W2.shape, self.dtype) if op.train[0] else None
        has_b = len(op.weights) > 1
        db = np.empty(f, self.dtype) if has_b and op.train[1] else None
        ref.conv2d_backward(x.reshape(self.n, h, w, c), W2, Y, G.reshape(rows),
                            np.empty(rows, self.dtype), dX, dW, db, None, h, w, oh, ow, kh, kw,
                            sh, sw, dh, dw, pt, pl, op.act, False)
        if dW is not None:
            self._weight_grad(op, 0, dW)
        if db is not None:
            self._weight_grad(op, 1, db)
        if dX is not None:
            self._put_grad(op.inputs[0], dX, op.acc_dx[0])

    def _pool_backward(self, i, op, G) -> None:
        if not op.want_dx[0]:
            return
        h, w, c, oh, ow, ph, pw, sh, sw, pt, pl = op.kwargs["geom"]
        dX = np.empty((self.n, h, w, c), self.dtype)
        dY = G.reshape(self.n, oh, ow, c)
        if op.act == _codes.POOL_MAX:
            ref.max_pool2d_backward(dY, self._masks[i], dX)
        else:
            ref.avg_pool2d_backward(dY, dX, ph, pw, sh, sw, pt, pl)
        self._put_grad(op.inputs[0], dX, op.acc_dx[0])

    def _kernel_bias(self, op):
        """DEPTHWISE/CONV_TRANSPOSE: the kernel as (rows, columns) and the bias or None."""
        W = op.weights[0].value
        b = op.weights[1].value if len(op.weights) > 1 else None
        return W.reshape(-1, W.shape[-1] if op.kind == OpKind.CONV_TRANSPOSE
                         else W.shape[-2] * W.shape[-1]), b

    def _bias_act(self, op, Z):
        """act(Z + b) over the rows of the last axis (Z is float, fresh)."""
        _, b = self._kernel_bias(op)
        f = Z.shape[-1]
        if b is not None:
            Z = Z + b
        Y = np.empty((Z.size // f, f), self.dtype)
        ref.activation_forward(np.ascontiguousarray(Z, self.dtype).reshape(-1, f), Y, op.act)
        return Y.reshape(Z.shape)

    def _bias_act_backward(self, op, G):
        """dZ = G * act' (through Y) and the bias gradient (placed by the flags)."""
        f = _last_dim(self.program.slots[op.outputs[0]].shape)
        Y = self._val(op.outputs[0]).reshape(-1, f)
        dZ = np.empty_like(Y)
        ref.activation_backward(Y, G.reshape(-1, f), dZ, op.act)
        if len(op.weights) > 1 and op.train[1]:
            self._weight_grad(op, 1, dZ.sum(axis=0, dtype=np.float64).astype(self.dtype))
        return dZ

    def _dw_forward(self, op, x):
        h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
        W2, _ = self._kernel_bias(op)
        Z = np.empty((self.n, oh, ow, W2.shape[1]), self.dtype)
        ref.depthwise_forward(x.reshape(self.n, h, w, c), W2, Z, kh, kw, sh, sw, dh, dw, pt, pl)
        return self._bias_act(op, Z)

    def _dw_backward(self, op, x, G) -> None:
        h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
        W2, _ = self._kernel_bias(op)
        dZ = self._bias_act_backward(op, G).reshape(self.n, oh, ow, W2.shape[1])
        dX = np.empty((self.n, h, w, c), self.dtype)
        dW = np.empty(W2.shape, self.dtype)
        ref.depthwise_backward(x.reshape(self.n, h, w, c), W2, dZ, dX, dW, kh, kw, sh, sw,
                               dh, dw, pt, pl)
        self._weight_grad(op, 0, dW)
        if op.want_dx[0]:
            self._put_grad(op.inputs[0], dX, op.acc_dx[0])

    def _convt_forward(self, op, x):
        """The data gradient of the convolution (output h, w, c <- input oh, ow, f)."""
        h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
        W2, _ = self._kernel_bias(op)
        rows = (self.n * oh * ow, W2.shape[1])
        Z = np.empty((self.n, h, w, c), self.dtype)
        ref.conv2d_backward(None, W2, None, x.reshape(rows), np.empty(rows, self.dtype), Z,
                            None, None, None, h, w, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl,
                            _codes.ACT_LINEAR, False)
        return self._bias_act(op, Z)

    def _convt_backward(self, op, x, G) -> None:
        """dx: the convolution of dZ; dW: that convolution's kernel gradient for
        output gradient x."""
        h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl = op.kwargs["geom"]
        W2, _ = self._kernel_bias(op)
        f = W2.shape[1]
        dZ = self._bias_act_backward(op, G).reshape(self.n, h, w, c)
        if op.want_dx[0]:
            dX = np.empty((self.n, oh, ow, f), self.dtype)
            ref.conv2d_forward(dZ, W2, None, dX, None, kh, kw, sh, sw, dh, dw, pt, pl,
                               _codes.ACT_LINEAR)
            self._put_grad(op.inputs[0], dX, op.acc_dx[0])
        if op.train[0]:
            rows = (self.n * oh * ow, f)
            dW = np.empty(W2.shape, self.dtype)
            ref.conv2d_backward(dZ, W2, None, x.reshape(rows), np.empty(rows, self.dtype),
                                None, dW, None, None, h, w, oh, ow, kh, kw, sh, sw, dh, dw,
                                pt, pl, _codes.ACT_LINEAR, False)
            self._weight_grad(op, 0, dW)

    def _ln_params(self, op):
        layer = op.layer
        return tuple(p.value.reshape(-1) if p is not None else None
                     for p in (layer.gamma, layer.beta))

    def _ln_forward(self, i, op, x):
        d = int(op.kwargs["width"])
        X = x.reshape(-1, d)
        Y = np.empty_like(X)
        mean, inv = np.empty(len(X), self.dtype), np.empty(len(X), self.dtype)
        gamma, beta = self._ln_params(op)
        ref.layernorm_forward(X, gamma, beta, op.epsilon, Y, mean, inv)
        self._stats[i] = (mean, inv)
        return Y

    def _ln_backward(self, i, op, x, G) -> None:
        layer = op.layer
        d = int(op.kwargs["width"])
        X, dY = x.reshape(-1, d), G.reshape(-1, d)
        gamma, _ = self._ln_params(op)
        mean, inv = self._stats[i]
        dX = np.empty_like(X) if op.want_dx[0] else None
        dgamma, dbeta = np.empty(d, self.dtype), np.empty(d, self.dtype)
        ref.layernorm_backward(X, dY, gamma, mean, inv, dX, dgamma, dbeta, False)
        for k, w in enumerate(op.weights):
            self._weight_grad(op, k, dgamma if w is layer.gamma else dbeta)
        if dX is not None:
            self._put_grad(op.inputs[0], dX, op.acc_dx[0])

    def _image_backward(self, op, G) -> None:
        """PAD2D/UPSAMPLE2D: the input gradient (nothing else trains through them)."""
        if not op.want_dx[0]:
            return
        geom = op.kwargs["geom"]
        h, w, c = geom[:3]
        dX = np.empty((self.n, h, w, c), self.dtype)
        if op.kind == OpKind.PAD2D:
            H, W, top, left = geom[3:]
            ref.pad2d_backward(G.reshape(self.n, H, W, c), dX, top, left)
        else:
            sh, sw = geom[3:]
            ref.upsample2d_backward(G.reshape(self.n, h * sh, w * sw, c), dX, sh, sw)
        self._put_grad(op.inputs[0], dX, op.acc_dx[0])

    def _emb_ops_forward(self, i, op, x):
        """EMBEDDING, GROUPNORM and PRELU forward with the kernel twins."""
        if op.kind == OpKind.EMBEDDING:
            W = op.weights[0].value
            rows = ref.embedding_rows(x, W.shape[0]).reshape(-1)
            Y = np.empty((rows.size, W.shape[1]), self.dtype)
            ref.embedding_forward(rows, W, Y)
            return Y
        if op.kind == OpKind.GROUPNORM:
            layer = op.layer
            G = int(op.kwargs["groups"])
            X = x.reshape(self.n, -1, x.shape[-1])
            Y = np.empty_like(X)
            mean, inv = np.empty(self.n * G, self.dtype), np.empty(self.n * G, self.dtype)
            ref.groupnorm_forward(X, G, *self._gn_params(op), op.epsilon, Y, mean, inv)
            self._stats[i] = (mean, inv)
            return Y
        Y = np.empty_like(x)
        ref.prelu_forward(x, op.weights[0].value, Y)
        return Y

    def _gn_params(self, op):
        layer = op.layer
        return tuple(p.value if p is not None else None for p in (layer.gamma, layer.beta))

    def _emb_ops_backward(self, i, op, x, G) -> None:
        dX = None
        if op.kind == OpKind.EMBEDDING:
            W = op.weights[0].value
            rows = ref.embedding_rows(x, W.shape[0]).reshape(-1)
            dW = np.zeros(W.shape, self.dtype)
            ref.embedding_backward(rows, G.reshape(-1, W.shape[1]), dW)
            self._weight_grad(op, 0, dW)
            if op.want_dx[0]:
                dX = np.zeros(x.shape, self.dtype)   # ids have no gradient
        elif op.kind == OpKind.GROUPNORM:
            layer = op.layer
            c = x.shape[-1]
            X, dY = x.reshape(self.n, -1, c), G.reshape(self.n, -1, c)
            gamma, _ = self._gn_params(op)
            mean, inv = self._stats[i]
            dX = np.empty_like(X) if op.want_dx[0] else None
            dgamma, dbeta = np.empty(c, self.dtype), np.empty(c, self.dtype)
            ref.groupnorm_backward(X, dY, int(op.kwargs["groups"]), gamma, mean, inv, dX,
                                   dgamma, dbeta)
            for k, w in enumerate(op.weights):
                self._weight_grad(op, k, dgamma if w is layer.gamma else dbeta)
        else:
            alpha = op.weights[0].value
            dX = np.empty_like(x) if op.want_dx[0] else None
            dalpha = np.empty(alpha.shape, self.dtype)
            ref.prelu_backward_shared(x, alpha, G, dX, dalpha)
            self._weight_grad(op, 0, dalpha)
        if dX is not None:
            self._put_grad(op.inputs[0], dX, op.acc_dx[0])

    def _bn_params(self, op):
        layer = op.layer
        gamma = layer.gamma.value if layer.gamma is not None else None
        beta = layer.beta.value if layer.beta is not None else None
        return gamma, beta

    def _bn_forward(self, i, op, x, out_shape):
        c = _last_dim(out_shape)
        X = x.reshape(-1, c)
        Y = np.empty_like(X)
        gamma, beta = self._bn_params(op)
        layer = op.layer
        if op.batch_stats:
            stats = tuple(np.empty(c, self.dtype) for _ in range(3))
            ref.batchnorm_forward_train(X, gamma, beta, op.epsilon, Y, *stats)
            self._stats[i] = stats
        else:
            ref.batchnorm_forward_infer(X, gamma, beta, layer.moving_mean.value,
                                        layer.moving_variance.value, op.epsilon, Y)
        return Y

    def _callback_forward(self, i, op) -> None:
        layer = op.layer
        xs = [self._val(s) for s in op.inputs]
        x = xs if op.list_input else xs[0]
        if op.backward:
            if type(layer).forward is _base_forward():
                raise NotImplementedError(f"Layer {layer.name!r} defines call() but no forward()")
            targs = {"training": op.training} if layer._takes_training("forward") else {}
            y, self._bp[i] = layer.forward(x, **targs, **op.kwargs)
        else:
            y = _call_inference(layer, x, op.training, op.kwargs)
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        if len(ys) != len(op.outputs):
            raise ValueError(f"Layer {layer.name!r} returned {len(ys)} outputs, expected "
                             f"{len(op.outputs)}")
        for s, v in zip(op.outputs, ys):
            v = np.asarray(v)
            if v.shape != self._shape(s):
                raise ValueError(f"Layer {layer.name!r} returned an output of shape {v.shape}, "
                                 f"expected {self._shape(s)}")
            self.values[s] = np.ascontiguousarray(v, self.dtype)

    # ------------------------------------------------------------ losses
    def losses(self, backward: bool) -> float:
        """Each loss term's value (mean over the batch, as Keras) and weighted gradient."""
        total = 0.0
        written = set()
        for j, term in enumerate(self.program.losses):
            y, sw = self._targets[j]
            pred = self._val(term.slot)
            g_dst = self._grad(term.slot) if backward else None
            want = g_dst is not None
            if term.kind == _codes.LOSS_CALLBACK:
                if sw is not None:
                    raise ValueError(f"{term.loss.name}: sample weights need a built-in loss")
                value, g = term.loss.loss_and_grad(y, pred, want_grad=want)
                g = None if g is None else np.asarray(g) * term.weight
            else:
                value, g = _builtin_loss(term, pred, y, sw, want)
            if want:
                root = self._root(term.slot)
                self._put_grad(term.slot, g, root in written)
                written.add(root)
            self.loss_values[j] = float(value)
            total += term.weight * float(value)
        return total

    # ------------------------------------------------------------ backward
    def backward(self, hyper: Optional[np.ndarray] = None) -> None:
        """Ops in reverse order, those the program marks ``backward`` only."""
        lr = float(hyper[_codes.H_LR]) if hyper is not None else 0.0
        for i in range(len(self.program.ops) - 1, -1, -1):
            op = self.program.ops[i]
            if not op.backward:
                continue
            if op.kind == OpKind.CALLBACK:
                self._callback_backward(i, op)
                continue
            G = self._grad(op.outputs[0])
            x = self._val(op.inputs[0])
            if op.kind == OpKind.DENSE:
                self._dense_backward(op, x, G, lr)
            elif op.kind == OpKind.ACTIVATION:
                if op.want_dx[0]:
                    c = _last_dim(self.program.slots[op.outputs[0]].shape)
                    Y = self._val(op.outputs[0]).reshape(-1, c)
                    dX = np.empty_like(Y)
                    # gelu/silu/mish read their input (the pre-activation), the rest Y.
                    ref.activation_backward(Y, G.reshape(-1, c), dX, op.act, Z=x.reshape(-1, c))
                    self._put_grad(op.inputs[0], dX, op.acc_dx[0])
            elif op.kind == OpKind.DROPOUT:
                if op.want_dx[0]:
                    dX = np.empty_like(G)
                    ref.dropout_backward(G, self._masks[i], _rate(op), dX)
                    self._put_grad(op.inputs[0], dX, op.acc_dx[0])
            elif op.kind == OpKind.BATCHNORM:
                self._bn_backward(i, op, x, G)
            elif op.kind == OpKind.CONCAT:
                off = 0
                ax = op.axis + 1
                for s, want, acc in zip(op.inputs, op.want_dx, op.acc_dx):
                    width = self._shape(s)[ax]
                    if want:
                        idx = [slice(None)] * G.ndim
                        idx[ax] = slice(off, off + width)
                        self._put_grad(s, G[tuple(idx)], acc)
                    off += width
            elif op.kind == OpKind.TRANSPOSE:
                if op.want_dx[0]:
                    t1, t2 = op.kwargs["dims"]
                    dX = G.reshape(-1, t2, t1).transpose(0, 2, 1)
                    self._put_grad(op.inputs[0], dX, op.acc_dx[0])
            elif op.kind == OpKind.MERGE:
                xs = [self._val(s) for s in op.inputs]
                for k, (s, want, acc) in enumerate(zip(op.inputs, op.want_dx, op.acc_dx)):
                    if want:
                        self._put_grad(s, _merge_grad(op.act, xs, k, G), acc)
            elif op.kind == OpKind.CONV:
                self._conv_backward(op, x, G)
            elif op.kind == OpKind.POOL:
                self._pool_backward(i, op, G)
            elif op.kind == OpKind.DEPTHWISE:
                self._dw_backward(op, x, G)
            elif op.kind == OpKind.CONV_TRANSPOSE:
                self._convt_backward(op, x, G)
            elif op.kind == OpKind.LAYERNORM:
                self._ln_backward(i, op, x, G)
            elif op.kind in (OpKind.PAD2D, OpKind.UPSAMPLE2D):
                self._image_backward(op, G)
            elif op.kind in (OpKind.EMBEDDING, OpKind.GROUPNORM, OpKind.PRELU):
                self._emb_ops_backward(i, op, x, G)

    def _weight_grad(self, op, k: int, value) -> None:
        """Weight ``k`` of ``op``'s gradient into its one buffer (R8: add if acc_grad)."""
        if not op.train[k]:
            return
        buf = self.grads[self._gindex[id(op.weights[k])]]
        value = np.asarray(value).reshape(buf.shape)
        if op.acc_grad[k]:
            buf += value.astype(self.dtype)
        else:
            buf[...] = value

    def _dense_backward(self, op, x, G, lr: float) -> None:
        W = op.weights[0].value
        d_in, d_out = W.shape
        Y = self._val(op.outputs[0]).reshape(-1, d_out)
        G = G.reshape(-1, d_out)
        X = x.reshape(-1, d_in)
        dZ = np.empty_like(G)
        ref.activation_backward(Y, G, dZ, op.act)
        if op.want_dx[0]:
            self._put_grad(op.inputs[0], dZ @ W.T, op.acc_dx[0])
        has_b = len(op.weights) > 1
        fused = op.fused_sgd
        if fused and fused[0]:
            W += self.dtype.type(-lr) * (X.T @ dZ)
        elif op.train[0]:
            self._weight_grad(op, 0, X.T @ dZ)
        if has_b:
            col = dZ.sum(axis=0, dtype=np.float64)
            if fused[1]:
                b = op.weights[1].value
                b += (-lr * col).astype(self.dtype)
            elif op.train[1]:
                self._weight_grad(op, 1, col.astype(self.dtype))

    def _bn_backward(self, i, op, x, G) -> None:
        layer = op.layer
        c = _last_dim(self.program.slots[op.outputs[0]].shape)
        X, dY = x.reshape(-1, c), G.reshape(-1, c)
        gamma, _ = self._bn_params(op)
        dX = np.empty_like(X) if op.want_dx[0] else None
        # Parameter gradients into fresh arrays; the program's flags place them.
        dgamma, dbeta = np.empty(c, self.dtype), np.empty(c, self.dtype)
        if op.batch_stats:
            mean, _, inv = self._stats[i]
            ref.batchnorm_backward_train(X, dY, gamma, mean, inv, dX, dgamma, dbeta, False)
        else:
            ref.batchnorm_backward_infer(X, dY, gamma, layer.moving_mean.value,
                                         layer.moving_variance.value, op.epsilon, dX, dgamma,
                                         dbeta, False)
        for k, w in enumerate(op.weights):
            self._weight_grad(op, k, dgamma if w is layer.gamma else dbeta)
        if dX is not None:
            self._put_grad(op.inputs[0], dX, op.acc_dx[0])

    def _callback_backward(self, i, op) -> None:
        layer = op.layer
        bp, self._bp[i] = self._bp[i], None
        gs = [self._grad(s) for s in op.outputs]
        res = bp(gs[0] if len(gs) == 1 else gs)
        own = list(layer.weights)
        if isinstance(res, tuple) and len(res) == 2 and (own or isinstance(res[1], (list, tuple))):
            dx, dws = res
        else:
            dx, dws = res, []
        dws = list(dws or [])
        if not dws and any(op.train):
            raise ValueError(f"Layer {layer.name!r}: backprop returned no weight gradients")
        for k, g in enumerate(dws):
            if k < len(op.weights) and op.train[k]:
                self._weight_grad(op, k, np.zeros(op.weights[k].shape) if g is None else g)
        dxs = list(dx) if op.list_input else [dx]
        for s, d, want, acc in zip(op.inputs, dxs, op.want_dx, op.acc_dx):
            if want:
                self._put_grad(s, np.zeros(self._shape(s)) if d is None else d, acc)

    # ------------------------------------------------------------ gradients, update, commit
    def gradients_ready(self, hyper: np.ndarray, gradient_hook=None) -> None:
        """Every gradient summed, no weight moved: the hook, then global-norm clipping."""
        unfused = [g for g, f in zip(self.grads, self.program.fused) if not f]
        if gradient_hook is not None:
            gradient_hook(unfused)
        if getattr(self.optimizer, "global_clipnorm", None) is not None:
            sq = sum(float((g.astype(np.float64) ** 2).sum()) for g in unfused)
            hyper[_codes.H_GSCALE] = self.optimizer.global_norm_scale(sq)

    def update(self, hyper: np.ndarray) -> None:
        """The optimizer's update of every trained weight not already updated in backward."""
        kind = self.optimizer.kind
        for w, g, fused in zip(self.program.weights, self.grads, self.program.fused):
            if not fused:
                _update(kind, hyper, w.value, g, self.optimizer.slots_for(w))

    def commit(self) -> None:
        """Dropout counters advance by the batch's size; moving statistics where updated."""
        for i, op in enumerate(self.program.ops):
            if op.kind == OpKind.DROPOUT:
                op.counter[0] += np.uint64(self.rows[1] * self.program.slots[op.inputs[0]].size)
            elif op.kind == OpKind.BATCHNORM and op.batch_stats and op.update_stats:
                mean, var, _ = self._stats[i]
                c = _last_dim(self.program.slots[op.outputs[0]].shape)
                rows = self.n * self.program.slots[op.outputs[0]].size // c
                # The unbiased batch variance (n / (n - 1)); a batch of one row stays biased.
                unbias = rows / (rows - 1) if rows > 1 else 1.0
                layer = op.layer
                ref.batchnorm_update_moving(layer.moving_mean.value, layer.moving_variance.value,
                                            mean, var.astype(np.float64) * unbias, op.momentum)


def _builtin_loss(term, pred, y, sw, want_grad: bool) -> Tuple[float, Optional[np.ndarray]]:
    """A built-in loss term: (unweighted mean value, gradient times the loss weight).

    Per-sample weights multiply each sample's loss and gradient; the mean still
    divides by the batch size (Keras's ``sum_over_batch_size``).
    """
    dt = pred.dtype
    n = pred.shape[0]
    k = _last_dim(pred.shape[1:])
    w = term.weight
    swv = np.ones(n) if sw is None else np.asarray(sw, np.float64)
    if term.kind in (_codes.LOSS_MSE, _codes.LOSS_MAE, _codes.LOSS_BCE):
        P, T = pred.reshape(n, -1), np.asarray(y).reshape(n, -1)
        G = np.empty_like(P) if want_grad else None
        if term.kind == _codes.LOSS_MSE:
            per = (P.astype(np.float64) - T) ** 2
            ref.mse(P, T, G)
        elif term.kind == _codes.LOSS_MAE:
            per = np.abs(P.astype(np.float64) - T)
            ref.mae(P, T, G)
        else:
            if term.from_logits:
                z, t = P.astype(np.float64), T.astype(np.float64)
                per = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
            else:
                lo, hi = dt.type(_codes.EPSILON), dt.type(1) - dt.type(_codes.EPSILON)
                c, t = np.clip(P, lo, hi).astype(np.float64), T.astype(np.float64)
                per = -(t * np.log(c) + (1 - t) * np.log(1 - c))
            ref.binary_crossentropy(P, T, G, term.from_logits)
        value = float((swv[:, None] * per).sum() / per.size) if per.size else float("nan")
    else:
        rows = pred.size // k
        Z = pred.reshape(rows, k)
        if term.kind == _codes.LOSS_SPARSE_CE:
            Y = np.zeros((rows, k))
            Y[np.arange(rows), np.asarray(y).reshape(-1)] = 1.0
        else:
            Y = np.asarray(y).reshape(rows, k).astype(np.float64)
        G = np.empty(Z.shape, np.float64) if want_grad else None
        rsw = np.repeat(swv, rows // n) if n else swv
        per = _ce_rows(Z, Y, term.from_logits)
        ref.softmax_crossentropy(Z, Y, G, term.from_logits)
        value = float((rsw * per).sum() / rows) if rows else float("nan")
        if G is not None:
            G = (G * rsw[:, None]).astype(dt)
            G = G.reshape(pred.shape)
    if G is None:
        return value, None
    if term.kind != _codes.LOSS_CE and term.kind != _codes.LOSS_SPARSE_CE:
        G = (G.astype(np.float64) * swv.reshape((n,) + (1,) * (G.ndim - 1))).astype(dt)
    return value, (G.astype(np.float64) * w).astype(dt).reshape(pred.shape)


def _ce_rows(Z, Y, from_logits: bool) -> np.ndarray:
    """Per-row categorical cross-entropy (the value ``softmax_crossentropy`` averages)."""
    z = Z.astype(np.float64)
    if from_logits:
        m = z.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
        return lse * Y.sum(axis=1) - (Y * z).sum(axis=1)
    dt = Z.dtype.type
    lo, hi = dt(_codes.EPSILON), dt(1) - dt(_codes.EPSILON)
    s = Z.sum(axis=1, keepdims=True, dtype=np.float64).astype(Z.dtype)
    r = np.clip(Z / s, lo, hi)
    return -(Y * np.log(r.astype(np.float64))).sum(axis=1)
