/* The Pool's local backend, the worker process: claims chunks from the
 * dispatch ring, runs their items, and sleeps when there is nothing to
 * claim. Layout, states and the ways a death is detected: pool_local.h. */
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/mman.h>

#include <mpool/shm.h>

#include "pool_local.h"

/* This worker's slot: set once the worker starts, NULL in every other
 * process (mpool_task_error is EINVAL there). */
static wslot_t *my_slot;

/* The task's message (mpool_task_error), for the item at (msg_pos,
 * msg_rgen) only: a message left by an item that then succeeded is never
 * given to a later one, and no per-item store is needed to forget it. */
static char task_msg[MPOOL_TASK_MSG_MAX + 2]; /* + the first byte cut: is it mid-character? */
static uint64_t msg_pos;
static uint32_t msg_rgen;

/* Cuts a truncated message back to a UTF-8 character boundary and makes it
 * one line: control characters become spaces. */
static void msg_clean(char *m, size_t len, bool truncated)
{
    if (truncated)
        while (len > 0 && ((unsigned char)m[len] & 0xc0) == 0x80) len--;
    m[len] = 0;
    for (size_t k = 0; k < len; k++)
        if ((unsigned char)m[k] < 0x20 || m[k] == 0x7f) m[k] = ' ';
}

int mpool_task_error(const char *fmt, ...)
{
    wslot_t *s = my_slot;
    if (!s || !fmt) return EINVAL;
    uint64_t pos = __atomic_load_n(&s->pos, __ATOMIC_RELAXED);
    if (!(pos & 1) || !__atomic_load_n(&s->job, __ATOMIC_RELAXED)) return EINVAL;
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(task_msg, sizeof task_msg, fmt, ap);
    va_end(ap);
    if (len < 0) len = 0, task_msg[0] = 0;
    bool cut = (size_t)len > MPOOL_TASK_MSG_MAX;
    msg_clean(task_msg, cut ? MPOOL_TASK_MSG_MAX : (size_t)len, cut);
    msg_pos = pos;
    msg_rgen = s->rgen;
    return 0;
}

/* A task returned r != 0: the failure, with the task's message when it set
 * one for this item (no memory for it: the failure alone). */
__attribute__((noinline, cold)) static void task_failed(wslot_t *s, mpool__job_t *j, size_t i,
                                                        int r)
{
    if (msg_pos == 2 * i + 1 && msg_rgen == s->rgen) {
        msg_pos = 0;
        mpool__fail_detail_t *d = mpool_shm_alloc(sizeof *d);
        if (d) {
            d->index = i;
            d->pid = (int32_t)getpid();
            memcpy(d->msg, task_msg, sizeof d->msg); /* NUL-terminated within */
            mpool__job_add_detail(j, d);
        }
    }
    mpool__job_fail(j, i, MPOOL_ETASK, r);
}

/* ---- the fatal-signal handler ---------------------------------------------- */

static const int fatal_signals[MPOOL__NFATAL] = {SIGSEGV, SIGBUS,  SIGFPE, SIGILL,
                                                 SIGABRT, SIGTRAP, SIGSYS};

/* Async-signal-safe: plain stores into the slot, backtrace() (libgcc's
 * unwinder, loaded before any fault by the warm-up call in
 * mpool__local_crash_handlers), then the default action: SA_RESETHAND
 * restored it and SA_NODEFER lets raise() deliver it at once, so the
 * worker ends with the signal as its status (a fault re-raised by
 * returning would do too, but abort() and a raise() need the raise). */
static void crash_handler(int sig, siginfo_t *si, void *ucv)
{
    wslot_t *s = my_slot;
    s->crash_pos = __atomic_load_n(&s->pos, __ATOMIC_RELAXED);
    s->crash_rgen = __atomic_load_n(&s->rgen, __ATOMIC_RELAXED);
    s->crash_sig = (uint32_t)sig;
    s->crash_addr = (uint64_t)(uintptr_t)si->si_addr;
    void *fr[MPOOL__FRAMES + 8];
    int n = backtrace(fr, MPOOL__FRAMES + 8), from = n > 2 ? 2 : n;
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    uintptr_t pc = (uintptr_t)((ucontext_t *)ucv)->uc_mcontext.pc;
#else
    uintptr_t pc = 0;
    (void)ucv;
#endif
    /* The handler's own frame and the kernel's trampoline come first: the
     * stack at the fault starts at the interrupted pc. */
    for (int k = 0; k < n; k++)
        if ((uintptr_t)fr[k] == pc) {
            from = k;
            break;
        }
    uint32_t m = 0;
    for (int k = from; k < n && m < MPOOL__FRAMES; k++) s->crash_frames[m++] = (uintptr_t)fr[k];
    s->crash_nframes = m;
    __atomic_store_n(&s->crash_done, 1, __ATOMIC_RELEASE);
    raise(sig);
}

void mpool__local_crash_handlers(wslot_t *s, const struct sigaction *before)
{
    __atomic_store_n(&s->crash_done, 0, __ATOMIC_RELEASE);
    void *warm[2];
    backtrace(warm, 2); /* loads the unwinder now, not inside the handler */
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        /* Room for a deep backtrace and a large signal frame (AVX-512). */
        size_t size = 64 << 10;
        void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        stack_t ss = {.ss_sp = mem, .ss_size = size};
        if (mem == MAP_FAILED || sigaltstack(&ss, NULL) != 0) return; /* no handler then */
    }
    struct sigaction sa = {.sa_sigaction = crash_handler,
                           .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER};
    sigemptyset(&sa.sa_mask);
    for (size_t k = 0; k < MPOOL__NFATAL; k++) {
        struct sigaction now;
        /* A handler that the initializer installed (or a SIG_IGN) wins;
         * one inherited from the caller's process (a test framework's, a
         * sanitizer's) is replaced: in a worker, ours says more. */
        if (sigaction(fatal_signals[k], NULL, &now) == 0 &&
            now.sa_handler == before[k].sa_handler && now.sa_flags == before[k].sa_flags)
            sigaction(fatal_signals[k], &sa, NULL);
    }
}

void mpool__local_take(wslot_t *s, mpool__job_t *j, uint32_t c)
{
    uint64_t lo = (uint64_t)c * j->chunksize;
    s->chunk = c;
    s->lo = lo;
    s->hi = lo + mpool__chunk_len(j, c);
    s->tag = __atomic_load_n(&j->tag, __ATOMIC_RELAXED);
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
            mpool__local_take(s, j, c);
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
        if (MPOOL__UNLIKELY(r)) task_failed(s, j, i, r);
        /* Out of the task: a death from here on fails no item. */
        __atomic_store_n(&s->pos, 2 * (i + 1), __ATOMIC_RELEASE);
        if (MPOOL__UNLIKELY(max) && ++*tasks >= max && i + 1 < hi) return true;
    }
    /* pos 2hi: all run; 2hi + 2: counted too (settle must not count again).
     * Both before the chunk_done store: after it, the job may be freed. */
    __atomic_store_n(&s->pos, 2 * hi, __ATOMIC_RELEASE);
    mpool__job_count_chunk(j);
    __atomic_store_n(&s->pos, 2 * hi + 2, __ATOMIC_RELEASE);
    uint32_t len = (uint32_t)(hi - s->chunk * j->chunksize);
    __atomic_store_n(&j->chunk_done[s->chunk], MPOOL__CHUNK_STARTED | len, __ATOMIC_RELEASE);
    if (MPOOL__UNLIKELY(sh->fault == FAULT_DIE_AFTER_PUBLISH)) raise(SIGKILL);
    __atomic_store_n(&s->job, NULL, __ATOMIC_RELEASE);
    notify_parent(sh);
    return max && *tasks >= max;
}

/* The idle worker's wait (wait.h). The spinner's spins and yields are the
 * parent's (pool_local.c: ~2 us of pause, then yields for at most
 * YIELD_FOR): a job comes right after the previous one in a loop of applies
 * or maps, and on 2 CPUs the yields hand the CPU to the parent that
 * publishes it. Only one idle worker spins at a time (sh->spinner): more
 * would take the CPUs from the parent and the busy workers. Nap 1 s: a
 * publisher or a close killed between its store and its wake leaves no
 * worker asleep for longer (mpool__wake skips the system call when no one
 * announced a sleep, so the nap costs nothing otherwise). */
static const mpool__wait_policy_t idle_policy = {128, 64, 1.0};

typedef struct {
    const shared_t *sh;
    uint32_t seq;
} idle_t;

/* A job was published since seq, or the pool is closing. */
static bool idle_over(const void *arg)
{
    const idle_t *w = arg;
    return ld32(&w->sh->tail) != w->seq || ld32(&w->sh->closing);
}

/* Nothing to claim: spin briefly (one idle worker at a time, 2 CPUs), then
 * sleep on the tail. False when the pool is closing and nothing is left. */
static bool idle(shared_t *sh, wslot_t *s, uint32_t seq)
{
    uint32_t zero = 0, me = (uint32_t)(s - sh->slots) + 1;
    idle_t w = {sh, seq};
    if (__atomic_compare_exchange_n(&sh->spinner, &zero, me, false, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED)) {
        mpool__wait_spin_for(&idle_policy, YIELD_FOR, idle_over, &w);
        __atomic_store_n(&sh->spinner, 0, __ATOMIC_SEQ_CST);
    }
    if (__atomic_load_n(&sh->tail, __ATOMIC_SEQ_CST) != seq) return true;
    if (ld32(&sh->closing)) return false;
    mpool__wait_nap(&sh->tail, &sh->idle_waiters, idle_over, &w, NULL, idle_policy.nap);
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

void mpool__local_worker_main(shared_t *sh, wslot_t *s)
{
    signal(SIGINT, SIG_IGN);
    pthread_sigmask(SIG_SETMASK, &sh->user_mask, NULL);
    __atomic_store_n(&s->ident, mpool__self(), __ATOMIC_RELEASE);
    my_slot = s;
    struct sigaction before[MPOOL__NFATAL];
    for (size_t k = 0; k < MPOOL__NFATAL; k++) sigaction(fatal_signals[k], NULL, &before[k]);
    if (sh->initializer) {
        int rc = sh->initializer(sh->initarg);
        if (rc) {
            s->init_rc = rc;
            __atomic_store_n(&s->state, SLOT_INITFAIL, __ATOMIC_RELEASE);
            mpool__child_exit(1);
        }
    }
    mpool__local_crash_handlers(s, before);
    __atomic_store_n(&s->state, SLOT_READY, __ATOMIC_RELEASE);
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_SEQ_CST);
    notify_parent(sh);
    worker_loop(sh, s);
    mpool__child_exit(0);
}
