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
};

struct mpool_iter {
    struct mpool_async a;
    bool ordered;
    size_t chunk; /* chunk being handed out (imap: in order) */
    size_t item;  /* next item of that chunk to hand out, or SIZE_MAX: none */
    size_t scan;  /* imap_unordered: chunks below are all reported */
    size_t left;  /* items not yet handed out */
};

/* One call, as the public functions pass it to mpool__submit. */
typedef struct {
    mpool_task_fn fn;
    const void *in;
    void *out; /* NULL: results stay in staging (iterators) */
    size_t n, in_size, out_size, chunksize;
} mpool__call_t;

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

#endif
