/* The Pool's front end, inside: what src/pool.c (lifetime, submission,
 * asyncs) and src/pool_iter.c (iterators) share. The backends never see
 * this: they get the narrow seam of pool_backend.h.
 *
 * A handle (async or iterator) is private memory of the submitting
 * process; the job it names lives in the shared heap. Every public call on
 * a pool or a handle runs between mpool__pool_enter and mpool__pool_leave
 * (see src/pool.c, "callers in flight"). */
#ifndef MPOOL_POOL_FRONT_H
#define MPOOL_POOL_FRONT_H

#include "internal.h"
#include "pool_backend.h"

/* The caller-side record of one submitted job (map_async, apply_async, and
 * the core of an iterator). Private memory of the submitting process. */
struct mpool_async {
    mpool_pool_t *pool;
    mpool__job_t *job;
    void *user_out; /* where results must end up (NULL for iterators) */
    char *staging;  /* job->out when it is not user_out: freed with the job */
    char *in_copy;  /* job->in when it is a copy: freed with the job */
    size_t staging_size, in_copy_size;
    size_t complete;                 /* chunks [0, complete) are known complete */
    bool ready;                      /* every item done (and, if staged, copied out) */
    bool orphan;                     /* the user freed the handle before ready */
    struct mpool_async *next, *prev; /* pool->live */
    struct mpool__bytes *bytes;      /* bytes items (src/pool_bytes.c), else NULL */
    /* The handle of a source iterator (src/pool_source.c), which has no job
     * of its own: its batches are handles of their own in pool->live. */
    struct mpool__source *source;
};

struct mpool_iter {
    struct mpool_async a;
    bool ordered;
    size_t chunk; /* chunk being handed out (imap: in order) */
    size_t item;  /* next item of that chunk to hand out, or SIZE_MAX: none */
    size_t scan;  /* imap_unordered: chunks below are all reported */
    size_t left;  /* items not yet handed out */
    /* The last item handed out with a failure code (mpool_iter_failure):
     * last_code 0 when the last one succeeded, or none was handed out. */
    size_t last;
    int last_code, last_status;
};

/* One call, as the public functions pass it to mpool__submit. */
typedef struct {
    mpool_task_fn fn;
    const void *in;
    void *out; /* NULL: results stay in staging (iterators) */
    void *ctx; /* handed to fn: the pool's opts.ctx, or the bytes record */
    size_t n, in_size, out_size, chunksize;
} mpool__call_t;

/* The chunk size a call of n items gets (0: Python's rule), bounded so that
 * chunk counts fit the progress words. */
size_t mpool__pick_chunksize(const mpool_pool_t *p, size_t n, size_t chunksize);

/* Shared blocks for copies and staging, under p->lock: from CACHE_MIN up
 * they are kept for the next call (src/pool.c), contents unspecified. */
void *mpool__stage_alloc(mpool_pool_t *p, size_t size);
void mpool__stage_free(mpool_pool_t *p, void *ptr, size_t size);

/* True when [ptr, ptr + len) lies in the shared heap (len > 0). */
bool mpool__in_heap(const void *ptr, size_t len);

/* Counts a call in flight; false (and not counted) once a free began. */
bool mpool__pool_enter(mpool_pool_t *p);
void mpool__pool_leave(mpool_pool_t *p);

/* Submits a call; `size` is that of the handle (async or iterator), which
 * starts with its mpool_async. NULL with errno (EINVAL, ENOMEM). */
mpool_async_t *mpool__submit(mpool_pool_t *p, const mpool__call_t *c, size_t size);

/* Waits until cond(arg) holds: 0, or ETIMEDOUT. With a job, sleeps until
 * the whole job is done; without, wakes at every finished chunk. */
int mpool__pool_wait(mpool_pool_t *p, bool (*cond)(void *), void *arg, mpool__job_t *job,
                     double timeout);

/* True once every chunk of the job is complete (then results are out). */
bool mpool__async_check(mpool_async_t *a);

/* Item i's failure code (0: it succeeded) and status, with the failures
 * that only the caller's process knows (bytes: no memory for the copy). */
int mpool__async_item_code(const mpool_async_t *a, size_t i, int *status);

/* ---- failures (src/pool_failure.c) ---- */

/* Fills *f for item i: 0, or ENODATA when it did not fail. */
int mpool__failure_fill(mpool_async_t *a, size_t i, mpool_failure_t *f);

/* The handle just became ready: keeps the job's failure details until the
 * job is freed. */
void mpool__failures_job_ready(mpool_async_t *a);

/* Item i's status, once the handle is ready: its failures were harvested
 * (`status`: what the job's own record said). */
int mpool__failure_status(mpool_async_t *a, size_t i, int status);

/* Releases at once what the job of `a` keeps outside its block (a bytes
 * job's release: the only release that this code hears of). */
void mpool__failures_release(mpool_async_t *a);

/* ---- iterators (src/pool_iter.c) ---- */

/* True when the iterator's next item is complete (cond of mpool__pool_wait). */
bool mpool__iter_ready(void *it);

/* Hands out that item: copies it to out (bytes: a malloc'd copy into the
 * mpool_bytes_t at out), sets *index, and returns its code; ENOMEM (bytes)
 * when the copy cannot be made, and then nothing is consumed. */
int mpool__iter_take(mpool_iter_t *it, void *out, size_t *index);

/* mpool_pool_imap_bytes that also takes over `adopt`, a block of
 * mpool__stage_alloc of adopt_size bytes given back with the call (the
 * caller keeps it if this fails). */
mpool_iter_t *mpool__imap_bytes(mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in,
                                size_t n, size_t chunksize, bool ordered, void *adopt,
                                size_t adopt_size);

/* ---- bytes items (src/pool_bytes.c) ---- */

/* Submits a bytes call (a job of records whose task is the trampoline);
 * `handle_size` as for mpool__submit; `adopt` as for mpool__imap_bytes.
 * NULL with errno EINVAL or ENOMEM. */
mpool_async_t *mpool__bytes_submit(mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in,
                                   size_t n, size_t chunksize, size_t handle_size, void *adopt,
                                   size_t adopt_size);

/* Moves the outputs of every complete chunk not yet collected into the
 * caller's array (map_bytes); no-op for iterators. */
void mpool__bytes_collect(mpool_async_t *a);

/* Hands item i of a complete chunk to the caller: *out = a malloc'd copy
 * ({NULL, 0} for an empty output). 0, or ENOMEM (nothing consumed). */
int mpool__bytes_take(mpool_async_t *a, size_t i, mpool_bytes_t *out);

/* Every item of chunk c was handed out: gives its shared memory back. */
void mpool__bytes_chunk_done(mpool_async_t *a, size_t c);

/* Lowest item that failed in the caller's process only (SIZE_MAX: none). */
size_t mpool__bytes_first_local_failure(const mpool_async_t *a);

/* Releases the call's shared and private memory (with the job). */
void mpool__bytes_release(mpool_async_t *a);

/* ---- sources (src/pool_source.c) ---- */

int mpool__source_next(mpool_iter_t *it, mpool_bytes_t *out, size_t *index, double timeout);
void mpool__source_free(mpool_iter_t *it);

/* Releases a source handle's own memory (not its batches'), from the pool's
 * free or from mpool__source_free. */
void mpool__source_release(mpool_async_t *a);

/* Links a handle made outside mpool__submit into pool->live, or unlinks
 * one (each under the pool lock). */
void mpool__pool_adopt(mpool_pool_t *p, mpool_async_t *a);
void mpool__pool_drop(mpool_async_t *a);

#endif
