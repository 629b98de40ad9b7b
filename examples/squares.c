/* squares: Pool map of x*x over 0..19, the first Pool example of the
 * lectures. Prints the squares, then the parallel and sequential times.
 *
 *     squares [--help]
 */
#include <mpool.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#define N 20

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s\n\nMaps x*x over 0..%d with a pool of worker processes (one per CPU),\n"
               "prints the squares, then the parallel and sequential times.\n",
               argv[0], N - 1);
        return 0;
    }
    long xs[N], ys[N], seq[N];
    for (long i = 0; i < N; i++) xs[i] = i;

    mpool_pool_t *pool = mpool_pool_new(NULL);
    if (!pool) {
        fprintf(stderr, "squares: pool: %s\n", mpool_strerror(errno));
        return 1;
    }
    double t0 = now();
    int err = mpool_pool_map(pool, square, xs, N, sizeof *xs, ys, sizeof *ys, 0);
    double parallel = now() - t0;
    mpool_pool_close(pool);
    mpool_pool_join(pool, MPOOL_FOREVER);
    mpool_pool_free(pool);
    if (err) {
        fprintf(stderr, "squares: map: %s\n", mpool_strerror(err));
        return 1;
    }

    t0 = now();
    for (int i = 0; i < N; i++) square(&xs[i], &seq[i], NULL);
    double sequential = now() - t0;

    for (int i = 0; i < N; i++) printf("%ld%c", ys[i], i + 1 < N ? ' ' : '\n');
    for (int i = 0; i < N; i++)
        if (ys[i] != seq[i]) {
            fprintf(stderr, "squares: item %d differs\n", i);
            return 1;
        }
    printf("parallel:   %.1f us (%d workers)\nsequential: %.3f us\n", parallel * 1e6,
           mpool_cpu_count(), sequential * 1e6);
    return 0;
}
