/* The Pool's local backend: a fork server and its workers, over the shared
 * heap. Internal to its three files, one per process:
 *
 *   src/pool_local.c    the parent side: ops table, submit, feeder, health,
 *                       waits, start / close / join / terminate
 *   src/pool_server.c   the fork server: spawn, reap, settle, timeouts
 *   src/pool_worker.c   the worker: claim, run a range, idle
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
 * any chunk (an iterator). Waits follow the protocol of wait.h; each names
 * its policy next to its code: waiting sides spin ~2 us, then yield the CPU
 * between checks up to ~20 us (2 CPUs shared by parent and workers), then
 * sleep; one idle worker at a time spins, the others sleep on the ring's
 * tail. No lock is shared with a worker: a worker dying at any instruction
 * leaves state that the server can settle exactly.
 *
 * How a death is detected, every way, in one place:
 *
 *   worker, by the server   SIGCHLD (blocked, taken by sigtimedwait in
 *                           mpool__local_server_main) and waitpid(-1,
 *                           WNOHANG) in reap(); worker_ended() then settles
 *                           its slot (settle(): the running item fails with
 *                           MPOOL_EWORKER, or is left to the replacement to
 *                           run again while opts.retries allows, with what
 *                           the worker's fatal-signal handler left in the
 *                           slot (crash_*) as its details; the rest of its
 *                           range stays for the replacement) and
 *                           server_round() forks one.
 *   worker dying in its     the handler stores crash_done last: a slot
 *   signal handler          without it gets no backtrace, only the signal.
 *   worker in its           worker_ended(): a worker that ended in SLOT_
 *   initializer             INITFAIL, or died in SLOT_STARTING with an
 *                           initializer, breaks the pool (MPOOL_ETASK), never
 *                           a respawn loop.
 *   worker stuck in a task  check_timeouts() (server, every task_timeout/8):
 *                           the same item seen for task_timeout -> SIGKILL,
 *                           then reaped as above.
 *   worker mid-claim        settle_claim(): the claim intent (iflag, ijob,
 *                           iseq, ichunk) shows whether the dead worker's CAS
 *                           went through; a chunk it won but never made its
 *                           range is adopted, none is lost or run twice.
 *   worker holding the      settle() clears sh->spinner: no lock is shared
 *   spinner turn            with a worker, this is the only "held" word.
 *   dead waiter             a killed waiter leaves idle_waiters / pwait /
 *                           job->waiting raised: wakers then pay a spare
 *                           FUTEX_WAKE (wait.h), nothing is missed.
 *   dead waker              a waker killed between its change and its wake
 *                           leaves sleepers asleep until their nap ends:
 *                           every wait here has one (policies in the files).
 *   server, by its workers  PDEATHSIG: mpool__fork(true) in spawn(); a worker
 *                           forked after the server died exits at once
 *                           (mpool__fork's identity check).
 *   workers of a dead       mpool__local_server_main() of the next server:
 *   server, by the next one mpool__local_await_death() polls their identity
 *                           (mpool__thread_dead), then settle()s every slot
 *                           they left.
 *   server, by the parent   its pidfd turns readable: server_ended() in
 *                           health_locked(), called after every bounded
 *                           parent sleep (job_wait, local_wait: PARENT_NAP),
 *                           by local_join() (poll on the pidfd) and by
 *                           await_ready(); server_reap() tells a clean exit
 *                           (status 0, or server_done when someone else took
 *                           the status) from a death, and health_locked()
 *                           replaces a dead server (MAX_RESTARTS in a row
 *                           without progress, RESTART_GAP apart) or breaks
 *                           the pool through mpool__pool_break().
 *   workers of a dead       await_workers() (parent): identity polls, then
 *   server, by the parent   reap_reparented() reaps those re-parented to us
 *                           (subreaper or PID 1), checked by our_zombie().
 *   parent, by the server   PDEATHSIG: the server dies with the thread that
 *                           created the pool (mpool__fork(true) in
 *                           server_start()), or exits at once if that thread
 *                           ended before it could arrange it.
 *   server that will not    server_stop(): SIGKILL after STOP_GRACE, and a
 *   die (D state)           server not gone DEATH_TIMEOUT later is given up
 *                           on, never waited for forever.
 *   failing worker forks    spawn(): during pool_new at once, later after
 *                           MAX_FORK_FAILURES rounds in a row, the pool
 *                           breaks (sh->broken, passed on by health_locked).
 *   a job freed under a     settle_claim() compares job->tag with TAG(iseq):
 *   dead worker's claim     memory reused by another job is never adopted.
 *   a worker dead after     settle() leaves a chunk that is complete already
 *   publishing its chunk    (or whose job is gone: tag differs from the
 *                           slot's) alone: rewriting its progress word would
 *                           clear an iterator's REPORTED mark, or write into
 *                           a freed job.
 */
#ifndef MPOOL_POOL_LOCAL_H
#define MPOOL_POOL_LOCAL_H

#include <mpool/pool.h>

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "internal.h"
#include "pool_backend.h"
#include "wait.h"

/* ---- tuning ---------------------------------------------------------------- */

#define RING       256u        /* dispatch entries: jobs with unclaimed chunks */
#define CLAIM_BUSY 0xffffffffu /* claimed field while the parent rewrites an entry */
#define PARENT_NAP 0.05        /* longest parent sleep between health checks */
#define YIELD_FOR  18e-6       /* the yields of a pool wait end after this long (wait.h) */
#define MAX_RESTARTS                                                                               \
    16                          /* server deaths in a row, with no work done in                    \
                                    between, before the pool breaks */
#define DEATH_TIMEOUT     2.0   /* how long to wait for a killed worker to vanish */
#define MAX_FORK_FAILURES 30    /* worker forks failing in a row (rounds of 1 s) */
#define STOP_GRACE        1.0   /* terminate: how long the server may take to stop its workers */
#define RESTART_GAP       0.005 /* pause per server replacement in a row (at most 10 of them) */
/* sh->fault: the worker kills itself right after publishing a chunk, before
 * clearing its slot ("die-after-publish"). */
#define FAULT_DIE_AFTER_PUBLISH 1
#define TAG(seq)                (0x6a6f6200ull << 32 | (seq)) /* job->tag of dispatch seq */

/* seq % RING must name the same entry across the wrap of the 32-bit seq. */
_Static_assert((RING & (RING - 1)) == 0, "RING is a power of two");

/* ---- states of the shared words -------------------------------------------- */

/* shared_t.handoff: HANDOFF_WAIT (set by the parent before it forks a
 * server) -> HANDOFF_GO or HANDOFF_ABORT (by the parent, once it holds the
 * new server's pidfd, or failed to get one). Read by the server only. */
enum { HANDOFF_WAIT, HANDOFF_GO, HANDOFF_ABORT };

/* wslot_t.state: EMPTY -> STARTING (server, before the fork) -> READY or
 * INITFAIL (the worker, after its initializer) -> EMPTY (server, settling the
 * slot once the worker is reaped; or back from STARTING if the fork fails). */
enum { SLOT_EMPTY, SLOT_STARTING, SLOT_READY, SLOT_INITFAIL };

/* ---- the shared layout (in the shared heap) -------------------------------- */

typedef struct {
    /* (seq << 32) | claimed. seq: the job this entry holds; only the parent
     * changes it, when it reuses the entry once claimed == nchunks, going
     * through claimed = CLAIM_BUSY while it rewrites job and nchunks.
     * claimed: chunks taken so far; workers advance it by CAS (+1). */
    uint64_t word;
    mpool__job_t *job; /* parent-written, only while claimed is CLAIM_BUSY */
    uint32_t nchunks;  /* likewise */
} dispatch_t;

/* One worker's slot. The worker occupying it writes it; the fork server
 * rewrites it only while no worker occupies it (after reaping). */
typedef struct MPOOL__ALIGNED {
    /* The range being run: items [lo, hi) of chunk `chunk` of `job` (NULL:
     * none). A range always ends at its chunk's end. It outlives a dead or
     * recycled worker: the replacement runs what is left. `job` is stored
     * last (release), so a set `job` means the rest is valid. */
    mpool__job_t *job;
    uint64_t tag; /* job->tag when the range was taken */
    uint64_t chunk, lo, hi;
    /* 2i+1 while item i runs (inside fn); 2i when every item before i is
     * done; 2hi+2 once the finished range is counted in the job's hint. */
    uint64_t pos;
    uint32_t rgen; /* ranges started: tells a new item from an old one at the same pos */
    /* Claim intent, set before the claiming CAS and cleared once `job` holds
     * the chunk, so that a death between the two loses no chunk. iflag:
     * 0 -> 1 by the worker before its CAS, 1 -> 0 by the worker after it
     * (won or lost), or by the server settling the slot of a dead one. */
    uint32_t iflag;
    mpool__job_t *ijob;
    uint32_t iseq, ichunk;
    uint32_t state;  /* SLOT_*: worker sets READY or INITFAIL; server resets */
    int32_t init_rc; /* the initializer's return value, with SLOT_INITFAIL */
    uint64_t ident;  /* mpool__self() of the occupant (by it), 0 none (by the server) */
    /* The crash record, left by the occupant's fatal-signal handler
     * (pool_worker.c): crash_pos and crash_rgen are pos and rgen at the
     * fault (the item), then the signal, si_addr and the return addresses;
     * crash_done 0 -> 1 last (release), so a worker that died inside the
     * handler leaves crash_done 0 and no backtrace is trusted. The worker
     * clears crash_done when it starts. */
    uint32_t crash_done, crash_sig, crash_rgen, crash_nframes;
    uint64_t crash_pos, crash_addr;
    uint64_t crash_frames[MPOOL__FRAMES];
    /* Server-private: why the server killed the occupant (MPOOL__CAUSE_*,
     * 0: it did not), the occupant's pid (0 none) and the timeout sampler. */
    uint32_t kill_cause;
    pid_t pid;
    uint32_t seen_rgen;
    uint64_t seen_pos;
    double seen_at;
} wslot_t;

typedef struct {
    /* Jobs published (a futex: idle workers sleep on it). Parent-written. */
    uint32_t tail MPOOL__ALIGNED;
    uint32_t idle_waiters; /* workers asleep, or about to be, on tail (wait.h's count) */
    /* 1 + the slot index of the idle worker that spins (one at a time), 0
     * none. Set and cleared by that worker; the server clears it if the
     * worker died spinning. */
    uint32_t spinner;
    uint32_t closing; /* 0 -> 1 by the parent at close */
    /* Moves on every chunk completion and every server settlement (a
     * futex: the parent sleeps on it), and once at terminate (the parent:
     * ends the feeder's sleep). pwait: parent threads asleep, or about to
     * be, on event (wait.h's count). */
    uint32_t event MPOOL__ALIGNED;
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
    uint32_t handoff_waiters; /* the new server, asleep on handoff (wait.h) */
    /* Read-only after pool_new. fault: a fault injection point for the
     * tests, from MPOOL_TEST_FAULT at pool_new (0: none; FAULT_*). */
    bool inherit_fds;
    uint32_t fault;
    int nworkers;
    unsigned maxtasks;
    unsigned retries; /* opts.retries */
    double task_timeout;
    int (*initializer)(void *);
    void *initarg;
    sigset_t user_mask;
    dispatch_t ring[RING];
    wslot_t slots[];
} shared_t;

/* The layout claims the code above relies on. */
_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0) &&
                   __atomic_always_lock_free(sizeof(mpool__job_t *), 0),
               "64-bit words (dispatch word, pos, ident, tag) and job pointers (slot job, "
               "entry job) are read and written atomically across processes");
_Static_assert(offsetof(dispatch_t, word) % 8 == 0 && sizeof(dispatch_t) % 8 == 0 &&
                   offsetof(shared_t, ring) % 8 == 0,
               "every dispatch word is 8-byte aligned: one atomic CAS");
_Static_assert(offsetof(wslot_t, pos) % 8 == 0 && offsetof(wslot_t, ident) % 8 == 0 &&
                   offsetof(wslot_t, chunk) % 8 == 0,
               "a slot's 64-bit words are 8-byte aligned: read atomically by the server");
_Static_assert(_Alignof(wslot_t) == MPOOL__CACHELINE && sizeof(wslot_t) % MPOOL__CACHELINE == 0 &&
                   offsetof(shared_t, slots) % MPOOL__CACHELINE == 0,
               "each worker writes its own cache lines: slots never share one");
_Static_assert(offsetof(shared_t, tail) % MPOOL__CACHELINE == 0 &&
                   offsetof(shared_t, event) % MPOOL__CACHELINE == 0 &&
                   offsetof(shared_t, event) - offsetof(shared_t, tail) >= MPOOL__CACHELINE,
               "the tail (parent-written, polled by idle workers) and the event counter "
               "(worker-written, polled by the parent) are on separate cache lines");
_Static_assert(_Alignof(shared_t) <= MPOOL__CACHELINE,
               "mpool_shm_alloc's cache-line alignment is enough for shared_t");
_Static_assert(sizeof(int32_t) == sizeof(uint32_t) && offsetof(shared_t, broken) % 4 == 0,
               "broken is read as a uint32_t word");

/* ---- parent-private state -------------------------------------------------- */

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

/* ---- helpers of all three processes ----------------------------------------- */

static inline uint64_t ld64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline uint32_t ld32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Moves the event counter and wakes the parent's sleepers, if any: the
 * waker's half of the parent's waits (wait.h). */
static inline void notify_parent(shared_t *sh)
{
    __atomic_fetch_add(&sh->event, 1, __ATOMIC_SEQ_CST);
    mpool__wake(&sh->event, &sh->pwait, INT32_MAX);
}

/* pool_worker.c */

/* Makes the claimed chunk c of job j the slot's range (also the server's,
 * adopting a dead worker's claim). */
void mpool__local_take(wslot_t *s, mpool__job_t *j, uint32_t c);

/* The worker process of slot s, from its fork to its exit. */
__attribute__((noreturn)) void mpool__local_worker_main(shared_t *sh, wslot_t *s);

/* Installs the fatal-signal handlers on an alternate stack, after the
 * initializer: a signal whose disposition it changed from `before` (the
 * dispositions sampled before it ran, MPOOL__NFATAL of them) keeps the
 * initializer's. */
#define MPOOL__NFATAL 7
void mpool__local_crash_handlers(wslot_t *s, const struct sigaction *before);

/* pool_server.c */

/* The fork server process, from its fork to its exit. */
__attribute__((noreturn)) void mpool__local_server_main(shared_t *sh);

/* Waits until the worker named by ident has ended (at most DEATH_TIMEOUT). */
void mpool__local_await_death(uint64_t ident);

/* True while some published job has chunks no worker claimed. */
bool mpool__local_unclaimed_work(shared_t *sh);

#endif
