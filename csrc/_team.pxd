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
#
# Why the starvation guard: OpenMP's team waits for its slowest thread, and on a
# machine whose cores are busy with other work that thread is often not running
# at all (see fl_team_observe).  The split products time themselves and the team
# drops to one thread for a while when they keep waiting.
from libc.stdint cimport int64_t

cdef extern from *:
    """
    #include <omp.h>
    #include <stdint.h>
    #include <time.h>
    typedef struct {
        int team;             /* threads per parallel loop, >= 1 */
        int omp_default;      /* a new thread's omp_get_max_threads() */
        int (*blas_get)(void);
        void (*blas_set)(int);
        /* The starvation guard (fl_team_observe) */
        int slow;             /* net count of recent split products that waited */
        int level;            /* backoffs in a row: the next lasts 2**level/4 s */
        int64_t serial_until; /* CLOCK_MONOTONIC ns; team 1 until then, 0: none */
        int64_t serial_since; /* when the last backoff started */
    } fl_team_state;

    static fl_team_state fl_team_unbound = {1, 1, NULL, NULL, 0, 0, 0, 0};

    static inline int64_t fl_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    }
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
        int64_t until = __atomic_load_n(&fl_team_p->serial_until, __ATOMIC_RELAXED);
        if (cap < fl_team_p->omp_default && cap < t) t = cap;
        if (t > 1 && until != 0 && fl_now_ns() < until) t = 1;
        return t < 1 ? 1 : t;
    }

    /* After a split product: `region` ns for the whole parallel region, `first`
       ns for the first (largest) slice.  On a quiet machine the two differ by a
       few microseconds.  When another process holds a core, a team thread is
       descheduled and every region waits for it (a 1.3 ms step took 60 ms):
       after FL_SLOW_LIMIT net slow regions the kernels run single-threaded for
       a backoff of 0.25 s, doubling while it keeps happening (up to 8 s), then
       try the team again.  Races between Python threads only blur the count. */
    #define FL_SLOW_LIMIT 6
    #define FL_SLOW_MIN_NS 50000
    #define FL_LEVEL_MAX 5
    #define FL_LEVEL_RESET_NS 30000000000LL
    static inline void fl_team_observe(int64_t region, int64_t first) {
        fl_team_state *s = fl_team_p;
        int64_t wait = region - first, now, backoff;
        int slow = __atomic_load_n(&s->slow, __ATOMIC_RELAXED), level;
        if (wait <= (first > FL_SLOW_MIN_NS ? first : FL_SLOW_MIN_NS)) {
            if (slow > 0) __atomic_store_n(&s->slow, slow - 1, __ATOMIC_RELAXED);
            return;
        }
        if (++slow < FL_SLOW_LIMIT) {
            __atomic_store_n(&s->slow, slow, __ATOMIC_RELAXED);
            return;
        }
        now = fl_now_ns();
        level = __atomic_load_n(&s->level, __ATOMIC_RELAXED);
        if (now - __atomic_load_n(&s->serial_since, __ATOMIC_RELAXED) > FL_LEVEL_RESET_NS)
            level = 0;
        backoff = 250000000LL << level;
        __atomic_store_n(&s->level, level < FL_LEVEL_MAX ? level + 1 : FL_LEVEL_MAX,
                         __ATOMIC_RELAXED);
        __atomic_store_n(&s->slow, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&s->serial_since, now, __ATOMIC_RELAXED);
        __atomic_store_n(&s->serial_until, now + backoff, __ATOMIC_RELAXED);
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
    int64_t fl_now_ns() noexcept nogil
    void fl_team_observe(int64_t region, int64_t first) noexcept nogil


cdef inline int team() noexcept nogil:
    """Threads a parallel loop started from the calling thread should use (>= 1)."""
    return fl_team_size()


cdef inline int team_for_step() noexcept nogil:
    """team(), after making sure scipy's BLAS is single-threaded: once per step."""
    fl_blas_single()
    return fl_team_size()
