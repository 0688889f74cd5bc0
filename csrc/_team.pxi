# Included by every kernel .pyx (`include "_team.pxi"` after its cimports): binds
# this extension module to the process-wide team record (see _team.pxd), so its
# loops use the team set by fastlayers.backend.set_num_threads from any thread.
#
# A new kernel module takes part by
#   1. `include "_team.pxi"` once, at module level after its cimports;
#   2. sizing every parallel region from _team.pxd, never from omp_get_max_threads():
#      `from _team cimport team` (or `team_for_step`, once per step in an executor,
#      which also puts scipy's BLAS back to one thread), then
#      `gemm_split(team(), ...)`, `nc = _chunks(size)` with `prange(nc, num_threads=nc)`,
#      and `num_threads=team()` on any other prange;
#   3. listing its stubs for the functions below in its .pyi.
# tests/test_threads.py checks that every built module is bound.
from openmp cimport omp_get_max_threads as _omp_get_max_threads

from libc.stdint cimport int64_t

from _team cimport fl_team_bind, fl_team_is_bound, fl_team_observe, team as _team_now


def _team_bound():
    """True once this module reads the process-wide team record (test hook)."""
    return fl_team_is_bound()


def get_team():
    """Threads this module's parallel loops would use if started from this thread."""
    return _team_now()


def _observe_split(int64_t region_ns, int64_t first_slice_ns):
    """Feed one split product's timing to the starvation guard (test hook)."""
    fl_team_observe(region_ns, first_slice_ns)


def _omp_max_threads():
    """omp_get_max_threads() in the calling thread (fastlayers._threads reads a new thread's)."""
    return _omp_get_max_threads()


cdef _bind_team():
    import fastlayers._threads as _threads_mod  # stdlib-only module: safe during `import fastlayers`

    fl_team_bind(_threads_mod.state_address(_omp_max_threads))


_bind_team()
