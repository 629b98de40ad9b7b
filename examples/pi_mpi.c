/* pi_mpi: pi_pool on MPI ranks. The same integral (midpoint rule for
 * 4/(1+x^2) over [0,1]), the same 200 spans mapped with chunksize 1 and
 * added in the same order, so it prints the same digits as pi_pool; only
 * the creation of the pool differs (and the task is registered by name).
 *
 *     mpirun -np 3 ./pi_mpi [--progress] [--workers W] [N]     (default N = 2e8)
 *     mpirun --hostfile hosts -np 9 ./pi_mpi 2e9                (several hosts)
 *
 * Rank 0 runs main() past mpool_mpi_pool_new; the other ranks serve the
 * tasks there and exit when the pool is freed.
 */
#include <mpool.h>
#include <mpool/mpi.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TASKS 200 /* as pi_pool */

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
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (rank && strcmp(rank, "0") != 0) return;
    printf("usage: mpirun -np P %s [--progress] [--workers W] [N]\n\n"
           "Computes pi as the integral of 4/(1+x^2) over [0,1] with N midpoint steps\n"
           "(default 2e8), split into %d tasks mapped over W worker ranks (default:\n"
           "all P-1), then sequentially on rank 0; prints both times and the speed-up.\n"
           "Several hosts: mpirun --hostfile FILE -np P %s (same binary path on each).\n"
           "--progress shows a progress bar on stderr.\n",
           argv0, TASKS, argv0);
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
    bool progress = false; /* under mpirun stderr is never a terminal */
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
        fprintf(stderr, "pi_mpi: N must be at least %d, W at least 0\n", TASKS);
        return 2;
    }
    double h = 1.0 / (double)n;
    span_t spans[TASKS];
    double parts[TASKS];
    for (long t = 0; t < TASKS; t++) spans[t] = (span_t){n * t / TASKS, n * (t + 1) / TASKS, h};

    mpool_task_register("pi_task", pi_task); /* on every rank, before the pool */
    mpool_mpi_opts_t opts = {.pool.processes = workers};
    mpool_pool_t *pool = mpool_mpi_pool_new(&argc, &argv, &opts); /* ranks > 0 stay inside */
    if (!pool) {
        fprintf(stderr, "pi_mpi: pool: %s (run it with mpirun -np 2 or more)\n",
                mpool_strerror(errno));
        return 1;
    }
    if (!workers) workers = mpool_mpi_size() - 1;
    double t0 = now();
    int err = run_pool(pool, spans, parts, progress);
    double parallel = now() - t0;
    mpool_pool_close(pool);
    mpool_pool_join(pool, MPOOL_FOREVER);
    mpool_pool_free(pool);
    if (err) {
        fprintf(stderr, "pi_mpi: map: %s\n", mpool_strerror(err));
        return 1;
    }
    double pi = 0;
    for (int t = 0; t < TASKS; t++) pi += parts[t];

    t0 = now();
    double pi_seq = pi_sum(0, n, h);
    double sequential = now() - t0;

    printf("pi = %.12f (error %.2e), N = %ld\n", pi, fabs(pi - M_PI), n);
    printf("mpi (%d worker ranks): %.3f s\nsequential:           %.3f s (pi = %.12f)\n"
           "speed-up: %.2fx\n",
           workers, parallel, sequential, pi_seq, sequential / parallel);
    return 0;
}
