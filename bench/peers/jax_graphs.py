"""The seeds' graphs in JAX: the whole step (forward, loss, ``value_and_grad``, optax update)
in one ``jax.jit``, trained parameters / optimizer state / RNG key donated.

Frozen parameters (and a frozen BatchNormalization's statistics) are a separate,
non-differentiated argument: JAX drops whatever backward work they do not need, and
still differentiates through them where a trained layer lies below (the GAN).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..graphs import BN_EPSILON
from . import jax_optim

_ACT = {"relu": jax.nn.relu, "tanh": jnp.tanh, None: lambda a: a}


def _forward(g, training):
    """apply(params, xs, key) -> list of outputs for graph ``g``."""
    act = {n: _ACT[a] for n, _, _, a in g.dense}

    def dense(P, n, a):
        w, b = P[n]
        return act[n](a @ w + b)

    def bn(P, n, a):  # inference mode: the moving statistics
        gamma, beta, mean, var = P[n]
        return (a - mean) * jax.lax.rsqrt(var + BN_EPSILON) * gamma + beta

    def dropout(a, key):
        keep = jax.random.bernoulli(key, 0.5, a.shape)
        return jnp.where(keep, a * 2.0, 0.0)

    def apply(P, xs, key):
        x = xs[0]
        if g.name == "shared":
            return [dense(P, "h2b", dense(P, "h2a", dense(P, "shared", x)))]
        if g.name == "merged":
            halves = []
            for p, k in zip("ab", jax.random.split(key) if training else (None, None)):
                h = dense(P, p + "1", x)
                if training:
                    h = dropout(h, k)
                halves.append(dense(P, p + "2", h))
            return [dense(P, "head", jnp.concatenate(halves, axis=1))]
        if g.name == "container":
            return [dense(P, "head", dense(P, "c2", dense(P, "c1", x)))]
        if g.name == "gan":
            return [dense(P, "d2", dense(P, "d1", dense(P, "g2", dense(P, "g1", x))))]
        if g.name == "bn-base":
            h = bn(P, "bn2", dense(P, "f2", bn(P, "bn1", dense(P, "f1", x))))
            return [dense(P, "head", h)]
        if g.name == "multi-io":
            t = dense(P, "trunk", jnp.concatenate([dense(P, "ea", x), dense(P, "eb", xs[1])], axis=1))
            return [dense(P, "cls", t), dense(P, "reg", t)]
        raise ValueError(f"no graph {g.name!r}")

    return apply


def _loss(g):
    fns = {"sce": lambda o, y: optax.softmax_cross_entropy_with_integer_labels(o, y).mean(),
           "bce": lambda o, y: optax.sigmoid_binary_cross_entropy(o, y).mean(),
           "mse": lambda o, y: jnp.mean((o - y) ** 2)}
    kinds = [kind for _, kind, _ in g.targets]
    weights = g.loss_weights

    def loss(outs, ys):
        return sum(w * fns[k](o, y) for w, k, o, y in zip(weights, kinds, outs, ys))

    return loss


class GraphRunner:
    def __init__(self, sc, arrays):
        g = sc.graph_spec
        trains = {n for n, t, _ in g.step if t}
        used = [n for n, _, _ in g.step]
        self.train_p = {n: (jnp.asarray(arrays[f"W_{n}"]), jnp.asarray(arrays[f"b_{n}"]))
                        for n in used if n in trains}
        frozen = {n: (jnp.asarray(arrays[f"W_{n}"]), jnp.asarray(arrays[f"b_{n}"]))
                  for n in used if n not in trains}
        for n, _ in g.bn:
            frozen[n] = tuple(jnp.asarray(arrays[f"{k}_{n}"]) for k in ("gamma", "beta", "mean", "var"))
        self.frozen_p = frozen
        fwd_train, fwd_eval, loss_of = _forward(g, True), _forward(g, False), _loss(g)
        opt = jax_optim.make(sc)

        def loss_fn(tp, fp, xs, ys, key):
            return loss_of(fwd_train({**fp, **tp}, xs, key), ys)

        def step(tp, opt_state, key, fp, xs, ys):
            key, sub = jax.random.split(key)
            loss, grads = jax.value_and_grad(loss_fn)(tp, fp, xs, ys, sub)
            updates, opt_state = opt.update(grads, opt_state, tp)
            return optax.apply_updates(tp, updates), opt_state, key, loss

        self._step = jax.jit(step, donate_argnums=(0, 1, 2))
        self._eval = jax.jit(lambda tp, fp, xs, ys: loss_of(fwd_eval({**fp, **tp}, xs, None), ys))
        self.opt_state = opt.init(self.train_p)
        self.key = jax.random.PRNGKey(0)
        self.xs = [jnp.asarray(arrays[n]) for n, _ in g.inputs]
        self.ys = [jnp.asarray(arrays[t].astype(np.int32) if kind == "sce" else arrays[t])
                   for t, kind, _ in g.targets]

    def eval_loss(self):
        return float(self._eval(self.train_p, self.frozen_p, self.xs, self.ys))

    def train_step(self):
        self.train_p, self.opt_state, self.key, loss = self._step(
            self.train_p, self.opt_state, self.key, self.frozen_p, self.xs, self.ys)
        return float(loss)

    def train(self, k):
        tp, st, key = self.train_p, self.opt_state, self.key
        step, fp, xs, ys = self._step, self.frozen_p, self.xs, self.ys
        for _ in range(k):
            tp, st, key, _ = step(tp, st, key, fp, xs, ys)
        jax.block_until_ready(tp)
        self.train_p, self.opt_state, self.key = tp, st, key


def build(sc, arrays):
    return GraphRunner(sc, arrays)
