/* Bytes items: inputs and outputs of any length, on top of the fixed-size
 * job machinery (pool.c, pool_job.c) with no change to the backends.
 *
 * A bytes call is an ordinary job whose items are 16-byte records: the
 * input record names the item's bytes in the shared heap, the output record
 * is where the worker leaves the address and length of what the task
 * wrote. The job's task is bytes_task, a trampoline that calls the user's
 * mpool_bytes_fn with an mpool_out_t; the job's ctx is the call's brec_t.
 * One shared block per call holds, in order: the brec_t, the n input
 * records, the n output records and one arena head per chunk; a second one
 * the copies of the inputs that were not in the shared heap already. Both
 * come from the pool's staging cache (pool.c): a block reused by the next
 * call is already mapped in every worker, which saves a page fault per
 * page and process.
 *
 * Outputs are written into per-chunk arenas: a list of segments (blocks of
 * the shared heap) that belongs to the chunk, not to an item. Only the one
 * process running a chunk appends to its list or writes its segments (the
 * backend runs a chunk in one process at a time; after a death the next
 * one goes on where it stopped), and nothing is freed there: the caller's
 * process frees the whole list once the chunk is complete and its outputs
 * are collected (map) or handed out (iterators). So a worker killed at any
 * instruction leaves no half-freed memory, and a task that failed or died
 * leaves only bytes that nobody reads.
 *
 * The words, and who writes them:
 *   arena[c]        NULL, then the chunk's first segment: set once, by the
 *                   process running chunk c, after the segment is set up
 *   seg->next       NULL, then the next segment: the same, once
 *   seg->used       bytes of the segment that hold committed outputs
 *                   (rounded up to ALIGN); raised by the process running the
 *                   chunk when an item succeeds. An item being written sits
 *                   after `used`; if its worker dies, the next item
 *                   overwrites it.
 *   outs[i]         {NULL, 0}, then item i's output: written by the process
 *                   running the item when its task returned 0, before the
 *                   backend's release store of the chunk's progress word
 * The caller's process reads outs[] and the segments only once chunk_done
 * says the chunk is complete (acquire), and then no worker writes them.
 *
 * Leak windows: a worker killed between mpool_shm_alloc returning a new
 * segment and the store that links it loses that block, as a process killed
 * inside the allocator may (shm.c). Nothing else is lost.
 */
#include <mpool/pool.h>
#include <mpool/shm.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool_front.h"

#define ALIGN     16                /* every output starts this aligned */
#define SEG_FIRST ((size_t)1 << 10) /* a chunk's first segment */
/* Segments double up to the largest small heap block, then stay: small
 * blocks are reused from their free list by the next call with their pages
 * still mapped (large ones give their pages back when freed). */
#define SEG_MAX (((size_t)1 << 20) - MPOOL__CACHELINE - sizeof(seg_t)) /* heap header: shm.c */

typedef struct {
    const char *data; /* in the shared heap (the caller's, or the call's copy) */
    size_t len;
} bin_t;

typedef struct {
    char *data; /* in a segment of the item's chunk; NULL when len is 0 */
    size_t len;
} bout_t;

typedef struct seg {
    struct seg *next;
    size_t size; /* bytes after the header */
    size_t used;
    _Alignas(ALIGN) char data[];
} seg_t;

/* The job's ctx: read-only once submitted. */
typedef struct {
    uint64_t serial; /* unique to the call in the caller's process */
    mpool_bytes_fn fn;
    void *ctx; /* the pool's opts.ctx */
    const bin_t *bins;
    seg_t **arena; /* nchunks heads */
    size_t chunksize;
} brec_t;

_Static_assert(sizeof(bin_t) == 16 && sizeof(bout_t) == 16, "records are two words");
_Static_assert(sizeof(seg_t) % ALIGN == 0, "segment data starts aligned");
_Static_assert(_Alignof(brec_t) <= 16 && _Alignof(seg_t *) <= 16, "the block's parts stay aligned");

/* A task's output being written: private to the worker, on its stack. The
 * item's bytes so far are seg->data[seg->used, seg->used + len). */
struct mpool_out {
    seg_t **tail; /* where a new segment is linked: the last one's next */
    seg_t *seg;   /* the chunk's last segment, or NULL */
    size_t len;
};

/* The caller's side of a bytes call. */
struct mpool__bytes {
    void *block, *copy; /* staging blocks: records, and input copies (or NULL) */
    size_t block_size, copy_size;
    void *adopted; /* a staging block holding the inputs, given back with the call */
    size_t adopted_size;
    bout_t *outs;
    seg_t **arena;
    size_t nchunks;
    size_t scan;        /* map: chunks below are collected */
    size_t first_local; /* lowest item whose copy failed (ENOMEM), SIZE_MAX: none */
};

/* ---- in the worker -------------------------------------------------------- */

static size_t round_up(size_t x)
{
    return (x + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

/* Makes room for `more` bytes after the item's bytes so far: 0 or ENOMEM.
 * A new segment gets the item's bytes so far; the old one keeps the
 * chunk's earlier outputs (and the copied bytes, unread). */
static int out_room(struct mpool_out *o, size_t more)
{
    size_t need;
    if (__builtin_add_overflow(o->len, more, &need) || need > SIZE_MAX / 4) return ENOMEM;
    if (o->seg && o->seg->size - o->seg->used >= need) return 0;
    size_t size = o->seg ? 2 * o->seg->size : SEG_FIRST;
    if (size > SEG_MAX) size = SEG_MAX;
    if (size < 2 * need) size = 2 * need;
    size = round_up(size); /* so that `used`, rounded up, never passes it */
    seg_t *s = mpool__shm_alloc_uninit(sizeof(seg_t) + size);
    if (!s && size > round_up(need))
        s = mpool__shm_alloc_uninit(sizeof(seg_t) + (size = round_up(need)));
    if (!s) return ENOMEM;
    s->next = NULL;
    s->size = size;
    s->used = 0;
    if (o->len) memcpy(s->data, o->seg->data + o->seg->used, o->len);
    __atomic_store_n(o->tail, s, __ATOMIC_RELEASE); /* the chunk owns it from here */
    o->tail = &s->next;
    o->seg = s;
    return 0;
}

void *mpool_out_reserve(mpool_out_t *out, size_t len)
{
    if (!out) {
        errno = EINVAL;
        return NULL;
    }
    int err = out_room(out, len);
    if (err) {
        errno = err;
        return NULL;
    }
    char *at = out->seg->data + out->seg->used + out->len;
    out->len += len;
    return at;
}

int mpool_out_write(mpool_out_t *out, const void *data, size_t len)
{
    if (!out || (len && !data)) return EINVAL;
    if (!len) return 0;
    void *at = mpool_out_reserve(out, len);
    if (!at) return errno;
    memcpy(at, data, len);
    return 0;
}

/* The worker's last chunk and the end of its arena, so that the next item
 * of the same chunk need not walk the segment list. Private to the worker
 * process. Valid while the call (serial) and chunk match and the segment is
 * still the last: only the process running a chunk appends to its list,
 * and its segments live until the chunk is complete. */
static struct {
    uint64_t serial;
    size_t chunk;
    struct mpool_out end;
} last;

/* The job's task: runs the user's function on one item's bytes and, if it
 * succeeded, commits what it wrote. */
static int bytes_task(const void *in, void *out, void *ctx)
{
    const brec_t *r = ctx;
    const bin_t *bi = in;
    bout_t *bo = out;
    size_t c = (size_t)(bi - r->bins) / r->chunksize;
    struct mpool_out o = last.end;
    if (last.serial != r->serial || last.chunk != c || !o.seg || o.seg->next) {
        o = (struct mpool_out){.tail = &r->arena[c]};
        while (*o.tail) { /* a few segments: they double */
            o.seg = *o.tail;
            o.tail = &o.seg->next;
        }
    }
    o.len = 0;
    int rc = r->fn(bi->data, bi->len, &o, r->ctx);
    last.serial = r->serial;
    last.chunk = c;
    last.end = o;
    if (rc) return rc;
    *bo = (bout_t){o.len ? o.seg->data + o.seg->used : NULL, o.len};
    if (o.len) o.seg->used = round_up(o.seg->used + o.len);
    return 0;
}

/* ---- in the caller's process ---------------------------------------------- */

/* Bytes of the call's record block, with the offsets of its parts, and of
 * the inputs to copy (not in the shared heap) in *copy; 0 on overflow. */
typedef struct {
    const char *lo, *hi;
} range_t;

static bool in_range(range_t r, const void *data, size_t len)
{
    const char *d = data;
    return d >= r.lo && d < r.hi && len <= (size_t)(r.hi - d);
}

static size_t block_size(range_t heap, const mpool_bytes_t *in, size_t n, size_t nchunks,
                         size_t *outs_at, size_t *arena_at, size_t *copy)
{
    size_t recs, heads, size;
    *copy = 0;
    for (size_t i = 0; i < n; i++)
        if (!in_range(heap, in[i].data, in[i].len) &&
            __builtin_add_overflow(*copy, in[i].len, copy))
            return 0;
    if (__builtin_mul_overflow(n, sizeof(bin_t), &recs) ||
        __builtin_mul_overflow(nchunks, sizeof(seg_t *), &heads))
        return 0;
    *outs_at = round_up(sizeof(brec_t)) + recs;
    *arena_at = *outs_at + recs;
    if (*outs_at < recs || *arena_at < *outs_at || __builtin_add_overflow(*arena_at, heads, &size))
        return 0;
    return size;
}

/* Fills the input records, copying the inputs not in the heap to `copy`. */
static void block_fill(range_t heap, char *block, const mpool_bytes_t *in, size_t n, char *copy)
{
    bin_t *bins = (bin_t *)(block + round_up(sizeof(brec_t)));
    char *empty = block; /* any valid address, for empty items in place */
    for (size_t i = 0; i < n; i++) {
        const char *d = in[i].data;
        if (!in[i].len) {
            d = empty; /* never NULL for the task */
        } else if (!in_range(heap, d, in[i].len)) {
            memcpy(copy, d, in[i].len);
            d = copy;
            copy += in[i].len;
        }
        bins[i] = (bin_t){d, in[i].len};
    }
}

/* Under p->lock: the call's blocks go back to the staging cache. */
static void bytes_free(mpool_pool_t *p, struct mpool__bytes *b)
{
    mpool__stage_free(p, b->block, b->block_size);
    mpool__stage_free(p, b->copy, b->copy_size);
    mpool__stage_free(p, b->adopted, b->adopted_size);
    free(b);
}

static int check_items(const mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in, size_t n)
{
    /* MPI ranks have other address spaces: the records' pointers mean
     * nothing there (pool.h). */
    if (!p || !fn || (n && !in) || p->ops != &mpool__pool_local_ops) return EINVAL;
    for (size_t i = 0; i < n; i++)
        if (in[i].len && !in[i].data) return EINVAL;
    return 0;
}

mpool_async_t *mpool__bytes_submit(mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in,
                                   size_t n, size_t chunksize, size_t handle_size, void *adopt,
                                   size_t adopt_size)
{
    static uint64_t serials;
    int err = check_items(p, fn, in, n);
    size_t cs = err ? 1 : mpool__pick_chunksize(p, n, chunksize);
    size_t nchunks = n / cs + (n % cs != 0), outs_at = 0, arena_at = 0, copy = 0;
    range_t heap;
    mpool__shm_range(&heap.lo, &heap.hi);
    size_t size = err ? 0 : block_size(heap, in, n, nchunks, &outs_at, &arena_at, &copy);
    if (!err && !size) err = EINVAL;
    struct mpool__bytes *b = err ? NULL : calloc(1, sizeof *b);
    if (!err && !b) err = ENOMEM;
    if (!err) {
        *b = (struct mpool__bytes){.block_size = size, .copy_size = copy, .first_local = SIZE_MAX};
        pthread_mutex_lock(&p->lock);
        b->block = mpool__stage_alloc(p, size);
        b->copy = b->block && copy ? mpool__stage_alloc(p, copy) : NULL;
        if (!b->block || (copy && !b->copy)) err = ENOMEM;
        if (err) bytes_free(p, b);
        pthread_mutex_unlock(&p->lock);
    }
    if (err) {
        errno = err;
        return NULL;
    }
    char *block = b->block;
    memset(block + outs_at, 0, size - outs_at); /* output records, arena heads */
    block_fill(heap, block, in, n, b->copy);
    brec_t *r = (brec_t *)block;
    *r = (brec_t){__atomic_add_fetch(&serials, 1, __ATOMIC_RELAXED),
                  fn,
                  p->opts.ctx,
                  (bin_t *)(block + round_up(sizeof(brec_t))),
                  (seg_t **)(block + arena_at),
                  cs};
    b->outs = (bout_t *)(block + outs_at);
    b->arena = r->arena;
    b->nchunks = nchunks;
    mpool__call_t c = {bytes_task, r->bins, b->outs, r, n, sizeof(bin_t), sizeof(bout_t), cs};
    mpool_async_t *a = mpool__submit(p, &c, handle_size);
    if (!a) {
        err = errno;
        pthread_mutex_lock(&p->lock);
        bytes_free(p, b);
        pthread_mutex_unlock(&p->lock);
        errno = err;
        return NULL;
    }
    b->adopted = adopt; /* only now: on failure the caller keeps it */
    b->adopted_size = adopt_size;
    a->bytes = b; /* no one else sees `a` yet; collection starts at the first wait */
    a->user_out = NULL;
    return a;
}

static void free_chunk(struct mpool__bytes *b, size_t c)
{
    for (seg_t *s = b->arena[c], *next; s; s = next) {
        next = s->next;
        mpool_shm_free(s);
    }
    b->arena[c] = NULL;
}

int mpool__bytes_take(mpool_async_t *a, size_t i, mpool_bytes_t *out)
{
    const bout_t *bo = &a->bytes->outs[i];
    void *m = NULL;
    if (bo->len && !(m = malloc(bo->len))) return ENOMEM;
    if (bo->len) memcpy(m, bo->data, bo->len);
    *out = (mpool_bytes_t){m, bo->len};
    return 0;
}

void mpool__bytes_chunk_done(mpool_async_t *a, size_t c)
{
    free_chunk(a->bytes, c);
}

/* Copies chunk c's outputs into the caller's array, then frees its arena.
 * An output that cannot be copied (no memory) fails its item: ENOMEM. */
static void collect_chunk(mpool_async_t *a, mpool_bytes_t *dest, size_t c)
{
    struct mpool__bytes *b = a->bytes;
    const mpool__job_t *j = a->job;
    size_t lo = c * j->chunksize, hi = lo + mpool__chunk_len(j, c);
    /* A chunk with no failure record has none: no per-item code to read. */
    bool clean = !__atomic_load_n(&j->cfail[c].off1, __ATOMIC_ACQUIRE);
    for (size_t i = lo; i < hi; i++) {
        int status;
        dest[i] = (mpool_bytes_t){NULL, 0};
        if ((clean || mpool__item_code(j, i, &status) == 0) && mpool__bytes_take(a, i, &dest[i]) &&
            i < b->first_local)
            b->first_local = i;
    }
    free_chunk(b, c);
}

void mpool__bytes_collect(mpool_async_t *a)
{
    struct mpool__bytes *b = a->bytes;
    mpool__job_t *j = a->job;
    mpool_bytes_t *dest = a->user_out;
    if (!dest) return; /* an iterator, or an async the user dropped */
    while (b->scan < b->nchunks && (j->chunk_done[b->scan] & MPOOL__CHUNK_REPORTED)) b->scan++;
    for (size_t c = b->scan; c < b->nchunks; c++) {
        uint32_t v = __atomic_load_n(&j->chunk_done[c], __ATOMIC_ACQUIRE);
        if (!v) break; /* chunks start in order: none after this one either */
        if (v & MPOOL__CHUNK_REPORTED || (v & MPOOL__CHUNK_COUNT) != mpool__chunk_len(j, c))
            continue;
        collect_chunk(a, dest, c);
        __atomic_store_n(&j->chunk_done[c], v | MPOOL__CHUNK_REPORTED, __ATOMIC_RELAXED);
    }
}

size_t mpool__bytes_first_local_failure(const mpool_async_t *a)
{
    return a->bytes->first_local;
}

void mpool__bytes_release(mpool_async_t *a)
{
    struct mpool__bytes *b = a->bytes;
    mpool__failures_release(a);
    for (size_t c = 0; c < b->nchunks; c++) free_chunk(b, c);
    bytes_free(a->pool, b);
    a->bytes = NULL;
}

/* ---- the public calls ------------------------------------------------------ */

mpool_async_t *mpool_pool_map_bytes_async(mpool_pool_t *p, mpool_bytes_fn fn,
                                          const mpool_bytes_t *in, size_t n, mpool_bytes_t *out,
                                          size_t chunksize)
{
    if (n && !out) {
        errno = EINVAL;
        return NULL;
    }
    mpool_async_t *a = mpool__bytes_submit(p, fn, in, n, chunksize, sizeof(mpool_async_t), NULL, 0);
    if (!a) return NULL;
    for (size_t i = 0; i < n; i++) out[i] = (mpool_bytes_t){NULL, 0};
    a->user_out = out;
    return a;
}

int mpool_pool_map_bytes(mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in, size_t n,
                         mpool_bytes_t *out, size_t chunksize)
{
    /* One call in flight from submission to release (as mpool_pool_map). */
    if (!p || !mpool__pool_enter(p)) return EINVAL;
    mpool_async_t *a = mpool_pool_map_bytes_async(p, fn, in, n, out, chunksize);
    int err = a ? mpool_async_get(a, MPOOL_FOREVER) : errno;
    mpool_async_free(a);
    mpool__pool_leave(p);
    return err;
}
