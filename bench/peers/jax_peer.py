"""JAX: the whole step (forward + loss + grad + optax.sgd update) under one jax.jit,
with donated parameter / optimizer-state / key buffers; block_until_ready at the end
of each timed run.  Dropout masks come from jax.random inside the jitted step.

Graph scenarios: ``jax_graphs``; the CNN scenarios: ``jax_cnn``; the RMSprop / AdamW
optimizers: ``jax_optim``."""
import numpy as np
import jax
import jax.numpy as jnp
import optax

from ..scenarios import gemm_variants, weights_of
from . import jax_cnn, jax_graphs, jax_optim

MODULE = "jax"


def setup(threads):
    import jaxlib

    v = {"jax": jax.__version__, "jaxlib": getattr(jaxlib, "__version__", "?"),
         "optax": optax.__version__}
    v["jax backend"] = jax.default_backend()
    return v


class Runner:
    def __init__(self, sc, arrays):
        self.sc = sc
        params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights_of(arrays, sc)]
        self.frozen_p = tuple(params[:sc.frozen])
        self.train_p = list(params[sc.frozen:])
        acts = [act for _, _, act in sc.layers]
        rate = sc.dropout
        last = sc.n_dense - 1
        sce = sc.loss == "sce"

        def apply(frozen_p, train_p, x, key, training):
            a = x
            for j, (w, b) in enumerate(list(frozen_p) + list(train_p)):
                a = a @ w + b
                if acts[j] == "relu":
                    a = jax.nn.relu(a)
                if training and rate and j < last:
                    key, sub = jax.random.split(key)
                    keep = jax.random.bernoulli(sub, 1.0 - rate, a.shape)
                    a = jnp.where(keep, a * (1.0 / (1.0 - rate)), 0.0)
            return a

        def loss_of(out, y):
            if sce:
                return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
            return jnp.mean((out - y) ** 2)

        def loss_fn(train_p, frozen_p, x, y, key):
            return loss_of(apply(frozen_p, train_p, x, key, True), y)

        opt = jax_optim.make(sc)

        def step(train_p, opt_state, key, frozen_p, x, y):
            key, sub = jax.random.split(key)
            loss, grads = jax.value_and_grad(loss_fn)(train_p, frozen_p, x, y, sub)
            updates, opt_state = opt.update(grads, opt_state, train_p)
            train_p = optax.apply_updates(train_p, updates)
            return train_p, opt_state, key, loss

        self._step = jax.jit(step, donate_argnums=(0, 1, 2))
        self._eval = jax.jit(lambda tp, fp, x, y: loss_of(apply(fp, tp, x, None, False), y))
        self._fwd = jax.jit(lambda tp, fp, x: apply(fp, tp, x, None, False))
        self.opt_state = opt.init(self.train_p)
        self.key = jax.random.PRNGKey(0)
        self.x = jnp.asarray(arrays["x"])
        self.y = jnp.asarray(self._labels(arrays["y"]))
        if sc.kind == "fit":
            self.X = arrays["X"]
            self.Y = self._labels(arrays["Y"])
            self.rng = np.random.default_rng(0)

    def _labels(self, y):
        return y.astype(np.int32) if self.sc.loss == "sce" else y

    def eval_loss(self):
        return float(self._eval(self.train_p, self.frozen_p, self.x, self.y))

    def train_step(self):
        self.train_p, self.opt_state, self.key, loss = self._step(
            self.train_p, self.opt_state, self.key, self.frozen_p, self.x, self.y)
        return float(loss)

    def train(self, k):
        tp, st, key = self.train_p, self.opt_state, self.key
        step, fp, x, y = self._step, self.frozen_p, self.x, self.y
        for _ in range(k):
            tp, st, key, _ = step(tp, st, key, fp, x, y)
        jax.block_until_ready(tp)
        self.train_p, self.opt_state, self.key = tp, st, key

    def forward(self, k):
        fwd, tp, fp, x = self._fwd, self.train_p, self.frozen_p, self.x
        out = None
        for _ in range(k):
            out = fwd(tp, fp, x)
        jax.block_until_ready(out)

    def fit_epoch(self):
        X, Y, bs = self.X, self.Y, self.sc.batch
        n = X.shape[0]
        perm = self.rng.permutation(n)
        tp, st, key = self.train_p, self.opt_state, self.key
        step, fp = self._step, self.frozen_p
        loss = None
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            tp, st, key, loss = step(tp, st, key, fp, X[idx], Y[idx])
        jax.block_until_ready(tp)
        self.train_p, self.opt_state, self.key = tp, st, key
        return float(loss)


def build(sc, arrays):
    if sc.graph:
        return jax_graphs.build(sc, arrays)
    if sc.cnn:
        return jax_cnn.build(sc, arrays)
    return Runner(sc, arrays)


def build_gemm(sc, arrays):
    rng = np.random.default_rng(0)
    variants = {}
    for name, prods in gemm_variants(sc):
        ops, flags = [], []
        for m, k, n, ta, tb in prods:
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
            ops.append((jnp.asarray(a), jnp.asarray(b)))
            flags.append((ta, tb))

        def products(ops, flags=tuple(flags)):
            return [(a.T if ta else a) @ (b.T if tb else b) for (a, b), (ta, tb) in zip(ops, flags)]

        f = jax.jit(products)

        def run(k, f=f, ops=ops):
            out = None
            for _ in range(k):
                out = f(ops)
            jax.block_until_ready(out)

        variants[name] = run
    return variants
