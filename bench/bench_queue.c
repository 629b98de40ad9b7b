/* Queue throughput, one producer process -> one consumer process:
 * mpool_queue_t against a raw single-producer single-consumer ring in shared
 * memory (the limit to approach: no locks, no waiting edges, no length
 * field), for 8-byte and 4 KiB items. bench/py_queue.py measures Python's
 * multiprocessing.Queue the same way.
 *
 * The consumer times from the first item to the last, so fork and start-up
 * are left out for both. */
#include <mpool.h>

#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch.h" /* src/: the spin hint and cache line of the target */
#include "bench.h"

#define RAW_CAP 1024 /* slots, as the mpool queue's default maxsize */

/* At an empty or full edge: spin, then yield (as the mpool queue does
 * before it sleeps), so that a ring whose two ends share a CPU on a busy
 * machine still moves. */
static void edge_pause(int spins)
{
    if (spins > 64)
        sched_yield();
    else
        mpool__cpu_relax();
}

/* ---- the raw ring ------------------------------------------------------------- */

typedef struct {
    uint64_t tail __attribute__((aligned(MPOOL__CACHELINE))); /* written by the producer only */
    uint64_t head __attribute__((aligned(MPOOL__CACHELINE))); /* written by the consumer only */
    unsigned char slots[] __attribute__((aligned(MPOOL__CACHELINE)));
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
        for (int spins = 0; t - head_cache >= RAW_CAP; spins++) {
            head_cache = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
            edge_pause(spins);
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
        for (int spins = 0; h == tail_cache; spins++) {
            tail_cache = __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE);
            edge_pause(spins);
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

/* ---- a Vyukov MPMC ring, for the design comparison ----------------------------
 * Per-slot sequence numbers, a CAS on tail (head) per put (get), spin and
 * yield at the edges. What src/queue.c would cost without its robustness
 * (a process killed between claim and publish wedges this ring for good). */

typedef struct {
    uint64_t seq;
    uint64_t len;
    unsigned char data[8];
} vslot_t;

typedef struct {
    uint64_t tail __attribute__((aligned(MPOOL__CACHELINE)));
    uint64_t head __attribute__((aligned(MPOOL__CACHELINE)));
    vslot_t slots[RAW_CAP] __attribute__((aligned(MPOOL__CACHELINE)));
} vring_t;

static void v_put(vring_t *r, const void *item)
{
    for (int spins = 0;; spins++) {
        uint64_t pos = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
        vslot_t *s = &r->slots[pos % RAW_CAP];
        int64_t dif = (int64_t)(__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) - pos);
        if (dif == 0 && __atomic_compare_exchange_n(&r->tail, &pos, pos + 1, false,
                                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            s->len = 8;
            memcpy(s->data, item, 8);
            __atomic_store_n(&s->seq, pos + 1, __ATOMIC_RELEASE);
            return;
        }
        if (dif < 0) edge_pause(spins);
    }
}

static void v_get(vring_t *r, void *item)
{
    for (int spins = 0;; spins++) {
        uint64_t pos = __atomic_load_n(&r->head, __ATOMIC_RELAXED);
        vslot_t *s = &r->slots[pos % RAW_CAP];
        int64_t dif = (int64_t)(__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) - (pos + 1));
        if (dif == 0 && __atomic_compare_exchange_n(&r->head, &pos, pos + 1, false,
                                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            memcpy(item, s->data, 8);
            __atomic_store_n(&s->seq, pos + RAW_CAP, __ATOMIC_RELEASE);
            return;
        }
        if (dif < 0) edge_pause(spins);
    }
}

static double run_vyukov(long n)
{
    vring_t *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) exit(1);
    for (uint64_t i = 0; i < RAW_CAP; i++) r->slots[i].seq = i;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        for (long i = 0; i < n; i++) v_put(r, &i);
        _exit(0);
    }
    double t0 = 0;
    for (long i = 0; i < n; i++) {
        long x;
        v_get(r, &x);
        if (i == 0) t0 = bench_now();
    }
    double dt = bench_now() - t0;
    waitpid(pid, NULL, 0);
    munmap(r, sizeof *r);
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

#define ROUNDS 3

/* The rings take turns in ROUNDS rounds, so that the machine's drift (2
 * shared vCPUs) hits all alike; each reports its median round. */
int main(void)
{
    bool quick = bench_quick();
    long n8 = quick ? 20000 : 1500000, n4k = quick ? 2000 : 70000;
    double m8[ROUNDS], r8[ROUNDS], v8[ROUNDS], m4[ROUNDS], r4[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        m8[i] = (double)(n8 - 1) / run_mpool(8, n8);
        r8[i] = (double)(n8 - 1) / run_raw(8, n8);
        v8[i] = (double)(n8 - 1) / run_vyukov(n8);
        m4[i] = (double)(n4k - 1) * 4096 / run_mpool(4096, n4k) / 1e6;
        r4[i] = (double)(n4k - 1) * 4096 / run_raw(4096, n4k) / 1e6;
    }
    bench_result("queue_8B_mpool", bench_median(m8, ROUNDS), "msgs/s");
    bench_result("queue_8B_raw", bench_median(r8, ROUNDS), "msgs/s");
    bench_result("queue_8B_vyukov", bench_median(v8, ROUNDS), "msgs/s");
    bench_result("queue_4K_mpool", bench_median(m4, ROUNDS), "MB/s");
    bench_result("queue_4K_raw", bench_median(r4, ROUNDS), "MB/s");

    bench_ratio("queue_8B_mpool/python", "queue_8B_mpool", "queue_8B_python");
    bench_ratio("queue_8B_raw/mpool", "queue_8B_raw", "queue_8B_mpool");
    bench_ratio("queue_8B_vyukov/mpool", "queue_8B_vyukov", "queue_8B_mpool");
    bench_ratio("queue_4K_mpool/python", "queue_4K_mpool", "queue_4K_python");
    bench_ratio("queue_4K_raw/mpool", "queue_4K_raw", "queue_4K_mpool");
    return 0;
}
