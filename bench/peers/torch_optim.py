"""The scenario's optimizer in PyTorch, with Keras 3's settings (``bench.scenarios.OPTIMIZERS``).

- ``sgd``: ``torch.optim.SGD``.
- ``rmsprop``: torch.optim.RMSprop divides by ``sqrt(v) + eps``, Keras 3 by
  ``sqrt(v + eps)``; with eps = 1e-7 the two differ by orders of magnitude on small
  gradients (sqrt(1e-7) ≈ 3e-4): stock RMSprop is 4.5 % off Keras after one mlp step.  ``KerasRMSprop`` is
  torch.optim.RMSprop's own per-tensor loop (its CPU default, no foreach) with the eps
  moved inside the sqrt: same ops, Keras's formula.
- ``adamw-clip``: ``torch.nn.utils.clip_grad_norm_(params, 1.0)`` then
  ``torch.optim.AdamW`` as shipped.  torch adds eps to ``sqrt(v / (1 - beta_2^t))``,
  Keras to ``sqrt(v)``: an eps smaller by ``sqrt(1 - beta_2^t)``, which only moves weights
  whose gradient is below ~1e-5; the loss check's tolerance covers it.
"""
import torch

from ..scenarios import OPTIMIZERS


class KerasRMSprop:
    """RMSprop as Keras 3 computes it (momentum 0, not centered)."""

    def __init__(self, params, learning_rate, rho, momentum, epsilon, centered):
        if momentum or centered:
            raise ValueError("KerasRMSprop: momentum and centered are not written")
        self.params = list(params)
        self.lr, self.rho, self.eps = learning_rate, rho, epsilon
        self.velocity = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        rho, eps, lr = self.rho, self.eps, self.lr
        for p, v in zip(self.params, self.velocity):
            g = p.grad
            v.mul_(rho).addcmul_(g, g, value=1 - rho)
            p.addcdiv_(g, v.add(eps).sqrt_(), value=-lr)


class Clipped:
    """Global-norm clipping of the gradients, then the wrapped optimizer's step."""

    def __init__(self, opt, params, max_norm):
        self.opt, self.params, self.max_norm = opt, list(params), max_norm

    def zero_grad(self, set_to_none=True):
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self):
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.opt.step()


def make(params, sc):
    params = list(params)
    kw = OPTIMIZERS[sc.optimizer]
    if sc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=kw["learning_rate"])
    if sc.optimizer == "rmsprop":
        return KerasRMSprop(params, **kw)
    if sc.optimizer == "adamw-clip":
        opt = torch.optim.AdamW(params, lr=kw["learning_rate"], betas=(kw["beta_1"], kw["beta_2"]),
                                eps=kw["epsilon"], weight_decay=kw["weight_decay"])
        return Clipped(opt, params, kw["global_clipnorm"])
    raise ValueError(f"no torch optimizer for {sc.optimizer!r}")
