"""One module per framework, each with the same small interface.

A peer module ``bench.peers.<name>_peer`` defines:

``MODULE``
    the top-level module it imports (an ImportError naming it means "not installed").
``setup(threads) -> dict``
    configure threading; return ``{"name": version, ...}`` for the report.
``build(scenario, arrays) -> runner``
    a model with the initial weights in ``arrays`` (see ``bench.scenarios``), compiled
    for the scenario's optimizer (``bench.scenarios.OPTIMIZERS``; plain SGD(0.01) but for
    ``rmsprop`` / ``adamw-clip``).  Graph scenarios (``scenario.graph``) are built by the
    framework's ``<name>_graphs`` module from ``bench.graphs``.  A framework that lacks
    something the scenario needs raises ``Unavailable`` (reported as "n/a", the others
    still run).  The runner has:

    - ``eval_loss() -> float``: inference-mode loss on ``arrays["x"], arrays["y"]``;
    - ``train_step() -> float``: one training step, its (training-mode) loss;
    - ``train(k)``: ``k`` training steps, returning only when they are done;
    - ``forward(k)``: ``k`` inference forward passes (``frozen`` scenario);
    - ``fit_epoch()``: one shuffled epoch over ``arrays["X"], arrays["Y"]`` (``fit``).
``build_gemm(scenario, arrays) -> {variant: callable(k)}`` (optional)
    GEMM sets of ``bench.scenarios.gemm_variants``.

The worker imports exactly one of these modules, so no framework pays for another's
import or threads.
"""


class Unavailable(RuntimeError):
    """This framework (this version of it) cannot run this scenario; the message says why."""


FRAMEWORKS = ("fastlayers", "torch", "jax", "keras", "numpy")
