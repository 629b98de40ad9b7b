/* Fault injection: while maps, queue transfers and lock hand-offs run, a
 * chaos process SIGKILLs random processes of the family at random moments.
 * Every item must be accounted for exactly once, nothing may hang (every
 * wait here is bounded), and no process, zombie or descriptor is left.
 * Also: signals to the parent during a map leave no orphan, and exit() in
 * a task is a worker death. Figures are printed for docs/RELIABILITY.md. */
// ctest-timeout: 300
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/* ---- the chaos process ---------------------------------------------------- */

/* The parent pid of `pid`, or 0 once it is gone. */
static pid_t parent_of(pid_t pid)
{
    char st;
    pid_t pp;
    return tu_stat(pid, &st, &pp) ? pp : 0;
}

/* Live descendants of `root` (not zombies), at most `max`. */
static int descendants(pid_t root, pid_t *out, int max)
{
    int n = 0;
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0 || tu_pid_gone(pid)) continue;
        for (pid_t p = parent_of(pid), hops = 0; p > 1 && hops < 16; p = parent_of(p), hops++)
            if (p == root) {
                out[n++] = pid;
                break;
            }
    }
    closedir(d);
    return n;
}

typedef struct {
    atomic_int stop;
    atomic_int kills;
    pid_t root;     /* whose descendants are targets */
    pid_t spare[8]; /* never killed (besides the chaos process itself) */
    int max_gap_us; /* random pause between kills: 0..max_gap_us */
    int max_kills;  /* the chaos process ends after that many (0: no limit) */
} chaos_t;

static int chaos_main(void *arg)
{
    chaos_t *c = arg;
    unsigned seed = (unsigned)getpid();
    pid_t me = getpid(), victims[256];
    while (!atomic_load(&c->stop)) {
        usleep((useconds_t)(rand_r(&seed) % (unsigned)c->max_gap_us)); /* chaos timing */
        int n = descendants(c->root, victims, 256), k = 0;
        pid_t pick[256];
        for (int i = 0; i < n; i++) {
            bool spare = victims[i] == me;
            for (int j = 0; j < 8; j++) spare |= victims[i] == c->spare[j];
            if (!spare) pick[k++] = victims[i];
        }
        if (k == 0 || atomic_load(&c->stop)) continue;
        if (kill(pick[rand_r(&seed) % (unsigned)k], SIGKILL) == 0 &&
            atomic_fetch_add(&c->kills, 1) + 1 == c->max_kills)
            break;
    }
    return 0;
}

static chaos_t *chaos_start(pid_t *pid, int max_gap_us, int max_kills)
{
    chaos_t *c = mpool_shm_alloc(sizeof *c);
    assert_non_null(c);
    c->root = getpid();
    c->max_gap_us = max_gap_us;
    c->max_kills = max_kills;
    *pid = tu_fork(chaos_main, c);
    assert_true(*pid > 0);
    return c;
}

static int chaos_stop(chaos_t *c, pid_t pid)
{
    atomic_store(&c->stop, 1);
    assert_int_equal(tu_wait(pid, 10), 0);
    int kills = atomic_load(&c->kills);
    mpool_shm_free(c);
    return kills;
}

/* ---- pool under fire ------------------------------------------------------ */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ULL;
    return x ^ (x >> 29);
}

static int work(const void *in, void *out, void *ctx)
{
    (void)ctx;
    uint64_t x = *(const uint64_t *)in;
    for (int i = 0; i < 2000; i++) x = mix(x + (uint64_t)i); /* some microseconds */
    *(uint64_t *)out = x;
    return 0;
}

static void pool_survives_random_kills(void **state)
{
    (void)state;
    int fds = tu_count_fds(), kids = tu_count_children();
    mpool_pool_opts_t o = {.processes = 3};
    mpool_pool_t *pool = mpool_pool_new(&o);
    assert_non_null(pool);
    enum { N = 3000, ROUNDS = 80 };
    uint64_t *in = mpool_shm_alloc(N * sizeof *in), want[N], out;
    unsigned char *seen = calloc(N, 1);
    for (size_t i = 0; i < N; i++) {
        in[i] = i * 7919;
        work(&in[i], &want[i], NULL);
    }
    pid_t cpid;
    chaos_t *c = chaos_start(&cpid, 10000, 0);
    long items = 0, failed = 0, hangs = 0, wrong = 0, lost = 0;
    for (int r = 0; r < ROUNDS; r++) {
        size_t chunk = (size_t[]){0, 1, 7, 100}[r % 4];
        mpool_iter_t *it = mpool_pool_imap_unordered(pool, work, in, N, 8, 8, chunk);
        assert_non_null(it);
        memset(seen, 0, N);
        for (;;) {
            size_t idx = SIZE_MAX;
            int rc = mpool_iter_next(it, &out, &idx, 60);
            if (rc == ENODATA) break;
            if (rc == ETIMEDOUT) {
                hangs++;
                break;
            }
            assert_true(idx < N);
            seen[idx]++;
            items++;
            if (rc == MPOOL_EWORKER)
                failed++;
            else if (rc != 0 || out != want[idx])
                wrong++;
        }
        for (size_t i = 0; i < N; i++) lost += seen[i] != 1;
        mpool_iter_free(it);
    }
    int kills = chaos_stop(c, cpid);
    /* Afterwards the pool is exact again. */
    uint64_t *res = malloc(N * sizeof *res);
    assert_int_equal(mpool_pool_map(pool, work, in, N, 8, res, 8, 0), 0);
    assert_memory_equal(res, want, sizeof want);
    free(res);
    assert_int_equal(mpool_pool_close(pool), 0);
    assert_int_equal(mpool_pool_join(pool, 30), 0);
    mpool_pool_free(pool);
    mpool_shm_free(in);
    free(seen);
    print_message("pool chaos: %d rounds, %d kills, %ld items, %ld MPOOL_EWORKER, %ld wrong, "
                  "%ld lost, %ld hangs\n",
                  ROUNDS, kills, items, failed, wrong, lost, hangs);
    assert_int_equal(hangs, 0);
    assert_int_equal(wrong, 0);
    assert_int_equal(lost, 0);
    assert_true(kills > 0);
    assert_true(failed <= kills * 3); /* a killed fork server fails each running item */
    assert_int_equal(tu_count_children(), kids);
    assert_int_equal(tu_count_fds(), fds);
}

/* ---- queue under fire ----------------------------------------------------- */

enum { PRODUCERS = 3, CONSUMERS = 3, PER_PRODUCER = 20000 };

typedef struct {
    mpool_queue_t *q;
    atomic_int stop;
    atomic_uint acked[PRODUCERS];              /* puts that returned 0 */
    atomic_uchar got[PRODUCERS][PER_PRODUCER]; /* times each item arrived */
    int id;
} qshared_t;

typedef struct {
    qshared_t *s;
    int id;
} qarg_t;

static int q_producer(void *arg)
{
    qarg_t *a = arg;
    for (uint32_t seq = 0; seq < PER_PRODUCER && !atomic_load(&a->s->stop);) {
        uint32_t item[2] = {(uint32_t)a->id, seq};
        for (volatile int spin = 0; spin < 2000; spin++) {
        } /* a few microseconds of work per item, so the chaos strikes mid-run */
        int r = mpool_queue_put(a->s->q, item, sizeof item, 1);
        if (r == ETIMEDOUT) continue;
        if (r) return 1;
        atomic_store(&a->s->acked[a->id], ++seq);
    }
    return 0;
}

static int q_consumer(void *arg)
{
    qarg_t *a = arg;
    for (;;) {
        uint32_t item[2];
        size_t len;
        int r = mpool_queue_get(a->s->q, item, sizeof item, &len, 60);
        if (r == EPIPE) return 0;
        if (r || len != sizeof item || item[0] >= PRODUCERS || item[1] >= PER_PRODUCER) return 1;
        atomic_fetch_add(&a->s->got[item[0]][item[1]], 1);
    }
}

/* One wave: fresh producers and consumers on a fresh queue, at most two
 * kills (so a consumer is always left), then a full accounting. */
static void queue_wave(qshared_t *s, int *kills, int *consumer_deaths, long *acked, long *received,
                       long *lost, long *twice)
{
    memset(s, 0, sizeof *s);
    s->q = mpool_queue_new(64, 8);
    assert_non_null(s->q);
    qarg_t args[PRODUCERS + CONSUMERS];
    mpool_process_t *ps[PRODUCERS + CONSUMERS];
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) {
        args[i] = (qarg_t){s, i < PRODUCERS ? i : i - PRODUCERS};
        ps[i] = mpool_process_new(i < PRODUCERS ? q_producer : q_consumer, &args[i], NULL);
        assert_int_equal(mpool_process_start(ps[i]), 0);
    }
    pid_t cpid;
    chaos_t *c = chaos_start(&cpid, 30000, 2);
    /* Producers end by themselves (or are killed); none may hang. */
    for (int i = 0; i < PRODUCERS; i++) assert_int_equal(mpool_process_join(ps[i], 120), 0);
    *kills += chaos_stop(c, cpid);
    mpool_queue_close(s->q);
    int deaths = 0;
    for (int i = PRODUCERS; i < PRODUCERS + CONSUMERS; i++) {
        assert_int_equal(mpool_process_join(ps[i], 60), 0);
        int code = 0;
        assert_true(mpool_process_exitcode(ps[i], &code));
        deaths += code == -SIGKILL;
        if (code != -SIGKILL) assert_int_equal(code, 0);
    }
    long wave_lost = 0;
    for (int p = 0; p < PRODUCERS; p++) {
        unsigned a = atomic_load(&s->acked[p]);
        *acked += a;
        for (unsigned q = 0; q < PER_PRODUCER; q++) {
            unsigned g = atomic_load(&s->got[p][q]);
            *received += g;
            *twice += g > 1;
            if (q < a && g == 0) wave_lost++;
        }
    }
    /* An item a killed consumer had taken dies with it: at most one each. */
    assert_true(wave_lost <= deaths);
    *lost += wave_lost;
    *consumer_deaths += deaths;
    for (int i = 0; i < PRODUCERS + CONSUMERS; i++) mpool_process_free(ps[i]);
    mpool_queue_free(s->q);
}

static void queue_survives_random_kills(void **state)
{
    (void)state;
    int kids = tu_count_children(), kills = 0, consumer_deaths = 0, waves = 6;
    long acked = 0, received = 0, lost = 0, twice = 0;
    qshared_t *s = mpool_shm_alloc(sizeof *s);
    assert_non_null(s);
    for (int w = 0; w < waves; w++)
        queue_wave(s, &kills, &consumer_deaths, &acked, &received, &lost, &twice);
    print_message("queue chaos: %d waves, %d kills (%d consumers), %ld items acknowledged, "
                  "%ld received, %ld duplicated, %ld lost in killed consumers' hands\n",
                  waves, kills, consumer_deaths, acked, received, twice, lost);
    assert_int_equal(twice, 0);
    assert_true(kills > 0);
    mpool_shm_free(s);
    assert_int_equal(tu_count_children(), kids);
}

/* ---- lock hand-offs under fire ------------------------------------------- */

enum { LOCKERS = 4 };

typedef struct {
    mpool_lock_t *lock;
    atomic_int stop;
    uint64_t counter;       /* under the lock */
    uint64_t done[LOCKERS]; /* under the lock: increments each process made */
    atomic_int ownerdead;
} lshared_t;

typedef struct {
    lshared_t *s;
    int id;
} larg_t;

static int locker(void *arg)
{
    larg_t *a = arg;
    while (!atomic_load(&a->s->stop)) {
        int r = mpool_lock_acquire(a->s->lock, 30);
        if (r == EOWNERDEAD)
            atomic_fetch_add(&a->s->ownerdead, 1);
        else if (r)
            return 1;
        a->s->counter++;
        a->s->done[a->id]++;
        if (mpool_lock_release(a->s->lock)) return 2;
    }
    return 0;
}

static void lock_survives_random_kills(void **state)
{
    (void)state;
    lshared_t *s = mpool_shm_alloc(sizeof *s);
    s->lock = mpool_lock_new();
    larg_t args[LOCKERS];
    mpool_process_t *ps[LOCKERS];
    int started = 0, kills_total = 0;
    /* Waves: start lockers, kill some at random, stop the rest; the lock and
     * the count must stay exact up to one increment per kill. */
    for (int wave = 0; wave < 10; wave++) {
        atomic_store(&s->stop, 0);
        for (int i = 0; i < LOCKERS; i++) {
            args[i] = (larg_t){s, i};
            ps[i] = mpool_process_new(locker, &args[i], NULL);
            assert_int_equal(mpool_process_start(ps[i]), 0);
            started++;
        }
        pid_t cpid;
        chaos_t *c = chaos_start(&cpid, 30000, 2);
        assert_int_equal(tu_wait(cpid, 30), 0); /* it ends after its second kill */
        kills_total += atomic_load(&c->kills);
        mpool_shm_free(c);
        atomic_store(&s->stop, 1);
        for (int i = 0; i < LOCKERS; i++) {
            assert_int_equal(mpool_process_join(ps[i], 30), 0);
            int code;
            assert_true(mpool_process_exitcode(ps[i], &code));
            assert_true(code == 0 || code == -SIGKILL);
            mpool_process_free(ps[i]);
        }
    }
    /* The lock still works and the books balance to within one per kill. */
    int r = mpool_lock_acquire(s->lock, 5);
    assert_true(r == 0 || r == EOWNERDEAD);
    uint64_t sum = 0;
    for (int i = 0; i < LOCKERS; i++) sum += s->done[i];
    assert_int_equal(mpool_lock_release(s->lock), 0);
    print_message("lock chaos: %d processes, %d kills, %d EOWNERDEAD hand-offs, %llu increments, "
                  "book gap %llu\n",
                  started, kills_total, atomic_load(&s->ownerdead), (unsigned long long)s->counter,
                  (unsigned long long)(s->counter - sum));
    assert_true(s->counter >= sum && s->counter - sum <= (uint64_t)kills_total);
    assert_true(kills_total > 0);
    mpool_lock_free(s->lock);
    mpool_shm_free(s);
}

/* ---- signals and exit ------------------------------------------------------ */

static int endless(const void *in, void *out, void *ctx)
{
    (void)in, (void)ctx;
    for (volatile uint64_t i = 0;; i++) *(uint64_t *)out = i;
    return 0;
}

/* A program that starts a pool and maps forever; reports "ready" on fd. */
static int mapping_parent(void *arg)
{
    int fd = *(int *)arg;
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool) return 1;
    static uint64_t in[8], out[8];
    mpool_async_t *a = mpool_pool_map_async(pool, endless, in, 8, 8, out, 8, 1);
    if (!a) return 2;
    (void)!write(fd, "r", 1);
    mpool_async_wait(a, MPOOL_FOREVER);
    return 3;
}

static void no_orphan_after_signal(int sig)
{
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t parent = tu_fork(mapping_parent, &fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    pid_t family[64];
    int n = descendants(parent, family, 64), pidfds[64];
    assert_true(n >= 3); /* fork server and two workers at least */
    for (int i = 0; i < n; i++) pidfds[i] = (int)syscall(SYS_pidfd_open, family[i], 0);
    kill(parent, sig);
    assert_int_equal(tu_wait(parent, 10), -sig);
    for (int i = 0; i < n; i++) {
        if (pidfds[i] < 0) continue; /* already gone */
        struct pollfd p = {.fd = pidfds[i], .events = POLLIN};
        assert_int_equal(poll(&p, 1, 10000), 1); /* it ended */
        close(pidfds[i]);
    }
    close(fds[0]);
    close(fds[1]);
}

static void sigint_to_parent_leaves_no_orphan(void **state)
{
    (void)state;
    no_orphan_after_signal(SIGINT);
}

static void sigterm_to_parent_leaves_no_orphan(void **state)
{
    (void)state;
    no_orphan_after_signal(SIGTERM);
}

static void sigkill_to_parent_leaves_no_orphan(void **state)
{
    (void)state;
    no_orphan_after_signal(SIGKILL);
}

static int exits(const void *in, void *out, void *ctx)
{
    (void)ctx;
    if (*(const int *)in == 3) exit(7);
    *(int *)out = *(const int *)in;
    return 0;
}

static void exit_in_a_task_is_a_worker_death(void **state)
{
    (void)state;
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    int in[6] = {0, 1, 2, 3, 4, 5}, out[6] = {0};
    mpool_async_t *a = mpool_pool_map_async(pool, exits, in, 6, sizeof(int), out, sizeof(int), 1);
    assert_int_equal(mpool_async_get(a, 30), MPOOL_EWORKER);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.index, 3);
    assert_int_equal(f.code, MPOOL_EWORKER);
    assert_int_equal(f.status, 0);
    for (int i = 0; i < 6; i++)
        if (i != 3) assert_int_equal(out[i], i);
    mpool_async_free(a);
    mpool_pool_free(pool);
}

/* ---- the caller's SIGCHLD policy, subreapers, pid reuse, fork failure ---- */

static int square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    *(long *)out = *(const long *)in * *(const long *)in;
    return 0;
}

/* Forks since boot, all processes of the system (/proc/stat "processes"). */
static long forks_so_far(void)
{
    char line[256];
    long n = -1;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "processes %ld", &n) == 1) break;
    fclose(f);
    return n;
}

static void reaping_handler(int sig)
{
    (void)sig;
    int e = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = e;
}

/* A map, close and join(3 s) under the caller's SIGCHLD policy; 0 when the
 * join succeeded, nothing is left and the pool did not fork in a loop. */
static int join_under_sigchld_policy(void *arg)
{
    struct sigaction sa = {.sa_flags = SA_RESTART};
    sa.sa_handler = arg ? reaping_handler : SIG_IGN;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGCHLD, &sa, NULL)) return 10;
    long forks = forks_so_far();
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool) return 11;
    long in[64], out[64];
    for (int i = 0; i < 64; i++) in[i] = i;
    if (mpool_pool_map(pool, square, in, 64, sizeof(long), out, sizeof(long), 0)) return 12;
    for (int i = 0; i < 64; i++)
        if (out[i] != (long)i * i) return 13;
    if (mpool_pool_close(pool)) return 14;
    double t0 = tu_now();
    int rc = mpool_pool_join(pool, 3.0);
    double took = tu_now() - t0;
    mpool_pool_free(pool);
    long forked = forks_so_far() - forks;
    printf("  SIGCHLD %s: join %s in %.3f s, %ld forks in the system meanwhile\n",
           arg ? "reaped by a handler" : "SIG_IGN", rc ? "failed" : "returned 0", took, forked);
    fflush(stdout);
    if (rc) return 15;
    if (tu_count_children()) return 16;
    /* Three forks of ours; the rest is the machine's other work. A fork loop
     * makes thousands a second. */
    if (forked > 2000) return 17;
    return 0;
}

static void join_succeeds_when_sigchld_is_ignored(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(join_under_sigchld_policy, NULL), 30), 0);
}

static void join_succeeds_under_a_reaping_sigchld_handler(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(join_under_sigchld_policy, (void *)1), 30), 0);
}

static int slow_square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    usleep(2000); /* a task that takes a while */
    return square(in, out, NULL);
}

/* SIG_IGN, a map running, close, then the fork server SIGKILLed: its exit
 * status is lost (auto-reaped) and it did not exit cleanly, so the pool
 * must replace it once, finish the work, and join. */
static int server_killed_after_close_under_sig_ign(void *arg)
{
    (void)arg;
    signal(SIGCHLD, SIG_IGN);
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool) return 10;
    pid_t server = 0;
    if (tu_children(getpid(), true, &server, 1) != 1) return 11;
    static long in[400], out[400];
    for (int i = 0; i < 400; i++) in[i] = i;
    mpool_async_t *a =
        mpool_pool_map_async(pool, slow_square, in, 400, sizeof(long), out, sizeof(long), 10);
    if (!a) return 12;
    mpool_pool_close(pool);
    kill(server, SIGKILL); /* the test's own child, not yet exited: its pid */
    int rc = mpool_async_get(a, 30);
    if (rc != 0 && rc != MPOOL_EWORKER) return 13; /* items running at the kill fail */
    size_t failed = 0;                             /* at most the two items running at the kill */
    for (int i = 0; i < 400; i++) failed += out[i] != (long)i * i;
    if ((rc == 0 && failed) || failed > 2) return 14;
    if (mpool_pool_join(pool, 10) != 0) return 16;
    mpool_async_free(a);
    mpool_pool_free(pool);
    return tu_count_children() ? 17 : 0;
}

static void join_after_server_killed_with_sigchld_ignored(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(server_killed_after_close_under_sig_ign, NULL), 60), 0);
}

static int sleeper(void *arg)
{
    (void)arg;
    pause(); /* killed by the test */
    return 0;
}

/* Forks a sleeper that gets pid `want` (through ns_last_pid); 0 if the
 * pid went to someone else (the machine forks too) or cannot be steered. */
static pid_t fork_with_pid(pid_t want)
{
    for (int tries = 0; tries < 50; tries++) {
        FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
        if (!f) return 0;
        fprintf(f, "%d", (int)want - 1);
        if (fclose(f)) return 0;
        pid_t pid = tu_fork(sleeper, NULL);
        if (pid == want) return pid;
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    return 0;
}

/* With SIGCHLD ignored the fork server is reaped as soon as it exits after
 * close; its pid is handed to a new process; free must not touch it. */
static int free_after_pid_reuse(void *arg)
{
    (void)arg;
    signal(SIGCHLD, SIG_IGN);
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool) return 10;
    pid_t server = 0;
    if (tu_children(getpid(), true, &server, 1) != 1) return 11;
    int pidfd = (int)syscall(SYS_pidfd_open, server, 0);
    if (pidfd < 0) return 12;
    long in[8] = {0}, out[8];
    if (mpool_pool_map(pool, square, in, 8, sizeof(long), out, sizeof(long), 1)) return 13;
    mpool_pool_close(pool);
    struct pollfd pfd = {.fd = pidfd, .events = POLLIN};
    if (poll(&pfd, 1, 10000) != 1) return 14; /* the server exits by itself */
    close(pidfd);
    signal(SIGCHLD, SIG_DFL); /* the sleeper is reaped by this test */
    pid_t other = fork_with_pid(server);
    if (!other) return 99; /* could not recycle the pid: skipped */
    mpool_pool_free(pool);
    int st;
    pid_t r = waitpid(other, &st, WNOHANG);
    kill(other, SIGKILL);
    waitpid(other, NULL, 0);
    return r == 0 ? 0 : 15; /* 0: the sleeper was still alive after free */
}

/* Runs fn in a forked child (timeout in seconds): its exit code 99 means
 * "cannot be set up here" (skip), anything but 0 fails the test. */
static void in_child(int (*fn)(void *), double timeout)
{
    int rc = tu_wait(tu_fork(fn, NULL), timeout);
    if (rc == 99) skip();
    assert_int_equal(rc, 0);
}

static void free_spares_a_process_that_reused_the_server_pid(void **state)
{
    (void)state;
    in_child(free_after_pid_reuse, 30);
}

/* As an unprivileged user with RLIMIT_NPROC 3: the fork server and a first
 * worker start, the next worker's fork fails. pool_new must say EAGAIN at
 * once and leave nothing behind. */
static int new_under_nproc_limit(void *arg)
{
    (void)arg;
    if (setgid(65534) || setuid(65534)) return 99;
    struct rlimit rl = {3, 3};
    if (setrlimit(RLIMIT_NPROC, &rl)) return 99;
    mpool_pool_opts_t o = {.processes = 4};
    double t0 = tu_now();
    mpool_pool_t *pool = mpool_pool_new(&o);
    int err = errno;
    double took = tu_now() - t0;
    printf("  pool_new, 4 workers, RLIMIT_NPROC 3: %s after %.3f s\n",
           pool ? "succeeded" : strerror(err), took);
    fflush(stdout);
    if (pool) return 10;
    if (err != EAGAIN) return 11;
    if (took > 3.0 * tu_slack()) return 12;
    if (tu_count_children()) return 13;
    return 0;
}

static void pool_new_fails_promptly_when_a_worker_fork_fails(void **state)
{
    (void)state;
    if (geteuid() != 0) skip();
    in_child(new_under_nproc_limit, 60);
}

/* Zombie children of ours (anything left by the pool), sampled over
 * `seconds`: the most seen at once. */
static int zombies_over(double seconds)
{
    int most = 0;
    for (double end = tu_now() + seconds;;) {
        int n = tu_count_children();
        if (n > most) most = n;
        if (tu_now() > end) return most;
        usleep(10000); /* sampling: re-parenting has no event to wait on */
    }
}

/* As a child subreaper: free leaves no zombie, neither after an orderly
 * free nor after the fork server was killed from outside. */
static int free_as_subreaper(void *arg)
{
    (void)arg;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1)) return 99;
    long in[32] = {0}, out[32];
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool) return 10;
    if (mpool_pool_map(pool, square, in, 32, sizeof(long), out, sizeof(long), 1)) return 11;
    mpool_pool_free(pool);
    int left = zombies_over(0.3);
    printf("  subreaper, free: %d processes left\n", left);
    fflush(stdout);
    if (left) return 12;
    /* The server killed from outside: its workers come to us. */
    if (!(pool = mpool_pool_new(&o))) return 13;
    pid_t server = 0;
    if (tu_children(getpid(), true, &server, 1) != 1) return 14;
    kill(server, SIGKILL);
    /* Workers of the killed server may still claim a chunk before they die
     * (PDEATHSIG): such items fail with MPOOL_EWORKER, which is allowed. */
    int mrc = mpool_pool_map(pool, square, in, 32, sizeof(long), out, sizeof(long), 1);
    if (mrc != 0 && mrc != MPOOL_EWORKER) return 15;
    mpool_pool_free(pool);
    left = zombies_over(0.3);
    printf("  subreaper, server killed, then free: %d processes left\n", left);
    fflush(stdout);
    return left ? 16 : 0;
}

static void free_leaves_no_zombie_for_a_subreaper(void **state)
{
    (void)state;
    in_child(free_as_subreaper, 60);
}

/* With the descriptor table full, the fork succeeds but pidfd_open does
 * not: pool_new fails with EMFILE (a server it could only track by a bare
 * pid is not started) and leaves nothing behind. */
static int new_with_full_fd_table(void *arg)
{
    (void)arg;
    mpool_shm_free(mpool_shm_alloc(1)); /* the heap is ready before the table fills */
    struct rlimit rl = {64, 64};
    if (setrlimit(RLIMIT_NOFILE, &rl)) return 99;
    int last = -1;
    for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) last = fd;
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    int err = errno;
    if (pool) return 10;
    if (err != EMFILE) return 11;
    close(last); /* room to read /proc */
    if (tu_count_children()) return 12;
    return 0;
}

static void pool_new_fails_with_emfile_when_no_pidfd_can_be_had(void **state)
{
    (void)state;
    in_child(new_with_full_fd_table, 30);
}

static int sleeps(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    mpool_sem_release(ctx); /* "running" */
    sleep(30);              /* killed by free long before */
    return 0;
}

/* free of a pool whose workers are all busy: prompt, and nothing is left,
 * as a subreaper too. */
static int free_busy_as_subreaper(void *arg)
{
    (void)arg;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1)) return 99;
    mpool_sem_t *running = mpool_sem_new(0);
    mpool_pool_opts_t o = {.processes = 4, .ctx = running};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool || !running) return 10;
    long in[4] = {0}, out[4];
    mpool_async_t *a =
        mpool_pool_map_async(pool, sleeps, in, 4, sizeof(long), out, sizeof(long), 1);
    if (!a) return 11;
    for (int k = 0; k < 4; k++)
        if (mpool_sem_acquire(running, 10)) return 14;
    double t0 = tu_now();
    mpool_pool_free(pool);
    double took = tu_now() - t0;
    int left = zombies_over(0.3);
    printf("  free of 4 busy workers: %.3f s, %d processes left\n", took, left);
    fflush(stdout);
    mpool_sem_free(running);
    if (took > 2.0 * tu_slack()) return 12;
    return left ? 13 : 0;
}

static void free_of_busy_workers_is_prompt_and_complete(void **state)
{
    (void)state;
    in_child(free_busy_as_subreaper, 60);
}

/* ---- descriptors the caller had at pool_new --------------------------------- */

static int inherited_fd = -1;

static int write_inherited(const void *in, void *out, void *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    return write(inherited_fd, "w", 1) == 1 ? 0 : 1;
}

static void pool_closes_the_callers_descriptors_by_default(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0); /* not close-on-exec: the case at hand */
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    assert_non_null(pool);
    close(fds[1]);
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, (int)(5000 * tu_slack())), 1); /* EOF while the pool lives */
    char c;
    assert_int_equal(read(fds[0], &c, 1), 0);
    mpool_pool_free(pool);
    close(fds[0]);
}

static void pool_keeps_the_callers_descriptors_with_inherit_fds(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    inherited_fd = fds[1];
    mpool_pool_opts_t o = {.processes = 2, .inherit_fds = true};
    mpool_pool_t *pool = mpool_pool_new(&o);
    assert_non_null(pool);
    assert_int_equal(mpool_pool_apply(pool, write_inherited, NULL, 0, NULL, 0), 0);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    assert_int_equal(c, 'w');
    mpool_pool_free(pool);
    close(fds[0]);
    close(fds[1]);
}

/* A worker that dies right after publishing a chunk, before clearing its
 * slot (a fault injection point of the local backend, MPOOL_TEST_FAULT):
 * the server used to store the chunk's progress word again, which cleared
 * the REPORTED mark of an unordered iterator that had handed the chunk out
 * already, so it came out twice (or wrote into a job already freed). The
 * caller polls, to see each chunk the moment it is published. */
static void unordered_chunk_never_twice_after_a_death_at_publication(void **state)
{
    (void)state;
    setenv("MPOOL_TEST_FAULT", "die-after-publish", 1);
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *p = mpool_pool_new(&o);
    unsetenv("MPOOL_TEST_FAULT");
    assert_non_null(p);
    enum { N = 1500 }; /* one death per chunk: about 1 ms each */
    static long in[N];
    for (long i = 0; i < N; i++) in[i] = i;
    mpool_iter_t *it = mpool_pool_imap_unordered(p, square, in, N, sizeof *in, sizeof *in, 1);
    assert_non_null(it);
    static bool seen[N];
    size_t got = 0, twice = 0;
    for (double end = tu_now() + 60 * tu_slack(); got + twice < N && tu_now() < end;) {
        long y;
        size_t idx = SIZE_MAX;
        int err = mpool_iter_next(it, &y, &idx, 0);
        if (err == ETIMEDOUT) continue;
        if (err == ENODATA) break;
        assert_int_equal(err, 0);
        assert_true(idx < N);
        assert_int_equal(y, (long)idx * (long)idx);
        if (seen[idx])
            twice++;
        else
            got++;
        seen[idx] = true;
    }
    print_message("%zu chunks, each ending in a worker death: %zu handed out twice\n", got, twice);
    assert_int_equal(twice, 0);
    assert_int_equal(got, N);
    mpool_iter_free(it);
    mpool_pool_free(p);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* e.g. "*subreaper*" */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pool_survives_random_kills),
        cmocka_unit_test(queue_survives_random_kills),
        cmocka_unit_test(lock_survives_random_kills),
        cmocka_unit_test(sigint_to_parent_leaves_no_orphan),
        cmocka_unit_test(sigterm_to_parent_leaves_no_orphan),
        cmocka_unit_test(sigkill_to_parent_leaves_no_orphan),
        cmocka_unit_test(exit_in_a_task_is_a_worker_death),
        cmocka_unit_test(join_succeeds_when_sigchld_is_ignored),
        cmocka_unit_test(join_succeeds_under_a_reaping_sigchld_handler),
        cmocka_unit_test(join_after_server_killed_with_sigchld_ignored),
        cmocka_unit_test(free_spares_a_process_that_reused_the_server_pid),
        cmocka_unit_test(pool_new_fails_promptly_when_a_worker_fork_fails),
        cmocka_unit_test(free_leaves_no_zombie_for_a_subreaper),
        cmocka_unit_test(pool_new_fails_with_emfile_when_no_pidfd_can_be_had),
        cmocka_unit_test(free_of_busy_workers_is_prompt_and_complete),
        cmocka_unit_test(pool_closes_the_callers_descriptors_by_default),
        cmocka_unit_test(pool_keeps_the_callers_descriptors_with_inherit_fds),
        cmocka_unit_test(unordered_chunk_never_twice_after_a_death_at_publication),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
