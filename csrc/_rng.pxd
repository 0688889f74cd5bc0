# Header-only counter-based random numbers for dropout masks.
#
# u(seed, i) = top 53 bits of mix64(mix64(seed) + i * GOLDEN) / 2**53, i.e. the
# i-th output of splitmix64 started from the hashed seed.  A pure function of
# (seed, i): no state to carry between threads or calls, any element can be
# computed on its own (so masks split over OpenMP threads), and the NumPy
# reference (fastlayers._reference.dropout_uniform) reproduces it bit for bit
# with uint64 wraparound arithmetic.  Hashing the seed first keeps nearby seeds
# (0, 1, 2, ...) from giving shifted copies of one stream.
from libc.math cimport ceil
from libc.stdint cimport uint64_t

cdef enum:
    _RNG_SHIFT = 11  # keep the top 53 bits: exactly representable in a double


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    """splitmix64's finalizer (Steele, Lea & Flood 2014); arithmetic wraps mod 2**64."""
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline uint64_t rng_key(uint64_t seed) noexcept nogil:
    return mix64(seed)


cdef inline uint64_t rng_bits(uint64_t key, uint64_t i) noexcept nogil:
    """The 53 bits behind rng_uniform(key, i), as an integer."""
    return mix64(key + i * <uint64_t>0x9E3779B97F4A7C15ULL) >> _RNG_SHIFT


cdef inline uint64_t rng_threshold(double rate) noexcept nogil:
    """T with rng_bits(key, i) >= T exactly when rng_uniform(key, i) >= rate.

    rate * 2**53 is exact in double, and the bits are integers, so comparing
    with its ceiling is the same test without an int-to-float conversion.
    """
    return <uint64_t>ceil(rate * 9007199254740992.0)


cdef inline double rng_uniform(uint64_t key, uint64_t i) noexcept nogil:
    """The uniform in [0, 1) at position i of the stream keyed by `key`."""
    return <double>rng_bits(key, i) * (1.0 / 9007199254740992.0)
