/* Barrier: `parties` processes or threads wait for each other (sync.h).
 * One block of the shared heap; arrivals, ends of passes, abort and reset
 * change its state under its robust mutex, and waiters sleep on the state
 * word unlocked, by the protocol of wait.h (policy mpool__wait_sync). */
#include <mpool/shm.h>
#include <mpool/sync.h>

#include <limits.h>
#include <stddef.h>

#include "internal.h"
#include "mutex.h"
#include "wait.h"

/* ---- Barrier ------------------------------------------------------------------ */

/* The futex word: pass << 2 | AFTER_RESET | BROKEN.
 *   pass         counts passes (30 bits, wrapping); +1 when the last party
 *                arrives, and on reset
 *   BROKEN       this pass is broken: abort, or a wait that timed out; every
 *                wait fails at once until reset
 *   AFTER_RESET  the previous pass ended by reset, not by its parties all
 *                arriving: its waiters fail with MPOOL_EBROKEN
 * Changed only under the barrier's mutex; waiters sleep on it unlocked.
 *
 * The word tells a waiter how its pass ended only while the pass after it
 * is current. A waiter descheduled longer (a reset, then a whole pass of
 * other parties) reads `ended_by_reset` under the mutex: bit (p % 64) says
 * whether pass p ended by reset, for the last 64 passes (issue 10, bug 12). */
#define B_BROKEN      1u
#define B_AFTER_RESET 2u
#define B_PASS_ONE    4u
#define B_PASS_MASK   0x3fffffffu
#define B_HISTORY     64u

_Static_assert((B_PASS_MASK + 1u) % B_HISTORY == 0, "history bits must survive the pass wrap");

struct mpool_barrier {
    mpool__mutex_t m;        /* guards every change of state and count */
    uint32_t state;          /* see above */
    uint32_t sleepers;       /* waiters inside FUTEX_WAIT (see wait.h) */
    uint32_t count;          /* arrivals in the current pass, 0..parties-1; under m */
    uint32_t parties;        /* fixed */
    uint64_t ended_by_reset; /* see above; under m */
};
_Static_assert(offsetof(struct mpool_barrier, state) % 4 == 0, "the futex word is 4-byte aligned");
_Static_assert(sizeof(struct mpool_barrier) <= 64, "one smallest heap block");

mpool_barrier_t *mpool_barrier_new(unsigned parties)
{
    if (parties == 0) {
        errno = EINVAL;
        return NULL;
    }
    mpool_barrier_t *b = mpool_shm_alloc(sizeof *b);
    if (b) b->parties = parties;
    return b;
}

/* 0, or the identity error (EMFILE...: see mutex.h): not locked. */
static int barrier_lock(mpool_barrier_t *b)
{
    /* EOWNERDEAD: a party died inside a few stores; state stays consistent. */
    int r = mpool__mutex_lock(&b->m, MPOOL_FOREVER);
    return r == EOWNERDEAD ? 0 : r;
}

/* Installs a new state (count back to 0), unlocks, wakes every sleeper. */
static void barrier_publish(mpool_barrier_t *b, uint32_t state)
{
    b->count = 0;
    __atomic_store_n(&b->state, state, __ATOMIC_SEQ_CST);
    mpool__mutex_unlock(&b->m);
    mpool__wake(&b->state, &b->sleepers, INT_MAX);
}

static uint32_t pass_of(uint32_t state)
{
    return (state >> 2) & B_PASS_MASK;
}

/* Ends the current pass, by its last arrival or by reset; under m. */
static void barrier_end_pass(mpool_barrier_t *b, bool by_reset)
{
    uint32_t pass = pass_of(b->state);
    uint64_t bit = (uint64_t)1 << (pass % B_HISTORY);
    b->ended_by_reset = by_reset ? b->ended_by_reset | bit : b->ended_by_reset & ~bit;
    barrier_publish(b, ((b->state & ~3u) + B_PASS_ONE) | (by_reset ? B_AFTER_RESET : 0));
}

/* How the pass that began with word `mine` ended, for a waiter that saw the
 * word change. */
static int barrier_outcome(mpool_barrier_t *b, uint32_t mine)
{
    uint32_t now = __atomic_load_n(&b->state, __ATOMIC_ACQUIRE);
    uint32_t passes = (pass_of(now) - pass_of(mine)) & B_PASS_MASK;
    if (passes == 0) return MPOOL_EBROKEN; /* only BROKEN changes it */
    if (passes == 1) return (now & B_AFTER_RESET) ? MPOOL_EBROKEN : 0;
    /* Our identity is cached since our arrival, so this lock cannot fail. */
    (void)barrier_lock(b);
    passes = (pass_of(b->state) - pass_of(mine)) & B_PASS_MASK;
    bool by_reset = (b->ended_by_reset >> (pass_of(mine) % B_HISTORY)) & 1;
    mpool__mutex_unlock(&b->m);
    /* Past the history nobody can tell: broken is the answer that makes
     * the caller resynchronize (documented in sync.h). */
    return passes >= B_HISTORY || by_reset ? MPOOL_EBROKEN : 0;
}

int mpool_barrier_wait(mpool_barrier_t *b, double timeout, unsigned *index)
{
    if (!b) return EINVAL;
    struct timespec ts;
    const struct timespec *deadline = mpool__wait_deadline(timeout, &ts);
    int r = barrier_lock(b);
    if (r) return r;
    uint32_t mine = b->state;
    if (mine & B_BROKEN) {
        mpool__mutex_unlock(&b->m);
        return MPOOL_EBROKEN;
    }
    unsigned idx = b->count++;
    if (index) *index = idx;
    if (b->count == b->parties) {
        barrier_end_pass(b, false);
        return 0;
    }
    mpool__mutex_unlock(&b->m);
    if (mpool__wait_change(&mpool__wait_sync, &b->state, mine, &b->sleepers, deadline) ==
        ETIMEDOUT) {
        (void)barrier_lock(b); /* cannot fail: see barrier_outcome */
        if (b->state == mine) {
            barrier_publish(b, mine | B_BROKEN);
            return ETIMEDOUT;
        }
        mpool__mutex_unlock(&b->m); /* the pass ended as our time ran out */
    }
    return barrier_outcome(b, mine);
}

void mpool_barrier_abort(mpool_barrier_t *b)
{
    if (!b) return;
    int r = barrier_lock(b);
    if (r) {
        errno = r;
        return;
    }
    barrier_publish(b, b->state | B_BROKEN);
}

void mpool_barrier_reset(mpool_barrier_t *b)
{
    if (!b) return;
    int r = barrier_lock(b);
    if (r) {
        errno = r;
        return;
    }
    barrier_end_pass(b, true);
}

bool mpool_barrier_broken(mpool_barrier_t *b)
{
    return b && (__atomic_load_n(&b->state, __ATOMIC_ACQUIRE) & B_BROKEN);
}

unsigned mpool_barrier_n_waiting(mpool_barrier_t *b)
{
    if (!b || mpool_barrier_broken(b)) return 0;
    return __atomic_load_n(&b->count, __ATOMIC_RELAXED);
}

void mpool_barrier_free(mpool_barrier_t *b)
{
    mpool_shm_free(b);
}
