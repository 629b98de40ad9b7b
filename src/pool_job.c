/* The job record below the Pool's front end and its backends: failures,
 * chunk completion and the completion hint (layout in pool_backend.h).
 * Everything here is safe from any process of the family: workers, the fork
 * server and the caller's threads all record into the same job. */
#include <mpool/shm.h>

#include <limits.h>
#include <string.h>

#include "internal.h"
#include "pool_backend.h"
#include "wait.h"

/* The block of mpool__job_size: header and chunk_done, cfail at the next
 * multiple of 8, then the code words; from mpool_shm_alloc (cache-line
 * aligned). */
_Static_assert(_Alignof(mpool__chunk_fail_t) <= 8 && sizeof(mpool__chunk_fail_t) % 4 == 0,
               "the cfail records are aligned at a multiple of 8, the codes right after");
_Static_assert(_Alignof(mpool__job_t) <= MPOOL__CACHELINE,
               "mpool_shm_alloc's cache-line alignment is enough for a job");
_Static_assert(sizeof(uint32_t) * CHAR_BIT == 2 * 16, "codes: two bits per item, 16 items a word");

/* Two bits per item in job->codes. */
static uint32_t code_bits(int code)
{
    switch (code) {
    case MPOOL_EWORKER:
        return 2;
    case ECANCELED:
        return 3;
    default:
        return 1; /* MPOOL_ETASK; any other code still reads as a failure */
    }
}

static int bits_code(uint32_t bits)
{
    static const int codes[4] = {0, MPOOL_ETASK, MPOOL_EWORKER, ECANCELED};
    return codes[bits & 3];
}

size_t mpool__job_size(size_t n, size_t nchunks, size_t *cfail_at, size_t *codes_at)
{
    size_t words = n / 16 + 1; /* at least (n + 15) / 16, without overflow */
    size_t at = sizeof(mpool__job_t) + (nchunks ? nchunks : 1) * sizeof(uint32_t);
    at = (at + 7) & ~(size_t)7;
    *cfail_at = at;
    at += nchunks * sizeof(mpool__chunk_fail_t);
    *codes_at = at;
    if (words > (SIZE_MAX - at) / sizeof(uint32_t)) return 0;
    at = (at + words * sizeof(uint32_t) + 7) & ~(size_t)7; /* mpool__job_in_block */
    return at + (n <= MPOOL__ITEMS_IN_JOB ? n * sizeof(mpool__item_fail_t) : 0);
}

mpool__item_fail_t *mpool__job_in_block(const mpool__job_t *j)
{
    uintptr_t at = (uintptr_t)(j->codes + j->n / 16 + 1);
    return (mpool__item_fail_t *)((at + 7) & ~(uintptr_t)7);
}

void mpool__job_cause(mpool__job_t *j, size_t i, unsigned cause)
{
    if (j->items) __atomic_store_n(&j->items[i].cause, (uint16_t)cause, __ATOMIC_RELAXED);
}

void mpool__job_add_detail(mpool__job_t *j, mpool__fail_detail_t *d)
{
    mpool__fail_detail_t *head = __atomic_load_n(&j->details, __ATOMIC_RELAXED);
    do d->next = head;
    while (!__atomic_compare_exchange_n(&j->details, &head, d, true, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
}

void mpool__job_fail(mpool__job_t *j, size_t i, int code, int status)
{
    /* The item's record first: the code's release store publishes it. */
    if (j->items) __atomic_store_n(&j->items[i].status, status, __ATOMIC_RELAXED);
    uint32_t *w = &j->codes[i / 16], shift = 2 * (uint32_t)(i % 16);
    uint32_t old = __atomic_load_n(w, __ATOMIC_RELAXED), val;
    do val = (old & ~(3u << shift)) | code_bits(code) << shift;
    while (!__atomic_compare_exchange_n(w, &old, val, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED));
    size_t c = i / j->chunksize;
    uint32_t off1 = (uint32_t)(i - c * j->chunksize) + 1;
    mpool__chunk_fail_t *cf = &j->cfail[c];
    uint32_t cur = __atomic_load_n(&cf->off1, __ATOMIC_RELAXED);
    if (!cur || off1 <= cur) {
        __atomic_store_n(&cf->status, status, __ATOMIC_RELAXED);
        __atomic_store_n(&cf->off1, off1, __ATOMIC_RELEASE);
    }
    size_t first = __atomic_load_n(&j->first_fail, __ATOMIC_RELAXED);
    while (i < first && !__atomic_compare_exchange_n(&j->first_fail, &first, i, true,
                                                     __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
    }
}

/* The waker's half of the parent's job wait (wait.h; pool_local.c). */
static void job_done_wake(mpool__job_t *j)
{
    __atomic_store_n(&j->done_word, 1, __ATOMIC_SEQ_CST);
    mpool__wake(&j->done_word, &j->waiting, INT32_MAX);
}

void mpool__job_count_chunk(mpool__job_t *j)
{
    if (__atomic_add_fetch(&j->finished, 1, __ATOMIC_SEQ_CST) == j->nchunks) job_done_wake(j);
}

void mpool__job_fail_rest(mpool__job_t *j, int code, int status)
{
    for (size_t c = 0; c < j->nchunks; c++) {
        uint32_t v = __atomic_load_n(&j->chunk_done[c], __ATOMIC_ACQUIRE);
        size_t len = mpool__chunk_len(j, c), done = v & MPOOL__CHUNK_COUNT;
        if (done >= len) continue;
        for (size_t i = c * j->chunksize + done; i < c * j->chunksize + len; i++)
            mpool__job_fail(j, i, code, status);
        __atomic_store_n(&j->chunk_done[c], MPOOL__CHUNK_STARTED | (uint32_t)len, __ATOMIC_RELEASE);
    }
    job_done_wake(j); /* a caller's thread may sleep on it */
}

bool mpool__chunk_complete(const mpool__job_t *j, size_t c)
{
    uint32_t v = __atomic_load_n(&j->chunk_done[c], __ATOMIC_ACQUIRE);
    return (v & MPOOL__CHUNK_COUNT) == mpool__chunk_len(j, c);
}

int mpool__item_code(const mpool__job_t *j, size_t i, int *status)
{
    *status = 0;
    if (i < __atomic_load_n(&j->first_fail, __ATOMIC_ACQUIRE)) return 0;
    int code = bits_code(__atomic_load_n(&j->codes[i / 16], __ATOMIC_ACQUIRE) >> 2 * (i % 16));
    if (!code) return 0;
    if (j->items) {
        *status = __atomic_load_n(&j->items[i].status, __ATOMIC_RELAXED);
        return code;
    }
    size_t c = i / j->chunksize; /* the fallback: the chunk's lowest failure only */
    const mpool__chunk_fail_t *cf = &j->cfail[c];
    if (__atomic_load_n(&cf->off1, __ATOMIC_ACQUIRE) == i - c * j->chunksize + 1)
        *status = __atomic_load_n(&cf->status, __ATOMIC_RELAXED);
    return code;
}
