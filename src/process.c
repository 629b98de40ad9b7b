/* Processes: fork + pidfd. The pidfd is the sentinel and the only handle
 * signals and waits go through, so a recycled pid is never touched.
 *
 * Start is a hand-off through the handle's word, in the shared heap: the
 * child neither runs its target nor exits until the parent holds the pidfd,
 * so a program that ignores or reaps SIGCHLD cannot make the child vanish
 * before we can name it. The same word carries the exit code back, for when
 * someone else wins the wait.
 *
 * The word's states:
 *   HOLD       set by the parent before fork; the child waits
 *   SLEEPING   the child sleeps on the futex (the parent must wake it)
 *   GO         the parent holds the pidfd: run the target
 *   ABORT      the parent could not get a pidfd: exit without running it
 *   MPOOL__EXIT_CODE | code   the target returned `code`; written by the
 *              child (mpool__child_exit) just before _exit
 * HOLD -> SLEEPING (child), HOLD/SLEEPING -> GO/ABORT (parent), GO -> exit
 * code (child). A child killed, or ending by exit() in its target, leaves GO. */
#include <mpool/process.h>
#include <mpool/shm.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "futex.h"
#include "internal.h"

enum { HOLD = 0, SLEEPING = 1, GO = 2, ABORT = 3 };

struct mpool_process {
    mpool_target_fn target;
    void *arg;
    bool daemon;
    bool reaped;
    pid_t pid;      /* 0 before start */
    int pidfd;      /* -1 before start */
    int exitcode;   /* valid once reaped: status, or -signal */
    uint32_t *word; /* the hand-off and exit word, in the shared heap */
    char *name;
};

static unsigned long process_counter; /* for default names */

mpool_process_t *mpool_process_new(mpool_target_fn target, void *arg,
                                   const mpool_process_opts_t *opts)
{
    if (!target) {
        errno = EINVAL;
        return NULL;
    }
    mpool_process_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->target = target;
    p->arg = arg;
    p->pidfd = -1;
    p->daemon = opts && opts->daemon;
    if (opts && opts->name) {
        p->name = strdup(opts->name);
    } else {
        unsigned long n = __atomic_add_fetch(&process_counter, 1, __ATOMIC_RELAXED);
        if (asprintf(&p->name, "Process-%lu", n) < 0) p->name = NULL;
    }
    p->word = mpool_shm_alloc(sizeof *p->word);
    if (!p->name || !p->word) {
        mpool_shm_free(p->word);
        free(p->name);
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    return p;
}

/* In the child: waits until the parent has the pidfd. A parent that dies
 * first never says GO; then exit without running the target. */
static void child_wait_hand_off(uint32_t *word, pid_t parent)
{
    uint32_t w = HOLD;
    __atomic_compare_exchange_n(word, &w, SLEEPING, false, __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE);
    while ((w = __atomic_load_n(word, __ATOMIC_ACQUIRE)) == SLEEPING) {
        struct timespec ts = mpool__deadline_min(NULL, 0.1);
        mpool__futex_wait(word, SLEEPING, &ts);
        if (getppid() != parent && __atomic_load_n(word, __ATOMIC_ACQUIRE) == SLEEPING) _exit(1);
    }
    if (w != GO) _exit(1); /* ABORT: the parent reaps us (or the kernel does) */
}

static void hand_off(uint32_t *word, uint32_t verdict)
{
    if (__atomic_exchange_n(word, verdict, __ATOMIC_RELEASE) == SLEEPING)
        mpool__futex_wake(word, 1);
}

/* True when the kernel reaps our children itself (SIGCHLD ignored). */
static bool children_autoreaped(void)
{
    struct sigaction sa;
    return sigaction(SIGCHLD, NULL, &sa) == 0 &&
           (sa.sa_handler == SIG_IGN || (sa.sa_flags & SA_NOCLDWAIT));
}

/* No pidfd for a child that has not run its target: tell it to exit and reap
 * it. The one wait by bare pid in the library, and a safe one: the child
 * exits only now, and until it is reaped its pid stays its own; when the
 * kernel reaps it (SIGCHLD ignored) we do not wait at all, and a program's
 * own reaping handler at worst makes waitpid fail with ECHILD. */
static void abandon(uint32_t *word, pid_t pid)
{
    hand_off(word, ABORT);
    if (children_autoreaped()) return;
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

int mpool_process_start(mpool_process_t *p)
{
    if (!p || p->pid) return EINVAL;
    __atomic_store_n(p->word, HOLD, __ATOMIC_RELAXED);
    /* Hold a descriptor for the pidfd before forking: a full descriptor
     * table then fails the start (EMFILE) with no child made. */
    int reserve = eventfd(0, EFD_CLOEXEC);
    if (reserve < 0) return errno;
    pid_t parent = getpid();
    pid_t pid = mpool__fork(p->daemon);
    if (pid < 0) {
        int err = errno;
        close(reserve);
        return err;
    }
    if (pid == 0) {
        close(reserve);
        child_wait_hand_off(p->word, parent);
        mpool__exit_word = p->word;
        mpool__child_exit(p->target(p->arg) & 0xff);
    }
    close(reserve);
    /* Fails only if another thread took the freed descriptor meanwhile. */
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int err = errno;
        abandon(p->word, pid);
        return err;
    }
    p->pid = pid;
    p->pidfd = pidfd;
    p->reaped = false;
    hand_off(p->word, GO);
    return 0;
}

/* Reaps the child if it has ended, waiting for that when `block`; true once
 * reaped. */
static bool reap(mpool_process_t *p, bool block)
{
    if (p->reaped) return true;
    if (p->pidfd < 0) return false;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PIDFD, (id_t)p->pidfd, &si, WEXITED | (block ? 0 : WNOHANG)) != 0) {
        if (errno != ECHILD) return false;
        /* Reaped behind our back (SIGCHLD ignored, or a handler that reaps):
         * the code the child recorded, or -SIGKILL if it recorded none. */
        uint32_t w = __atomic_load_n(p->word, __ATOMIC_ACQUIRE);
        p->exitcode = (w & MPOOL__EXIT_CODE) ? (int)(w & 0xff) : -SIGKILL;
    } else if (si.si_pid == 0) {
        return false; /* still running */
    } else if (si.si_code == CLD_EXITED) {
        p->exitcode = si.si_status;
    } else {
        p->exitcode = -si.si_status;
    }
    p->reaped = true;
    return true;
}

static bool try_reap(mpool_process_t *p)
{
    return reap(p, false);
}

int mpool_process_join(mpool_process_t *p, double timeout)
{
    if (!p || !p->pid) return EINVAL;
    struct timespec deadline;
    bool limited = mpool__deadline(timeout, &deadline);
    if (!limited) { /* one blocking waitid: no poll round trip */
        while (!reap(p, true))
            if (errno != EINTR) return errno;
        return 0;
    }
    while (!try_reap(p)) {
        double left = limited ? mpool__remaining(&deadline) : -1;
        if (limited && left <= 0) return ETIMEDOUT;
        /* poll takes milliseconds: round up so we never wake just early. */
        int ms = limited ? (int)(left * 1000.0) + 1 : -1;
        if (limited && left > 1e6) ms = 1000000000;
        struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
        if (poll(&pfd, 1, ms) < 0 && errno != EINTR) return errno;
    }
    return 0;
}

bool mpool_process_is_alive(mpool_process_t *p)
{
    return p && p->pid && !try_reap(p);
}

pid_t mpool_process_pid(const mpool_process_t *p)
{
    return p ? p->pid : 0;
}

bool mpool_process_exitcode(mpool_process_t *p, int *code)
{
    if (!p || !p->pid || !try_reap(p)) return false;
    if (code) *code = p->exitcode;
    return true;
}

static int send_signal(mpool_process_t *p, int sig)
{
    if (!p || !p->pid) return EINVAL;
    if (p->reaped) return 0;
    if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) != 0 && errno != ESRCH) return errno;
    return 0;
}

int mpool_process_terminate(mpool_process_t *p)
{
    return send_signal(p, SIGTERM);
}

int mpool_process_kill(mpool_process_t *p)
{
    return send_signal(p, SIGKILL);
}

int mpool_process_sentinel(const mpool_process_t *p)
{
    return p ? p->pidfd : -1;
}

const char *mpool_process_name(const mpool_process_t *p)
{
    return p ? p->name : NULL;
}

int mpool_process_free(mpool_process_t *p)
{
    if (!p) return 0;
    if (p->pid && !try_reap(p)) return EBUSY;
    if (p->pidfd >= 0) close(p->pidfd);
    mpool_shm_free(p->word);
    free(p->name);
    free(p);
    return 0;
}
