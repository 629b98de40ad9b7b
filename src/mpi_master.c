/* Rank 0's side of the MPI Pool: the engine that self-schedules pieces of
 * the jobs' chunks over the worker ranks, its communication thread, and the
 * Pool ops over it (mpool__pool_mpi_ops). pool.c owns the jobs and their
 * bookkeeping (pool_backend.h); the engine only moves items: it sends
 * pieces, writes the answers into job->out, records failures and publishes
 * progress in job->chunk_done.
 *
 * Threads. The user's threads submit and wait; the communication thread
 * makes every MPI call. They meet under one mutex `mu`; the user's threads
 * sleep on `event_cv` (monotonic clock, for absolute deadlines), the
 * communication thread on `wake_cv`.
 *
 * Self-scheduling. Each worker has a ring of slots: the pieces sent to it and
 * not yet answered, oldest first (how many: worker_wants). The thread keeps
 * every ring full from the job queue (FIFO, one piece at a time round the
 * workers), so a worker finds its next piece already queued when it finishes
 * one, and a fast worker, answering sooner, is sent more than a slow one. A
 * piece is a chunk; or several consecutive chunks of short tasks (see
 * piece_len); or a part of one chunk that would not fit in MPOOL__MPI_MSG_LIMIT
 * (an item bigger than that travels alone).
 *
 * Waiting without burning a CPU. Open MPI's blocking calls poll; on a machine
 * where the workers need every core, a polling master steals a third of the
 * time. So the thread polls (MPI_Iprobe) briefly after activity, then sleeps
 * on `wake_cv` with a timeout doubling from 20 us up to nap_cap(), and
 * without a timeout when nothing is in flight. Submissions and stop requests
 * signal `wake_cv`.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "internal.h"
#include "mpi_internal.h"
#include "mpi_master.h"
#include "mpi_proto.h"

/* A job in the engine. refs: 1 while it has unsent items (it is in the
 * queue) + 1 per piece in flight; freed at 0. Changed under mu. */
typedef struct run {
    mpool__job_t *job;
    int task;
    size_t next;   /* first item not yet sent */
    size_t piece;  /* items in the last piece sent */
    double item_s; /* seconds per item seen by the workers, averaged; 0: unknown */
    unsigned refs;
    struct run *qnext;
} run_t;

typedef struct {
    run_t *run; /* NULL: free */
    size_t start, count;
    char *buf; /* the TAG_TASK message, kept until its send completes */
    size_t cap;
    MPI_Request req;
} slot_t;

typedef struct {
    slot_t *slots; /* ring of e->depth: pieces sent and not answered, oldest at head */
    unsigned head, n;
    double last; /* when its previous answer came */
    double busy; /* average seconds between answers while it had more queued; 0: unknown */
} wk_t;

struct mpool__mpi_eng {
    pthread_mutex_t mu;
    pthread_cond_t event_cv; /* `event` moved */
    pthread_cond_t wake_cv;  /* work submitted, close, or stop requested */
    int nworkers, size;
    unsigned depth; /* pieces queued per worker: slots in each ring */
    wk_t *w;
    unsigned rr;     /* worker the next dispatch round starts at */
    size_t inflight; /* pieces in all rings */
    run_t *qhead, *qtail;
    /* Progress counter for pool.c's waits: incremented (under mu, read
     * without) after every answer recorded, at terminate and at stop. */
    uint32_t event;
    bool closed;     /* no more submissions; stop once the work is done */
    bool terminated; /* answers are dropped: no job is touched again */
    bool stop_req;   /* the thread must stop the workers now */
    bool stopped;    /* every worker said BYE; the thread is ending */
    pthread_t thread;
    bool started;  /* the thread runs (set by the creating thread) */
    bool finalize; /* libmpool called MPI_Init: ops->destroy finalizes */
    char *scratch; /* comm thread: the last message received */
    size_t scratch_cap;
};

static void bump(mpool__mpi_eng_t *e)
{
    __atomic_add_fetch(&e->event, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&e->event_cv);
}

static void run_unref(run_t *r)
{
    if (--r->refs == 0) free(r);
}

/* ---- dispatch: keep every worker's ring full, under mu -------------------- */

static void queue_pop(mpool__mpi_eng_t *e)
{
    run_t *r = e->qhead;
    e->qhead = r->qnext;
    if (!e->qhead) e->qtail = NULL;
    run_unref(r);
}

/* Items of r's next piece: to the end of the current chunk, cut to fit a
 * message. Where chunks are tiny (short tasks, chunksize 1), whole chunks
 * are added while the piece stays under MPOOL__MPI_PIECE_TIME of work by this
 * job's measured time per item, growing at most twofold per piece: one
 * message then carries many chunks, so the per-message cost (a few us here,
 * more across a network) does not dominate, while long tasks still go one
 * chunk at a time and balance. */
static size_t piece_len(const run_t *r)
{
    const mpool__job_t *j = r->job;
    size_t cs = j->chunksize, end = (r->next / cs + 1) * cs;
    size_t count = (end > j->n ? j->n : end) - r->next;
    size_t item = j->in_size > j->out_size + MPOOL__MPI_RV_SIZE ? j->in_size
                                                                : j->out_size + MPOOL__MPI_RV_SIZE;
    size_t cap = (MPOOL__MPI_MSG_LIMIT - sizeof(mpool__mpi_task_hdr_t)) / item;
    if (count >= cap) return cap ? cap : 1;
    if (r->item_s <= 0) return count;
    double want = MPOOL__MPI_PIECE_TIME / r->item_s;
    if (want > 2.0 * (double)r->piece) want = 2.0 * (double)r->piece;
    if (want > (double)cap) want = (double)cap;
    while (r->next + count < j->n && (double)(count + cs) <= want)
        count = (r->next + count + cs > j->n ? j->n - r->next : count + cs);
    return count;
}

/* Whether worker wk should be sent one more piece: while it has fewer than
 * `depth` queued. Two suffice (measured: deeper queues of batched short
 * pieces were slower), since a piece is at least ~MPOOL__MPI_PIECE_TIME of work
 * once its job is timed, and the master naps at most half the queued
 * work. */
static bool worker_wants(const mpool__mpi_eng_t *e, const wk_t *wk)
{
    return wk->n < e->depth;
}

static bool slot_fill(slot_t *s, run_t *r)
{
    const mpool__job_t *j = r->job;
    size_t count = piece_len(r);
    size_t len = sizeof(mpool__mpi_task_hdr_t) + count * j->in_size;
    if (len > s->cap) {
        char *b = realloc(s->buf, len);
        if (!b) return false;
        s->buf = b;
        s->cap = len;
    }
    mpool__mpi_task_hdr_t h = {.start = r->next,
                               .count = count,
                               .in_size = j->in_size,
                               .out_size = j->out_size,
                               .task = (uint32_t)r->task};
    memcpy(s->buf, &h, sizeof h);
    if (count && j->in_size)
        memcpy(s->buf + sizeof h, j->in + r->next * j->in_size, count * j->in_size);
    s->run = r;
    s->start = r->next;
    s->count = count;
    return true;
}

/* Sends the next piece to worker w if it has room and work is queued. */
static bool dispatch_one(mpool__mpi_eng_t *e, int w)
{
    wk_t *wk = &e->w[w];
    run_t *r = e->qhead;
    if (!r || !worker_wants(e, wk)) return false;
    slot_t *s = &wk->slots[(wk->head + wk->n) % e->depth];
    if (!slot_fill(s, r)) return false; /* out of memory: retried later */
    mpool__job_t *j = r->job;
    size_t cs = j->chunksize; /* chunks start in increasing order */
    for (size_t c = (r->next + cs - 1) / cs; c * cs < r->next + s->count; c++)
        __atomic_store_n(&j->chunk_done[c], MPOOL__CHUNK_STARTED, __ATOMIC_RELEASE);
    MPI_Isend(s->buf, (int)(sizeof(mpool__mpi_task_hdr_t) + s->count * j->in_size), MPI_BYTE, w + 1,
              MPOOL__MPI_TAG_TASK, MPI_COMM_WORLD, &s->req);
    r->refs++;
    r->next += s->count;
    r->piece = s->count;
    if (r->next == j->n) queue_pop(e);
    wk->n++;
    e->inflight++;
    return true;
}

static bool dispatch(mpool__mpi_eng_t *e)
{
    bool any = false, progress = true;
    while (progress && e->qhead) {
        progress = false;
        for (int k = 0; k < e->nworkers; k++) {
            int w = (int)((e->rr + (unsigned)k) % (unsigned)e->nworkers);
            if (dispatch_one(e, w)) progress = any = true;
        }
        e->rr = (e->rr + 1) % (unsigned)e->nworkers;
    }
    return any;
}

/* ---- answers ------------------------------------------------------------- */

/* Writes the answer to piece [start, start + count) into the job: outputs of
 * the items that succeeded, failures, then the chunk's progress. */
static void record(mpool__job_t *j, size_t start, size_t count, const char *rvs, const char *outs)
{
    size_t os = j->out_size, failed = 0;
    for (size_t i = 0; i < count; i++) failed += mpool__mpi_rv_get(rvs, i) != 0;
    if (!failed && os) memcpy(j->out + start * os, outs, count * os);
    for (size_t i = 0; failed && i < count; i++) {
        int32_t rv = mpool__mpi_rv_get(rvs, i);
        if (rv != 0)
            mpool__job_fail(j, start + i, MPOOL_ETASK, rv);
        else if (os)
            memcpy(j->out + (start + i) * os, outs + i * os, os);
    }
    size_t cs = j->chunksize, end = start + count;
    for (size_t c = start / cs; c * cs < end; c++) { /* the chunks it covers */
        size_t lo = c * cs > start ? c * cs : start, hi = (c + 1) * cs < end ? (c + 1) * cs : end;
        uint32_t *cd = &j->chunk_done[c];
        size_t now = (__atomic_load_n(cd, __ATOMIC_RELAXED) & MPOOL__CHUNK_COUNT) + hi - lo;
        if (now == mpool__chunk_len(j, c)) mpool__job_count_chunk(j); /* before the store */
        __atomic_store_n(cd, MPOOL__CHUNK_STARTED | (uint32_t)now, __ATOMIC_RELEASE);
    }
}

/* Matches the message in e->scratch from worker rank `src` with that worker's
 * oldest piece, under mu. A malformed answer means mismatched binaries, not
 * bad user input: the job is aborted. */
static void deliver(mpool__mpi_eng_t *e, int src, size_t len)
{
    wk_t *wk = (src >= 1 && src <= e->nworkers) ? &e->w[src - 1] : NULL;
    if (!wk || wk->n == 0 || len < sizeof(mpool__mpi_result_hdr_t))
        MPI_Abort(MPI_COMM_WORLD, MPOOL__MPI_ABORT_UNEXPECTED);
    slot_t *s = &wk->slots[wk->head];
    mpool__mpi_result_hdr_t h;
    run_t *r = s->run;
    memcpy(&h, e->scratch, sizeof h);
    if (h.start != s->start || h.count != s->count ||
        len != sizeof h + s->count * (MPOOL__MPI_RV_SIZE + r->job->out_size))
        MPI_Abort(MPI_COMM_WORLD, MPOOL__MPI_ABORT_MISMATCH);
    MPI_Wait(&s->req, MPI_STATUS_IGNORE); /* answered, so it was received */
    double now = mpool__now();
    if (wk->n > 1 && wk->last > 0) { /* it was busy since its last answer */
        double dt = now - wk->last, per = dt / (double)s->count;
        wk->busy = wk->busy > 0 ? 0.75 * wk->busy + 0.25 * dt : dt;
        r->item_s = r->item_s > 0 ? 0.75 * r->item_s + 0.25 * per : per;
    }
    wk->last = now;
    if (!e->terminated)
        record(r->job, s->start, s->count, e->scratch + sizeof h + s->count * r->job->out_size,
               e->scratch + sizeof h);
    s->run = NULL;
    wk->head = (wk->head + 1) % e->depth;
    wk->n--;
    e->inflight--;
    run_unref(r);
}

/* Receives one message with `tag` (or MPI_ANY_TAG) if one is there into
 * e->scratch; returns its tag, or -1. Outside mu. */
static int receive(mpool__mpi_eng_t *e, int tag, int *src, size_t *len)
{
    int flag, count;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &flag, &st);
    if (!flag) return -1;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if ((size_t)count > e->scratch_cap) {
        char *b = realloc(e->scratch, (size_t)count);
        if (!b) return -1; /* the message waits; retried after a pause */
        e->scratch = b;
        e->scratch_cap = (size_t)count;
    }
    MPI_Recv(e->scratch, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
    *src = st.MPI_SOURCE;
    *len = (size_t)count;
    return st.MPI_TAG;
}

/* Takes every answer there is, refilling the workers' queues as it goes;
 * wakes the waiters once per batch (at most 64 answers), not once per
 * answer: with short tasks, waking the user's thread for each would cost
 * more than the tasks. */
static bool poll_results(mpool__mpi_eng_t *e)
{
    unsigned got = 0;
    int src;
    size_t len;
    while (receive(e, MPOOL__MPI_TAG_RESULT, &src, &len) >= 0) {
        pthread_mutex_lock(&e->mu);
        deliver(e, src, len);
        dispatch(e);
        if (++got % 64 == 0) bump(e);
        pthread_mutex_unlock(&e->mu);
    }
    if (got % 64) {
        pthread_mutex_lock(&e->mu);
        bump(e);
        pthread_mutex_unlock(&e->mu);
    }
    return got > 0;
}

/* ---- the communication thread --------------------------------------------- */

/* The longest the master may nap with pieces in flight: less than half the
 * work still queued at the busiest-fed worker (so it is refilled before it
 * runs dry), an eighth of a piece when a worker has only its last one (so
 * the answer is taken soon after it comes). 160 us while nothing is known. */
static double nap_cap(const mpool__mpi_eng_t *e)
{
    double cap = MPOOL__MPI_NAP_MAX;
    for (int w = 0; w < e->nworkers; w++) {
        const wk_t *wk = &e->w[w];
        if (wk->n == 0) continue;
        if (wk->busy <= 0) return 160e-6;
        double c = wk->n > 1 ? wk->busy * (wk->n - 1) / 2 : wk->busy / 8;
        if (c < cap) cap = c;
    }
    return cap < 20e-6 ? 20e-6 : cap > MPOOL__MPI_NAP_MAX ? MPOOL__MPI_NAP_MAX : cap;
}

/* Seconds until the earliest answer expected from a worker with pieces in
 * flight (its last answer + its time per piece), or 0 if one is due or
 * unknown. */
static double next_answer_in(const mpool__mpi_eng_t *e)
{
    double now = mpool__now(), next = -1;
    for (int w = 0; w < e->nworkers; w++) {
        const wk_t *wk = &e->w[w];
        if (wk->n == 0) continue;
        if (wk->busy <= 0) return 0;
        double t = wk->last + wk->busy - now;
        if (next < 0 || t < next) next = t;
    }
    return next > 0 ? next : 0;
}

/* After `idle` fruitless rounds: poll on, or sleep on wake_cv. Under mu.
 * The nap lasts until the next answer is expected; once that is past, it
 * doubles from 20 us; never over nap_cap(). */
static void backoff(mpool__mpi_eng_t *e, unsigned idle)
{
    if (e->inflight == 0 && !e->qhead) {
        pthread_cond_wait(&e->wake_cv, &e->mu);
        return;
    }
    if (idle < 64) return; /* some tens of us of polling: answers come quickly */
    unsigned shift = idle - 64 < 6 ? idle - 64 : 6;
    double nap = next_answer_in(e), cap = nap_cap(e);
    if (nap < 20e-6) nap = 20e-6 * (double)(1u << shift);
    struct timespec ts = mpool__deadline_min(NULL, nap < cap ? nap : cap);
    pthread_cond_timedwait(&e->wake_cv, &e->mu, &ts);
}

/* End of the pool: STOP to every worker rank, then take answers until each
 * said BYE, so that no send of either side is left pending at MPI_Finalize. */
static void shutdown_workers(mpool__mpi_eng_t *e)
{
    for (int rk = 1; rk < e->size; rk++)
        MPI_Send(NULL, 0, MPI_BYTE, rk, MPOOL__MPI_TAG_STOP, MPI_COMM_WORLD);
    int byes = 0;
    unsigned idle = 0;
    while (byes < e->size - 1) {
        int src;
        size_t len;
        int tag = receive(e, MPI_ANY_TAG, &src, &len);
        pthread_mutex_lock(&e->mu);
        if (tag == MPOOL__MPI_TAG_RESULT) deliver(e, src, len), bump(e);
        if (tag == MPOOL__MPI_TAG_BYE) byes++;
        idle = tag < 0 ? idle + 1 : 0;
        if (idle > 64) {
            struct timespec ts = mpool__deadline_min(NULL, 200e-6);
            pthread_cond_timedwait(&e->wake_cv, &e->mu, &ts);
        }
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_lock(&e->mu);
    for (int w = 0; w < e->nworkers; w++) { /* pieces the workers dropped */
        wk_t *wk = &e->w[w];
        for (; wk->n; wk->n--, wk->head = (wk->head + 1) % e->depth) {
            MPI_Wait(&wk->slots[wk->head].req, MPI_STATUS_IGNORE);
            run_unref(wk->slots[wk->head].run);
            wk->slots[wk->head].run = NULL;
        }
    }
    while (e->qhead) queue_pop(e);
    e->inflight = 0;
    e->stopped = true;
    bump(e);
    pthread_mutex_unlock(&e->mu);
}

static void *comm_main(void *arg)
{
    mpool__mpi_eng_t *e = arg;
    unsigned idle = 0;
    pthread_mutex_lock(&e->mu);
    while (!e->stop_req) {
        bool act = dispatch(e);
        pthread_mutex_unlock(&e->mu);
        act |= poll_results(e);
        pthread_mutex_lock(&e->mu);
        if (e->closed && !e->qhead && e->inflight == 0) e->stop_req = true;
        idle = act ? 0 : idle + 1;
        if (!act && !e->stop_req) backoff(e, idle);
    }
    pthread_mutex_unlock(&e->mu);
    shutdown_workers(e);
    return NULL;
}

/* ---- the engine ----------------------------------------------------------- */

static void eng_dealloc(mpool__mpi_eng_t *e)
{
    for (int w = 0; e->w && w < e->nworkers; w++) {
        for (unsigned k = 0; e->w[w].slots && k < e->depth; k++) free(e->w[w].slots[k].buf);
        free(e->w[w].slots);
    }
    free(e->w);
    free(e->scratch);
    free(e);
}

mpool__mpi_eng_t *mpool__mpi_eng_new(int nworkers, int size, unsigned depth, bool finalize)
{
    mpool__mpi_eng_t *e = calloc(1, sizeof *e);
    if (!e) return errno = ENOMEM, NULL;
    e->nworkers = nworkers;
    e->size = size;
    e->depth = depth ? depth : MPOOL__MPI_DEPTH_DEFAULT;
    e->w = calloc((size_t)nworkers, sizeof *e->w);
    bool ok = e->w != NULL;
    for (int w = 0; ok && w < nworkers; w++)
        ok = (e->w[w].slots = calloc(e->depth, sizeof(slot_t))) != NULL;
    if (!ok) eng_dealloc(e);
    if (!ok) return errno = ENOMEM, NULL;
    e->finalize = finalize;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->event_cv, &ca);
    pthread_cond_init(&e->wake_cv, &ca);
    pthread_condattr_destroy(&ca);
    return e;
}

void mpool__mpi_eng_free(mpool__mpi_eng_t *e)
{
    pthread_mutex_lock(&e->mu);
    e->closed = e->terminated = e->stop_req = true;
    pthread_cond_signal(&e->wake_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->started) pthread_join(e->thread, NULL);
    pthread_cond_destroy(&e->event_cv);
    pthread_cond_destroy(&e->wake_cv);
    pthread_mutex_destroy(&e->mu);
    eng_dealloc(e);
}

/* ---- the ops of pool_backend.h: p->impl is the engine ---------------------- */

static mpool__mpi_eng_t *staged; /* what the next op_start adopts */

void mpool__mpi_eng_stage(mpool__mpi_eng_t *e)
{
    staged = e;
}

/* Starts the communication thread, once no other thread calls MPI. An
 * engine is staged for one pool: its thread was never started. */
static int op_start(mpool_pool_t *p)
{
    mpool__mpi_eng_t *e = staged;
    if (pthread_create(&e->thread, NULL, comm_main, e) != 0) return EAGAIN;
    e->started = true;
    p->impl = e;
    return 0;
}

/* Queues the job's items for the workers. 0, EINVAL (an unregistered task,
 * an item over MPOOL__MPI_ITEM_MAX, or closed) or ENOMEM. */
static int op_submit(mpool_pool_t *p, mpool__job_t *job)
{
    mpool__mpi_eng_t *e = p->impl;
    int task = mpool__mpi_task_id(job->fn);
    if (task < 0 || job->in_size > MPOOL__MPI_ITEM_MAX || job->out_size > MPOOL__MPI_ITEM_MAX)
        return EINVAL;
    if (job->n == 0) return 0;
    run_t *r = calloc(1, sizeof *r);
    if (!r) return ENOMEM;
    r->job = job;
    r->task = task;
    r->refs = 1;
    pthread_mutex_lock(&e->mu);
    int rc = e->closed ? EINVAL : 0;
    if (rc == 0) {
        if (e->qtail)
            e->qtail->qnext = r;
        else
            e->qhead = r;
        e->qtail = r;
        pthread_cond_signal(&e->wake_cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc) free(r);
    return rc;
}

static uint32_t op_event(mpool_pool_t *p)
{
    return __atomic_load_n(&((mpool__mpi_eng_t *)p->impl)->event, __ATOMIC_ACQUIRE);
}

/* Sleeps until the job is complete (by its done_word) or, with job NULL or
 * complete already, until `event` moves; at most MPOOL__MPI_WAIT_NAP at a
 * time, since pool.c may complete a job itself (terminate) without a word
 * to this engine. Every answer batch broadcasts event_cv, so the job's
 * completion is seen at once. */
static void op_wait(mpool_pool_t *p, mpool__job_t *job, uint32_t seen,
                    const struct timespec *deadline)
{
    mpool__mpi_eng_t *e = p->impl;
    if (job && __atomic_load_n(&job->done_word, __ATOMIC_ACQUIRE)) job = NULL;
    struct timespec nap = mpool__deadline_min(deadline, MPOOL__MPI_WAIT_NAP);
    pthread_mutex_lock(&e->mu);
    while (job ? !__atomic_load_n(&job->done_word, __ATOMIC_ACQUIRE) : e->event == seen)
        if (pthread_cond_timedwait(&e->event_cv, &e->mu, &nap) == ETIMEDOUT) break;
    pthread_mutex_unlock(&e->mu);
}

static void op_close(mpool_pool_t *p)
{
    mpool__mpi_eng_t *e = p->impl;
    pthread_mutex_lock(&e->mu);
    e->closed = true;
    pthread_cond_signal(&e->wake_cv);
    pthread_mutex_unlock(&e->mu);
}

static int op_join(mpool_pool_t *p, const struct timespec *deadline)
{
    mpool__mpi_eng_t *e = p->impl;
    int rc = 0;
    pthread_mutex_lock(&e->mu);
    while (!e->stopped && rc == 0)
        rc = deadline ? pthread_cond_timedwait(&e->event_cv, &e->mu, deadline)
                      : pthread_cond_wait(&e->event_cv, &e->mu);
    rc = e->stopped ? 0 : ETIMEDOUT;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* Drops every queued and running chunk, and tells the workers to stop. */
static void op_terminate(mpool_pool_t *p)
{
    mpool__mpi_eng_t *e = p->impl;
    pthread_mutex_lock(&e->mu);
    e->closed = e->terminated = e->stop_req = true;
    while (e->qhead) queue_pop(e);
    pthread_cond_signal(&e->wake_cv);
    bump(e);
    pthread_mutex_unlock(&e->mu);
}

/* Frees the engine, then finalizes MPI if libmpool initialized it. */
static void op_destroy(mpool_pool_t *p)
{
    mpool__mpi_eng_t *e = p->impl;
    bool finalize = e->finalize;
    mpool__mpi_eng_free(e);
    if (finalize) MPI_Finalize();
    p->impl = NULL;
}

const mpool__pool_ops_t mpool__pool_mpi_ops = {
    .start = op_start,
    .submit = op_submit,
    .event = op_event,
    .wait = op_wait,
    .close = op_close,
    .join = op_join,
    .terminate = op_terminate,
    .destroy = op_destroy,
};
