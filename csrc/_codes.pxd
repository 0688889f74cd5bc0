# Integer codes shared with Python: the mirror of fastlayers/_codes.py (see its
# docstring for what each code and hyper slot means).  A test parses this file and
# checks it against the Python module, so change both together.

cdef enum:
    OPT_SGD = 0
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_RMSPROP = 3
    OPT_RMSPROP_MOMENTUM = 4
    OPT_RMSPROP_CENTERED = 5
    OPT_RMSPROP_CENTERED_MOMENTUM = 6
    OPT_ADAM = 7
    OPT_AMSGRAD = 8
    OPT_ADAGRAD = 9
    OPT_ADADELTA = 10
    OPT_ADAMAX = 11
    OPT_NADAM = 12
    OPT_COUNT = 13

cdef enum:
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

# Ops, merges and losses of step programs (fastlayers.engine.program).
cdef enum:
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

cdef enum:
    POOL_MAX = 0
    POOL_AVERAGE = 1

# The depthwise and transposed convolutions (csrc/_depthwise.pxd, csrc/_conv.pxd).
cdef enum:
    OP_DEPTHWISE = 13
    OP_CONV_TRANSPOSE = 14

cdef enum:
    MERGE_ADD = 0
    MERGE_SUBTRACT = 1
    MERGE_MULTIPLY = 2
    MERGE_AVERAGE = 3
    MERGE_MAXIMUM = 4
    MERGE_MINIMUM = 5

cdef enum:
    LOSS_MSE = 0
    LOSS_MAE = 1
    LOSS_BCE = 2
    LOSS_CE = 3
    LOSS_SPARSE_CE = 4
    LOSS_CALLBACK = 5

cdef inline double epsilon() noexcept nogil:
    # fastlayers._codes.EPSILON: losses clip probabilities to [eps, 1 - eps].
    return 1e-7


# Embedding, group normalization and PReLU ops (their own block: codes 13-14 are the
# depthwise/transposed convolutions').
cdef enum:
    OP_EMBEDDING = 15
    OP_GROUPNORM = 16
    OP_PRELU = 17

# How an EMBEDDING op reads its ids (fastlayers._codes.IDS_*): the program's float
# dtype (rounded to the nearest integer, as Embedding.forward) or an integer input.
cdef enum:
    IDS_FLOAT32 = 0
    IDS_FLOAT64 = 1
    IDS_INT32 = 2
    IDS_INT64 = 3
