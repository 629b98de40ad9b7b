/* The wait protocol of wait.h: the parts that sleep, out of line. */
#include "wait.h"

#include <sched.h>

#include "futex.h"

bool mpool__wait_yield_for(const mpool__wait_policy_t *pol, double seconds, mpool__ready_fn ready,
                           const void *arg)
{
    double end = seconds > 0 ? mpool__now() + seconds : 0; /* no clock read without a bound */
    for (unsigned i = 0; i < pol->yields; i++) {
        if (ready(arg)) return true;
        sched_yield();
        if (end > 0 && mpool__now() > end) break;
    }
    return ready(arg);
}

/* Lowers a sleepers count, never below 0 (a waker may have reset it). */
static void leave(uint32_t *sleepers)
{
    uint32_t n = __atomic_load_n(sleepers, __ATOMIC_RELAXED);
    while (n && !__atomic_compare_exchange_n(sleepers, &n, n - 1, false, __ATOMIC_SEQ_CST,
                                             __ATOMIC_RELAXED)) {
    }
}

bool mpool__wait_nap(uint32_t *word, uint32_t *sleepers, mpool__ready_fn ready, const void *arg,
                     const struct timespec *deadline, double nap)
{
    uint32_t seen = __atomic_load_n(word, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(sleepers, 1, __ATOMIC_SEQ_CST);
    bool ok = ready(arg);
    if (!ok) {
        struct timespec wake;
        const struct timespec *until = deadline;
        if (nap > 0) {
            wake = mpool__deadline_min(deadline, nap);
            until = &wake;
        }
        (void)mpool__futex_wait(word, seen, until);
    }
    leave(sleepers);
    return ok || ready(arg);
}

int mpool__wait_sleep(const mpool__wait_policy_t *pol, uint32_t *word, uint32_t *sleepers,
                      mpool__ready_fn ready, const void *arg, const struct timespec *deadline)
{
    for (;;) {
        if (mpool__wait_nap(word, sleepers, ready, arg, deadline, pol->nap)) return 0;
        if (mpool__expired(deadline)) return ETIMEDOUT;
    }
}

int mpool__wake(uint32_t *word, const uint32_t *sleepers, int n)
{
    if (__atomic_load_n(sleepers, __ATOMIC_SEQ_CST) == 0) return 0;
    return mpool__futex_wake(word, n);
}
