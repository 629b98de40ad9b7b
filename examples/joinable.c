/* joinable: a JoinableQueue with task_done and join.
 *
 * Workers take numbers from a joinable queue, "process" each (add its
 * square to a shared total) and call task_done. The parent puts N items and
 * joins the queue: join returns once every item was processed. Then it
 * closes the queue, which ends the workers. */
#include <mpool.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mpool_queue_t *tasks;
static int64_t *total;      /* in the shared heap */
static uint64_t *processed; /* in the shared heap */

static int worker(void *arg)
{
    (void)arg;
    for (;;) {
        int64_t x;
        size_t len;
        int r = mpool_queue_get(tasks, &x, sizeof x, &len, MPOOL_FOREVER);
        if (r == EPIPE) return 0; /* closed and drained */
        if (r) return 1;
        __atomic_fetch_add(total, x * x, __ATOMIC_RELAXED);
        __atomic_fetch_add(processed, 1, __ATOMIC_RELAXED);
        if (mpool_queue_task_done(tasks)) return 1;
    }
}

int main(int argc, char **argv)
{
    long n = 1000;
    int nworkers = mpool_cpu_count();
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s [N [WORKERS]]\nPuts N items (default %ld) on a joinable queue, "
               "workers (default: one per CPU) call task_done, join waits for all.\n",
               argv[0], n);
        return 0;
    }
    if (argc > 1) n = atol(argv[1]);
    if (argc > 2) nworkers = atoi(argv[2]);
    if (n < 0 || nworkers < 1 || nworkers > 256) return 2;
    tasks = mpool_joinable_queue_new(16, sizeof(int64_t));
    total = mpool_shm_alloc(sizeof *total);
    processed = mpool_shm_alloc(sizeof *processed);
    mpool_process_t *w[256];
    for (int i = 0; i < nworkers; i++) {
        w[i] = mpool_process_new(worker, NULL, NULL);
        if (!tasks || !total || !processed || !w[i] || mpool_process_start(w[i])) return 1;
    }
    for (int64_t i = 1; i <= n; i++)
        if (mpool_queue_put(tasks, &i, sizeof i, MPOOL_FOREVER)) return 1;
    int r = mpool_queue_join(tasks, MPOOL_FOREVER);
    uint64_t done = __atomic_load_n(processed, __ATOMIC_RELAXED);
    int64_t expected = (int64_t)n * (n + 1) * (2 * n + 1) / 6;
    if (r == 0 && done == (uint64_t)n)
        printf("join returned: all %" PRIu64 " items were processed by %d workers\n", done,
               nworkers);
    else
        printf("join: %s, %" PRIu64 " of %ld items processed\n", mpool_strerror(r), done, n);
    printf("sum of squares: %" PRId64 " (expected %" PRId64 ")\n", *total, expected);
    mpool_queue_close(tasks);
    for (int i = 0; i < nworkers; i++) {
        mpool_process_join(w[i], MPOOL_FOREVER);
        mpool_process_free(w[i]);
    }
    mpool_queue_free(tasks);
    return r || *total != expected;
}
