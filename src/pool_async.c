/* The async handle's results: waits, readiness, the first failure, and
 * progress. A handle is ready once every chunk of its job is complete;
 * staged results are copied out then, and bytes results as their chunks
 * complete (src/pool_bytes.c). Handles are made by mpool__submit and freed
 * by mpool_async_free (src/pool.c). */
#include <mpool/pool.h>

#include <pthread.h>
#include <string.h>

#include "pool_front.h"

/* True while the pool lock is held: by mpool_async_free (or reap_orphans)
 * around this check, since waits run without it. A free of a handle that
 * is not ready must deliver nothing more into the caller's array (the
 * caller dropped it: no one would free the copies), so the collection of
 * a partly done bytes call waits for a check outside the lock; another
 * thread holding the lock for a moment only defers it to the next check. */
static bool lock_held(mpool_pool_t *p)
{
    if (pthread_mutex_trylock(&p->lock)) return true;
    pthread_mutex_unlock(&p->lock);
    return false;
}

/* True once every chunk of the job is complete; copies staged results out
 * (bytes: moves out those of every chunk complete so far, also before the
 * end, so that the shared heap holds only what is not collected yet). */
bool mpool__async_check(mpool_async_t *a)
{
    if (a->ready) return true;
    const mpool__job_t *j = a->job;
    while (a->complete < j->nchunks && mpool__chunk_complete(j, a->complete)) a->complete++;
    bool done = a->complete == j->nchunks; /* before the collection: it must see them all */
    if (a->bytes && (done || !lock_held(a->pool))) mpool__bytes_collect(a);
    if (!done) return false;
    if (a->staging && a->user_out) memcpy(a->user_out, a->staging, j->n * j->out_size);
    a->ready = true;
    mpool__failures_job_ready(a);
    return true;
}

static bool async_cond(void *arg)
{
    return mpool__async_check(arg);
}

/* The lowest failed item so far, SIZE_MAX when none. */
static size_t first_failure(const mpool_async_t *a)
{
    size_t first = __atomic_load_n(&a->job->first_fail, __ATOMIC_ACQUIRE);
    if (a->bytes) {
        size_t local = mpool__bytes_first_local_failure(a);
        if (local < first) first = local;
    }
    return first;
}

int mpool__async_item_code(const mpool_async_t *a, size_t i, int *status)
{
    if (a->bytes && mpool__bytes_first_local_failure(a) == i) {
        *status = 0;
        return ENOMEM;
    }
    int code = mpool__item_code(a->job, i, status);
    if (code) *status = mpool__failure_status((mpool_async_t *)a, i, *status);
    return code;
}

static int async_wait(mpool_async_t *a, double timeout)
{
    if (a->ready) return 0;
    /* Bytes: wake at every chunk, to move its outputs out of the heap. */
    return mpool__pool_wait(a->pool, async_cond, a, a->bytes ? NULL : a->job, timeout);
}

int mpool_async_wait(mpool_async_t *a, double timeout)
{
    if (!a) return EINVAL;
    if (!mpool__pool_enter(a->pool)) return ECANCELED;
    int err = async_wait(a, timeout);
    mpool__pool_leave(a->pool);
    return err;
}

bool mpool_async_ready(mpool_async_t *a)
{
    return mpool_async_wait(a, 0) == 0;
}

int mpool_async_get(mpool_async_t *a, double timeout)
{
    if (!a) return EINVAL;
    if (!mpool__pool_enter(a->pool)) return ECANCELED;
    int err = async_wait(a, timeout), status;
    size_t first = err ? SIZE_MAX : first_failure(a);
    if (first != SIZE_MAX) err = mpool__async_item_code(a, first, &status);
    mpool__pool_leave(a->pool);
    return err;
}

int mpool_async_failure(mpool_async_t *a, mpool_failure_t *f)
{
    if (!a || !f) return EINVAL;
    if (!mpool__pool_enter(a->pool)) return ECANCELED;
    int err = ENODATA;
    size_t first = first_failure(a);
    if (first != SIZE_MAX) err = mpool__failure_fill(a, first, f); /* recorded before first_fail */
    mpool__pool_leave(a->pool);
    return err;
}

void mpool_async_progress(mpool_async_t *a, size_t *done, size_t *total)
{
    size_t d = 0, n = 0;
    mpool_pool_t *p = a ? a->pool : NULL;
    if (p && mpool__pool_enter(p)) {
        const mpool__job_t *j = a->job;
        mpool__async_check(a);
        n = j->n;
        d = a->complete * j->chunksize;
        if (d > n) d = n;
        for (size_t c = a->complete; c < j->nchunks; c++) {
            uint32_t v = __atomic_load_n(&j->chunk_done[c], __ATOMIC_ACQUIRE);
            if (!v) break; /* not started: neither are the later ones (mostly) */
            d += v & MPOOL__CHUNK_COUNT;
        }
        mpool__pool_leave(p);
    }
    if (done) *done = d;
    if (total) *total = n;
}
