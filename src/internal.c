#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- time ---------------------------------------------------------------- */

double mpool__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct timespec add_seconds(struct timespec ts, double seconds)
{
    /* Clamp absurd timeouts to about 30 years instead of overflowing. */
    if (seconds > 1e9) seconds = 1e9;
    time_t whole = (time_t)seconds;
    long nsec = ts.tv_nsec + (long)((seconds - (double)whole) * 1e9);
    ts.tv_sec += whole + nsec / 1000000000L;
    ts.tv_nsec = nsec % 1000000000L;
    return ts;
}

bool mpool__deadline(double timeout, struct timespec *ts)
{
    if (timeout != timeout) timeout = 0; /* NaN: try once rather than wait forever */
    if (timeout < 0) return false;
    clock_gettime(CLOCK_MONOTONIC, ts);
    *ts = add_seconds(*ts, timeout);
    return true;
}

static int ts_cmp(const struct timespec *a, const struct timespec *b)
{
    if (a->tv_sec != b->tv_sec) return a->tv_sec < b->tv_sec ? -1 : 1;
    if (a->tv_nsec != b->tv_nsec) return a->tv_nsec < b->tv_nsec ? -1 : 1;
    return 0;
}

struct timespec mpool__deadline_min(const struct timespec *deadline, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts = add_seconds(ts, seconds);
    if (deadline && ts_cmp(deadline, &ts) < 0) ts = *deadline;
    return ts;
}

bool mpool__expired(const struct timespec *deadline)
{
    if (!deadline) return false;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return ts_cmp(&now, deadline) >= 0;
}

double mpool__remaining(const struct timespec *deadline)
{
    if (!deadline) return -1.0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double left =
        (double)(deadline->tv_sec - now.tv_sec) + (double)(deadline->tv_nsec - now.tv_nsec) * 1e-9;
    return left > 0 ? left : 0;
}

/* ---- identity ------------------------------------------------------------- */

__thread uint64_t mpool__self_id __attribute__((tls_model("initial-exec")));

/* Reads state and start time (field 22 of /proc/<tid>/stat). The command
 * name (field 2) may hold spaces and parentheses, so parse after the last
 * ')'. Returns false if the thread does not exist (or /proc is unreadable). */
static bool read_stat(pid_t tid, char *state, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ') return false;
    p += 2;
    *state = *p;
    /* Field 3 is the state; the start time is 19 fields further on. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p) return false;
        p++;
    }
    *start = strtoull(p, NULL, 10);
    return true;
}

__attribute__((cold)) uint64_t mpool__self_slow(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    char state;
    uint64_t start = 0;
    errno = 0;
    if (!read_stat(tid, &state, &start)) {
        /* Never guess (a start time of 0 passes for a dead thread): no
         * identity, errno says why, and the next call tries again. */
        if (errno == 0) errno = EAGAIN;
        return 0;
    }
    mpool__self_id = (start & 0xffffffffu) << 32 | (uint32_t)tid;
    return mpool__self_id;
}

bool mpool__thread_dead(uint64_t id)
{
    pid_t tid = (pid_t)(uint32_t)id;
    char state;
    uint64_t start;
    if (tid <= 0) return false;
    if (!read_stat(tid, &state, &start)) {
        /* No /proc entry: gone, unless /proc itself is missing. */
        return kill(tid, 0) != 0 && errno == ESRCH;
    }
    if (state == 'Z' || state == 'X' || state == 'x') return true;
    return (start & 0xffffffffu) != id >> 32;
}

static void reset_identity(void)
{
    mpool__self_id = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, reset_identity);
}

__attribute__((constructor)) static void internal_init(void)
{
    pthread_once(&atfork_once, register_atfork);
}

/* ---- fork ----------------------------------------------------------------- */

pid_t mpool__fork(bool die_with_parent)
{
    pid_t parent = die_with_parent ? getpid() : 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    reset_identity();
    if (die_with_parent) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1); /* the parent died before prctl */
    }
    return 0;
}

void mpool__child_exit(int code)
{
    fflush(NULL);
    _exit(code);
}
