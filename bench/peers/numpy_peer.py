"""Hand-written NumPy reference: forward, backward and SGD on preallocated buffers.

Every product is ``np.matmul(..., out=...)`` and every elementwise op writes in
place, so a steady-state step allocates almost nothing (the softmax cross-entropy
picks its label logits with one small fancy index).  This is what "no framework"
costs: the floor for Python + NumPy + BLAS.
"""
import numpy as np

from ..scenarios import LEARNING_RATE, gemm_variants, weights_of

MODULE = "numpy"
_THREADS = 1


def setup(threads):
    global _THREADS
    _THREADS = threads
    v = {"numpy": np.__version__}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        v["numpy BLAS"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy
        pass
    return v


class _Buffers:
    def __init__(self, net, b):
        self.b = b
        f32 = np.float32
        self.H = [np.empty((b, o), f32) for _, o, _ in net.layers]
        self.G = [np.empty((b, o), f32) for _, o, _ in net.layers]
        self.Bb = [np.empty((b, o), f32) for _, o, _ in net.layers]
        self.mask = [np.empty((b, o), np.bool_) for _, o, _ in net.layers]
        self.rand = [np.empty((b, o), f32) for _, o, _ in net.layers] if net.rate else None
        self.m = np.empty((b, 1), f32)
        self.s = np.empty((b, 1), f32)
        self.rows = np.arange(b)


class Net:
    def __init__(self, sc, arrays):
        self.sc = sc
        self.layers = sc.layers
        self.W = [np.array(w, np.float32, copy=True) for w, _ in weights_of(arrays, sc)]
        self.bias = [np.array(b, np.float32, copy=True) for _, b in weights_of(arrays, sc)]
        self.dW = [np.empty_like(w) for w in self.W]
        self.db = [np.empty_like(b) for b in self.bias]
        self.rate = sc.dropout
        self.scale = np.float32(1.0 / (1.0 - sc.dropout)) if sc.dropout else None
        self.frozen = sc.frozen
        self.lr = np.float32(LEARNING_RATE)
        self.rng = np.random.default_rng(0)
        self._bufs = {}

    def bufs(self, b):
        buf = self._bufs.get(b)
        if buf is None:
            buf = self._bufs[b] = _Buffers(self, b)
        return buf

    # -- forward ------------------------------------------------------------------
    def forward(self, x, bf, training):
        a = x
        last = len(self.layers) - 1
        for j, (_, _, act) in enumerate(self.layers):
            h = bf.H[j]
            np.matmul(a, self.W[j], out=h)
            # h += bias would broadcast through a temporary ufunc buffer; a full-size copy
            # of the bias rows does not allocate
            np.copyto(bf.Bb[j], self.bias[j])
            h += bf.Bb[j]
            if act == "relu":
                np.maximum(h, 0, out=h)
            if training and self.rate and j < last:
                r = bf.rand[j]
                self.rng.random(out=r, dtype=np.float32)
                np.less(r, self.rate, out=bf.mask[j])  # dropped units
                np.copyto(h, 0.0, where=bf.mask[j])  # (multiplying by a bool mask would
                h *= self.scale  # cast it through a temporary buffer)
            a = h
        return a

    def loss_and_grad(self, out, y, bf, grad=True):
        g = bf.G[-1]
        if self.sc.loss == "mse":
            np.subtract(out, y, out=g)
            n = g.size
            loss = float(np.vdot(g, g)) / n
            if grad:
                g *= np.float32(2.0 / n)
            return loss
        # softmax cross-entropy with integer labels, fused with its gradient
        b = out.shape[0]
        np.max(out, axis=1, keepdims=True, out=bf.m)
        np.subtract(out, bf.m, out=g)
        np.exp(g, out=g)
        np.sum(g, axis=1, keepdims=True, out=bf.s)
        picked = out[bf.rows, y]
        loss = (float(np.log(bf.s).sum()) + float(bf.m.sum()) - float(picked.sum())) / b
        if grad:
            g /= bf.s
            g[bf.rows, y] -= 1.0
            g *= np.float32(1.0 / b)
        return loss

    # -- one step -------------------------------------------------------------------
    def step(self, x, y):
        bf = self.bufs(x.shape[0])
        out = self.forward(x, bf, True)
        loss = self.loss_and_grad(out, y, bf)
        lr = self.lr
        for j in range(len(self.layers) - 1, self.frozen - 1, -1):
            a_prev = x if j == 0 else bf.H[j - 1]
            g = bf.G[j]
            dW, db = self.dW[j], self.db[j]
            np.matmul(a_prev.T, g, out=dW)
            np.sum(g, axis=0, out=db)
            if j > self.frozen:  # the layer below has something to train
                gp = bf.G[j - 1]
                np.matmul(g, self.W[j].T, out=gp)
                if self.layers[j - 1][2] == "relu":
                    # relu (and dropout) backward: H>0 iff z>0 and the unit was kept
                    np.less_equal(bf.H[j - 1], 0, out=bf.mask[j - 1])
                    np.copyto(gp, 0.0, where=bf.mask[j - 1])
                    if self.rate:
                        gp *= self.scale
            dW *= lr
            self.W[j] -= dW
            db *= lr
            self.bias[j] -= db
        return loss


class Runner:
    def __init__(self, sc, arrays):
        self.sc = sc
        self.net = Net(sc, arrays)
        self.x = np.ascontiguousarray(arrays["x"], np.float32)
        self.y = arrays["y"]
        if sc.kind == "fit":
            self.X = arrays["X"]
            self.Y = arrays["Y"]

    def eval_loss(self):
        bf = self.net.bufs(self.x.shape[0])
        out = self.net.forward(self.x, bf, False)
        return self.net.loss_and_grad(out, self.y, bf, grad=False)

    def train_step(self):
        return self.net.step(self.x, self.y)

    def train(self, k):
        step, x, y = self.net.step, self.x, self.y
        for _ in range(k):
            step(x, y)

    def forward(self, k):
        bf = self.net.bufs(self.x.shape[0])
        fwd, x = self.net.forward, self.x
        for _ in range(k):
            fwd(x, bf, False)

    def fit_epoch(self):
        X, Y, bs = self.X, self.Y, self.sc.batch
        n = X.shape[0]
        perm = self.net.rng.permutation(n)
        xb = {}
        loss = 0.0
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            m = idx.shape[0]
            if m not in xb:
                xb[m] = (np.empty((m, X.shape[1]), np.float32), np.empty((m,), Y.dtype))
            xbuf, ybuf = xb[m]
            np.take(X, idx, axis=0, out=xbuf)
            np.take(Y, idx, axis=0, out=ybuf)
            loss = self.net.step(xbuf, ybuf)
        return loss


def build(sc, arrays):
    return Runner(sc, arrays)


def _products(prods, rng):
    out = []
    for m, k, n, ta, tb in prods:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        out.append((a.T if ta else a, b.T if tb else b, np.empty((m, n), np.float32)))
    return out


def build_gemm(sc, arrays):
    rng = np.random.default_rng(0)
    variants = {}
    for name, prods in gemm_variants(sc):
        ops = _products(prods, rng)

        def run(k, ops=ops):
            mm = np.matmul
            for _ in range(k):
                for a, b, c in ops:
                    mm(a, b, out=c)

        variants[name] = run
    # The single product split by rows over `threads` Python threads with BLAS limited to
    # one thread: the cores' rate without the BLAS library's own threading (a cross-check
    # of the ceiling; needs threadpoolctl).
    split = _split_variants(sc, rng)
    variants.update(split)
    # The same single product through scipy's BLAS (what fastlayers' kernels call).
    try:
        from scipy.linalg import blas

        (name0, prods0) = gemm_variants(sc)[0]
        (a, b, c), = _products(prods0, rng)
        # C-order (m,n) C = A·B  <=>  Fortran-order Cᵀ = Bᵀ·Aᵀ: no copies.
        ct = c.T

        def run_scipy(k, a=a, b=b, ct=ct):
            sgemm = blas.sgemm
            for _ in range(k):
                sgemm(1.0, b.T, a.T, beta=0.0, c=ct, overwrite_c=1)

        variants[name0 + " (scipy sgemm)"] = run_scipy
    except Exception:
        pass
    return variants


SPLIT_SUFFIX = " ({} threads × 1-thread BLAS)"


def _split_variants(sc, rng):
    if _THREADS < 2:
        return {}
    try:
        from concurrent.futures import ThreadPoolExecutor

        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl is optional
        return {}
    t = _THREADS
    pool = ThreadPoolExecutor(t)
    out = {}
    for name, prods in gemm_variants(sc)[:1]:  # the single large product
        tasks = []
        for a, b, c in _products(prods, rng):
            m = c.shape[0]
            cuts = [m * i // t for i in range(t + 1)]
            tasks.append([(a[r0:r1], b, c[r0:r1]) for r0, r1 in zip(cuts, cuts[1:])])

        def run(k, tasks=tasks):
            mm = np.matmul

            def one(part):
                a, b, c = part
                mm(a, b, out=c)

            with threadpool_limits(1, user_api="blas"):
                for _ in range(k):
                    for parts in tasks:
                        list(pool.map(one, parts))

        out[name + SPLIT_SUFFIX.format(t)] = run
    return out
