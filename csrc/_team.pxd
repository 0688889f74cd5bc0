# The team size every kernel runs with, and the guard that keeps scipy's BLAS
# single-threaded: header-only, cimported by _common.pxd, _blas.pxd and any kernel.
#
# Why one record in memory owned by Python: OpenMP's thread count (nthreads-var)
# is an ICV of the calling thread, so omp_set_num_threads() in one Python thread
# does not reach a kernel run from another.  The team size is therefore kept in
# one C record allocated by fastlayers._threads (a ctypes Structure with this
# layout) and every extension module reads it through a pointer bound when the
# module is imported (`include "_team.pxi"`).  A module that never binds reads
# the fallback record below and runs single-threaded: slow, never wrong.
#
# Why the BLAS pointers: the kernels split large products over their own team
# and make one single-threaded BLAS call per slice.  Anyone can change scipy's
# OpenBLAS thread count behind our back (threadpoolctl does); a 2-thread BLAS
# inside each slice of a 2-thread split was 70x slower.  Checking the count is
# one call returning a global, so every product re-asserts it.

cdef extern from *:
    """
    #include <omp.h>
    typedef struct {
        int team;             /* threads per parallel loop, >= 1 */
        int omp_default;      /* a new thread's omp_get_max_threads() */
        int (*blas_get)(void);
        void (*blas_set)(int);
    } fl_team_state;

    static fl_team_state fl_team_unbound = {1, 1, NULL, NULL};
    static fl_team_state *fl_team_p = &fl_team_unbound;

    static inline void fl_team_bind(size_t address) {
        if (address) fl_team_p = (fl_team_state *)address;
    }

    static inline int fl_team_is_bound(void) {
        return fl_team_p != &fl_team_unbound;
    }

    /* threadpoolctl limits OpenMP by omp_set_num_threads() in the calling
       thread: honour a limit below the runtime's default, ignore the rest. */
    static inline int fl_team_size(void) {
        int t = __atomic_load_n(&fl_team_p->team, __ATOMIC_RELAXED);
        int cap = omp_get_max_threads();
        if (cap < fl_team_p->omp_default && cap < t) t = cap;
        return t < 1 ? 1 : t;
    }

    static inline void fl_blas_single(void) {
        int (*get)(void) = fl_team_p->blas_get;
        if (get != NULL && get() != 1) fl_team_p->blas_set(1);
    }
    """
    void fl_team_bind(size_t address)
    bint fl_team_is_bound() noexcept nogil
    int fl_team_size() noexcept nogil
    void fl_blas_single() noexcept nogil


cdef inline int team() noexcept nogil:
    """Threads a parallel loop started from the calling thread should use (>= 1)."""
    return fl_team_size()


cdef inline int team_for_step() noexcept nogil:
    """team(), after making sure scipy's BLAS is single-threaded: once per step."""
    fl_blas_single()
    return fl_team_size()
