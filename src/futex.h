/* The futex layer: wait and wake on 32-bit words in shared memory.
 *
 * Words are shared between processes, so never FUTEX_PRIVATE_FLAG. Waits
 * take an absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET), so a caller
 * that loops after EINTR or a spurious wake-up keeps its original deadline. */
#ifndef MPOOL_FUTEX_H
#define MPOOL_FUTEX_H

#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleeps while *word == expected, until woken or `deadline` (absolute,
 * CLOCK_MONOTONIC; NULL = no limit). Returns 0 when woken (maybe
 * spuriously), EAGAIN if *word != expected on entry, ETIMEDOUT, or EINTR.
 * Callers re-check their condition in every case. */
static inline int mpool__futex_wait(const void *word, uint32_t expected,
                                    const struct timespec *deadline)
{
    long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET, expected, deadline, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    return r == 0 ? 0 : errno;
}

/* Wakes up to `n` sleepers on `word` (INT32_MAX: all). Returns how many woke. */
static inline int mpool__futex_wake(const void *word, int n)
{
    long r = syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? 0 : (int)r;
}

#endif
