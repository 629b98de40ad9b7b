/* Shared by the cmocka tests: child processes with a time limit, descriptor
 * counting, and small helpers. Every wait here is bounded. */
#ifndef MPOOL_TESTUTIL_H
#define MPOOL_TESTUTIL_H

#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <mpool.h>

/* Open descriptors of this process. */
static inline int tu_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

/* How much to stretch a timing bound: MPOOL_TEST_SLACK in the environment
 * (at least 1), set by slow runs such as `./dev.sh valgrind`. */
static inline double tu_slack(void)
{
    const char *s = getenv("MPOOL_TEST_SLACK");
    double v = s ? atof(s) : 1.0;
    return v > 1.0 ? v : 1.0;
}

/* True under valgrind, which preloads its own helpers. */
static inline bool tu_under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p && strstr(p, "vgpreload");
}

/* The emulator the tests run under, or NULL when they run natively. The
 * cross build's ctest sets MPOOL_TEST_EMULATOR (cmake/aarch64-linux-gnu.cmake)
 * to qemu-user's path; docs/PORTING.md lists what qemu-user cannot do and
 * which checks adapt. */
static inline const char *tu_emulator(void)
{
    const char *e = getenv("MPOOL_TEST_EMULATOR");
    return e && *e ? e : NULL;
}

/* Replaces this process with program `path`, given one argument, as
 * argv[0] `name`. Under an emulator through it: without binfmt_misc the
 * kernel cannot run a foreign binary. Returns only on failure. */
static inline void tu_exec1(const char *path, const char *name, const char *arg)
{
    const char *emu = tu_emulator();
    if (emu)
        execl(emu, emu, path, arg, (char *)NULL);
    else
        execl(path, name, arg, (char *)NULL);
}

static inline double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Forks a child that runs fn(arg) and _exits with its result. */
static inline pid_t tu_fork(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) _exit(fn(arg));
    return pid;
}

/* Waits for a child at most `timeout` seconds, then SIGKILLs it. Returns the
 * exit status, -N if killed by signal N, or -1000 if it had to be killed. */
static inline int tu_wait(pid_t pid, double timeout)
{
    double end = tu_now() + timeout;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        if (r < 0) return -2000;
        if (tu_now() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1000;
        }
        usleep(1000); /* polling a child's end; no primitive to wait on here */
    }
}

/* State (R, S, Z, ...) and parent of `pid`, from /proc/<pid>/stat; false
 * once it is gone. The command name may hold spaces: parse after the ')'. */
static inline bool tu_stat(pid_t pid, char *state, pid_t *ppid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    int pp = 0;
    if (!p || sscanf(p + 2, "%c %d", state, &pp) != 2) return false;
    *ppid = (pid_t)pp;
    return true;
}

/* True if `pid` no longer exists or is a zombie. */
static inline int tu_pid_gone(pid_t pid)
{
    char st;
    pid_t pp;
    return !tu_stat(pid, &st, &pp) || st == 'Z' || st == 'X';
}

/* The children of `parent` (zombies too when `zombies`), the first `max`
 * of them into pids (which may be NULL). Returns how many there are. */
static inline int tu_children(pid_t parent, bool zombies, pid_t *pids, int max)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        pid_t pid = (pid_t)atoi(e->d_name), pp;
        char st;
        if (pid <= 0 || !tu_stat(pid, &st, &pp) || pp != parent) continue;
        if (!zombies && (st == 'Z' || st == 'X')) continue;
        if (pids && n < max) pids[n] = pid;
        n++;
    }
    closedir(d);
    return n;
}

/* Children of this process, zombies included. */
static inline int tu_count_children(void)
{
    return tu_children(getpid(), true, NULL, 0);
}

#endif
