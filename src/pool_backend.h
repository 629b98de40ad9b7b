/* The Pool's seam between the public API and the machinery that runs tasks.
 *
 * src/pool.c implements every public mpool_pool_* / mpool_async_* /
 * mpool_iter_* function once, on top of the backend-neutral bookkeeping
 * below: argument checks, chunking, input copies and output staging,
 * per-chunk progress, per-item failures, readiness, imap ordering. It talks
 * to the workers only through an ops table. The local backend
 * (src/pool_local.c: a fork server and forked workers) is one such table; a
 * second backend (MPI ranks, say) implements the same few ops and reuses the
 * rest unchanged.
 *
 * A backend's contract, in one paragraph: the job is split into `nchunks`
 * chunks of `chunksize` items (the last may be shorter). For every item the
 * backend calls fn(in + i*in_size, out + i*out_size, ctx), records a failure
 * with mpool__job_fail(), and, when the whole chunk is done (every item
 * succeeded or failed), counts it with mpool__job_count_chunk(), stores
 * STARTED | the chunk's length into chunk_done[c] with release order and
 * makes the event counter (ops->event) move, so that the parent's ops->wait
 * returns. It stores STARTED when a
 * chunk is taken, and may store partial counts earlier (progress). Nothing
 * else: readiness, copies and ordering are done here.
 */
#ifndef MPOOL_POOL_BACKEND_H
#define MPOOL_POOL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <mpool/pool.h>

#ifndef MPOOL__PRIVATE /* as in internal.h, which MPI files do not include */
#define MPOOL__PRIVATE __attribute__((visibility("default")))
#endif

/* Failure reporting is reserved with the job, when the call is accepted
 * (a call that cannot have it fails with ENOMEM then): a failure is never
 * lost to a later allocation, and never reads as a success.
 *
 * codes[]: two bits per item, 16 items a word: 0 succeeded (or not yet
 * finished), 1 MPOOL_ETASK, 2 MPOOL_EWORKER, 3 ECANCELED. Set by whoever
 * records the failure, with a CAS on the word (items of two chunks share a
 * word; a later record of the same item replaces the earlier one, as when
 * a worker dies while recording it). n/4 bytes: cheap next to the inputs.
 *
 * cfail[c]: the lowest failed item of chunk c and its status: off1 0 says
 * at one load that the chunk has no failure (the bytes collection's fast
 * path); the per-item details are in items[] below. off1: 0 none, else
 * 1 + the item's offset in the chunk. Only one process writes a chunk's
 * record at a time (the one running the chunk, or the one settling it
 * after its death), so the record needs no CAS: status first, then off1
 * (release). */
typedef struct {
    uint32_t off1;
    int32_t status; /* as mpool_failure_t.status */
} mpool__chunk_fail_t;

/* items[i]: item i's own record, reserved when the call is accepted (the
 * backend's submit: mpool__job_attach_items) and written only when the item
 * fails or is retried, so a map without failures never touches it (the
 * codes say which records are valid). Small jobs keep it in their own block;
 * larger ones in a block of its own, whose pages cost memory only where a
 * failure touched them. status: as mpool_failure_t.status. reruns: runs
 * started after the first (retries). cause: MPOOL__CAUSE_*, with the exit
 * status in bits 8..15 for CAUSE_EXIT: what the message can say even when
 * the details below could not be allocated.
 * Fallback: when the heap cannot hold the table (items NULL, or a backend
 * that does not attach one), every failure is still kept with its code,
 * the lowest failure of each chunk with its status (cfail), the others
 * with status 0, attempts 1 and no retries. */
typedef struct {
    int32_t status;
    uint16_t reruns;
    uint16_t cause;
} mpool__item_fail_t;

enum {
    MPOOL__CAUSE_NONE,    /* the code and status say it all */
    MPOOL__CAUSE_TIMEOUT, /* SIGKILL by task_timeout */
    MPOOL__CAUSE_OUTSIDE, /* SIGKILL not sent by the pool */
    MPOOL__CAUSE_OOM,     /* SIGKILL while the cgroup's oom_kill count moved */
    MPOOL__CAUSE_EXIT,    /* exited (status in bits 8..15) */
    MPOOL__CAUSE_SIGNAL,  /* another fatal signal */
    MPOOL__CAUSE_SERVER,  /* killed with the pool's fork server, which died */
};

#define MPOOL__FRAMES 32 /* return addresses kept of a crashed task */

/* The rarer details of one failure, allocated in the shared heap on the
 * failure path by whoever records them (a worker: its task's message; the
 * fork server: a crash) and pushed on job->details (a CAS on the head; the
 * newest first; an item retried after a crash may have several: the
 * newest counts, and only while the item's code says it failed). When the
 * allocation fails the failure is still recorded, only without them.
 * Freed in the caller's process once the job is gone (src/pool_failure.c). */
typedef struct mpool__fail_detail {
    struct mpool__fail_detail *next;
    uint64_t index;
    uint64_t fault_addr;
    int32_t sig; /* fatal signal with a stack recorded, else 0 */
    int32_t pid; /* the worker's, 0 unknown */
    uint32_t has_addr, nframes;
    uint64_t frames[MPOOL__FRAMES];
    char msg[MPOOL_TASK_MSG_MAX + 1]; /* the task's message, "" none */
} mpool__fail_detail_t;

/* chunk_done[c] = flags | count. STARTED is set by the backend when a
 * worker takes the chunk (chunks are taken in increasing order, so the
 * first chunk without it bounds every scan); REPORTED by an iterator once it
 * handed the complete chunk out (no one else writes the word then). */
#define MPOOL__CHUNK_REPORTED 0x80000000u
#define MPOOL__CHUNK_STARTED  0x40000000u
#define MPOOL__CHUNK_COUNT    0x3fffffffu
#define MPOOL__CHUNK_MAX      MPOOL__CHUNK_COUNT /* largest chunksize */

/* A submitted call (apply = a map of one item). Lives in the shared heap so
 * that every process of the family can read it and record progress; the
 * header fields are read-only once submitted. */
typedef struct mpool__job {
    mpool_task_fn fn;
    const char *in; /* n * in_size bytes: the caller's (shared heap) or a copy */
    char *out;      /* n * out_size bytes: the caller's (shared heap) or staging */
    void *ctx;
    size_t n, in_size, out_size, chunksize;
    uint32_t nchunks;
    /* Lowest failed index so far, SIZE_MAX when none. Lowered with a CAS by
     * whoever records a failure (worker, fork server, parent). */
    size_t first_fail;
    /* Failure records (see mpool__chunk_fail_t), in the job's own block
     * after chunk_done: nchunks records, then (n + 15) / 16 code words. */
    mpool__chunk_fail_t *cfail;
    uint32_t *codes;
    /* Details of failures (mpool__fail_detail_t), newest first; NULL none. */
    struct mpool__fail_detail *details;
    /* Per-item records (see mpool__item_fail_t); NULL: the fallback. */
    mpool__item_fail_t *items;
    /* The caller-side failure registry's name for the job (src/
     * pool_failure.c), 0 none: tells it when the job's memory is gone. */
    uint64_t fail_id;
    /* Completion hint, for waiters: chunks counted finished (counted before
     * their chunk_done store, so the job is still alive), done_word 0 -> 1
     * (a futex) when that count reaches nchunks, and the caller's threads
     * asleep on done_word. Only a hint: a worker dying at the wrong instant
     * can make it fire early or never, so waiters still nap, re-check, and
     * fall back to waiting on every chunk. */
    uint32_t finished, done_word, waiting;
    /* The backend's own name for the job, set when it is submitted and
     * zeroed by the pool code before the job is freed: lets a helper tell,
     * from memory that may have been freed, whether it is still that job. */
    uint64_t tag;
    /* Free for the backend's own lists of jobs (the local backend: its
     * overflow queue), in the submitting process only. */
    struct mpool__job *backend_next;
    /* chunk_done[c]: items of chunk c that are finished (succeeded or
     * failed), 0..len. Written only by the one process running the chunk
     * (or, once it died, by the fork server or the parent on its behalf);
     * always an absolute count, so a repeated store is harmless. The parent
     * sets MPOOL__CHUNK_REPORTED on complete chunks that an iterator has
     * returned. Flexible array: nchunks words. */
    uint32_t chunk_done[];
} mpool__job_t;

/* The layout claims of the job record that every process relies on. */
_Static_assert((MPOOL__CHUNK_REPORTED & MPOOL__CHUNK_STARTED) == 0 &&
                   ((MPOOL__CHUNK_REPORTED | MPOOL__CHUNK_STARTED) & MPOOL__CHUNK_COUNT) == 0,
               "chunk_done: the two flags and the count never overlap");
_Static_assert(sizeof(mpool__chunk_fail_t) == 8 && offsetof(mpool__chunk_fail_t, off1) == 0,
               "a chunk's failure record is two 32-bit words");
_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0) &&
                   offsetof(mpool__job_t, tag) % 8 == 0,
               "tag is read atomically, even from memory that was freed and reused");
_Static_assert(__atomic_always_lock_free(sizeof(size_t), 0) &&
                   offsetof(mpool__job_t, first_fail) % sizeof(size_t) == 0,
               "first_fail is lowered by CAS from any process");
_Static_assert(offsetof(mpool__job_t, chunk_done) == sizeof(mpool__job_t),
               "chunk_done starts right after the header (mpool__job_size)");

/* Items in chunk c. */
static inline size_t mpool__chunk_len(const mpool__job_t *j, size_t c)
{
    size_t lo = c * j->chunksize, hi = lo + j->chunksize;
    return (hi > j->n ? j->n : hi) - lo;
}

/* The functions below are exported although internal, so that a backend
 * built as a library of its own (libmpool_mpi) can use them: the linker
 * version script (src/libmpool.map) puts them in the MPOOL_PRIVATE node,
 * never in the public MPOOL_1.0 node, and dev.sh's export check holds it. */

/* Records that item i failed with (code, status): code MPOOL_ETASK,
 * MPOOL_EWORKER or ECANCELED. Safe from any process; one process at a time
 * per chunk, in the order the chunk's items run (see cfail). Never fails:
 * the records were reserved with the job. The caller then stores
 * chunk_done as usual. */
MPOOL__PRIVATE void mpool__job_fail(mpool__job_t *j, size_t i, int code, int status);

/* Jobs of up to this many items keep their records in their own block. */
#define MPOOL__ITEMS_IN_JOB 64

/* Reserves the job's per-item records (items): in its block, or in a block
 * of their own (none when the heap is full: the fallback). A backend's
 * submit calls it before any worker can see the job. */
void mpool__job_attach_items(mpool__job_t *j);

/* The records' place in the job's own block (jobs of up to
 * MPOOL__ITEMS_IN_JOB items). */
mpool__item_fail_t *mpool__job_in_block(const mpool__job_t *j);

/* Notes how item i's worker died (MPOOL__CAUSE_*), before mpool__job_fail
 * of that item (no-op without records). */
void mpool__job_cause(mpool__job_t *j, size_t i, unsigned cause);

/* Pushes a details record (filled, index set) on the job's list. */
void mpool__job_add_detail(mpool__job_t *j, mpool__fail_detail_t *d);

/* Counts a finished chunk in the completion hint; the last one sets
 * done_word and wakes its waiters. Call before the chunk_done store. */
MPOOL__PRIVATE void mpool__job_count_chunk(mpool__job_t *j);

/* Marks every unfinished item of the job as failed with (code, status) and
 * the job complete. Only when no worker can still touch the job. */
MPOOL__PRIVATE void mpool__job_fail_rest(mpool__job_t *j, int code, int status);

/* For the front end (src/pool.c), not exported. */

/* Bytes of the block of a job of n items in nchunks chunks, its failure
 * records included; the records' offsets in it go to *cfail_at and
 * *codes_at. 0 when the size overflows. */
size_t mpool__job_size(size_t n, size_t nchunks, size_t *cfail_at, size_t *codes_at);

/* True once every item of chunk c is finished. */
bool mpool__chunk_complete(const mpool__job_t *j, size_t c);

/* Item i's failure code (0: it succeeded) and its status. Exact once its
 * chunk is complete, or for the item that first_fail names. */
int mpool__item_code(const mpool__job_t *j, size_t i, int *status);

/* What a backend implements. `p->impl` is its private state. Every wait takes
 * an absolute CLOCK_MONOTONIC deadline (NULL = none). */
typedef struct mpool__pool_ops {
    /* Starts the workers. Returns 0 or an error code (EAGAIN, ENOMEM,
     * MPOOL_ETASK when an initializer failed). */
    int (*start)(mpool_pool_t *p);
    /* Hands a job to the workers. Does not wait for it to run, nor for
     * room to queue it (it is called under the pool lock, which terminate
     * needs). Returns 0 or an error code. */
    int (*submit)(mpool_pool_t *p, mpool__job_t *job);
    /* A counter that moves whenever some chunk progresses or completes. */
    uint32_t (*event)(mpool_pool_t *p);
    /* Waits until `job` looks complete (its done_word), or, with job NULL
     * or done_word already set, until event() differs from `seen`; or until
     * the deadline passes. May return earlier (spuriously). Detects dead
     * helpers on the way: never sleeps unboundedly on a process that is
     * gone. With a deadline already past it only does that detection. */
    void (*wait)(mpool_pool_t *p, mpool__job_t *job, uint32_t seen,
                 const struct timespec *deadline);
    /* No more submissions: workers exit once the submitted work is done. */
    void (*close)(mpool_pool_t *p);
    /* Waits for the workers to have exited (after close). 0 or ETIMEDOUT. */
    int (*join)(mpool_pool_t *p, const struct timespec *deadline);
    /* Stops every worker now; on return none can touch any job again.
     * The caller then fails what is left with ECANCELED. */
    void (*terminate)(mpool_pool_t *p);
    /* Releases the backend's state (after terminate or join). */
    void (*destroy)(mpool_pool_t *p);
} mpool__pool_ops_t;

/* The backend's one write into the front end's state: the pool is broken
 * (a backend-wide failure, e.g. the fork server died too often). Call it
 * only once no worker can touch any job again, from the caller's threads
 * (inside wait, join or submit): the pool code then fails every unfinished
 * item with (code, status), and further submissions fail with EINVAL.
 * Of struct mpool_pool, backends read `opts` and `broken` and own `impl`;
 * they write nothing else of it. */
void mpool__pool_break(mpool_pool_t *p, int code, int status);

/* For a backend's destroy: releases what the failures of the pool's live
 * jobs keep outside their job (src/pool_failure.c). */
void mpool__failures_pool_gone(mpool_pool_t *p);

/* The local backend: fork server + forked workers over the shared heap. */
extern const mpool__pool_ops_t mpool__pool_local_ops;

/* mpool_pool_new with another backend: validates opts (processes 0 becomes
 * mpool_cpu_count()), then calls ops->start. Every public mpool_pool_*,
 * mpool_async_* and mpool_iter_* function then works on the result. */
MPOOL__PRIVATE mpool_pool_t *mpool__pool_new_with(const mpool__pool_ops_t *ops,
                                                  const mpool_pool_opts_t *opts);

enum { MPOOL__POOL_RUNNING, MPOOL__POOL_CLOSED, MPOOL__POOL_TERMINATED };

struct mpool_pool {
    const mpool__pool_ops_t *ops;
    void *impl;
    mpool_pool_opts_t opts; /* processes resolved (never 0) */
    int state;              /* MPOOL__POOL_*; changed by the owning process only */
    /* Backend-wide failure, set only by mpool__pool_break (see there). */
    int broken, broken_status;
    bool broken_applied;      /* the unfinished items were failed already */
    struct mpool_async *live; /* every async/iter whose job is not released */
    /* Serializes submissions, `live` and state changes between the
     * caller's threads (waits run without it). */
    pthread_mutex_t lock;
    /* Calls in flight and the free that waits for them (src/pool.c,
     * pool_enter). users: raised by each public call on entry, lowered on
     * return, by the caller's threads. freeing: 0, then 1 once
     * mpool_pool_free started (never back). idle: free sleeps on it, under
     * `lock`, until users is 0. */
    unsigned users;
    bool freeing;
    pthread_cond_t idle;
    /* Staging blocks kept for reuse (under `lock`): a freed large shared
     * block gives its pages back, and faulting them in again in the parent
     * and in every worker costs more than the copy itself. */
    struct {
        void *ptr;
        size_t size;
    } cache[2];
};

#endif
