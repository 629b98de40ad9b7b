/* Soak: mixed pool maps, queue traffic and lock contention at once, with
 * four times more processes than CPUs, for a bounded time; every total is
 * checked exactly. Not part of `ctest`: run it with `cmake --build build
 * --target soak` or `./build/mpool_soak --seconds 180`. Exit 0 when every
 * check held. */
#include <mpool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    mpool_lock_t *lock;
    uint64_t *counter;
    mpool_queue_t *queue;
    mpool_event_t *stop;
    uint64_t *consumed_sum, *consumed_count; /* one slot per consumer */
    int id;
} shared_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int hash_task(const void *in, void *out, void *ctx)
{
    (void)ctx;
    uint64_t x = *(const uint64_t *)in;
    for (int i = 0; i < 50; i++) x = mix(x + (uint64_t)i);
    *(uint64_t *)out = x;
    return 0;
}

/* Lock workers: increment under the lock until told to stop; each returns
 * how many increments it made (in its slot of the shared counts). */
typedef struct {
    shared_t *s;
    uint64_t *done;
} lock_arg_t;

static int lock_worker(void *arg)
{
    lock_arg_t *a = arg;
    while (!mpool_event_is_set(a->s->stop)) {
        for (int i = 0; i < 1000; i++) {
            int r = mpool_lock_acquire(a->s->lock, 10);
            if (r != 0) return 1;
            (*a->s->counter)++;
            (*a->done)++;
            if (mpool_lock_release(a->s->lock) != 0) return 2;
        }
    }
    return 0;
}

typedef struct {
    shared_t *s;
    int id;
    uint64_t *produced;
} prod_arg_t;

static int producer(void *arg)
{
    prod_arg_t *a = arg;
    uint64_t seq = 0;
    while (!mpool_event_is_set(a->s->stop)) {
        uint64_t item[2] = {(uint64_t)a->id, seq};
        int r = mpool_queue_put(a->s->queue, item, sizeof item, 0.5);
        if (r == ETIMEDOUT) continue;
        if (r != 0) return 1;
        seq++;
        *a->produced = seq;
    }
    return 0;
}

static int consumer(void *arg)
{
    prod_arg_t *a = arg;
    for (;;) {
        uint64_t item[2];
        size_t len;
        int r = mpool_queue_get(a->s->queue, item, sizeof item, &len, 30);
        if (r == EPIPE) return 0;
        if (r != 0 || len != sizeof item) return 1;
        a->s->consumed_sum[a->id] += item[1];
        a->s->consumed_count[a->id]++;
    }
}

static int check_maps(mpool_pool_t *pool, unsigned *seed, uint64_t *items)
{
    size_t n = 1 + (size_t)(rand_r(seed) % 200000);
    size_t chunk = (size_t)(rand_r(seed) % 3 == 0 ? 0 : 1 + rand_r(seed) % 5000);
    uint64_t *in = mpool_shm_alloc(n * 8), *out = malloc(n * 8);
    if (!in || !out) return 1;
    for (size_t i = 0; i < n; i++) in[i] = i * 2654435761u;
    int r = mpool_pool_map(pool, hash_task, in, n, 8, out, 8, chunk);
    for (size_t i = 0; r == 0 && i < n; i++) {
        uint64_t want;
        hash_task(&in[i], &want, NULL);
        if (out[i] != want) r = -1;
    }
    mpool_shm_free(in);
    free(out);
    *items += n;
    return r;
}

int main(int argc, char **argv)
{
    double seconds = 180;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            printf("usage: %s [--seconds S]\n  mixed maps, queue traffic and lock contention "
                   "with 4x more processes than CPUs, totals checked\n",
                   argv[0]);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    int cpus = mpool_cpu_count(), side = cpus * 4 / 3 + 1; /* processes per kind */
    shared_t *s = mpool_shm_alloc(sizeof *s);
    s->lock = mpool_lock_new();
    s->counter = mpool_shm_alloc(8);
    s->queue = mpool_queue_new(256, 16);
    s->stop = mpool_event_new();
    s->consumed_sum = mpool_shm_alloc(8 * side);
    s->consumed_count = mpool_shm_alloc(8 * side);
    uint64_t *lock_done = mpool_shm_alloc(8 * side), *produced = mpool_shm_alloc(8 * side);
    lock_arg_t *la = calloc(side, sizeof *la);
    prod_arg_t *pa = calloc(side, sizeof *pa), *ca = calloc(side, sizeof *ca);
    mpool_process_t **lp = calloc(side, sizeof *lp), **pp = calloc(side, sizeof *pp),
                    **cp = calloc(side, sizeof *cp);
    mpool_pool_opts_t o = {.processes = side};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool || !s->lock || !s->queue) {
        printf("soak: setup failed: %s\n", mpool_strerror(errno));
        return 1;
    }
    for (int i = 0; i < side; i++) {
        la[i] = (lock_arg_t){s, &lock_done[i]};
        pa[i] = (prod_arg_t){s, i, &produced[i]};
        ca[i] = (prod_arg_t){s, i, NULL};
        lp[i] = mpool_process_new(lock_worker, &la[i], NULL);
        pp[i] = mpool_process_new(producer, &pa[i], NULL);
        cp[i] = mpool_process_new(consumer, &ca[i], NULL);
        mpool_process_start(lp[i]);
        mpool_process_start(pp[i]);
        mpool_process_start(cp[i]);
    }
    printf("soak: %d CPUs, %d pool workers + %d lock + %d producer + %d consumer processes, "
           "%.0f s\n",
           cpus, side, side, side, side, seconds);
    unsigned seed = 12345;
    uint64_t maps = 0, items = 0;
    int fails = 0;
    double end = now() + seconds;
    while (now() < end) {
        if (check_maps(pool, &seed, &items) != 0) fails++;
        maps++;
    }
    mpool_event_set(s->stop);
    int bad_exit = 0;
    for (int i = 0; i < side; i++) {
        int c = -1;
        if (mpool_process_join(lp[i], 60) || !mpool_process_exitcode(lp[i], &c) || c) bad_exit++;
        if (mpool_process_join(pp[i], 60) || !mpool_process_exitcode(pp[i], &c) || c) bad_exit++;
    }
    mpool_queue_close(s->queue);
    for (int i = 0; i < side; i++) {
        int c = -1;
        if (mpool_process_join(cp[i], 60) || !mpool_process_exitcode(cp[i], &c) || c) bad_exit++;
    }
    uint64_t want_lock = 0, want_count = 0, want_sum = 0, got_count = 0, got_sum = 0;
    for (int i = 0; i < side; i++) {
        want_lock += lock_done[i];
        want_count += produced[i];
        want_sum += produced[i] * (produced[i] - 1) / 2;
        got_count += s->consumed_count[i];
        got_sum += s->consumed_sum[i];
    }
    bool ok = !fails && !bad_exit && *s->counter == want_lock && got_count == want_count &&
              got_sum == want_sum;
    printf("soak: maps %llu (%llu items, %d failed); lock increments %llu (want %llu); "
           "queue items %llu (want %llu), sum %s; bad process exits %d\n",
           (unsigned long long)maps, (unsigned long long)items, fails,
           (unsigned long long)*s->counter, (unsigned long long)want_lock,
           (unsigned long long)got_count, (unsigned long long)want_count,
           got_sum == want_sum ? "exact" : "WRONG", bad_exit);
    for (int i = 0; i < side; i++) {
        mpool_process_free(lp[i]);
        mpool_process_free(pp[i]);
        mpool_process_free(cp[i]);
    }
    mpool_pool_close(pool);
    mpool_pool_join(pool, 60);
    mpool_pool_free(pool);
    printf("soak: %s\n", ok ? "OK" : "FAILED");
    return ok ? 0 : 1;
}
