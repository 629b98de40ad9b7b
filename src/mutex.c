#include "mutex.h"

#include <errno.h>

#include "futex.h"

/* A spin of about 1-2 us before sleeping: a hand-off through the kernel
 * costs ~60x a hand-off seen in shared memory, but there are only 2 CPUs,
 * so the spin must stay short. */
#define SPINS 64

/* First check of the holder's life once this thread has found the lock held
 * by the same holder for 10 ms (across calls), then every 50 ms: well
 * inside MPOOL_OWNER_DEAD_BOUND (0.2 s), and a /proc read (~8 us) every
 * 50 ms costs a waiter or a poller nothing noticeable. */
#define FIRST_CHECK 0.010
#define CHECK_EVERY 0.050

/* Per thread: when this thread first found a mutex held by a holder, so
 * that tries and short timed waits, each far shorter than FIRST_CHECK,
 * still add up to a check of the holder's life (issue 10, bug 6). A few
 * entries, so that a poller of several locks keeps them all; the oldest
 * goes. An entry never decides anything by itself: at worst a stale one
 * makes one /proc read early. Touched only on the slow path. */
#define NSEEN 4
typedef struct {
    const mpool__mutex_t *m;
    uint64_t holder;
    double check_at; /* CLOCK_MONOTONIC seconds */
} seen_t;
static __thread seen_t seen[NSEEN];
static __thread unsigned seen_next;

static seen_t *seen_find(const mpool__mutex_t *m, uint64_t holder, double now)
{
    seen_t *e = NULL;
    for (int i = 0; i < NSEEN && !e; i++)
        if (seen[i].m == m) e = &seen[i];
    if (!e) {
        e = &seen[seen_next];
        seen_next = (seen_next + 1) % NSEEN;
        e->m = m;
        e->holder = 0;
    }
    if (e->holder != holder) {
        e->holder = holder;
        e->check_at = now + FIRST_CHECK;
    }
    return e;
}

static bool try_take(mpool__mutex_t *m, uint64_t expect, uint64_t desired)
{
    return __atomic_compare_exchange_n(&m->word, &expect, desired, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

int mpool__mutex_lock_slow(mpool__mutex_t *m, uint64_t self, const struct timespec *deadline,
                           bool try_only)
{
    if (MPOOL__UNLIKELY(!self)) return mpool__self_error();
    for (int i = 0; i < SPINS; i++) {
        uint64_t w = __atomic_load_n(&m->word, __ATOMIC_RELAXED);
        if (w == 0 && try_take(m, 0, self)) return 0;
        mpool__cpu_relax();
    }
    /* A try never sleeps, so it never claims that anyone sleeps. */
    uint64_t mine = try_only ? self : self | MPOOL__MUTEX_WAIT;
    for (;;) {
        uint64_t w = __atomic_load_n(&m->word, __ATOMIC_RELAXED);
        if (w == 0) {
            if (try_take(m, 0, mine)) return 0;
            continue;
        }
        uint64_t holder = w & ~(uint64_t)MPOOL__MUTEX_WAIT;
        double now = mpool__now();
        seen_t *e = seen_find(m, holder, now);
        if (now >= e->check_at) {
            e->check_at = now + CHECK_EVERY;
            if (mpool__thread_dead(holder)) {
                if (try_take(m, w, self | (w & MPOOL__MUTEX_WAIT))) return EOWNERDEAD;
                continue; /* the word moved on: look again */
            }
        }
        if (try_only || mpool__expired(deadline)) return ETIMEDOUT;
        if (!(w & MPOOL__MUTEX_WAIT)) {
            if (!__atomic_compare_exchange_n(&m->word, &w, w | MPOOL__MUTEX_WAIT, false,
                                             __ATOMIC_RELAXED, __ATOMIC_RELAXED))
                continue;
            w |= MPOOL__MUTEX_WAIT;
        }
        struct timespec wake = mpool__deadline_min(deadline, e->check_at - now);
        (void)mpool__futex_wait(&m->word, (uint32_t)w, &wake);
    }
}

__attribute__((noinline)) int mpool__mutex_lock_wait(mpool__mutex_t *m, uint64_t self,
                                                     double timeout)
{
    if (MPOOL__UNLIKELY(!self)) return mpool__self_error();
    struct timespec ts;
    bool limited = mpool__deadline(timeout, &ts);
    return mpool__mutex_lock_slow(m, self, limited ? &ts : NULL, timeout == 0);
}

int mpool__mutex_unlock_slow(mpool__mutex_t *m, uint64_t self)
{
    uint64_t w = __atomic_load_n(&m->word, __ATOMIC_RELAXED);
    if (!self || (w & ~(uint64_t)MPOOL__MUTEX_WAIT) != self) return EPERM;
    /* Only the holder clears a held word, and others only add WAIT, so the
     * exchange cannot lose anyone's change. */
    w = __atomic_exchange_n(&m->word, 0, __ATOMIC_RELEASE);
    if (w & MPOOL__MUTEX_WAIT) mpool__futex_wake(&m->word, 1);
    return 0;
}
