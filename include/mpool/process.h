/* libmpool: processes you start and join (Python's multiprocessing.Process).
 *
 * A process runs `target(arg)` in a forked child; the value it returns is the
 * child's exit status (0..255). Before every fork the library flushes stdio,
 * so buffered output is not printed twice; the child flushes its own stdio
 * and ends with _exit, never running the parent's atexit handlers.
 *
 * The handle lives in the private memory of the process that created it; use
 * it from that process only. Each started process is tracked with a pidfd, so
 * signals never reach a recycled pid.
 *
 * A process that is not a daemon is not waited for automatically: join it
 * (or free it after it ended) so no zombie is left. If the program ignores
 * SIGCHLD or reaps children itself, exitcode still reports the code the
 * target returned; for a child killed by a signal, or one whose target called
 * exit() itself, it reports -SIGKILL, because the real status went to
 * whoever reaped it.
 *
 * The library keeps one descriptor (a close-on-exec memfd) open from load
 * time, so that a thread's identity can be read even when the descriptor
 * table is full.
 */
#ifndef MPOOL_PROCESS_H
#define MPOOL_PROCESS_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpool_process mpool_process_t;

/* The code a process runs. Its return value is the exit status (the low
 * 8 bits, as for exit()). */
typedef int (*mpool_target_fn)(void *arg);

typedef struct {
    const char *name; /* copied; NULL: "Process-N" */
    /* A daemon process is killed (SIGKILL) when the thread that started it
     * ends, however it ends: return, exit, crash or SIGKILL. Start daemons
     * from a thread that lives as long as they should (the main thread). */
    bool daemon;
} mpool_process_opts_t;

/* Creates a process object (not yet running). `opts` may be NULL for the
 * defaults. Returns NULL with errno EINVAL (no target) or ENOMEM. */
MPOOL_API mpool_process_t *mpool_process_new(mpool_target_fn target, void *arg,
                                             const mpool_process_opts_t *opts);

/* Forks the child, which runs target(arg) once the parent holds its pidfd.
 * Returns 0, EINVAL if started already, EMFILE or ENFILE if no descriptor is
 * free for the pidfd (checked before forking: no child is left behind), or
 * the errno of fork (EAGAIN, ENOMEM). Does not block beyond the fork. */
MPOOL_API int mpool_process_start(mpool_process_t *p);

/* Waits until the process has ended and reaps it. Returns 0 once it has
 * ended (also when it had ended before), ETIMEDOUT, or EINVAL if it was
 * never started. Blocks up to `timeout` seconds. */
MPOOL_API int mpool_process_join(mpool_process_t *p, double timeout);

/* True from start until the process ends. Does not block. */
MPOOL_API bool mpool_process_is_alive(mpool_process_t *p);

/* The pid, or 0 before start (and for NULL). */
MPOOL_API pid_t mpool_process_pid(const mpool_process_t *p);

/* False while the process runs or was never started. Once it ended, true,
 * with *code (if not NULL) set to its exit status, or to -N if signal N
 * killed it. Does not block. */
MPOOL_API bool mpool_process_exitcode(mpool_process_t *p, int *code);

/* Sends SIGTERM (terminate) or SIGKILL (kill). Returns 0 (also when the
 * process has already ended), EINVAL if it was never started. Does not wait:
 * join afterwards. */
MPOOL_API int mpool_process_terminate(mpool_process_t *p);
MPOOL_API int mpool_process_kill(mpool_process_t *p);

/* A file descriptor (a pidfd) that becomes readable when the process ends,
 * for poll/select/epoll; -1 before start. Owned by the handle: do not close. */
MPOOL_API int mpool_process_sentinel(const mpool_process_t *p);

/* The process's name (never NULL for a valid handle). */
MPOOL_API const char *mpool_process_name(const mpool_process_t *p);

/* Frees the handle, reaping the child if it ended. Returns 0, or EBUSY (and
 * frees nothing) while the process runs. NULL is accepted (0). */
MPOOL_API int mpool_process_free(mpool_process_t *p);

#ifdef __cplusplus
}
#endif
#endif
