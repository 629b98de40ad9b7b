#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
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

/* One descriptor kept in reserve, so that a thread's identity can still be
 * read when the descriptor table is full (EMFILE) or the system's is
 * (ENFILE): the reading thread closes the spare, opens the stat file in the
 * slot that frees, and re-arms the spare. A memfd, for an inode of its own:
 * if the program closed the spare's number (closefrom, close_range) and that
 * number now names one of its files, the inode differs and we leave it be.
 * The lock serializes users of the spare; it is taken around fork. */
static int spare_fd = -1;
static ino_t spare_ino;
static pthread_mutex_t spare_lock = PTHREAD_MUTEX_INITIALIZER;

int mpool__spare_fd(void)
{
    return spare_fd;
}

static void spare_arm(void)
{
    spare_fd = (int)syscall(SYS_memfd_create, "mpool-spare", MFD_CLOEXEC);
    struct stat st;
    if (spare_fd >= 0 && fstat(spare_fd, &st) == 0) {
        spare_ino = st.st_ino;
    } else if (spare_fd >= 0) {
        close(spare_fd);
        spare_fd = -1;
    }
}

/* Opens `path` read-only; when no descriptor is free, in the spare's slot.
 * Returns the descriptor, or -1 with errno; with *spare set, the caller
 * closes it and then calls spare_done(). */
static int open_with_spare(const char *path, bool *spare)
{
    *spare = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 || (errno != EMFILE && errno != ENFILE)) return fd;
    int err = errno;
    pthread_mutex_lock(&spare_lock);
    struct stat st;
    if (spare_fd < 0 || fstat(spare_fd, &st) != 0 || st.st_ino != spare_ino) {
        spare_fd = -1; /* lost: never close a number that is no longer ours */
        spare_arm();   /* maybe there is room again */
        if (spare_fd < 0) {
            pthread_mutex_unlock(&spare_lock);
            errno = err;
            return -1;
        }
    }
    close(spare_fd);
    spare_fd = -1;
    fd = open(path, O_RDONLY | O_CLOEXEC); /* fails only if another thread took the slot */
    if (fd < 0) {
        err = errno;
        spare_arm();
        pthread_mutex_unlock(&spare_lock);
        errno = err;
        return -1;
    }
    *spare = true;
    return fd;
}

static void spare_done(void)
{
    spare_arm();
    pthread_mutex_unlock(&spare_lock);
}

/* The command name (field 2) may hold spaces and parentheses, so parse
 * after the last ')'. */
int mpool__read_stat(pid_t tid, char *state, pid_t *ppid, uint64_t *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
    bool spare;
    int fd = open_with_spare(path, &spare);
    if (fd < 0) return errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = n < 0 ? errno : ENOENT; /* read after the thread ended: ESRCH or 0 bytes */
    close(fd);
    if (spare) spare_done();
    if (n <= 0) return err;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ') return EIO;
    p += 2;
    *state = *p;
    /* Field 3 is the state, 4 the parent; the start time is field 22. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p) return EIO;
        p++;
        if (field == 3 && ppid) *ppid = (pid_t)strtol(p, NULL, 10);
    }
    *start = strtoull(p, NULL, 10);
    return 0;
}

__attribute__((cold)) uint64_t mpool__self_slow(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    char state;
    uint64_t start = 0;
    int err = mpool__read_stat(tid, &state, NULL, &start);
    /* Our own thread is alive, so ENOENT means /proc is not mounted: then
     * nobody can read start times and mpool__thread_dead falls back on the
     * TID alone, which this identity matches. Any other failure may pass
     * (EMFILE, ENOMEM): report it and cache nothing, never a guess. */
    if (err == ENOENT) {
        start = 0;
    } else if (err) {
        errno = err;
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
    if (mpool__read_stat(tid, &state, NULL, &start) != 0) {
        /* No /proc entry (or none readable): dead only if no task has that
         * TID at all. A TID reused by a newer thread reads as alive: the
         * error is towards waiting, never towards taking a live holder's
         * lock. Signal 0 sends nothing, so a reused TID is not harmed. */
        return kill(tid, 0) != 0 && errno == ESRCH;
    }
    if (state == 'Z' || state == 'X' || state == 'x') return true;
    return (start & 0xffffffffu) != id >> 32;
}

uint32_t *mpool__exit_word;

static void reset_identity(void)
{
    mpool__self_id = 0;
    mpool__exit_word = NULL;
}

static void spare_prepare(void)
{
    pthread_mutex_lock(&spare_lock);
}

static void spare_release(void)
{
    pthread_mutex_unlock(&spare_lock);
}

static void child_after_fork(void)
{
    pthread_mutex_unlock(&spare_lock);
    reset_identity();
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void)
{
    spare_arm();
    pthread_atfork(spare_prepare, spare_release, child_after_fork);
}

__attribute__((constructor)) static void internal_init(void)
{
    pthread_once(&atfork_once, register_atfork);
}

/* ---- fork ----------------------------------------------------------------- */

pid_t mpool__fork(bool die_with_parent)
{
    /* The forking thread by TID and start time: the check below must see
     * its death even when the process lives on and its TID was reused. */
    uint64_t forker = die_with_parent ? mpool__self() : 0;
    if (die_with_parent && !forker) return -1; /* errno from mpool__self */
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    reset_identity();
    if (die_with_parent) {
        /* PDEATHSIG fires when the forking thread ends, but only if set by
         * then. If that thread ended before prctl, we were handed to another
         * thread (getppid() unchanged) or to a reaper (changed): exit. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent || mpool__thread_dead(forker)) _exit(1);
    }
    return 0;
}

void mpool__child_exit(int code)
{
    fflush(NULL);
    if (mpool__exit_word)
        __atomic_store_n(mpool__exit_word, MPOOL__EXIT_CODE | ((uint32_t)code & 0xff),
                         __ATOMIC_RELEASE);
    _exit(code);
}
