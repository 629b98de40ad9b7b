/* What the library assumes of the CPU, in one place: the cache-line size
 * that shared counters are padded to, the spin-wait hint, and the byte
 * order. Everything else is portable C11 with GCC's __atomic builtins,
 * which compile to the right instructions and barriers on every target.
 * docs/PORTING.md says how a new architecture is added and tested.
 *
 * Supported: x86-64 (and i386), aarch64. Any other Linux target builds
 * with the generic fallbacks below (a 64-byte line, a compiler barrier as
 * the hint); it is untested. */
#ifndef MPOOL_ARCH_H
#define MPOOL_ARCH_H

/* Cache line. 64 bytes on every x86-64 CPU. On aarch64 64 too: the servers
 * this library runs on (Neoverse N1/V1/V2 in Graviton 2-4 and Grace, Ampere
 * Altra, Cavium ThunderX2) have 64-byte L1 and L2 lines, and Linux's arm64
 * L1_CACHE_BYTES is 64. 128 would only pay on cores whose prefetcher pulls
 * line pairs (Apple M-series, Cortex-A77 and similar): the same trade as
 * Intel's adjacent-line prefetcher, where the measured choice was 64, and
 * it doubles the padding of every object in the shared heap. A build may
 * override it (-DMPOOL__CACHELINE=128); all processes of a family run one
 * binary, so the shared layout stays consistent. */
#ifndef MPOOL__CACHELINE
#define MPOOL__CACHELINE 64
#endif
_Static_assert((MPOOL__CACHELINE & (MPOOL__CACHELINE - 1)) == 0 && MPOOL__CACHELINE >= 32,
               "the cache line is a power of two of at least 32 bytes");

/* A shared field on a cache line of its own; branch hints. */
#define MPOOL__ALIGNED     __attribute__((aligned(MPOOL__CACHELINE)))
#define MPOOL__LIKELY(x)   __builtin_expect(!!(x), 1)
#define MPOOL__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* One step of a spin-wait: tells the core that we wait, so that it saves
 * power and yields to its SMT sibling. The spin budgets in the sources are
 * counts of these steps, calibrated on x86, where a pause takes ~30 ns on
 * recent cores.
 *   x86:     pause.
 *   aarch64: isb, not yield. yield only helps SMT cores, which the arm64
 *            servers are not, and retires in about a cycle there, so a spin
 *            budget counted in yields would last a few ns. An isb drains the
 *            pipeline and takes tens of ns, the closest match to pause (it
 *            is also what Rust's spin_loop hint and several databases
 *            settled on for arm64).
 *   other:   a compiler barrier only: the loop re-reads memory. */
static inline void mpool__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("isb" ::: "memory");
#else
    __asm__ volatile("" ::: "memory");
#endif
}

/* Byte order. Two places rely on little-endian: the robust mutex's 64-bit
 * word, whose futex is the 32-bit half at the word's own address and must
 * be the half that holds the TID and WAIT bit (src/mutex.h); and the MPI
 * wire format (src/mpi_proto.h), which sends structs and int32s as raw
 * bytes between ranks that may be different hosts. Every supported target
 * is little-endian; a big-endian build fails here rather than at run time. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "libmpool assumes a little-endian target (see src/arch.h)");

#endif
