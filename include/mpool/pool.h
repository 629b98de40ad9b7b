/* libmpool: a pool of worker processes (Python's multiprocessing.Pool).
 *
 * Work is a task function applied to fixed-size input items, each giving a
 * fixed-size output item written straight into the caller's output array:
 *
 *     int square(const void *in, void *out, void *ctx)
 *     { *(long *)out = *(const long *)in * *(const long *)in; return 0; }
 *     mpool_pool_map(pool, square, xs, n, sizeof(long), ys, sizeof(long), 0);
 *
 * Inputs are read when the call returns (copied into the shared heap, or read
 * in place when they already lie there -- then they must stay unchanged until
 * the result is ready: allocate big inputs with mpool_shm_alloc before
 * creating the pool). Results go straight into `out`
 * when `out` lies in the shared heap; otherwise workers write them to a
 * staging area in the shared heap that the caller's process copies into
 * `out` once the whole call is done: `out` is filled by the time
 * mpool_async_wait/get returns 0 or mpool_async_ready returns true (an
 * iterator copies each item when mpool_iter_next returns it). `out` must stay
 * valid until then. The output of a failed item is unspecified. A NULL
 * `in` (or `out`) is accepted when in_size (or out_size) is 0.
 *
 * The pointer trap: items are copied as bytes, so a pointer inside an item
 * (a struct holding a `char *` to a string, a buffer malloc'd after the
 * pool was made) points, in the worker, into the worker's own copy of the
 * caller's memory as it was when the pool (or its fork server) was made:
 * memory allocated later is garbage or unmapped there, and no error comes
 * back. Two ways out: map bytes items (mpool_pool_map_bytes and friends
 * below, each item a {data, len} that the pool copies whole), or keep the
 * data in mpool_shm_alloc memory, which every process sees.
 *
 * Work is split into chunks of `chunksize` items (0: Python's rule,
 * ceil(n / (4 * processes))); workers claim chunks in order from a shared
 * cursor and run the items of a chunk one after the other.
 *
 * Task functions run in the workers, forked (through a fork server made at
 * pool_new) from the caller's process image: function pointers, globals set
 * before the pool was created, and shared-heap pointers are valid there.
 *
 * Failures are per item: a task that returns non-zero fails its item with
 * MPOOL_ETASK; a worker that dies while running a task (signal, exit, or the
 * task timeout) fails that one item with MPOOL_EWORKER, a fresh worker takes
 * its place and every other item completes. Nothing in the pool hangs on a
 * dead worker. Workers ignore SIGINT and die with the process that made the
 * pool. If the fork server itself dies, the next wait notices it (within
 * 50 ms), forks a new one, and the items that were running fail with
 * MPOOL_EWORKER (status SIGKILL); everything else completes.
 *
 * The caller's SIGCHLD disposition does not matter (default, SIG_IGN, or a
 * handler that reaps every child): the pool waits for and signals its fork
 * server only through a pidfd, never by a bare pid that may have been reaped
 * and reused, and its helpers reap their own children. A caller that is a
 * child subreaper or PID 1 is left no zombie either.
 *
 * A pool is used from the process that created it (any of its threads). Its
 * helper processes die with the *thread* that created the pool (or that
 * last replaced the fork server): create pools from a thread that outlives
 * them, such as the main thread.
 */
#ifndef MPOOL_POOL_H
#define MPOOL_POOL_H

#include "error.h"

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpool_pool mpool_pool_t;
typedef struct mpool_async mpool_async_t;
typedef struct mpool_iter mpool_iter_t;

/* A task: reads one input item, writes one output item. Non-zero = failure
 * (the value is reported as mpool_failure_t.status). */
typedef int (*mpool_task_fn)(const void *in, void *out, void *ctx);

typedef struct {
    int processes;                 /* workers; 0: mpool_cpu_count() */
    int (*initializer)(void *arg); /* run once in each worker; non-zero = worker fails */
    void *initarg;
    unsigned maxtasksperchild; /* 0: unlimited; else the worker is replaced after that many
                                  items (task calls), also in the middle of a chunk */
    double task_timeout;       /* > 0: a task running longer has its worker killed and
                                  fails with MPOOL_EWORKER (status SIGKILL) */
    void *ctx;                 /* handed to every task; must be valid in the workers */
    /* false (the default): the fork server, hence every worker, closes every
     * descriptor but 0, 1 and 2 that the caller had open at mpool_pool_new,
     * so that a pipe or socket made before the pool still sees EOF or EPIPE
     * when the caller closes its end. true: workers keep them all (as
     * Python's fork start method does), for tasks or initializers that use
     * a descriptor opened before the pool. New in 1.1 (last field: zero-
     * or designated-initialized opts keep compiling and get the default). */
    bool inherit_fds;
    /* An item whose worker died (a fatal signal, a kill from outside, an
     * exit) is run again on a fresh worker up to `retries` more times
     * before it fails with MPOOL_EWORKER. A task returning non-zero is never
     * retried (its own verdict), nor an item killed by task_timeout or by
     * terminate. 0 (the default): version-1 behaviour. New in 1.1. */
    unsigned retries;
} mpool_pool_opts_t;

typedef struct {
    size_t index; /* the item that failed */
    int code;     /* MPOOL_ETASK, MPOOL_EWORKER or ECANCELED */
    int status;   /* ETASK: the task's return value; EWORKER: the signal that killed the
                     worker (SIGKILL for a task timeout), or 0 if it exited without one */
    /* New in 1.1 (filled by every function that fills an mpool_failure_t): */
    unsigned attempts;    /* runs of the item that were started (> 1 with retries) */
    uintptr_t fault_addr; /* si_addr of the fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL),
                             else 0 */
    /* One line, never NULL: what happened, e.g. "item 12: worker 4711 killed by SIGSEGV
     * at address 0x0 in parse_record+0x1c (./prog)", or the task's own message (see
     * mpool_task_error). Valid until the async or iterator is freed. */
    const char *message;
    /* A fatal signal in a task: the worker's stack at the fault, one symbolized frame a
     * line ("function+0xoff (object)"; innermost first), else NULL. Names come from
     * dladdr: functions of the main program need -rdynamic to be named, static
     * functions never are (their object and offset are). Same lifetime as message.
     * Workers handle SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP and SIGSYS on
     * an alternate stack to record this, then die of the signal as before. A handler
     * that the initializer installed for one of them wins (then no backtrace);
     * handlers inherited from the caller's process are replaced (but AddressSanitizer's
     * interceptor keeps its own SIGSEGV, SIGBUS and SIGFPE handlers: under ASan such a
     * crash reads as an exit). No backtrace either when the worker died while recording
     * it (a stack overflowing its signal stack), or when memory for the details ran out
     * (message then says less: the failure itself is always kept). No file:line: only
     * dladdr's names; addr2line -e <object> <offset> gives them for unnamed frames. */
    const char *backtrace;
} mpool_failure_t;

/* Starts a pool and waits until every worker ran its initializer. `opts` may
 * be NULL (defaults). Returns NULL with errno: EINVAL (processes < 0,
 * task_timeout < 0), ENOMEM, EAGAIN (a fork failed: of the server or of any
 * worker, reported at once, with nothing left behind), EMFILE or ENFILE (no
 * descriptor for the server's pidfd), or MPOOL_ETASK when the
 * initializer failed (returned non-zero, or its worker died) in a worker.
 * Should a replacement worker's initializer fail later, the pool breaks
 * instead of respawning in a loop: unfinished items fail with MPOOL_ETASK
 * (status: the initializer's return value) and further calls with EINVAL. */
MPOOL_API mpool_pool_t *mpool_pool_new(const mpool_pool_opts_t *opts);

/* Runs fn on one input and waits for it. Returns 0, the failure code
 * (MPOOL_ETASK, MPOOL_EWORKER, ECANCELED), or EINVAL (bad arguments, pool
 * closed). Blocks until done. */
MPOOL_API int mpool_pool_apply(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t in_size,
                               void *out, size_t out_size);

/* Starts fn on one input; NULL with errno EINVAL or ENOMEM. */
MPOOL_API mpool_async_t *mpool_pool_apply_async(mpool_pool_t *p, mpool_task_fn fn, const void *in,
                                                size_t in_size, void *out, size_t out_size);

/* Applies fn to n items of in_size bytes at `in`, writing n items of out_size
 * bytes at `out`, in chunks of `chunksize` items (0: automatic). Blocks until
 * every item is done. Returns 0 when all succeeded, else the first failure's
 * code (details with map_async + mpool_async_failure), EINVAL (NULL fn,
 * NULL in/out with n > 0, n * size overflowing, pool closed or broken), or
 * ENOMEM (shared heap exhausted: copies and staging live there). n = 0
 * returns 0 at once. */
MPOOL_API int mpool_pool_map(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t n,
                             size_t in_size, void *out, size_t out_size, size_t chunksize);

/* The same without waiting; NULL with errno EINVAL or ENOMEM. */
MPOOL_API mpool_async_t *mpool_pool_map_async(mpool_pool_t *p, mpool_task_fn fn, const void *in,
                                              size_t n, size_t in_size, void *out, size_t out_size,
                                              size_t chunksize);

/* Applies fn lazily; results come one by one from mpool_iter_next, in input
 * order (imap) or as chunks complete (imap_unordered: a completed chunk that
 * started earliest comes first). NULL with errno EINVAL or ENOMEM. Results
 * wait in a staging area of n * out_size bytes in the shared heap. */
MPOOL_API mpool_iter_t *mpool_pool_imap(mpool_pool_t *p, mpool_task_fn fn, const void *in, size_t n,
                                        size_t in_size, size_t out_size, size_t chunksize);
MPOOL_API mpool_iter_t *mpool_pool_imap_unordered(mpool_pool_t *p, mpool_task_fn fn, const void *in,
                                                  size_t n, size_t in_size, size_t out_size,
                                                  size_t chunksize);

/* The next result: copies it to `out` (out_size bytes; out may be NULL) and
 * its input index to *index (may be NULL). Waits up to `timeout`. Returns 0;
 * ENODATA when every item has been returned; ETIMEDOUT; or that item's
 * MPOOL_ETASK / MPOOL_EWORKER / ECANCELED (the index is set; iteration can
 * go on). */
MPOOL_API int mpool_iter_next(mpool_iter_t *it, void *out, size_t *index, double timeout);

/* Frees an iterator; work not yet consumed is still finished or cancelled
 * by the pool, never left running against freed memory. NULL is accepted. */
MPOOL_API void mpool_iter_free(mpool_iter_t *it);

/* ---- bytes items: inputs and outputs of any length -------------------------
 *
 * An item is a byte string: mpool_bytes_t {data, len}. The task gets the
 * item's bytes and appends its result to an mpool_out_t, whose size need not
 * be known in advance:
 *
 *     int reverse(const void *in, size_t len, mpool_out_t *out, void *ctx)
 *     {
 *         char *r = mpool_out_reserve(out, len);
 *         if (!r) return errno;                      // the item fails, status ENOMEM
 *         for (size_t i = 0; i < len; i++) r[i] = ((const char *)in)[len - 1 - i];
 *         return 0;
 *     }
 *     mpool_pool_map_bytes(pool, reverse, items, n, results, 0);
 *     ... results[i].data is malloc'd: free() each ...
 *
 * Inputs are read when the call returns: copied into the shared heap, or
 * read in place when an item already lies there (then it must stay
 * unchanged until its result is in). An empty item (len 0) is an item; its
 * task gets a valid pointer and len 0. Outputs are moved out of the shared
 * heap into buffers malloc'd in the caller's process as chunks complete,
 * while the caller waits or iterates, so the shared heap holds only the
 * items in flight and the results not yet collected, whatever n and the
 * output sizes. A successful empty output is {NULL, 0}; a failed item's is
 * {NULL, 0} too, and its code tells them apart.
 *
 * Failures are as for fixed-size items: a task that returns non-zero fails
 * its item (MPOOL_ETASK, status = its return value) and what it wrote is
 * discarded; a worker that dies fails only the item it was running
 * (MPOOL_EWORKER), never delivering half an output. The MPI backend does
 * not run bytes items: the calls fail with EINVAL on an MPI pool (an item
 * names memory of the caller's address space). */
typedef struct {
    void *data;
    size_t len;
} mpool_bytes_t;

/* A task's result being written; valid only inside that task call. */
typedef struct mpool_out mpool_out_t;

/* A bytes task: reads len bytes at `in` (valid for the call), appends its
 * result to `out`. Non-zero = failure (reported as mpool_failure_t.status). */
typedef int (*mpool_bytes_fn)(const void *in, size_t len, mpool_out_t *out, void *ctx);

/* In a task: appends len bytes to its output. 0, ENOMEM (the shared heap
 * cannot hold the output; the task may return it as its failure), or EINVAL
 * (NULL out, or NULL data with len > 0). */
MPOOL_API int mpool_out_write(mpool_out_t *out, const void *data, size_t len);

/* In a task: appends len bytes to its output and returns where they are,
 * to be filled in place (16-byte aligned when nothing was written before;
 * valid until the next write or reserve on `out`). NULL with errno ENOMEM
 * or EINVAL. */
MPOOL_API void *mpool_out_reserve(mpool_out_t *out, size_t len);

/* Applies fn to n bytes items, leaving each result in out[i] (malloc'd:
 * free() each data). Chunks as for mpool_pool_map. Blocks until every item
 * is done. Returns 0, the first failure's code (MPOOL_ETASK, MPOOL_EWORKER,
 * ECANCELED, or ENOMEM when the caller's process could not allocate a
 * result's copy; that item's out is {NULL, 0}), EINVAL (NULL fn, in or out
 * with n > 0, an item with NULL data and len > 0, pool closed or broken, an
 * MPI pool), or ENOMEM (the shared heap cannot hold the inputs). */
MPOOL_API int mpool_pool_map_bytes(mpool_pool_t *p, mpool_bytes_fn fn, const mpool_bytes_t *in,
                                   size_t n, mpool_bytes_t *out, size_t chunksize);

/* The same without waiting; NULL with errno EINVAL or ENOMEM. out[] is set
 * to {NULL, 0} at once and filled as chunks complete, during the calls on
 * the handle (wait, ready, get, progress); it must stay valid until the
 * handle is ready or freed. Results collected before the handle is freed
 * stay in out[] (free them); those not yet collected then are dropped (and
 * their memory released), never written to out[] by the free itself. */
MPOOL_API mpool_async_t *mpool_pool_map_bytes_async(mpool_pool_t *p, mpool_bytes_fn fn,
                                                    const mpool_bytes_t *in, size_t n,
                                                    mpool_bytes_t *out, size_t chunksize);

/* Applies fn lazily; results come from mpool_iter_next_bytes, in input
 * order (ordered) or as chunks complete. Results wait in the shared heap
 * until they are returned. NULL with errno, as mpool_pool_map_bytes_async. */
MPOOL_API mpool_iter_t *mpool_pool_imap_bytes(mpool_pool_t *p, mpool_bytes_fn fn,
                                              const mpool_bytes_t *in, size_t n, size_t chunksize,
                                              bool ordered);

/* The next result of a bytes or source iterator: *out gets a malloc'd copy
 * (free() it; {NULL, 0} for an empty output or a failed item) and *index
 * its input index (may be NULL). Waits up to `timeout`. Returns 0, the
 * item's failure code (iteration can go on), ENODATA when every item has
 * been returned, ETIMEDOUT, ENOMEM when the copy could not be made (the
 * item stays: call again), or for a source the code that ended it (once,
 * then ENODATA). EINVAL for NULL it or out, or a fixed-size iterator (and
 * mpool_iter_next gives EINVAL on bytes and source iterators). */
MPOOL_API int mpool_iter_next_bytes(mpool_iter_t *it, mpool_bytes_t *out, size_t *index,
                                    double timeout);

/* ---- sources: a stream of items of any length, in bounded memory ----------
 *
 * A source yields the next input item: returns 0 and sets *item (the pool
 * copies its bytes before calling again, so the source may reuse its
 * buffer), ENODATA at the end, or any other code to end the stream with
 * that code. */
typedef int (*mpool_source_fn)(void *state, mpool_bytes_t *item);

/* Maps fn over the items a source yields. At most `window` items are read
 * from the source and not yet returned by mpool_iter_next_bytes (0: 64 per
 * worker, at least 256: enough that no worker waits for input while the
 * caller waits for results; see docs/BENCHMARKS.md), so a stream of any
 * length runs in memory bounded by the window times the item sizes. The
 * source is called only from the caller's thread, inside this call and
 * inside mpool_iter_next_bytes; indexes count from 0 in source order.
 * Ordered iteration returns items in source order; unordered returns each
 * once, as it completes. A source error ends the iteration after the items
 * read before it were returned. After mpool_pool_close or terminate the
 * source is read no more: what was read completes (or is cancelled), then
 * the iteration ends with EINVAL. NULL with errno EINVAL (NULL p, fn or
 * next, pool closed, MPI pool) or ENOMEM. */
MPOOL_API mpool_iter_t *mpool_pool_imap_source(mpool_pool_t *p, mpool_bytes_fn fn,
                                               mpool_source_fn next, void *state, size_t window,
                                               bool ordered);

/* Waits until every item of the call is done. Returns 0 once ready, or
 * ETIMEDOUT. */
MPOOL_API int mpool_async_wait(mpool_async_t *a, double timeout);

/* True once every item is done (then `out` is filled). Does not block. */
MPOOL_API bool mpool_async_ready(mpool_async_t *a);

/* Waits like mpool_async_wait, then returns 0 if every item succeeded (`out`
 * is filled), else the code of the first failure (lowest index). ETIMEDOUT
 * if not ready in time. */
MPOOL_API int mpool_async_get(mpool_async_t *a, double timeout);

/* Details of the first failure (lowest index): returns 0 and fills *f, or
 * ENODATA when no item has failed (so far), EINVAL for NULL. */
MPOOL_API int mpool_async_failure(mpool_async_t *a, mpool_failure_t *f);

/* Every failed item so far, in index order: copies the first min(cap, total)
 * into f and returns the total (f may be NULL with cap 0 to count). The
 * records are reserved when the call is accepted: none is ever lost. 0 for
 * NULL. */
MPOOL_API size_t mpool_async_failures(mpool_async_t *a, mpool_failure_t *f, size_t cap);

/* The failure of the last item that mpool_iter_next(_bytes) returned with a
 * failure code: 0 and fills *f, ENODATA if that item did not fail (or none
 * was returned yet), EINVAL for NULL or a source iterator. */
MPOOL_API int mpool_iter_failure(mpool_iter_t *it, mpool_failure_t *f);

/* Longest task message kept, in bytes (without the terminating NUL). */
#define MPOOL_TASK_MSG_MAX 255

/* In a task: sets the message of the item being run (printf format), which
 * its failure reports if the task then returns non-zero (a task returning 0
 * succeeds and the message is dropped). Up to MPOOL_TASK_MSG_MAX bytes,
 * longer messages are truncated (on a UTF-8 character boundary), newlines
 * and other control characters become spaces; a later call replaces it.
 * Returns 0, or EINVAL outside a task (in the caller's process, or in a
 * worker between tasks). Local pools only for now. */
MPOOL_API int mpool_task_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes the human-readable report of a failure into buf: its message, then
 * its backtrace, one frame a line indented by two spaces. Always
 * NUL-terminated when cap > 0; returns the length the full report needs
 * (as snprintf), so a return >= cap means it was truncated. */
MPOOL_API size_t mpool_failure_format(const mpool_failure_t *f, char *buf, size_t cap);

/* Items done (succeeded or failed) and items in all. Either may be NULL. */
MPOOL_API void mpool_async_progress(mpool_async_t *a, size_t *done, size_t *total);

/* Frees the handle. If the work is still running it is allowed to finish or
 * is cancelled by terminate; the handle's memory is released when the pool
 * no longer needs it. An `out` in the shared heap keeps receiving results
 * until then; any other `out` is no longer written after this call. NULL is
 * accepted. */
MPOOL_API void mpool_async_free(mpool_async_t *a);

/* No more work is accepted (further calls fail with EINVAL); submitted work
 * still completes. Returns 0, or EINVAL if already closed or terminated. */
MPOOL_API int mpool_pool_close(mpool_pool_t *p);

/* After close or terminate: waits for every submitted item to finish and
 * every worker to exit. Returns 0, ETIMEDOUT, EINVAL (not closed), or
 * ECANCELED when called while another thread frees the pool. */
MPOOL_API int mpool_pool_join(mpool_pool_t *p, double timeout);

/* Stops now: kills the workers; items running or pending fail with
 * ECANCELED. Returns 0 (also when called twice). Returns promptly. */
MPOOL_API int mpool_pool_terminate(mpool_pool_t *p);

/* Frees the pool, terminating it if it still runs (the fork server is asked
 * to kill and reap its workers, and is killed if it has not within 1 s).
 * Signals no process but the pool's own. Leaves no process, zombie
 * or descriptor behind. Asyncs and iterators of the pool must not be used
 * after (free them before or after; their memory is released here if not).
 * NULL is accepted.
 *
 * Other threads: a call on the pool or its handles that another thread is
 * in (or blocked in) when free begins is let finish first. Its unfinished
 * items fail with ECANCELED, so a blocked map, apply, mpool_async_get or
 * mpool_iter_next returns ECANCELED and a blocked mpool_pool_join returns 0;
 * free waits for it, which takes as long as the terminate (milliseconds).
 * A call that starts while free runs touches nothing and fails at once:
 * submissions and close with EINVAL, waits, get, failure and iter_next with
 * ECANCELED; mpool_async_ready returns false and mpool_async_free leaves the
 * handle to free. A call made after free returned uses freed memory, as
 * with any freed object: to stop threads that loop on the pool, terminate
 * it, let them see ECANCELED and finish, then free. */
MPOOL_API void mpool_pool_free(mpool_pool_t *p);

#ifdef __cplusplus
}
#endif
#endif
