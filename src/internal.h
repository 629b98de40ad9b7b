/* Internal helpers shared by the components: clocks and deadlines, the
 * calling thread's identity, and forking. Nothing here is exported. */
#ifndef MPOOL_INTERNAL_H
#define MPOOL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
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
 * 32768 here). Cached per thread; reset in a forked child.
 *
 * The start time is read from /proc/<tid>/stat on a thread's first call.
 * When no descriptor is free (EMFILE, ENFILE), the read uses one descriptor
 * the library keeps in reserve from load time (see internal.c), so it works
 * with a full table too. Never guessed: if the identity still cannot be
 * established (the reserve is busy being re-armed by a racing thread, or
 * ENOMEM), mpool__self() returns 0 with errno set and caches nothing; a later
 * call tries again. Callers that store an identity (lock words, waiter
 * records) must fail with that errno on 0, never use 0 as an owner. Without
 * /proc mounted, the identity is the TID alone (start 0), and
 * mpool__thread_dead judges by the TID alone: consistent, if weaker. */
extern __thread uint64_t mpool__self_id __attribute__((tls_model("initial-exec")));
uint64_t mpool__self_slow(void);

/* The reserve descriptor's number, or -1: code that closes descriptors in
 * bulk (the fork server) must spare it, or the processes it forks would
 * have no reserve. */
int mpool__spare_fd(void);

/* One TLS load on the lock fast paths (initial-exec: no call). Nonzero, or 0
 * with errno set (EMFILE, ENFILE, ENOMEM, ...) as described above. */
static inline uint64_t mpool__self(void)
{
    uint64_t id = mpool__self_id;
    return __builtin_expect(id != 0, 1) ? id : mpool__self_slow();
}

/* The calling thread's TID, 0 if mpool__self() failed. */
static inline pid_t mpool__tid(void)
{
    return (pid_t)(uint32_t)mpool__self();
}

/* True when the thread named by `id` (as from mpool__self) has ended: it no
 * longer exists, is a zombie, or its TID now names a newer thread. When its
 * /proc entry cannot be read at all, only "no task has that TID" counts as
 * dead: errors lean towards "alive", so a live holder is never robbed. */
bool mpool__thread_dead(uint64_t id);

/* Reads /proc/<tid>/stat: the state letter (field 3), the parent's pid
 * (field 4; ppid may be NULL) and the start time (field 22, clock ticks
 * since boot). Works with a full descriptor table too (the reserve above).
 * Returns 0, or the errno of the failure (ENOENT: no such thread, or no
 * /proc; EIO: unreadable contents). */
int mpool__read_stat(pid_t tid, char *state, pid_t *ppid, uint64_t *start);

/* ---- fork -------------------------------------------------------------------
 * Flushes stdio, then forks. In the child the identity cache is fresh and,
 * when `die_with_parent`, the child gets SIGKILL once the forking thread
 * ends, and exits at once (status 1) if that thread already ended before the
 * child could arrange it: the check is by the thread's identity, so a thread
 * that ended while its process lives on counts. Returns as fork(); with
 * `die_with_parent` it may also fail before forking, with the errno of
 * mpool__self(). */
pid_t mpool__fork(bool die_with_parent);

/* The exit word of a child started by mpool_process_start, NULL in any
 * other process (reset by every fork). mpool__child_exit stores
 * MPOOL__EXIT_CODE | code there just before _exit, so that the parent learns
 * the code even when someone else reaps the child (see process.c). */
extern uint32_t *mpool__exit_word;
#define MPOOL__EXIT_CODE 0x100u

/* Ends a child the library forked: flush stdio, record the code in the exit
 * word if there is one, then _exit(code). */
__attribute__((noreturn)) void mpool__child_exit(int code);

/* ---- shared heap ----------------------------------------------------------- */

/* mpool_shm_alloc without the zeroing, for blocks the library fills whole
 * anyway (contents unspecified; same errors). */
void *mpool__shm_alloc_uninit(size_t size);

/* The heap's address range [*lo, *hi) (both NULL without a heap), for
 * callers that test many pointers (mpool_shm_contains, inline). */
void mpool__shm_range(const char **lo, const char **hi);

#endif
