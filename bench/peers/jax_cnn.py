"""The CNN scenarios in JAX: NHWC images and HWIO kernels (Keras's layout, used as is)
through ``lax.conv_general_dilated``, max pooling by ``lax.reduce_window``; the whole
step (forward, loss, ``value_and_grad``, optax update) in one ``jax.jit`` with the
trained parameters / optimizer state donated. Frozen layers' parameters are a separate,
non-differentiated argument, so XLA drops the backward work they do not need.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from . import jax_optim


def _forward(c):
    def apply(P, x):
        a = x
        for spec in c.layers:
            kind = spec[0]
            if kind == "conv":
                _, name, _, _, pad, act = spec
                w, b = P[name]
                a = lax.conv_general_dilated(a, w, (1, 1), pad.upper(),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
                if act == "relu":
                    a = jax.nn.relu(a)
            elif kind == "pool":
                a = lax.reduce_window(a, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            elif kind == "gap":
                a = a.mean(axis=(1, 2))
            elif kind == "flatten":
                a = a.reshape(a.shape[0], -1)
            else:
                _, name, _, act = spec
                w, b = P[name]
                a = a @ w + b
                if act == "relu":
                    a = jax.nn.relu(a)
        return a

    return apply


class CNNRunner:
    def __init__(self, sc, arrays):
        c = sc.cnn_spec
        names = [w[0][1] for w in c.weighted()]
        params = {n: (jnp.asarray(arrays[f"W_{n}"]), jnp.asarray(arrays[f"b_{n}"])) for n in names}
        self.train_p = {n: p for n, p in params.items() if n not in c.frozen}
        self.frozen_p = {n: p for n, p in params.items() if n in c.frozen}
        apply = _forward(c)
        opt = jax_optim.make(sc)

        def loss_of(tp, fp, x, y):
            return optax.softmax_cross_entropy_with_integer_labels(apply({**fp, **tp}, x), y).mean()

        def step(tp, opt_state, fp, x, y):
            loss, grads = jax.value_and_grad(loss_of)(tp, fp, x, y)
            updates, opt_state = opt.update(grads, opt_state, tp)
            return optax.apply_updates(tp, updates), opt_state, loss

        self._step = jax.jit(step, donate_argnums=(0, 1))
        self._eval = jax.jit(loss_of)
        self._fwd = jax.jit(lambda tp, fp, x: apply({**fp, **tp}, x))
        self.opt_state = opt.init(self.train_p)
        self.x = jnp.asarray(arrays["x"])
        self.y = jnp.asarray(arrays["y"].astype(np.int32))

    def eval_loss(self):
        return float(self._eval(self.train_p, self.frozen_p, self.x, self.y))

    def train_step(self):
        self.train_p, self.opt_state, loss = self._step(self.train_p, self.opt_state,
                                                        self.frozen_p, self.x, self.y)
        return float(loss)

    def train(self, k):
        tp, st = self.train_p, self.opt_state
        step, fp, x, y = self._step, self.frozen_p, self.x, self.y
        for _ in range(k):
            tp, st, _ = step(tp, st, fp, x, y)
        jax.block_until_ready(tp)
        self.train_p, self.opt_state = tp, st

    def forward(self, k):
        fwd, tp, fp, x = self._fwd, self.train_p, self.frozen_p, self.x
        out = None
        for _ in range(k):
            out = fwd(tp, fp, x)
        jax.block_until_ready(out)


def build(sc, arrays):
    return CNNRunner(sc, arrays)
