/* The Pool's local backend, the fork server process: forks the workers,
 * reaps them, settles a dead worker's slot (the item it ran fails, the rest
 * of its range goes to the replacement), enforces task_timeout, and exits
 * once the pool is closed and drained, or stopped. Layout, states and the
 * ways a death is detected: pool_local.h. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <mpool/shm.h>

#include "pool_local.h"

/* ---- settling a dead worker's slot (this server, or a new one) ------------ */

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
    mpool__local_take(s, j, c);
}

/* The details of item i's death: the worker's pid and, when its handler
 * finished recording the fault of this very item, the signal's address and
 * stack. No memory: the failure is recorded without them. */
static void add_crash_detail(wslot_t *s, mpool__job_t *j, uint64_t i)
{
    mpool__fail_detail_t *d = mpool_shm_alloc(sizeof *d);
    if (!d) return;
    d->index = i;
    d->pid = s->pid;
    if (ld32(&s->crash_done) && s->crash_pos == 2 * i + 1 && s->crash_rgen == s->rgen) {
        d->sig = (int32_t)s->crash_sig;
        d->fault_addr = s->crash_addr;
        d->has_addr = s->crash_sig == SIGSEGV || s->crash_sig == SIGBUS || s->crash_sig == SIGFPE ||
                      s->crash_sig == SIGILL;
        d->nframes = s->crash_nframes > MPOOL__FRAMES ? MPOOL__FRAMES : s->crash_nframes;
        memcpy(d->frames, s->crash_frames, d->nframes * sizeof *d->frames);
    }
    mpool__job_add_detail(j, d);
}

/* The item of slot s that was running when its worker died (cause:
 * MPOOL__CAUSE_*): true when it is to run again (retries), else it fails
 * with (MPOOL_EWORKER, sig). A timeout is the user's verdict: not retried. */
static bool item_died(shared_t *sh, wslot_t *s, mpool__job_t *j, uint64_t i, int sig,
                      unsigned cause)
{
    mpool__item_fail_t *r = j->items ? &j->items[i] : NULL; /* none: no retries (fallback) */
    if (r && cause != MPOOL__CAUSE_TIMEOUT && r->reruns < sh->retries && r->reruns < UINT16_MAX) {
        r->reruns++;
        return true;
    }
    add_crash_detail(s, j, i);
    mpool__job_cause(j, i, cause);
    mpool__job_fail(j, i, MPOOL_EWORKER, sig);
    return false;
}

/* Settles the slot of a worker that ended: the item it was running fails
 * with (MPOOL_EWORKER, sig), or stays to be run again (retries); what it
 * completed counts; the rest of its range stays in the slot for the
 * replacement. */
static void settle(shared_t *sh, wslot_t *s, int sig, unsigned cause)
{
    uint32_t me = (uint32_t)(s - sh->slots) + 1;
    __atomic_compare_exchange_n(&sh->spinner, &me, 0, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
    if (ld32(&s->iflag)) settle_claim(sh, s);
    mpool__job_t *j = s->job;
    if (j) {
        uint64_t pos = s->pos, next = pos >> 1, start = s->chunk * j->chunksize;
        bool counted = next > s->hi;
        if ((pos & 1) && !item_died(sh, s, j, next, sig, cause)) next++;
        if (next >= s->hi) {
            next = s->hi;
            if (!counted) mpool__job_count_chunk(j);
        }
        /* Counted, the range may be published too: its worker died between
         * its chunk_done store and clearing `job`. Then the word is the
         * parent's (REPORTED), or the job is gone: leave it. Uncounted, the
         * chunk is not complete, so the job lives. */
        uint32_t len = (uint32_t)(s->hi - start);
        bool published = counted && (__atomic_load_n(&j->tag, __ATOMIC_ACQUIRE) != s->tag ||
                                     (ld32(&j->chunk_done[s->chunk]) & MPOOL__CHUNK_COUNT) == len);
        if (!published)
            __atomic_store_n(&j->chunk_done[s->chunk],
                             MPOOL__CHUNK_STARTED | (uint32_t)(next - start), __ATOMIC_RELEASE);
        if (next >= s->hi) {
            s->job = NULL;
        } else {
            s->lo = next;
            s->pos = 2 * next;
        }
        notify_parent(sh);
    }
    s->crash_done = 0;
    s->kill_cause = 0;
    s->pid = 0;
    s->ident = 0;
    s->state = SLOT_EMPTY;
}

/* The oom_kill count of our cgroup (v2 memory.events), 0 when unknown.
 * Read on the SIGKILL path only, so its cost does not matter. */
static unsigned long oom_kills(void)
{
    char path[1024] = "/sys/fs/cgroup", buf[512]; /* path: room for all of buf */
    int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (len <= 3 || strncmp(buf, "0::", 3) != 0) return 0;
    buf[len] = 0;
    buf[strcspn(buf, "\n")] = 0;
    snprintf(path + 14, sizeof path - 14, "%s/memory.events", buf + 3);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    if (len <= 0) return 0;
    buf[len] = 0;
    char *at = strstr(buf, "oom_kill ");
    return at ? strtoul(at + 9, NULL, 10) : 0;
}

static unsigned long oom_seen; /* oom_kills() at start, or at the last SIGKILL */

/* What the wait status st of a worker says about its death. */
static unsigned death_cause(wslot_t *s, int st)
{
    if (s->kill_cause) return s->kill_cause;
    if (!WIFSIGNALED(st)) return MPOOL__CAUSE_EXIT | (unsigned)(WEXITSTATUS(st) & 0xff) << 8;
    if (WTERMSIG(st) != SIGKILL) return MPOOL__CAUSE_SIGNAL;
    unsigned long oom = oom_kills();
    bool moved = oom > oom_seen;
    oom_seen = oom;
    return moved ? MPOOL__CAUSE_OOM : MPOOL__CAUSE_OUTSIDE;
}

void mpool__local_await_death(uint64_t ident)
{
    double end = mpool__now() + DEATH_TIMEOUT;
    while (ident && !mpool__thread_dead(ident) && mpool__now() < end) usleep(200);
}

/* ---- fork server ---------------------------------------------------------- */

bool mpool__local_unclaimed_work(shared_t *sh)
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
    if (pid == 0) mpool__local_worker_main(sh, s);
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
    settle(sh, s, sig, death_cause(s, st));
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
            kill(s->pid, SIGKILL); /* a bare pid is safe here: see mpool__local_server_main */
            s->kill_cause = MPOOL__CAUSE_TIMEOUT;
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
        if (sh->slots[k].pid) kill(sh->slots[k].pid, SIGKILL); /* see mpool__local_server_main */
    while (waitpid(-1, NULL, 0) > 0) {
    }
    __atomic_store_n(&sh->server_done, 1, __ATOMIC_SEQ_CST);
    /* A wake without moving the event: an exit is no progress (the
     * parent's crash-loop bound counts events), and the parent reads the
     * exit itself through the pidfd. */
    mpool__wake(&sh->event, &sh->pwait, INT32_MAX);
    _exit(0);
}

/* One round: start what is missing; true when the server's work is over. */
static bool server_round(shared_t *sh)
{
    bool closing = ld32(&sh->closing), any = false,
         more = !closing || mpool__local_unclaimed_work(sh);
    for (int k = 0; k < sh->nworkers; k++) {
        wslot_t *s = &sh->slots[k];
        if (!s->pid && (more || s->job)) spawn(sh, s);
        any |= s->pid != 0;
    }
    return closing && !any && !mpool__local_unclaimed_work(sh);
}

static struct timespec server_period(const shared_t *sh)
{
    double t = 1.0;
    if (sh->task_timeout > 0) t = sh->task_timeout / 8;
    if (t < 0.001) t = 0.001;
    if (t > 0.1 && sh->task_timeout > 0) t = 0.1;
    return (struct timespec){(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
}

/* The hand-off wait (wait.h). No spin: the parent writes the hand-off
 * once its fork returned and it opened our pidfd, which takes longer than
 * any useful spin, and a new server is rare. Nap 0.1 s: the parent always
 * writes and wakes, and if it dies first PDEATHSIG ends us, so the nap
 * only guards against a lost wake-up. */
static const mpool__wait_policy_t handoff_policy = {0, 0, 0.1};

static bool handed_off(const void *arg)
{
    return ld32(&((const shared_t *)arg)->handoff) != HANDOFF_WAIT;
}

/* Waits for the parent's hand-off (it holds our pidfd). */
static void server_await_handoff(shared_t *sh)
{
    mpool__wait(&handoff_policy, &sh->handoff, &sh->handoff_waiters, handed_off, sh, NULL);
    if (ld32(&sh->handoff) == HANDOFF_ABORT) _exit(0);
}

/* Without inherit_fds, the server (hence every worker) keeps only stdin,
 * stdout and stderr: it needs no descriptor of its own (shared memory and
 * signals only), and a caller's pipe must see EOF or EPIPE once the
 * caller closes its end. */
static void server_close_fds(const shared_t *sh)
{
    if (sh->inherit_fds) return;
    /* All but the identity reserve (internal.c): without it, a worker whose
     * task fills its descriptor table could take no lock. */
    int spare = mpool__spare_fd();
    unsigned lo = 3, hi = spare >= 3 ? (unsigned)spare - 1 : ~0u;
    bool ok = (hi < lo || close_range(lo, hi, 0) == 0) &&
              (spare < 3 || close_range((unsigned)spare + 1, ~0u, 0) == 0);
    if (ok) return;
    long max = sysconf(_SC_OPEN_MAX); /* kernels before 5.9 */
    for (long fd = 3; fd < (max > 0 && max < 1 << 20 ? max : 1 << 16); fd++)
        if (fd != spare) close((int)fd);
}

/* The server's bare-pid kill and waitpid(-1) are safe, unlike the
 * parent's: its only children are its workers, SIGCHLD is SIG_DFL here
 * (whatever the caller set: a handler or SIG_IGN would reap them behind
 * our back), so a worker's pid stays its own, as a zombie at worst, until
 * reap() collects it and clears slot.pid in the same step. */
void mpool__local_server_main(shared_t *sh)
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
        mpool__local_await_death(s->ident);
        if (s->state != SLOT_EMPTY || s->job || s->iflag)
            settle(sh, s, SIGKILL, MPOOL__CAUSE_SERVER);
    }
    oom_seen = oom_kills();
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
