/* The Pool's local backend: a fork server and its workers, over the shared
 * heap.
 *
 * Processes. pool_new forks one single-threaded fork server (it dies with the
 * thread that created the pool). The server forks the workers (they die with
 * the server), reaps them, attributes a death to exactly the item that was
 * running, forks a replacement, enforces task_timeout, and exits once the
 * pool is closed and the work is done. Workers are never forked from a
 * thread of the user's process. If the server itself dies, the parent
 * notices within one bounded sleep (50 ms), waits until the old workers are
 * gone, and forks a new server, which settles the dead workers' slots the
 * same way and carries on.
 *
 * Work. The parent publishes jobs into a ring of dispatch entries; workers
 * claim chunks with a CAS on the entry's (seq, claimed) word, run the items
 * in a tight loop with no system call, record the item in progress in their
 * own slot (one plain store per item), and publish a chunk's completion with
 * one store to its progress word plus two atomics (the job's completion hint
 * and the pool's event counter). A FUTEX_WAKE happens only when the parent
 * announced that it sleeps: on that job's completion (a map waiter) or on
 * any chunk (an iterator). Waiting sides spin ~2 us, then yield the CPU
 * between checks up to ~20 us (2 CPUs shared by parent and workers), then
 * sleep; one idle worker at a time spins, the others sleep on the ring's
 * tail. No lock is shared with a worker: a worker dying at any instruction
 * leaves state that the server can settle exactly.
 */
#include <mpool/pool.h>
#include <mpool/shm.h>

#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "futex.h"
#include "internal.h"
#include "pool_backend.h"

#define RING         256u        /* dispatch entries: jobs with unclaimed chunks */
#define CLAIM_BUSY   0xffffffffu /* claimed field while the parent rewrites an entry */
#define SPIN_SECONDS 20e-6       /* bounded spin before a futex sleep */
#define YIELD_AFTER  2e-6        /* then yield the CPU between checks */
#define PARENT_NAP   0.05        /* longest parent sleep between health checks */
#define MAX_RESTARTS                                                                               \
    16                          /* server deaths in a row, with no work done in                    \
                                    between, before the pool breaks */
#define DEATH_TIMEOUT     2.0   /* how long to wait for a killed worker to vanish */
#define MAX_FORK_FAILURES 30    /* worker forks failing in a row (rounds of 1 s) */
#define STOP_GRACE        1.0   /* terminate: how long the server may take to stop its workers */
#define RESTART_GAP       0.005 /* pause per server replacement in a row (at most 10 of them) */
#define TAG(seq)          (0x6a6f6200ull << 32 | (seq)) /* job->tag of dispatch seq */

/* shared_t.handoff. */
enum { HANDOFF_WAIT, HANDOFF_GO, HANDOFF_ABORT };

/* Slot states (wslot_t.state). */
enum { SLOT_EMPTY, SLOT_STARTING, SLOT_READY, SLOT_INITFAIL };

typedef struct {
    /* (seq << 32) | claimed. seq: the job this entry holds; only the parent
     * changes it, when it reuses the entry once claimed == nchunks, going
     * through claimed = CLAIM_BUSY while it rewrites job and nchunks.
     * claimed: chunks taken so far; workers advance it by CAS (+1). */
    uint64_t word;
    mpool__job_t *job;
    uint32_t nchunks;
} dispatch_t;

/* One worker's slot. The worker occupying it writes it; the fork server
 * rewrites it only while no worker occupies it (after reaping). */
typedef struct MPOOL_ALIGNED {
    /* The range being run: items [lo, hi) of chunk `chunk` of `job` (NULL:
     * none). A range always ends at its chunk's end. It outlives a dead or
     * recycled worker: the replacement runs what is left. `job` is stored
     * last (release), so a set `job` means the rest is valid. */
    mpool__job_t *job;
    uint64_t chunk, lo, hi;
    /* 2i+1 while item i runs (inside fn); 2i when every item before i is
     * done; 2hi+2 once the finished range is counted in the job's hint. */
    uint64_t pos;
    uint32_t rgen; /* ranges started: tells a new item from an old one at the same pos */
    /* Claim intent, set before the claiming CAS and cleared once `job` holds
     * the chunk, so that a death between the two loses no chunk. */
    uint32_t iflag;
    mpool__job_t *ijob;
    uint32_t iseq, ichunk;
    uint32_t state;  /* SLOT_*: worker sets READY or INITFAIL; server resets */
    int32_t init_rc; /* the initializer's return value, with SLOT_INITFAIL */
    uint64_t ident;  /* mpool__self() of the occupant, 0 none */
    /* Server-private: the occupant's pid (0 none) and the timeout sampler. */
    pid_t pid;
    uint32_t seen_rgen;
    uint64_t seen_pos;
    double seen_at;
} wslot_t;

typedef struct {
    /* Jobs published (a futex: idle workers sleep on it). Parent-written. */
    uint32_t tail MPOOL_ALIGNED;
    uint32_t idle_waiters; /* workers asleep, or about to be, on tail */
    /* 1 + the slot index of the idle worker that spins (one at a time), 0
     * none. Set and cleared by that worker; the server clears it if the
     * worker died spinning. */
    uint32_t spinner;
    uint32_t closing; /* 0 -> 1 by the parent at close */
    /* Moves on every chunk completion and every server settlement (a
     * futex: the parent sleeps on it). pwait: parent threads asleep. */
    uint32_t event MPOOL_ALIGNED;
    uint32_t pwait;
    uint32_t ready; /* workers initialized (counted up by workers) */
    /* Set by the server before it exits for good, once every worker is
     * reaped: the code unfinished items fail with, and its status. */
    int32_t broken, broken_status;
    /* Server life cycle; each new server starts with all four at 0.
     * handoff: HANDOFF_* by the parent. The server waits for it before it
     * does anything that could end it, so its pid cannot be reaped (and
     * reused) before the parent holds a pidfd on it.
     * server_done: 0 -> 1 by the server just before it exits of its own
     * accord with every worker reaped: a clean exit, readable even when
     * someone else (a SIGCHLD handler, SIG_IGN) took its wait status.
     * stop: 0 -> 1 by the parent at terminate: kill and reap the workers,
     * then exit (woken with a SIGCHLD through the pidfd).
     * started: 0 -> 1 by the parent once pool_new succeeded; until then a
     * failing worker fork fails pool_new at once. */
    uint32_t handoff, server_done, stop, started;
    /* Read-only after pool_new. */
    bool inherit_fds;
    int nworkers;
    unsigned maxtasks;
    double task_timeout;
    int (*initializer)(void *);
    void *initarg;
    sigset_t user_mask;
    dispatch_t ring[RING];
    wslot_t slots[];
} shared_t;

/* The overflow queue, parent-private: jobs submitted while the ring's next
 * entry still holds an unclaimed job wait here, oldest first (linked by
 * job->backend_next), and a feeder thread moves them into the ring as the
 * workers claim entries. A submission never waits for the workers, and so
 * never holds the pool lock (which terminate needs) for long. */
typedef struct {
    /* The ring's producer side: tail, entry rewrites and this queue. */
    pthread_mutex_t qlock;
    mpool__job_t *head, *last;
    bool close_pending; /* close came while jobs were queued: it takes effect after them */
    bool running;       /* the feeder has not finished (under qlock) */
    bool joinable;      /* a feeder thread was started and not joined (under the pool lock) */
    uint32_t stop;      /* 0 -> 1 at terminate: the feeder exits */
    pthread_t thread;
} feed_t;

/* Parent-private. */
typedef struct {
    shared_t *sh;
    pid_t server;              /* 0: gone for good */
    int pidfd;                 /* the server's: -1 exactly when server is 0 */
    int restarts;              /* in a row without progress: see health_locked */
    uint32_t event_at_restart; /* sh->event when the server was last replaced */
    /* Taken around reaping and replacing the server: the caller's threads
     * may all be waiting, and only one of them must act on a death. */
    pthread_mutex_t lock;
    feed_t feed;
} local_t;

static inline uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint32_t ld32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Spins while *word == seen (and *stop is 0), at most SPIN_SECONDS: a few
 * microseconds of pause, then sched_yield between checks, so that on an
 * oversubscribed machine the process we wait for gets the CPU. True when
 * the word moved (or stop was set). */
static bool spin_while(const uint32_t *word, uint32_t seen, const uint32_t *stop)
{
    double start = mpool__now();
    for (unsigned k = 1;; k++) {
        if (ld32(word) != seen || (stop && ld32(stop))) return true;
        if (k % 16) {
            mpool__cpu_relax();
            continue;
        }
        double t = mpool__now() - start;
        if (t > SPIN_SECONDS) return false;
        if (t > YIELD_AFTER) sched_yield();
    }
}

static void notify_parent(shared_t *sh)
{
    __atomic_fetch_add(&sh->event, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&sh->pwait, __ATOMIC_SEQ_CST)) mpool__futex_wake(&sh->event, INT_MAX);
}

/* ---- worker --------------------------------------------------------------- */

/* Makes the claimed chunk c of job j the slot's range. */
static void take(wslot_t *s, mpool__job_t *j, uint32_t c)
{
    uint64_t lo = (uint64_t)c * j->chunksize;
    s->chunk = c;
    s->lo = lo;
    s->hi = lo + mpool__chunk_len(j, c);
    __atomic_store_n(&s->pos, 2 * lo, __ATOMIC_RELAXED);
    __atomic_store_n(&s->rgen, s->rgen + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->job, j, __ATOMIC_RELEASE);
    __atomic_store_n(&j->chunk_done[c], MPOOL__CHUNK_STARTED, __ATOMIC_RELEASE);
    __atomic_store_n(&s->iflag, 0, __ATOMIC_RELEASE);
}

/* Claims the next chunk of the oldest job with one left. *seqp: the first
 * job that may still have unclaimed chunks, as far as this worker knows. */
static bool claim(shared_t *sh, wslot_t *s, uint32_t *seqp)
{
    uint32_t seq = *seqp;
    while (seq != ld32(&sh->tail)) {
        dispatch_t *d = &sh->ring[seq % RING];
        uint64_t w = ld64(&d->word);
        uint32_t c = (uint32_t)w;
        mpool__job_t *j = __atomic_load_n(&d->job, __ATOMIC_ACQUIRE);
        uint32_t nchunks = __atomic_load_n(&d->nchunks, __ATOMIC_ACQUIRE);
        /* Another seq: the entry was reused, so job seq is fully claimed. */
        if ((uint32_t)(w >> 32) != seq || c == CLAIM_BUSY || c >= nchunks) {
            seq++;
            continue;
        }
        __atomic_store_n(&s->ijob, j, __ATOMIC_RELAXED);
        __atomic_store_n(&s->iseq, seq, __ATOMIC_RELAXED);
        __atomic_store_n(&s->ichunk, c, __ATOMIC_RELAXED);
        __atomic_store_n(&s->iflag, 1, __ATOMIC_SEQ_CST);
        /* Fails if the entry moved on since w was read, job and nchunks
         * included (the parent changes the word before rewriting them). */
        if (__atomic_compare_exchange_n(&d->word, &w, w + 1, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED)) {
            take(s, j, c);
            *seqp = seq;
            return true;
        }
    }
    __atomic_store_n(&s->iflag, 0, __ATOMIC_RELEASE);
    *seqp = seq;
    return false;
}

/* Runs the slot's range. True when the worker must be recycled
 * (maxtasksperchild reached); what is left of the range stays in the slot. */
static bool run_range(shared_t *sh, wslot_t *s, unsigned long *tasks)
{
    mpool__job_t *j = s->job;
    const size_t isz = j->in_size, osz = j->out_size, hi = s->hi;
    const char *in = j->in;
    char *out = j->out;
    const mpool_task_fn fn = j->fn;
    void *const ctx = j->ctx;
    const unsigned max = sh->maxtasks;
    for (size_t i = s->lo; i < hi; i++) {
        __atomic_store_n(&s->pos, 2 * i + 1, __ATOMIC_RELAXED);
        int r = fn(in ? in + i * isz : NULL, out ? out + i * osz : NULL, ctx);
        if (MPOOL_UNLIKELY(r)) mpool__job_fail(j, i, MPOOL_ETASK, r);
        /* Out of the task: a death from here on fails no item. */
        __atomic_store_n(&s->pos, 2 * (i + 1), __ATOMIC_RELEASE);
        if (MPOOL_UNLIKELY(max) && ++*tasks >= max && i + 1 < hi) return true;
    }
    /* pos 2hi: all run; 2hi + 2: counted too (settle must not count again).
     * Both before the chunk_done store: after it, the job may be freed. */
    __atomic_store_n(&s->pos, 2 * hi, __ATOMIC_RELEASE);
    mpool__job_count_chunk(j);
    __atomic_store_n(&s->pos, 2 * hi + 2, __ATOMIC_RELEASE);
    uint32_t len = (uint32_t)(hi - s->chunk * j->chunksize);
    __atomic_store_n(&j->chunk_done[s->chunk], MPOOL__CHUNK_STARTED | len, __ATOMIC_RELEASE);
    __atomic_store_n(&s->job, NULL, __ATOMIC_RELEASE);
    notify_parent(sh);
    return max && *tasks >= max;
}

/* Nothing to claim: spin briefly (one idle worker at a time, 2 CPUs), then
 * sleep on the tail. False when the pool is closing and nothing is left. */
static bool idle(shared_t *sh, wslot_t *s, uint32_t seq)
{
    uint32_t zero = 0, me = (uint32_t)(s - sh->slots) + 1;
    if (__atomic_compare_exchange_n(&sh->spinner, &zero, me, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
        spin_while(&sh->tail, seq, &sh->closing);
        __atomic_store_n(&sh->spinner, 0, __ATOMIC_SEQ_CST);
    }
    if (__atomic_load_n(&sh->tail, __ATOMIC_SEQ_CST) != seq) return true;
    if (ld32(&sh->closing)) return false;
    __atomic_fetch_add(&sh->idle_waiters, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&sh->tail, __ATOMIC_SEQ_CST) == seq && !ld32(&sh->closing)) {
        struct timespec ts = mpool__deadline_min(NULL, 1.0);
        mpool__futex_wait(&sh->tail, seq, &ts);
    }
    __atomic_fetch_sub(&sh->idle_waiters, 1, __ATOMIC_SEQ_CST);
    return true;
}

static void worker_loop(shared_t *sh, wslot_t *s)
{
    /* Jobs older than tail - RING are fully claimed (their entries were
     * reused); the unsigned wrap of the first RING seqs is harmless. */
    uint32_t seq = ld32(&sh->tail) - RING;
    unsigned long tasks = 0;
    for (;;) {
        if (__atomic_load_n(&s->job, __ATOMIC_ACQUIRE)) {
            if (run_range(sh, s, &tasks)) return;
        } else if (!claim(sh, s, &seq) && !idle(sh, s, seq)) {
            return;
        }
    }
}

__attribute__((noreturn)) static void worker_main(shared_t *sh, wslot_t *s)
{
    signal(SIGINT, SIG_IGN);
    pthread_sigmask(SIG_SETMASK, &sh->user_mask, NULL);
    __atomic_store_n(&s->ident, mpool__self(), __ATOMIC_RELEASE);
    if (sh->initializer) {
        int rc = sh->initializer(sh->initarg);
        if (rc) {
            s->init_rc = rc;
            __atomic_store_n(&s->state, SLOT_INITFAIL, __ATOMIC_RELEASE);
            mpool__child_exit(1);
        }
    }
    __atomic_store_n(&s->state, SLOT_READY, __ATOMIC_RELEASE);
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_SEQ_CST);
    notify_parent(sh);
    worker_loop(sh, s);
    mpool__child_exit(0);
}

/* ---- settling a dead worker's slot (fork server, or a new one) ------------- */

static bool someone_else_claiming(shared_t *sh, wslot_t *s)
{
    for (int k = 0; k < sh->nworkers; k++) {
        wslot_t *o = &sh->slots[k];
        if (o != s && ld32(&o->iflag) && o->ijob == s->ijob && o->ichunk == s->ichunk) return true;
    }
    return false;
}

/* The dead worker announced a claim of chunk (ijob, ichunk) but never made
 * it its range. If the claim went through and no one else took the chunk,
 * the chunk would be lost: adopt it into the slot. */
static void settle_claim(shared_t *sh, wslot_t *s)
{
    mpool__job_t *j = s->ijob;
    uint32_t c = s->ichunk;
    __atomic_store_n(&s->iflag, 0, __ATOMIC_RELEASE);
    if (s->job) return; /* it did make it its range */
    /* Had its claim gone through, the job could not be complete, hence not
     * freed: a job that is gone (or another job in its memory) was not
     * claimed by it. The heap stays mapped, so the read itself is safe. */
    if (__atomic_load_n(&j->tag, __ATOMIC_ACQUIRE) != TAG(s->iseq)) return;
    uint64_t w = ld64(&sh->ring[s->iseq % RING].word);
    if ((uint32_t)(w >> 32) == s->iseq && (uint32_t)w <= c) return; /* not claimed */
    /* Claimed by someone. A live claimer of the same chunk resolves within
     * instructions: give it a moment to show whether it got the chunk. */
    for (int k = 0; k < 100 && someone_else_claiming(sh, s); k++) usleep(1000);
    if (ld32(&j->chunk_done[c]) & MPOOL__CHUNK_STARTED) return; /* taken */
    take(s, j, c);
}

/* Settles the slot of a worker that ended: the item it was running fails
 * with (MPOOL_EWORKER, sig); what it completed counts; the rest of its range
 * stays in the slot for the replacement. */
static void settle(shared_t *sh, wslot_t *s, int sig)
{
    uint32_t me = (uint32_t)(s - sh->slots) + 1;
    __atomic_compare_exchange_n(&sh->spinner, &me, 0, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
    if (ld32(&s->iflag)) settle_claim(sh, s);
    mpool__job_t *j = s->job;
    if (j) {
        uint64_t pos = s->pos, next = pos >> 1, start = s->chunk * j->chunksize;
        bool counted = next > s->hi;
        if (pos & 1) mpool__job_fail(j, next++, MPOOL_EWORKER, sig);
        if (next >= s->hi) {
            next = s->hi;
            if (!counted) mpool__job_count_chunk(j);
        }
        __atomic_store_n(&j->chunk_done[s->chunk], MPOOL__CHUNK_STARTED | (uint32_t)(next - start),
                         __ATOMIC_RELEASE);
        if (next >= s->hi) {
            s->job = NULL;
        } else {
            s->lo = next;
            s->pos = 2 * next;
        }
        notify_parent(sh);
    }
    s->pid = 0;
    s->ident = 0;
    s->state = SLOT_EMPTY;
}

/* Waits until the worker named by ident has ended (bounded). */
static void await_death(uint64_t ident)
{
    double end = mpool__now() + DEATH_TIMEOUT;
    while (ident && !mpool__thread_dead(ident) && mpool__now() < end) usleep(200);
}

/* ---- fork server ---------------------------------------------------------- */

static bool unclaimed_work(shared_t *sh)
{
    uint32_t tail = ld32(&sh->tail);
    for (uint32_t seq = tail - RING; seq != tail; seq++) {
        dispatch_t *d = &sh->ring[seq % RING];
        uint64_t w = ld64(&d->word);
        if ((uint32_t)(w >> 32) == seq && (uint32_t)w < d->nchunks) return true;
    }
    return false;
}

/* Forks the worker of slot s. A failing fork is retried on the next rounds;
 * during pool_new (any worker, not only the first: pool_new must fail
 * promptly with EAGAIN), or after MAX_FORK_FAILURES in a row, the pool
 * breaks (the work could not go on). */
static void spawn(shared_t *sh, wslot_t *s)
{
    static int failures; /* in a row; this server's own */
    s->state = SLOT_STARTING;
    s->seen_pos = 0;
    pid_t pid = mpool__fork(true);
    if (pid == 0) worker_main(sh, s);
    if (pid < 0) {
        s->state = SLOT_EMPTY;
        if (!ld32(&sh->started) || ++failures >= MAX_FORK_FAILURES) {
            sh->broken_status = 0;
            __atomic_store_n(&sh->broken, MPOOL_EWORKER, __ATOMIC_RELEASE);
        }
        return;
    }
    failures = 0;
    s->pid = pid;
}

static wslot_t *slot_of(shared_t *sh, pid_t pid)
{
    for (int k = 0; k < sh->nworkers; k++)
        if (sh->slots[k].pid == pid) return &sh->slots[k];
    return NULL;
}

/* A worker ended with wait status st. */
static void worker_ended(shared_t *sh, wslot_t *s, int st)
{
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    bool init_died = s->state == SLOT_INITFAIL || (s->state == SLOT_STARTING && sh->initializer);
    if (init_died && !sh->broken) {
        /* The initializer failed (or its worker died in it; without an
         * initializer, a start-up death is just a death): never a silent
         * respawn loop. */
        sh->broken_status = s->state == SLOT_INITFAIL ? s->init_rc : -sig;
        __atomic_store_n(&sh->broken, MPOOL_ETASK, __ATOMIC_RELEASE);
    }
    settle(sh, s, sig);
}

static void reap(shared_t *sh)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        wslot_t *s = slot_of(sh, pid);
        if (s) worker_ended(sh, s, st);
    }
}

/* task_timeout: kills a worker seen on the same item for that long. */
static void check_timeouts(shared_t *sh)
{
    double now = mpool__now();
    for (int k = 0; k < sh->nworkers; k++) {
        wslot_t *s = &sh->slots[k];
        if (!s->pid) continue;
        uint64_t pos = __atomic_load_n(&s->pos, __ATOMIC_RELAXED);
        uint32_t rgen = __atomic_load_n(&s->rgen, __ATOMIC_RELAXED);
        if (!(pos & 1) || pos != s->seen_pos || rgen != s->seen_rgen) {
            s->seen_pos = pos;
            s->seen_rgen = rgen;
            s->seen_at = now;
        } else if (now - s->seen_at >= sh->task_timeout) {
            kill(s->pid, SIGKILL); /* a bare pid is safe here: see server_main */
            s->seen_pos = 0;
        }
    }
}

/* Ends the server of its own accord: workers killed and reaped first, so
 * that none is left to be re-parented (to a subreaper or PID 1: the
 * caller). */
__attribute__((noreturn)) static void server_exit(shared_t *sh)
{
    for (int k = 0; k < sh->nworkers; k++)
        if (sh->slots[k].pid) kill(sh->slots[k].pid, SIGKILL); /* see server_main */
    while (waitpid(-1, NULL, 0) > 0) {
    }
    __atomic_store_n(&sh->server_done, 1, __ATOMIC_SEQ_CST);
    /* A wake without moving the event: an exit is no progress (the
     * parent's crash-loop bound counts events), and the parent reads the
     * exit itself through the pidfd. */
    if (__atomic_load_n(&sh->pwait, __ATOMIC_SEQ_CST)) mpool__futex_wake(&sh->event, INT_MAX);
    _exit(0);
}

/* One round: start what is missing; true when the server's work is over. */
static bool server_round(shared_t *sh)
{
    bool closing = ld32(&sh->closing), any = false, more = !closing || unclaimed_work(sh);
    for (int k = 0; k < sh->nworkers; k++) {
        wslot_t *s = &sh->slots[k];
        if (!s->pid && (more || s->job)) spawn(sh, s);
        any |= s->pid != 0;
    }
    return closing && !any && !unclaimed_work(sh);
}

static struct timespec server_period(const shared_t *sh)
{
    double t = 1.0;
    if (sh->task_timeout > 0) t = sh->task_timeout / 8;
    if (t < 0.001) t = 0.001;
    if (t > 0.1 && sh->task_timeout > 0) t = 0.1;
    return (struct timespec){(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
}

/* Waits for the parent's hand-off (it holds our pidfd). The parent always
 * writes it right after the fork; if the parent dies first, PDEATHSIG ends
 * us, so the bounded naps only guard against a lost wake-up. */
static void server_await_handoff(shared_t *sh)
{
    for (;;) {
        uint32_t h = ld32(&sh->handoff);
        if (h == HANDOFF_GO) return;
        if (h == HANDOFF_ABORT) _exit(0);
        struct timespec ts = mpool__deadline_min(NULL, 0.1);
        mpool__futex_wait(&sh->handoff, HANDOFF_WAIT, &ts);
    }
}

/* Without inherit_fds, the server (hence every worker) keeps only stdin,
 * stdout and stderr: it needs no descriptor of its own (shared memory and
 * signals only), and a caller's pipe must see EOF or EPIPE once the
 * caller closes its end. */
static void server_close_fds(const shared_t *sh)
{
    if (sh->inherit_fds) return;
    if (close_range(3, ~0u, 0) == 0) return;
    long max = sysconf(_SC_OPEN_MAX); /* kernels before 5.9 */
    for (long fd = 3; fd < (max > 0 && max < 1 << 20 ? max : 1 << 16); fd++) close((int)fd);
}

/* The server's bare-pid kill and waitpid(-1) are safe, unlike the
 * parent's: its only children are its workers, SIGCHLD is SIG_DFL here
 * (whatever the caller set: a handler or SIG_IGN would reap them behind
 * our back), so a worker's pid stays its own, as a zombie at worst, until
 * reap() collects it and clears slot.pid in the same step. */
__attribute__((noreturn)) static void server_main(shared_t *sh)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGINT, SIG_IGN);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    server_await_handoff(sh);
    server_close_fds(sh);
    /* Slots left by workers of a server that died: they die with it. */
    for (int k = 0; k < sh->nworkers; k++) {
        wslot_t *s = &sh->slots[k];
        await_death(s->ident);
        if (s->state != SLOT_EMPTY || s->job || s->iflag) settle(sh, s, SIGKILL);
    }
    struct timespec period = server_period(sh);
    for (;;) {
        if (ld32((const uint32_t *)&sh->broken) || ld32(&sh->stop)) server_exit(sh);
        if (server_round(sh)) server_exit(sh);
        siginfo_t si;
        sigtimedwait(&set, &si, &period);
        reap(sh);
        if (sh->task_timeout > 0) check_timeouts(sh);
    }
}

/* ---- parent side ---------------------------------------------------------- */

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
    sh->server_done = 0;
    pid_t pid = mpool__fork(true);
    if (pid < 0) return EAGAIN;
    if (pid == 0) server_main(sh);
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    int err = fd < 0 ? errno : 0;
    __atomic_store_n(&sh->handoff, fd < 0 ? HANDOFF_ABORT : HANDOFF_GO, __ATOMIC_SEQ_CST);
    mpool__futex_wake(&sh->handoff, 1);
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
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'), st = 0;
    int ppid = 0;
    unsigned long long t = 0;
    if (!p ||
        sscanf(p + 2,
               "%c %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu",
               &st, &ppid, &t) != 3)
        return false;
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
    for (int k = 0; k < sh->nworkers; k++) await_death(ld64(&sh->slots[k].ident));
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
    if (unclaimed_work(sh)) return true;
    for (int k = 0; k < sh->nworkers; k++)
        if (ld64((const uint64_t *)&sh->slots[k].job) || ld32(&sh->slots[k].iflag)) return true;
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
    p->broken_status = broken ? sh->broken_status : SIGKILL;
    __atomic_store_n(&p->broken, broken ? broken : MPOOL_EWORKER, __ATOMIC_RELEASE);
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

/* Sleeps until the job's done_word is set (bounded nap). */
static void job_wait(mpool_pool_t *p, mpool__job_t *job, const struct timespec *deadline)
{
    if (spin_while(&job->done_word, 0, NULL)) return;
    __atomic_fetch_add(&job->waiting, 1, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&job->done_word, __ATOMIC_SEQ_CST)) {
        struct timespec ts = mpool__deadline_min(deadline, PARENT_NAP);
        mpool__futex_wait(&job->done_word, 0, &ts);
    }
    __atomic_fetch_sub(&job->waiting, 1, __ATOMIC_SEQ_CST);
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
    if (spin_while(&sh->event, seen, NULL)) return;
    __atomic_fetch_add(&sh->pwait, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&sh->event, __ATOMIC_SEQ_CST) == seen) {
        struct timespec ts = mpool__deadline_min(deadline, PARENT_NAP);
        mpool__futex_wait(&sh->event, seen, &ts);
    }
    __atomic_fetch_sub(&sh->pwait, 1, __ATOMIC_SEQ_CST);
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
    if (wake && __atomic_load_n(&sh->idle_waiters, __ATOMIC_SEQ_CST))
        mpool__futex_wake(&sh->tail, wake > INT_MAX ? INT_MAX : (int)wake);
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
        uint32_t seen = ld32(&sh->event);
        pthread_mutex_unlock(&f->qlock);
        __atomic_fetch_add(&sh->pwait, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&sh->event, __ATOMIC_SEQ_CST) == seen && !ld32(&f->stop)) {
            struct timespec ts = mpool__deadline_min(NULL, PARENT_NAP);
            mpool__futex_wait(&sh->event, seen, &ts);
        }
        __atomic_fetch_sub(&sh->pwait, 1, __ATOMIC_SEQ_CST);
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
        struct timespec ts = mpool__deadline_min(NULL, PARENT_NAP);
        __atomic_fetch_add(&sh->pwait, 1, __ATOMIC_SEQ_CST);
        mpool__futex_wait(&sh->event, seen, &ts);
        __atomic_fetch_sub(&sh->pwait, 1, __ATOMIC_SEQ_CST);
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
    mpool__futex_wake(&sh->tail, INT_MAX);
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
        double nap = mpool__remaining(deadline);
        if (nap < 0 || nap > PARENT_NAP) nap = PARENT_NAP;
        struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
        poll(&pfd, 1, (int)(nap * 1000) + 1);
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
    __atomic_fetch_add(&L->sh->event, 1, __ATOMIC_SEQ_CST); /* its sleep ends at once */
    mpool__futex_wake(&L->sh->event, INT_MAX);
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
