/* Internal helpers shared by the components: clocks and deadlines, the
 * calling thread's identity, and forking. Nothing here is exported. */
#ifndef MPOOL_INTERNAL_H
#define MPOOL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>

#include "arch.h" /* cache line, spin hint, byte order */

/* Exported in libmpool.so's MPOOL_PRIVATE version node (src/libmpool.map)
 * for libmpool_mpi, which is a library of its own: not API. */
#define MPOOL__PRIVATE __attribute__((visibility("default")))

/* ---- time ---------------------------------------------------------------
 * Waits use absolute CLOCK_MONOTONIC deadlines so that wake-ups and EINTR
 * never stretch a timeout. */

/* Now on CLOCK_MONOTONIC, in seconds. */
MPOOL__PRIVATE double mpool__now(void);

/* Converts a public timeout (negative = forever) into an absolute deadline.
 * Returns false for "forever" (and leaves *ts unset). */
bool mpool__deadline(double timeout, struct timespec *ts);

/* The earlier of a deadline (NULL = none) and now + `seconds`. */
MPOOL__PRIVATE struct timespec mpool__deadline_min(const struct timespec *deadline, double seconds);

/* True once an absolute deadline (NULL = never) has passed. */
bool mpool__expired(const struct timespec *deadline);

/* Seconds left until an absolute deadline (NULL = -1, forever), at least 0. */
double mpool__remaining(const struct timespec *deadline);

/* ---- identity -------------------------------------------------------------
 * A thread is named by its TID and its start time (clock ticks since boot,
 * low 32 bits), packed as start << 32 | tid. The pair is unique over the
 * machine's uptime, where a TID alone is reused within seconds (pid_max is
 * 32768 here). Cached per thread; reset in a forked child. */
extern __thread uint64_t mpool__self_id __attribute__((tls_model("initial-exec")));
uint64_t mpool__self_slow(void);

/* One TLS load on the lock fast paths (initial-exec: no call). */
static inline uint64_t mpool__self(void)
{
    uint64_t id = mpool__self_id;
    return __builtin_expect(id != 0, 1) ? id : mpool__self_slow();
}

static inline pid_t mpool__tid(void)
{
    return (pid_t)(uint32_t)mpool__self();
}

/* True when the thread named by `id` (as from mpool__self) has ended: it no
 * longer exists, is a zombie, or its TID now names a newer thread. */
bool mpool__thread_dead(uint64_t id);

/* ---- fork -------------------------------------------------------------------
 * Flushes stdio, then forks. In the child the identity cache is fresh and,
 * when `die_with_parent`, the child gets SIGKILL once the forking thread
 * ends (and exits at once if that already happened). Returns as fork(). */
pid_t mpool__fork(bool die_with_parent);

/* Ends a child the library forked: flush stdio, then _exit(code). */
__attribute__((noreturn)) void mpool__child_exit(int code);

/* ---- misc ---------------------------------------------------------------- */

/* Parses a size like "512M", "2G", "65536" (K, M, G, T suffixes, powers of
 * 1024). Returns false on anything else or overflow. */
bool mpool__parse_size(const char *s, size_t *out);

#endif
