# Stubs for fastlayers._kernels.noise (csrc/noise.pyx): seeded counter-based fills.
import numpy as np

def normal_fill(
    out: np.ndarray,  # floating[::1] (size,) OUT: uses positions counter .. counter + 2 size
    seed: int,
    counter: int,
) -> None: ...
def uniform_fill(
    out: np.ndarray,  # floating[::1] (size,) OUT: uses positions counter .. counter + size
    seed: int,
    counter: int,
) -> None: ...
