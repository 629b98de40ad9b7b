#include <mpool/error.h>

#include <sched.h>
#include <string.h>
#include <unistd.h>

/* The one table of codes the library returns: name and description. */
#define MPOOL__ERROR_TABLE(X)                                                                      \
    X(0, "0", "Success")                                                                           \
    X(EINVAL, "EINVAL", "Invalid argument or wrong state")                                         \
    X(ENOMEM, "ENOMEM", "Out of memory (or the shared heap is full)")                              \
    X(ETIMEDOUT, "ETIMEDOUT", "Timed out")                                                         \
    X(EPIPE, "EPIPE", "Closed: the peer or the queue is closed")                                   \
    X(EMSGSIZE, "EMSGSIZE", "Message too large for the buffer or the limit")                       \
    X(EPERM, "EPERM", "Not held by the caller")                                                    \
    X(ERANGE, "ERANGE", "Value out of range (semaphore over its bound, task_done too often)")      \
    X(EOWNERDEAD, "EOWNERDEAD", "Acquired, but the previous holder died holding it")               \
    X(EBUSY, "EBUSY", "Busy: the process is still running")                                        \
    X(ENODATA, "ENODATA", "No more data: the iterator is exhausted")                               \
    X(ECANCELED, "ECANCELED", "Cancelled: the pool was terminated before the work finished")       \
    X(EPROTO, "EPROTO", "Protocol error: corrupt message stream")                                  \
    X(EAGAIN, "EAGAIN", "Resource temporarily unavailable (fork failed)")                          \
    X(EMFILE, "EMFILE", "Too many open files")                                                     \
    X(ENFILE, "ENFILE", "Too many open files in the system")                                       \
    X(EOVERFLOW, "EOVERFLOW", "Value too large")                                                   \
    X(ESRCH, "ESRCH", "No such process")                                                           \
    X(EINTR, "EINTR", "Interrupted")                                                               \
    X(MPOOL_ETASK, "MPOOL_ETASK", "A task function returned non-zero")                             \
    X(MPOOL_EWORKER, "MPOOL_EWORKER", "The worker running the task died")                          \
    X(MPOOL_EBROKEN, "MPOOL_EBROKEN", "The barrier is broken")

#define X_NAME(code, name, text)                                                                   \
    case code:                                                                                     \
        return name;
#define X_TEXT(code, name, text)                                                                   \
    case code:                                                                                     \
        return text;

const char *mpool_errname(int code)
{
    switch (code) {
        MPOOL__ERROR_TABLE(X_NAME)
    default:
        return "UNKNOWN";
    }
}

const char *mpool_strerror(int code)
{
    switch (code) {
        MPOOL__ERROR_TABLE(X_TEXT)
    default:
        /* Other errno values (from fork, socket calls...): libc's text. */
        if (code > 0 && code < MPOOL_ETASK) {
            const char *t = strerrordesc_np(code);
            if (t) return t;
        }
        return "Unknown error";
    }
}

int mpool_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
