"""The CNN scenarios in PyTorch eager, the way a torch user writes them: ``nn.Sequential``
of ``Conv2d`` / ``MaxPool2d`` / ``Flatten`` / ``Linear`` on NCHW tensors (torch's native
layout; the batch is transposed once, at build).

Kernels arrive in Keras's layout and are permuted: a conv ``(kh, kw, in, out)`` becomes
``(out, in, kh, kw)``; the Dense after ``Flatten`` has its rows reordered from Keras's
``(h, w, c)`` flattening to torch's ``(c, h, w)`` before the ``(in, out) -> (out, in)``
transpose. Frozen layers: ``requires_grad_(False)`` (autograd then skips their backward,
and nothing below them trains).
"""
import numpy as np
import torch
from torch import nn

from . import torch_optim


class _GAP(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def _model(c, arrays):
    mods = []
    shape = tuple(c.input)  # (h, w, c) in Keras's terms, as the arrays are laid out
    for spec in c.layers:
        kind = spec[0]
        if kind == "conv":
            _, name, filters, k, pad, act = spec
            if pad == "same" and k % 2 == 0:
                raise ValueError("torch peer: padding='same' written for odd kernels only")
            conv = nn.Conv2d(shape[2], filters, k, padding=k // 2 if pad == "same" else 0)
            with torch.no_grad():
                w = np.ascontiguousarray(arrays[f"W_{name}"].transpose(3, 2, 0, 1))
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(arrays[f"b_{name}"]))
            mods += [conv] + ([nn.ReLU()] if act == "relu" else [])
            if name in c.frozen:
                conv.requires_grad_(False)
        elif kind == "pool":
            mods.append(nn.MaxPool2d(2))
        elif kind == "gap":
            mods.append(_GAP())
        elif kind == "flatten":
            mods.append(nn.Flatten())
        else:
            _, name, units, act = spec
            w = arrays[f"W_{name}"]
            if len(shape) == 3:  # after Flatten: Keras flattens (h, w, c), torch (c, h, w)
                h, wd, ch = shape
                w = w.reshape(h, wd, ch, units).transpose(2, 0, 1, 3).reshape(-1, units)
            lin = nn.Linear(w.shape[0], units)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                lin.bias.copy_(torch.from_numpy(arrays[f"b_{name}"]))
            mods += [lin] + ([nn.ReLU()] if act == "relu" else [])
            if name in c.frozen:
                lin.requires_grad_(False)
        shape = _shape_after(spec, shape)
    return nn.Sequential(*mods)


def _shape_after(spec, shape):
    kind = spec[0]
    if kind == "conv":
        _, _, f, k, pad, _ = spec
        return (shape[0], shape[1], f) if pad == "same" else (shape[0] - k + 1, shape[1] - k + 1, f)
    if kind == "pool":
        return (shape[0] // 2, shape[1] // 2, shape[2])
    if kind == "gap":
        return (shape[2],)
    if kind == "flatten":
        return shape  # kept as (h, w, c): the Dense after it reorders its rows by it
    return (spec[2],)


class CNNRunner:
    def __init__(self, sc, arrays):
        torch.manual_seed(0)
        self.model = _model(sc.cnn_spec, arrays)
        self.model.train()
        self.opt = torch_optim.make([p for p in self.model.parameters() if p.requires_grad], sc)
        self.loss_fn = nn.CrossEntropyLoss()
        self.x = torch.from_numpy(np.ascontiguousarray(arrays["x"].transpose(0, 3, 1, 2)))
        self.y = torch.from_numpy(arrays["y"].astype(np.int64))

    def _step(self):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(self.x), self.y)
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
        return self._step().item()

    def train(self, k):
        step = self._step
        for _ in range(k):
            step()

    def forward(self, k):
        self.model.eval()
        with torch.inference_mode():
            m, x = self.model, self.x
            for _ in range(k):
                m(x)
        self.model.train()


def build(sc, arrays):
    return CNNRunner(sc, arrays)
