"""Build the Cython kernels in csrc/ into fastlayers._kernels.

The directives are set once here.  Release builds run without bounds checks (the
Python layer validates shapes and dtypes before any kernel call); set
FASTLAYERS_CYTHON_DEBUG=1 to turn boundscheck, wraparound and initializedcheck back
on for a debug build, which CI runs the kernel tests against.
"""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# One entry per csrc/<name>.pyx, built as fastlayers._kernels.<name>.
KERNELS = ("dense", "activations", "dropout", "batchnorm", "optim", "losses", "executor",
           "conv", "pool", "layernorm", "embedding", "noise", "param_act")

DEBUG = os.environ.get("FASTLAYERS_CYTHON_DEBUG", "0") not in ("", "0")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "embedsignature": True,
}


def _mode_changed() -> bool:
    """True when the last build here used the other set of directives.

    cythonize decides what to regenerate from timestamps only, so without this a
    release build right after a debug build (or the reverse) would silently keep
    the other mode's C files and extension modules.
    """
    mode = "debug" if DEBUG else "release"
    stamp = os.path.join("build", "fastlayers-cython-mode")
    try:
        with open(stamp) as f:
            previous = f.read().strip()
    except OSError:
        previous = None
    if previous != mode:
        os.makedirs("build", exist_ok=True)
        with open(stamp, "w") as f:
            f.write(mode)
    return previous != mode


extensions = [
    Extension(
        f"fastlayers._kernels.{name}",
        [f"csrc/{name}.pyx"],
        # -fno-math-errno: sqrt/exp need not set errno, so their loops vectorize
        # (results are unchanged: no finite-math or reassociation is allowed).
        extra_compile_args=["-O3", "-fopenmp", "-fno-math-errno"],
        extra_link_args=["-fopenmp"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in KERNELS
    if os.path.exists(f"csrc/{name}.pyx")
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["csrc"],
        compiler_directives=DIRECTIVES,
        # Regenerate everything when switching between debug and release.
        force=_mode_changed(),
    ),
)
