/* Processes: fork + pidfd. The pidfd is the sentinel and the only handle
 * signals and waits go through, so a recycled pid is never touched. */
#include <mpool/process.h>

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

struct mpool_process {
    mpool_target_fn target;
    void *arg;
    bool daemon;
    bool reaped;
    pid_t pid;    /* 0 before start */
    int pidfd;    /* -1 before start */
    int exitcode; /* valid once reaped: status, or -signal */
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
    if (!p->name) {
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    return p;
}

int mpool_process_start(mpool_process_t *p)
{
    if (!p || p->pid) return EINVAL;
    pid_t pid = mpool__fork(p->daemon);
    if (pid < 0) return errno;
    if (pid == 0) mpool__child_exit(p->target(p->arg) & 0xff);
    p->pid = pid;
    /* pidfd_open cannot fail for our own unreaped child short of running out
     * of descriptors; then kill it rather than lose track of it. */
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (p->pidfd < 0) {
        int err = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        p->pid = 0;
        return err;
    }
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
        /* Reaped behind our back (SIGCHLD ignored): the status is lost. */
        p->exitcode = -SIGKILL;
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
    free(p->name);
    free(p);
    return 0;
}
