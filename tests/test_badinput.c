/* Bad input everywhere: every public function called with NULL, zero and
 * huge sizes, closed objects and wrong states gives its documented result.
 * The whole table runs in a child whose stdout and stderr are captured, so
 * that a crash, an abort or a single byte printed by the library fails. */
// ctest-timeout: 120
#include "testutil.h"

#include <fcntl.h>

static int failures;

/* One row of the table: what was called, what it gave, what it must give. */
static void row(const char *call, long got, long want)
{
    if (got == want) return;
    failures++;
    char line[512];
    int n = snprintf(line, sizeof line, "BAD: %s gave %ld, want %ld\n", call, got, want);
    (void)!write(3, line, (size_t)n); /* fd 3: the report pipe, not stdout */
}
#define ROW(call, want) row(#call, (long)(call), (long)(want))
#define ROW_NULL_ERRNO(call, err)                                                                  \
    do {                                                                                           \
        errno = 0;                                                                                 \
        void *p_ = (void *)(call);                                                                 \
        row(#call " is NULL", p_ == NULL, 1);                                                      \
        row(#call " errno", errno, err);                                                           \
    } while (0)

static int square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(long *)out = *(const long *)in * *(const long *)in;
    return 0;
}

static int seven(const void *in, void *out, void *ctx)
{
    (void)in, (void)ctx;
    *(long *)out = 7;
    return 0;
}

static void process_rows(void)
{
    ROW_NULL_ERRNO(mpool_process_new(NULL, NULL, NULL), EINVAL);
    ROW(mpool_process_start(NULL), EINVAL);
    ROW(mpool_process_join(NULL, 0), EINVAL);
    ROW(mpool_process_is_alive(NULL), false);
    ROW(mpool_process_pid(NULL), 0);
    ROW(mpool_process_exitcode(NULL, NULL), false);
    ROW(mpool_process_terminate(NULL), EINVAL);
    ROW(mpool_process_kill(NULL), EINVAL);
    ROW(mpool_process_sentinel(NULL), -1);
    ROW(mpool_process_name(NULL) == NULL, 1);
    ROW(mpool_process_free(NULL), 0);
}

static void shm_rows(void)
{
    ROW_NULL_ERRNO(mpool_shm_alloc(0), EINVAL);
    ROW_NULL_ERRNO(mpool_shm_alloc(SIZE_MAX), ENOMEM);
    ROW_NULL_ERRNO(mpool_shm_alloc(SIZE_MAX - 63), ENOMEM);
    mpool_shm_free(NULL);
    ROW(mpool_shm_contains(NULL), false);
    mpool_shm_stats(NULL, NULL);
}

static void sync_rows(void)
{
    ROW(mpool_lock_acquire(NULL, 0), EINVAL);
    ROW(mpool_lock_release(NULL), EINVAL);
    ROW(mpool_lock_locked(NULL), false);
    mpool_lock_free(NULL);
    mpool_lock_t *l = mpool_lock_new();
    ROW(mpool_lock_release(l), EPERM); /* unlocked */
    ROW(mpool_lock_acquire(l, 0), 0);
    ROW(mpool_lock_acquire(l, 0), ETIMEDOUT); /* not recursive */
    ROW(mpool_lock_acquire(l, 0.01), ETIMEDOUT);
    ROW(mpool_lock_release(l), 0);
    ROW(mpool_lock_release(l), EPERM);
    mpool_lock_free(l);

    ROW(mpool_rlock_acquire(NULL, 0), EINVAL);
    ROW(mpool_rlock_release(NULL), EINVAL);
    mpool_rlock_free(NULL);
    mpool_rlock_t *r = mpool_rlock_new();
    ROW(mpool_rlock_release(r), EPERM);
    mpool_rlock_free(r);

    ROW(mpool_sem_acquire(NULL, 0), EINVAL);
    ROW(mpool_sem_release(NULL), EINVAL);
    ROW(mpool_sem_value(NULL), -1);
    mpool_sem_free(NULL);
    ROW_NULL_ERRNO(mpool_sem_new(0x80000000u), EINVAL);
    mpool_sem_t *s = mpool_bounded_sem_new(1);
    ROW(mpool_sem_release(s), ERANGE);
    ROW(mpool_sem_acquire(s, 0), 0);
    ROW(mpool_sem_acquire(s, 0), ETIMEDOUT);
    ROW(mpool_sem_release(s), 0);
    mpool_sem_free(s);

    mpool_event_set(NULL);
    mpool_event_clear(NULL);
    ROW(mpool_event_is_set(NULL), false);
    ROW(mpool_event_wait(NULL, 0), EINVAL);
    mpool_event_free(NULL);
    mpool_event_t *e = mpool_event_new();
    ROW(mpool_event_wait(e, 0), ETIMEDOUT);
    mpool_event_free(e);

    ROW(mpool_cond_acquire(NULL, 0), EINVAL);
    ROW(mpool_cond_release(NULL), EINVAL);
    ROW(mpool_cond_wait(NULL, 0), EINVAL);
    ROW(mpool_cond_notify(NULL, 1), EINVAL);
    ROW(mpool_cond_notify_all(NULL), EINVAL);
    mpool_cond_free(NULL);
    mpool_cond_t *c = mpool_cond_new(NULL);
    ROW(mpool_cond_wait(c, 0), EPERM); /* lock not held */
    ROW(mpool_cond_notify(c, 1), EPERM);
    ROW(mpool_cond_notify_all(c), EPERM);
    ROW(mpool_cond_release(c), EPERM);
    ROW(mpool_cond_acquire(c, 0), 0);
    ROW(mpool_cond_wait(c, 0), ETIMEDOUT);
    ROW(mpool_cond_wait_for(c, NULL, NULL, 0), EINVAL);
    ROW(mpool_cond_release(c), 0);
    mpool_cond_free(c);

    ROW_NULL_ERRNO(mpool_barrier_new(0), EINVAL);
    ROW(mpool_barrier_wait(NULL, 0, NULL), EINVAL);
    mpool_barrier_abort(NULL);
    mpool_barrier_reset(NULL);
    ROW(mpool_barrier_broken(NULL), false);
    ROW(mpool_barrier_n_waiting(NULL), 0);
    mpool_barrier_free(NULL);
    mpool_barrier_t *b = mpool_barrier_new(2);
    ROW(mpool_barrier_wait(b, 0, NULL), ETIMEDOUT); /* breaks it */
    ROW(mpool_barrier_broken(b), true);
    ROW(mpool_barrier_wait(b, 1, NULL), MPOOL_EBROKEN);
    mpool_barrier_reset(b);
    ROW(mpool_barrier_broken(b), false);
    mpool_barrier_free(b);
}

static void conn_rows(void)
{
    char buf[16];
    size_t len;
    void *p;
    mpool_conn_t *a, *b;
    ROW(mpool_pipe(NULL, NULL, true), EINVAL);
    ROW(mpool_pipe(&a, NULL, true), EINVAL);
    ROW(mpool_conn_send(NULL, "x", 1), EINVAL);
    ROW(mpool_conn_recv(NULL, buf, sizeof buf, &len, 0), EINVAL);
    ROW(mpool_conn_recv_alloc(NULL, &p, &len, 0), EINVAL);
    ROW(mpool_conn_poll(NULL, 0), EINVAL);
    ROW(mpool_conn_fileno(NULL), -1);
    mpool_conn_close(NULL);

    ROW(mpool_pipe(&a, &b, false), 0);
    ROW(mpool_conn_send(a, "x", 1), EINVAL);                   /* a receives only */
    ROW(mpool_conn_recv(b, buf, sizeof buf, &len, 0), EINVAL); /* b sends only */
    ROW(mpool_conn_recv(a, buf, sizeof buf, &len, 0), ETIMEDOUT);
    ROW(mpool_conn_poll(a, 0), ETIMEDOUT);
    ROW(mpool_conn_send(b, NULL, 1), EINVAL);
    ROW(mpool_conn_send(b, "x", MPOOL_MSG_MAX + 1), EMSGSIZE);
    ROW(mpool_conn_send(b, "0123456789", 10), 0);
    ROW(mpool_conn_recv(a, buf, 4, &len, 0), EMSGSIZE);
    ROW(len, 10);
    ROW(mpool_conn_recv(a, NULL, 0, &len, 0), EMSGSIZE);
    ROW(mpool_conn_recv(a, buf, sizeof buf, NULL, 0), EINVAL);
    ROW(mpool_conn_recv(a, buf, sizeof buf, &len, 0), 0);
    ROW(len, 10);
    mpool_conn_close(b);
    ROW(mpool_conn_recv(a, buf, sizeof buf, &len, 0), EPIPE);
    ROW(mpool_conn_poll(a, 0), 0); /* end of stream is "ready" */
    mpool_conn_close(a);

    ROW(mpool_pipe(&a, &b, true), 0);
    mpool_conn_close(a);
    ROW(mpool_conn_send(b, "x", 1), EPIPE); /* and no SIGPIPE */
    mpool_conn_close(b);
}

static void queue_rows(void)
{
    char buf[16];
    size_t len;
    ROW_NULL_ERRNO(mpool_queue_new(4, 0), EINVAL);
    ROW_NULL_ERRNO(mpool_queue_new(SIZE_MAX, SIZE_MAX), ENOMEM);
    ROW(mpool_queue_put(NULL, "x", 1, 0), EINVAL);
    ROW(mpool_queue_get(NULL, buf, sizeof buf, &len, 0), EINVAL);
    ROW(mpool_queue_qsize(NULL), 0);
    mpool_queue_close(NULL);
    ROW(mpool_queue_task_done(NULL), EINVAL);
    ROW(mpool_queue_join(NULL, 0), EINVAL);
    mpool_queue_free(NULL);

    mpool_queue_t *q = mpool_queue_new(1, 8);
    ROW(mpool_queue_task_done(q), EINVAL); /* not joinable */
    ROW(mpool_queue_join(q, 0), EINVAL);
    ROW(mpool_queue_get(q, buf, sizeof buf, &len, 0), ETIMEDOUT);
    ROW(mpool_queue_put(q, "123456789", 9, 0), EMSGSIZE);
    ROW(mpool_queue_put(q, NULL, 1, 0), EINVAL);
    ROW(mpool_queue_put(q, "1234", 4, 0), 0);
    ROW(mpool_queue_put(q, "1234", 4, 0), ETIMEDOUT); /* full */
    ROW(mpool_queue_get(q, buf, 2, &len, 0), EMSGSIZE);
    ROW(len, 4);
    ROW(mpool_queue_get(q, buf, sizeof buf, NULL, 0), EINVAL);
    ROW(mpool_queue_qsize(q), 1); /* the item stayed */
    mpool_queue_close(q);
    ROW(mpool_queue_put(q, "1", 1, 0), EPIPE);
    ROW(mpool_queue_get(q, buf, sizeof buf, &len, 0), 0); /* drained first */
    ROW(mpool_queue_get(q, buf, sizeof buf, &len, 1), EPIPE);
    mpool_queue_free(q);

    q = mpool_joinable_queue_new(0, 8);
    ROW(mpool_queue_task_done(q), ERANGE);
    ROW(mpool_queue_join(q, 0), 0);
    mpool_queue_free(q);
}

static void pool_rows(void)
{
    long in[4] = {1, 2, 3, 4}, out[4];
    size_t idx;
    mpool_failure_t f;
    mpool_pool_opts_t bad = {.processes = -1};
    ROW_NULL_ERRNO(mpool_pool_new(&bad), EINVAL);
    bad = (mpool_pool_opts_t){.task_timeout = -1};
    ROW_NULL_ERRNO(mpool_pool_new(&bad), EINVAL);

    ROW(mpool_pool_map(NULL, square, in, 4, 8, out, 8, 0), EINVAL);
    ROW(mpool_pool_apply(NULL, square, in, 8, out, 8), EINVAL);
    ROW_NULL_ERRNO(mpool_pool_map_async(NULL, square, in, 4, 8, out, 8, 0), EINVAL);
    ROW_NULL_ERRNO(mpool_pool_apply_async(NULL, square, in, 8, out, 8), EINVAL);
    ROW_NULL_ERRNO(mpool_pool_imap(NULL, square, in, 4, 8, 8, 0), EINVAL);
    ROW_NULL_ERRNO(mpool_pool_imap_unordered(NULL, square, in, 4, 8, 8, 0), EINVAL);
    ROW(mpool_iter_next(NULL, out, &idx, 0), EINVAL);
    mpool_iter_free(NULL);
    ROW(mpool_async_wait(NULL, 0), EINVAL);
    ROW(mpool_async_ready(NULL), false);
    ROW(mpool_async_get(NULL, 0), EINVAL);
    ROW(mpool_async_failure(NULL, &f), EINVAL);
    mpool_async_progress(NULL, NULL, NULL);
    mpool_async_free(NULL);
    ROW(mpool_pool_close(NULL), EINVAL);
    ROW(mpool_pool_join(NULL, 0), EINVAL);
    ROW(mpool_pool_terminate(NULL), EINVAL);
    mpool_pool_free(NULL);

    mpool_pool_opts_t o = {.processes = 1};
    mpool_pool_t *p = mpool_pool_new(&o);
    ROW(p != NULL, 1);
    ROW(mpool_pool_map(p, NULL, in, 4, 8, out, 8, 0), EINVAL);
    ROW(mpool_pool_map(p, square, NULL, 4, 8, out, 8, 0), EINVAL);
    ROW(mpool_pool_map(p, square, in, 4, 8, NULL, 8, 0), EINVAL);
    ROW(mpool_pool_map(p, seven, NULL, 4, 0, out, 8, 0), 0); /* no input: documented */
    ROW(out[3], 7);
    ROW(mpool_pool_map(p, square, in, 0, 8, out, 8, 0), 0);
    ROW(mpool_pool_map(p, square, in, SIZE_MAX, 8, out, 8, 0), EINVAL);
    ROW(mpool_pool_apply(p, NULL, in, 8, out, 8), EINVAL);
    mpool_iter_t *it = mpool_pool_imap(p, square, in, 0, 8, 8, 0);
    ROW(mpool_iter_next(it, out, &idx, 0), ENODATA);
    mpool_iter_free(it);
    ROW(mpool_pool_join(p, 0), EINVAL); /* before close */
    mpool_async_t *a = mpool_pool_map_async(p, square, in, 4, 8, out, 8, 0);
    ROW(mpool_async_get(a, 30), 0);
    ROW(mpool_async_failure(a, &f), ENODATA);
    mpool_async_free(a);
    ROW(mpool_pool_close(p), 0);
    ROW(mpool_pool_close(p), EINVAL);
    ROW(mpool_pool_map(p, square, in, 4, 8, out, 8, 0), EINVAL); /* closed */
    ROW_NULL_ERRNO(mpool_pool_apply_async(p, square, in, 8, out, 8), EINVAL);
    ROW(mpool_pool_join(p, 30), 0);
    ROW(mpool_pool_terminate(p), 0);
    mpool_pool_free(p);
}

/* A NaN timeout must not wait forever: it counts as 0 (try once). */
static void nan_timeout_rows(void)
{
    double nan = __builtin_nan("");
    char buf[8];
    size_t len;
    mpool_lock_t *l = mpool_lock_new();
    ROW(mpool_lock_acquire(l, nan), 0);
    ROW(mpool_lock_acquire(l, nan), ETIMEDOUT);
    ROW(mpool_lock_release(l), 0);
    mpool_lock_free(l);
    mpool_sem_t *s = mpool_sem_new(0);
    ROW(mpool_sem_acquire(s, nan), ETIMEDOUT);
    mpool_sem_free(s);
    mpool_event_t *e = mpool_event_new();
    ROW(mpool_event_wait(e, nan), ETIMEDOUT);
    mpool_event_free(e);
    mpool_queue_t *q = mpool_queue_new(1, 8);
    ROW(mpool_queue_get(q, buf, sizeof buf, &len, nan), ETIMEDOUT);
    ROW(mpool_queue_put(q, "x", 1, nan), 0);
    ROW(mpool_queue_put(q, "x", 1, nan), ETIMEDOUT);
    mpool_queue_free(q);
    mpool_conn_t *a, *b;
    ROW(mpool_pipe(&a, &b, true), 0);
    ROW(mpool_conn_recv(a, buf, sizeof buf, &len, nan), ETIMEDOUT);
    ROW(mpool_conn_poll(a, nan), ETIMEDOUT);
    mpool_conn_close(a);
    mpool_conn_close(b);
    mpool_pool_opts_t o = {.processes = 1};
    mpool_pool_t *p = mpool_pool_new(&o);
    long in = 3, out = 0;
    mpool_iter_t *it = mpool_pool_imap(p, square, &in, 1, sizeof in, sizeof out, 1);
    size_t idx;
    int r;
    while ((r = mpool_iter_next(it, &out, &idx, nan)) == ETIMEDOUT) {
    } /* polls: each call returns at once */
    ROW(r, 0);
    ROW(out, 9);
    mpool_iter_free(it);
    ROW(mpool_pool_join(p, nan), EINVAL); /* before close */
    mpool_pool_free(p);
}

static int run_table(void *arg)
{
    (void)arg;
    process_rows();
    shm_rows();
    sync_rows();
    conn_rows();
    queue_rows();
    pool_rows();
    nan_timeout_rows();
    return failures ? 1 : 0;
}

static void every_function_rejects_bad_input_quietly(void **state)
{
    (void)state;
    int report[2], out[2];
    assert_int_equal(pipe2(report, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(report[1], 3);
        dup2(out[1], STDOUT_FILENO);
        dup2(out[1], STDERR_FILENO);
        _exit(run_table(NULL));
    }
    close(report[1]);
    close(out[1]);
    int status = tu_wait(pid, 100);
    char rep[8192] = {0}, printed[4096] = {0};
    ssize_t n = read(report[0], rep, sizeof rep - 1);
    ssize_t m = read(out[0], printed, sizeof printed - 1);
    if (n > 0) print_error("%s", rep);
    if (m > 0) print_error("printed by the library: %s\n", printed);
    assert_int_equal(status, 0);
    assert_true(m <= 0);
    close(report[0]);
    close(out[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_function_rejects_bad_input_quietly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
