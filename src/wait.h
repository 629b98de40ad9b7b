/* The one wait protocol of the library, for every "sleep until some shared
 * condition holds" outside the robust mutex (which has its own: mutex.c).
 *
 * A waiter:
 *   1. spins: re-checks its condition `spins` times with a pause between,
 *      then `yields` times with sched_yield between (lets a partner that
 *      shares our CPU run);
 *   2. announces: reads the futex word, raises the `sleepers` count
 *      (seq_cst), and re-checks the condition -- the re-check comes after
 *      the announcement, so a waker that changed the condition before it is
 *      seen here, and one that changes it after sees the count;
 *   3. sleeps: FUTEX_WAIT on the word while it keeps the value read in 2,
 *      at most `nap` seconds (0: until woken or the deadline), then leaves
 *      (lowers the count, never below 0: a waker may reset a stale count)
 *      and re-checks; and so on until the condition holds or the deadline.
 * A waker makes the condition true with a seq_cst store or RMW, changes the
 * futex word if the condition is not the word itself, then calls
 * mpool__wake, which makes the FUTEX_WAKE system call only if someone
 * announced a sleep (Dekker's pattern with step 2).
 *
 * Deadlines: an absolute CLOCK_MONOTONIC `const struct timespec *`, NULL
 * for forever, everywhere; mpool__wait_deadline makes one from a public
 * timeout. A killed waiter leaves its count raised: wakers then pay a
 * spare FUTEX_WAKE, never miss one. A killed waker (between its change and
 * its wake) leaves sleepers asleep until their nap ends: a policy whose
 * wakers may die mid-way (queue, pool) needs a nap.
 *
 * Callers name their policy next to their code and say why its numbers
 * differ. For a caller that must do its own work between naps (the pool's
 * health checks), mpool__wait_spin and mpool__wait_nap are the two halves
 * of mpool__wait, to be called in its own loop. */
#ifndef MPOOL_WAIT_H
#define MPOOL_WAIT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "internal.h"

typedef struct {
    unsigned spins;  /* re-checks with a pause between (~27 ns each here) */
    unsigned yields; /* then re-checks with sched_yield between */
    double nap;      /* longest single sleep in seconds; 0: no limit */
} mpool__wait_policy_t;

/* The policy of the objects of sync.h (Semaphore, Event, Barrier). 48
 * pauses: a pause measured 27 ns on these machines, so ~1.3 us, inside the
 * 1-2 us the design allows: long enough to catch a hand-off between two
 * running processes (an Event ping-pong round trip then takes 0.6-1 us,
 * against 6-15 us through the kernel), short enough not to steal one of the
 * 2 CPUs for long. A 5 us spin measured no better: when the partner sleeps,
 * its wake-up takes longer than that anyway. No yields and no nap: the
 * waker changes the futex word itself and wakes in the same call. */
static const mpool__wait_policy_t mpool__wait_sync = {48, 0, 0};

/* The condition a waiter waits for; must be cheap and side-effect free. */
typedef bool (*mpool__ready_fn)(const void *arg);

/* The deadline of a public timeout (negative: forever) in *ts, or NULL for
 * forever (no clock read then). NaN counts as 0, as in mpool__deadline. */
static inline const struct timespec *mpool__wait_deadline(double timeout, struct timespec *ts)
{
    return mpool__deadline(timeout, ts) ? ts : NULL;
}

/* Step 1: true as soon as ready(arg) holds, false after the policy's spins
 * and yields. Inline, so that a known ready function is inlined too.
 *
 * mpool__wait_spin_for: the same, but the yields also end once `seconds`
 * have passed since the first (0: no such bound). For waiters that share
 * the CPUs with busy partners (the pool's parent and workers): there one
 * yield may hand the CPU away for a whole time slice (milliseconds), and a
 * count of yields alone would outlast a short timeout many times over. */
bool mpool__wait_yield_for(const mpool__wait_policy_t *pol, double seconds, mpool__ready_fn ready,
                           const void *arg);
static inline bool mpool__wait_spin_for(const mpool__wait_policy_t *pol, double seconds,
                                        mpool__ready_fn ready, const void *arg)
{
    for (unsigned i = 0; i < pol->spins; i++) {
        if (ready(arg)) return true;
        mpool__cpu_relax();
    }
    return pol->yields ? mpool__wait_yield_for(pol, seconds, ready, arg) : ready(arg);
}
static inline bool mpool__wait_spin(const mpool__wait_policy_t *pol, mpool__ready_fn ready,
                                    const void *arg)
{
    return mpool__wait_spin_for(pol, 0, ready, arg);
}

/* Steps 2 and 3 once: announce on `sleepers`, re-check, sleep on `word` at
 * most `nap` (0: no limit) and until `deadline` (NULL: none), leave. True
 * when ready(arg) held at the re-check or after the sleep; false when it
 * did not (woken, timed out, interrupted: the caller decides). */
bool mpool__wait_nap(uint32_t *word, uint32_t *sleepers, mpool__ready_fn ready, const void *arg,
                     const struct timespec *deadline, double nap);

/* Steps 2 and 3 until ready(arg) holds (0) or `deadline` (NULL: never)
 * has passed without it (ETIMEDOUT), with naps of at most pol->nap. */
int mpool__wait_sleep(const mpool__wait_policy_t *pol, uint32_t *word, uint32_t *sleepers,
                      mpool__ready_fn ready, const void *arg, const struct timespec *deadline);

/* The whole protocol: 0 once ready(arg) holds, ETIMEDOUT once `deadline`
 * (NULL: never) has passed without it. */
static inline int mpool__wait(const mpool__wait_policy_t *pol, uint32_t *word, uint32_t *sleepers,
                              mpool__ready_fn ready, const void *arg,
                              const struct timespec *deadline)
{
    if (mpool__wait_spin(pol, ready, arg)) return 0;
    return mpool__wait_sleep(pol, word, sleepers, ready, arg, deadline);
}

/* The common case where the condition is "the futex word changed from
 * `val`" (semaphores, events, barriers): 0 once *word != val, ETIMEDOUT. */
typedef struct {
    const uint32_t *word;
    uint32_t val;
} mpool__change_t;

static inline bool mpool__changed(const void *arg)
{
    const mpool__change_t *c = arg;
    return __atomic_load_n(c->word, __ATOMIC_ACQUIRE) != c->val;
}

static inline int mpool__wait_change(const mpool__wait_policy_t *pol, uint32_t *word, uint32_t val,
                                     uint32_t *sleepers, const struct timespec *deadline)
{
    mpool__change_t c = {word, val};
    return mpool__wait(pol, word, sleepers, mpool__changed, &c, deadline);
}

/* The waker's half: wakes up to `n` sleepers of `word` (INT32_MAX: all),
 * with a system call only if someone announced a sleep. The caller made the
 * condition true (seq_cst) just before. Returns how many woke (0 when
 * nobody announced). */
int mpool__wake(uint32_t *word, const uint32_t *sleepers, int n);

#endif
