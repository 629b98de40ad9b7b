// ctest-timeout: 300
/* The process Pool: every call and error code, results against a
 * sequential run, iterator order, per-item failures, worker crashes at
 * several points with exact accounting, task timeout, maxtasksperchild,
 * initializer, terminate/close/join, fork-server death, and no process or
 * descriptor left behind. Every wait is bounded. */
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/resource.h>

#define WAIT 30.0 /* bound on any wait that should succeed (noisy 2 CPUs) */

enum { A_OK, A_KILL, A_SEGV, A_ABORT, A_EXIT, A_FAIL, A_SLEEP, A_PID, A_BUSY };

typedef struct {
    long x;
    int action;
    int ms; /* A_SLEEP: milliseconds; A_BUSY: microseconds */
} item_t;

static int task(const void *in, void *out, void *ctx)
{
    const item_t *it = in;
    long add = ctx ? *(const long *)ctx : 0;
    switch (it->action) {
    case A_KILL:
        raise(SIGKILL);
        break;
    case A_SEGV:
        signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn it into an exit */
        raise(SIGSEGV);
        break;
    case A_ABORT:
        signal(SIGABRT, SIG_DFL);
        abort();
    case A_EXIT:
        _exit(3);
    case A_FAIL:
        return (int)-it->x - 1;
    case A_SLEEP:
        usleep((useconds_t)it->ms * 1000);
        break;
    case A_PID:
        *(long *)out = getpid();
        return 0;
    case A_BUSY:
        for (double end = tu_now() + it->ms * 1e-6; tu_now() < end;) {
        }
        break;
    }
    *(long *)out = it->x * it->x + add;
    return 0;
}

static item_t *items(size_t n)
{
    item_t *v = calloc(n, sizeof *v);
    for (size_t i = 0; i < n; i++) v[i].x = (long)i;
    return v;
}

static mpool_pool_t *pool(int processes)
{
    mpool_pool_opts_t o = {.processes = processes};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    return p;
}

/* Checks every item of a finished map: failures exactly where `want` says
 * (code, status), correct results elsewhere. Uses an ordered imap. */
static void check_items(mpool_pool_t *p, const item_t *in, size_t n, size_t cs,
                        const int *want_code, const int *want_status)
{
    mpool_iter_t *it = mpool_pool_imap(p, task, in, n, sizeof *in, sizeof(long), cs);
    assert_non_null(it);
    for (size_t i = 0; i < n; i++) {
        long y = -1;
        size_t idx = SIZE_MAX;
        int err = mpool_iter_next(it, &y, &idx, WAIT);
        assert_int_equal(idx, i);
        assert_int_equal(err, want_code[i]);
        if (!err) assert_int_equal(y, (long)i * (long)i);
        (void)want_status;
    }
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 0), ENODATA);
    mpool_iter_free(it);
}

/* ---- results -------------------------------------------------------------- */

static void map_and_check(mpool_pool_t *p, const item_t *in, long *out, size_t n, size_t cs)
{
    memset(out, 0xff, n * sizeof *out);
    assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, out, sizeof *out, cs), 0);
    for (size_t i = 0; i < n; i++) assert_int_equal(out[i], (long)i * (long)i);
}

static void test_map_results(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    size_t n = 10007;
    item_t *in = items(n);
    long *out = malloc(n * sizeof *out);
    size_t sizes[] = {0, 1, 7, 100000};
    for (size_t k = 0; k < 4; k++) map_and_check(p, in, out, n, sizes[k]);
    /* In and out in the shared heap: read and written in place. */
    item_t *sin = mpool_shm_alloc(n * sizeof *sin);
    long *sout = mpool_shm_alloc(n * sizeof *sout);
    memcpy(sin, in, n * sizeof *in);
    for (size_t k = 0; k < 4; k++) map_and_check(p, sin, sout, n, sizes[k]);
    /* n = 0: at once. */
    assert_int_equal(mpool_pool_map(p, task, in, 0, sizeof *in, out, sizeof *out, 0), 0);
    mpool_async_t *a = mpool_pool_map_async(p, task, NULL, 0, sizeof *in, NULL, 8, 0);
    assert_non_null(a);
    assert_true(mpool_async_ready(a));
    assert_int_equal(mpool_async_get(a, 0), 0);
    mpool_async_free(a);
    mpool_shm_free(sin);
    mpool_shm_free(sout);
    free(in);
    free(out);
    mpool_pool_free(p);
}

static void test_apply_ctx(void **state)
{
    (void)state;
    static long add = 5;
    mpool_pool_opts_t o = {.processes = 2, .ctx = &add};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    item_t in = {.x = 7};
    long y = 0;
    assert_int_equal(mpool_pool_apply(p, task, &in, sizeof in, &y, sizeof y), 0);
    assert_int_equal(y, 54);
    long ys[20];
    item_t ins[20];
    mpool_async_t *as[20];
    for (int i = 0; i < 20; i++) {
        ins[i] = (item_t){.x = i};
        as[i] = mpool_pool_apply_async(p, task, &ins[i], sizeof ins[i], &ys[i], sizeof ys[i]);
        assert_non_null(as[i]);
    }
    for (int i = 0; i < 20; i++) {
        assert_int_equal(mpool_async_get(as[i], WAIT), 0);
        assert_true(mpool_async_ready(as[i]));
        assert_int_equal(ys[i], i * i + 5);
        mpool_failure_t f;
        assert_int_equal(mpool_async_failure(as[i], &f), ENODATA);
        size_t done, total;
        mpool_async_progress(as[i], &done, &total);
        assert_int_equal(done, 1);
        assert_int_equal(total, 1);
        mpool_async_free(as[i]);
    }
    in.action = A_FAIL;
    assert_int_equal(mpool_pool_apply(p, task, &in, sizeof in, &y, sizeof y), MPOOL_ETASK);
    mpool_pool_free(p);
}

static void test_imap(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    size_t n = 1000;
    item_t *in = items(n);
    for (size_t cs = 0; cs < 4; cs++) {
        mpool_iter_t *it = mpool_pool_imap(p, task, in, n, sizeof *in, sizeof(long), cs * 3);
        assert_non_null(it);
        for (size_t i = 0; i < n; i++) {
            long y;
            size_t idx;
            assert_int_equal(mpool_iter_next(it, &y, &idx, WAIT), 0);
            assert_int_equal(idx, i);
            assert_int_equal(y, (long)(i * i));
        }
        assert_int_equal(mpool_iter_next(it, NULL, NULL, WAIT), ENODATA);
        mpool_iter_free(it);
    }
    char *seen = calloc(n, 1);
    mpool_iter_t *it = mpool_pool_imap_unordered(p, task, in, n, sizeof *in, sizeof(long), 1);
    assert_non_null(it);
    for (size_t i = 0; i < n; i++) {
        long y;
        size_t idx;
        assert_int_equal(mpool_iter_next(it, &y, &idx, WAIT), 0);
        assert_true(idx < n && !seen[idx]);
        seen[idx] = 1;
        assert_int_equal(y, (long)(idx * idx));
    }
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 0), ENODATA);
    mpool_iter_free(it);
    /* Zero items: the first next is ENODATA. */
    it = mpool_pool_imap(p, task, in, 0, sizeof *in, sizeof(long), 0);
    assert_non_null(it);
    assert_int_equal(mpool_iter_next(it, NULL, NULL, WAIT), ENODATA);
    mpool_iter_free(it);
    /* A slow item: next times out, then delivers. */
    in[0].action = A_SLEEP;
    in[0].ms = 300;
    it = mpool_pool_imap(p, task, in, 2, sizeof *in, sizeof(long), 1);
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 0), ETIMEDOUT);
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 0.01), ETIMEDOUT);
    assert_int_equal(mpool_iter_next(it, NULL, NULL, WAIT), 0);
    /* Freed with an item not consumed: harmless. */
    mpool_iter_free(it);
    free(seen);
    free(in);
    mpool_pool_free(p);
}

static void test_task_failure(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    size_t n = 100;
    item_t *in = items(n);
    int code[100] = {0}, status[100] = {0};
    size_t bad[] = {13, 40, 99};
    for (int k = 0; k < 3; k++) {
        in[bad[k]].action = A_FAIL;
        code[bad[k]] = MPOOL_ETASK;
        status[bad[k]] = -(int)bad[k] - 1;
    }
    long out[100];
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 4);
    assert_int_equal(mpool_async_get(a, WAIT), MPOOL_ETASK);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.index, 13);
    assert_int_equal(f.code, MPOOL_ETASK);
    assert_int_equal(f.status, -14);
    for (size_t i = 0; i < n; i++)
        if (!code[i]) assert_int_equal(out[i], (long)(i * i));
    mpool_async_free(a);
    assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, out, sizeof *out, 0), MPOOL_ETASK);
    check_items(p, in, n, 3, code, status);
    free(in);
    mpool_pool_free(p);
}

/* ---- crashes -------------------------------------------------------------- */

/* A map where the items in `bad` crash with `action`: exactly those fail
 * with MPOOL_EWORKER and `sig`; every other item is right; the pool goes on. */
static void crash_case(mpool_pool_t *p, size_t n, size_t cs, const size_t *bad, size_t nbad,
                       int action, int sig)
{
    item_t *in = items(n);
    int *code = calloc(n, sizeof *code), *status = calloc(n, sizeof *status);
    long *out = calloc(n, sizeof *out);
    for (size_t k = 0; k < nbad; k++) {
        in[bad[k]].action = action;
        code[bad[k]] = MPOOL_EWORKER;
        status[bad[k]] = sig;
    }
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, cs);
    assert_non_null(a);
    assert_int_equal(mpool_async_get(a, WAIT), nbad ? MPOOL_EWORKER : 0);
    size_t first = SIZE_MAX;
    for (size_t k = 0; k < nbad; k++) first = bad[k] < first ? bad[k] : first;
    mpool_failure_t f;
    if (nbad) {
        assert_int_equal(mpool_async_failure(a, &f), 0);
        assert_int_equal(f.index, first);
        assert_int_equal(f.code, MPOOL_EWORKER);
        assert_int_equal(f.status, sig);
    }
    for (size_t i = 0; i < n; i++)
        if (!code[i]) assert_int_equal(out[i], (long)(i * i));
    size_t done, total;
    mpool_async_progress(a, &done, &total);
    assert_int_equal(done, n);
    mpool_async_free(a);
    /* The same crashes, item by item through an ordered iterator. */
    mpool_iter_t *it = mpool_pool_imap(p, task, in, n, sizeof *in, sizeof(long), cs);
    for (size_t i = 0; i < n; i++) {
        long y;
        size_t idx;
        assert_int_equal(mpool_iter_next(it, &y, &idx, WAIT), code[i]);
        assert_int_equal(idx, i);
        if (!code[i]) assert_int_equal(y, (long)(i * i));
    }
    mpool_iter_free(it);
    free(in);
    free(code);
    free(status);
    free(out);
}

static void test_crash_points(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    size_t first[] = {0}, middle[] = {500}, last[] = {999};
    crash_case(p, 1000, 50, first, 1, A_KILL, SIGKILL);
    crash_case(p, 1000, 50, middle, 1, A_SEGV, SIGSEGV);
    crash_case(p, 1000, 50, last, 1, A_ABORT, SIGABRT);
    crash_case(p, 1000, 0, middle, 1, A_EXIT, 0);
    size_t many[20];
    for (int k = 0; k < 20; k++) many[k] = (size_t)k * 37 + 3;
    crash_case(p, 1000, 10, many, 20, A_KILL, SIGKILL);
    crash_case(p, 1000, 1, many, 20, A_KILL, SIGKILL);
    /* Every worker at once: the first item of each worker's first chunk. */
    size_t all[] = {0, 1};
    crash_case(p, 100, 1, all, 2, A_KILL, SIGKILL);
    /* Still a healthy pool. */
    crash_case(p, 1000, 0, NULL, 0, A_OK, 0);
    mpool_pool_free(p);
}

static void test_task_timeout(void **state)
{
    (void)state;
    mpool_pool_opts_t o = {.processes = 2, .task_timeout = 0.3};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    size_t n = 40;
    item_t *in = items(n);
    in[5].action = A_SLEEP;
    in[5].ms = 20000;
    for (size_t i = 10; i < 20; i++) in[i].action = A_SLEEP, in[i].ms = 50; /* under the limit */
    long out[40];
    double t = tu_now();
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 2);
    assert_int_equal(mpool_async_get(a, WAIT), MPOOL_EWORKER);
    assert_true(tu_now() - t < 5.0);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.index, 5);
    assert_int_equal(f.code, MPOOL_EWORKER);
    assert_int_equal(f.status, SIGKILL);
    for (size_t i = 0; i < n; i++)
        if (i != 5 && in[i].action == A_OK) assert_int_equal(out[i], (long)(i * i));
    mpool_async_free(a);
    in[5].action = A_OK;
    assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, out, sizeof *out, 0), 0);
    free(in);
    mpool_pool_free(p);
}

static void test_maxtasksperchild(void **state)
{
    (void)state;
    mpool_pool_opts_t o = {.processes = 2, .maxtasksperchild = 3};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    size_t n = 30;
    item_t *in = items(n);
    for (size_t i = 0; i < n; i++) in[i].action = A_PID;
    long pids[30];
    assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, pids, sizeof *pids, 1), 0);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        size_t same = 0;
        for (size_t k = 0; k < n; k++) same += pids[k] == pids[i];
        assert_true(same <= 3);
        bool earlier = false;
        for (size_t k = 0; k < i; k++) earlier |= pids[k] == pids[i];
        distinct += !earlier;
    }
    assert_true(distinct >= 10);
    /* Replacement mid-chunk: chunks of 7 with at most 3 tasks per worker. */
    assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, pids, sizeof *pids, 7), 0);
    for (size_t i = 0; i < n; i++) {
        size_t same = 0;
        for (size_t k = 0; k < n; k++) same += pids[k] == pids[i];
        assert_true(same <= 3);
    }
    free(in);
    mpool_pool_free(p);
}

static long init_value;
static int init_ok(void *arg)
{
    init_value = *(long *)arg;
    return 0;
}
static int init_fail(void *arg)
{
    (void)arg;
    return 7;
}
static int read_init(const void *in, void *out, void *ctx)
{
    (void)in, (void)ctx;
    *(long *)out = init_value;
    return 0;
}

static void test_initializer(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    long arg = 42;
    mpool_pool_opts_t o = {.processes = 2, .initializer = init_ok, .initarg = &arg};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    long out[8];
    assert_int_equal(mpool_pool_map(p, read_init, NULL, 8, 0, out, sizeof *out, 1), 0);
    for (int i = 0; i < 8; i++) assert_int_equal(out[i], 42);
    assert_int_equal(init_value, 0); /* the parent never ran it */
    mpool_pool_free(p);
    o.initializer = init_fail;
    errno = 0;
    double t = tu_now();
    assert_null(mpool_pool_new(&o));
    assert_int_equal(errno, MPOOL_ETASK);
    assert_true(tu_now() - t < 5.0);
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
}

/* Fails in every worker but the first two: replacements (maxtasksperchild)
 * then break the pool instead of respawning in a loop. */
static int init_third_fails(void *arg)
{
    return __atomic_add_fetch((int *)arg, 1, __ATOMIC_SEQ_CST) <= 2 ? 0 : 9;
}

static void test_initializer_fails_later(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    int *count = mpool_shm_alloc(sizeof *count);
    mpool_pool_opts_t o = {
        .processes = 2, .initializer = init_third_fails, .initarg = count, .maxtasksperchild = 5};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    size_t n = 100;
    item_t *in = items(n);
    long *out = mpool_shm_alloc(n * sizeof *out); /* written in place */
    memset(out, 0xff, n * sizeof *out);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 1);
    assert_int_equal(mpool_async_get(a, WAIT), MPOOL_ETASK);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.code, MPOOL_ETASK);
    assert_int_equal(f.status, 9);
    /* The first worker to retire did its 5 tasks; the other may have been
     * stopped earlier, when the pool broke. */
    size_t good = 0;
    for (size_t i = 0; i < n; i++) good += out[i] == (long)(i * i);
    assert_true(good >= 5 && good <= 10);
    for (size_t i = 0; i < f.index; i++) assert_int_equal(out[i], (long)(i * i));
    mpool_async_free(a);
    assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, out, sizeof *out, 0), EINVAL);
    mpool_pool_free(p);
    mpool_shm_free(count);
    mpool_shm_free(out);
    free(in);
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
}

/* Two threads of the caller use one pool at the same time. */
static void *thread_user(void *arg)
{
    mpool_pool_t *p = arg;
    item_t *in = items(500);
    long out[500];
    intptr_t bad = 0;
    for (int r = 0; r < 20; r++) {
        bad += mpool_pool_map(p, task, in, 500, sizeof *in, out, sizeof *out, 7) != 0;
        for (int i = 0; i < 500; i++) bad += out[i] != (long)i * i;
        long y;
        bad += mpool_pool_apply(p, task, &in[r], sizeof *in, &y, sizeof y) != 0 || y != r * r;
    }
    free(in);
    return (void *)bad;
}

static void test_threads(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    pthread_t t[3];
    for (int k = 0; k < 3; k++) assert_int_equal(pthread_create(&t[k], NULL, thread_user, p), 0);
    for (int k = 0; k < 3; k++) {
        void *bad;
        pthread_join(t[k], &bad);
        assert_int_equal((intptr_t)bad, 0);
    }
    mpool_pool_free(p);
}

/* ---- memory pressure and many threads -------------------------------------- */

static int square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(long *)out = *(const long *)in * *(const long *)in;
    return 0;
}

#define GOOD_N ((size_t)64 << 10) /* 512 KiB of longs: staged, cached blocks */

static void *enomem_loop(void *arg)
{
    mpool_pool_t *p = arg;
    /* A 1 MiB input copy (cached size) succeeds, the 2 GiB staging does not:
     * the call fails with ENOMEM after it took a cached block. */
    size_t n = (size_t)128 << 10;
    long *in = calloc(n, sizeof *in), out[1];
    intptr_t bad = 0;
    for (int r = 0; r < 3000; r++)
        bad += mpool_pool_map(p, square, in, n, sizeof *in, out, (size_t)16 << 10, 0) != ENOMEM;
    free(in);
    return (void *)bad;
}

static void *good_loop(void *arg)
{
    mpool_pool_t *p = arg;
    long *in = malloc(GOOD_N * sizeof *in), *out = malloc(GOOD_N * sizeof *out);
    intptr_t bad = 0;
    for (int r = 0; r < 400 && !bad; r++) {
        for (size_t i = 0; i < GOOD_N; i++) in[i] = (long)i + r;
        memset(out, 0, GOOD_N * sizeof *out);
        bad += mpool_pool_map(p, square, in, GOOD_N, sizeof *in, out, sizeof *out, 0) != 0;
        for (size_t i = 0; i < GOOD_N && !bad; i++) bad += out[i] != ((long)i + r) * ((long)i + r);
    }
    free(in);
    free(out);
    return (void *)bad;
}

/* Fails odd items (status: the item), succeeds even ones; writes nothing. */
static int odd_fails(const void *in, void *out, void *ctx)
{
    (void)out, (void)ctx;
    long x = *(const long *)in;
    return x % 2 ? (int)x : 0;
}

typedef struct {
    void *ptr[1 << 12];
    size_t size[1 << 12], n;
} held_t;

/* Fills the shared heap to the brim but for one free block of each small
 * size class up to 2 KiB (set aside first, given back last): room for a
 * job's own block, not for a table of n records allocated later. */
static void fill_heap(held_t *h)
{
    void *spare[5];
    for (int c = 0; c < 5; c++) assert_non_null(spare[c] = mpool_shm_alloc((128u << c) - 64));
    h->n = 0;
    for (size_t size = (size_t)256 << 20; size >= 128; size /= 2) {
        void *b;
        while (h->n < 1 << 12 && (b = mpool_shm_alloc(size - 64))) {
            h->ptr[h->n] = b;
            h->size[h->n++] = size;
        }
    }
    for (int c = 0; c < 5; c++) mpool_shm_free(spare[c]);
}

static void release_heap(held_t *h)
{
    for (size_t i = 0; i < h->n; i++) mpool_shm_free(h->ptr[i]);
}

/* Issue 10 bug 7: with the shared heap nearly full, failed items are still
 * reported as failed, each with its code, and the first failure with its
 * status -- or the call fails with ENOMEM up front. Never a 0 for a failure. */
static void test_failures_heap_full(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    size_t n = 1000, before, after;
    long *in = mpool_shm_alloc(n * sizeof *in); /* read in place: no copy */
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    mpool_shm_stats(NULL, &before);
    held_t *h = malloc(sizeof *h);
    fill_heap(h);
    int accepted = 0;
    for (int round = 0; round < 2; round++) {
        /* out_size 0: no staging, so nothing else needs the heap. */
        mpool_iter_t *it = mpool_pool_imap(p, odd_fails, in, n, sizeof *in, 0, 100);
        if (!it) {
            assert_int_equal(errno, ENOMEM);
            continue;
        }
        accepted++;
        for (size_t i = 0; i < n; i++) {
            size_t idx = SIZE_MAX;
            int err = mpool_iter_next(it, NULL, &idx, WAIT);
            assert_int_equal(idx, i);
            assert_int_equal(err, i % 2 ? MPOOL_ETASK : 0);
        }
        mpool_iter_free(it);
        mpool_async_t *a = mpool_pool_map_async(p, odd_fails, in, n, sizeof *in, NULL, 0, 100);
        if (!a) {
            assert_int_equal(errno, ENOMEM);
            continue;
        }
        assert_int_equal(mpool_async_get(a, WAIT), MPOOL_ETASK);
        mpool_failure_t f;
        assert_int_equal(mpool_async_failure(a, &f), 0);
        assert_int_equal(f.index, 1);
        assert_int_equal(f.code, MPOOL_ETASK);
        assert_int_equal(f.status, 1);
        mpool_async_free(a);
    }
    release_heap(h);
    free(h);
    mpool_shm_stats(NULL, &after);
    assert_int_equal(after, before);
    print_message("heap full: %d of 2 rounds accepted\n", accepted);
    assert_true(accepted > 0); /* a job's own block fits in what was left */
    mpool_shm_free(in);
    mpool_pool_free(p);
}

/* Issue 10 bug 8: maps failing with ENOMEM in two threads while a third runs
 * good maps: the staging cache is shared by all three (it must only be
 * touched under the pool lock), good results stay right, nothing leaks. */
static void test_enomem_threads(void **state)
{
    (void)state;
    for (int round = 0; round < 8; round++) {
        size_t before, after;
        mpool_shm_stats(NULL, &before);
        mpool_pool_t *p = pool(2);
        pthread_t t[3];
        assert_int_equal(pthread_create(&t[0], NULL, enomem_loop, p), 0);
        assert_int_equal(pthread_create(&t[1], NULL, enomem_loop, p), 0);
        assert_int_equal(pthread_create(&t[2], NULL, good_loop, p), 0);
        intptr_t bad[3];
        for (int k = 0; k < 3; k++) {
            void *r;
            pthread_join(t[k], &r);
            bad[k] = (intptr_t)r;
        }
        mpool_pool_free(p);
        mpool_shm_stats(NULL, &after);
        assert_int_equal(bad[0] + bad[1], 0);
        assert_int_equal(bad[2], 0);
        assert_int_equal(after, before);
    }
}

/* Waits (bounded) on the event its input points to. */
static int wait_event(const void *in, void *out, void *ctx)
{
    (void)out, (void)ctx;
    return mpool_event_wait(*(mpool_event_t *const *)in, 20.0) ? 1 : 0;
}

#define QUEUED 300 /* more than the 256 dispatch entries */

/* A pool of 1 whose worker is held by a task on `ev`, then QUEUED applies:
 * each must return at once (none waits for the worker). */
static mpool_async_t *hold_and_queue(mpool_pool_t *p, mpool_event_t **ev, long *x, long *y,
                                     mpool_async_t **a)
{
    mpool_async_t *hold = mpool_pool_apply_async(p, wait_event, ev, sizeof *ev, NULL, 0);
    assert_non_null(hold);
    double worst = 0;
    for (int k = 0; k < QUEUED; k++) {
        x[k] = k;
        y[k] = -1;
        double t = tu_now();
        a[k] = mpool_pool_apply_async(p, square, &x[k], sizeof *x, &y[k], sizeof *y);
        assert_non_null(a[k]);
        if (tu_now() - t > worst) worst = tu_now() - t;
    }
    print_message("%d applies queued behind a busy worker: slowest %.3f ms\n", QUEUED, worst * 1e3);
    assert_true(worst < 2.0 * tu_slack());
    return hold;
}

static void *terminator(void *arg)
{
    mpool_pool_terminate(arg);
    return NULL;
}

/* Issue 10 bug 9: async submissions never block, whatever is queued (the
 * ring of dispatch entries overflows into a queue fed by the library), and
 * terminate from another thread stays prompt. */
static void test_async_unbounded(void **state)
{
    (void)state;
    mpool_event_t *ev = mpool_event_new();
    long x[QUEUED], y[QUEUED];
    mpool_async_t *a[QUEUED];
    mpool_pool_t *p = pool(1);
    /* Queued work runs once the worker is free, with no call on the pool
     * other than a wait on the very last handle. */
    mpool_async_t *hold = hold_and_queue(p, &ev, x, y, a);
    mpool_event_set(ev);
    assert_int_equal(mpool_async_wait(a[QUEUED - 1], WAIT), 0);
    assert_int_equal(mpool_async_get(hold, WAIT), 0);
    mpool_async_free(hold);
    for (int k = 0; k < QUEUED; k++) {
        assert_int_equal(mpool_async_get(a[k], WAIT), 0);
        assert_int_equal(y[k], (long)k * k);
        mpool_async_free(a[k]);
    }
    /* Close while jobs are queued: they still run, then join succeeds. */
    mpool_event_clear(ev);
    hold = hold_and_queue(p, &ev, x, y, a);
    assert_int_equal(mpool_pool_close(p), 0);
    mpool_event_set(ev);
    assert_int_equal(mpool_pool_join(p, WAIT), 0);
    for (int k = 0; k < QUEUED; k++) {
        assert_true(mpool_async_ready(a[k]));
        assert_int_equal(mpool_async_get(a[k], 0), 0);
        assert_int_equal(y[k], (long)k * k);
        mpool_async_free(a[k]);
    }
    mpool_async_free(hold);
    mpool_pool_free(p);
    /* Terminate from another thread, with jobs queued: prompt, and every
     * handle resolves (ECANCELED). */
    mpool_event_clear(ev);
    p = pool(1);
    hold = hold_and_queue(p, &ev, x, y, a);
    pthread_t t;
    double t0 = tu_now();
    assert_int_equal(pthread_create(&t, NULL, terminator, p), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)WAIT;
    assert_int_equal(pthread_timedjoin_np(t, NULL, &ts), 0);
    print_message("terminate with %d jobs queued: %.3f ms\n", QUEUED, (tu_now() - t0) * 1e3);
    assert_true(tu_now() - t0 < 3.0 * tu_slack());
    assert_int_equal(mpool_async_get(hold, WAIT), ECANCELED);
    for (int k = 0; k < QUEUED; k++) assert_int_equal(mpool_async_get(a[k], WAIT), ECANCELED);
    for (int k = 0; k < QUEUED; k++) mpool_async_free(a[k]);
    mpool_async_free(hold);
    mpool_pool_free(p);
    mpool_event_free(ev);
}

/* ---- lifecycle ------------------------------------------------------------ */

static void test_close_join(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    assert_int_equal(mpool_pool_join(p, 1.0), EINVAL);
    size_t n = 200;
    item_t *in = items(n);
    for (size_t i = 0; i < n; i++) in[i].action = A_SLEEP, in[i].ms = 1;
    long out[200];
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 5);
    assert_int_equal(mpool_pool_close(p), 0);
    assert_int_equal(mpool_pool_close(p), EINVAL);
    assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, out, sizeof *out, 0), EINVAL);
    assert_null(mpool_pool_apply_async(p, task, in, sizeof *in, out, sizeof *out));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mpool_pool_join(p, WAIT), 0);
    /* Join waited for the submitted work. */
    assert_true(mpool_async_ready(a));
    assert_int_equal(mpool_async_get(a, 0), 0);
    assert_int_equal(out[199], 199 * 199);
    mpool_async_free(a);
    assert_int_equal(mpool_pool_terminate(p), 0);
    assert_int_equal(mpool_pool_terminate(p), 0);
    free(in);
    mpool_pool_free(p);
}

static void test_terminate_during_map(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    mpool_pool_t *p = pool(2);
    size_t n = 400;
    item_t *in = items(n);
    for (size_t i = 0; i < n; i++) in[i].action = A_SLEEP, in[i].ms = 20;
    long out[400];
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 1);
    assert_int_equal(mpool_async_wait(a, 0.1), ETIMEDOUT);
    double t = tu_now();
    assert_int_equal(mpool_pool_terminate(p), 0);
    assert_int_equal(mpool_async_get(a, WAIT), ECANCELED);
    assert_true(tu_now() - t < 3.0);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.code, ECANCELED);
    size_t done, total;
    mpool_async_progress(a, &done, &total);
    assert_int_equal(done, n);
    assert_int_equal(mpool_pool_map(p, task, in, 1, sizeof *in, out, sizeof *out, 0), EINVAL);
    assert_int_equal(mpool_pool_join(p, WAIT), 0);
    mpool_async_free(a);
    mpool_pool_free(p);
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
    free(in);
}

static void test_free_without_join(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    for (int round = 0; round < 3; round++) {
        mpool_pool_t *p = pool(2);
        size_t n = 100;
        item_t *in = items(n);
        for (size_t i = 0; i < n; i++) in[i].action = A_SLEEP, in[i].ms = 50;
        long *out = mpool_shm_alloc(n * sizeof *out);
        mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 1);
        mpool_iter_t *it = mpool_pool_imap(p, task, in, n, sizeof *in, sizeof(long), 1);
        assert_non_null(a);
        assert_non_null(it);
        if (round == 1) mpool_async_free(a); /* an orphan: released by the pool */
        double t = tu_now();
        mpool_pool_free(p); /* handles not freed are released here */
        assert_true(tu_now() - t < 3.0);
        mpool_shm_free(out);
        free(in);
    }
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
}

/* Issue 10 gap: mpool_pool_free in one thread while another is blocked in
 * a call on the pool. The blocked call returns (its items are cancelled),
 * free waits for it, and nothing is touched after it is released: the
 * sanitizer build sees any use after free. */
enum { B_MAP, B_ITER, B_GET, B_JOIN, B_KINDS };

typedef struct {
    int kind;
    mpool_pool_t *p;
    void *handle; /* B_ITER: the iterator; B_GET: the async */
    mpool_event_t *ev;
    pid_t tid;
    int rc;
} blocked_t;

static void *blocked_call(void *arg)
{
    blocked_t *b = arg;
    mpool_event_t *evs[4] = {b->ev, b->ev, b->ev, b->ev};
    __atomic_store_n(&b->tid, gettid(), __ATOMIC_RELEASE);
    switch (b->kind) {
    case B_MAP:
        b->rc = mpool_pool_map(b->p, wait_event, evs, 4, sizeof *evs, NULL, 0, 1);
        break;
    case B_ITER:
        b->rc = mpool_iter_next(b->handle, NULL, NULL, MPOOL_FOREVER);
        break;
    case B_GET:
        b->rc = mpool_async_get(b->handle, MPOOL_FOREVER);
        break;
    case B_JOIN:
        b->rc = mpool_pool_join(b->p, MPOOL_FOREVER);
        break;
    }
    return NULL;
}

/* Waits until thread `tid` sleeps in the kernel: it is then inside its call
 * (nothing else in blocked_call sleeps). Bounded by WAIT. */
static void await_asleep(const blocked_t *b)
{
    double end = tu_now() + WAIT;
    pid_t tid;
    while (!(tid = __atomic_load_n(&b->tid, __ATOMIC_ACQUIRE)) && tu_now() < end) sched_yield();
    char st = 0;
    pid_t pp;
    while (tu_now() < end && !(tu_stat(tid, &st, &pp) && st == 'S')) usleep(1000);
    assert_int_equal(st, 'S');
}

static void test_free_while_blocked(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    static const int want[B_KINDS] = {ECANCELED, ECANCELED, ECANCELED, 0};
    for (int kind = 0; kind < B_KINDS; kind++) {
        blocked_t b = {.kind = kind, .p = pool(2), .ev = mpool_event_new()};
        assert_non_null(b.ev);
        mpool_event_t *evs[4] = {b.ev, b.ev, b.ev, b.ev};
        if (kind == B_ITER) b.handle = mpool_pool_imap(b.p, wait_event, evs, 4, sizeof *evs, 0, 1);
        if (kind == B_GET || kind == B_JOIN)
            b.handle = mpool_pool_map_async(b.p, wait_event, evs, 4, sizeof *evs, NULL, 0, 1);
        if (kind != B_MAP) assert_non_null(b.handle);
        if (kind == B_JOIN) assert_int_equal(mpool_pool_close(b.p), 0);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, blocked_call, &b), 0);
        await_asleep(&b);
        double t0 = tu_now();
        mpool_pool_free(b.p); /* also releases b.handle */
        double took = tu_now() - t0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)WAIT;
        assert_int_equal(pthread_timedjoin_np(t, NULL, &ts), 0);
        print_message("free with a thread blocked in call %d: %.3f ms, call returned %d\n", kind,
                      took * 1e3, b.rc);
        assert_int_equal(b.rc, want[kind]);
        assert_true(took < 3.0 * tu_slack());
        mpool_event_free(b.ev);
    }
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
}

/* Issue 10 (sibling of bug 5): the fork server closed the identity reserve
 * along with the caller's descriptors, so a worker whose task had filled
 * its descriptor table could not read /proc to see that a lock's holder
 * had died: a holder that is a zombie still answers kill(0), and the task
 * waited out its timeout instead of getting EOWNERDEAD. */
static mpool_lock_t *fd_lock;

static int lock_with_full_table(const void *in, void *out, void *ctx)
{
    (void)in, (void)out, (void)ctx;
    struct rlimit rl = {64, 64};
    if (setrlimit(RLIMIT_NOFILE, &rl)) return errno;
    int fds[64], n = 0, fd;
    while (n < 64 && (fd = open("/dev/null", O_RDONLY)) >= 0) fds[n++] = fd;
    int rc = n == 64 ? EBUSY : mpool_lock_acquire(fd_lock, 5.0);
    if (rc == EOWNERDEAD) rc = mpool_lock_release(fd_lock);
    while (n) close(fds[--n]);
    return rc ? rc : 0;
}

static int hold_and_exit(void *arg)
{
    (void)arg;
    return mpool_lock_acquire(fd_lock, 5.0);
}

static void test_worker_sees_dead_holder_with_full_table(void **state)
{
    (void)state;
    fd_lock = mpool_lock_new();
    assert_non_null(fd_lock);
    mpool_pool_opts_t o = {.processes = 1};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    /* The holder dies with the lock and stays a zombie until joined. */
    mpool_process_t *holder = mpool_process_new(hold_and_exit, NULL, NULL);
    assert_non_null(holder);
    assert_int_equal(mpool_process_start(holder), 0);
    struct pollfd pfd = {.fd = mpool_process_sentinel(holder), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, (int)(WAIT * 1000)), 1);
    mpool_async_t *a = mpool_pool_apply_async(p, lock_with_full_table, NULL, 0, NULL, 0);
    assert_non_null(a);
    int err = mpool_async_get(a, WAIT);
    mpool_failure_t f = {0};
    if (err) mpool_async_failure(a, &f);
    print_message("a dead holder seen from a worker with a full table: %s (status %d)\n",
                  mpool_strerror(err), f.status);
    assert_int_equal(err, 0);
    mpool_async_free(a);
    assert_int_equal(mpool_process_join(holder, WAIT), 0);
    mpool_process_free(holder);
    mpool_pool_free(p);
    mpool_lock_free(fd_lock);
}

/* The only child of this process: the pool's fork server. */
static pid_t only_child(void)
{
    pid_t server = 0;
    return tu_children(getpid(), false, &server, 1) > 0 ? server : 0;
}

/* Workers SIGKILLed at random instants (in tasks, between them, while
 * claiming chunks): the map still completes, only items that were running
 * fail, everything else is right. */
static void test_random_kills(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    pid_t server = only_child();
    size_t n = 100000;
    item_t *in = items(n);
    long *out = mpool_shm_alloc(n * sizeof *out); /* written in place */
    for (size_t i = 0; i < n; i++) in[i].action = A_BUSY, in[i].ms = 2;
    for (size_t cs = 1; cs <= 16; cs *= 4) {
        memset(out, 0xff, n * sizeof *out);
        mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, cs);
        int kills = 0;
        unsigned seed = 1;
        while (mpool_async_wait(a, 0.002) == ETIMEDOUT && kills < 100) {
            pid_t w[8];
            int nw = tu_children(server, false, w, 8);
            if (nw > 8) nw = 8;
            if (nw) kills += kill(w[rand_r(&seed) % nw], SIGKILL) == 0;
        }
        int err = mpool_async_get(a, WAIT);
        assert_true(err == 0 || err == MPOOL_EWORKER);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++) wrong += out[i] != (long)(i * i);
        assert_true(wrong <= (size_t)kills);
        mpool_failure_t f;
        if (err) {
            assert_int_equal(mpool_async_failure(a, &f), 0);
            assert_int_equal(f.status, SIGKILL);
        }
        mpool_async_free(a);
        assert_true(kills >= 5);
        print_message("chunksize %zu: %d workers killed, %zu items failed\n", cs, kills, wrong);
    }
    /* Still healthy. */
    assert_int_equal(mpool_pool_map(p, task, in, 1000, sizeof *in, out, sizeof *out, 0), 0);
    free(in);
    mpool_shm_free(out);
    mpool_pool_free(p);
}

static void test_server_killed(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    mpool_pool_t *p = pool(2);
    size_t n = 300;
    item_t *in = items(n);
    for (size_t i = 0; i < n; i++) in[i].action = A_SLEEP, in[i].ms = 5;
    long out[300];
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 3);
    assert_int_equal(mpool_async_wait(a, 0.2), ETIMEDOUT);
    pid_t server = only_child();
    assert_true(server > 0);
    kill(server, SIGKILL);
    /* No hang, even for a caller that only polls: the pool forks a new
     * server; items that were running fail with MPOOL_EWORKER (their worker
     * died with the server), the rest is done. */
    for (double end = tu_now() + WAIT; !mpool_async_ready(a) && tu_now() < end;)
        usleep(1000); /* polling on purpose: ready() must notice the death */
    int err = mpool_async_get(a, 0);
    assert_true(err == 0 || err == MPOOL_EWORKER);
    mpool_iter_t *it = mpool_pool_imap(p, task, in, 10, sizeof *in, sizeof(long), 1);
    for (size_t i = 0; i < 10; i++) {
        long y;
        assert_int_equal(mpool_iter_next(it, &y, NULL, WAIT), 0);
        assert_int_equal(y, (long)(i * i));
    }
    mpool_iter_free(it);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) failed += out[i] != (long)(i * i);
    assert_true(failed <= 2); /* at most the item each worker was running */
    mpool_async_free(a);
    assert_int_equal(mpool_pool_close(p), 0);
    assert_int_equal(mpool_pool_join(p, WAIT), 0);
    mpool_pool_free(p);
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
    free(in);
}

/* Workers ignore SIGINT (Ctrl-C reaches the whole foreground group; the
 * parent decides). */
static void test_sigint_ignored(void **state)
{
    (void)state;
    mpool_pool_t *p = pool(2);
    item_t *in = items(100);
    long out[100];
    assert_int_equal(mpool_pool_map(p, task, in, 100, sizeof *in, out, sizeof *out, 0), 0);
    pid_t server = only_child(), w[8];
    int nw = tu_children(server, false, w, 8);
    assert_int_equal(nw, 2);
    for (int k = 0; k < nw; k++) assert_int_equal(kill(w[k], SIGINT), 0);
    assert_int_equal(kill(server, SIGINT), 0);
    assert_int_equal(mpool_pool_map(p, task, in, 100, sizeof *in, out, sizeof *out, 1), 0);
    for (int k = 0; k < nw; k++) assert_false(tu_pid_gone(w[k]));
    free(in);
    mpool_pool_free(p);
}

/* A process that made a pool is SIGKILLed: its fork server and workers die
 * with it, no orphan is left. */
static int pool_owner(void *arg)
{
    pid_t *pids = arg; /* [0] server, [1..2] workers, [3] ready flag */
    mpool_pool_t *p = pool(2);
    item_t *in = items(10);
    long out[10];
    if (mpool_pool_map(p, task, in, 10, sizeof *in, out, sizeof *out, 1)) return 1;
    pids[0] = only_child();
    int nw = tu_children(pids[0], false, &pids[1], 2);
    __atomic_store_n(&pids[3], nw, __ATOMIC_RELEASE);
    for (;;) pause();
}

static void test_no_orphans(void **state)
{
    (void)state;
    pid_t *pids = mpool_shm_alloc(4 * sizeof *pids);
    pid_t owner = tu_fork(pool_owner, pids);
    assert_true(owner > 0);
    for (double end = tu_now() + WAIT; !__atomic_load_n(&pids[3], __ATOMIC_ACQUIRE);) {
        assert_true(tu_now() < end);
        usleep(1000); /* the owner has no primitive of ours to signal with */
    }
    assert_int_equal(pids[3], 2);
    kill(owner, SIGKILL);
    assert_int_equal(tu_wait(owner, WAIT), -SIGKILL);
    for (int k = 0; k < 3; k++) {
        double end = tu_now() + 5.0;
        while (!tu_pid_gone(pids[k]) && tu_now() < end) usleep(1000);
        assert_true(tu_pid_gone(pids[k]));
    }
    mpool_shm_free(pids);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    mpool_pool_opts_t o = {.processes = -1};
    errno = 0;
    assert_null(mpool_pool_new(&o));
    assert_int_equal(errno, EINVAL);
    o = (mpool_pool_opts_t){.task_timeout = -1};
    assert_null(mpool_pool_new(&o));
    assert_int_equal(errno, EINVAL);
    mpool_pool_t *p = pool(1);
    item_t in = {0};
    long y;
    assert_int_equal(mpool_pool_map(NULL, task, &in, 1, sizeof in, &y, 8, 0), EINVAL);
    assert_int_equal(mpool_pool_map(p, NULL, &in, 1, sizeof in, &y, 8, 0), EINVAL);
    assert_int_equal(mpool_pool_map(p, task, NULL, 1, sizeof in, &y, 8, 0), EINVAL);
    assert_int_equal(mpool_pool_map(p, task, &in, 1, sizeof in, NULL, 8, 0), EINVAL);
    assert_int_equal(mpool_pool_map(p, task, &in, SIZE_MAX, 16, &y, 8, 0), EINVAL);
    assert_int_equal(mpool_pool_apply(NULL, task, &in, sizeof in, &y, 8), EINVAL);
    assert_null(mpool_pool_imap(p, NULL, &in, 1, sizeof in, 8, 0));
    assert_int_equal(errno, EINVAL);
    assert_null(mpool_pool_imap_unordered(NULL, task, &in, 1, sizeof in, 8, 0));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mpool_iter_next(NULL, NULL, NULL, 0), EINVAL);
    assert_int_equal(mpool_async_wait(NULL, 0), EINVAL);
    assert_int_equal(mpool_async_get(NULL, 0), EINVAL);
    assert_false(mpool_async_ready(NULL));
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(NULL, &f), EINVAL);
    size_t done = 1, total = 1;
    mpool_async_progress(NULL, &done, &total);
    assert_int_equal(done + total, 0);
    assert_int_equal(mpool_pool_close(NULL), EINVAL);
    assert_int_equal(mpool_pool_join(NULL, 0), EINVAL);
    assert_int_equal(mpool_pool_terminate(NULL), EINVAL);
    mpool_async_free(NULL);
    mpool_iter_free(NULL);
    mpool_pool_free(NULL);
    mpool_pool_free(p);
}

static void test_no_leaks(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    for (int k = 0; k < 3; k++) {
        mpool_pool_t *p = pool(0);
        item_t *in = items(100);
        long out[100];
        assert_int_equal(mpool_pool_map(p, task, in, 100, sizeof *in, out, sizeof *out, 0), 0);
        assert_int_equal(mpool_pool_close(p), 0);
        assert_int_equal(mpool_pool_join(p, WAIT), 0);
        mpool_pool_free(p);
        free(in);
    }
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_results),
        cmocka_unit_test(test_apply_ctx),
        cmocka_unit_test(test_imap),
        cmocka_unit_test(test_task_failure),
        cmocka_unit_test(test_crash_points),
        cmocka_unit_test(test_task_timeout),
        cmocka_unit_test(test_maxtasksperchild),
        cmocka_unit_test(test_initializer),
        cmocka_unit_test(test_initializer_fails_later),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_close_join),
        cmocka_unit_test(test_terminate_during_map),
        cmocka_unit_test(test_free_without_join),
        cmocka_unit_test(test_free_while_blocked),
        cmocka_unit_test(test_worker_sees_dead_holder_with_full_table),
        cmocka_unit_test(test_server_killed),
        cmocka_unit_test(test_random_kills),
        cmocka_unit_test(test_sigint_ignored),
        cmocka_unit_test(test_no_orphans),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_no_leaks),
        cmocka_unit_test(test_enomem_threads),
        cmocka_unit_test(test_failures_heap_full),
        cmocka_unit_test(test_async_unbounded),
    };
    const char *only = getenv("MPOOL_TEST_FILTER"); /* e.g. "test_enomem*" */
    if (only) cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
