"""Apply a thread bound to the BLAS and OpenMP runtimes fastlayers calls into."""
from __future__ import annotations

import ctypes
import glob
import os
from typing import Optional


def _openblas_handles():
    # scipy bundles its own OpenBLAS; the kernels call it through cython_blas.
    import scipy

    libdir = os.path.join(os.path.dirname(os.path.dirname(scipy.__file__)), "scipy.libs")
    for path in glob.glob(os.path.join(libdir, "libscipy_openblas*.so*")):
        try:
            yield ctypes.CDLL(path)
        except OSError:
            continue


def apply(n: Optional[int]) -> None:
    """Run the kernels on an OpenMP team of ``n`` threads (None: the core count).

    fastlayers splits every large matrix product over its own team (one
    single-threaded BLAS call per slice), so scipy's OpenBLAS -- the BLAS the
    kernels call -- is set to one thread.  Two thread pools that both spin while
    waiting (OpenMP's and OpenBLAS's) slowed a step by 50x on a 2-core machine.
    """
    n = n or (os.cpu_count() or 1)
    _set_blas_threads(1)
    try:
        from ._kernels import dense as _dense
    except ImportError:  # pragma: no cover - a source checkout without the build
        return
    _dense.set_omp_threads(n)


def _set_blas_threads(n: int) -> None:
    for lib in _openblas_handles():
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                    "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                break
