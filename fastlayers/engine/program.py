"""Lowering: a model becomes a step program, decided once.

A :class:`StepProgram` is the whole step written down as data: ops in dependency
order over numbered buffer slots, nested containers inlined.  Every decision the
rules make is taken here, once, and recorded on the ops:

* R3/R4 -- ``Op.train[i]``: weight ``i`` of the op is in the compiled set.
* R5 -- ``Op.training``: the op's mode (pinned at construction, else the value of
  the enclosing call, else the program's).
* R6 -- a Dropout op exists only where it drops; elsewhere its output slot *is* its
  input slot (no op, no copy).
* R7 -- ``Op.batch_stats``: a BatchNormalization normalizes with batch statistics
  only in training mode and when not frozen along its path (the compiled picture);
  ``Op.update_stats``: only training programs update moving statistics.
* R8 -- a weight used by several ops has one gradient buffer; ``Op.acc_grad[i]``
  says whether this use adds into it (an earlier use in backward order wrote it).
* R9 -- ``Op.want_dx[i]``: input ``i`` needs a gradient (something upstream trains);
  ``Op.backward``: the op runs in the backward pass at all.

One rewrite follows from R9: a 2x2/2 pooling of a convolution that has no backward
pass becomes part of that convolution (``Op.pool``), so its output is never written
(:func:`_fuse_pooling`).

The compiled executor (:mod:`fastlayers.engine.executor`) and the NumPy twin
(:mod:`fastlayers.engine.reference`) both run programs and decide nothing.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _codes
from .paths import Picture, walk


class OpKind(enum.IntEnum):
    """Op kinds; the values are ``_codes.OP_*`` (the executor's switch)."""

    DENSE = _codes.OP_DENSE
    ACTIVATION = _codes.OP_ACTIVATION
    DROPOUT = _codes.OP_DROPOUT
    BATCHNORM = _codes.OP_BATCHNORM
    CONCAT = _codes.OP_CONCAT
    MERGE = _codes.OP_MERGE
    CALLBACK = _codes.OP_CALLBACK
    TRANSPOSE = _codes.OP_TRANSPOSE
    CONV = _codes.OP_CONV
    POOL = _codes.OP_POOL
    DEPTHWISE = _codes.OP_DEPTHWISE
    CONV_TRANSPOSE = _codes.OP_CONV_TRANSPOSE
    LAYERNORM = _codes.OP_LAYERNORM
    PAD2D = _codes.OP_PAD2D
    UPSAMPLE2D = _codes.OP_UPSAMPLE2D
    EMBEDDING = _codes.OP_EMBEDDING
    GROUPNORM = _codes.OP_GROUPNORM
    PRELU = _codes.OP_PRELU


@dataclass
class Slot:
    """A buffer of the program: ``(batch,) + shape`` values of ``dtype``."""

    index: int
    shape: Tuple[int, ...]
    dtype: np.dtype
    alias_of: Optional[int] = None  # a view of that slot's buffers with another shape

    @property
    def size(self) -> int:
        """Values per sample."""
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass
class Op:
    """One op of a program (see the module docstring for what each flag decides)."""

    kind: OpKind
    layer: object
    path: str
    inputs: Tuple[int, ...]
    outputs: Tuple[int, ...]
    training: bool
    weights: Tuple[object, ...] = ()
    train: Tuple[bool, ...] = ()
    acc_grad: Tuple[bool, ...] = ()
    want_dx: Tuple[bool, ...] = ()
    acc_dx: Tuple[bool, ...] = ()
    backward: bool = False
    # kind-specific settings
    act: int = _codes.ACT_LINEAR
    rate: float = 0.0
    seed: int = 0
    counter: Optional[np.ndarray] = None
    batch_stats: bool = False
    update_stats: bool = False
    epsilon: float = 0.0
    momentum: float = 0.0
    axis: int = -1
    fused_sgd: Tuple[bool, ...] = ()
    kwargs: dict = field(default_factory=dict)
    list_input: bool = False
    # CONV: a fused 2x2 pooling with stride 2 ("valid") of its output, _codes.POOL_MAX
    # or POOL_AVERAGE; -1: none.  The op's output slot is then the pooled one.
    pool: int = -1

    def describe(self) -> dict:
        """The op's decisions as plain data (what tests and users inspect)."""
        return {"kind": self.kind.name.lower(), "layer": self.path, "inputs": self.inputs,
                "outputs": self.outputs, "training": self.training,
                "weights": [w.name for w in self.weights], "train": list(self.train),
                "want_dx": list(self.want_dx), "backward": self.backward,
                "batch_stats": self.batch_stats, "update_stats": self.update_stats,
                "pool": self.pool}


@dataclass
class LossTerm:
    """A loss on an output slot, weighted by ``weight`` in the total (``loss_weights``)."""

    kind: int
    slot: int
    output: int
    weight: float
    from_logits: bool
    loss: object


@dataclass
class StepProgram:
    """A lowered model: slots, ops in order, losses and the trained weights.

    ``inputs``/``outputs`` are slot indices of the model's inputs and outputs;
    ``weights`` are the trained weights in the compiled set's order, each with one
    gradient buffer (``grad_index``); ``fused`` marks those plain SGD updates in
    the backward pass (one use, nothing between gradients and updates).
    """

    slots: List[Slot]
    ops: List[Op]
    inputs: List[int]
    outputs: List[int]
    losses: List[LossTerm]
    weights: List[object]
    backprop: bool
    dtype: np.dtype
    fused: List[bool] = field(default_factory=list)
    vjp: bool = False

    def grad_index(self, weight) -> int:
        for i, w in enumerate(self.weights):
            if w is weight:
                return i
        raise KeyError(weight.path)

    def describe(self) -> List[dict]:
        return [op.describe() for op in self.ops]

    @property
    def regularized(self) -> bool:
        """Some trained weight has a regularizer or a constraint (worked in Python)."""
        return any(w.regularizer is not None or w.constraint is not None for w in self.weights)

    @property
    def has_callbacks(self) -> bool:
        return any(op.kind == OpKind.CALLBACK for op in self.ops)


# ---------------------------------------------------------------- lowering
class _Lowering:
    def __init__(self, model, training: bool, frozen: Dict[tuple, bool], train_ids,
                 updates_state: bool):
        self.model = model
        self.training = training
        self.frozen = frozen
        self.train_ids = train_ids
        self.updates_state = updates_state
        self.slots: List[Slot] = []
        self.ops: List[Op] = []
        self.value: Dict[int, int] = {}   # id(SymbolicTensor) -> slot
        self.dtype = None
        self.input_slots: frozenset = frozenset()

    def root(self, s: int) -> int:
        a = self.slots[s].alias_of
        return s if a is None else a

    def new_slot(self, shape, dtype, alias_of: Optional[int] = None) -> int:
        if any(d is None for d in shape):
            raise ValueError(f"Model {self.model.name!r}: a tensor has an unknown dimension "
                             f"{tuple(shape)}; give every Input a full shape")
        shape = tuple(int(s) for s in shape)
        if any(s == 0 for s in shape):
            raise ValueError(f"Model {self.model.name!r}: a tensor of shape {(None,) + shape} "
                             f"has a zero-sized dimension; every dimension must be >= 1")
        if any(s < 0 for s in shape):
            raise ValueError(f"Model {self.model.name!r}: a tensor has an unknown dimension "
                             f"{shape}; give every Input a full shape")
        if alias_of is not None:
            alias_of = self.root(alias_of)
            if shape == self.slots[alias_of].shape:
                return alias_of
        self.slots.append(Slot(len(self.slots), shape, np.dtype(dtype), alias_of))
        return len(self.slots) - 1

    def container(self, c, in_slots: Sequence[int], mode: bool, path: tuple) -> List[int]:
        from .container import Container
        from .layer import InputLayer

        path = path + (c,)
        for t, s in zip(c.inputs, in_slots):
            self.value[id(t)] = s
        for node in c._nodes:
            layer = node.layer
            ins = [self.value[id(t)] for t in node.inputs]
            t_mode = node.training if node.training is not None else mode
            if isinstance(layer, Container):
                outs = self.container(layer, ins, t_mode, path)
            elif isinstance(layer, InputLayer):
                outs = ins
            else:
                outs = self.layer(layer, node, ins, t_mode, path)
            for t, s in zip(node.outputs, outs):
                self.value[id(t)] = s
        return [self.value[id(t)] for t in c.outputs]

    def layer(self, layer, node, ins, mode, path) -> List[int]:
        name = "/".join(p.name for p in path) + "/" + layer.name
        key = tuple(id(p) for p in path) + (id(layer),)
        shapes = [tuple(t.shape[1:]) for t in node.outputs]
        lower = getattr(layer, "_lower", None)
        ctx = LayerContext(self, layer, node, list(ins), mode, name, key, shapes)
        if lower is not None:
            res = lower(ctx)
            if res is not NotImplemented:
                return res
        return ctx.callback()

    def weight_flags(self, weights):
        return tuple(id(w) in self.train_ids for w in weights)


class LayerContext:
    """What a layer's ``_lower(ctx)`` sees: its inputs' slots, its mode, its flags.

    A built-in layer turns itself into an op with :meth:`emit` (or returns input
    slots unchanged with :meth:`alias`); anything else becomes a callback op that
    runs the layer's own ``forward``/``backprop`` at its place in the program.
    """

    def __init__(self, low: _Lowering, layer, node, ins, mode, path, key, out_shapes):
        self._low = low
        self.layer = layer
        self.node = node
        self.inputs = ins
        self.training = bool(mode)
        self.path = path
        self.key = key
        self.out_shapes = out_shapes
        self.updates_state = low.updates_state

    def slot(self, i: int) -> Slot:
        return self._low.slots[self.inputs[i]]

    @property
    def frozen(self) -> bool:
        """R7: this layer is frozen along this path (in the compiled picture)."""
        return self._low.frozen.get(self.key, not self.layer.trainable)

    def alias(self) -> List[int]:
        """The layer's output is its input (identity in this program; maybe reshaped)."""
        src = self.inputs[0]
        return [self._low.new_slot(self.out_shapes[0], self._low.slots[src].dtype, alias_of=src)]

    def emit(self, kind: OpKind, weights: Sequence = (), **settings) -> List[int]:
        dtype = self.layer.dtype
        outs = tuple(self._low.new_slot(s, dtype) for s in self.out_shapes)
        weights = tuple(weights)
        kwargs = dict(self.node.kwargs)
        kwargs.update(settings.pop("kwargs", {}))
        op = Op(kind, self.layer, self.path, tuple(self.inputs), outs, self.training,
                weights=weights, train=self._low.weight_flags(weights),
                kwargs=kwargs, list_input=self.node.list_input, **settings)
        self._low.ops.append(op)
        return list(outs)

    def then(self, kind: OpKind, slot: int, layer=None, **settings) -> List[int]:
        """A weightless op of this layer (or of a helper ``layer`` it owns) on ``slot``,
        one of its own outputs, with the same shape."""
        low = self._low
        out = low.new_slot(low.slots[slot].shape, self.layer.dtype)
        low.ops.append(Op(kind, layer or self.layer, self.path, (slot,), (out,),
                          self.training, **settings))
        return [out]

    def emit_shaped(self, kind: OpKind, inputs: Sequence[int], shape, weights: Sequence = (),
                    **settings) -> List[int]:
        """An op of this layer from slots ``inputs`` to one new slot of per-sample
        ``shape``: a step of a layer lowered as several ops (the last uses :meth:`emit`
        or :meth:`then`, whose outputs have the layer's shapes)."""
        low = self._low
        out = low.new_slot(shape, self.layer.dtype)
        weights = tuple(weights)
        low.ops.append(Op(kind, self.layer, self.path, tuple(inputs), (out,), self.training,
                          weights=weights, train=low.weight_flags(weights), **settings))
        return [out]

    def emit_moved(self, kind: OpKind, weights: Sequence, axis: int, **settings) -> List[int]:
        """An op over the last axis applied to ``axis`` (1-based, the batch axis is 0).

        Lowered as a transpose moving ``axis`` last, the op, and the transpose back.
        """
        low = self._low
        shape = self.slot(0).shape
        a = axis - 1
        outer = int(np.prod(shape[:a])) if a else 1
        c, inner = shape[a], int(np.prod(shape[a + 1:])) if a + 1 < len(shape) else 1
        moved = shape[:a] + shape[a + 1:] + (c,)
        dtype = self.layer.dtype
        s1 = low.new_slot(moved, dtype)
        low.ops.append(Op(OpKind.TRANSPOSE, self.layer, self.path, (self.inputs[0],), (s1,),
                          self.training, axis=outer, kwargs={"dims": (c, inner)}))
        s2 = low.new_slot(moved, dtype)
        op = Op(kind, self.layer, self.path, (s1,), (s2,), self.training, weights=tuple(weights),
                train=low.weight_flags(weights), **settings)
        low.ops.append(op)
        s3 = low.new_slot(shape, dtype)
        low.ops.append(Op(OpKind.TRANSPOSE, self.layer, self.path, (s2,), (s3,), self.training,
                          axis=outer, kwargs={"dims": (inner, c)}))
        return [s3]

    def callback(self) -> List[int]:
        return self.emit(OpKind.CALLBACK, self.layer.weights)

    def from_input(self, i: int = 0) -> bool:
        """Input ``i``'s slot is (a view of) one of the program's inputs: its values are
        the caller's arrays, there before any op runs (an Embedding's ids are checked
        then)."""
        return self._low.root(self.inputs[i]) in self._low.input_slots

    def tile(self, times: int) -> List[int]:
        """Input 0 repeated ``times`` along a new axis 1: one CONCAT op of the same slot
        ``times`` times (its backward adds the copies' gradients), viewed as
        ``(times,) + shape``."""
        low = self._low
        src = self.inputs[0]
        shape = low.slots[src].shape
        flat = low.new_slot((times * int(np.prod(shape)),), self.layer.dtype)
        low.ops.append(Op(OpKind.CONCAT, self.layer, self.path, (src,) * times, (flat,),
                          self.training, axis=0))
        return [low.new_slot((times,) + tuple(shape), self.layer.dtype, alias_of=flat)]


def _resolve_gradients(prog_ops: List[Op], slots: List[Slot], loss_slots: Sequence[int],
                       backprop: bool, grad_inputs: Sequence[int] = ()) -> None:
    """R9 and R8: which ops run backward, which inputs need gradients, who accumulates.

    Slots that alias another (a reshape) share its buffers, so they are analysed as
    their root slot.
    """
    def root(s):
        a = slots[s].alias_of
        return s if a is None else a

    n = len(slots)
    trains_up = [False] * n   # the slot's value depends on a trained weight
    for s in grad_inputs:
        trains_up[root(s)] = True
    for op in prog_ops:
        up = any(op.train) or any(trains_up[root(s)] for s in op.inputs)
        for s in op.outputs:
            trains_up[root(s)] = up
    has_grad = [False] * n    # some consumer (or a loss) writes this slot's gradient
    for s in loss_slots:
        has_grad[root(s)] = backprop
    written = [False] * n
    for s in loss_slots:
        written[root(s)] = backprop
    grad_written: Dict[int, bool] = {}
    for op in reversed(prog_ops):
        gets = backprop and any(has_grad[root(s)] for s in op.outputs)
        want = tuple(gets and trains_up[root(s)] for s in op.inputs)
        trains = gets and any(op.train)
        op.backward = trains or any(want)
        op.train = tuple(t and gets for t in op.train)
        op.want_dx = want if op.backward else tuple(False for _ in op.inputs)
        acc = []
        seen_here = set()
        for s, w in zip(op.inputs, op.want_dx):
            # The same slot twice as inputs (x + x): the second adds too.
            acc.append(bool(w and (written[root(s)] or root(s) in seen_here)))
            if w:
                seen_here.add(root(s))
        for s, w in zip(op.inputs, op.want_dx):
            if w:
                written[root(s)] = True
                has_grad[root(s)] = True
        op.acc_dx = tuple(acc)
        ag = []
        for w, t in zip(op.weights, op.train):
            ag.append(bool(t and grad_written.get(id(w), False)))
            if t:
                grad_written[id(w)] = True
        op.acc_grad = tuple(ag)


def _fuse_pooling(ops: List[Op], slots: List[Slot], kept: set) -> List[Op]:
    """Fold each 2x2 pooling with stride 2 ("valid") into the convolution it reads.

    Only where neither runs backward (R9: nothing below them trains, or no
    training at all) and the convolution's output is read by the pooling alone --
    not a model output, a loss's slot, another op's input or a view.  The
    convolution then writes the pooled slot, each pooled value taken from its four
    outputs while they are in cache (csrc/_conv_infer.pxd).
    """
    readers: Dict[int, int] = {}
    for op in ops:
        for s in op.inputs:
            readers[s] = readers.get(s, 0) + 1
    viewed = {s.alias_of for s in slots if s.alias_of is not None}
    producer = {op.outputs[0]: op for op in ops if op.kind == OpKind.CONV}
    fused: Dict[int, Op] = {}
    out: List[Op] = []
    for op in ops:
        conv = producer.get(op.inputs[0]) if op.kind == OpKind.POOL else None
        if conv is not None and not op.backward and not conv.backward:
            h, w, c, oh, ow, ph, pw, sh, sw, pt, pl = op.kwargs["geom"]
            src = op.inputs[0]
            if ((ph, pw, sh, sw, pt, pl) == (2, 2, 2, 2, 0, 0) and (oh, ow) == (h // 2, w // 2)
                    and readers.get(src) == 1 and src not in kept and src not in viewed
                    and conv.pool < 0):
                fused[id(conv)] = replace(conv, outputs=op.outputs, pool=int(op.act))
                continue
        out.append(op)
    return [fused.get(id(op), op) for op in out]


def lower(model, *, training: bool, picture: Optional[Picture] = None, backprop: bool = False,
          updates_state: Optional[bool] = None, losses: Sequence = (),
          loss_weights: Sequence[float] = (), fuse_sgd: bool = False,
          vjp: bool = False) -> StepProgram:
    """Lower ``model`` (a Container) into a step program.

    ``training`` is the mode of the outermost call (R5).  ``picture`` is the R4
    snapshot a compiled model trains with; without one the live flags decide (eager
    calls).  ``backprop`` makes a training program: gradients for the picture's
    weights.  ``updates_state`` (default: ``backprop``, or eager training calls)
    lets batch norm update its moving statistics.  ``fuse_sgd`` allows plain SGD to
    update single-use weights inside the backward pass.  ``vjp`` makes a program for
    the public ``forward``/``backprop`` contract: gradients flow from given output
    gradients to the inputs and to every weight created trainable.
    """
    if picture is None:
        uses = walk(model)
        frozen = {u.key: u.frozen for u in uses}
        train_ids = frozenset(id(w) for u in uses for w in u.layer.weights
                              if w.trainable) if vjp else frozenset()
    else:
        frozen = picture.frozen
        train_ids = picture.train_ids if backprop else frozenset()
    if updates_state is None:
        updates_state = backprop
    low = _Lowering(model, training, frozen, train_ids, updates_state)
    in_slots = [low.new_slot(t.shape[1:], t.dtype) for t in model.inputs]
    low.input_slots = frozenset(in_slots)
    out_slots = low.container(model, in_slots, training, ())
    terms: List[LossTerm] = []
    for i, (loss, w) in enumerate(zip(losses, loss_weights)):
        if loss is None:
            continue
        kind = _codes.LOSS_KINDS.get(type(loss).__name__)
        terms.append(LossTerm(_codes.LOSS_CALLBACK if kind is None else kind, out_slots[i], i,
                              float(w), bool(getattr(loss, "from_logits", False)), loss))
    seeds = list(out_slots) if vjp else [t.slot for t in terms]
    _resolve_gradients(low.ops, low.slots, seeds, backprop or vjp,
                       in_slots if vjp else ())
    low.ops = _fuse_pooling(low.ops, low.slots, set(out_slots) | {t.slot for t in terms})
    for op in low.ops:
        check = getattr(op.layer, "_check_trainable_through", None)
        if op.backward and op.kind == OpKind.CALLBACK and check is not None:
            check()
    weights: List[object] = []
    uses: Dict[int, int] = {}
    for op in low.ops:
        for w, t in zip(op.weights, op.train):
            if t:
                if id(w) not in uses:
                    weights.append(w)
                uses[id(w)] = uses.get(id(w), 0) + 1
    _check_integer_slots(model, low)
    floats = [s for s in low.slots if s.dtype.kind == "f"]
    dtypes = {s.dtype for s in floats} | {w.dtype for op in low.ops for w in op.weights}
    if len(dtypes) > 1:
        _mixed_dtype_error(model, low)
    dtype = floats[0].dtype if floats else np.dtype(model.dtype)
    no_callbacks = not any(op.kind == OpKind.CALLBACK for op in low.ops)
    fused = [fuse_sgd and no_callbacks and uses[id(w)] == 1 and w.regularizer is None
             and w.constraint is None for w in weights]
    fused_ids = {id(w) for w, f in zip(weights, fused) if f}
    for op in low.ops:
        op.fused_sgd = tuple(t and id(w) in fused_ids and op.kind == OpKind.DENSE
                             for w, t in zip(op.weights, op.train))
    # A fused weight must be one a Dense op updates; anything else takes the grads path.
    really = {id(w) for op in low.ops for w, f in zip(op.weights, op.fused_sgd) if f}
    fused = [id(w) in really for w in weights]
    return StepProgram(low.slots, low.ops, in_slots, out_slots, terms, weights, backprop or vjp,
                       dtype, fused, vjp)


def for_optimizer(program: StepProgram, optimizer) -> StepProgram:
    """``program``, or a copy with no SGD update fused into backward if ``optimizer``
    can no longer take one (momentum, Nesterov or global clipping set after compile()).

    Both executors call this, so the fused updates a step runs are decided here.
    """
    if not any(program.fused) or optimizer.fusable:
        return program
    return unfused(program)


def unfused(program: StepProgram) -> StepProgram:
    """``program`` with every update after the gradients are complete (none in backward)."""
    if not any(program.fused):
        return program
    ops = [replace(op, fused_sgd=tuple(False for _ in op.fused_sgd)) for op in program.ops]
    return replace(program, ops=ops, fused=[False] * len(program.weights))


def _check_integer_slots(model, low) -> None:
    """An integer input (ids) may feed Embedding ops, views and callbacks only."""
    for op in low.ops:
        if op.kind in (OpKind.EMBEDDING, OpKind.CALLBACK):
            continue
        for s in op.inputs:
            if low.slots[s].dtype.kind != "f":
                raise TypeError(
                    f"Model {model.name!r}: layer {op.path!r} ({type(op.layer).__name__}) "
                    f"takes the integer input ({low.slots[s].dtype}) directly; integer "
                    f"inputs are ids for Embedding layers (give the Input a float dtype "
                    f"to feed other layers)")


def _mixed_dtype_error(model, low) -> None:
    want = next(s.dtype for s in low.slots if s.dtype.kind == "f")
    for op in low.ops:
        for w in op.weights:
            if w.dtype != want:
                raise TypeError(
                    f"Model {model.name!r}: layer {op.path!r} has {w.dtype} weights but the "
                    f"model's input is {want}; build the layer under the same floatx (or give "
                    f"dtype= to Input and the layers)")
        for s in op.outputs:
            if low.slots[s].dtype != want:
                raise TypeError(f"Model {model.name!r}: layer {op.path!r} computes in "
                                f"{low.slots[s].dtype} but the model's input is {want}")
    raise TypeError(f"Model {model.name!r}: mixed dtypes in one model")
