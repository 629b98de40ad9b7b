/* libmpool: bounded multi-producer multi-consumer queues in shared memory
 * (Python's multiprocessing.Queue and JoinableQueue).
 *
 * A queue holds up to `maxsize` items of at most `item_size` bytes each, in
 * the shared heap; any process of the family may put and get. put is
 * synchronous: when it returns, the item is in shared memory (there is no
 * feeder thread, so joining a producer before the queue is drained never
 * deadlocks). Items from one producer arrive in the order it put them. A put
 * or get that finds the queue neither full nor empty makes no system call.
 * A producer or consumer killed in the middle of a put or get does not wedge
 * the queue for the others: they go on after a delay of about 10-60 ms (the
 * time to notice the death) -- also a caller that only polls with a timeout
 * of 0 or a few ms: the delay adds up across its calls (1.1; before, polls
 * shorter than 10 ms never got past the dead process). A put killed before it returned queued its
 * item or not, whole; a get killed before it returned left its item in the queue, unless it died in
 * its last few instructions, after taking it.
 *
 * Waiting: at an empty or full edge a call spins for about 2 us, yields the
 * CPU a few times, then sleeps on a futex until woken or its timeout ends.
 *
 * Every call that takes the queue's locks (put, get, close) needs the
 * calling thread's identity, as the locks of sync.h do: when it cannot be
 * established (EMFILE with a full descriptor table...; see sync.h) put and
 * get return that errno, and close leaves the queue open with errno set.
 */
#ifndef MPOOL_QUEUE_H
#define MPOOL_QUEUE_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpool_queue mpool_queue_t;

/* The capacity of a queue made with maxsize 0. */
#define MPOOL_QUEUE_DEFAULT_MAXSIZE 1024

/* A queue for up to `maxsize` items (0: MPOOL_QUEUE_DEFAULT_MAXSIZE) of at
 * most `item_size` bytes (at least 1). NULL with errno EINVAL or ENOMEM. */
MPOOL_API mpool_queue_t *mpool_queue_new(size_t maxsize, size_t item_size);

/* The same, with task_done and join. */
MPOOL_API mpool_queue_t *mpool_joinable_queue_new(size_t maxsize, size_t item_size);

/* Puts a copy of `len` bytes, waiting up to `timeout` while the queue is
 * full. Returns 0; ETIMEDOUT (full); EMSGSIZE (len > item_size; nothing
 * queued); EPIPE (closed); EINVAL; the identity error (EMFILE...: see above). */
MPOOL_API int mpool_queue_put(mpool_queue_t *q, const void *item, size_t len, double timeout);

/* Takes the oldest item into buf (capacity `cap`), setting *len to its size,
 * waiting up to `timeout` while the queue is empty. Returns 0; ETIMEDOUT
 * (empty); EPIPE (closed and drained); EMSGSIZE (cap too small: *len is set to
 * the size needed and the item stays in the queue); EINVAL; the identity
 * error (EMFILE...: see above). */
MPOOL_API int mpool_queue_get(mpool_queue_t *q, void *buf, size_t cap, size_t *len, double timeout);

/* Number of items in the queue (a snapshot); 0 for NULL. */
MPOOL_API size_t mpool_queue_qsize(mpool_queue_t *q);
MPOOL_API bool mpool_queue_empty(mpool_queue_t *q);
MPOOL_API bool mpool_queue_full(mpool_queue_t *q);

/* Closes the queue for every process: puts fail with EPIPE, gets drain what
 * is left and then fail with EPIPE. Wakes every waiter. Idempotent. */
MPOOL_API void mpool_queue_close(mpool_queue_t *q);

/* Joinable queues: marks one item taken with get as processed. Returns 0;
 * ERANGE if called more times than items were put; EINVAL if the queue is
 * not joinable. */
MPOOL_API int mpool_queue_task_done(mpool_queue_t *q);

/* Joinable queues: waits until every item put has been marked task_done
 * (items taken but not yet task_done keep it waiting). Returns 0, ETIMEDOUT,
 * or EINVAL if the queue is not joinable. */
MPOOL_API int mpool_queue_join(mpool_queue_t *q, double timeout);

/* Frees the queue. No process may use it after. NULL is accepted. */
MPOOL_API void mpool_queue_free(mpool_queue_t *q);

#ifdef __cplusplus
}
#endif
#endif
