/* The Pool's local backend, the parent side: the ops table, submissions
 * (the dispatch ring and its overflow queue with the feeder thread), the
 * waits of the caller's threads, the server's health, and the life cycle
 * (start, close, join, terminate, destroy). Layout, states and the ways a
 * death is detected: pool_local.h; the other two processes: pool_server.c
 * and pool_worker.c. */
#include <mpool/pool.h>
#include <mpool/shm.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool_local.h"

/* ---- the server's life cycle, seen from the parent ------------------------- */

/* The parent signals and waits for the server only through its pidfd: its
 * bare pid may already belong to another process once someone else (a
 * SIGCHLD handler, SIG_IGN) reaped it. */
static int pidfd_signal(int pidfd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/* Forks a server and takes a pidfd on it before the hand-off lets it run. */
static int server_start(local_t *L)
{
    shared_t *sh = L->sh;
    sh->handoff = HANDOFF_WAIT;
    sh->handoff_waiters = 0; /* a stale count of a killed server: no one sleeps now */
    sh->server_done = 0;
    pid_t pid = mpool__fork(true);
    if (pid < 0) return EAGAIN;
    if (pid == 0) mpool__local_server_main(sh);
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    int err = fd < 0 ? errno : 0;
    __atomic_store_n(&sh->handoff, fd < 0 ? HANDOFF_ABORT : HANDOFF_GO, __ATOMIC_SEQ_CST);
    mpool__wake(&sh->handoff, &sh->handoff_waiters, 1);
    if (fd < 0) {
        /* Until it read ABORT the child could not end by itself: its pid
         * is still its own, and waiting by pid is safe (EMFILE, say). */
        siginfo_t si;
        while (waitid(P_PID, (id_t)pid, &si, WEXITED) != 0 && errno == EINTR) {
        }
        return err == ESRCH ? EAGAIN : err;
    }
    L->server = pid;
    L->pidfd = fd;
    return 0;
}

/* True once the server has ended, waiting at most `timeout` seconds. */
static bool server_ended(const local_t *L, double timeout)
{
    double end = mpool__now() + timeout;
    for (;;) {
        struct pollfd pfd = {.fd = L->pidfd, .events = POLLIN};
        double left = end - mpool__now();
        int r = poll(&pfd, 1, left > 0 ? (int)(left * 1000) + 1 : 0);
        if (r > 0) return true;
        if ((r < 0 && errno != EINTR) || left <= 0) return false;
    }
}

/* Collects the ended server; true when it ended of its own accord. Its
 * status may have been taken by someone else (ECHILD): then server_done
 * tells. */
static bool server_reap(local_t *L)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r;
    while ((r = waitid(P_PIDFD, (id_t)L->pidfd, &si, WEXITED)) != 0 && errno == EINTR) {
    }
    close(L->pidfd);
    L->pidfd = -1;
    L->server = 0;
    if (r == 0 && si.si_pid) return si.si_code == CLD_EXITED && si.si_status == 0;
    return ld32(&L->sh->server_done) == 1;
}

/* True if `pid` is a zombie child of ours that started at `start` (the
 * low 32 bits of /proc's starttime, as in mpool__self()). */
static bool our_zombie(pid_t pid, uint32_t start)
{
    char st;
    pid_t ppid = 0;
    uint64_t t;
    if (mpool__read_stat(pid, &st, &ppid, &t) != 0) return false;
    return st == 'Z' && ppid == getpid() && (uint32_t)t == start;
}

/* Workers of a server that was killed die by PDEATHSIG and are
 * re-parented to the nearest subreaper, or PID 1: when that is us, reap
 * them. Only a zombie that is our child and has the worker's identity is
 * waited for (by pid: being our unreaped child, it cannot be recycled). */
static void reap_reparented(shared_t *sh)
{
    int sub = 0;
    if (getpid() != 1 && (prctl(PR_GET_CHILD_SUBREAPER, &sub) != 0 || !sub)) return;
    for (int k = 0; k < sh->nworkers; k++) {
        uint64_t id = ld64(&sh->slots[k].ident);
        pid_t pid = (pid_t)(uint32_t)id;
        siginfo_t si;
        if (pid > 0 && our_zombie(pid, (uint32_t)(id >> 32)))
            waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG);
    }
}

static void await_workers(shared_t *sh)
{
    for (int k = 0; k < sh->nworkers; k++) mpool__local_await_death(ld64(&sh->slots[k].ident));
    reap_reparented(sh);
}

/* Stops the server in order (it kills and reaps its workers, so that none
 * is re-parented to us), with SIGKILL after STOP_GRACE; then collects it
 * and waits (bounded) until its workers are gone. */
static void server_stop(local_t *L)
{
    if (!L->server) return;
    __atomic_store_n(&L->sh->stop, 1, __ATOMIC_SEQ_CST);
    pidfd_signal(L->pidfd, SIGCHLD); /* wakes its sigtimedwait */
    if (!server_ended(L, STOP_GRACE)) {
        pidfd_signal(L->pidfd, SIGKILL);
        if (!server_ended(L, DEATH_TIMEOUT)) { /* unkillable (D state): never hang */
            close(L->pidfd);
            L->pidfd = -1;
            L->server = 0;
        }
    }
    if (L->server) server_reap(L);
    await_workers(L->sh);
}

/* Work left that only a server can finish: unclaimed chunks, or ranges and
 * claims left in the slots of dead workers. */
static bool work_left(shared_t *sh)
{
    if (mpool__local_unclaimed_work(sh)) return true;
    for (int k = 0; k < sh->nworkers; k++)
        if (__atomic_load_n(&sh->slots[k].job, __ATOMIC_ACQUIRE) || ld32(&sh->slots[k].iflag))
            return true;
    return false;
}

/* Notices a dead server: passes on a broken pool, or forks a new server
 * when work is left for it. A server gone after close with nothing left
 * is never replaced, and replacements in a row without progress are
 * bounded (MAX_RESTARTS) and spaced (RESTART_GAP): "server gone" must
 * never turn into a fork loop. Under L->lock. */
static void health_locked(mpool_pool_t *p)
{
    local_t *L = p->impl;
    shared_t *sh = L->sh;
    if (!L->server || !server_ended(L, 0)) return;
    bool clean = server_reap(L);
    int broken = ld32((const uint32_t *)&sh->broken);
    if (!broken && clean && ld32(&sh->closing)) return; /* done: closed and drained */
    await_workers(sh);
    if (!broken && ld32(&sh->closing) && !work_left(sh)) return;
    /* Work finished since the last replacement: deaths, not a crash loop. */
    if (ld32(&sh->event) != L->event_at_restart) L->restarts = 0;
    if (!broken && ++L->restarts <= MAX_RESTARTS) {
        int gap = L->restarts - 1 < 10 ? L->restarts - 1 : 10;
        if (gap) usleep((useconds_t)(gap * RESTART_GAP * 1e6));
        if (server_start(L) == 0) {
            L->event_at_restart = ld32(&sh->event);
            return;
        }
    }
    mpool__pool_break(p, broken ? broken : MPOOL_EWORKER, broken ? sh->broken_status : SIGKILL);
}

/* The same, unless another thread is at it already. */
static void health(mpool_pool_t *p)
{
    local_t *L = p->impl;
    if (pthread_mutex_trylock(&L->lock)) return;
    health_locked(p);
    pthread_mutex_unlock(&L->lock);
}

static uint32_t local_event(mpool_pool_t *p)
{
    return ld32(&((local_t *)p->impl)->sh->event);
}

/* The waits of the caller's threads (wait.h). Spins: ~2 us of pause (a
 * pause measured 13-27 ns here); then yields, at most YIELD_FOR (~18 us)
 * of them, the bound in time because a yield may hand a busy worker the
 * CPU for a whole time slice. Longer than sync.h's 1.3 us: the parent waits
 * for workers that must first run a chunk, not for a hand-off of a few
 * hundred ns, and on 2 CPUs shared by parent and workers the yields give
 * the CPU to a worker that needs it. Nap PARENT_NAP: a dead server wakes
 * no one, so every nap ends in a health check, and a killed worker may
 * have died between its change and its wake. */
static const mpool__wait_policy_t parent_policy = {128, 64, PARENT_NAP};

static bool job_done(const void *arg)
{
    return ld32(&((const mpool__job_t *)arg)->done_word) != 0;
}

/* Sleeps until the job's done_word is set (bounded nap). */
static void job_wait(mpool_pool_t *p, mpool__job_t *job, const struct timespec *deadline)
{
    if (mpool__wait_spin_for(&parent_policy, YIELD_FOR, job_done, job)) return;
    mpool__wait_nap(&job->done_word, &job->waiting, job_done, job, deadline, parent_policy.nap);
    health(p);
}

static void local_wait(mpool_pool_t *p, mpool__job_t *job, uint32_t seen,
                       const struct timespec *deadline)
{
    shared_t *sh = ((local_t *)p->impl)->sh;
    if (mpool__expired(deadline)) {
        health(p); /* a try: only notice a dead server */
        return;
    }
    /* A whole job: sleep until its last chunk, not at every chunk. */
    if (job && !ld32(&job->done_word)) {
        job_wait(p, job, deadline);
        return;
    }
    mpool__change_t moved = {&sh->event, seen};
    if (mpool__wait_spin_for(&parent_policy, YIELD_FOR, mpool__changed, &moved)) return;
    mpool__wait_nap(&sh->event, &sh->pwait, mpool__changed, &moved, deadline, parent_policy.nap);
    health(p);
}

/* True when ring entry s % RING is free for job seq s: its previous job
 * (seq s - RING) is fully claimed. */
static bool entry_free(const shared_t *sh, uint32_t s)
{
    const dispatch_t *d = &sh->ring[s % RING];
    uint64_t w = ld64(&d->word);
    return (uint32_t)(w >> 32) == s - RING && (uint32_t)w >= d->nchunks;
}

/* Publishes job as seq tail (its entry is free) and wakes idle workers.
 * Under qlock. */
static void publish(shared_t *sh, mpool__job_t *job)
{
    uint32_t s = sh->tail;
    dispatch_t *d = &sh->ring[s % RING];
    /* Workers holding the old word now fail their CAS; then rewrite. */
    __atomic_store_n(&d->word, (uint64_t)s << 32 | CLAIM_BUSY, __ATOMIC_SEQ_CST);
    job->tag = TAG(s);
    __atomic_store_n(&d->job, job, __ATOMIC_RELAXED);
    __atomic_store_n(&d->nchunks, job->nchunks, __ATOMIC_RELAXED);
    __atomic_store_n(&d->word, (uint64_t)s << 32, __ATOMIC_RELEASE);
    __atomic_store_n(&sh->tail, s + 1, __ATOMIC_SEQ_CST);
    /* A spinning worker sees the new tail by itself (it re-reads the tail
     * after it stops spinning): wake sleepers only for the other chunks. */
    uint32_t wake = job->nchunks - (__atomic_load_n(&sh->spinner, __ATOMIC_SEQ_CST) != 0);
    if (wake) mpool__wake(&sh->tail, &sh->idle_waiters, wake > INT32_MAX ? INT32_MAX : (int)wake);
}

static void local_close(mpool_pool_t *p);

/* Moves queued jobs into the ring while entries are free; once the queue is
 * empty, a close that came meanwhile takes effect. Under qlock. */
static void feed(mpool_pool_t *p)
{
    local_t *L = p->impl;
    feed_t *f = &L->feed;
    while (f->head && entry_free(L->sh, L->sh->tail)) {
        mpool__job_t *j = f->head;
        if (!(f->head = j->backend_next)) f->last = NULL;
        j->backend_next = NULL;
        publish(L->sh, j);
    }
    if (!f->head && f->close_pending) {
        f->close_pending = false;
        local_close(p);
    }
}

/* The feeder's wait (wait.h). No spin: it sleeps beside the caller's
 * threads, and a spin would take a CPU from the workers whose claims free
 * the entries it waits for. Nap PARENT_NAP: a claim frees an entry without
 * moving the event, so the feeder looks again after every nap. */
static const mpool__wait_policy_t feeder_policy = {0, 0, PARENT_NAP};

typedef struct {
    mpool__change_t moved;
    const uint32_t *stop;
} feeder_wait_t;

static bool feeder_woken(const void *arg)
{
    const feeder_wait_t *w = arg;
    return mpool__changed(&w->moved) || ld32(w->stop);
}

/* The feeder: runs while jobs are queued. Entries free up as workers claim
 * chunks; a claim makes no event, but the claimed chunks' completions do,
 * so it sleeps on the event counter (bounded) between feeds. It never
 * checks the server's health (that forks from the checking thread). */
static void *feeder_main(void *arg)
{
    mpool_pool_t *p = arg;
    local_t *L = p->impl;
    shared_t *sh = L->sh;
    feed_t *f = &L->feed;
    pthread_mutex_lock(&f->qlock);
    for (;;) {
        feed(p);
        if (!f->head || ld32(&f->stop) || __atomic_load_n(&p->broken, __ATOMIC_ACQUIRE)) break;
        feeder_wait_t w = {{&sh->event, ld32(&sh->event)}, &f->stop};
        pthread_mutex_unlock(&f->qlock);
        if (!mpool__wait_spin(&feeder_policy, feeder_woken, &w))
            mpool__wait_nap(&sh->event, &sh->pwait, feeder_woken, &w, NULL, feeder_policy.nap);
        pthread_mutex_lock(&f->qlock);
    }
    f->running = false;
    pthread_mutex_unlock(&f->qlock);
    return NULL;
}

/* Under the pool lock and qlock. EAGAIN when no thread can be made. */
static int feeder_start(mpool_pool_t *p)
{
    feed_t *f = &((local_t *)p->impl)->feed;
    if (f->running) return 0;
    if (f->joinable) pthread_join(f->thread, NULL); /* it has left qlock for good */
    f->joinable = false;
    /* Every signal blocked: the program's handlers never run on it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&f->thread, NULL, feeder_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) return EAGAIN;
    f->running = f->joinable = true;
    return 0;
}

static int local_submit(mpool_pool_t *p, mpool__job_t *job)
{
    local_t *L = p->impl;
    feed_t *f = &L->feed;
    if (p->broken) return EINVAL;
    int err = 0;
    mpool__job_attach_items(job);
    pthread_mutex_lock(&f->qlock);
    feed(p);
    if (!f->head && entry_free(L->sh, L->sh->tail)) {
        publish(L->sh, job);
    } else if (!(err = feeder_start(p))) {
        job->backend_next = NULL;
        if (f->last)
            f->last->backend_next = job;
        else
            f->head = job;
        f->last = job;
    }
    pthread_mutex_unlock(&f->qlock);
    return err;
}

static shared_t *shared_new(const mpool_pool_opts_t *o)
{
    size_t size = sizeof(shared_t) + (size_t)o->processes * sizeof(wslot_t);
    shared_t *sh = mpool_shm_alloc(size);
    if (!sh) return NULL;
    sh->nworkers = o->processes;
    sh->maxtasks = o->maxtasksperchild;
    const char *fault = getenv("MPOOL_TEST_FAULT"); /* tests only: pool_local.h */
    sh->fault = fault && !strcmp(fault, "die-after-publish") ? FAULT_DIE_AFTER_PUBLISH : 0;
    sh->retries = o->retries;
    sh->task_timeout = o->task_timeout;
    sh->initializer = o->initializer;
    sh->initarg = o->initarg;
    pthread_sigmask(SIG_SETMASK, NULL, &sh->user_mask);
    /* Entry i starts as the fully claimed, empty job i - RING. */
    for (uint32_t i = 0; i < RING; i++) sh->ring[i].word = (uint64_t)(i - RING) << 32;
    return sh;
}

/* pool_new: waits until every worker ran its initializer. */
static int await_ready(mpool_pool_t *p)
{
    local_t *L = p->impl;
    shared_t *sh = L->sh;
    for (;;) {
        uint32_t seen = ld32(&sh->event);
        if (ld32(&sh->ready) >= (uint32_t)sh->nworkers) return 0;
        if (ld32((const uint32_t *)&sh->broken) || server_ended(L, 0)) break;
        /* No spin: the workers' initializers and forks take milliseconds. */
        mpool__change_t moved = {&sh->event, seen};
        mpool__wait_nap(&sh->event, &sh->pwait, mpool__changed, &moved, NULL, parent_policy.nap);
    }
    int broken = ld32((const uint32_t *)&sh->broken);
    server_stop(L);
    return broken == MPOOL_ETASK ? MPOOL_ETASK : EAGAIN;
}

static int local_start(mpool_pool_t *p)
{
    local_t *L = calloc(1, sizeof *L);
    if (!L) return ENOMEM;
    L->pidfd = -1;
    pthread_mutex_init(&L->lock, NULL);
    if (!(L->sh = shared_new(&p->opts))) {
        pthread_mutex_destroy(&L->lock);
        free(L);
        return ENOMEM;
    }
    p->impl = L;
    L->sh->inherit_fds = p->opts.inherit_fds;
    int err = server_start(L);
    if (!err) err = await_ready(p);
    if (!err) __atomic_store_n(&L->sh->started, 1, __ATOMIC_SEQ_CST);
    if (err) {
        mpool_shm_free(L->sh);
        pthread_mutex_destroy(&L->lock);
        free(L);
        p->impl = NULL;
    }
    return err;
}

static void local_close(mpool_pool_t *p)
{
    shared_t *sh = ((local_t *)p->impl)->sh;
    __atomic_store_n(&sh->closing, 1, __ATOMIC_SEQ_CST);
    mpool__wake(&sh->tail, &sh->idle_waiters, INT32_MAX);
}

static int local_join(mpool_pool_t *p, const struct timespec *deadline)
{
    local_t *L = p->impl;
    for (;;) {
        pthread_mutex_lock(&L->lock);
        health_locked(p);
        bool gone = !L->server;
        int pidfd = L->pidfd;
        pthread_mutex_unlock(&L->lock);
        if (gone) return 0;
        if (mpool__expired(deadline)) return ETIMEDOUT;
        struct timespec until = mpool__deadline_min(deadline, PARENT_NAP);
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        poll(&pfd, 1, (int)(mpool__remaining(&until) * 1000) + 1);
    }
}

static void local_terminate(mpool_pool_t *p)
{
    local_t *L = p->impl;
    pthread_mutex_lock(&L->lock);
    server_stop(L);
    pthread_mutex_unlock(&L->lock);
    await_workers(L->sh); /* also when the server was gone already */
}

static void local_destroy(mpool_pool_t *p)
{
    local_t *L = p->impl;
    if (!L) return;
    mpool__failures_pool_gone(p);
    if (L->pidfd >= 0) close(L->pidfd);
    mpool_shm_free(L->sh);
    pthread_mutex_destroy(&L->lock);
    free(L);
    p->impl = NULL;
}

/* ---- the overflow queue's part of the life cycle --------------------------- */

static int local_start_fed(mpool_pool_t *p)
{
    int err = local_start(p);
    if (!err) pthread_mutex_init(&((local_t *)p->impl)->feed.qlock, NULL);
    return err;
}

/* Close takes effect once the queued jobs are in the ring: workers exit when
 * the ring is drained and the pool is closing. */
static void local_close_fed(mpool_pool_t *p)
{
    feed_t *f = &((local_t *)p->impl)->feed;
    pthread_mutex_lock(&f->qlock);
    bool later = f->head != NULL;
    f->close_pending = later;
    pthread_mutex_unlock(&f->qlock);
    if (!later) local_close(p);
}

/* Stops the feeder and drops the queue (the pool code fails its jobs). */
static void feed_stop(local_t *L)
{
    feed_t *f = &L->feed;
    __atomic_store_n(&f->stop, 1, __ATOMIC_SEQ_CST);
    notify_parent(L->sh); /* its sleep ends at once */
    if (f->joinable) pthread_join(f->thread, NULL);
    f->joinable = false;
    pthread_mutex_lock(&f->qlock);
    f->head = f->last = NULL;
    f->close_pending = false;
    pthread_mutex_unlock(&f->qlock);
}

static void local_terminate_fed(mpool_pool_t *p)
{
    feed_stop(p->impl);
    local_terminate(p);
}

static void local_destroy_fed(mpool_pool_t *p)
{
    local_t *L = p->impl;
    if (!L) return;
    feed_stop(L);
    pthread_mutex_destroy(&L->feed.qlock);
    local_destroy(p);
}

const mpool__pool_ops_t mpool__pool_local_ops = {
    .start = local_start_fed,
    .submit = local_submit,
    .event = local_event,
    .wait = local_wait,
    .close = local_close_fed,
    .join = local_join,
    .terminate = local_terminate_fed,
    .destroy = local_destroy_fed,
};
