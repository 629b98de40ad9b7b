/* The MPI backend of the Pool, its public side (include/mpool/mpi.h): the
 * task registry, the start-up exchange on every rank (described with the
 * wire format in mpi_proto.h), and mpool_mpi_pool_new, which makes rank 0's
 * engine (mpi_master.c) or turns a worker rank into a server
 * (mpi_worker.c) that never returns. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "mpi_internal.h"
#include "mpi_master.h"
#include "mpi_proto.h"

/* ---- the task registry ---------------------------------------------------
 * Filled by mpool_task_register before the pool starts, then frozen (the
 * names went to the workers). reg_mu guards it. */

typedef struct {
    char name[MPOOL_TASK_NAME_MAX + 1];
    mpool_task_fn fn;
} task_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static task_t *reg;
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
        task_t *t = realloc(reg, cap * sizeof *t);
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

static int verdict_errno(int v)
{
    return v == MPOOL__MPI_VERDICT_INIT    ? MPOOL_ETASK
           : v == MPOOL__MPI_VERDICT_NOMEM ? ENOMEM
                                           : EINVAL;
}

static bool opts_ok(const mpool_mpi_opts_t *o)
{
    return o->pool.processes >= 0 && o->pool.maxtasksperchild == 0 && o->pool.task_timeout == 0 &&
           o->ctx_size <= MPOOL__MPI_MSG_LIMIT && (o->ctx_size == 0 || o->pool.ctx) &&
           o->inflight <= MPOOL__MPI_DEPTH_MAX;
}

/* Rank 0: its verdict, then (on GO) the ctx bytes and the task names. */
static int master_announce(const mpool_mpi_opts_t *o, int size, int local)
{
    mpool__mpi_start_hdr_t h = {
        .verdict = local, .ctx_size = o->ctx_size, .ntasks = (uint32_t)reg_n};
    h.nworkers = o->pool.processes ? o->pool.processes : size - 1;
    for (size_t i = 0; i < reg_n; i++) h.names_len += strlen(reg[i].name) + 1;
    char *pay = NULL;
    if (h.verdict == MPOOL__MPI_VERDICT_GO && !(pay = malloc(h.ctx_size + h.names_len + 1)))
        h.verdict = MPOOL__MPI_VERDICT_NOMEM;
    MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (h.verdict != MPOOL__MPI_VERDICT_GO) return h.verdict;
    if (h.ctx_size) memcpy(pay, o->pool.ctx, h.ctx_size);
    char *q = pay + h.ctx_size;
    for (size_t i = 0; i < reg_n; i++) q = stpcpy(q, reg[i].name) + 1;
    MPI_Bcast(pay, (int)(h.ctx_size + h.names_len), MPI_BYTE, 0, MPI_COMM_WORLD);
    free(pay);
    int verdict = MPOOL__MPI_VERDICT_GO, all;
    MPI_Allreduce(&verdict, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

/* Resolves rank 0's task names (the payload after the ctx) locally. */
static int worker_resolve(mpool__mpi_worker_t *w, const mpool__mpi_start_hdr_t *h)
{
    w->fns = calloc(h->ntasks ? h->ntasks : 1, sizeof *w->fns);
    if (!w->fns) return MPOOL__MPI_VERDICT_NOMEM;
    w->ntasks = h->ntasks;
    const char *q = w->pay + h->ctx_size, *end = q + h->names_len;
    for (uint32_t i = 0; i < h->ntasks; i++) {
        if (q >= end) return MPOOL__MPI_VERDICT_NAME;
        int k = reg_find(q, NULL);
        if (k < 0) return MPOOL__MPI_VERDICT_NAME;
        w->fns[i] = reg[k].fn;
        q += strlen(q) + 1;
    }
    return MPOOL__MPI_VERDICT_GO;
}

/* A worker's side of the start-up; returns the common verdict. */
static int worker_join_start(mpool__mpi_worker_t *w, const mpool_mpi_opts_t *o)
{
    mpool__mpi_start_hdr_t h;
    MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (h.verdict != MPOOL__MPI_VERDICT_GO) return h.verdict;
    w->nworkers = h.nworkers;
    w->pay = malloc(h.ctx_size + h.names_len + 1);
    if (!w->pay) MPI_Abort(MPI_COMM_WORLD, ENOMEM); /* cannot skip a collective */
    MPI_Bcast(w->pay, (int)(h.ctx_size + h.names_len), MPI_BYTE, 0, MPI_COMM_WORLD);
    w->pay[h.ctx_size + h.names_len] = 0;
    w->ctx = h.ctx_size ? w->pay : NULL;
    int verdict = worker_resolve(w, &h);
    bool serving = w->rank <= w->nworkers;
    if (verdict == MPOOL__MPI_VERDICT_GO && serving && o->pool.initializer &&
        o->pool.initializer(o->pool.initarg) != 0)
        verdict = MPOOL__MPI_VERDICT_INIT;
    int all;
    MPI_Allreduce(&verdict, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return all;
}

__attribute__((noreturn)) static void worker_main(const mpool_mpi_opts_t *o, int rank)
{
    mpool__mpi_worker_t w = {.rank = rank};
    if (worker_join_start(&w, o) == MPOOL__MPI_VERDICT_GO) mpool__mpi_worker_serve(&w);
    free(w.pay);
    free(w.fns);
    MPI_Finalize();
    exit(0);
}

/* Ends workers that were never sent a task (the pool failed to start after
 * all): STOP to each, then their BYEs. */
static void stop_idle_workers(int size)
{
    for (int rk = 1; rk < size; rk++)
        MPI_Send(NULL, 0, MPI_BYTE, rk, MPOOL__MPI_TAG_STOP, MPI_COMM_WORLD);
    for (int rk = 1; rk < size; rk++)
        MPI_Recv(NULL, 0, MPI_BYTE, rk, MPOOL__MPI_TAG_BYE, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

/* The pool over engine e (pool.c makes the handle, then its start op adopts
 * e and starts its thread). NULL with errno when that fails: e is still
 * ours, and the workers were stopped. */
static mpool_pool_t *pool_open(mpool__mpi_eng_t *e, const mpool_mpi_opts_t *o, int nworkers,
                               int size)
{
    mpool_pool_opts_t po = o->pool;
    po.processes = nworkers;
    mpool__mpi_eng_stage(e);
    mpool_pool_t *p = mpool__pool_new_with(&mpool__pool_mpi_ops, &po);
    mpool__mpi_eng_stage(NULL);
    if (!p) {
        int err = errno;
        stop_idle_workers(size); /* they serve already */
        errno = err;
    }
    return p;
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
    int local = MPOOL__MPI_VERDICT_GO;
    int nworkers = o.pool.processes ? o.pool.processes : size - 1;
    if (prov < MPI_THREAD_SERIALIZED || size < 2 || nworkers > size - 1)
        local = MPOOL__MPI_VERDICT_BADARG;
    mpool__mpi_eng_t *e = NULL;
    if (local == MPOOL__MPI_VERDICT_GO &&
        !(e = mpool__mpi_eng_new(nworkers, size, o.inflight, we_init)))
        local = MPOOL__MPI_VERDICT_NOMEM;
    int verdict = master_announce(&o, size, local);
    mpool_pool_t *p = verdict == MPOOL__MPI_VERDICT_GO ? pool_open(e, &o, nworkers, size) : NULL;
    rc = verdict == MPOOL__MPI_VERDICT_GO && !p ? errno : 0;
    if (!p && e) mpool__mpi_eng_free(e);
    if (p) return p;
    if (we_init) MPI_Finalize();
    errno = rc ? rc : verdict_errno(verdict);
    return NULL;
}
