"""PyTorch, CPU, eager: nn.Sequential + torch.optim.SGD, zero_grad(set_to_none=True).

Graph scenarios: ``torch_graphs``; the CNN scenarios: ``torch_cnn``; the RMSprop / AdamW
optimizers: ``torch_optim``.
"""
import numpy as np
import torch
from torch import nn

from ..scenarios import gemm_variants, weights_of
from . import torch_cnn, torch_graphs, torch_optim

MODULE = "torch"


def setup(threads):
    torch.set_num_threads(threads)
    return {"torch": torch.__version__, "torch threads": str(torch.get_num_threads())}


def _model(sc, arrays):
    mods, linears = [], []
    last = sc.n_dense - 1
    for j, (i, o, act) in enumerate(sc.layers):
        lin = nn.Linear(i, o)
        mods.append(lin)
        linears.append(lin)
        if act == "relu":
            mods.append(nn.ReLU())
        if sc.dropout and j < last:
            mods.append(nn.Dropout(sc.dropout))
    model = nn.Sequential(*mods)
    with torch.no_grad():
        for lin, (w, b) in zip(linears, weights_of(arrays, sc)):
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))  # (in,out) -> (out,in)
            lin.bias.copy_(torch.from_numpy(b))
    for lin in linears[:sc.frozen]:
        lin.weight.requires_grad_(False)
        lin.bias.requires_grad_(False)
    return model


class Runner:
    def __init__(self, sc, arrays):
        torch.manual_seed(0)
        self.sc = sc
        self.model = _model(sc, arrays)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch_optim.make(params, sc)
        self.loss_fn = nn.MSELoss() if sc.loss == "mse" else nn.CrossEntropyLoss()
        self.x = torch.from_numpy(np.ascontiguousarray(arrays["x"]))
        self.y = self._labels(arrays["y"])
        if sc.kind == "fit":
            self.X = torch.from_numpy(arrays["X"])
            self.Y = self._labels(arrays["Y"])

    def _labels(self, y):
        return torch.from_numpy(y.astype(np.int64) if self.sc.loss == "sce" else y)

    def _step(self, x, y):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss

    def eval_loss(self):
        self.model.eval()
        with torch.no_grad():
            loss = float(self.loss_fn(self.model(self.x), self.y))
        self.model.train()
        return loss

    def train_step(self):
        return self._step(self.x, self.y).item()

    def train(self, k):
        step, x, y = self._step, self.x, self.y
        for _ in range(k):
            step(x, y)

    def forward(self, k):
        self.model.eval()
        with torch.inference_mode():
            m, x = self.model, self.x
            for _ in range(k):
                m(x)
        self.model.train()

    def fit_epoch(self):
        X, Y, bs = self.X, self.Y, self.sc.batch
        n = X.shape[0]
        perm = torch.randperm(n)
        loss = None
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            loss = self._step(X.index_select(0, idx), Y.index_select(0, idx))
        return loss.item()


def build(sc, arrays):
    if sc.graph:
        return torch_graphs.build(sc, arrays)
    if sc.cnn:
        return torch_cnn.build(sc, arrays)
    return Runner(sc, arrays)


def build_gemm(sc, arrays):
    g = torch.Generator().manual_seed(0)
    variants = {}
    for name, prods in gemm_variants(sc):
        ops = []
        for m, k, n, ta, tb in prods:
            a = torch.randn((k, m) if ta else (m, k), generator=g)
            b = torch.randn((n, k) if tb else (k, n), generator=g)
            ops.append((a.t() if ta else a, b.t() if tb else b, torch.empty(m, n)))

        def run(k, ops=ops):
            mm = torch.mm
            for _ in range(k):
                for a, b, c in ops:
                    mm(a, b, out=c)

        variants[name] = run
    return variants
