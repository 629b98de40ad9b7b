/* Benchmarks of the process Pool, against Python's multiprocessing.Pool
 * (bench/py_pool.py, same metrics prefixed py.) and OpenMP:
 *
 *   pool.start_ms          Pool(2) + first tiny map + close/join/free
 *   pool.map_ns_per_item   map of x*x over 1e6 longs, default chunksize,
 *                          private in/out (copied through the shared heap)
 *   pool.map_shm_ns_per_item  the same with in/out in the shared heap
 *   pool.map_first_ns_per_item  the first such map of a pool (cold pages)
 *   pool.apply_rtt_us      apply() round trip, one item at a time
 *   pool.imap_cs1_us       imap_unordered(chunksize=1), per item
 *   pool.pi_*              pi integral N=2e8: sequential time, speed-ups of
 *                          2 workers and of OpenMP with 2 threads
 *   pool.fail_recover_us   cost of a failure: a 1-worker pool's apply of a task
 *                          that dereferences NULL, from the call to the
 *                          replacement worker having run the next apply
 *                          (minus one plain apply round trip)
 *   pool.fail_recover_sym_us  the same, with the failure's message and
 *                          backtrace built (mpool_async_failures: dladdr)
 *   pool.fail_symbolize_us  that report alone
 *   pool.mem_*             a 2-worker pool + map of 1e7 8-byte items:
 *                          what it adds beyond the in/out arrays (parent
 *                          RSS after, shared heap while it runs); with
 *                          in/out in the shared heap, and private (then the
 *                          input copy and the output staging are in the
 *                          shared heap during the map)
 */
#include <mpool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef MPOOL_HAVE_OPENMP
#include <omp.h>
#endif

#include "bench.h"

static bool quick;

static int square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static mpool_pool_t *pool2(void)
{
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *p = mpool_pool_new(&o);
    if (!p) {
        fprintf(stderr, "pool_new: %s\n", mpool_strerror(errno));
        exit(1);
    }
    return p;
}

static void bench_start(void)
{
    double t[9];
    int reps = quick ? 3 : 9;
    long in[4] = {1, 2, 3, 4}, out[4];
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        mpool_pool_t *p = pool2();
        mpool_pool_map(p, square, in, 4, sizeof(long), out, sizeof(long), 0);
        mpool_pool_close(p);
        mpool_pool_join(p, MPOOL_FOREVER);
        mpool_pool_free(p);
        t[r] = (bench_now() - t0) * 1e3;
    }
    bench_result("pool.start_ms", bench_median(t, reps), "ms");
}

static double time_map(mpool_pool_t *p, const long *in, long *out, size_t n)
{
    double t0 = bench_now();
    if (mpool_pool_map(p, square, in, n, sizeof(long), out, sizeof(long), 0)) exit(1);
    double t = bench_now() - t0;
    for (size_t i = 0; i < n; i += 4099)
        if (out[i] != in[i] * in[i]) exit(1);
    return t / (double)n * 1e9;
}

static void bench_map(mpool_pool_t *p)
{
    size_t n = quick ? 100000 : 1000000;
    int reps = quick ? 3 : 11;
    double t[11];
    long *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    long *sin = mpool_shm_alloc(n * sizeof *in), *sout = mpool_shm_alloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++) sin[i] = in[i] = (long)i;
    memset(out, 0, n * sizeof *out);
    bench_result("pool.map_first_ns_per_item", time_map(p, in, out, n), "ns");
    for (int r = 0; r < reps; r++) t[r] = time_map(p, in, out, n);
    bench_result("pool.map_ns_per_item", bench_median(t, reps), "ns");
    for (int r = 0; r < reps; r++) t[r] = time_map(p, sin, sout, n);
    bench_result("pool.map_shm_ns_per_item", bench_median(t, reps), "ns");
    free(in);
    free(out);
    mpool_shm_free(sin);
    mpool_shm_free(sout);
}

__attribute__((noinline)) static int crasher(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    *(volatile int *)NULL = 1;
    return 0;
}

/* One crash and the next apply, in us; *sym: the report's share (sym NULL:
 * no report). */
static double crash_once(mpool_pool_t *p, double *sym)
{
    long x = 3, y;
    double t0 = bench_now();
    mpool_async_t *a = mpool_pool_apply_async(p, crasher, &x, sizeof x, &y, sizeof y);
    if (!a || mpool_async_get(a, MPOOL_FOREVER) != MPOOL_EWORKER) exit(1);
    if (sym) {
        double s0 = bench_now();
        mpool_failure_t f;
        if (mpool_async_failures(a, &f, 1) != 1 || !f.backtrace) exit(1);
        *sym = (bench_now() - s0) * 1e6;
    }
    mpool_async_free(a);
    if (mpool_pool_apply(p, square, &x, sizeof x, &y, sizeof y) || y != 9) exit(1);
    return (bench_now() - t0) * 1e6;
}

static void bench_failure(void)
{
    mpool_pool_opts_t o = {.processes = 1};
    mpool_pool_t *p = mpool_pool_new(&o);
    if (!p) exit(1);
    int reps = quick ? 5 : 21;
    double plain[21], t[21], ts[21], sym[21];
    long x = 3, y;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        if (mpool_pool_apply(p, square, &x, sizeof x, &y, sizeof y)) exit(1);
        plain[r] = (bench_now() - t0) * 1e6;
    }
    double rtt = bench_median(plain, reps);
    for (int r = 0; r < reps; r++) {
        t[r] = crash_once(p, NULL) - rtt;
        ts[r] = crash_once(p, &sym[r]) - rtt;
    }
    bench_result("pool.fail_recover_us", bench_median(t, reps), "us");
    bench_result("pool.fail_recover_sym_us", bench_median(ts, reps), "us");
    bench_result("pool.fail_symbolize_us", bench_median(sym, reps), "us");
    mpool_pool_free(p);
}

static void bench_rtt(mpool_pool_t *p)
{
    int k = quick ? 200 : 5000, reps = 5;
    double t[5];
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        for (long i = 0; i < k; i++) {
            long y;
            if (mpool_pool_apply(p, square, &i, sizeof i, &y, sizeof y) || y != i * i) exit(1);
        }
        t[r] = (bench_now() - t0) / k * 1e6;
    }
    bench_result("pool.apply_rtt_us", bench_median(t, reps), "us");
    size_t n = quick ? 1000 : 20000;
    long *in = malloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        mpool_iter_t *it = mpool_pool_imap_unordered(p, square, in, n, sizeof *in, sizeof(long), 1);
        long y;
        for (size_t i = 0; i < n; i++)
            if (mpool_iter_next(it, &y, NULL, MPOOL_FOREVER)) exit(1);
        mpool_iter_free(it);
        t[r] = (bench_now() - t0) / (double)n * 1e6;
    }
    bench_result("pool.imap_cs1_us", bench_median(t, reps), "us");
    free(in);
}

/* ---- pi -------------------------------------------------------------------- */

typedef struct {
    long lo, hi;
    double h;
} span_t;

static double pi_sum(long lo, long hi, double h)
{
    double s = 0;
    for (long i = lo; i < hi; i++) {
        double x = ((double)i + 0.5) * h;
        s += 4.0 / (1.0 + x * x);
    }
    return s * h;
}

static int pi_task(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const span_t *s = in;
    *(double *)out = pi_sum(s->lo, s->hi, s->h);
    return 0;
}

#ifdef MPOOL_HAVE_OPENMP
static double pi_omp(long n, double h)
{
    double s = 0;
#pragma omp parallel for num_threads(2) reduction(+ : s) schedule(static)
    for (long i = 0; i < n; i++) {
        double x = ((double)i + 0.5) * h;
        s += 4.0 / (1.0 + x * x);
    }
    return s * h;
}
#endif

static double pi_pool(mpool_pool_t *p, const span_t *spans, int tasks)
{
    double parts[64], pi = 0;
    if (mpool_pool_map(p, pi_task, spans, (size_t)tasks, sizeof *spans, parts, sizeof *parts, 1))
        exit(1);
    for (int t = 0; t < tasks; t++) pi += parts[t];
    return pi;
}

/* Best of 3 rounds of (sequential, pool, OpenMP), interleaved: on a shared
 * noisy machine the best time is the one least disturbed by others. */
static void bench_pi(mpool_pool_t *p)
{
    long n = quick ? 10000000 : 200000000;
    double h = 1.0 / (double)n, best[3] = {1e9, 1e9, 1e9}, pi[3] = {0, 0, 0};
    enum { TASKS = 64 };
    span_t spans[TASKS];
    for (long t = 0; t < TASKS; t++) spans[t] = (span_t){n * t / TASKS, n * (t + 1) / TASKS, h};
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 3; k++) {
            double t0 = bench_now();
            if (k == 0) pi[0] = pi_sum(0, n, h);
            if (k == 1) pi[1] = pi_pool(p, spans, TASKS);
#ifdef MPOOL_HAVE_OPENMP
            if (k == 2) pi[2] = pi_omp(n, h);
#endif
            double t = bench_now() - t0;
            if (t < best[k]) best[k] = t;
        }
    }
    bench_use(pi);
    if (pi[1] < 3.14159 || pi[1] > 3.1416) exit(1);
    bench_result("pool.pi_seq_s", best[0], "s");
    bench_result("pool.pi_pool2_speedup", best[0] / best[1], "x");
#ifdef MPOOL_HAVE_OPENMP
    bench_result("pool.pi_omp2_speedup", best[0] / best[2], "x");
    bench_ratio("pool.pi_pool_vs_openmp", "pool.pi_pool2_speedup", "pool.pi_omp2_speedup");
#endif
}

/* ---- memory ---------------------------------------------------------------- */

static double rss_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (double)resident * 4096 / 1048576;
}

/* A map of n items over a fresh 2-worker pool: parent RSS growth after it,
 * and shared heap in use while it runs, beyond what was in use before. */
static void measure_map_memory(long *in, long *out, size_t n, const char *rss_metric,
                               const char *shm_metric, double shm_scale, const char *unit)
{
    size_t used0, used1;
    double rss0 = rss_mb();
    mpool_shm_stats(NULL, &used0);
    mpool_pool_t *p = pool2();
    mpool_async_t *a = mpool_pool_map_async(p, square, in, n, sizeof *in, out, sizeof *out, 0);
    mpool_shm_stats(NULL, &used1);
    if (!a || mpool_async_get(a, MPOOL_FOREVER)) exit(1);
    mpool_async_free(a);
    bench_result(rss_metric, rss_mb() - rss0, "MB");
    bench_result(shm_metric, (double)(used1 - used0) / shm_scale, unit);
    mpool_pool_free(p);
}

static void bench_memory(void)
{
    size_t n = quick ? 1000000 : 10000000;
    /* In and out in the shared heap: read and written in place. */
    long *in = mpool_shm_alloc(n * sizeof *in), *out = mpool_shm_alloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++) in[i] = (long)i, out[i] = 0;
    measure_map_memory(in, out, n, "pool.mem_rss_delta_MB", "pool.mem_shm_extra_KB", 1024, "KB");
    mpool_shm_free(in);
    mpool_shm_free(out);
    /* Private in and out: a copy of the input and a staging area for the
     * output live in the shared heap while the map runs. */
    in = malloc(n * sizeof *in);
    out = malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++) in[i] = (long)i, out[i] = 0;
    measure_map_memory(in, out, n, "pool.mem_private_rss_delta_MB", "pool.mem_private_shm_MB",
                       1048576, "MB");
    free(in);
    free(out);
}

int main(void)
{
    quick = bench_quick();
    bench_memory();
    bench_start();
    mpool_pool_t *p = pool2();
    bench_map(p);
    bench_rtt(p);
    bench_pi(p);
    mpool_pool_free(p);
    bench_failure();
    bench_ratio("pool.map_python_over_mpool", "py.pool.map_ns_per_item", "pool.map_ns_per_item");
    bench_ratio("pool.rtt_python_over_mpool", "py.pool.imap_cs1_us", "pool.imap_cs1_us");
    bench_ratio("pool.apply_python_over_mpool", "py.pool.apply_rtt_us", "pool.apply_rtt_us");
    bench_ratio("pool.start_python_over_mpool", "py.pool.start_ms", "pool.start_ms");
    return 0;
}
