"""Integer codes shared by Python and the Cython kernels (mirror: ``csrc/_codes.pxd``).

Each is defined once on each side of the Python/Cython line: op, merge, loss and
activation codes, the losses' epsilon, optimizer kinds and the ``hyper`` layout.

Optimizer kinds (``OPT_*``) and the layout of the per-step float64 scalar array
``hyper`` that :meth:`fastlayers.optimizers.Optimizer.begin_step` fills and the
kernel ``update_one`` reads.  ``tests/kernels/test_optim_kernels.py`` parses the
.pxd and checks that both files agree, so change them together.

Slots of ``hyper`` common to every kind:

- ``H_LR``: this step's learning rate (the schedule evaluated at ``iterations``).
- ``H_WD``: ``learning_rate * weight_decay`` (0.0 when there is no weight decay).
- ``H_CLIPVALUE`` / ``H_CLIPNORM``: the clip thresholds, ``inf`` when unset.
- ``H_GSCALE``: the global-norm clip factor; ``begin_step`` writes 1.0 and the
  engine overwrites it once the global norm of the whole step is known.

``H_A`` .. ``H_F`` are per kind (see ``HYPER_SLOTS``).
"""
from __future__ import annotations

OPT_SGD = 0                        # w -= lr g
OPT_MOMENTUM = 1                   # slots: momentum
OPT_NESTEROV = 2                   # slots: momentum
OPT_RMSPROP = 3                    # slots: velocity
OPT_RMSPROP_MOMENTUM = 4           # slots: velocity, momentum
OPT_RMSPROP_CENTERED = 5           # slots: velocity, average_gradient
OPT_RMSPROP_CENTERED_MOMENTUM = 6  # slots: velocity, momentum, average_gradient
OPT_ADAM = 7                       # slots: momentum, velocity
OPT_AMSGRAD = 8                    # slots: momentum, velocity, velocity_hat
OPT_ADAGRAD = 9                    # slots: accumulator
OPT_ADADELTA = 10                  # slots: accumulated_grad, accumulated_delta_var
OPT_ADAMAX = 11                    # slots: momentum, norm
OPT_NADAM = 12                     # slots: momentum, velocity
OPT_COUNT = 13

H_LR = 0
H_WD = 1
H_CLIPVALUE = 2
H_CLIPNORM = 3
H_GSCALE = 4
H_A = 5
H_B = 6
H_C = 7
H_D = 8
H_E = 9
H_F = 10
HYPER_LEN = 11

# Per kind: the names of the per-weight state arrays, in the order the kernel reads
# them as s0, s1, s2 (Keras's variable names).
SLOT_NAMES = {
    OPT_SGD: (),
    OPT_MOMENTUM: ("momentum",),
    OPT_NESTEROV: ("momentum",),
    OPT_RMSPROP: ("velocity",),
    OPT_RMSPROP_MOMENTUM: ("velocity", "momentum"),
    OPT_RMSPROP_CENTERED: ("velocity", "average_gradient"),
    OPT_RMSPROP_CENTERED_MOMENTUM: ("velocity", "momentum", "average_gradient"),
    OPT_ADAM: ("momentum", "velocity"),
    OPT_AMSGRAD: ("momentum", "velocity", "velocity_hat"),
    OPT_ADAGRAD: ("accumulator",),
    OPT_ADADELTA: ("accumulated_grad", "accumulated_delta_var"),
    OPT_ADAMAX: ("momentum", "norm"),
    OPT_NADAM: ("momentum", "velocity"),
}
N_SLOTS = tuple(len(SLOT_NAMES[k]) for k in range(OPT_COUNT))

# Per kind: what H_A .. H_F hold (documentation, and the NumPy twin's reading).
HYPER_SLOTS = {
    OPT_SGD: ("momentum (0: unused)",),
    OPT_MOMENTUM: ("momentum",),
    OPT_NESTEROV: ("momentum",),
    OPT_RMSPROP: ("rho", "1 - rho", "epsilon", "momentum"),
    OPT_RMSPROP_MOMENTUM: ("rho", "1 - rho", "epsilon", "momentum"),
    OPT_RMSPROP_CENTERED: ("rho", "1 - rho", "epsilon", "momentum"),
    OPT_RMSPROP_CENTERED_MOMENTUM: ("rho", "1 - rho", "epsilon", "momentum"),
    # alpha = lr sqrt(1 - beta_2^t) / (1 - beta_1^t), t = iterations + 1
    OPT_ADAM: ("alpha", "1 - beta_1", "1 - beta_2", "epsilon"),
    OPT_AMSGRAD: ("alpha", "1 - beta_1", "1 - beta_2", "epsilon"),
    OPT_ADAGRAD: ("epsilon",),
    OPT_ADADELTA: ("rho", "1 - rho", "epsilon"),
    # lr_t = lr / (1 - beta_1^t)
    OPT_ADAMAX: ("lr_t", "1 - beta_1", "beta_2", "epsilon"),
    # c_m = u_{t+1} / (1 - prod_{i<=t+1} u_i), c_g = (1 - u_t) / (1 - prod_{i<=t} u_i),
    # c_v = 1 / (1 - beta_2^t), u_t = beta_1 (1 - 0.5 * 0.96^t)
    OPT_NADAM: ("c_m", "c_g", "c_v", "1 - beta_1", "1 - beta_2", "epsilon"),
}

OPT_NAMES = {
    OPT_SGD: "OPT_SGD", OPT_MOMENTUM: "OPT_MOMENTUM", OPT_NESTEROV: "OPT_NESTEROV",
    OPT_RMSPROP: "OPT_RMSPROP", OPT_RMSPROP_MOMENTUM: "OPT_RMSPROP_MOMENTUM",
    OPT_RMSPROP_CENTERED: "OPT_RMSPROP_CENTERED",
    OPT_RMSPROP_CENTERED_MOMENTUM: "OPT_RMSPROP_CENTERED_MOMENTUM",
    OPT_ADAM: "OPT_ADAM", OPT_AMSGRAD: "OPT_AMSGRAD", OPT_ADAGRAD: "OPT_ADAGRAD",
    OPT_ADADELTA: "OPT_ADADELTA", OPT_ADAMAX: "OPT_ADAMAX", OPT_NADAM: "OPT_NADAM",
}


# Ops of a step program (fastlayers.engine.program.OpKind).
OP_DENSE = 0
OP_ACTIVATION = 1
OP_DROPOUT = 2
OP_BATCHNORM = 3
OP_CONCAT = 4
OP_MERGE = 5
OP_CALLBACK = 6
OP_TRANSPOSE = 7
OP_CONV = 8
OP_POOL = 9
OP_LAYERNORM = 10
OP_PAD2D = 11
OP_UPSAMPLE2D = 12

# Pooling modes (OP_POOL's act field).
POOL_MAX = 0
POOL_AVERAGE = 1

# The depthwise and transposed convolutions (ops of step programs, as OP_CONV).
OP_DEPTHWISE = 13
OP_CONV_TRANSPOSE = 14

# Elementwise merges of several inputs (OP_MERGE's mode).
MERGE_ADD = 0
MERGE_SUBTRACT = 1
MERGE_MULTIPLY = 2
MERGE_AVERAGE = 3
MERGE_MAXIMUM = 4
MERGE_MINIMUM = 5

# Activations fused into ops: the one table is fastlayers/_act_codes.py (its pxd twin is
# csrc/_act.pxd); the names ACT_<NAME> and ACTIVATIONS are re-exported here.
from ._act_codes import ACTIVATION_CODES as ACTIVATIONS  # noqa: E402,F401
from ._act_codes import ENUM_NAMES as _ACT_ENUM  # noqa: E402

globals().update({f"ACT_{k}": v for k, v in _ACT_ENUM.items()})
ACT_LINEAR = _ACT_ENUM["LINEAR"]

# Losses the executor computes itself; any other Loss runs as a Python callback.
LOSS_MSE = 0
LOSS_MAE = 1
LOSS_BCE = 2
LOSS_CE = 3
LOSS_SPARSE_CE = 4
LOSS_CALLBACK = 5

LOSS_KINDS = {
    "MeanSquaredError": LOSS_MSE,
    "MeanAbsoluteError": LOSS_MAE,
    "BinaryCrossentropy": LOSS_BCE,
    "CategoricalCrossentropy": LOSS_CE,
    "SparseCategoricalCrossentropy": LOSS_SPARSE_CE,
}

# Probabilities are clipped to [EPSILON, 1 - EPSILON] by the losses (Keras's 1e-7).
EPSILON = 1e-7

# Embedding, group normalization and PReLU ops (OpKind.EMBEDDING, GROUPNORM, PRELU).
OP_EMBEDDING = 15
OP_GROUPNORM = 16
OP_PRELU = 17

# How an EMBEDDING op reads its ids: float ids of the program's dtype (rounded to the
# nearest integer, as Embedding.forward does) or an integer input slot.
IDS_FLOAT32 = 0
IDS_FLOAT64 = 1
IDS_INT32 = 2
IDS_INT64 = 3
IDS_KINDS = {"float32": IDS_FLOAT32, "float64": IDS_FLOAT64, "int32": IDS_INT32,
             "int64": IDS_INT64}
