/* Queue throughput, one producer process -> one consumer process:
 * mpool_queue_t against a raw single-producer single-consumer ring in shared
 * memory (the limit to approach: no locks, no waiting edges, no length
 * field), for 8-byte and 4 KiB items. bench/py_queue.py measures Python's
 * multiprocessing.Queue the same way.
 *
 * The consumer times from the first item to the last, so fork and start-up
 * are left out for both. */
#include <mpool.h>

#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define RAW_CAP 1024 /* slots, as the mpool queue's default maxsize */

/* ---- the raw ring ------------------------------------------------------------- */

typedef struct {
    uint64_t tail __attribute__((aligned(64))); /* written by the producer only */
    uint64_t head __attribute__((aligned(64))); /* written by the consumer only */
    unsigned char slots[] __attribute__((aligned(64)));
} raw_ring_t;

static raw_ring_t *raw_new(size_t item)
{
    size_t size = sizeof(raw_ring_t) + RAW_CAP * item;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void raw_produce(raw_ring_t *r, size_t item, long n)
{
    unsigned char buf[4096] = {0};
    uint64_t head_cache = 0;
    for (long i = 0; i < n; i++) {
        uint64_t t = r->tail;
        while (t - head_cache >= RAW_CAP) {
            head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
            __builtin_ia32_pause();
        }
        memcpy(buf, &i, sizeof i);
        memcpy(r->slots + (t % RAW_CAP) * item, buf, item);
        __atomic_store_n(&r->tail, t + 1, __ATOMIC_RELEASE);
    }
}

static double raw_consume(raw_ring_t *r, size_t item, long n)
{
    unsigned char buf[4096];
    uint64_t tail_cache = 0;
    double t0 = 0;
    for (long i = 0; i < n; i++) {
        uint64_t h = r->head;
        while (h == tail_cache) {
            tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
            __builtin_ia32_pause();
        }
        memcpy(buf, r->slots + (h % RAW_CAP) * item, item);
        bench_use(buf);
        __atomic_store_n(&r->head, h + 1, __ATOMIC_RELEASE);
        if (i == 0) t0 = bench_now();
    }
    return bench_now() - t0;
}

static double run_raw(size_t item, long n)
{
    raw_ring_t *r = raw_new(item);
    if (!r) exit(1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        raw_produce(r, item, n);
        _exit(0);
    }
    double dt = raw_consume(r, item, n);
    waitpid(pid, NULL, 0);
    munmap(r, sizeof(raw_ring_t) + RAW_CAP * item);
    return dt;
}

/* ---- mpool_queue_t -------------------------------------------------------------- */

static double run_mpool(size_t item, long n)
{
    mpool_queue_t *q = mpool_queue_new(0, item);
    if (!q) exit(1);
    unsigned char buf[4096] = {0};
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n; i++) {
            memcpy(buf, &i, sizeof i);
            if (mpool_queue_put(q, buf, item, MPOOL_FOREVER)) _exit(1);
        }
        _exit(0);
    }
    double t0 = 0;
    for (long i = 0; i < n; i++) {
        size_t len;
        if (mpool_queue_get(q, buf, sizeof buf, &len, MPOOL_FOREVER)) exit(1);
        if (i == 0) t0 = bench_now();
    }
    double dt = bench_now() - t0;
    waitpid(pid, NULL, 0);
    mpool_queue_free(q);
    return dt;
}

int main(void)
{
    bool quick = bench_quick();
    long n8 = quick ? 20000 : 4000000, n4k = quick ? 2000 : 200000;

    double t = run_mpool(8, n8);
    bench_result("queue_8B_mpool", (double)(n8 - 1) / t, "msgs/s");
    t = run_raw(8, n8);
    bench_result("queue_8B_raw", (double)(n8 - 1) / t, "msgs/s");
    t = run_mpool(4096, n4k);
    bench_result("queue_4K_mpool", (double)(n4k - 1) * 4096 / t / 1e6, "MB/s");
    t = run_raw(4096, n4k);
    bench_result("queue_4K_raw", (double)(n4k - 1) * 4096 / t / 1e6, "MB/s");

    bench_ratio("queue_8B_mpool/python", "queue_8B_mpool", "queue_8B_python");
    bench_ratio("queue_8B_raw/mpool", "queue_8B_raw", "queue_8B_mpool");
    bench_ratio("queue_4K_mpool/python", "queue_4K_mpool", "queue_4K_python");
    bench_ratio("queue_4K_raw/mpool", "queue_4K_raw", "queue_4K_mpool");
    return 0;
}
