/* pi: the master-worker pi integral.
 *
 * pi = integral over [0,1] of 4 / (1 + x^2), by the midpoint rule with N
 * steps. The master splits [0, N) into chunks and puts them on a task
 * queue, followed by one sentinel per worker; each worker sums its chunks
 * and puts the partial sums on a result queue. The master adds them up and
 * compares the time with a sequential run. */
#include <mpool.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    long lo, hi;
} chunk_t;

static mpool_queue_t *tasks, *results;
static long n_steps = 200000000;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double partial(long lo, long hi)
{
    double step = 1.0 / (double)n_steps, sum = 0;
    for (long i = lo; i < hi; i++) {
        double x = ((double)i + 0.5) * step;
        sum += 4.0 / (1.0 + x * x);
    }
    return sum * step;
}

static int worker(void *arg)
{
    (void)arg;
    for (;;) {
        chunk_t c;
        size_t len;
        if (mpool_queue_get(tasks, &c, sizeof c, &len, MPOOL_FOREVER)) return 1;
        if (len == 0) return 0; /* the sentinel */
        double s = partial(c.lo, c.hi);
        if (mpool_queue_put(results, &s, sizeof s, MPOOL_FOREVER)) return 1;
    }
}

static double parallel_pi(int nworkers, long nchunks)
{
    mpool_process_t *w[256];
    for (int i = 0; i < nworkers; i++) {
        w[i] = mpool_process_new(worker, NULL, NULL);
        if (!w[i] || mpool_process_start(w[i])) exit(1);
    }
    for (long k = 0; k < nchunks; k++) {
        chunk_t c = {n_steps * k / nchunks, n_steps * (k + 1) / nchunks};
        if (mpool_queue_put(tasks, &c, sizeof c, MPOOL_FOREVER)) exit(1);
    }
    for (int i = 0; i < nworkers; i++) mpool_queue_put(tasks, NULL, 0, MPOOL_FOREVER);
    double pi = 0;
    for (long k = 0; k < nchunks; k++) {
        double s;
        size_t len;
        if (mpool_queue_get(results, &s, sizeof s, &len, MPOOL_FOREVER)) exit(1);
        pi += s;
    }
    for (int i = 0; i < nworkers; i++) {
        mpool_process_join(w[i], MPOOL_FOREVER);
        mpool_process_free(w[i]);
    }
    return pi;
}

int main(int argc, char **argv)
{
    int nworkers = mpool_cpu_count();
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s [N [WORKERS]]\nComputes pi as the integral of 4/(1+x^2) on [0,1] "
               "with N steps (default 2e8),\nwith workers (default: one per CPU) fed by a task "
               "queue, and sequentially.\n",
               argv[0]);
        return 0;
    }
    if (argc > 1) n_steps = (long)atof(argv[1]);
    if (argc > 2) nworkers = atoi(argv[2]);
    if (n_steps < 1 || nworkers < 1 || nworkers > 256) return 2;
    long nchunks = 16L * nworkers; /* small enough to balance, big enough to be cheap */
    if (nchunks > n_steps) nchunks = n_steps;
    tasks = mpool_queue_new((size_t)nchunks + (size_t)nworkers, sizeof(chunk_t));
    results = mpool_queue_new((size_t)nchunks, sizeof(double));
    if (!tasks || !results) return 1;

    double t0 = now();
    double pi_par = parallel_pi(nworkers, nchunks);
    double t_par = now() - t0;
    t0 = now();
    double pi_seq = partial(0, n_steps);
    double t_seq = now() - t0;

    printf("pi ~ %.12f (error %.1e) with N = %ld\n", pi_par, fabs(pi_par - M_PI), n_steps);
    printf("sequential: %.3f s (pi ~ %.12f)\n", t_seq, pi_seq);
    printf("%d workers:  %.3f s, speed-up %.2fx\n", nworkers, t_par, t_seq / t_par);
    mpool_queue_free(tasks);
    mpool_queue_free(results);
    return 0;
}
