/* libmpool: synchronization objects in shared memory (Python's Lock, RLock,
 * Semaphore, BoundedSemaphore, Event, Condition and Barrier).
 *
 * Every object is allocated in the shared heap (see shm.h) and is usable by
 * every process of the family once a pointer to it reaches them -- also by
 * processes forked before the object was made. All of them wait on futexes
 * with the timeout convention of error.h: negative waits forever, 0 tries
 * once, positive waits at most that long; ETIMEDOUT when the wait ends
 * without success. Uncontended operations make no system call.
 *
 * Free an object only when no process uses it any more; freeing an object
 * that another process waits on is undefined. Free functions accept NULL.
 * Given NULL, a function that returns an error code returns EINVAL; the
 * others do nothing, or return false, 0 or -1.
 */
#ifndef MPOOL_SYNC_H
#define MPOOL_SYNC_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpool_lock mpool_lock_t;
typedef struct mpool_rlock mpool_rlock_t;
typedef struct mpool_sem mpool_sem_t;
typedef struct mpool_event mpool_event_t;
typedef struct mpool_cond mpool_cond_t;
typedef struct mpool_barrier mpool_barrier_t;

/* How long (seconds) a blocked acquirer of a Lock, RLock or Condition lock
 * may take, at most, to notice that the holder has died (its thread ended,
 * or its process exited or was killed) and take the lock with EOWNERDEAD.
 * A single wait shorter than this may still end with ETIMEDOUT, but the time
 * adds up across calls: a thread that only polls (timeout 0, or short
 * timeouts, in a loop) gets EOWNERDEAD from the first call made once the
 * bound has passed since its first call found that holder holding the lock.
 * (Changed in 1.1: before, polls never noticed a dead holder.) A holder that
 * calls exec() keeps its thread identity and is never seen as dead: release
 * locks before exec.
 *
 * Identity: a lock records its holder as thread id plus the thread's start
 * time, read from /proc/<tid>/stat at the thread's first lock call. When
 * that read fails -- EMFILE or ENFILE with a full descriptor table, ENOMEM,
 * or no /proc (ENOENT) -- the call fails with that errno as its result and
 * changes nothing; the next call tries again. The identity is never
 * guessed, so a live holder is never taken for a dead one. This applies to
 * every call that takes a lock: Lock, RLock, Condition, Barrier, and the
 * queue and shared-heap calls (queue.h, shm.h). New in 1.1 (before, such a
 * thread could be taken for dead while it held the lock). */
#define MPOOL_OWNER_DEAD_BOUND 0.2

/* ---- Lock: a mutex owned by one thread of one process. -------------------
 * Not recursive: acquiring a lock the caller holds waits (and times out). */

/* A new unlocked lock. NULL with errno ENOMEM when the shared heap is full. */
MPOOL_API mpool_lock_t *mpool_lock_new(void);

/* Acquires the lock, waiting up to `timeout`. Returns 0; ETIMEDOUT; or
 * EOWNERDEAD: the caller now holds the lock, but its previous holder died
 * holding it, so the data it protects may be inconsistent (the lock itself
 * works normally after). EINVAL for NULL; EMFILE (or another errno) when
 * the caller's identity cannot be established (see above): not acquired. */
MPOOL_API int mpool_lock_acquire(mpool_lock_t *l, double timeout);

/* Releases the lock. Returns 0, or EPERM if the calling thread does not
 * hold it (including an unlocked lock), EINVAL for NULL. Never blocks. */
MPOOL_API int mpool_lock_release(mpool_lock_t *l);

/* True while some thread holds the lock (a snapshot). */
MPOOL_API bool mpool_lock_locked(mpool_lock_t *l);

MPOOL_API void mpool_lock_free(mpool_lock_t *l);

/* ---- RLock: a recursive lock; the owner is a thread of a process. --------
 * Each acquire by the owner adds one level; each release removes one and the
 * last one unlocks. When the owner dies holding it, the next acquirer gets
 * it with EOWNERDEAD and a count of 1 (the dead owner's levels are gone). */

MPOOL_API mpool_rlock_t *mpool_rlock_new(void);

/* 0, ETIMEDOUT, EOWNERDEAD (acquired; see above), EINVAL for NULL,
 * EOVERFLOW when the owner already holds 2^32-1 levels, or the identity
 * error (EMFILE...; see above). Blocks up to
 * `timeout` when another thread holds it; the owner never blocks. */
MPOOL_API int mpool_rlock_acquire(mpool_rlock_t *l, double timeout);

/* 0, or EPERM if the caller is not the owner, EINVAL for NULL. Never
 * blocks. */
MPOOL_API int mpool_rlock_release(mpool_rlock_t *l);

MPOOL_API void mpool_rlock_free(mpool_rlock_t *l);

/* ---- Semaphore and BoundedSemaphore. -------------------------------------
 * A counter; acquire takes one (waiting while it is 0), release adds one. A
 * bounded semaphore refuses to go above its start value. The constructors
 * return NULL with errno EINVAL for a start value above INT_MAX, ENOMEM
 * when the shared heap is full. */

MPOOL_API mpool_sem_t *mpool_sem_new(unsigned value);
MPOOL_API mpool_sem_t *mpool_bounded_sem_new(unsigned value);

/* Takes one unit, waiting up to `timeout` while the value is 0. Returns 0,
 * ETIMEDOUT, or EINVAL for NULL. */
MPOOL_API int mpool_sem_acquire(mpool_sem_t *s, double timeout);

/* Adds one unit and wakes one waiter if any. Returns 0; ERANGE if bounded
 * and already at its start value (nothing changes); EOVERFLOW at INT_MAX;
 * EINVAL for NULL. Never blocks. */
MPOOL_API int mpool_sem_release(mpool_sem_t *s);

/* The current value (a snapshot), or -1 for NULL. */
MPOOL_API int mpool_sem_value(mpool_sem_t *s);

MPOOL_API void mpool_sem_free(mpool_sem_t *s);

/* ---- Event: a flag that waiters block on until it is set. ---------------- */

MPOOL_API mpool_event_t *mpool_event_new(void);

/* Sets the flag and wakes every waiter. Never blocks. */
MPOOL_API void mpool_event_set(mpool_event_t *e);

/* Clears the flag. Never blocks. */
MPOOL_API void mpool_event_clear(mpool_event_t *e);

MPOOL_API bool mpool_event_is_set(mpool_event_t *e);

/* Waits until the flag is set. Returns 0 once it is set -- also when a set
 * during the wait was undone by a clear before this waiter ran, as in
 * Python -- ETIMEDOUT, or EINVAL. */
MPOOL_API int mpool_event_wait(mpool_event_t *e, double timeout);

MPOOL_API void mpool_event_free(mpool_event_t *e);

/* ---- Condition: wait for a notification while holding a lock. ------------ */

/* A condition variable on `lock` (which must outlive it), or on a lock of
 * its own when `lock` is NULL. Waiters are woken oldest first. */
MPOOL_API mpool_cond_t *mpool_cond_new(mpool_lock_t *lock);

/* Acquire and release the condition's lock; same results as
 * mpool_lock_acquire and mpool_lock_release. */
MPOOL_API int mpool_cond_acquire(mpool_cond_t *c, double timeout);
MPOOL_API int mpool_cond_release(mpool_cond_t *c);

/* Releases the lock, waits for a notification, and takes the lock again
 * before returning -- also on timeout. The caller must hold the lock (EPERM
 * otherwise). Returns 0 (notified, or a spurious wake-up: re-check your
 * condition), ETIMEDOUT, or EOWNERDEAD (the lock was re-taken from a holder
 * that died); ENOMEM (lock still held, no wait) when the shared heap has no
 * room for a waiter record (128 bytes; records are kept and reused, so only
 * more simultaneous waiters than ever before need a new one). A waiter
 * killed while waiting never takes a notification from a live one. */
MPOOL_API int mpool_cond_wait(mpool_cond_t *c, double timeout);

/* Waits until pred(arg) is true, re-checking after every wake-up, with the
 * lock held around each check. Returns 0 once pred is true (at once if it is
 * true on entry), ETIMEDOUT if it is still false when `timeout` runs out,
 * EPERM if the caller does not hold the lock, EINVAL for a NULL c or pred,
 * ENOMEM as for mpool_cond_wait, or EOWNERDEAD once pred is true if the
 * lock had to be re-taken from a holder that died on the way. The lock is
 * held on return (except after EPERM and EINVAL). */
MPOOL_API int mpool_cond_wait_for(mpool_cond_t *c, bool (*pred)(void *arg), void *arg,
                                  double timeout);

/* Wakes at most `n` waiters, and exactly n when n or more wait (waiters
 * that died waiting are skipped and do not count). The caller must hold the
 * lock (EPERM otherwise). Returns 0. Never blocks: a waiter that does not
 * confirm its wake-up within a few microseconds is checked in /proc. */
MPOOL_API int mpool_cond_notify(mpool_cond_t *c, unsigned n);

/* Wakes every waiter. The caller must hold the lock (EPERM otherwise). */
MPOOL_API int mpool_cond_notify_all(mpool_cond_t *c);

MPOOL_API void mpool_cond_free(mpool_cond_t *c);

/* ---- Barrier: `parties` processes or threads wait for each other. -------- */

/* A barrier for `parties` (at least 1; EINVAL otherwise). */
MPOOL_API mpool_barrier_t *mpool_barrier_new(unsigned parties);

/* Waits until `parties` callers have arrived, then all pass. Each caller of a
 * pass gets a distinct *index in 0..parties-1 (index may be NULL). Returns 0;
 * ETIMEDOUT when this caller's wait ran out, which breaks the barrier for
 * everyone (so a timeout of 0 breaks it unless the caller is the last to
 * arrive, as in Python); MPOOL_EBROKEN when the barrier is or becomes broken
 * (at once on a broken barrier, until mpool_barrier_reset); EINVAL for NULL.
 * A party that dies before arriving leaves the pass short: the others wait
 * until a timeout breaks the barrier (one that dies while waiting has
 * arrived already and does not hold the pass up). A waiter that runs again
 * only after later passes went by still gets its own pass's outcome (e.g.
 * MPOOL_EBROKEN when a reset ended it), for up to 63 later passes; after
 * 64 or more it cannot be known and the result is MPOOL_EBROKEN. The
 * identity error (EMFILE...; see above) when the caller cannot take the
 * barrier's internal lock: it did not arrive. */
MPOOL_API int mpool_barrier_wait(mpool_barrier_t *b, double timeout, unsigned *index);

/* Breaks the barrier: current and future waiters get MPOOL_EBROKEN. If the
 * caller's identity cannot be established (see above), nothing changes and
 * errno says why; the same holds for mpool_barrier_reset. */
MPOOL_API void mpool_barrier_abort(mpool_barrier_t *b);

/* Returns the barrier to its empty, unbroken state; current waiters get
 * MPOOL_EBROKEN. */
MPOOL_API void mpool_barrier_reset(mpool_barrier_t *b);

MPOOL_API bool mpool_barrier_broken(mpool_barrier_t *b);

/* How many callers wait in the current pass (a snapshot). */
MPOOL_API unsigned mpool_barrier_n_waiting(mpool_barrier_t *b);

MPOOL_API void mpool_barrier_free(mpool_barrier_t *b);

#ifdef __cplusplus
}
#endif
#endif
