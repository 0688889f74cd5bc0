"""Embedding: integer ids -> rows of a (input_dim, output_dim) matrix."""
from __future__ import annotations

import numpy as np

from .. import _codes, constraints, initializers, ops, regularizers
from ..engine.layer import Layer
from ..engine.program import OpKind
from . import _args
from .core import add_penalties_config


class Embedding(Layer):
    """Look up ``embeddings[ids]``: (batch, ...) ids -> (batch, ..., output_dim).

    Weight: ``embeddings`` (input_dim, output_dim), initialized "uniform"
    (RandomUniform(-0.05, 0.05)) as in Keras.  Its gradient is a scatter-add of the
    output gradient into the rows that were looked up (csrc/embedding.pyx); the
    other rows get exact zeros (the custom-layer protocol passes a dense gradient).
    Ids arrive as the layer's float dtype (the engine casts inputs) and are rounded
    to the nearest integer -- Keras truncates, which differs only for ids that are
    not integers -- or as an integer model input (``Input(shape, dtype="int32")``
    or ``"int64"``); ids outside [0, input_dim) raise ValueError.  The ids get a zero
    gradient.  In a model whose ids are (a view of) a model input, the layer is one
    EMBEDDING op (csrc/_embedding.pxd), its ids checked before the step runs;
    ids computed by other layers run this ``forward`` as a callback.  ``mask_zero=True`` is not supported (it raises): no layer here
    consumes masks yet.
    """

    def __init__(self, input_dim: int, output_dim: int, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None,
                 mask_zero: bool = False, **kwargs):
        super().__init__(**kwargs)
        owner = f"Embedding {self.name!r}"
        for name, v in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{owner}: {name} must be a positive integer, got {v!r}")
        if mask_zero:
            raise ValueError(f"{owner}: mask_zero=True is not supported (no masking yet)")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.mask_zero = False
        self.embeddings_initializer = _args.initializer(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.embeddings = None

    def build(self, input_shape):
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _as_input_array(self, x, index: int = 0, dtype=None) -> np.ndarray:
        # An eager call keeps integer ids exact (a float32 cast would round ids past
        # 2**24): int32/int64 stay, other integers become int64; floats are cast.
        a = np.asarray(x)
        if a.dtype.kind in "iub" and a.dtype.name not in ("int32", "int64"):
            a = a.astype(np.int64)
        return super()._as_input_array(a, index, a.dtype if a.dtype.kind in "iu" else dtype)

    def _lower(self, ctx):
        s = ctx.slot(0)
        if not ctx.from_input(0) or s.dtype.name not in _codes.IDS_KINDS:
            return NotImplemented
        return ctx.emit(OpKind.EMBEDDING, [self.embeddings])

    def forward(self, inputs, training=False):
        x = np.asarray(inputs)
        ids = np.rint(x).astype(np.int64) if x.dtype.kind == "f" else x
        W = self.embeddings.value
        y = ops.embedding_forward(ids, W)

        def backprop(dy):
            dW = np.zeros_like(W)
            ops.embedding_backward(ids, np.asarray(dy, dtype=W.dtype), dW)
            return np.zeros(x.shape, dtype=W.dtype), [dW]

        return y, backprop

    def get_config(self):
        cfg = super().get_config()
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim,
                   embeddings_initializer=initializers.serialize(self.embeddings_initializer),
                   mask_zero=self.mask_zero)
        return add_penalties_config(cfg, embeddings_regularizer=self.embeddings_regularizer,
                                    embeddings_constraint=self.embeddings_constraint)
