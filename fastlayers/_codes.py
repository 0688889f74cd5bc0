"""Integer codes shared with the kernels, defined once on each side of the Python/Cython line.

``csrc/_codes.pxd`` declares the same values as ``cdef enum``s; a test parses it and
checks that both agree.
"""

# Ops of a step program (fastlayers.engine.program.OpKind).
OP_DENSE = 0
OP_ACTIVATION = 1
OP_DROPOUT = 2
OP_BATCHNORM = 3
OP_CONCAT = 4
OP_MERGE = 5
OP_CALLBACK = 6
OP_TRANSPOSE = 7

# Elementwise merges of several inputs (OP_MERGE's mode).
MERGE_ADD = 0
MERGE_SUBTRACT = 1
MERGE_MULTIPLY = 2
MERGE_AVERAGE = 3
MERGE_MAXIMUM = 4
MERGE_MINIMUM = 5

# Activations fused into ops (also csrc/_act.pxd's ACT_*).
ACT_LINEAR = 0
ACT_RELU = 1
ACT_SIGMOID = 2
ACT_TANH = 3
ACT_SOFTMAX = 4

# Activation names and their codes: the one table (layers, ops and the twin read it).
ACTIVATIONS = {"linear": ACT_LINEAR, "relu": ACT_RELU, "sigmoid": ACT_SIGMOID,
               "tanh": ACT_TANH, "softmax": ACT_SOFTMAX}

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

# Optimizers and the layout of their per-step scalars (``hyper``).
OPT_SGD = 0
OPT_MOMENTUM = 1
OPT_NESTEROV = 2
OPT_ADAM = 3
H_LR, H_WD, H_CLIPVALUE, H_CLIPNORM, H_GSCALE, H_A, H_B, H_C, H_D, H_E, H_F = range(11)
HYPER_LEN = 11
