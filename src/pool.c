/* The process Pool: the public API, independent of how tasks are run.
 *
 * Everything here runs in the process that created the pool. A call becomes
 * a job (src/pool_backend.h) in the shared heap: the inputs (read in place
 * when they already lie in the shared heap, else copied), an output area
 * (the caller's `out` when it lies in the shared heap, else a staging block
 * copied into `out` once the whole job is done), and one progress word per
 * chunk. The backend (ops table) runs the chunks; this file only watches the
 * progress words and hands out results and failures (asyncs:
 * src/pool_async.c; iterators: src/pool_iter.c; bytes items:
 * src/pool_bytes.c, pool_source.c).
 */
#include <mpool/pool.h>
#include <mpool/shm.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pool_front.h"

/* ---- callers in flight ---------------------------------------------------- */

/* Every public call on a pool or on its handles runs between pool_enter and
 * pool_leave, so that mpool_pool_free, called by another thread, can wait
 * for the calls in flight to return before it releases anything. free sets
 * `freeing` and then terminates, which fails every unfinished item: a call
 * blocked in a wait wakes with its result (ECANCELED for the items not
 * done) and leaves. The count and the flag form Dekker's pattern (seq_cst
 * on both sides): a call entering sees `freeing`, or free sees its count.
 * A call that sees `freeing` on entry touches nothing more and fails. */
void mpool__pool_leave(mpool_pool_t *p)
{
    if (!__atomic_load_n(&p->freeing, __ATOMIC_SEQ_CST)) {
        /* free, if it starts now, polls the count (FREE_POLL): no wake-up
         * is needed, and after this decrement `p` may be gone. */
        __atomic_sub_fetch(&p->users, 1, __ATOMIC_SEQ_CST);
        return;
    }
    pthread_mutex_lock(&p->lock); /* free cannot pass its check meanwhile */
    __atomic_sub_fetch(&p->users, 1, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&p->idle);
    pthread_mutex_unlock(&p->lock);
}

bool mpool__pool_enter(mpool_pool_t *p)
{
    __atomic_add_fetch(&p->users, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&p->freeing, __ATOMIC_SEQ_CST)) return true;
    mpool__pool_leave(p);
    return false;
}

/* free re-checks the count at least this often (seconds). */
#define FREE_POLL 0.005

/* Under p->lock: returns once no call is in flight. */
static void await_users(mpool_pool_t *p)
{
    while (__atomic_load_n(&p->users, __ATOMIC_SEQ_CST)) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)(FREE_POLL * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&p->idle, &p->lock, &ts);
    }
}

/* ---- pool-wide state ------------------------------------------------------ */

static void live_link(mpool_pool_t *p, mpool_async_t *a)
{
    a->pool = p;
    a->prev = NULL;
    a->next = p->live;
    if (p->live) p->live->prev = a;
    p->live = a;
}

static void live_unlink(mpool_async_t *a)
{
    if (a->prev)
        a->prev->next = a->next;
    else
        a->pool->live = a->next;
    if (a->next) a->next->prev = a->prev;
}

void mpool__pool_adopt(mpool_pool_t *p, mpool_async_t *a)
{
    pthread_mutex_lock(&p->lock);
    live_link(p, a);
    pthread_mutex_unlock(&p->lock);
}

void mpool__pool_drop(mpool_async_t *a)
{
    mpool_pool_t *p = a->pool;
    pthread_mutex_lock(&p->lock);
    live_unlink(a);
    pthread_mutex_unlock(&p->lock);
}

/* Staging blocks from CACHE_MIN up are cached, at most CACHE_MAX each. */
#define CACHE_MIN ((size_t)64 << 10)
#define CACHE_MAX ((size_t)64 << 20)

void *mpool__stage_alloc(mpool_pool_t *p, size_t size)
{
    for (int k = 0; k < 2 && size >= CACHE_MIN; k++) {
        void *ptr = p->cache[k].ptr;
        if (ptr && p->cache[k].size >= size && p->cache[k].size / 4 <= size) {
            p->cache[k].ptr = NULL;
            return ptr;
        }
    }
    return mpool__shm_alloc_uninit(size); /* filled by the copy, or by the workers */
}

/* The block stays with the pool, unless a bigger one is cached already. */
void mpool__stage_free(mpool_pool_t *p, void *ptr, size_t size)
{
    if (!ptr) return;
    if (size >= CACHE_MIN && size <= CACHE_MAX) {
        int k = !p->cache[0].ptr                       ? 0
                : !p->cache[1].ptr                     ? 1
                : p->cache[0].size <= p->cache[1].size ? 0
                                                       : 1;
        if (!p->cache[k].ptr || p->cache[k].size <= size) {
            mpool_shm_free(p->cache[k].ptr);
            p->cache[k].ptr = ptr;
            p->cache[k].size = size;
            return;
        }
    }
    mpool_shm_free(ptr);
}

static void job_release(mpool_async_t *a)
{
    if (a->source) {
        mpool__source_release(a);
        return;
    }
    if (a->bytes) mpool__bytes_release(a);
    mpool__stage_free(a->pool, a->in_copy, a->in_copy_size);
    mpool__stage_free(a->pool, a->staging, a->staging_size);
    if (a->job) __atomic_store_n(&a->job->tag, 0, __ATOMIC_RELEASE);
    mpool_shm_free(a->job);
    a->job = NULL;
    a->in_copy = a->staging = NULL;
}

/* Fails the unfinished items of every live job, once the backend reported
 * that no worker can run them (terminate, or a broken backend). */
static void fail_all_live(mpool_pool_t *p, int code, int status)
{
    for (mpool_async_t *a = p->live; a; a = a->next)
        if (a->job) mpool__job_fail_rest(a->job, code, status);
}

static void apply_broken(mpool_pool_t *p)
{
    if (!p->broken || p->broken_applied) return;
    p->broken_applied = true;
    fail_all_live(p, p->broken, p->broken_status);
}

static void check_broken(mpool_pool_t *p)
{
    if (!p->broken || p->broken_applied) return;
    pthread_mutex_lock(&p->lock);
    apply_broken(p);
    pthread_mutex_unlock(&p->lock);
}

void mpool__pool_break(mpool_pool_t *p, int code, int status)
{
    p->broken_status = status;
    __atomic_store_n(&p->broken, code, __ATOMIC_RELEASE);
}

/* Frees the jobs of handles the user dropped before they were done. */
static void reap_orphans(mpool_pool_t *p)
{
    for (mpool_async_t *a = p->live, *next; a; a = next) {
        next = a->next;
        if (a->orphan && mpool__async_check(a)) {
            live_unlink(a);
            job_release(a);
            free(a);
        }
    }
}

/* Waits until cond(arg) holds. 0, or ETIMEDOUT. Even a try (timeout 0)
 * calls the backend's wait once, with a past deadline, so that a caller who
 * only polls still gets dead helpers noticed. */
int mpool__pool_wait(mpool_pool_t *p, bool (*cond)(void *), void *arg, mpool__job_t *job,
                     double timeout)
{
    struct timespec ts;
    bool limited = mpool__deadline(timeout, &ts), polled = false;
    for (;;) {
        uint32_t seen = p->ops->event(p);
        if (cond(arg)) return 0;
        check_broken(p);
        if (cond(arg)) return 0;
        bool expired = limited && mpool__expired(&ts);
        if (expired && polled) return ETIMEDOUT;
        p->ops->wait(p, job, seen, limited ? &ts : NULL);
        polled = expired;
    }
}

/* ---- pool lifetime -------------------------------------------------------- */

mpool_pool_t *mpool_pool_new(const mpool_pool_opts_t *opts)
{
    return mpool__pool_new_with(&mpool__pool_local_ops, opts);
}

mpool_pool_t *mpool__pool_new_with(const mpool__pool_ops_t *ops, const mpool_pool_opts_t *opts)
{
    mpool_pool_opts_t o = {0};
    if (opts) o = *opts;
    if (o.processes < 0 || o.task_timeout < 0 || o.task_timeout != o.task_timeout) {
        errno = EINVAL;
        return NULL;
    }
    if (o.processes == 0) o.processes = mpool_cpu_count();
    mpool_pool_t *p = calloc(1, sizeof *p);
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    p->opts = o;
    p->ops = ops;
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->idle, &ca);
    pthread_condattr_destroy(&ca);
    int err = p->ops->start(p);
    if (err) {
        pthread_cond_destroy(&p->idle);
        pthread_mutex_destroy(&p->lock);
        free(p);
        errno = err;
        return NULL;
    }
    return p;
}

int mpool_pool_close(mpool_pool_t *p)
{
    if (!p || !mpool__pool_enter(p)) return EINVAL;
    pthread_mutex_lock(&p->lock);
    int err = p->state == MPOOL__POOL_RUNNING ? 0 : EINVAL;
    if (!err) {
        p->state = MPOOL__POOL_CLOSED;
        p->ops->close(p);
    }
    pthread_mutex_unlock(&p->lock);
    mpool__pool_leave(p);
    return err;
}

static int pool_join(mpool_pool_t *p, double timeout)
{
    if (p->state == MPOOL__POOL_RUNNING) return EINVAL;
    struct timespec ts;
    bool limited = mpool__deadline(timeout, &ts);
    int err = p->ops->join(p, limited ? &ts : NULL);
    pthread_mutex_lock(&p->lock);
    apply_broken(p);
    reap_orphans(p);
    pthread_mutex_unlock(&p->lock);
    return err;
}

int mpool_pool_join(mpool_pool_t *p, double timeout)
{
    if (!p) return EINVAL;
    if (!mpool__pool_enter(p)) return ECANCELED;
    int err = pool_join(p, timeout);
    mpool__pool_leave(p);
    return err;
}

static void pool_terminate(mpool_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->state != MPOOL__POOL_TERMINATED) {
        p->state = MPOOL__POOL_TERMINATED;
        p->ops->terminate(p);
        apply_broken(p);
        fail_all_live(p, ECANCELED, 0);
        reap_orphans(p);
    }
    pthread_mutex_unlock(&p->lock);
}

int mpool_pool_terminate(mpool_pool_t *p)
{
    if (!p) return EINVAL;
    if (!mpool__pool_enter(p)) return 0; /* free terminates it */
    pool_terminate(p);
    mpool__pool_leave(p);
    return 0;
}

void mpool_pool_free(mpool_pool_t *p)
{
    if (!p) return;
    __atomic_store_n(&p->freeing, true, __ATOMIC_SEQ_CST);
    pool_terminate(p);
    pthread_mutex_lock(&p->lock);
    await_users(p);
    pthread_mutex_unlock(&p->lock);
    p->ops->destroy(p);
    while (p->live) {
        mpool_async_t *a = p->live;
        live_unlink(a);
        job_release(a);
        free(a);
    }
    for (int k = 0; k < 2; k++) mpool_shm_free(p->cache[k].ptr);
    pthread_cond_destroy(&p->idle);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- submission ----------------------------------------------------------- */

bool mpool__in_heap(const void *ptr, size_t len)
{
    return len && mpool_shm_contains(ptr) && mpool_shm_contains((const char *)ptr + len - 1);
}

/* Python's rule: ceil(n / (4 * processes)); then bounded so that a chunk
 * count fits its progress word and the dispatch word. */
size_t mpool__pick_chunksize(const mpool_pool_t *p, size_t n, size_t chunksize)
{
    if (chunksize == 0) {
        size_t w = 4 * (size_t)p->opts.processes;
        chunksize = n / w + (n % w != 0);
    }
    if (chunksize == 0) chunksize = 1;
    if (chunksize > MPOOL__CHUNK_MAX) chunksize = MPOOL__CHUNK_MAX;
    while (n / chunksize >= UINT32_MAX / 2) chunksize *= 2;
    return chunksize;
}

static int call_check(const mpool_pool_t *p, const mpool__call_t *c, size_t *in_bytes,
                      size_t *out_bytes)
{
    if (!p || !c->fn || p->state != MPOOL__POOL_RUNNING || p->broken) return EINVAL;
    if (__builtin_mul_overflow(c->n, c->in_size, in_bytes) ||
        __builtin_mul_overflow(c->n, c->out_size, out_bytes))
        return EINVAL;
    if (*in_bytes && !c->in) return EINVAL;
    return 0;
}

/* Builds the job of a call in the shared heap. 0, EINVAL or ENOMEM. */
static int job_build(mpool_pool_t *p, const mpool__call_t *c, mpool_async_t *a)
{
    size_t in_bytes, out_bytes;
    int err = call_check(p, c, &in_bytes, &out_bytes);
    if (err) return err;
    size_t cs = mpool__pick_chunksize(p, c->n, c->chunksize);
    size_t nchunks = c->n / cs + (c->n % cs != 0);
    size_t cfail_at, codes_at, size = mpool__job_size(c->n, nchunks, &cfail_at, &codes_at);
    mpool__job_t *j = size ? mpool_shm_alloc(size) : NULL;
    if (!j) return ENOMEM;
    a->job = j;
    *j = (mpool__job_t){.fn = c->fn,
                        .ctx = c->ctx,
                        .n = c->n,
                        .in_size = c->in_size,
                        .out_size = c->out_size,
                        .chunksize = cs,
                        .nchunks = (uint32_t)nchunks,
                        .first_fail = SIZE_MAX,
                        .in = c->in,
                        .out = c->out,
                        .cfail = (mpool__chunk_fail_t *)((char *)j + cfail_at),
                        .codes = (uint32_t *)((char *)j + codes_at)};
    if (in_bytes && !mpool__in_heap(c->in, in_bytes)) {
        if (!(a->in_copy = mpool__stage_alloc(p, in_bytes))) return ENOMEM;
        a->in_copy_size = in_bytes;
        memcpy(a->in_copy, c->in, in_bytes);
        j->in = a->in_copy;
    }
    if (out_bytes && !mpool__in_heap(c->out, out_bytes)) {
        if (!(a->staging = mpool__stage_alloc(p, out_bytes))) return ENOMEM;
        a->staging_size = out_bytes;
        j->out = a->staging;
    }
    return 0;
}

/* Submits a call; `size` is that of the handle (async or iterator). */
mpool_async_t *mpool__submit(mpool_pool_t *p, const mpool__call_t *c, size_t size)
{
    if (!p || !mpool__pool_enter(p)) {
        errno = EINVAL;
        return NULL;
    }
    mpool_async_t *a = calloc(1, size);
    if (!a) {
        mpool__pool_leave(p);
        errno = ENOMEM;
        return NULL;
    }
    a->user_out = c->out;
    a->pool = p;
    pthread_mutex_lock(&p->lock);
    reap_orphans(p);
    int err = job_build(p, c, a);
    if (!err && a->job->nchunks) err = p->ops->submit(p, a->job);
    if (!err)
        live_link(p, a);
    else
        job_release(a); /* under the lock: it returns blocks to p->cache */
    pthread_mutex_unlock(&p->lock);
    mpool__pool_leave(p);
    if (err) {
        free(a);
        errno = err;
        return NULL;
    }
    return a;
}

mpool_async_t *mpool_pool_map_async(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t n,
                                    size_t in_size, void *out, size_t out_size, size_t chunksize)
{
    if (n && out_size && !out) {
        errno = EINVAL;
        return NULL;
    }
    mpool__call_t c = {fn, in, out, p ? p->opts.ctx : NULL, n, in_size, out_size, chunksize};
    return mpool__submit(p, &c, sizeof(mpool_async_t));
}

mpool_async_t *mpool_pool_apply_async(mpool_pool_t *p, mpool_task_fn fn, const void *in,
                                      size_t in_size, void *out, size_t out_size)
{
    return mpool_pool_map_async(p, fn, in, 1, in_size, out, out_size, 1);
}

int mpool_pool_map(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t n, size_t in_size,
                   void *out, size_t out_size, size_t chunksize)
{
    /* One call in flight from submission to release: a free in another
     * thread must not release the handle between the get and the free. */
    if (!p || !mpool__pool_enter(p)) return EINVAL;
    mpool_async_t *a = mpool_pool_map_async(p, fn, in, n, in_size, out, out_size, chunksize);
    int err = a ? mpool_async_get(a, MPOOL_FOREVER) : errno;
    mpool_async_free(a); /* during a free: left to it */
    mpool__pool_leave(p);
    return err;
}

int mpool_pool_apply(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t in_size, void *out,
                     size_t out_size)
{
    return mpool_pool_map(p, fn, in, 1, in_size, out, out_size, 1);
}

/* ---- handles ---------------------------------------------------------------- */

void mpool_async_free(mpool_async_t *a)
{
    if (!a) return;
    mpool_pool_t *p = a->pool;
    if (!mpool__pool_enter(p)) return; /* the free under way releases it */
    pthread_mutex_lock(&p->lock);
    /* Bytes results not collected yet are dropped, not collected now:
     * the caller gave up the handle, and could not know which to free. */
    if (a->bytes) a->user_out = NULL;
    if (mpool__async_check(a)) {
        live_unlink(a);
        job_release(a);
        free(a);
    } else {
        a->orphan = true; /* released by reap_orphans once the workers are done */
        a->user_out = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    mpool__pool_leave(p);
}
