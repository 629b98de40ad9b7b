// ctest-timeout: 300
/* Failures that explain themselves (pool.h, version 2): every failure kept
 * in index order with its attempts, address, message and backtrace; task
 * messages; the iterator's last failure; retries; a crash inside the
 * worker's own signal handler. Every wait is bounded.
 *
 * Under AddressSanitizer the test process (hence every worker) has ASan's
 * handlers for SIGSEGV, SIGBUS and SIGFPE, and ASan's sigaction
 * interceptor keeps them in place when a worker installs its own: they
 * turn the crash into an exit (status 0). The checks that need another
 * handler for those signals are skipped then (asan_has()); SIGABRT,
 * SIGKILL, the handler's own death and the rest run. */
#include "testutil.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>

#define WAIT 60.0

enum {
    T_OK,
    T_SEGV,
    T_FPE,
    T_ABORT,
    T_MSG,
    T_LONGMSG,
    T_UTF8,
    T_MSG_OK,
    T_FAIL,
    T_SLEEP,
    T_FLAKY,
    T_FLAKY_FAIL,
    T_ALWAYS,
    T_CHAOS,
    T_OVERFLOW
};

typedef struct {
    long x;
    int action;
} item_t;

/* Runs per item (shared heap: counted by the workers). */
static unsigned *runs;
static volatile pid_t *sleeper; /* T_SLEEP: the worker's pid, for the kill */
static bool asan_segv;

static bool asan_has(void)
{
    return asan_segv;
}

/* Named in backtraces: -rdynamic (CMakeLists.txt) exports it, and the
 * project's hidden visibility preset must not hide it. */
#define NAMED __attribute__((noinline, visibility("default")))

NAMED int crash_here(volatile int *p)
{
    *p = 1; /* a NULL write: fault_addr 0 */
    return *p;
}

NAMED long divide(long a, volatile long b)
{
    return a / b;
}

static volatile long deepest = LONG_MAX;

/* Recursion until the stack overflows (deepest is never reached). */
static long depth(long n)
{
    volatile char pad[256];
    pad[0] = (char)n;
    return n < deepest ? depth(n + 1) + pad[0] : n;
}

/* A tiny alternate stack with most of it unmapped: the worker's handler
 * itself dies on it. */
static void tiny_altstack(void)
{
    size_t size = 64 << 10;
    char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mprotect(m, size - 4096, PROT_NONE);
    stack_t ss = {.ss_sp = m, .ss_size = size};
    sigaltstack(&ss, NULL);
}

NAMED int task(const void *in, void *out, void *ctx);
int task(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const item_t *it = in;
    unsigned run = __atomic_add_fetch(&runs[it->x], 1, __ATOMIC_SEQ_CST);
    char big[600];
    switch (it->action) {
    case T_SEGV: /* not a tail call: task's frame must stay on the stack */
        *(long *)out = crash_here(NULL);
        return 0;
    case T_FPE:
        *(long *)out = divide(it->x, 0);
        return 0;
    case T_ABORT:
        abort();
    case T_MSG:
        mpool_task_error("bad record %ld: %s", it->x, "no tab\nhere");
        return 7;
    case T_LONGMSG:
        memset(big, 'a', sizeof big - 1);
        big[sizeof big - 1] = 0;
        mpool_task_error("%s", big);
        return 8;
    case T_UTF8:
        for (int k = 0; k < 200; k++) memcpy(big + 2 * k, "\xc3\xa9", 2); /* e acute */
        big[400] = 0;
        mpool_task_error("%s", big);
        return 9;
    case T_MSG_OK:
        mpool_task_error("dropped");
        break;
    case T_FAIL:
        return 5;
    case T_SLEEP:
        *sleeper = getpid();
        sleep(60);
        break;
    case T_FLAKY:
        if (run == 1) raise(SIGKILL);
        break;
    case T_FLAKY_FAIL:
        if (run == 1) raise(SIGKILL);
        return 4;
    case T_ALWAYS:
        raise(SIGKILL);
        break;
    case T_CHAOS:
        if (run == 1 && (it->x * 2654435761u) % 10 == 0) raise(SIGKILL);
        break;
    case T_OVERFLOW:
        tiny_altstack();
        return (int)depth(0);
    }
    *(long *)out = it->x * it->x;
    return 0;
}

static item_t *items(size_t n)
{
    item_t *in = mpool_shm_alloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++) in[i] = (item_t){(long)i, T_OK};
    memset(runs, 0, 4096 * sizeof *runs);
    return in;
}

static mpool_pool_t *pool(unsigned retries)
{
    mpool_pool_opts_t o = {.processes = 2, .retries = retries};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    return p;
}

/* The map's failures, all of them (n at most 64). */
static size_t failures(mpool_async_t *a, mpool_failure_t *f)
{
    assert_int_equal(mpool_async_wait(a, WAIT), 0);
    return mpool_async_failures(a, f, 64);
}

static void check_others(const item_t *in, const long *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (in[i].action == T_OK) assert_int_equal(out[i], (long)(i * i));
}

static void crash_at_a_known_function(void **state)
{
    (void)state;
    if (asan_has()) skip();
    size_t n = 200;
    item_t *in = items(n);
    in[17].action = T_SEGV;
    in[150].action = T_SEGV;
    long *out = calloc(n, sizeof *out);
    mpool_pool_t *p = pool(0);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 10);
    mpool_failure_t f[64];
    assert_int_equal(failures(a, f), 2);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(f[k].index, k ? 150 : 17);
        assert_int_equal(f[k].code, MPOOL_EWORKER);
        assert_int_equal(f[k].status, SIGSEGV);
        assert_int_equal(f[k].attempts, 1);
        assert_int_equal(f[k].fault_addr, 0);
        assert_non_null(f[k].backtrace);
        print_message("%s\n%s\n", f[k].message, f[k].backtrace);
        assert_non_null(strstr(f[k].message, "killed by SIGSEGV at address 0x0 in crash_here+0x"));
        assert_true(strncmp(f[k].backtrace, "crash_here+0x", 13) == 0);
        assert_non_null(strstr(f[k].backtrace, "\ntask+0x"));
    }
    char buf[4096];
    size_t len = mpool_failure_format(&f[0], buf, sizeof buf);
    assert_int_equal(len, strlen(buf));
    assert_non_null(strstr(buf, "\n  crash_here+0x"));
    assert_true(mpool_failure_format(&f[0], buf, 10) == len && strlen(buf) == 9);
    check_others(in, out, n);
    mpool_async_free(a);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static void sigfpe_and_abort(void **state)
{
    (void)state;
    /* Integer division by zero traps on x86 only (aarch64 returns 0). */
#if defined(__x86_64__) || defined(__i386__)
    bool no_fpe = asan_has();
#else
    bool no_fpe = true;
#endif
    size_t n = 40;
    item_t *in = items(n);
    in[3].action = no_fpe ? T_OK : T_FPE;
    in[30].action = T_ABORT;
    long *out = calloc(n, sizeof *out);
    mpool_pool_t *p = pool(0);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 4);
    mpool_failure_t f[64];
    size_t nf = failures(a, f), k = 0;
    assert_int_equal(nf, no_fpe ? 1 : 2);
    if (!no_fpe) {
        assert_int_equal(f[0].index, 3);
        assert_int_equal(f[0].status, SIGFPE);
        assert_true(f[0].fault_addr != 0); /* the faulting instruction */
        assert_non_null(strstr(f[0].message, "killed by SIGFPE at address 0x"));
        assert_non_null(f[0].backtrace);
        assert_true(strncmp(f[0].backtrace, "divide+0x", 9) == 0);
        k = 1;
    }
    assert_int_equal(f[k].index, 30);
    assert_int_equal(f[k].code, MPOOL_EWORKER);
    assert_int_equal(f[k].status, SIGABRT);
    assert_int_equal(f[k].fault_addr, 0);
    assert_non_null(f[k].backtrace);
    assert_non_null(strstr(f[k].backtrace, "abort"));
    assert_non_null(strstr(f[k].message, "killed by SIGABRT in "));
    check_others(in, out, n);
    mpool_async_free(a);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static void sigkill_from_outside_and_timeout(void **state)
{
    (void)state;
    size_t n = 10;
    item_t *in = items(n);
    in[4].action = T_SLEEP;
    long *out = calloc(n, sizeof *out);
    mpool_pool_t *p = pool(3); /* killed from outside: retried */
    *sleeper = 0;
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 1);
    for (int k = 0; k < 4; k++) { /* its first run and its 3 reruns */
        double end = tu_now() + WAIT;
        while (!*sleeper && tu_now() < end) usleep(1000);
        assert_true(*sleeper != 0);
        pid_t pid = *sleeper;
        *sleeper = 0;
        kill(pid, SIGKILL);
    }
    mpool_failure_t f[64];
    assert_int_equal(failures(a, f), 1);
    assert_int_equal(f[0].index, 4);
    assert_int_equal(f[0].status, SIGKILL);
    assert_int_equal(f[0].attempts, 4);
    assert_null(f[0].backtrace);
    print_message("%s\n", f[0].message);
    assert_true(strstr(f[0].message, "killed by SIGKILL (from outside the pool)") ||
                strstr(f[0].message, "killed by SIGKILL (by the OOM killer)"));
    assert_non_null(strstr(f[0].message, "after 4 attempts"));
    check_others(in, out, n);
    mpool_async_free(a);
    mpool_pool_free(p);

    mpool_pool_opts_t o = {.processes = 2, .task_timeout = 0.2, .retries = 2};
    p = mpool_pool_new(&o);
    assert_non_null(p);
    a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 1);
    assert_int_equal(failures(a, f), 1);
    assert_int_equal(f[0].attempts, 1); /* a timeout is not retried */
    assert_non_null(strstr(f[0].message, "killed by SIGKILL (task timeout)"));
    mpool_async_free(a);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static void task_messages(void **state)
{
    (void)state;
    assert_int_equal(mpool_task_error("outside"), EINVAL);
    size_t n = 12;
    item_t *in = items(n);
    in[1].action = T_MSG;
    in[2].action = T_MSG_OK;
    in[3].action = T_FAIL; /* after an item whose message was dropped: none */
    in[5].action = T_LONGMSG;
    in[8].action = T_UTF8;
    long *out = calloc(n, sizeof *out);
    mpool_pool_t *p = pool(0);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 12);
    mpool_failure_t f[64];
    assert_int_equal(failures(a, f), 4);
    assert_int_equal(f[0].index, 1);
    assert_int_equal(f[0].code, MPOOL_ETASK);
    assert_int_equal(f[0].status, 7);
    assert_string_equal(f[0].message, "item 1: task returned 7: bad record 1: no tab here");
    assert_null(f[0].backtrace);
    assert_string_equal(f[1].message, "item 3: task returned 5");
    const char *m = strstr(f[2].message, ": aaa");
    assert_non_null(m);
    assert_int_equal(strlen(m + 2), MPOOL_TASK_MSG_MAX);
    m = strstr(f[3].message, "returned 9: ");
    assert_non_null(m);
    m += strlen("returned 9: ");
    assert_int_equal(strlen(m), MPOOL_TASK_MSG_MAX - 1); /* cut before a split character */
    assert_int_equal(strlen(m) % 2, 0);
    assert_int_equal(mpool_async_get(a, 0), MPOOL_ETASK);
    mpool_failure_t first;
    assert_int_equal(mpool_async_failure(a, &first), 0);
    assert_string_equal(first.message, f[0].message);
    mpool_async_free(a);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static void failure_list_with_small_cap(void **state)
{
    (void)state;
    size_t n = 1000; /* records in a block of their own */
    item_t *in = items(n);
    for (size_t i = 0; i < n; i += 7) in[i].action = T_FAIL;
    long *out = calloc(n, sizeof *out);
    mpool_pool_t *p = pool(0);
    size_t before, after;
    mpool_shm_stats(NULL, &before);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 0);
    assert_int_equal(mpool_async_wait(a, WAIT), 0);
    size_t total = (n + 6) / 7;
    assert_int_equal(mpool_async_failures(a, NULL, 0), total);
    mpool_failure_t f[4];
    assert_int_equal(mpool_async_failures(a, f, 4), total);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(f[k].index, 7 * (size_t)k);
        assert_int_equal(f[k].status, 5);
        assert_int_equal(f[k].attempts, 1);
    }
    mpool_failure_t *all = calloc(total, sizeof *all);
    assert_int_equal(mpool_async_failures(a, all, total), total);
    for (size_t k = 0; k < total; k++) {
        assert_int_equal(all[k].index, 7 * k);
        assert_int_equal(all[k].status, 5); /* every failure's own status */
    }
    free(all);
    check_others(in, out, n);
    mpool_async_free(a);
    mpool_shm_stats(NULL, &after);
    assert_int_equal(after, before); /* records released with the call */
    assert_int_equal(mpool_async_failures(NULL, NULL, 0), 0);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static void iter_failure_both_orders(void **state)
{
    (void)state;
    size_t n = 300;
    item_t *in = items(n);
    for (size_t i = 3; i < n; i += 11) in[i].action = T_FAIL;
    in[100].action = T_ALWAYS;
    mpool_pool_t *p = pool(0);
    for (int ordered = 0; ordered < 2; ordered++) {
        mpool_iter_t *it =
            ordered ? mpool_pool_imap(p, task, in, n, sizeof *in, sizeof(long), 7)
                    : mpool_pool_imap_unordered(p, task, in, n, sizeof *in, sizeof(long), 7);
        assert_non_null(it);
        mpool_failure_t f;
        assert_int_equal(mpool_iter_failure(it, &f), ENODATA);
        size_t seen = 0;
        for (size_t k = 0; k < n; k++) {
            long v;
            size_t idx;
            int err = mpool_iter_next(it, &v, &idx, WAIT);
            if (ordered) assert_int_equal(idx, k);
            if (!err) {
                assert_int_equal(v, (long)(idx * idx));
                assert_int_equal(mpool_iter_failure(it, &f), ENODATA);
                continue;
            }
            seen++;
            assert_int_equal(mpool_iter_failure(it, &f), 0);
            assert_int_equal(f.index, idx);
            assert_int_equal(f.code, err);
            assert_int_equal(f.code, idx == 100 ? MPOOL_EWORKER : MPOOL_ETASK);
            assert_int_equal(f.status, idx == 100 ? SIGKILL : 5);
            assert_non_null(f.message);
        }
        assert_int_equal(seen, (n - 3 + 10) / 11 + 1);
        assert_int_equal(mpool_iter_failure(NULL, &f), EINVAL);
        mpool_iter_free(it);
    }
    mpool_pool_free(p);
    mpool_shm_free(in);
}

static void retries_flaky_and_deterministic(void **state)
{
    (void)state;
    size_t n = 100;
    item_t *in = items(n);
    in[10].action = T_FLAKY;
    in[20].action = T_FLAKY_FAIL;
    in[30].action = T_ALWAYS;
    long *out = calloc(n, sizeof *out);
    unsigned k = 3;
    mpool_pool_t *p = pool(k);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 5);
    mpool_failure_t f[64];
    assert_int_equal(failures(a, f), 2);
    assert_int_equal(runs[10], 2);
    assert_int_equal(out[10], 100); /* succeeded on its second run */
    assert_int_equal(f[0].index, 20);
    assert_int_equal(f[0].code, MPOOL_ETASK); /* its own verdict: not retried */
    assert_int_equal(f[0].attempts, 2);
    assert_int_equal(runs[20], 2);
    assert_int_equal(f[1].index, 30);
    assert_int_equal(f[1].code, MPOOL_EWORKER);
    assert_int_equal(f[1].attempts, k + 1);
    assert_int_equal(runs[30], k + 1);
    print_message("%s\n", f[1].message);
    for (size_t i = 0; i < n; i++)
        if (in[i].action == T_OK) assert_int_equal(runs[i], 1);
    check_others(in, out, n);
    mpool_async_free(a);
    mpool_pool_free(p);

    memset(runs, 0, 4096 * sizeof *runs);
    p = pool(0); /* the default: version-1 behaviour */
    a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 5);
    assert_int_equal(failures(a, f), 3);
    assert_int_equal(f[0].index, 10);
    assert_int_equal(f[0].attempts, 1);
    mpool_async_free(a);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

typedef struct {
    mpool_pool_t *p;
    volatile bool stop;
    int kills;
} chaos_t;

/* Kills a random worker (a grandchild: a child of the fork server) now
 * and then. */
static void *killer(void *arg)
{
    chaos_t *c = arg;
    pid_t server[4], workers[8];
    unsigned seed = 7;
    while (!c->stop && c->kills < 6) {
        usleep(20000);
        if (tu_children(getpid(), false, server, 4) < 1) continue;
        int nw = tu_children(server[0], false, workers, 8);
        if (nw < 1) continue;
        kill(workers[rand_r(&seed) % nw], SIGKILL);
        c->kills++;
    }
    return NULL;
}

static void chaos_with_retries(void **state)
{
    (void)state;
    size_t n = 4000;
    item_t *in = mpool_shm_alloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++) in[i] = (item_t){(long)(i % 4096), T_CHAOS};
    memset(runs, 0, 4096 * sizeof *runs);
    long *out = calloc(n, sizeof *out);
    mpool_pool_t *p = pool(2);
    chaos_t c = {p, false, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, killer, &c), 0);
    for (int round = 0; round < 3; round++) {
        memset(runs, 0, 4096 * sizeof *runs);
        memset(out, 0, n * sizeof *out);
        assert_int_equal(mpool_pool_map(p, task, in, n, sizeof *in, out, sizeof *out, 16), 0);
        for (size_t i = 0; i < n; i++) assert_int_equal(out[i], in[i].x * in[i].x);
    }
    c.stop = true;
    pthread_join(t, NULL);
    print_message("chaos: %d kills from outside\n", c.kills);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static void death_inside_the_handler(void **state)
{
    (void)state;
    size_t n = 8;
    item_t *in = items(n);
    in[5].action = T_OVERFLOW;
    long *out = calloc(n, sizeof *out);
    mpool_pool_t *p = pool(0);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 1);
    mpool_failure_t f[64];
    assert_int_equal(failures(a, f), 1);
    assert_int_equal(f[0].index, 5);
    assert_int_equal(f[0].code, MPOOL_EWORKER);
    print_message("%s\n", f[0].message);
    if (!asan_has()) {
        assert_int_equal(f[0].status, SIGSEGV);
        assert_null(f[0].backtrace);
    }
    check_others(in, out, n);
    mpool_async_free(a);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static void exits_42(int sig)
{
    (void)sig;
    _exit(42);
}

static int own_handler(void *arg)
{
    (void)arg;
    signal(SIGSEGV, exits_42);
    return 0;
}

/* A handler that the initializer installs wins over the pool's. */
static void initializer_handler_wins(void **state)
{
    (void)state;
    if (asan_has()) skip(); /* ASan's interceptor keeps its own SIGSEGV handler first */
    size_t n = 6;
    item_t *in = items(n);
    in[2].action = T_SEGV;
    long *out = calloc(n, sizeof *out);
    mpool_pool_opts_t o = {.processes = 2, .initializer = own_handler};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    mpool_async_t *a = mpool_pool_map_async(p, task, in, n, sizeof *in, out, sizeof *out, 1);
    mpool_failure_t f[64];
    assert_int_equal(failures(a, f), 1);
    assert_int_equal(f[0].status, 0);
    assert_null(f[0].backtrace);
    assert_non_null(strstr(f[0].message, "exited with status 42"));
    check_others(in, out, n);
    mpool_async_free(a);
    mpool_pool_free(p);
    free(out);
    mpool_shm_free(in);
}

static int bytes_task(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    if (len && *(const char *)in == 'x') {
        mpool_task_error("bytes item of %zu bytes", len);
        return 3;
    }
    return mpool_out_write(out, in, len);
}

/* Bytes calls report the same way, in the map and in the iterator. */
static void bytes_failures(void **state)
{
    (void)state;
    enum { N = 200 };
    mpool_bytes_t in[N], out[N];
    for (size_t i = 0; i < N; i++) in[i] = (mpool_bytes_t){i % 50 == 7 ? "xyz" : "abc", 3};
    mpool_pool_t *p = pool(0);
    mpool_async_t *a = mpool_pool_map_bytes_async(p, bytes_task, in, N, out, 3);
    assert_non_null(a);
    assert_int_equal(mpool_async_get(a, WAIT), MPOOL_ETASK);
    mpool_failure_t f[8];
    assert_int_equal(mpool_async_failures(a, f, 8), 4);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(f[k].index, 50 * (size_t)k + 7);
        assert_int_equal(f[k].status, 3);
        assert_non_null(strstr(f[k].message, "task returned 3: bytes item of 3 bytes"));
    }
    for (size_t i = 0; i < N; i++) free(out[i].data);
    mpool_async_free(a);
    mpool_iter_t *it = mpool_pool_imap_bytes(p, bytes_task, in, N, 3, true);
    for (size_t i = 0; i < N; i++) {
        mpool_bytes_t b;
        size_t idx;
        int err = mpool_iter_next_bytes(it, &b, &idx, WAIT);
        assert_int_equal(err, i % 50 == 7 ? MPOOL_ETASK : 0);
        if (err) {
            assert_int_equal(mpool_iter_failure(it, &f[0]), 0);
            assert_int_equal(f[0].index, idx);
            assert_non_null(strstr(f[0].message, "bytes item"));
        }
        free(b.data);
    }
    mpool_iter_free(it);
    mpool_pool_free(p);
}

int main(void)
{
    struct sigaction sa;
    sigaction(SIGSEGV, NULL, &sa);
    asan_segv = (sa.sa_flags & SA_SIGINFO) || sa.sa_handler != SIG_DFL;
    runs = mpool_shm_alloc(4096 * sizeof *runs);
    sleeper = mpool_shm_alloc(sizeof *sleeper);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crash_at_a_known_function),
        cmocka_unit_test(sigfpe_and_abort),
        cmocka_unit_test(sigkill_from_outside_and_timeout),
        cmocka_unit_test(task_messages),
        cmocka_unit_test(failure_list_with_small_cap),
        cmocka_unit_test(iter_failure_both_orders),
        cmocka_unit_test(retries_flaky_and_deterministic),
        cmocka_unit_test(chaos_with_retries),
        cmocka_unit_test(death_inside_the_handler),
        cmocka_unit_test(initializer_handler_wins),
        cmocka_unit_test(bytes_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
