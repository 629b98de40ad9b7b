/* The Pool's iterators: imap (in order) and imap_unordered (as chunks
 * complete). An iterator is an async whose results stay in the job's
 * output (staging) and are handed out one item at a time; chunks are
 * complete or not, so an ordered iterator waits for its next chunk, and an
 * unordered one marks each chunk it hands out REPORTED in chunk_done. */
#include <mpool/pool.h>

#include <string.h>

#include "pool_front.h"

static mpool_iter_t *iter_init(mpool_iter_t *it, size_t n, bool ordered)
{
    if (!it) return NULL;
    it->ordered = ordered;
    it->item = SIZE_MAX;
    it->left = n;
    return it;
}

static mpool_iter_t *iter_new(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t n,
                              size_t in_size, size_t out_size, size_t chunksize, bool ordered)
{
    mpool__call_t c = {fn, in, NULL, p ? p->opts.ctx : NULL, n, in_size, out_size, chunksize};
    return iter_init((mpool_iter_t *)mpool__submit(p, &c, sizeof(mpool_iter_t)), n, ordered);
}

mpool_iter_t *mpool_pool_imap(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t n,
                              size_t in_size, size_t out_size, size_t chunksize)
{
    return iter_new(p, fn, in, n, in_size, out_size, chunksize, true);
}

mpool_iter_t *mpool_pool_imap_unordered(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t n,
                                        size_t in_size, size_t out_size, size_t chunksize)
{
    return iter_new(p, fn, in, n, in_size, out_size, chunksize, false);
}

/* imap_unordered: finds a complete chunk not handed out yet. Chunks start in
 * order, so the scan stops at the first one not started. */
static bool unordered_pick(mpool_iter_t *it)
{
    mpool__job_t *j = it->a.job;
    while (it->scan < j->nchunks && (j->chunk_done[it->scan] & MPOOL__CHUNK_REPORTED)) it->scan++;
    for (size_t c = it->scan; c < j->nchunks; c++) {
        uint32_t v = __atomic_load_n(&j->chunk_done[c], __ATOMIC_ACQUIRE);
        if (!v) break;
        if (v & MPOOL__CHUNK_REPORTED || (v & MPOOL__CHUNK_COUNT) != mpool__chunk_len(j, c))
            continue;
        __atomic_store_n(&j->chunk_done[c], v | MPOOL__CHUNK_REPORTED, __ATOMIC_RELAXED);
        it->chunk = c;
        it->item = c * j->chunksize;
        return true;
    }
    return false;
}

bool mpool__iter_ready(void *arg)
{
    mpool_iter_t *it = arg;
    if (it->item != SIZE_MAX) return true;
    if (!it->ordered) return unordered_pick(it);
    if (!mpool__chunk_complete(it->a.job, it->chunk)) return false;
    it->item = it->chunk * it->a.job->chunksize;
    return true;
}

int mpool__iter_take(mpool_iter_t *it, void *out, size_t *index)
{
    const mpool__job_t *j = it->a.job;
    size_t i = it->item;
    int status, code = mpool__async_item_code(&it->a, i, &status);
    if (index) *index = i;
    if (it->a.bytes) {
        mpool_bytes_t *b = out;
        *b = (mpool_bytes_t){NULL, 0};
        if (!code && mpool__bytes_take(&it->a, i, b)) return ENOMEM; /* not consumed */
    } else if (out && j->out_size) {
        memcpy(out, j->out + i * j->out_size, j->out_size);
    }
    it->left--;
    it->last = i;
    it->last_code = code;
    it->last_status = status;
    if (++it->item == it->chunk * j->chunksize + mpool__chunk_len(j, it->chunk)) {
        if (it->a.bytes) mpool__bytes_chunk_done(&it->a, it->chunk);
        it->item = SIZE_MAX;
        it->chunk++;
    }
    return code;
}

/* Both kinds of next: `bytes` says which the caller asked for. */
static int iter_next(mpool_iter_t *it, void *out, size_t *index, double timeout, bool bytes)
{
    if (!it || (bytes && !out)) return EINVAL;
    if (it->a.source) return bytes ? mpool__source_next(it, out, index, timeout) : EINVAL;
    if (bytes != (it->a.bytes != NULL)) return EINVAL;
    mpool_pool_t *p = it->a.pool;
    if (!mpool__pool_enter(p)) return ECANCELED;
    int err = it->left ? mpool__pool_wait(p, mpool__iter_ready, it, NULL, timeout) : ENODATA;
    if (!err) err = mpool__iter_take(it, out, index);
    mpool__pool_leave(p);
    return err;
}

int mpool_iter_next(mpool_iter_t *it, void *out, size_t *index, double timeout)
{
    return iter_next(it, out, index, timeout, false);
}

int mpool_iter_next_bytes(mpool_iter_t *it, mpool_bytes_t *out, size_t *index, double timeout)
{
    return iter_next(it, out, index, timeout, true);
}

mpool_iter_t *mpool__imap_bytes(mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in,
                                size_t n, size_t chunksize, bool ordered, void *adopt,
                                size_t adopt_size)
{
    mpool_async_t *a =
        mpool__bytes_submit(p, fn, in, n, chunksize, sizeof(mpool_iter_t), adopt, adopt_size);
    return iter_init((mpool_iter_t *)a, n, ordered);
}

mpool_iter_t *mpool_pool_imap_bytes(mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in,
                                    size_t n, size_t chunksize, bool ordered)
{
    return mpool__imap_bytes(p, fn, in, n, chunksize, ordered, NULL, 0);
}

void mpool_iter_free(mpool_iter_t *it)
{
    if (it && it->a.source)
        mpool__source_free(it);
    else if (it)
        mpool_async_free(&it->a);
}
