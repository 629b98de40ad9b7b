/* Bounded MPMC queues in the shared heap.
 *
 * Design: a ring of fixed slots with two robust locks, one for the putters
 * (owns `tail`) and one for the getters (owns `head`) -- the two-lock queue
 * of Michael and Scott on a ring. A put and a get never take the same lock,
 * so one producer and one consumer run side by side; putters among
 * themselves (and getters among themselves) take turns.
 *
 * Why locks and not Vyukov's per-slot sequence numbers: a Vyukov ring claims
 * a position with a CAS on tail and only later publishes the slot; a process
 * killed in between leaves a hole that every later getter waits on, and
 * repairing it needs the claimant recorded atomically with the claim (a
 * 128-bit CAS, or a second CAS per item) plus a protocol to skip the hole --
 * and a getter killed after its claim loses an item that was acknowledged
 * to its producer. With the locks, every update is ordered so that a holder
 * killed at any instruction leaves a consistent ring, and the next holder
 * (which gets EOWNERDEAD from the robust mutex) simply goes on:
 *
 *   put: write the slot (invisible) -> publish tail (one store) -> unlock
 *   get: copy the slot out -> publish head (one store) -> unlock
 *
 * A putter killed before its tail store leaves nothing queued (its put never
 * returned); a getter killed before its head store leaves the item in the
 * queue for the next getter. Only a getter killed after its head store, that
 * is inside mpool_queue_get's last few instructions, takes its item with it.
 *
 * Cost: two uncontended CAS (lock, unlock) per operation on a line the
 * side's lock holder keeps in its cache, but each locked instruction also
 * waits for the slot's cache line to arrive. Measured with
 * bench/bench_queue.c (1 producer -> 1 consumer process, 8-byte items, 2
 * shared vCPUs, medians of interleaved runs): this queue 20-30 M items/s; a
 * Vyukov ring with no repair protocol 1.5-2.3x that; a raw SPSC ring
 * (no locks, no sleeping) 2.5-4x. Python's Queue: ~0.15 M items/s. We pay
 * the difference for a ring that a kill at any instruction leaves usable.
 *
 * Sleeping happens only at the edges: a getter that finds the queue empty
 * spins briefly, yields, then announces itself in `not_empty.waiters` and
 * sleeps on the futex word `not_empty.ev`; a putter wakes it only if that
 * count is non-zero (and the mirror image, `not_full`, for putters waiting
 * for room; `all_done` for join). Waiters re-check
 * every WAIT_SLICE seconds, so a process killed between publishing and
 * waking costs the sleepers at most that much delay, never a hang.
 */
#include <mpool/queue.h>
#include <mpool/shm.h>

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "futex.h"
#include "internal.h"
#include "mutex.h"
#include "wait.h"

/* The edges' wait policy (wait.h). 64 spins (pause each): about 1-2 us
 * here. Then 8 yields, before sleeping: when the other side shares our CPU
 * (the machine is busy, or has one CPU), spinning cannot help: a yield lets
 * it run, and since we have not announced ourselves it runs without waking
 * us for every item, filling (or draining) a whole batch. Measured: without
 * the yields, 1 -> 1 throughput fell from ~30 to ~1.2 M items/s whenever
 * the two shared a CPU (one context switch per item). Naps of at most
 * 0.1 s, unlike sync.h's objects: a process killed between publishing and
 * waking (or a waker that reset a live waiter's count, see edge_t) costs
 * the sleepers at most that much delay, never a hang. */
#define WAIT_SLICE 0.1
static const mpool__wait_policy_t edge_policy = {64, 8, WAIT_SLICE};

/* Wakes in a row that found nobody asleep before a waker decides that the
 * waiters count is stale (see edge_t). */
#define STALE_WAKES 64

/* A waiters count and the event word its sleepers wait on. */
typedef struct {
    /* Processes announced (about to) sleep on `ev`: incremented by a waiter
     * before its last check, decremented (never below 0) when it wakes; a
     * sleeper re-announces every WAIT_SLICE. A waiter killed asleep leaves
     * it too high, and every put (or get) would then pay a needless
     * FUTEX_WAKE forever; so after STALE_WAKES wakes in a row that woke
     * nobody, a waker resets it to 0. A live waiter that loses its count
     * that way was in its pre-sleep window: the waker's bump of `ev` stops
     * it from sleeping, and at worst a later sleeper waits one WAIT_SLICE. */
    uint32_t waiters;
    /* Futex word: bumped (any value, wrapping) by whoever makes the waited-for
     * condition true while `waiters` is non-zero, and by close. */
    uint32_t ev;
    /* Wakes in a row that found nobody asleep (a heuristic: racy updates
     * are harmless). */
    uint32_t idle_wakes;
} edge_t;

typedef struct {
    size_t len;
    unsigned char data[];
} slot_t;

struct mpool_queue {
    /* Constant after creation. mask: cap - 1 when cap is a power of two
     * (the default is), else 0: a slot index then costs an AND, not a
     * division, on the hot path. */
    size_t cap, mask, item_size, stride;
    bool joinable;
    unsigned char *slots;

    /* Putters' side: put_lock guards tail and head_cache. */
    mpool__mutex_t put_lock MPOOL__ALIGNED;
    uint64_t head_cache; /* a value head had; refreshed when the ring looks full */
    /* Items ever put; only the put_lock holder stores it, after the slot is
     * written (that store is the publication). Read by everyone. */
    uint64_t tail MPOOL__ALIGNED;

    /* Getters' side: get_lock guards head and tail_cache. */
    mpool__mutex_t get_lock MPOOL__ALIGNED;
    uint64_t tail_cache; /* a value tail had; refreshed when the ring looks empty */
    /* Items ever taken; only the get_lock holder stores it, after copying
     * the item out (that store frees the slot). Read by everyone. */
    uint64_t head MPOOL__ALIGNED;

    /* Edges: read on every operation, written only when someone waits. */
    edge_t not_empty MPOOL__ALIGNED; /* getters wait for an item */
    edge_t not_full;                 /* putters wait for room */
    edge_t all_done;                 /* join waits for done == tail */
    /* 0 open, 1 closed: set once, under put_lock, by close. */
    uint32_t closed;

    /* Joinable: task_done calls so far (CAS, never above tail). */
    uint64_t done MPOOL__ALIGNED;
};

/* Layout claims the code relies on. */
_Static_assert(offsetof(slot_t, data) == sizeof(size_t), "a slot is its length, then its bytes");
_Static_assert(_Alignof(slot_t) <= 8, "slots start at multiples of 8 (stride rounding)");
_Static_assert(offsetof(struct mpool_queue, put_lock) % MPOOL__CACHELINE == 0 &&
                   offsetof(struct mpool_queue, get_lock) % MPOOL__CACHELINE == 0 &&
                   offsetof(struct mpool_queue, tail) % MPOOL__CACHELINE == 0 &&
                   offsetof(struct mpool_queue, head) % MPOOL__CACHELINE == 0,
               "each side's lock and index start a cache line of their own");
_Static_assert(offsetof(struct mpool_queue, head_cache) < offsetof(struct mpool_queue, tail) &&
                   offsetof(struct mpool_queue, tail_cache) < offsetof(struct mpool_queue, head),
               "a side's lock and cache share a line; its published index is on the next");
_Static_assert(offsetof(edge_t, ev) % 4 == 0, "futex words are 4-byte aligned");

static slot_t *slot_at(const mpool_queue_t *q, uint64_t pos)
{
    size_t i = q->mask ? (size_t)pos & q->mask : (size_t)(pos % q->cap);
    return (slot_t *)(q->slots + i * q->stride);
}

static mpool_queue_t *queue_new(size_t maxsize, size_t item_size, bool joinable)
{
    if (maxsize == 0) maxsize = MPOOL_QUEUE_DEFAULT_MAXSIZE;
    size_t stride = (sizeof(slot_t) + item_size + 7) & ~(size_t)7;
    size_t head = (sizeof(mpool_queue_t) + MPOOL__CACHELINE - 1) & ~(size_t)(MPOOL__CACHELINE - 1);
    if (item_size == 0 || item_size > SIZE_MAX / 2 || maxsize > (SIZE_MAX - head) / stride) {
        errno = item_size == 0 ? EINVAL : ENOMEM;
        return NULL;
    }
    mpool_queue_t *q = mpool_shm_alloc(head + maxsize * stride);
    if (!q) {
        errno = ENOMEM;
        return NULL;
    }
    q->cap = maxsize;
    q->mask = (maxsize & (maxsize - 1)) == 0 ? maxsize - 1 : 0;
    q->item_size = item_size;
    q->stride = stride;
    q->joinable = joinable;
    q->slots = (unsigned char *)q + head;
    return q;
}

mpool_queue_t *mpool_queue_new(size_t maxsize, size_t item_size)
{
    return queue_new(maxsize, item_size, false);
}

mpool_queue_t *mpool_joinable_queue_new(size_t maxsize, size_t item_size)
{
    return queue_new(maxsize, item_size, true);
}

void mpool_queue_free(mpool_queue_t *q)
{
    mpool_shm_free(q);
}

/* ---- locks and edges -------------------------------------------------------- */

/* Takes a side's lock by an absolute deadline (NULL: none; try: once).
 * A dead holder is no error here: the update order above keeps the ring
 * consistent whatever instruction the holder died at. Dead holders are
 * noticed by mutex.c, for tries and short polls too (counted across calls).
 * 0, ETIMEDOUT, or the identity error of mpool__self() (EMFILE...). */
static int lock_side(mpool__mutex_t *m, uint64_t self, const struct timespec *deadline,
                     bool try_only)
{
    int r = mpool__mutex_lock_as(m, self, deadline, try_only);
    return r == EOWNERDEAD ? 0 : r;
}

/* Wakes every sleeper of an edge, if any announced itself. The caller made
 * the condition true with a seq_cst store or RMW just before, which pairs
 * with the waiter's seq_cst increment of `waiters` (Dekker): either the
 * waiter sees the new state, or we see the waiter. All are woken, not one:
 * a woken waiter may time out or die, and must not swallow the wake-up. */
static void edge_wake(edge_t *e)
{
    uint32_t w = __atomic_load_n(&e->waiters, __ATOMIC_SEQ_CST);
    if (MPOOL__LIKELY(w == 0)) return;
    __atomic_fetch_add(&e->ev, 1, __ATOMIC_SEQ_CST);
    if (mpool__futex_wake(&e->ev, INT32_MAX) > 0) {
        __atomic_store_n(&e->idle_wakes, 0, __ATOMIC_RELAXED);
    } else if (__atomic_add_fetch(&e->idle_wakes, 1, __ATOMIC_RELAXED) >= STALE_WAKES) {
        __atomic_store_n(&e->idle_wakes, 0, __ATOMIC_RELAXED);
        __atomic_compare_exchange_n(&e->waiters, &w, 0, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
    }
}

static void edge_wake_always(edge_t *e)
{
    __atomic_fetch_add(&e->ev, 1, __ATOMIC_SEQ_CST);
    mpool__futex_wake(&e->ev, INT32_MAX);
}

/* Waits until ready(q) may hold, or the deadline (wait.h, edge_policy).
 * 0 (check again) or ETIMEDOUT; a try never waits. */
static int edge_wait(mpool_queue_t *q, edge_t *e, mpool__ready_fn ready,
                     const struct timespec *deadline, bool try_only)
{
    if (try_only) return ETIMEDOUT;
    return mpool__wait(&edge_policy, &e->ev, &e->waiters, ready, q, deadline);
}

static bool is_closed(const mpool_queue_t *q)
{
    return __atomic_load_n(&q->closed, __ATOMIC_ACQUIRE) != 0;
}

static uint64_t load_head(const mpool_queue_t *q)
{
    return __atomic_load_n(&q->head, __ATOMIC_SEQ_CST);
}

static uint64_t load_tail(const mpool_queue_t *q)
{
    return __atomic_load_n(&q->tail, __ATOMIC_SEQ_CST);
}

static bool put_ready(const void *arg)
{
    const mpool_queue_t *q = arg;
    return is_closed(q) || load_tail(q) - load_head(q) < q->cap;
}

static bool get_ready(const void *arg)
{
    const mpool_queue_t *q = arg;
    return is_closed(q) || load_tail(q) != load_head(q);
}

/* ---- put and get ------------------------------------------------------------ */

/* One attempt under put_lock: 0 (queued), EPIPE, or EAGAIN (full). */
static int try_put(mpool_queue_t *q, const void *item, size_t len)
{
    if (is_closed(q)) return EPIPE;
    uint64_t t = q->tail;
    if (t - q->head_cache >= q->cap) {
        q->head_cache = __atomic_load_n(&q->head, __ATOMIC_ACQUIRE);
        if (t - q->head_cache >= q->cap) return EAGAIN;
    }
    slot_t *s = slot_at(q, t);
    s->len = len;
    if (len) memcpy(s->data, item, len);
    /* The publication. edge_wake's load of the waiters count must not pass
     * it: see mpool__mutex_unlock_fenced. */
    __atomic_store_n(&q->tail, t + 1, __ATOMIC_RELEASE);
    return 0;
}

int mpool_queue_put(mpool_queue_t *q, const void *item, size_t len, double timeout)
{
    if (!q || (!item && len)) return EINVAL;
    if (len > q->item_size) return EMSGSIZE;
    struct timespec ts;
    const struct timespec *deadline = mpool__wait_deadline(timeout, &ts);
    bool try_only = timeout == 0;
    uint64_t self = mpool__self();
    for (;;) {
        int r = lock_side(&q->put_lock, self, deadline, try_only);
        if (r) return r;
        r = try_put(q, item, len);
        mpool__mutex_unlock_fenced(&q->put_lock, self);
        if (r == 0) edge_wake(&q->not_empty);
        if (r != EAGAIN) return r;
        r = edge_wait(q, &q->not_full, put_ready, deadline, try_only);
        if (r) return r;
    }
}

/* One attempt under get_lock: 0 (taken), EMSGSIZE (kept), EPIPE (closed
 * and drained) or EAGAIN (empty). */
static int try_get(mpool_queue_t *q, void *buf, size_t cap, size_t *len)
{
    /* closed before tail: close sets it under put_lock after every put that
     * got in, so a queue seen closed and then empty stays empty. */
    bool closed = is_closed(q);
    uint64_t h = q->head;
    if (h == q->tail_cache) {
        q->tail_cache = __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE);
        if (h == q->tail_cache) return closed ? EPIPE : EAGAIN;
    }
    slot_t *s = slot_at(q, h);
    *len = s->len;
    if (s->len > cap) return EMSGSIZE;
    if (s->len) memcpy(buf, s->data, s->len);
    /* Frees the slot (ordered against edge_wake as tail in try_put). */
    __atomic_store_n(&q->head, h + 1, __ATOMIC_RELEASE);
    return 0;
}

int mpool_queue_get(mpool_queue_t *q, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!q || !len || (!buf && cap)) return EINVAL;
    struct timespec ts;
    const struct timespec *deadline = mpool__wait_deadline(timeout, &ts);
    bool try_only = timeout == 0;
    uint64_t self = mpool__self();
    for (;;) {
        int r = lock_side(&q->get_lock, self, deadline, try_only);
        if (r) return r;
        r = try_get(q, buf, cap, len);
        mpool__mutex_unlock_fenced(&q->get_lock, self);
        if (r == 0) edge_wake(&q->not_full);
        if (r != EAGAIN) return r;
        r = edge_wait(q, &q->not_empty, get_ready, deadline, try_only);
        if (r) return r;
    }
}

/* ---- state ------------------------------------------------------------------ */

size_t mpool_queue_qsize(mpool_queue_t *q)
{
    if (!q) return 0;
    /* head first: tail only grows, so tail - head cannot go negative. */
    uint64_t h = load_head(q), t = load_tail(q);
    uint64_t n = t - h;
    return n > q->cap ? q->cap : (size_t)n;
}

bool mpool_queue_empty(mpool_queue_t *q)
{
    return mpool_queue_qsize(q) == 0;
}

bool mpool_queue_full(mpool_queue_t *q)
{
    return q && mpool_queue_qsize(q) >= q->cap;
}

void mpool_queue_close(mpool_queue_t *q)
{
    if (!q) return;
    /* Under put_lock, so that no put is half-way: see try_get. */
    uint64_t self = mpool__self();
    int r = lock_side(&q->put_lock, self, NULL, false);
    if (r) { /* the caller's identity is unknown (see queue.h): left open */
        errno = r;
        return;
    }
    __atomic_store_n(&q->closed, 1, __ATOMIC_SEQ_CST);
    mpool__mutex_unlock_fenced(&q->put_lock, self);
    edge_wake_always(&q->not_empty);
    edge_wake_always(&q->not_full);
}

/* ---- joinable --------------------------------------------------------------- */

int mpool_queue_task_done(mpool_queue_t *q)
{
    if (!q || !q->joinable) return EINVAL;
    uint64_t d = __atomic_load_n(&q->done, __ATOMIC_SEQ_CST);
    do {
        if (d >= load_tail(q)) return ERANGE;
    } while (!__atomic_compare_exchange_n(&q->done, &d, d + 1, false, __ATOMIC_SEQ_CST,
                                          __ATOMIC_SEQ_CST));
    /* Only the task_done that may have finished everything wakes joiners;
     * a put racing with it means the work is not finished anyway. */
    if (d + 1 == load_tail(q)) edge_wake(&q->all_done);
    return 0;
}

static bool all_done(const void *arg)
{
    const mpool_queue_t *q = arg;
    return __atomic_load_n(&q->done, __ATOMIC_SEQ_CST) == load_tail(q);
}

int mpool_queue_join(mpool_queue_t *q, double timeout)
{
    if (!q || !q->joinable) return EINVAL;
    struct timespec ts;
    const struct timespec *deadline = mpool__wait_deadline(timeout, &ts);
    while (!all_done(q)) {
        int r = edge_wait(q, &q->all_done, all_done, deadline, timeout == 0);
        if (r) return r;
    }
    return 0;
}
