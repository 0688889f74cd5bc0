# Stubs for fastlayers._kernels.embedding (csrc/embedding.pyx).  ids are int64,
# C-contiguous, each in [0, vocab) (checked: ValueError otherwise).
import numpy as np

def embedding_forward(
    ids: np.ndarray,  # const int64_t[::1] (m,)
    W: np.ndarray,  # const floating[:, ::1] (vocab, dim)
    Y: np.ndarray,  # floating[:, ::1] (m, dim) OUT
) -> None: ...
def embedding_backward(
    ids: np.ndarray,  # const int64_t[::1] (m,)
    dY: np.ndarray,  # const floating[:, ::1] (m, dim)
    dW: np.ndarray,  # floating[:, ::1] (vocab, dim) IN/OUT: rows ids[i] += dY[i]
) -> None: ...
