/* Sources: a stream of bytes items of unknown length, mapped in bounded
 * memory (mpool_pool_imap_source).
 *
 * The stream becomes a FIFO of batches, each an ordinary bytes iterator
 * (pool_bytes.c) over the items read for it. Only the caller's thread
 * calls the source, in imap_source and in mpool_iter_next_bytes: each call
 * first tops the stream up. When the items read and not yet returned
 * (`read - returned`) have fallen to half the window or less, it reads up to
 * the window again into one new batch, so a batch is at least half a window
 * and the workers never run dry while the caller is waiting. The window
 * bounds the memory: at most `window` items are anywhere between the source
 * and the caller (in a batch's copy, running, or done and not yet
 * returned).
 *
 * Ordered: items come from the oldest batch, in order. Unordered: from any
 * batch with a complete chunk (the internal iterators are unordered then).
 * A batch that handed out everything is freed. A source error ends the
 * stream: what was read still comes out, then the error, once, then
 * ENODATA.
 */
#include <mpool/pool.h>
#include <mpool/shm.h>

#include <stdlib.h>
#include <string.h>

#include "pool_front.h"

/* Default window per worker, and its floor: see pool.h. Measured with
 * bench_bytes: revcomp (records of ~5 KB, 2 workers) took 0.25 s with a
 * window of 64, 0.22 s with 256-512 and 0.23 s with 1024, against 0.30 s
 * in one process: small batches pay a worker wake-up each. With sleeping
 * tasks (bytes.source_busy_*), 64 workers were as busy with the default as
 * with a window of 4096. */
#define WINDOW_PER_WORKER 64
#define WINDOW_MIN        256

typedef struct batch {
    mpool_iter_t *it;
    size_t base; /* stream index of its first item */
    struct batch *next;
} batch_t;

/* Items read from the source and not yet in a batch, copied (the source
 * may reuse its buffers) straight into a block of the shared heap that
 * the batch then takes over: the bytes are copied once. */
typedef struct {
    mpool_bytes_t *items;
    size_t n, cap;
    char *bytes;
    size_t used, bytes_cap;
    size_t hint; /* the last batch's block size */
} pending_t;

struct mpool__source {
    mpool_bytes_fn fn;
    mpool_source_fn next;
    void *state;
    size_t window, chunk; /* chunk: the batches' chunk size (0: the pool's rule) */
    bool ordered;
    size_t read, returned;
    int end; /* 0: reading; ENODATA: the source ended; else its error */
    bool end_given;
    batch_t *head, *tail;
    pending_t pending;
};

/* Room for len more bytes in the pending block: a staging block (pool.c),
 * so that the next batch's block of about the same size is the one the
 * last batch gave back, its pages still mapped in every worker. */
static int pending_room(mpool_pool_t *p, pending_t *q, size_t len)
{
    if (q->bytes && len <= q->bytes_cap - q->used) return 0;
    size_t cap = q->bytes ? q->bytes_cap : q->hint ? q->hint : (size_t)64 << 10;
    while (cap - q->used < len)
        if (__builtin_mul_overflow(cap, 2, &cap)) return ENOMEM;
    pthread_mutex_lock(&p->lock);
    char *b = mpool__stage_alloc(p, cap);
    if (b && q->used) memcpy(b, q->bytes, q->used);
    if (b) mpool__stage_free(p, q->bytes, q->bytes_cap);
    pthread_mutex_unlock(&p->lock);
    if (!b) return ENOMEM;
    q->bytes = b;
    q->bytes_cap = cap;
    return 0;
}

static int pending_add(mpool_pool_t *p, pending_t *q, const mpool_bytes_t *item)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 64;
        mpool_bytes_t *v = realloc(q->items, cap * sizeof *v);
        if (!v) return ENOMEM;
        q->items = v;
        q->cap = cap;
    }
    if (pending_room(p, q, item->len)) return ENOMEM;
    if (item->len) memcpy(q->bytes + q->used, item->data, item->len);
    q->items[q->n++] = (mpool_bytes_t){(void *)(uintptr_t)q->used, item->len}; /* offset */
    q->used += item->len;
    return 0;
}

/* Makes the pending items a batch. 0, or the error (they stay pending). */
static int submit_pending(mpool_pool_t *p, struct mpool__source *s)
{
    pending_t *q = &s->pending;
    batch_t *b = malloc(sizeof *b);
    if (!b) return ENOMEM;
    for (size_t i = 0; i < q->n; i++) /* offsets -> pointers, now that bytes stays put */
        q->items[i].data = q->bytes + (uintptr_t)q->items[i].data;
    b->it =
        mpool__imap_bytes(p, s->fn, q->items, q->n, s->chunk, s->ordered, q->bytes, q->bytes_cap);
    int err = b->it ? 0 : errno;
    for (size_t i = 0; i < q->n; i++)
        q->items[i].data = (void *)(uintptr_t)((char *)q->items[i].data - q->bytes);
    if (err) {
        free(b);
        return err;
    }
    b->base = s->read - q->n;
    b->next = NULL;
    if (s->tail)
        s->tail->next = b;
    else
        s->head = b;
    s->tail = b;
    q->hint = q->bytes_cap;
    q->n = q->used = q->bytes_cap = 0;
    q->bytes = NULL; /* the batch's now */
    return 0;
}

/* Tops the stream up (see the top of the file). 0, or an error making the
 * batch (the items read stay pending for the next call). */
static int refill(mpool_pool_t *p, struct mpool__source *s)
{
    /* Closed or terminated: no batch can be made, so read no more. */
    if (!s->end && p->state != MPOOL__POOL_RUNNING) s->end = EINVAL;
    if (!s->end && s->read - s->returned <= s->window / 2) {
        while (!s->end && s->read - s->returned < s->window) {
            mpool_bytes_t item = {NULL, 0};
            int rc = s->next(s->state, &item);
            if (rc) {
                s->end = rc;
                break;
            }
            if ((item.len && !item.data) || pending_add(p, &s->pending, &item)) {
                s->end = item.len && !item.data ? EINVAL : ENOMEM; /* the stream cannot go on */
                break;
            }
            s->read++;
        }
    }
    int err = s->pending.n ? submit_pending(p, s) : 0;
    if (err == EINVAL) { /* closed meanwhile: these items cannot run */
        s->returned += s->pending.n;
        s->pending.n = s->pending.used = 0;
        if (!s->end || s->end == ENODATA) s->end = EINVAL;
        err = 0;
    }
    return err;
}

/* cond for the wait: the batch to take from is ready (unordered: any). */
typedef struct {
    struct mpool__source *s;
    batch_t *ready;
} pick_t;

static bool pick_ready(void *arg)
{
    pick_t *k = arg;
    for (batch_t *b = k->s->head; b; b = b->next) {
        if (mpool__iter_ready(b->it)) {
            k->ready = b;
            return true;
        }
        if (k->s->ordered) break;
    }
    return false;
}

/* Frees batches that handed out everything, from the head (ordered) or
 * anywhere (unordered). */
static void drop_spent(struct mpool__source *s)
{
    for (batch_t **bp = &s->head, *b; (b = *bp);) {
        if (b->it->left) {
            if (s->ordered) break;
            bp = &b->next;
            continue;
        }
        *bp = b->next;
        if (s->tail == b) s->tail = NULL;
        mpool_iter_free(b->it);
        free(b);
    }
    if (!s->tail)
        for (batch_t *b = s->head; b; b = b->next) s->tail = b;
}

static int source_next(mpool_iter_t *it, mpool_bytes_t *out, size_t *index, double timeout)
{
    struct mpool__source *s = it->a.source;
    mpool_pool_t *p = it->a.pool;
    int err = refill(p, s);
    drop_spent(s);
    if (!s->head) {
        if (err) return err;
        if (s->end == ENODATA || s->end_given) return ENODATA;
        s->end_given = true;
        return s->end;
    }
    pick_t k = {s, NULL};
    err = mpool__pool_wait(p, pick_ready, &k, NULL, timeout);
    if (err) return err;
    size_t i;
    int code = mpool__iter_take(k.ready->it, out, &i);
    if (index) *index = k.ready->base + i;
    if (code == ENOMEM) return ENOMEM; /* no copy made: the item stays */
    s->returned++;
    return code;
}

int mpool__source_next(mpool_iter_t *it, mpool_bytes_t *out, size_t *index, double timeout)
{
    mpool_pool_t *p = it->a.pool;
    if (!mpool__pool_enter(p)) return ECANCELED;
    int err = source_next(it, out, index, timeout);
    mpool__pool_leave(p);
    return err;
}

mpool_iter_t *mpool_pool_imap_source(mpool_pool_t *p, mpool_bytes_fn fn, mpool_source_fn next,
                                     void *state, size_t window, bool ordered)
{
    if (!p || !fn || !next || p->ops != &mpool__pool_local_ops || p->state != MPOOL__POOL_RUNNING) {
        errno = EINVAL;
        return NULL;
    }
    if (!mpool__pool_enter(p)) {
        errno = EINVAL;
        return NULL;
    }
    mpool_iter_t *it = calloc(1, sizeof *it);
    struct mpool__source *s = calloc(1, sizeof *s);
    if (!it || !s) {
        free(it);
        free(s);
        mpool__pool_leave(p);
        errno = ENOMEM;
        return NULL;
    }
    size_t w = WINDOW_PER_WORKER * (size_t)p->opts.processes;
    *s = (struct mpool__source){.fn = fn, .next = next, .state = state, .ordered = ordered};
    s->window = window ? window : w > WINDOW_MIN ? w : WINDOW_MIN;
    it->a.pool = p;
    it->a.source = s;
    it->ordered = ordered;
    mpool__pool_adopt(p, &it->a);
    refill(p, s); /* an error here comes again from the first next */
    mpool__pool_leave(p);
    return it;
}

void mpool__source_release(mpool_async_t *a)
{
    struct mpool__source *s = a->source;
    free(s->pending.items);
    mpool__stage_free(a->pool, s->pending.bytes, s->pending.bytes_cap); /* under the lock */
    for (batch_t *b = s->head, *next; b; b = next) { /* their handles: pool->live */
        next = b->next;
        free(b);
    }
    free(s);
    a->source = NULL;
}

void mpool__source_free(mpool_iter_t *it)
{
    mpool_pool_t *p = it->a.pool;
    if (!mpool__pool_enter(p)) return; /* the free under way releases it */
    struct mpool__source *s = it->a.source;
    for (batch_t *b = s->head; b; b = b->next) mpool_iter_free(b->it);
    mpool__pool_drop(&it->a);
    pthread_mutex_lock(&p->lock);
    mpool__source_release(&it->a);
    pthread_mutex_unlock(&p->lock);
    free(it);
    mpool__pool_leave(p);
}
