"""The scenario's optimizer in optax, with Keras 3's settings (``bench.scenarios.OPTIMIZERS``).

- ``sgd``: ``optax.sgd``.
- ``rmsprop``: ``optax.rmsprop(eps_in_sqrt=True)``, Keras's placement of eps (inside the
  sqrt), zero initial velocity.
- ``adamw-clip``: ``optax.chain(clip_by_global_norm(1.0), adamw(...))``; optax, like
  torch, adds eps after the bias correction of ``v`` (Keras before it): see
  ``torch_optim`` for why the loss check tolerates it.
"""
import optax

from ..scenarios import OPTIMIZERS


def make(sc):
    kw = OPTIMIZERS[sc.optimizer]
    if sc.optimizer == "sgd":
        return optax.sgd(kw["learning_rate"])
    if sc.optimizer == "rmsprop":
        if kw["momentum"] or kw["centered"]:
            raise ValueError("jax_optim: RMSprop momentum/centered not wired")
        return optax.rmsprop(kw["learning_rate"], decay=kw["rho"], eps=kw["epsilon"],
                             eps_in_sqrt=True)
    if sc.optimizer == "adamw-clip":
        return optax.chain(
            optax.clip_by_global_norm(kw["global_clipnorm"]),
            optax.adamw(kw["learning_rate"], b1=kw["beta_1"], b2=kw["beta_2"], eps=kw["epsilon"],
                        weight_decay=kw["weight_decay"]))
    raise ValueError(f"no optax optimizer for {sc.optimizer!r}")
