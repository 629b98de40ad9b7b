/* pi_mpi: the pi integral of pi_pool, on MPI ranks instead of local workers.
 *
 *     mpirun -np 3 ./pi_mpi [N]             (rank 0 + 2 worker ranks)
 *     mpirun --hostfile hosts -np 9 ./pi_mpi 2e9
 *
 * pi = integral over [0, 1] of 4 / (1 + x^2), by the midpoint rule with N
 * steps (default 2e8). The steps are cut into PIECES ranges; a task sums one
 * range; rank 0 adds the partial sums in range order. The sequential twin
 * runs the same task over the same ranges in the same order, so both print
 * the same digits, and so does pi_pool. Only the pool creation differs from
 * pi_pool: tasks are registered by name, on every rank.
 */
#include <mpool.h>
#include <mpool/mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PIECES 256 /* ranges, whatever the number of workers */

typedef struct {
    long lo, hi; /* steps [lo, hi) */
    double step; /* 1 / N */
} range_t;

static int pi_range(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const range_t *r = in;
    double s = 0;
    for (long i = r->lo; i < r->hi; i++) {
        double x = ((double)i + 0.5) * r->step;
        s += 4.0 / (1.0 + x * x);
    }
    *(double *)out = s;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void make_ranges(range_t *rs, long n)
{
    for (long k = 0; k < PIECES; k++)
        rs[k] =
            (range_t){.lo = n * k / PIECES, .hi = n * (k + 1) / PIECES, .step = 1.0 / (double)n};
}

static double add_up(const double *parts, long n)
{
    double s = 0;
    for (int k = 0; k < PIECES; k++) s += parts[k];
    return s / (double)n;
}

static int usage(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    if (!r || strcmp(r, "0") == 0)
        printf("usage: mpirun -np P ./pi_mpi [N]\n"
               "pi by the midpoint rule with N steps (default 2e8) on P-1 worker ranks,\n"
               "then sequentially on rank 0; prints both results, times and the speed-up.\n"
               "Several hosts: mpirun --hostfile FILE -np P ./pi_mpi (same path everywhere).\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) return usage();
    long n = argc > 1 ? (long)atof(argv[1]) : 200000000L;
    if (n < PIECES) {
        fprintf(stderr, "pi_mpi: N must be at least %d\n", PIECES);
        return 2;
    }
    mpool_task_register("pi_range", pi_range); /* on every rank, before the pool */
    mpool_mpi_opts_t opts = {0};
    mpool_pool_t *pool = mpool_mpi_pool_new(&argc, &argv, &opts);
    if (!pool) { /* only rank 0 returns */
        fprintf(stderr, "pi_mpi: %s (run it under mpirun with 2 ranks or more)\n",
                mpool_strerror(errno));
        return 1;
    }
    static range_t rs[PIECES];
    static double parts[PIECES];
    make_ranges(rs, n);
    double t0 = now();
    int err = mpool_pool_map(pool, pi_range, rs, PIECES, sizeof *rs, parts, sizeof *parts, 0);
    double t_par = now() - t0;
    int workers = mpool_mpi_size() - 1;
    mpool_pool_free(pool); /* the worker ranks exit */
    if (err) {
        fprintf(stderr, "pi_mpi: map failed: %s\n", mpool_strerror(err));
        return 1;
    }
    double pi_par = add_up(parts, n);
    t0 = now();
    for (int k = 0; k < PIECES; k++) pi_range(&rs[k], &parts[k], NULL);
    double t_seq = now() - t0, pi_seq = add_up(parts, n);
    printf("pi = %.12f (%d worker rank%s, %.3f s)\n", pi_par, workers, workers == 1 ? "" : "s",
           t_par);
    printf("pi = %.12f (sequential, %.3f s)\n", pi_seq, t_seq);
    printf("speed-up %.2fx\n", t_seq / t_par);
    return pi_par == pi_seq ? 0 : 1;
}
