/* The robust mutex under every lock of the library (mpool_lock_t, RLock,
 * the Condition's and Barrier's locks, the queue's side locks, the shared
 * heap's own lock). This file and mutex.c are the only code that knows its
 * word. Lives in shared memory; zero is unlocked.
 *
 * The word is 64 bits:
 *
 *   0                          unlocked
 *   start << 32 | tid          held by thread (tid, start), nobody asleep
 *   start << 32 | tid | WAIT   held, and some thread may sleep on it
 *
 * (tid, start) is mpool__self() of the holder: TID plus its start time, so a
 * recycled TID never passes for the dead holder. Only the low 32 bits (tid
 * and the WAIT bit) are the futex word; the kernel compares just those. A
 * thread whose identity cannot be established (mpool__self() returns 0, e.g.
 * /proc/<tid>/stat cannot be opened under EMFILE) never takes the lock: the
 * call fails with that errno, so 0 is never stored as an owner and a live
 * holder is never taken for a dead one.
 *
 * Who changes it: an acquirer swaps 0 for itself (one CAS: the whole
 * uncontended acquire); a sleeper sets WAIT before sleeping; the holder
 * swaps itself for 0 (one CAS: the whole uncontended release) and calls
 * FUTEX_WAKE only if WAIT was set. Any acquirer that finds the lock held
 * by the same holder for FIRST_CHECK (mutex.c) -- counted across calls, so
 * tries and short timed polls count too -- asks /proc whether the holder
 * lives, then again every CHECK_EVERY; if it died, the acquirer swaps the
 * dead holder's exact word for itself, so it cannot steal from a holder that
 * moved on, and reports EOWNERDEAD. After contention an acquirer keeps WAIT
 * set (it cannot know whether others still sleep), as in Drepper's
 * three-state mutex.
 */
#ifndef MPOOL_MUTEX_H
#define MPOOL_MUTEX_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "internal.h"

#define MPOOL__MUTEX_WAIT 0x80000000u

typedef struct {
    uint64_t word;
} mpool__mutex_t;

/* The layout claims above: one 64-bit word whose low half (the futex word,
 * at the lowest address only on a little-endian machine) holds the tid and
 * WAIT; TIDs stay below 2^31 (pid_max is at most 2^22). */
_Static_assert(sizeof(mpool__mutex_t) == 8, "the mutex is one 64-bit word");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the futex half of the word must be its first 4 bytes");
_Static_assert((MPOOL__MUTEX_WAIT & 0xffffffffu) == MPOOL__MUTEX_WAIT,
               "WAIT must lie in the futex half");

/* The error of a call that needed mpool__self() and got 0: its errno
 * (EMFILE, ENFILE, ENOMEM...), or EAGAIN if it left none. */
static inline int mpool__self_error(void)
{
    return errno ? errno : EAGAIN;
}

/* Acquires for `self` (mpool__self() of the caller, maybe 0) by an absolute
 * deadline (NULL: none), or just tries when `try_only`. 0, ETIMEDOUT,
 * EOWNERDEAD (acquired from a dead holder), or the identity error when self
 * is 0. */
int mpool__mutex_lock_slow(mpool__mutex_t *m, uint64_t self, const struct timespec *deadline,
                           bool try_only);

/* The waiting half of mpool__mutex_lock with a public timeout. Out of line,
 * so that the fast path compiles to a leaf (no register saves around one
 * CAS): ~9.4 -> ~6.5 ns per uncontended acquire + release here. */
int mpool__mutex_lock_wait(mpool__mutex_t *m, uint64_t self, double timeout);

static inline bool mpool__mutex_try_fast(mpool__mutex_t *m, uint64_t self)
{
    uint64_t zero = 0;
    return MPOOL__LIKELY(self != 0) &&
           MPOOL__LIKELY(__atomic_compare_exchange_n(&m->word, &zero, self, false, __ATOMIC_ACQUIRE,
                                                     __ATOMIC_RELAXED));
}

/* Acquires with a public timeout. 0, ETIMEDOUT, EOWNERDEAD (acquired from
 * a dead holder), or the identity error (EMFILE...: not acquired). The
 * fast path is one CAS and no system call. */
static inline int mpool__mutex_lock(mpool__mutex_t *m, double timeout)
{
    uint64_t self = mpool__self();
    if (mpool__mutex_try_fast(m, self)) return 0;
    return mpool__mutex_lock_wait(m, self, timeout);
}

/* Acquires for a caller that computed `self` already, by an absolute
 * deadline (NULL: none) or once when `try_only`. Same results. */
static inline int mpool__mutex_lock_as(mpool__mutex_t *m, uint64_t self,
                                       const struct timespec *deadline, bool try_only)
{
    if (mpool__mutex_try_fast(m, self)) return 0;
    return mpool__mutex_lock_slow(m, self, deadline, try_only);
}

/* Acquires with an absolute deadline (NULL = forever); for condition waits. */
static inline int mpool__mutex_lock_until(mpool__mutex_t *m, const struct timespec *deadline)
{
    return mpool__mutex_lock_as(m, mpool__self(), deadline, false);
}

int mpool__mutex_unlock_slow(mpool__mutex_t *m, uint64_t self);

/* Releases for `self`. 0, or EPERM if that thread is not the holder (self 0
 * never is). */
static inline int mpool__mutex_unlock_as(mpool__mutex_t *m, uint64_t self)
{
    uint64_t expect = self;
    if (MPOOL__LIKELY(self != 0) &&
        MPOOL__LIKELY(__atomic_compare_exchange_n(&m->word, &expect, 0, false, __ATOMIC_RELEASE,
                                                  __ATOMIC_RELAXED)))
        return 0;
    return mpool__mutex_unlock_slow(m, self);
}

/* Releases. 0, or EPERM if the calling thread is not the holder. */
static inline int mpool__mutex_unlock(mpool__mutex_t *m)
{
    return mpool__mutex_unlock_as(m, mpool__self());
}

/* Releases, then orders the caller's stores before its following loads
 * (a waiters count it reads next): the store-load order of Dekker's
 * pattern, which release semantics alone do not give. On x86 the unlock is
 * a locked CAS, a full barrier already, so only the compiler needs telling;
 * this saves one fence per queue operation. Elsewhere: a real fence. */
static inline void mpool__mutex_unlock_fenced(mpool__mutex_t *m, uint64_t self)
{
    (void)mpool__mutex_unlock_as(m, self);
#if defined(__x86_64__) || defined(__i386__)
    __asm__ volatile("" ::: "memory");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline bool mpool__mutex_held(const mpool__mutex_t *m)
{
    return __atomic_load_n(&m->word, __ATOMIC_RELAXED) != 0;
}

static inline bool mpool__mutex_held_by_me(const mpool__mutex_t *m)
{
    uint64_t self = mpool__self();
    return self != 0 &&
           (__atomic_load_n(&m->word, __ATOMIC_RELAXED) & ~(uint64_t)MPOOL__MUTEX_WAIT) == self;
}

#endif
