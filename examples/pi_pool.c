/* pi_pool: the pi integral (midpoint rule for 4/(1+x^2) over [0,1]) as a
 * Pool map over chunks of the interval. Prints pi, the parallel and the
 * sequential times and the speed-up.
 *
 *     pi_pool [--progress] [--workers W] [N]      (default N = 2e8)
 *
 * With --progress, or when stderr is a terminal, a progress bar on stderr
 * follows mpool_async_progress.
 */
#include <mpool.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TASKS 200 /* items of the map: enough for a smooth progress bar */

typedef struct {
    long lo, hi; /* steps [lo, hi) */
    double h;    /* step width */
} span_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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

static void usage(const char *argv0)
{
    printf("usage: %s [--progress] [--workers W] [N]\n\n"
           "Computes pi as the integral of 4/(1+x^2) over [0,1] with N midpoint steps\n"
           "(default 2e8), split into %d tasks mapped over a pool of W worker processes\n"
           "(default: one per CPU), then sequentially; prints both times and the speed-up.\n"
           "--progress (or stderr being a terminal) shows a progress bar on stderr.\n",
           argv0, TASKS);
}

static void bar(size_t done, size_t total)
{
    int width = 40, filled = total ? (int)(done * (size_t)width / total) : width;
    fprintf(stderr, "\r[%.*s%*s] %3zu%%", filled, "########################################",
            width - filled, "", total ? done * 100 / total : 100);
    fflush(stderr);
}

/* Runs the map, drawing progress while it runs. Returns 0 or an error code. */
static int run_pool(mpool_pool_t *pool, const span_t *spans, double *parts, bool progress)
{
    mpool_async_t *a =
        mpool_pool_map_async(pool, pi_task, spans, TASKS, sizeof *spans, parts, sizeof *parts, 1);
    if (!a) return errno;
    int err;
    while ((err = mpool_async_get(a, progress ? 0.1 : MPOOL_FOREVER)) == ETIMEDOUT) {
        size_t done, total;
        mpool_async_progress(a, &done, &total);
        bar(done, total);
    }
    if (progress) {
        bar(TASKS, TASKS);
        fputc('\n', stderr);
    }
    mpool_async_free(a);
    return err;
}

int main(int argc, char **argv)
{
    long n = 200000000;
    int workers = 0;
    bool progress = isatty(STDERR_FILENO);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(argv[i], "--progress")) {
            progress = true;
        } else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
            workers = atoi(argv[++i]);
        } else {
            n = (long)strtod(argv[i], NULL);
        }
    }
    if (n < TASKS || workers < 0) {
        fprintf(stderr, "pi_pool: N must be at least %d, W at least 0\n", TASKS);
        return 2;
    }
    double h = 1.0 / (double)n;
    span_t spans[TASKS];
    double parts[TASKS];
    for (long t = 0; t < TASKS; t++) spans[t] = (span_t){n * t / TASKS, n * (t + 1) / TASKS, h};

    mpool_pool_opts_t opts = {.processes = workers};
    mpool_pool_t *pool = mpool_pool_new(&opts);
    if (!pool) {
        fprintf(stderr, "pi_pool: pool: %s\n", mpool_strerror(errno));
        return 1;
    }
    double t0 = now();
    int err = run_pool(pool, spans, parts, progress);
    double parallel = now() - t0;
    mpool_pool_close(pool);
    mpool_pool_join(pool, MPOOL_FOREVER);
    mpool_pool_free(pool);
    if (err) {
        fprintf(stderr, "pi_pool: map: %s\n", mpool_strerror(err));
        return 1;
    }
    double pi = 0;
    for (int t = 0; t < TASKS; t++) pi += parts[t];

    t0 = now();
    double pi_seq = pi_sum(0, n, h);
    double sequential = now() - t0;

    printf("pi = %.12f (error %.2e), N = %ld\n", pi, fabs(pi - M_PI), n);
    printf("pool (%d workers): %.3f s\nsequential:       %.3f s (pi = %.12f)\nspeed-up: %.2fx\n",
           workers ? workers : mpool_cpu_count(), parallel, sequential, pi_seq,
           sequential / parallel);
    return 0;
}
