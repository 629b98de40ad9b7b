/* The robust mutex under every lock of the library (mpool_lock_t, the
 * shared heap's own lock, ...). Lives in shared memory; zero is unlocked.
 *
 * The word is 64 bits:
 *
 *   0                          unlocked
 *   start << 32 | tid          held by thread (tid, start), nobody asleep
 *   start << 32 | tid | WAIT   held, and some thread may sleep on it
 *
 * (tid, start) is mpool__self() of the holder: TID plus its start time, so a
 * recycled TID never passes for the dead holder. Only the low 32 bits (tid
 * and the WAIT bit) are the futex word; the kernel compares just those.
 *
 * Who changes it: an acquirer swaps 0 for itself (one CAS: the whole
 * uncontended acquire); a sleeper sets WAIT before sleeping; the holder
 * swaps itself for 0 (one CAS: the whole uncontended release) and calls
 * FUTEX_WAKE only if WAIT was set. A sleeper wakes every 10-50 ms to check
 * the holder in /proc; if it died, the sleeper swaps the dead holder's exact
 * word for itself, so it cannot steal from a holder that moved on, and
 * reports EOWNERDEAD. After contention an acquirer keeps WAIT set (it cannot
 * know whether others still sleep), as in Drepper's three-state mutex.
 */
#ifndef MPOOL_MUTEX_H
#define MPOOL_MUTEX_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "internal.h"

#define MPOOL__MUTEX_WAIT 0x80000000u

typedef struct {
    uint64_t word;
} mpool__mutex_t;

int mpool__mutex_lock_slow(mpool__mutex_t *m, uint64_t self, const struct timespec *deadline,
                           bool try_only);

/* The waiting half of mpool__mutex_lock with a public timeout. Out of line,
 * so that the fast path compiles to a leaf (no register saves around one
 * CAS): ~9.4 -> ~6.5 ns per uncontended acquire + release here. */
int mpool__mutex_lock_wait(mpool__mutex_t *m, uint64_t self, double timeout);

/* Acquires with a public timeout. 0, ETIMEDOUT, or EOWNERDEAD (acquired from
 * a dead holder). The fast path is one CAS and no system call. */
static inline int mpool__mutex_lock(mpool__mutex_t *m, double timeout)
{
    uint64_t self = mpool__self(), zero = 0;
    if (MPOOL_LIKELY(__atomic_compare_exchange_n(&m->word, &zero, self, false, __ATOMIC_ACQUIRE,
                                                 __ATOMIC_RELAXED)))
        return 0;
    return mpool__mutex_lock_wait(m, self, timeout);
}

/* Acquires with an absolute deadline (NULL = forever); for condition waits. */
static inline int mpool__mutex_lock_until(mpool__mutex_t *m, const struct timespec *deadline)
{
    uint64_t self = mpool__self(), zero = 0;
    if (__atomic_compare_exchange_n(&m->word, &zero, self, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED))
        return 0;
    return mpool__mutex_lock_slow(m, self, deadline, false);
}

int mpool__mutex_unlock_slow(mpool__mutex_t *m, uint64_t self);

/* Releases. 0, or EPERM if the calling thread is not the holder. */
static inline int mpool__mutex_unlock(mpool__mutex_t *m)
{
    uint64_t self = mpool__self(), expect = self;
    if (MPOOL_LIKELY(__atomic_compare_exchange_n(&m->word, &expect, 0, false, __ATOMIC_RELEASE,
                                                 __ATOMIC_RELAXED)))
        return 0;
    return mpool__mutex_unlock_slow(m, self);
}

static inline bool mpool__mutex_held(const mpool__mutex_t *m)
{
    return __atomic_load_n(&m->word, __ATOMIC_RELAXED) != 0;
}

static inline bool mpool__mutex_held_by_me(const mpool__mutex_t *m)
{
    return (__atomic_load_n(&m->word, __ATOMIC_RELAXED) & ~(uint64_t)MPOOL__MUTEX_WAIT) ==
           mpool__self();
}

#endif
