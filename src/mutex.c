#include "mutex.h"

#include <errno.h>

#include "futex.h"

/* A spin of about 1-2 us before sleeping: a hand-off through the kernel
 * costs ~60x a hand-off seen in shared memory, but there are only 2 CPUs,
 * so the spin must stay short. */
#define SPINS 64

/* First check of the holder's life after 10 ms asleep, then every 50 ms:
 * well inside MPOOL_OWNER_DEAD_BOUND (0.2 s), and a /proc read every 50 ms
 * costs a long waiter nothing noticeable. */
#define FIRST_CHECK 0.010
#define CHECK_EVERY 0.050

static bool try_take(mpool__mutex_t *m, uint64_t expect, uint64_t desired)
{
    return __atomic_compare_exchange_n(&m->word, &expect, desired, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

int mpool__mutex_lock_slow(mpool__mutex_t *m, uint64_t self, const struct timespec *deadline,
                           bool try_only)
{
    for (int i = 0; i < SPINS; i++) {
        uint64_t w = __atomic_load_n(&m->word, __ATOMIC_RELAXED);
        if (w == 0 && try_take(m, 0, self)) return 0;
        mpool__cpu_relax();
    }
    if (try_only) return ETIMEDOUT;

    double check_in = FIRST_CHECK;
    struct timespec check_at = mpool__deadline_min(NULL, check_in);
    for (;;) {
        uint64_t w = __atomic_load_n(&m->word, __ATOMIC_RELAXED);
        if (w == 0) {
            if (try_take(m, 0, self | MPOOL__MUTEX_WAIT)) return 0;
            continue;
        }
        if (!(w & MPOOL__MUTEX_WAIT)) {
            if (!__atomic_compare_exchange_n(&m->word, &w, w | MPOOL__MUTEX_WAIT, false,
                                             __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                continue;
            w |= MPOOL__MUTEX_WAIT;
        }
        struct timespec wake = check_at;
        bool until_deadline =
            deadline && (deadline->tv_sec < wake.tv_sec ||
                         (deadline->tv_sec == wake.tv_sec && deadline->tv_nsec < wake.tv_nsec));
        if (until_deadline) wake = *deadline;
        int r = mpool__futex_wait(&m->word, (uint32_t)w, &wake);
        if (r != ETIMEDOUT) continue;
        if (mpool__expired(&check_at)) {
            if (mpool__thread_dead(w & ~(uint64_t)MPOOL__MUTEX_WAIT) &&
                try_take(m, w, self | MPOOL__MUTEX_WAIT))
                return EOWNERDEAD;
            check_in = CHECK_EVERY;
            check_at = mpool__deadline_min(NULL, check_in);
        }
        if (mpool__expired(deadline)) return ETIMEDOUT;
    }
}

__attribute__((noinline)) int mpool__mutex_lock_wait(mpool__mutex_t *m, uint64_t self,
                                                     double timeout)
{
    struct timespec ts;
    bool limited = mpool__deadline(timeout, &ts);
    return mpool__mutex_lock_slow(m, self, limited ? &ts : NULL, timeout == 0);
}

int mpool__mutex_unlock_slow(mpool__mutex_t *m, uint64_t self)
{
    uint64_t w = __atomic_load_n(&m->word, __ATOMIC_RELAXED);
    if ((w & ~(uint64_t)MPOOL__MUTEX_WAIT) != self) return EPERM;
    /* Only the holder clears a held word, and others only add WAIT, so the
     * exchange cannot lose anyone's change. */
    w = __atomic_exchange_n(&m->word, 0, __ATOMIC_RELEASE);
    if (w & MPOOL__MUTEX_WAIT) mpool__futex_wake(&m->word, 1);
    return 0;
}
