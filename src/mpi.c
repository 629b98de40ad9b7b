/* The MPI backend of the Pool: the task registry, the start of a pool on
 * every rank, the worker ranks' loop, and the ops table that plugs the
 * master's engine (mpi_master.c) into the public Pool code (pool.c).
 *
 * Start-up, collective over MPI_COMM_WORLD:
 *   1. every rank checks its opts (EINVAL before MPI starts), then MPI_Init;
 *   2. rank 0 broadcasts a header (its verdict, workers, sizes) and, when
 *      all is well, the payload: ctx bytes then the registered task names,
 *      each NUL-terminated, in registry order (a task's id on the wire is
 *      its index in rank 0's registry);
 *   3. each worker resolves the names in its own registry and runs its
 *      initializer; an MPI_Allreduce(MAX) of their verdicts decides:
 *      0 go, VERDICT_NAME a name is unknown somewhere, VERDICT_INIT an
 *      initializer failed. On anything but go every rank finalizes (rank 0
 *      only if libmpool initialized MPI) and the workers exit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi_internal.h"

/* ---- the task registry ---------------------------------------------------
 * Filled by mpool_task_register before the pool starts, then frozen (the
 * names went to the workers). reg_mu guards it. */

typedef struct {
    char name[MPOOL_TASK_NAME_MAX + 1];
    mpool_task_fn fn;
} mpi_task;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static mpi_task *reg;
static size_t reg_n, reg_cap;
static bool reg_frozen;

static int reg_find(const char *name, mpool_task_fn fn)
{
    for (size_t i = 0; i < reg_n; i++)
        if ((name && strcmp(reg[i].name, name) == 0) || (fn && reg[i].fn == fn)) return (int)i;
    return -1;
}

static int reg_add(const char *name, mpool_task_fn fn)
{
    int i = reg_find(name, NULL), k = reg_find(NULL, fn);
    if (i >= 0 || k >= 0) return i == k ? 0 : EINVAL; /* the same pair again is fine */
    if (reg_n == reg_cap) {
        size_t cap = reg_cap ? 2 * reg_cap : 16;
        mpi_task *t = realloc(reg, cap * sizeof *t);
        if (!t) return ENOMEM;
        reg = t;
        reg_cap = cap;
    }
    strcpy(reg[reg_n].name, name);
    reg[reg_n++].fn = fn;
    return 0;
}

int mpool_task_register(const char *name, mpool_task_fn fn)
{
    if (!name || !fn || !*name || strlen(name) > MPOOL_TASK_NAME_MAX) return EINVAL;
    pthread_mutex_lock(&reg_mu);
    int rc = reg_frozen ? EINVAL : reg_add(name, fn);
    pthread_mutex_unlock(&reg_mu);
    return rc;
}

const char *mpool_task_name(mpool_task_fn fn)
{
    pthread_mutex_lock(&reg_mu);
    int i = fn ? reg_find(NULL, fn) : -1;
    const char *name = i >= 0 ? reg[i].name : NULL;
    pthread_mutex_unlock(&reg_mu);
    return name;
}

int mpool__mpi_task_id(mpool_task_fn fn)
{
    pthread_mutex_lock(&reg_mu);
    int i = fn ? reg_find(NULL, fn) : -1;
    pthread_mutex_unlock(&reg_mu);
    return i;
}

/* ---- MPI facts ------------------------------------------------------------ */

static bool mpi_live(void)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int mpool_mpi_rank(void)
{
    int r = 0;
    if (mpi_live()) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

int mpool_mpi_size(void)
{
    int s = 0;
    if (mpi_live()) MPI_Comm_size(MPI_COMM_WORLD, &s);
    return s;
}

/* ---- the start-up exchange ------------------------------------------------ */

enum { VERDICT_GO, VERDICT_BADARG, VERDICT_NOMEM, VERDICT_NAME, VERDICT_INIT };

typedef struct {
    int32_t verdict; /* rank 0's: GO, BADARG or NOMEM */
    int32_t nworkers;
    uint32_t ntasks;
    uint32_t pad;
    uint64_t ctx_size, names_len;
} mpi_start_hdr;

static int verdict_errno(int v)
{
    return v == VERDICT_INIT ? MPOOL_ETASK : v == VERDICT_NOMEM ? ENOMEM : EINVAL;
}

static bool opts_ok(const mpool_mpi_opts_t *o)
{
    return o->pool.processes >= 0 && o->pool.maxtasksperchild == 0 && o->pool.task_timeout == 0 &&
           o->ctx_size <= MPI_MSG_LIMIT && (o->ctx_size == 0 || o->pool.ctx) &&
           o->inflight <= MPI_DEPTH_MAX;
}

/* Rank 0: its verdict, then (on GO) the ctx bytes and the task names. */
static int master_announce(const mpool_mpi_opts_t *o, int size, int local)
{
    mpi_start_hdr h = {.verdict = local, .ctx_size = o->ctx_size, .ntasks = (uint32_t)reg_n};
    h.nworkers = o->pool.processes ? o->pool.processes : size - 1;
    for (size_t i = 0; i < reg_n; i++) h.names_len += strlen(reg[i].name) + 1;
    char *pay = NULL;
    if (h.verdict == VERDICT_GO && !(pay = malloc(h.ctx_size + h.names_len + 1)))
        h.verdict = VERDICT_NOMEM;
    MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (h.verdict != VERDICT_GO) return h.verdict;
    if (h.ctx_size) memcpy(pay, o->pool.ctx, h.ctx_size);
    char *q = pay + h.ctx_size;
    for (size_t i = 0; i < reg_n; i++) q = stpcpy(q, reg[i].name) + 1;
    MPI_Bcast(pay, (int)(h.ctx_size + h.names_len), MPI_BYTE, 0, MPI_COMM_WORLD);
    free(pay);
    int verdict = VERDICT_GO, all;
    MPI_Allreduce(&verdict, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

/* What a worker rank needs to serve. */
typedef struct {
    int rank, nworkers;
    char *pay;          /* rank 0's payload: ctx bytes, then names */
    void *ctx;          /* into pay, or NULL */
    mpool_task_fn *fns; /* by rank 0's task id */
    uint32_t ntasks;
} mpi_worker;

/* Resolves rank 0's task names (the payload after the ctx) locally. */
static int worker_resolve(mpi_worker *w, const mpi_start_hdr *h)
{
    w->fns = calloc(h->ntasks ? h->ntasks : 1, sizeof *w->fns);
    if (!w->fns) return VERDICT_NOMEM;
    w->ntasks = h->ntasks;
    const char *q = w->pay + h->ctx_size, *end = q + h->names_len;
    for (uint32_t i = 0; i < h->ntasks; i++) {
        if (q >= end) return VERDICT_NAME;
        int k = reg_find(q, NULL);
        if (k < 0) return VERDICT_NAME;
        w->fns[i] = reg[k].fn;
        q += strlen(q) + 1;
    }
    return VERDICT_GO;
}

/* A worker's side of the start-up; returns the common verdict. */
static int worker_join_start(mpi_worker *w, const mpool_mpi_opts_t *o)
{
    mpi_start_hdr h;
    MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (h.verdict != VERDICT_GO) return h.verdict;
    w->nworkers = h.nworkers;
    w->pay = malloc(h.ctx_size + h.names_len + 1);
    if (!w->pay) MPI_Abort(MPI_COMM_WORLD, ENOMEM); /* cannot skip a collective */
    MPI_Bcast(w->pay, (int)(h.ctx_size + h.names_len), MPI_BYTE, 0, MPI_COMM_WORLD);
    w->pay[h.ctx_size + h.names_len] = 0;
    w->ctx = h.ctx_size ? w->pay : NULL;
    int verdict = worker_resolve(w, &h);
    bool serving = w->rank <= w->nworkers;
    if (verdict == VERDICT_GO && serving && o->pool.initializer &&
        o->pool.initializer(o->pool.initarg) != 0)
        verdict = VERDICT_INIT;
    int all;
    MPI_Allreduce(&verdict, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

/* ---- the worker ranks ----------------------------------------------------- */

/* Growable message buffer. */
typedef struct {
    char *p;
    size_t cap;
} mpi_buf;

static void buf_need(mpi_buf *b, size_t len)
{
    if (len <= b->cap) return;
    char *p = realloc(b->p, len);
    if (!p) MPI_Abort(MPI_COMM_WORLD, ENOMEM); /* a worker cannot answer without it */
    b->p = p;
    b->cap = len;
}

static void nap(unsigned idle)
{
    unsigned shift = idle < 6 ? idle : 6;
    struct timespec ts = {0, 10000L << shift}; /* 10 us .. 640 us */
    nanosleep(&ts, NULL);
}

/* Waits for the next message from rank 0; polls for a while, then naps, so
 * that an idle worker leaves the CPU to the others. Returns its tag. */
static int worker_wait(MPI_Status *st)
{
    for (unsigned idle = 0;; idle++) {
        int flag;
        MPI_Iprobe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, st);
        if (flag) return st->MPI_TAG;
        if (idle >= 256) nap((idle - 256) / 4);
    }
}

static bool stop_pending(void)
{
    int flag;
    MPI_Iprobe(0, MPI_TAG_STOP, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    return flag;
}

/* When to look for STOP between items: every 5 ms of work. The clock is read
 * after every item while items are slow, and only every 64th once they take
 * under 1 us, so that the look costs tiny tasks nothing. */
typedef struct {
    double probed, read; /* last probe, last clock reading */
    unsigned mask, k;    /* read the clock when (++k & mask) == 0 */
} mpi_stop_check;

static bool stop_due(mpi_stop_check *sc)
{
    if (++sc->k & sc->mask) return false;
    double t = mpi_now(), per = (t - sc->read) / (sc->mask + 1);
    sc->read = t;
    sc->mask = per < 1e-6 ? (sc->mask << 1 | 1) & 63 : 0;
    if (t - sc->probed < 5e-3) return false;
    sc->probed = t;
    return true;
}

/* Runs one piece (message in `in`, `len` bytes) and sends the answer:
 * result header, outputs, then the int32 return values (outputs first, so
 * they are as aligned as the inputs). Returns false, without answering, when
 * rank 0 asked to stop meanwhile. */
static bool worker_run(const mpi_worker *w, const char *msg, size_t len, mpi_buf *res)
{
    mpi_task_hdr h;
    if (len < sizeof h) MPI_Abort(MPI_COMM_WORLD, 72);
    memcpy(&h, msg, sizeof h);
    if (h.task >= w->ntasks || h.in_size > MPI_ITEM_MAX || h.out_size > MPI_ITEM_MAX ||
        h.count > MPI_MSG_LIMIT || len != sizeof h + h.count * h.in_size ||
        (h.count > 1 && h.count * (h.out_size + 4) > MPI_MSG_LIMIT))
        MPI_Abort(MPI_COMM_WORLD, 72); /* mismatched binaries */
    size_t rlen = sizeof(mpi_result_hdr) + h.count * (h.out_size + 4);
    buf_need(res, rlen);
    mpi_result_hdr rh = {.start = h.start, .count = h.count};
    memcpy(res->p, &rh, sizeof rh);
    char *outs = res->p + sizeof rh, *rvs = outs + h.count * h.out_size;
    const char *in = msg + sizeof h;
    mpool_task_fn fn = w->fns[h.task];
    mpi_stop_check sc = {.probed = mpi_now(), .read = mpi_now()};
    for (size_t i = 0; i < h.count; i++) {
        int32_t rv = fn(in + i * h.in_size, outs + i * h.out_size, w->ctx);
        memcpy(rvs + 4 * i, &rv, 4);
        if (i + 1 < h.count && stop_due(&sc) && stop_pending()) return false;
    }
    MPI_Send(res->p, (int)rlen, MPI_BYTE, 0, MPI_TAG_RESULT, MPI_COMM_WORLD);
    return true;
}

/* Receives and drops what rank 0 sent before STOP, then STOP itself. */
static void worker_drain(mpi_buf *msg)
{
    for (;;) {
        MPI_Status st;
        int tag = worker_wait(&st), count;
        MPI_Get_count(&st, MPI_BYTE, &count);
        buf_need(msg, (size_t)count + 1);
        MPI_Recv(msg->p, count, MPI_BYTE, 0, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (tag == MPI_TAG_STOP) return;
    }
}

static void worker_serve(const mpi_worker *w)
{
    mpi_buf msg = {0}, res = {0};
    for (;;) {
        MPI_Status st;
        int tag = worker_wait(&st), count;
        if (tag != MPI_TAG_TASK || stop_pending()) break;
        MPI_Get_count(&st, MPI_BYTE, &count);
        buf_need(&msg, (size_t)count + 1);
        MPI_Recv(msg.p, count, MPI_BYTE, 0, MPI_TAG_TASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (!worker_run(w, msg.p, (size_t)count, &res)) break;
    }
    worker_drain(&msg);
    MPI_Send(NULL, 0, MPI_BYTE, 0, MPI_TAG_BYE, MPI_COMM_WORLD);
    free(msg.p);
    free(res.p);
}

__attribute__((noreturn)) static void worker_main(const mpool_mpi_opts_t *o, int rank)
{
    mpi_worker w = {.rank = rank};
    if (worker_join_start(&w, o) == VERDICT_GO) worker_serve(&w);
    free(w.pay);
    free(w.fns);
    MPI_Finalize();
    exit(0);
}

/* ---- rank 0: the pool handle ------------------------------------------------ */

typedef struct {
    mpi_eng_t *eng;
    bool we_init; /* libmpool called MPI_Init: it finalizes at destroy */
} mpi_pool;

static mpi_eng_t *eng_of(mpool_pool_t *p)
{
    return ((mpi_pool *)p->impl)->eng;
}

/* The backend state made before the start-up exchange, for op_start (one
 * MPI pool per run, made by one thread: see pool_made). */
static mpi_pool *pending;

static int op_start(mpool_pool_t *p)
{
    int rc = mpool__mpi_eng_start(pending->eng);
    if (rc == 0) p->impl = pending;
    return rc;
}

static int op_submit(mpool_pool_t *p, mpool__job_t *job)
{
    int task = mpool__mpi_task_id(job->fn);
    if (task < 0 || job->in_size > MPI_ITEM_MAX || job->out_size > MPI_ITEM_MAX) return EINVAL;
    return mpool__mpi_eng_submit(eng_of(p), job, task);
}

static uint32_t op_event(mpool_pool_t *p)
{
    return mpool__mpi_eng_event(eng_of(p));
}

static void op_wait(mpool_pool_t *p, mpool__job_t *job, uint32_t seen,
                    const struct timespec *deadline)
{
    mpool__mpi_eng_wait(eng_of(p), job, seen, deadline);
}

static void op_close(mpool_pool_t *p)
{
    mpool__mpi_eng_close(eng_of(p));
}

static int op_join(mpool_pool_t *p, const struct timespec *deadline)
{
    return mpool__mpi_eng_join(eng_of(p), deadline);
}

static void op_terminate(mpool_pool_t *p)
{
    mpool__mpi_eng_terminate(eng_of(p));
}

static void op_destroy(mpool_pool_t *p)
{
    mpi_pool *mp = p->impl;
    mpool__mpi_eng_free(mp->eng);
    if (mp->we_init) MPI_Finalize();
    free(mp);
    p->impl = NULL;
}

static const mpool__pool_ops_t mpi_ops = {
    .start = op_start,
    .submit = op_submit,
    .event = op_event,
    .wait = op_wait,
    .close = op_close,
    .join = op_join,
    .terminate = op_terminate,
    .destroy = op_destroy,
};

static void stop_idle_workers(int size);

/* The backend state, made before the start-up exchange so that running
 * out of memory is a verdict like the others. */
static mpi_pool *impl_new(const mpool_mpi_opts_t *o, int nworkers, int size, bool we_init)
{
    mpi_pool *mp = calloc(1, sizeof *mp);
    mpi_eng_t *e = mp ? mpool__mpi_eng_new(nworkers, size, o->inflight) : NULL;
    if (!e) {
        free(mp);
        return NULL;
    }
    mp->eng = e;
    mp->we_init = we_init;
    return mp;
}

static void impl_free(mpi_pool *mp)
{
    if (!mp) return;
    mpool__mpi_eng_free(mp->eng);
    free(mp);
}

/* The pool over the started engine (pool.c makes the handle, then calls
 * op_start). NULL with errno when that fails; the workers were stopped. */
static mpool_pool_t *pool_open(const mpool_mpi_opts_t *o, int nworkers, int size)
{
    mpool_pool_opts_t po = o->pool;
    po.processes = nworkers;
    mpool_pool_t *p = mpool__pool_new_with(&mpi_ops, &po);
    if (!p) {
        int err = errno;
        stop_idle_workers(size); /* they serve already */
        errno = err;
    }
    return p;
}

/* Ends workers that were never sent a task (the pool failed to start after
 * all): STOP to each, then their BYEs. */
static void stop_idle_workers(int size)
{
    for (int rk = 1; rk < size; rk++) MPI_Send(NULL, 0, MPI_BYTE, rk, MPI_TAG_STOP, MPI_COMM_WORLD);
    for (int rk = 1; rk < size; rk++)
        MPI_Recv(NULL, 0, MPI_BYTE, rk, MPI_TAG_BYE, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

/* ---- creation ---------------------------------------------------------------- */

static bool pool_made; /* one MPI pool per run */

/* MPI_Init unless done. 0, or EINVAL when MPI was finalized already. */
static int mpi_begin(int *argc, char ***argv, bool *we_init, int *prov)
{
    int init, fin;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (fin) return EINVAL;
    *we_init = !init;
    if (init)
        MPI_Query_thread(prov);
    else if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, prov) != MPI_SUCCESS)
        return EINVAL;
    return 0;
}

mpool_pool_t *mpool_mpi_pool_new(int *argc, char ***argv, const mpool_mpi_opts_t *opts)
{
    mpool_mpi_opts_t o = {0};
    if (opts) o = *opts;
    bool we_init;
    int prov, rank, size;
    if (!opts_ok(&o)) return errno = EINVAL, NULL; /* alike on every rank: before MPI */
    if (__atomic_exchange_n(&pool_made, true, __ATOMIC_ACQ_REL)) return errno = EINVAL, NULL;
    int rc = mpi_begin(argc, argv, &we_init, &prov);
    if (rc) return errno = rc, NULL;
    pthread_mutex_lock(&reg_mu);
    reg_frozen = true;
    pthread_mutex_unlock(&reg_mu);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != 0) worker_main(&o, rank);
    int local = VERDICT_GO;
    int nworkers = o.pool.processes ? o.pool.processes : size - 1;
    if (prov < MPI_THREAD_SERIALIZED || size < 2 || nworkers > size - 1) local = VERDICT_BADARG;
    pending = local == VERDICT_GO ? impl_new(&o, nworkers, size, we_init) : NULL;
    if (local == VERDICT_GO && !pending) local = VERDICT_NOMEM;
    int verdict = master_announce(&o, size, local);
    mpool_pool_t *p = verdict == VERDICT_GO ? pool_open(&o, nworkers, size) : NULL;
    rc = verdict == VERDICT_GO && !p ? errno : 0;
    if (!p) impl_free(pending);
    pending = NULL;
    if (p) return p;
    if (we_init) MPI_Finalize();
    errno = rc ? rc : verdict_errno(verdict);
    return NULL;
}
