"""The seeds' graphs in PyTorch eager, the way a torch user writes them.

Sub-models are ``nn.Sequential``; a frozen one has ``requires_grad_(False)`` on its
parameters (autograd then records nothing for it unless a gradient must pass through,
as in the GAN); a frozen BatchNormalization base is kept in ``eval()`` while the rest
trains (inference mode, as Keras runs a frozen BN).  Dropout in a frozen sub-model
stays in training mode.
"""
import numpy as np
import torch
from torch import nn

from ..graphs import BN_EPSILON
from . import torch_optim


def _act(act):
    return {"relu": nn.ReLU(), "tanh": nn.Tanh()}.get(act)


class _Parts:
    """Linear / BatchNorm1d modules by name, holding the scenario's initial weights."""

    def __init__(self, g, arrays):
        self.g, self.arrays = g, arrays

    def dense(self, name):
        """[Linear, activation] for ``nn.Sequential``."""
        w, b = self.arrays[f"W_{name}"], self.arrays[f"b_{name}"]
        lin = nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))  # (in,out) -> (out,in)
            lin.bias.copy_(torch.from_numpy(b))
        act = _act(self.g.dense_spec(name)[3])
        return [lin] + ([act] if act is not None else [])

    def bn(self, name):
        a = self.arrays
        m = nn.BatchNorm1d(a[f"gamma_{name}"].shape[0], eps=BN_EPSILON)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(a[f"gamma_{name}"]))
            m.bias.copy_(torch.from_numpy(a[f"beta_{name}"]))
            m.running_mean.copy_(torch.from_numpy(a[f"mean_{name}"]))
            m.running_var.copy_(torch.from_numpy(a[f"var_{name}"]))
        return [m]

    def seq(self, *names, dropout_after=()):
        mods = []
        for n in names:
            mods += self.bn(n) if n.startswith("bn") else self.dense(n)
            if n in dropout_after:
                mods.append(nn.Dropout(0.5))
        return nn.Sequential(*mods)


def _freeze(module):
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class _Merged(nn.Module):
    def __init__(self, model_a, model_b, head):
        super().__init__()
        self.model_a, self.model_b, self.head = model_a, model_b, head

    def forward(self, x):
        return self.head(torch.cat([self.model_a(x), self.model_b(x)], dim=1))


class _MultiIO(nn.Module):
    def __init__(self, ea, eb, trunk, cls, reg):
        super().__init__()
        self.ea, self.eb, self.trunk, self.cls, self.reg = ea, eb, trunk, cls, reg

    def forward(self, xa, xb):
        t = self.trunk(torch.cat([self.ea(xa), self.eb(xb)], dim=1))
        return self.cls(t), self.reg(t)


def _model(g, arrays):
    """(model, modules kept in eval() while training, loss(outputs, targets))."""
    P = _Parts(g, arrays)
    ce, mse, bce = nn.CrossEntropyLoss(), nn.MSELoss(), nn.BCEWithLogitsLoss()
    one = lambda fn: (lambda out, ys: fn(out, ys[0]))  # noqa: E731
    if g.name == "shared":
        shared = P.seq("shared")
        # model1.trainable = False freezes model1's own weights, not the shared layer that
        # model2 trains (seed 000): in torch, model1's head is frozen, the shared one not
        _model1 = nn.Sequential(shared, _freeze(P.seq("m1")))  # noqa: F841 (not trained)
        return nn.Sequential(shared, P.seq("h2a", "h2b")), [], one(ce)
    if g.name == "merged":
        model_a = _freeze(P.seq("a1", "a2", dropout_after=("a1",)))
        model_b = _freeze(P.seq("b1", "b2", dropout_after=("b1",)))
        return _Merged(model_a, model_b, P.seq("head")), [], one(ce)
    if g.name == "container":
        return nn.Sequential(_freeze(P.seq("c1", "c2")), P.seq("head")), [], one(ce)
    if g.name == "gan":
        generator = P.seq("g1", "g2")
        discriminator = _freeze(P.seq("d1", "d2"))
        return nn.Sequential(generator, discriminator), [], one(bce)
    if g.name == "bn-base":
        base = _freeze(P.seq("f1", "bn1", "f2", "bn2"))
        return nn.Sequential(base, P.seq("head")), [base], one(ce)
    if g.name == "multi-io":
        w1, w2 = g.loss_weights
        model = _MultiIO(P.seq("ea"), P.seq("eb"), P.seq("trunk"), P.seq("cls"), P.seq("reg"))
        return model, [], lambda out, ys: w1 * ce(out[0], ys[0]) + w2 * mse(out[1], ys[1])
    raise ValueError(f"no graph {g.name!r}")


class GraphRunner:
    def __init__(self, sc, arrays):
        torch.manual_seed(0)
        g = sc.graph_spec
        self.model, self.eval_parts, self.loss_fn = _model(g, arrays)
        self._train_mode()
        self.opt = torch_optim.make([p for p in self.model.parameters() if p.requires_grad], sc)
        self.xs = [torch.from_numpy(np.ascontiguousarray(arrays[n])) for n, _ in g.inputs]
        self.ys = [torch.from_numpy(arrays[t].astype(np.int64) if kind == "sce" else arrays[t])
                   for t, kind, _ in g.targets]

    def _train_mode(self):
        self.model.train()
        for m in self.eval_parts:
            m.eval()

    def _step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(*self.xs), self.ys)
        loss.backward()
        self.opt.step()
        return loss

    def eval_loss(self):
        self.model.eval()
        with torch.no_grad():
            loss = float(self.loss_fn(self.model(*self.xs), self.ys))
        self._train_mode()
        return loss

    def train_step(self):
        return self._step().item()

    def train(self, k):
        step = self._step
        for _ in range(k):
            step()


def build(sc, arrays):
    return GraphRunner(sc, arrays)
