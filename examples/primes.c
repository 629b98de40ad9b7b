/* primes: count the primes up to N with workers.
 *
 * The primes up to sqrt(N) are found sequentially (a small sieve); the rest
 * of [sqrt(N)+1, N] is cut into ranges put on a task queue, and workers
 * test every odd number of a range by trial division by those small primes.
 * Each worker sends back the primes of a range on a result queue; the
 * parent sorts the ranges back into order. Prints the count (148933 for
 * N = 2,000,000), the largest primes, and parallel vs sequential times. */
#include <mpool.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RANGE 16384 /* numbers per task */

typedef struct {
    uint32_t index, lo, hi;
} task_t;

typedef struct {
    uint32_t index, count;
    uint32_t primes[RANGE / 2 + 1];
} found_t;

static uint32_t *small; /* primes <= sqrt(N), made before the workers fork */
static size_t nsmall;
static mpool_queue_t *tasks, *results;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sieve_small(uint32_t limit)
{
    char *composite = calloc(limit + 1, 1);
    small = malloc(sizeof *small * (limit + 1));
    if (!composite || !small) exit(1);
    for (uint32_t i = 2; i <= limit; i++) {
        if (composite[i]) continue;
        small[nsmall++] = i;
        for (uint64_t j = (uint64_t)i * i; j <= limit; j += i) composite[j] = 1;
    }
    free(composite);
}

static bool is_prime(uint32_t n)
{
    for (size_t i = 0; i < nsmall && (uint64_t)small[i] * small[i] <= n; i++)
        if (n % small[i] == 0) return false;
    return n >= 2;
}

static void scan(const task_t *t, found_t *f)
{
    f->index = t->index;
    f->count = 0;
    if (t->lo <= 2 && t->hi >= 2) f->primes[f->count++] = 2; /* only for N < 4 */
    for (uint32_t n = t->lo | 1; n <= t->hi && n >= t->lo; n += 2)
        if (is_prime(n)) f->primes[f->count++] = n;
}

static int worker(void *arg)
{
    (void)arg;
    found_t *f = malloc(sizeof *f);
    if (!f) return 1;
    for (;;) {
        task_t t;
        size_t len;
        if (mpool_queue_get(tasks, &t, sizeof t, &len, MPOOL_FOREVER)) return 1;
        if (len == 0) break; /* the sentinel */
        scan(&t, f);
        size_t size = offsetof(found_t, primes) + f->count * sizeof(uint32_t);
        if (mpool_queue_put(results, f, size, MPOOL_FOREVER)) return 1;
    }
    free(f);
    return 0;
}

static int by_index(const void *a, const void *b)
{
    uint32_t x = (*(found_t *const *)a)->index, y = (*(found_t *const *)b)->index;
    return (x > y) - (x < y);
}

/* Runs the workers over (root, n]; returns the ranges' results in order. */
static found_t **parallel(uint32_t root, uint32_t n, int nworkers, uint32_t *ntasks)
{
    mpool_process_t *w[256];
    for (int i = 0; i < nworkers; i++) {
        w[i] = mpool_process_new(worker, NULL, NULL);
        if (!w[i] || mpool_process_start(w[i])) exit(1);
    }
    *ntasks = (n - root + RANGE - 1) / RANGE;
    found_t **out = calloc(*ntasks + 1, sizeof *out);
    uint32_t put = 0, got = 0;
    while (got < *ntasks) {
        /* Keep the task queue fed, blocking only when no result is due. */
        while (put < *ntasks && (put == got || !mpool_queue_full(tasks))) {
            uint32_t lo = root + 1 + put * RANGE, hi = lo + RANGE - 1 > n ? n : lo + RANGE - 1;
            task_t t = {put, lo, hi};
            if (mpool_queue_put(tasks, &t, sizeof t, put == got ? MPOOL_FOREVER : 0)) break;
            put++;
        }
        out[got] = malloc(sizeof(found_t));
        size_t len;
        if (mpool_queue_get(results, out[got], sizeof(found_t), &len, MPOOL_FOREVER)) exit(1);
        got++;
    }
    for (int i = 0; i < nworkers; i++) mpool_queue_put(tasks, NULL, 0, MPOOL_FOREVER);
    for (int i = 0; i < nworkers; i++) {
        mpool_process_join(w[i], MPOOL_FOREVER);
        mpool_process_free(w[i]);
    }
    qsort(out, *ntasks, sizeof *out, by_index);
    return out;
}

static uint32_t sequential_count(uint32_t root, uint32_t n)
{
    uint32_t count = 0;
    for (uint32_t k = root + 1; k <= n; k++) count += is_prime(k);
    return count;
}

int main(int argc, char **argv)
{
    uint32_t n = 2000000;
    int nworkers = mpool_cpu_count();
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s [N [WORKERS]]\nCounts the primes <= N (default 2000000): small "
               "ones sequentially, the rest by\nworkers (default: one per CPU) taking ranges "
               "from a queue.\n",
               argv[0]);
        return 0;
    }
    if (argc > 1) n = (uint32_t)strtoul(argv[1], NULL, 10);
    if (argc > 2) nworkers = atoi(argv[2]);
    if (n < 2 || n > 4000000000u || nworkers < 1 || nworkers > 256) return 2;
    uint32_t root = (uint32_t)sqrt((double)n);
    while ((uint64_t)(root + 1) * (root + 1) <= n) root++;
    tasks = mpool_queue_new(4 * (size_t)nworkers, sizeof(task_t));
    results = mpool_queue_new(4 * (size_t)nworkers, sizeof(found_t));
    if (!tasks || !results) return 1;

    double t0 = now();
    sieve_small(root);
    uint32_t ntasks;
    found_t **ranges = parallel(root, n, nworkers, &ntasks);
    double t_par = now() - t0;
    uint64_t count = nsmall;
    uint32_t last[5] = {0}, nlast = 0;
    for (size_t i = 0; i < nsmall; i++) last[nlast++ % 5] = small[i];
    for (uint32_t i = 0; i < ntasks; i++) {
        count += ranges[i]->count;
        for (uint32_t j = 0; j < ranges[i]->count; j++) last[nlast++ % 5] = ranges[i]->primes[j];
        free(ranges[i]);
    }
    free(ranges);
    t0 = now();
    uint64_t seq = nsmall + sequential_count(root, n);
    double t_seq = now() - t0;

    printf("%llu primes <= %u (sequential count: %llu)\n", (unsigned long long)count, n,
           (unsigned long long)seq);
    printf("largest:");
    for (uint32_t i = nlast < 5 ? 0 : nlast - 5; i < nlast; i++) printf(" %u", last[i % 5]);
    printf("\nsequential: %.3f s; %d workers: %.3f s, speed-up %.2fx\n", t_seq, nworkers, t_par,
           t_seq / t_par);
    free(small);
    mpool_queue_free(tasks);
    mpool_queue_free(results);
    return count != seq;
}
