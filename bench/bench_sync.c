/* Synchronization benchmarks: libmpool's Lock, Event and Condition against
 * glibc's process-shared mutexes and raw futexes, in one run.
 *
 *   uncontended  acquire + release in one process (ns per pair)
 *   contended    two processes, 1,000,000 increments each of one shared
 *                counter under one lock (total ms, and ns per increment;
 *                best of three interleaved rounds)
 *   ping-pong    two processes hand a turn back and forth (us per round trip)
 *
 * Every object lives in the shared heap (mpool_shm_alloc), glibc's too, so
 * the memory is the same kind for all. MPOOL_BENCH_QUICK=1: small counts. */
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mpool.h>

#include "arch.h" /* src/: the spin hint of the target */
#include "bench.h"

static long n_uncontended, n_contended, n_rounds;

/* ---- a raw 3-state futex mutex (Drepper's), the reference lower bound ------ */

static void futex_wait(uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(uint32_t *w, int n)
{
    syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
}

static void raw_lock(uint32_t *w)
{
    uint32_t c = 0;
    if (__atomic_compare_exchange_n(w, &c, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return;
    if (c != 2) c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        futex_wait(w, 2);
        c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
    }
}

static void raw_unlock(uint32_t *w)
{
    if (__atomic_exchange_n(w, 0, __ATOMIC_RELEASE) == 2) futex_wake(w, 1);
}

/* ---- the locks under test, behind one interface --------------------------- */

typedef struct {
    const char *name;
    void *(*make)(void);
    void (*lock)(void *);
    void (*unlock)(void *);
} lock_ops;

static void *mpool_make(void)
{
    return mpool_lock_new();
}
static void mpool_lk(void *l)
{
    mpool_lock_acquire(l, MPOOL_FOREVER);
}
static void mpool_ulk(void *l)
{
    mpool_lock_release(l);
}

static void *glibc_make_kind(bool robust)
{
    pthread_mutex_t *m = mpool_shm_alloc(sizeof *m);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (robust) pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return m;
}
static void *glibc_make(void)
{
    return glibc_make_kind(false);
}
static void *glibc_make_robust(void)
{
    return glibc_make_kind(true);
}
static void glibc_lk(void *m)
{
    pthread_mutex_lock(m);
}
static void glibc_ulk(void *m)
{
    pthread_mutex_unlock(m);
}

static void *raw_make(void)
{
    return mpool_shm_alloc(sizeof(uint32_t));
}
static void raw_lk(void *w)
{
    raw_lock(w);
}
static void raw_ulk(void *w)
{
    raw_unlock(w);
}

static const lock_ops LOCKS[] = {
    {"mpool", mpool_make, mpool_lk, mpool_ulk},
    {"glibc_pshared", glibc_make, glibc_lk, glibc_ulk},
    {"glibc_robust", glibc_make_robust, glibc_lk, glibc_ulk},
    {"raw_futex", raw_make, raw_lk, raw_ulk},
};
#define NLOCKS (sizeof LOCKS / sizeof LOCKS[0])

/* The public calls, inlined loops: what a user's hot loop costs. */
static double uncontended_mpool(void *l)
{
    double t = bench_now();
    for (long i = 0; i < n_uncontended; i++) {
        mpool_lock_acquire(l, MPOOL_FOREVER);
        mpool_lock_release(l);
    }
    return bench_now() - t;
}

static double uncontended_generic(const lock_ops *ops, void *l)
{
    double t = bench_now();
    if (ops->lock == glibc_lk) {
        for (long i = 0; i < n_uncontended; i++) {
            pthread_mutex_lock(l);
            pthread_mutex_unlock(l);
        }
    } else {
        for (long i = 0; i < n_uncontended; i++) {
            raw_lock(l);
            raw_unlock(l);
        }
    }
    return bench_now() - t;
}

static void bench_uncontended(void)
{
    char metric[96];
    for (size_t k = 0; k < NLOCKS; k++) {
        void *l = LOCKS[k].make();
        double best = 1e30;
        for (int rep = 0; rep < 3; rep++) {
            double t = k == 0 ? uncontended_mpool(l) : uncontended_generic(&LOCKS[k], l);
            if (t < best) best = t;
        }
        snprintf(metric, sizeof metric, "lock_uncontended_%s", LOCKS[k].name);
        bench_result(metric, best / (double)n_uncontended * 1e9, "ns");
    }
}

/* ---- contended: two processes, one counter -------------------------------- */

typedef struct {
    uint32_t go;
    uint32_t ready;
    long counter;
} shared_t;

static void contender(const lock_ops *ops, void *l, shared_t *sh)
{
    __atomic_fetch_add(&sh->ready, 1, __ATOMIC_SEQ_CST);
    while (!__atomic_load_n(&sh->go, __ATOMIC_ACQUIRE)) mpool__cpu_relax();
    for (long i = 0; i < n_contended; i++) {
        ops->lock(l);
        sh->counter++;
        ops->unlock(l);
    }
    _exit(0);
}

static double contended_once(const lock_ops *ops)
{
    void *l = ops->make();
    shared_t *sh = mpool_shm_alloc(sizeof *sh);
    pid_t pid[2];
    fflush(NULL);
    for (int i = 0; i < 2; i++)
        if ((pid[i] = fork()) == 0) contender(ops, l, sh);
    while (__atomic_load_n(&sh->ready, __ATOMIC_ACQUIRE) < 2) usleep(100);
    double t = bench_now();
    __atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) waitpid(pid[i], NULL, 0);
    t = bench_now() - t;
    if (sh->counter != 2 * n_contended) {
        fprintf(stderr, "%s: counter %ld, expected %ld\n", ops->name, sh->counter, 2 * n_contended);
        exit(1);
    }
    mpool_shm_free(sh);
    if (ops->make != mpool_make)
        mpool_shm_free(l);
    else
        mpool_lock_free(l);
    return t;
}

/* Three rounds, the locks interleaved within each, best of three: the
 * machine is shared and noisy, and a throughput test is hurt by any other
 * load (a holder preempted while the other spins), never helped. */
static void bench_contended(void)
{
    char metric[96];
    double best[NLOCKS];
    for (size_t k = 0; k < NLOCKS; k++) best[k] = 1e30;
    for (int round = 0; round < 3; round++)
        for (size_t k = 0; k < NLOCKS; k++) {
            if (LOCKS[k].make == glibc_make_robust) continue;
            double t = contended_once(&LOCKS[k]);
            if (t < best[k]) best[k] = t;
        }
    for (size_t k = 0; k < NLOCKS; k++) {
        if (LOCKS[k].make == glibc_make_robust) continue;
        snprintf(metric, sizeof metric, "lock_contended_%s_total", LOCKS[k].name);
        bench_result(metric, best[k] * 1e3, "ms");
        snprintf(metric, sizeof metric, "lock_contended_%s_per_op", LOCKS[k].name);
        bench_result(metric, best[k] / (double)(2 * n_contended) * 1e9, "ns");
    }
}

/* ---- ping-pong: a turn handed between two processes ----------------------- */

/* Raw futex: the word says whose turn it is (0: parent, 1: child). Every
 * hand-off wakes through the kernel: no spin, no waiters count. */
static void raw_wait_turn(uint32_t *w, uint32_t mine)
{
    uint32_t v;
    while ((v = __atomic_load_n(w, __ATOMIC_ACQUIRE)) != mine) futex_wait(w, v);
}

static void raw_side(uint32_t *w, uint32_t mine)
{
    for (long i = 0; i < n_rounds; i++) {
        raw_wait_turn(w, mine);
        __atomic_store_n(w, !mine, __ATOMIC_RELEASE);
        futex_wake(w, 1);
    }
}

typedef struct {
    mpool_event_t *ping, *pong;
    mpool_cond_t *cond;
    int turn;
} pp_t;

static void event_side(pp_t *p, bool parent)
{
    for (long i = 0; i < n_rounds; i++) {
        if (parent) {
            mpool_event_clear(p->pong);
            mpool_event_set(p->ping);
            mpool_event_wait(p->pong, MPOOL_FOREVER);
        } else {
            mpool_event_wait(p->ping, MPOOL_FOREVER);
            mpool_event_clear(p->ping);
            mpool_event_set(p->pong);
        }
    }
}

static void cond_side(pp_t *p, bool parent)
{
    int mine = parent ? 0 : 1;
    mpool_cond_acquire(p->cond, MPOOL_FOREVER);
    for (long i = 0; i < n_rounds; i++) {
        while (p->turn != mine) mpool_cond_wait(p->cond, MPOOL_FOREVER);
        p->turn = !mine;
        mpool_cond_notify(p->cond, 1);
    }
    mpool_cond_release(p->cond);
}

enum { PP_RAW, PP_EVENT, PP_COND };

static void pp_side(int kind, void *obj, bool parent)
{
    switch (kind) {
    case PP_RAW:
        raw_side(obj, !parent);
        break;
    case PP_EVENT:
        event_side(obj, parent);
        break;
    default:
        cond_side(obj, parent);
        break;
    }
}

static double pingpong_once(int kind)
{
    pp_t *p = mpool_shm_alloc(sizeof *p);
    p->ping = mpool_event_new();
    p->pong = mpool_event_new();
    p->cond = mpool_cond_new(NULL);
    /* raw: the word starts at 0, the parent's "not my turn" is 1. */
    void *obj = kind == PP_RAW ? (void *)&p->turn : (void *)p;
    if (kind == PP_COND) p->turn = 1;
    fflush(NULL);
    double t = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        pp_side(kind, obj, false);
        _exit(0);
    }
    pp_side(kind, obj, true);
    waitpid(pid, NULL, 0);
    t = bench_now() - t;
    mpool_event_free(p->ping);
    mpool_event_free(p->pong);
    mpool_cond_free(p->cond);
    mpool_shm_free(p);
    return t / (double)n_rounds * 1e6;
}

static void bench_pingpong(void)
{
    static const char *names[] = {"pingpong_raw_futex", "pingpong_mpool_event",
                                  "pingpong_mpool_cond"};
    for (int k = PP_RAW; k <= PP_COND; k++) bench_result(names[k], pingpong_once(k), "us");
}

int main(void)
{
    bool quick = bench_quick();
    n_uncontended = quick ? 100000 : 10000000;
    n_contended = quick ? 20000 : 1000000;
    n_rounds = quick ? 500 : 20000;
    bench_uncontended();
    bench_contended();
    bench_pingpong();
    bench_ratio("mpool/glibc_pshared_lock_uncontended", "lock_uncontended_mpool",
                "lock_uncontended_glibc_pshared");
    bench_ratio("mpool/glibc_robust_lock_uncontended", "lock_uncontended_mpool",
                "lock_uncontended_glibc_robust");
    bench_ratio("mpool/raw_futex_lock_uncontended", "lock_uncontended_mpool",
                "lock_uncontended_raw_futex");
    bench_ratio("mpool/glibc_pshared_lock_contended", "lock_contended_mpool_total",
                "lock_contended_glibc_pshared_total");
    bench_ratio("mpool_event/raw_futex_pingpong", "pingpong_mpool_event", "pingpong_raw_futex");
    bench_ratio("mpool_cond/raw_futex_pingpong", "pingpong_mpool_cond", "pingpong_raw_futex");
    return 0;
}
