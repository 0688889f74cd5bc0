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


def register_blas_with_plan() -> None:
    """Give the fused step scipy's OpenBLAS thread functions, so it can run BLAS
    single-threaded while it splits products over its own OpenMP team."""
    from ._kernels import plan as _plan

    for lib in _openblas_handles():
        for prefix in ("scipy_openblas_", "openblas_"):
            for suffix in ("64_", ""):
                set_fn = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                get_fn = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if set_fn is not None and get_fn is not None:
                    _plan.set_blas_threads_functions(
                        ctypes.cast(set_fn, ctypes.c_void_p).value,
                        ctypes.cast(get_fn, ctypes.c_void_p).value)
                    return


def apply(n: Optional[int]) -> None:
    """Set OpenBLAS and OpenMP thread counts to ``n`` (None: the core count)."""
    n = n or (os.cpu_count() or 1)
    for lib in _openblas_handles():
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                    "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                break
    try:
        from ._kernels import dense as _dense

        setter = getattr(_dense, "set_omp_threads", None)
        if setter is not None:
            setter(n)
    except ImportError:
        pass
