/* Synchronization objects in the shared heap: Lock, RLock, Semaphore,
 * BoundedSemaphore, Event and Condition (Barrier: barrier.c).
 *
 * Every object is one block of mpool_shm_alloc, so a pointer to it means the
 * same bytes in every process of the family. Waiting follows the protocol
 * of wait.h with the policy mpool__wait_sync: spin briefly on the word,
 * then announce the sleep in a `sleepers` count and FUTEX_WAIT on the word;
 * a waker calls FUTEX_WAKE only when that count is non-zero.
 *
 * A process killed while asleep leaves its `sleepers` increment behind: the
 * count then only costs wakers a spare FUTEX_WAKE, never a missed one.
 *
 * Lock choice: the library's own robust mutex (mutex.h) rather than glibc's
 * robust process-shared pthread mutex: one CAS each way with no system call
 * uncontended, 6.4 ns per acquire + release against 15.1 ns for glibc's
 * robust mutex and 7.9 ns for its plain process-shared one (bench_sync,
 * medians of 5), and owner death is still detected (by the sleeping
 * waiters, via /proc, within MPOOL_OWNER_DEAD_BOUND). Contended (two
 * processes, 10^6 increments each) it took 16 ms against glibc's 21 ms.
 */
#include <mpool/sync.h>

#include <limits.h>
#include <pthread.h>
#include <mpool/shm.h>

#include "futex.h"
#include "internal.h"
#include "mutex.h"
#include "wait.h"

/* ---- Lock ------------------------------------------------------------------ */

struct mpool_lock {
    mpool__mutex_t m; /* states and owners: see mutex.h */
};
_Static_assert(sizeof(struct mpool_lock) == sizeof(mpool__mutex_t), "a Lock is its mutex");

mpool_lock_t *mpool_lock_new(void)
{
    return mpool_shm_alloc(sizeof(mpool_lock_t));
}

int mpool_lock_acquire(mpool_lock_t *l, double timeout)
{
    if (MPOOL__UNLIKELY(!l)) return EINVAL;
    return mpool__mutex_lock(&l->m, timeout);
}

int mpool_lock_release(mpool_lock_t *l)
{
    if (MPOOL__UNLIKELY(!l)) return EINVAL;
    return mpool__mutex_unlock(&l->m);
}

bool mpool_lock_locked(mpool_lock_t *l)
{
    return l && mpool__mutex_held(&l->m);
}

void mpool_lock_free(mpool_lock_t *l)
{
    mpool_shm_free(l);
}

/* ---- RLock ----------------------------------------------------------------- */

struct mpool_rlock {
    mpool__mutex_t m; /* the owner: see mutex.h */
    /* Levels the owner holds: 1.. while held. Read and written only by the
     * thread that holds `m` (a new owner sets 1, so a dead owner's levels
     * vanish with it). */
    uint32_t count;
};

mpool_rlock_t *mpool_rlock_new(void)
{
    return mpool_shm_alloc(sizeof(mpool_rlock_t));
}

int mpool_rlock_acquire(mpool_rlock_t *l, double timeout)
{
    if (MPOOL__UNLIKELY(!l)) return EINVAL;
    if (mpool__mutex_held_by_me(&l->m)) {
        if (l->count == UINT32_MAX) return EOVERFLOW;
        l->count++;
        return 0;
    }
    int r = mpool__mutex_lock(&l->m, timeout);
    if (r == 0 || r == EOWNERDEAD) l->count = 1;
    return r;
}

int mpool_rlock_release(mpool_rlock_t *l)
{
    if (MPOOL__UNLIKELY(!l)) return EINVAL;
    if (!mpool__mutex_held_by_me(&l->m)) return EPERM;
    if (--l->count > 0) return 0;
    return mpool__mutex_unlock(&l->m);
}

void mpool_rlock_free(mpool_rlock_t *l)
{
    mpool_shm_free(l);
}

/* ---- Semaphore -------------------------------------------------------------- */

struct mpool_sem {
    /* The futex word: units available, 0..max. Acquirers take one with a
     * CAS while it is > 0; release adds one with a CAS that refuses to pass
     * `max`. Waiters sleep while it is 0. */
    uint32_t value;
    uint32_t sleepers; /* acquirers inside FUTEX_WAIT (see wait.h) */
    uint32_t max;      /* INT_MAX, or the start value of a bounded semaphore; fixed */
    uint32_t bounded;  /* 1 for a BoundedSemaphore; fixed */
};

static mpool_sem_t *sem_make(unsigned value, bool bounded)
{
    if (value > INT_MAX) {
        errno = EINVAL;
        return NULL;
    }
    mpool_sem_t *s = mpool_shm_alloc(sizeof *s);
    if (!s) return NULL;
    s->value = value;
    s->max = bounded ? value : INT_MAX;
    s->bounded = bounded;
    return s;
}

mpool_sem_t *mpool_sem_new(unsigned value)
{
    return sem_make(value, false);
}

mpool_sem_t *mpool_bounded_sem_new(unsigned value)
{
    return sem_make(value, true);
}

static bool sem_try(mpool_sem_t *s)
{
    uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    while (v > 0)
        if (__atomic_compare_exchange_n(&s->value, &v, v - 1, true, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return true;
    return false;
}

int mpool_sem_acquire(mpool_sem_t *s, double timeout)
{
    if (MPOOL__UNLIKELY(!s)) return EINVAL;
    if (sem_try(s)) return 0;
    struct timespec ts;
    const struct timespec *deadline = mpool__wait_deadline(timeout, &ts);
    for (;;) {
        int r = mpool__wait_change(&mpool__wait_sync, &s->value, 0, &s->sleepers, deadline);
        if (sem_try(s)) return 0;
        if (r == ETIMEDOUT) return ETIMEDOUT;
    }
}

int mpool_sem_release(mpool_sem_t *s)
{
    if (MPOOL__UNLIKELY(!s)) return EINVAL;
    uint32_t v = __atomic_load_n(&s->value, __ATOMIC_RELAXED);
    do {
        if (v >= s->max) return s->bounded ? ERANGE : EOVERFLOW;
    } while (!__atomic_compare_exchange_n(&s->value, &v, v + 1, true, __ATOMIC_SEQ_CST,
                                          __ATOMIC_RELAXED));
    /* One sleeper per unit now available: usually 1, but if a sleeper was
     * woken and then killed before taking its unit, the next release wakes
     * one more, so that unit does not wait forever next to live sleepers. */
    mpool__wake(&s->value, &s->sleepers, (int)(v + 1));
    return 0;
}

int mpool_sem_value(mpool_sem_t *s)
{
    return s ? (int)__atomic_load_n(&s->value, __ATOMIC_RELAXED) : -1;
}

void mpool_sem_free(mpool_sem_t *s)
{
    mpool_shm_free(s);
}

/* ---- Event ------------------------------------------------------------------ */

#define EVENT_SET 1u

struct mpool_event {
    /* The futex word: bit 0 the flag; bits 1..31 count the sets that found
     * the flag clear (wrapping). set() raises the flag and the count in one
     * CAS; clear() drops the flag only. Waiters sleep while the word keeps
     * the value they saw, so a set followed at once by a clear still
     * releases everyone who waited before it. */
    uint32_t state;
    uint32_t sleepers; /* waiters inside FUTEX_WAIT (see wait.h) */
};

mpool_event_t *mpool_event_new(void)
{
    return mpool_shm_alloc(sizeof(mpool_event_t));
}

void mpool_event_set(mpool_event_t *e)
{
    if (!e) return;
    uint32_t v = __atomic_load_n(&e->state, __ATOMIC_RELAXED);
    do {
        if (v & EVENT_SET) return;
    } while (!__atomic_compare_exchange_n(&e->state, &v, (v + 2) | EVENT_SET, true,
                                          __ATOMIC_SEQ_CST, __ATOMIC_RELAXED));
    mpool__wake(&e->state, &e->sleepers, INT_MAX);
}

void mpool_event_clear(mpool_event_t *e)
{
    if (e) __atomic_fetch_and(&e->state, ~EVENT_SET, __ATOMIC_RELAXED);
}

bool mpool_event_is_set(mpool_event_t *e)
{
    return e && (__atomic_load_n(&e->state, __ATOMIC_ACQUIRE) & EVENT_SET);
}

int mpool_event_wait(mpool_event_t *e, double timeout)
{
    if (MPOOL__UNLIKELY(!e)) return EINVAL;
    uint32_t v = __atomic_load_n(&e->state, __ATOMIC_ACQUIRE);
    if (v & EVENT_SET) return 0;
    if (timeout == 0) return ETIMEDOUT;
    struct timespec ts;
    /* With the flag clear, only a set changes the word (clear leaves it as
     * it is), so any change means "set since we looked". */
    return mpool__wait_change(&mpool__wait_sync, &e->state, v, &e->sleepers,
                              mpool__wait_deadline(timeout, &ts));
}

void mpool_event_free(mpool_event_t *e)
{
    mpool_shm_free(e);
}

/* ---- Condition -----------------------------------------------------------------
 *
 * Each wait puts a node of its own in the shared heap on a FIFO queue, under
 * the condition's lock, and sleeps on the node's word; notify(n) signals the
 * first n nodes, under the lock too. Counting waiters by nodes rather than
 * by a number makes "exactly n" exact, and lets the notifier tell a waiter
 * killed while waiting from a live one: a node whose signal nobody confirms
 * (no FUTEX_WAKE found it asleep, no acknowledgement within a short spin) is
 * checked in /proc, and a dead waiter's signal goes to the next node. So a
 * dead waiter never absorbs a notify meant for a live one, and the notifier
 * never waits on anyone for longer than that spin.
 *
 * Cost: nodes are kept on a spare list of the condition once used, so a
 * wait touches the shared heap (and its lock) only when more processes
 * wait at once than ever before. A woken waiter often finds the notifier still holding the
 * lock (in a cross-process ping-pong, 37% of wake-ups did) and then sleeps
 * once more on the lock. Moving sleepers onto the lock's futex instead
 * (FUTEX_CMP_REQUEUE, "wait morphing") was tried and measured no better on
 * these machines, and it needs periodic wake-ups to survive a notifier that
 * dies holding the lock, so it was left out.
 */

/* The node's futex word. Values and who sets them:
 *   QUEUED    the waiter, on enqueueing (under the lock); it spins
 *   SLEEPING  the waiter, CAS from QUEUED, just before FUTEX_WAIT
 *   SIGNALED  a notifier, CAS from QUEUED or SLEEPING (under the lock)
 *   WOKEN     the waiter, after seeing SIGNALED: proof that it is alive
 *   LEAVING   the waiter, CAS from QUEUED or SLEEPING when its time ran out;
 *             notifiers skip it, and it unlinks itself after relocking. */
enum { W_QUEUED = 0, W_SLEEPING, W_SIGNALED, W_WOKEN, W_LEAVING };

typedef struct waiter {
    uint32_t state;
    uint32_t linked;            /* 1 while on the queue; under the lock */
    uint64_t owner;             /* mpool__self() of the waiting thread */
    struct waiter *prev, *next; /* queue links; under the lock */
} waiter_t;
_Static_assert(sizeof(waiter_t) <= 64, "a waiter record fits the smallest heap block (sync.h)");

struct mpool_cond {
    mpool_lock_t *lock;    /* `own`, or the caller's lock */
    waiter_t *head, *tail; /* the waiting nodes, oldest first; under the lock */
    waiter_t *spare;       /* nodes no wait uses now, linked by `next`; under the lock */
    struct mpool_lock own;
};

/* How long (in pauses, ~3.5 us) a notifier waits for an acknowledgement
 * before it asks /proc whether the waiter still lives (a /proc read costs
 * ~8 us): a live, running waiter acknowledges within a few hundred ns. */
#define ACK_SPINS 128

mpool_cond_t *mpool_cond_new(mpool_lock_t *lock)
{
    mpool_cond_t *c = mpool_shm_alloc(sizeof *c);
    if (c) c->lock = lock ? lock : &c->own;
    return c;
}

int mpool_cond_acquire(mpool_cond_t *c, double timeout)
{
    return c ? mpool_lock_acquire(c->lock, timeout) : EINVAL;
}

int mpool_cond_release(mpool_cond_t *c)
{
    return c ? mpool_lock_release(c->lock) : EINVAL;
}

static void queue_push(mpool_cond_t *c, waiter_t *w)
{
    w->prev = c->tail;
    w->next = NULL;
    if (c->tail)
        c->tail->next = w;
    else
        c->head = w;
    c->tail = w;
    w->linked = 1;
}

static void queue_unlink(mpool_cond_t *c, waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        c->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        c->tail = w->prev;
    w->linked = 0;
}

/* The waiter's side, between releasing the lock and retaking it. Returns 0
 * when signalled, ETIMEDOUT when it left by itself. */
static int waiter_sleep(waiter_t *w, const struct timespec *deadline)
{
    for (unsigned i = 0; i < mpool__wait_sync.spins; i++) {
        if (__atomic_load_n(&w->state, __ATOMIC_ACQUIRE) == W_SIGNALED) goto signalled;
        mpool__cpu_relax();
    }
    uint32_t s = W_QUEUED;
    if (!__atomic_compare_exchange_n(&w->state, &s, W_SLEEPING, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        goto signalled;
    for (;;) {
        int r = mpool__futex_wait(&w->state, W_SLEEPING, deadline);
        if (__atomic_load_n(&w->state, __ATOMIC_ACQUIRE) == W_SIGNALED) goto signalled;
        if (r == ETIMEDOUT || mpool__expired(deadline)) {
            s = W_SLEEPING;
            if (__atomic_compare_exchange_n(&w->state, &s, W_LEAVING, false, __ATOMIC_ACQ_REL,
                                            __ATOMIC_ACQUIRE))
                return ETIMEDOUT;
            goto signalled; /* a notify won the race: it counted us */
        }
    }
signalled:
    __atomic_store_n(&w->state, W_WOKEN, __ATOMIC_RELEASE);
    return 0;
}

/* A node for a new wait, under the lock: a spare one, or a new one. */
static waiter_t *node_get(mpool_cond_t *c)
{
    waiter_t *w = c->spare;
    if (!w) return mpool_shm_alloc(sizeof *w);
    c->spare = w->next;
    w->state = W_QUEUED;
    return w;
}

/* Keeps an unlinked node for the next wait, under the lock. */
static void node_put(mpool_cond_t *c, waiter_t *w)
{
    w->next = c->spare;
    c->spare = w;
}

static int cond_wait_until(mpool_cond_t *c, const struct timespec *deadline)
{
    if (!c) return EINVAL;
    if (!mpool__mutex_held_by_me(&c->lock->m)) return EPERM;
    waiter_t *w = node_get(c);
    if (!w) return ENOMEM;
    w->owner = mpool__self();
    queue_push(c, w);
    mpool__mutex_unlock(&c->lock->m);
    int r = waiter_sleep(w, deadline);
    int relock = mpool__mutex_lock(&c->lock->m, MPOOL_FOREVER);
    /* Notifiers touch nodes only under the lock, so the node is ours now. */
    if (w->linked) queue_unlink(c, w);
    node_put(c, w);
    return relock ? relock : r;
}

int mpool_cond_wait(mpool_cond_t *c, double timeout)
{
    struct timespec ts;
    return cond_wait_until(c, mpool__wait_deadline(timeout, &ts));
}

int mpool_cond_wait_for(mpool_cond_t *c, bool (*pred)(void *arg), void *arg, double timeout)
{
    if (!c || !pred) return EINVAL;
    if (!mpool__mutex_held_by_me(&c->lock->m)) return EPERM;
    struct timespec ts;
    const struct timespec *deadline = mpool__wait_deadline(timeout, &ts);
    int owner_died = 0;
    while (!pred(arg)) {
        int r = cond_wait_until(c, deadline);
        if (r == EOWNERDEAD)
            owner_died = EOWNERDEAD;
        else if (r == ETIMEDOUT)
            return pred(arg) ? owner_died : ETIMEDOUT;
        else if (r)
            return r;
    }
    return owner_died;
}

enum { DELIVERED, SKIPPED, DEAD };

/* Signals one dequeued node; tells whether a live waiter got the signal. */
static int deliver(waiter_t *w)
{
    uint32_t s = __atomic_load_n(&w->state, __ATOMIC_ACQUIRE);
    do {
        if (s == W_LEAVING) return SKIPPED;
    } while (!__atomic_compare_exchange_n(&w->state, &s, W_SIGNALED, false, __ATOMIC_ACQ_REL,
                                          __ATOMIC_ACQUIRE));
    if (s == W_SLEEPING && mpool__futex_wake(&w->state, 1) == 1) return DELIVERED;
    for (int i = 0; i < ACK_SPINS; i++) {
        if (__atomic_load_n(&w->state, __ATOMIC_ACQUIRE) == W_WOKEN) return DELIVERED;
        mpool__cpu_relax();
    }
    /* Asleep but not found by FUTEX_WAKE, or slow to acknowledge: either it
     * was killed, or it is alive and will see SIGNALED when it runs. */
    return mpool__thread_dead(w->owner) ? DEAD : DELIVERED;
}

static int cond_notify(mpool_cond_t *c, unsigned n)
{
    if (!c) return EINVAL;
    if (!mpool__mutex_held_by_me(&c->lock->m)) return EPERM;
    for (unsigned woken = 0; woken < n && c->head;) {
        waiter_t *w = c->head;
        queue_unlink(c, w);
        int d = deliver(w);
        if (d == DELIVERED)
            woken++;
        else if (d == DEAD)
            node_put(c, w); /* its waiter will not */
    }
    return 0;
}

int mpool_cond_notify(mpool_cond_t *c, unsigned n)
{
    return cond_notify(c, n);
}

int mpool_cond_notify_all(mpool_cond_t *c)
{
    return cond_notify(c, UINT_MAX);
}

void mpool_cond_free(mpool_cond_t *c)
{
    if (!c) return;
    /* Nodes still queued belong to waiters that died waiting. */
    while (c->head) {
        waiter_t *w = c->head;
        queue_unlink(c, w);
        node_put(c, w);
    }
    while (c->spare) {
        waiter_t *w = c->spare;
        c->spare = w->next;
        mpool_shm_free(w);
    }
    mpool_shm_free(c);
}
