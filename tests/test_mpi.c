// ctest-timeout: 120
/* The MPI backend of the Pool, run by ctest under
 *     mpirun --oversubscribe -np 3 test_mpi        (2 worker ranks)
 *     mpirun --oversubscribe -np 2 test_mpi        (1 worker rank)
 *     mpirun --oversubscribe -np 3 test_mpi --rank-death   (must end in error)
 *     test_mpi --start-errors     (runs mpirun itself, once per failing start)
 * Ranks > 0 never return from mpool_mpi_pool_new: they serve, then exit.
 * Rank 0 runs the cmocka tests through the ordinary Pool API. Expected
 * values are computed sequentially here (no local pool may be forked after
 * MPI_Init), and, when MPOOL_TEST_LOCAL is set, also by a local Pool made
 * before MPI starts, to check that both backends give identical bytes. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <mpool/mpi.h>

static mpool_pool_t *pool;
static bool registry_ok;

typedef struct {
    long add;
    char tag[16];
} ctx_t;

static int square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Fails items whose value is 3 mod 7, returning the value + 1 as status. */
static int fail_some(const void *in, void *out, void *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    if (x % 7 == 3) return (int)x + 1;
    *(long *)out = -x;
    return 0;
}

/* Uses the ctx copied from rank 0. */
static int add_ctx(const void *in, void *out, void *ctx)
{
    const ctx_t *c = ctx;
    if (!c || strcmp(c->tag, "from-rank-0") != 0) return 99;
    *(long *)out = *(const long *)in + c->add;
    return 0;
}

/* A floating-point task: the digits must agree between backends. */
static int wave(const void *in, void *out, void *ctx)
{
    (void)ctx;
    double x = *(const double *)in, s = 0;
    for (int k = 1; k < 50; k++) s += sin(x * k) / k;
    *(double *)out = s;
    return 0;
}

/* Sleeps `in` microseconds. */
static int nap_us(const void *in, void *out, void *ctx)
{
    (void)ctx;
    long us = *(const long *)in;
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
    *(long *)out = us;
    return 0;
}

/* Big items: sums a 4 KiB input. */
static int sum_page(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const unsigned char *p = in;
    long s = 0;
    for (int i = 0; i < 4096; i++) s += p[i];
    *(long *)out = s;
    return 0;
}

/* Kills its own rank (for --rank-death). */
static int die(const void *in, void *out, void *ctx)
{
    (void)ctx;
    if (*(const long *)in == 5) raise(SIGKILL);
    *(long *)out = 0;
    return 0;
}

/* Set by the initializer on each worker rank; read back by a task. */
static long init_mark;

static int init_ok(void *arg)
{
    init_mark = *(long *)arg;
    return 0;
}

static int init_fails(void *arg)
{
    (void)arg;
    return 1;
}

static int get_mark(const void *in, void *out, void *ctx)
{
    (void)in, (void)ctx;
    *(long *)out = init_mark;
    return 0;
}

static int not_registered(const void *in, void *out, void *ctx)
{
    (void)in, (void)out, (void)ctx;
    return 0;
}

static long *seq_longs(size_t n)
{
    long *xs = malloc(n * sizeof *xs);
    for (size_t i = 0; i < n; i++) xs[i] = (long)i;
    return xs;
}

/* ---- results equal the sequential ones ----------------------------------- */

static void test_map_chunksizes(void **state)
{
    (void)state;
    size_t n = 1000, sizes[] = {0, 1, 7, 999, 1000, 5000};
    long *xs = seq_longs(n), *ys = malloc(n * sizeof *ys);
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        memset(ys, 0xff, n * sizeof *ys);
        assert_int_equal(
            mpool_pool_map(pool, square, xs, n, sizeof(long), ys, sizeof(long), sizes[k]), 0);
        for (size_t i = 0; i < n; i++) assert_int_equal(ys[i], xs[i] * xs[i]);
    }
    free(xs);
    free(ys);
}

static double *wave_inputs(size_t n)
{
    double *xs = malloc(n * sizeof *xs);
    for (size_t i = 0; i < n; i++) xs[i] = 0.001 * (double)i - 1.7;
    return xs;
}

static double *local_wave; /* from a local Pool made before MPI_Init, or NULL */
#define WAVE_N 4000

static void test_map_identical_bytes(void **state)
{
    (void)state;
    double *xs = wave_inputs(WAVE_N), *ys = malloc(WAVE_N * sizeof *ys), *seq = malloc(WAVE_N * 8);
    for (size_t i = 0; i < WAVE_N; i++) wave(&xs[i], &seq[i], NULL);
    assert_int_equal(mpool_pool_map(pool, wave, xs, WAVE_N, 8, ys, 8, 0), 0);
    assert_memory_equal(ys, seq, WAVE_N * 8);
    if (getenv("MPOOL_TEST_LOCAL")) { /* set by the ctest entry with 3 ranks */
        assert_non_null(local_wave);
        assert_memory_equal(ys, local_wave, WAVE_N * 8);
    }
    free(xs);
    free(ys);
    free(seq);
}

static void test_map_async_progress(void **state)
{
    (void)state;
    size_t n = 40;
    long xs[40], ys[40];
    for (size_t i = 0; i < n; i++) xs[i] = 2000; /* 2 ms each: 40 ms over 2 workers */
    mpool_async_t *a = mpool_pool_map_async(pool, nap_us, xs, n, sizeof(long), ys, sizeof(long), 1);
    assert_non_null(a);
    memset(xs, 0, sizeof xs); /* the input was read at the call */
    assert_int_equal(mpool_async_wait(a, 0), ETIMEDOUT);
    assert_false(mpool_async_ready(a));
    assert_int_equal(mpool_async_get(a, 30), 0);
    size_t done, total;
    mpool_async_progress(a, &done, &total);
    assert_int_equal(done, n);
    assert_int_equal(total, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(ys[i], 2000);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), ENODATA);
    mpool_async_free(a);
}

static void test_imap_ordered(void **state)
{
    (void)state;
    size_t n = 500, chunks[] = {0, 1, 13};
    long *xs = seq_longs(n);
    for (size_t k = 0; k < 3; k++) {
        mpool_iter_t *it =
            mpool_pool_imap(pool, square, xs, n, sizeof(long), sizeof(long), chunks[k]);
        assert_non_null(it);
        for (size_t i = 0; i < n; i++) {
            long y;
            size_t idx;
            assert_int_equal(mpool_iter_next(it, &y, &idx, 30), 0);
            assert_int_equal(idx, i);
            assert_int_equal(y, (long)(i * i));
        }
        assert_int_equal(mpool_iter_next(it, NULL, NULL, 5), ENODATA);
        mpool_iter_free(it);
    }
    free(xs);
}

static void test_imap_unordered(void **state)
{
    (void)state;
    size_t n = 500;
    long *xs = seq_longs(n);
    char *seen = calloc(n, 1);
    mpool_iter_t *it =
        mpool_pool_imap_unordered(pool, square, xs, n, sizeof(long), sizeof(long), 1);
    assert_non_null(it);
    for (size_t k = 0; k < n; k++) {
        long y;
        size_t idx;
        assert_int_equal(mpool_iter_next(it, &y, &idx, 30), 0);
        assert_true(idx < n);
        assert_false(seen[idx]);
        seen[idx] = 1;
        assert_int_equal(y, (long)(idx * idx));
    }
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 5), ENODATA);
    mpool_iter_free(it);
    free(seen);
    free(xs);
}

static void test_apply(void **state)
{
    (void)state;
    long x = 12, y = 0;
    assert_int_equal(mpool_pool_apply(pool, square, &x, sizeof x, &y, sizeof y), 0);
    assert_int_equal(y, 144);
    long ys[20];
    mpool_async_t *as[20];
    for (long i = 0; i < 20; i++) {
        as[i] = mpool_pool_apply_async(pool, square, &i, sizeof i, &ys[i], sizeof ys[i]);
        assert_non_null(as[i]);
    }
    for (long i = 0; i < 20; i++) {
        assert_int_equal(mpool_async_get(as[i], 30), 0);
        assert_int_equal(ys[i], i * i);
        mpool_async_free(as[i]);
    }
    x = 3; /* fails: 3 mod 7 */
    assert_int_equal(mpool_pool_apply(pool, fail_some, &x, sizeof x, &y, sizeof y), MPOOL_ETASK);
}

/* ---- failures, empty input, bad arguments ---------------------------------- */

static void test_task_failure(void **state)
{
    (void)state;
    size_t n = 100;
    long *xs = seq_longs(n), ys[100];
    memset(ys, 0, sizeof ys);
    assert_int_equal(mpool_pool_map(pool, fail_some, xs, n, sizeof(long), ys, sizeof(long), 0),
                     MPOOL_ETASK);
    mpool_async_t *a =
        mpool_pool_map_async(pool, fail_some, xs, n, sizeof(long), ys, sizeof(long), 3);
    assert_int_equal(mpool_async_get(a, 30), MPOOL_ETASK);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.index, 3);
    assert_int_equal(f.code, MPOOL_ETASK);
    assert_int_equal(f.status, 4);
    for (size_t i = 0; i < n; i++)
        if (i % 7 != 3) assert_int_equal(ys[i], -(long)i);
    mpool_async_free(a);
    mpool_iter_t *it = mpool_pool_imap(pool, fail_some, xs, n, sizeof(long), sizeof(long), 5);
    for (size_t i = 0; i < n; i++) {
        long y;
        size_t idx;
        int rc = mpool_iter_next(it, &y, &idx, 30);
        assert_int_equal(idx, i);
        assert_int_equal(rc, i % 7 == 3 ? MPOOL_ETASK : 0);
        if (!rc) assert_int_equal(y, -(long)i);
    }
    mpool_iter_free(it);
    free(xs);
}

/* Many short tasks at chunksize 1: sent many chunks per message once the
 * engine has timed them; failures and progress stay per item and chunk. */
static void test_short_tasks_batched(void **state)
{
    (void)state;
    size_t n = 30000, fails = 0;
    long *xs = seq_longs(n), *ys = malloc(n * sizeof *ys);
    mpool_async_t *a =
        mpool_pool_map_async(pool, fail_some, xs, n, sizeof(long), ys, sizeof(long), 1);
    assert_int_equal(mpool_async_get(a, 60), MPOOL_ETASK);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.index, 3);
    for (size_t i = 0; i < n; i++)
        if (i % 7 != 3) assert_int_equal(ys[i], -(long)i);
    mpool_async_free(a);
    mpool_iter_t *it =
        mpool_pool_imap_unordered(pool, fail_some, xs, n, sizeof(long), sizeof(long), 1);
    char *seen = calloc(n, 1);
    for (size_t k = 0; k < n; k++) {
        size_t idx = n;
        long y;
        int rc = mpool_iter_next(it, &y, &idx, 30);
        assert_true(idx < n && !seen[idx]);
        seen[idx] = 1;
        assert_int_equal(rc, idx % 7 == 3 ? MPOOL_ETASK : 0);
        if (rc)
            fails++;
        else
            assert_int_equal(y, -(long)idx);
    }
    assert_int_equal(fails, (n + 3) / 7);
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 5), ENODATA);
    mpool_iter_free(it);
    free(seen);
    free(xs);
    free(ys);
}

static void test_empty_input(void **state)
{
    (void)state;
    assert_int_equal(mpool_pool_map(pool, square, NULL, 0, sizeof(long), NULL, sizeof(long), 0), 0);
    mpool_iter_t *it = mpool_pool_imap(pool, square, NULL, 0, sizeof(long), sizeof(long), 0);
    assert_non_null(it);
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 5), ENODATA);
    mpool_iter_free(it);
    it = mpool_pool_imap_unordered(pool, square, NULL, 0, sizeof(long), sizeof(long), 0);
    assert_non_null(it);
    assert_int_equal(mpool_iter_next(it, NULL, NULL, 5), ENODATA);
    mpool_iter_free(it);
}

static void test_unregistered_fn(void **state)
{
    (void)state;
    long xs[4] = {1, 2, 3, 4}, ys[4];
    assert_int_equal(mpool_pool_map(pool, not_registered, xs, 4, sizeof(long), ys, sizeof(long), 0),
                     EINVAL);
    errno = 0;
    assert_null(mpool_pool_imap(pool, not_registered, xs, 4, sizeof(long), sizeof(long), 0));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mpool_pool_apply(pool, not_registered, xs, sizeof(long), ys, sizeof(long)),
                     EINVAL);
    assert_int_equal(mpool_pool_map(pool, NULL, xs, 4, sizeof(long), ys, sizeof(long), 0), EINVAL);
}

/* Bytes items and sources name memory of this address space: an MPI pool
 * refuses them (pool.h). */
static int echo_bytes(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    return mpool_out_write(out, in, len);
}

static int no_items(void *state, mpool_bytes_t *item)
{
    (void)state, (void)item;
    return ENODATA;
}

static void test_bytes_refused(void **state)
{
    (void)state;
    char x = 'a';
    mpool_bytes_t in = {&x, 1}, out = {NULL, 0};
    assert_int_equal(mpool_pool_map_bytes(pool, echo_bytes, &in, 1, &out, 0), EINVAL);
    assert_null(out.data);
    errno = 0;
    assert_null(mpool_pool_imap_bytes(pool, echo_bytes, &in, 1, 0, true));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(mpool_pool_imap_source(pool, echo_bytes, no_items, NULL, 0, true));
    assert_int_equal(errno, EINVAL);
}

static void test_registry(void **state)
{
    (void)state;
    assert_true(registry_ok);
    assert_string_equal(mpool_task_name(square), "square");
    assert_null(mpool_task_name(not_registered));
    assert_null(mpool_task_name(NULL));
    /* frozen once the pool started */
    assert_int_equal(mpool_task_register("late", not_registered), EINVAL);
    assert_int_equal(mpool_mpi_rank(), 0);
    assert_true(mpool_mpi_size() >= 2);
}

static void test_ctx_by_value(void **state)
{
    (void)state;
    long xs[50], ys[50];
    for (int i = 0; i < 50; i++) xs[i] = i;
    assert_int_equal(mpool_pool_map(pool, add_ctx, xs, 50, sizeof(long), ys, sizeof(long), 4), 0);
    for (int i = 0; i < 50; i++) assert_int_equal(ys[i], i + 1000);
}

static void test_initializer_ran(void **state)
{
    (void)state;
    long xs[8] = {0}, ys[8];
    assert_int_equal(init_mark, 0); /* rank 0 runs no initializer */
    assert_int_equal(mpool_pool_map(pool, get_mark, xs, 8, sizeof(long), ys, sizeof(long), 1), 0);
    for (int i = 0; i < 8; i++) assert_int_equal(ys[i], 4242);
}

static void test_many_maps(void **state)
{
    (void)state;
    long xs[64], ys[64];
    for (int round = 0; round < 300; round++) {
        size_t n = (size_t)(round % 64) + 1;
        for (size_t i = 0; i < n; i++) xs[i] = round + (long)i;
        assert_int_equal(
            mpool_pool_map(pool, square, xs, n, sizeof(long), ys, sizeof(long), round % 5), 0);
        for (size_t i = 0; i < n; i++) assert_int_equal(ys[i], xs[i] * xs[i]);
    }
}

/* Maps from two threads of rank 0 at once (one communication thread
 * serves both). */
static void *map_thread(void *arg)
{
    long base = *(long *)arg, xs[300], ys[300];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 300; i++) xs[i] = base + round + i;
        if (mpool_pool_map(pool, square, xs, 300, sizeof(long), ys, sizeof(long), round % 4))
            return (void *)1;
        for (int i = 0; i < 300; i++)
            if (ys[i] != xs[i] * xs[i]) return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    long bases[2] = {0, 100000};
    pthread_t t[2];
    for (int k = 0; k < 2; k++)
        assert_int_equal(pthread_create(&t[k], NULL, map_thread, &bases[k]), 0);
    for (int k = 0; k < 2; k++) {
        void *rv;
        pthread_join(t[k], &rv);
        assert_null(rv);
    }
}

/* Items of 4 KiB in one chunk of 80 MB: cut into several messages. */
static void test_big_chunk(void **state)
{
    (void)state;
    size_t n = 20000;
    unsigned char *in = malloc(n * 4096);
    long *ys = malloc(n * sizeof *ys);
    for (size_t i = 0; i < n; i++) memset(in + i * 4096, (int)(i & 0xff), 4096);
    assert_int_equal(mpool_pool_map(pool, sum_page, in, n, 4096, ys, sizeof(long), n), 0);
    for (size_t i = 0; i < n; i++) assert_int_equal(ys[i], (long)(i & 0xff) * 4096);
    free(in);
    free(ys);
}

/* Last with one worker rank: close, then join waits for the work, and the
 * worker ranks exit. */
static void test_close_join(void **state)
{
    (void)state;
    long xs[30], ys[30];
    for (int i = 0; i < 30; i++) xs[i] = 1000 + i;
    assert_int_equal(mpool_pool_join(pool, 1), EINVAL);
    mpool_async_t *a =
        mpool_pool_map_async(pool, nap_us, xs, 30, sizeof(long), ys, sizeof(long), 2);
    assert_non_null(a);
    assert_int_equal(mpool_pool_close(pool), 0);
    assert_int_equal(mpool_pool_close(pool), EINVAL);
    assert_int_equal(mpool_pool_map(pool, square, xs, 1, sizeof(long), ys, sizeof(long), 0),
                     EINVAL);
    assert_int_equal(mpool_pool_join(pool, 30), 0);
    assert_true(mpool_async_ready(a));
    assert_int_equal(mpool_async_get(a, 0), 0);
    for (int i = 0; i < 30; i++) assert_int_equal(ys[i], 1000 + i);
    mpool_async_free(a);
}

/* Last with two or more: terminate during a long map fails the rest with ECANCELED, promptly;
 * the pool refuses work afterwards. */
static void test_terminate(void **state)
{
    (void)state;
    size_t n = 2000;
    long *xs = malloc(n * sizeof *xs), *ys = malloc(n * sizeof *ys);
    for (size_t i = 0; i < n; i++) xs[i] = 3000; /* 3 ms each, 1.2 s per chunk of 400 */
    mpool_async_t *a =
        mpool_pool_map_async(pool, nap_us, xs, n, sizeof(long), ys, sizeof(long), 400);
    assert_non_null(a);
    assert_int_equal(mpool_async_wait(a, 0.05), ETIMEDOUT);
    double t0 = tu_now();
    assert_int_equal(mpool_pool_terminate(pool), 0);
    assert_int_equal(mpool_async_get(a, 5), ECANCELED);
    assert_true(tu_now() - t0 < 1.0);
    size_t done;
    mpool_async_progress(a, &done, NULL);
    assert_int_equal(done, n);
    mpool_async_free(a);
    assert_int_equal(mpool_pool_map(pool, square, xs, 1, sizeof(long), ys, sizeof(long), 0),
                     EINVAL);
    assert_int_equal(mpool_pool_terminate(pool), 0);
    free(xs);
    free(ys);
}

/* ---- set-up ---------------------------------------------------------------- */

/* registration results, checked by test_registry on rank 0 */
#define REG(expr, want) registry_ok &= (expr) == (want)

static void register_tasks(void)
{
    REG(mpool_task_register("square", square), 0);
    REG(mpool_task_register("square", square), 0); /* same pair: no-op */
    REG(mpool_task_register("square", fail_some), EINVAL);
    REG(mpool_task_register("other", square), EINVAL);
    REG(mpool_task_register("", square), EINVAL);
    REG(mpool_task_register(NULL, square), EINVAL);
    REG(mpool_task_register("x", NULL), EINVAL);
    char longname[MPOOL_TASK_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    REG(mpool_task_register(longname, not_registered), EINVAL);
    REG(mpool_task_register("fail_some", fail_some), 0);
    REG(mpool_task_register("add_ctx", add_ctx), 0);
    REG(mpool_task_register("wave", wave), 0);
    REG(mpool_task_register("nap_us", nap_us), 0);
    REG(mpool_task_register("sum_page", sum_page), 0);
    REG(mpool_task_register("die", die), 0);
    REG(mpool_task_register("get_mark", get_mark), 0);
}

/* Before MPI_Init, on rank 0 only: the same map on a local Pool. */
static void local_reference(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    if (!getenv("MPOOL_TEST_LOCAL") || !r || strcmp(r, "0") != 0) return;
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *lp = mpool_pool_new(&o);
    if (!lp) return;
    double *xs = wave_inputs(WAVE_N);
    local_wave = malloc(WAVE_N * sizeof *local_wave);
    if (mpool_pool_map(lp, wave, xs, WAVE_N, 8, local_wave, 8, 0) != 0) {
        free(local_wave);
        local_wave = NULL;
    }
    mpool_pool_free(lp);
    free(xs);
}

static int rank_death(int argc, char **argv, const mpool_mpi_opts_t *o)
{
    mpool_pool_t *p = mpool_mpi_pool_new(&argc, &argv, o);
    if (!p) return 2;
    long xs[40], ys[40];
    for (int i = 0; i < 40; i++) xs[i] = i;
    mpool_async_t *a = mpool_pool_map_async(p, die, xs, 40, sizeof(long), ys, sizeof(long), 1);
    int rc = a ? mpool_async_get(a, 30) : -1;
    /* Reaching this point means the job was not ended by the rank's death. */
    printf("rank death not noticed: %d\n", rc);
    mpool_async_free(a);
    mpool_pool_free(p);
    return 0;
}

/* Under mpirun: 1 worker of 2 spare ranks, no ctx (tasks get NULL). */
static int spare_rank_mode(int argc, char **argv)
{
    mpool_mpi_opts_t o = {.pool.processes = 1};
    mpool_pool_t *p = mpool_mpi_pool_new(&argc, &argv, &o);
    if (!p) return 1;
    long xs[100], ys[100];
    for (int i = 0; i < 100; i++) xs[i] = i;
    int bad = mpool_pool_map(p, square, xs, 100, sizeof(long), ys, sizeof(long), 0) != 0;
    for (int i = 0; i < 100; i++) bad |= ys[i] != (long)i * i;
    bad |= mpool_pool_map(p, add_ctx, xs, 4, sizeof(long), ys, sizeof(long), 0) != MPOOL_ETASK;
    mpool_pool_free(p);
    return bad;
}

/* Under mpirun, one way for the start to fail; rank 0 returns 0 when it
 * failed as it should (ranks > 0 exit inside mpool_mpi_pool_new). */
static int start_error_mode(int argc, char **argv, const char *mode)
{
    mpool_mpi_opts_t o = {0};
    int want = EINVAL;
    if (strcmp(mode, "spare-rank") == 0) return spare_rank_mode(argc, argv);
    if (strcmp(mode, "init-fails") == 0) {
        o.pool.initializer = init_fails;
        want = MPOOL_ETASK;
    } else if (strcmp(mode, "missing-name") == 0) {
        const char *r = getenv("OMPI_COMM_WORLD_RANK");
        if (r && strcmp(r, "0") == 0) mpool_task_register("only_on_rank_0", not_registered);
    } else if (strcmp(mode, "too-many") == 0) {
        o.pool.processes = 7;
    }
    errno = 0;
    mpool_pool_t *p = mpool_mpi_pool_new(&argc, &argv, &o);
    if (p || errno != want) {
        fprintf(stderr, "%s: pool %p errno %s\n", mode, (void *)p, mpool_errname(errno));
        mpool_pool_free(p);
        return 1;
    }
    /* one pool per run, and MPI was finalized by the failed start */
    if (mpool_mpi_pool_new(&argc, &argv, NULL) || errno != EINVAL) return 1;
    return mpool_mpi_rank() == 0 && mpool_mpi_size() == 0 ? 0 : 1;
}

/* Not under mpirun: runs each failing start (and a pool using 1 of 2 worker
 * ranks) as its own MPI job, each bounded. */
static int start_errors(const char *self)
{
    const char *modes[] = {"init-fails", "missing-name", "too-many", "spare-rank"};
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            execlp("mpirun", "mpirun", "--oversubscribe", "-np", "3", self, "--mode", modes[k],
                   (char *)NULL);
            _exit(127);
        }
        int rc = tu_wait(pid, 60);
        if (rc != 0) fprintf(stderr, "start error %s: mpirun ended with %d\n", modes[k], rc);
        bad += rc != 0;
    }
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    registry_ok = mpool_mpi_rank() == 0 && mpool_mpi_size() == 0; /* before MPI_Init */
    register_tasks();
    mpool_mpi_opts_t bad = {.pool.maxtasksperchild = 3};
    errno = 0;
    if (mpool_mpi_pool_new(&argc, &argv, &bad) || errno != EINVAL) return 3;
    bad = (mpool_mpi_opts_t){.ctx_size = 8}; /* ctx NULL */
    if (mpool_mpi_pool_new(&argc, &argv, &bad) || errno != EINVAL) return 3;
    static ctx_t ctx = {.add = 1000, .tag = "from-rank-0"};
    static long mark = 4242;
    mpool_mpi_opts_t o = {.pool.ctx = &ctx, .ctx_size = sizeof ctx};
    o.pool.initializer = init_ok;
    o.pool.initarg = &mark;
    const char *np = getenv("OMPI_COMM_WORLD_SIZE");
    if (np && strcmp(np, "2") == 0) o.inflight = 1; /* the fixed-depth path, with 1 worker */
    if (argc > 1 && strcmp(argv[1], "--start-errors") == 0) return start_errors(argv[0]);
    if (argc > 2 && strcmp(argv[1], "--mode") == 0) return start_error_mode(argc, argv, argv[2]);
    if (argc > 1 && strcmp(argv[1], "--rank-death") == 0) return rank_death(argc, argv, &o);
    local_reference();
    pool = mpool_mpi_pool_new(&argc, &argv, &o);
    if (!pool) {
        fprintf(stderr, "mpool_mpi_pool_new: %s\n", mpool_strerror(errno));
        return 1;
    }
    struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_map_chunksizes),
        cmocka_unit_test(test_map_identical_bytes),
        cmocka_unit_test(test_map_async_progress),
        cmocka_unit_test(test_imap_ordered),
        cmocka_unit_test(test_imap_unordered),
        cmocka_unit_test(test_apply),
        cmocka_unit_test(test_task_failure),
        cmocka_unit_test(test_short_tasks_batched),
        cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_unregistered_fn),
        cmocka_unit_test(test_bytes_refused),
        cmocka_unit_test(test_ctx_by_value),
        cmocka_unit_test(test_initializer_ran),
        cmocka_unit_test(test_many_maps),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_big_chunk),
        cmocka_unit_test(test_terminate), /* replaced by test_close_join with 2 ranks */
    };
    if (mpool_mpi_size() == 2)
        tests[sizeof tests / sizeof *tests - 1] =
            (struct CMUnitTest)cmocka_unit_test(test_close_join);
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* After test_terminate the workers leave their 1.2 s chunks mid-way. */
    double bound = mpool_mpi_size() > 2 ? 0.6 : 5, t0 = tu_now();
    mpool_pool_free(pool);
    double t_free = tu_now() - t0;
    if (t_free > bound) {
        fprintf(stderr, "pool free took %.3f s (bound %.1f s)\n", t_free, bound);
        failed++;
    }
    free(local_wave);
    return failed ? 1 : 0;
}
