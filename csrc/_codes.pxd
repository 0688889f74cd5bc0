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
