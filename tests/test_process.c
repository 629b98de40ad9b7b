/* Processes: start, join with timeouts, exit codes and signals, sentinels,
 * daemons that die with their parent, stdio and atexit hygiene, bad input. */
// ctest-timeout: 120
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <sys/resource.h>

static int return_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

static int die_by_signal(void *arg)
{
    signal((int)(intptr_t)arg, SIG_DFL); /* cmocka catches SIGSEGV in its process */
    raise((int)(intptr_t)arg);
    return 0;
}

/* Blocks until the pipe's write end is written or closed. */
static int wait_on_pipe(void *arg)
{
    int *fds = arg;
    char c;
    close(fds[1]);
    return read(fds[0], &c, 1) == 1 ? c : 0;
}

static void exit_codes_and_signals(void **state)
{
    (void)state;
    struct {
        mpool_target_fn fn;
        intptr_t arg;
        int code;
    } cases[] = {{return_arg, 0, 0},
                 {return_arg, 7, 7},
                 {return_arg, 255, 255},
                 {return_arg, 256 + 3, 3},
                 {die_by_signal, SIGKILL, -SIGKILL},
                 {die_by_signal, SIGSEGV, -SIGSEGV},
                 {die_by_signal, SIGTERM, -SIGTERM}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mpool_process_t *p = mpool_process_new(cases[i].fn, (void *)cases[i].arg, NULL);
        assert_non_null(p);
        int code = 12345;
        assert_false(mpool_process_exitcode(p, &code));
        assert_int_equal(mpool_process_start(p), 0);
        assert_int_equal(mpool_process_join(p, 10), 0);
        assert_true(mpool_process_exitcode(p, &code));
        assert_int_equal(code, cases[i].code);
        assert_false(mpool_process_is_alive(p));
        assert_int_equal(mpool_process_join(p, 0), 0); /* joining again is fine */
        assert_int_equal(mpool_process_free(p), 0);
    }
}

static void join_times_out_then_succeeds(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    mpool_process_t *p = mpool_process_new(wait_on_pipe, fds, NULL);
    assert_false(mpool_process_is_alive(p));
    assert_int_equal(mpool_process_pid(p), 0);
    assert_int_equal(mpool_process_sentinel(p), -1);
    assert_int_equal(mpool_process_start(p), 0);
    assert_true(mpool_process_pid(p) > 0);
    assert_true(mpool_process_is_alive(p));

    assert_int_equal(mpool_process_join(p, 0), ETIMEDOUT);
    double t0 = tu_now();
    assert_int_equal(mpool_process_join(p, 0.2), ETIMEDOUT);
    double waited = tu_now() - t0;
    assert_true(waited >= 0.2 && waited < 5.0);
    assert_true(mpool_process_is_alive(p));
    assert_int_equal(mpool_process_free(p), EBUSY);

    /* The sentinel is not readable while it runs, readable once it ended. */
    struct pollfd pfd = {.fd = mpool_process_sentinel(p), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    assert_int_equal(write(fds[1], "\x2a", 1), 1);
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(mpool_process_join(p, 10), 0);
    int code;
    assert_true(mpool_process_exitcode(p, &code));
    assert_int_equal(code, 42);
    assert_false(mpool_process_is_alive(p));
    assert_int_equal(mpool_process_free(p), 0);
    close(fds[0]);
    close(fds[1]);
}

static void terminate_and_kill(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    mpool_process_t *t = mpool_process_new(wait_on_pipe, fds, NULL);
    mpool_process_t *k = mpool_process_new(wait_on_pipe, fds, NULL);
    assert_int_equal(mpool_process_start(t), 0);
    assert_int_equal(mpool_process_start(k), 0);
    assert_int_equal(mpool_process_terminate(t), 0);
    assert_int_equal(mpool_process_kill(k), 0);
    assert_int_equal(mpool_process_join(t, 10), 0);
    assert_int_equal(mpool_process_join(k, 10), 0);
    int code;
    assert_true(mpool_process_exitcode(t, &code));
    assert_int_equal(code, -SIGTERM);
    assert_true(mpool_process_exitcode(k, &code));
    assert_int_equal(code, -SIGKILL);
    /* Signalling a process that ended is harmless. */
    assert_int_equal(mpool_process_kill(k), 0);
    assert_int_equal(mpool_process_free(t), 0);
    assert_int_equal(mpool_process_free(k), 0);
    close(fds[0]);
    close(fds[1]);
}

static void names(void **state)
{
    (void)state;
    char name[] = "worker-a";
    mpool_process_opts_t o = {.name = name};
    mpool_process_t *a = mpool_process_new(return_arg, NULL, &o);
    name[0] = 'X'; /* the name was copied */
    assert_string_equal(mpool_process_name(a), "worker-a");
    mpool_process_t *b = mpool_process_new(return_arg, NULL, NULL);
    assert_memory_equal(mpool_process_name(b), "Process-", 8);
    assert_int_equal(mpool_process_free(a), 0);
    assert_int_equal(mpool_process_free(b), 0);
}

static void bad_arguments(void **state)
{
    (void)state;
    errno = 0;
    assert_null(mpool_process_new(NULL, NULL, NULL));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mpool_process_start(NULL), EINVAL);
    assert_int_equal(mpool_process_join(NULL, 1), EINVAL);
    assert_false(mpool_process_is_alive(NULL));
    assert_int_equal(mpool_process_pid(NULL), 0);
    assert_false(mpool_process_exitcode(NULL, NULL));
    assert_int_equal(mpool_process_terminate(NULL), EINVAL);
    assert_int_equal(mpool_process_kill(NULL), EINVAL);
    assert_int_equal(mpool_process_sentinel(NULL), -1);
    assert_null(mpool_process_name(NULL));
    assert_int_equal(mpool_process_free(NULL), 0);

    mpool_process_t *p = mpool_process_new(return_arg, NULL, NULL);
    assert_int_equal(mpool_process_join(p, 1), EINVAL);   /* before start */
    assert_int_equal(mpool_process_terminate(p), EINVAL); /* before start */
    assert_int_equal(mpool_process_free(p), 0);           /* never started */
    p = mpool_process_new(return_arg, NULL, NULL);
    assert_int_equal(mpool_process_start(p), 0);
    assert_int_equal(mpool_process_start(p), EINVAL); /* twice */
    assert_int_equal(mpool_process_join(p, 10), 0);
    assert_int_equal(mpool_process_start(p), EINVAL); /* after the end */
    assert_int_equal(mpool_process_free(p), 0);
}

static void no_descriptor_or_zombie_left(void **state)
{
    (void)state;
    int fds_before = tu_count_fds(), kids_before = tu_count_children();
    mpool_process_t *ps[40];
    for (int i = 0; i < 40; i++) {
        ps[i] = mpool_process_new(return_arg, (void *)(intptr_t)(i % 7), NULL);
        assert_int_equal(mpool_process_start(ps[i]), 0);
        int fl = fcntl(mpool_process_sentinel(ps[i]), F_GETFD);
        assert_true(fl >= 0 && (fl & FD_CLOEXEC));
    }
    for (int i = 0; i < 40; i++) {
        assert_int_equal(mpool_process_join(ps[i], 10), 0);
        int code;
        assert_true(mpool_process_exitcode(ps[i], &code));
        assert_int_equal(code, i % 7);
        assert_int_equal(mpool_process_free(ps[i]), 0);
    }
    assert_int_equal(tu_count_fds(), fds_before);
    assert_int_equal(tu_count_children(), kids_before);
}

/* A process that ended is reaped by free even without join. */
static void free_after_end_reaps(void **state)
{
    (void)state;
    int kids_before = tu_count_children();
    mpool_process_t *p = mpool_process_new(return_arg, NULL, NULL);
    assert_int_equal(mpool_process_start(p), 0);
    struct pollfd pfd = {.fd = mpool_process_sentinel(p), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(mpool_process_free(p), 0);
    assert_int_equal(tu_count_children(), kids_before);
}

/* ---- stdio and atexit hygiene, in a child whose stdout is a file ---- */

static int print_child(void *arg)
{
    (void)arg;
    printf("C");
    return 0;
}

static int atexit_fd = -1;
static void atexit_marker(void)
{
    (void)!write(atexit_fd, "A", 1);
}

static int stdio_scenario(void *arg)
{
    const char *path = arg;
    if (!freopen(path, "w", stdout)) return 10;
    atexit_fd = fileno(stdout);
    atexit(atexit_marker);
    printf("P"); /* buffered, not yet written: must not be printed twice */
    mpool_process_t *p = mpool_process_new(print_child, NULL, NULL);
    if (mpool_process_start(p) || mpool_process_join(p, 10)) return 11;
    mpool_process_free(p);
    fflush(stdout);
    exit(0); /* runs atexit in this process only: one "A" */
}

static void stdio_flushed_and_atexit_not_inherited(void **state)
{
    (void)state;
    char path[] = "/tmp/mpool-stdio-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(tu_wait(tu_fork(stdio_scenario, path), 20), 0);
    char buf[64] = {0};
    assert_true(read(fd, buf, sizeof buf - 1) >= 0);
    close(fd);
    unlink(path);
    assert_string_equal(buf, "PCA");
}

/* ---- daemons die with their parent, however it dies ---- */

static int block_forever(void *arg)
{
    (void)arg;
    for (;;) pause();
    return 0;
}

static int daemon_parent(void *arg)
{
    int *fds = arg;
    mpool_process_opts_t o = {.daemon = true};
    mpool_process_t *d = mpool_process_new(block_forever, NULL, &o);
    if (mpool_process_start(d)) return 1;
    pid_t pid = mpool_process_pid(d);
    if (write(fds[1], &pid, sizeof pid) != sizeof pid) return 2;
    for (;;) pause(); /* until the test SIGKILLs us */
    return 0;
}

static void daemon_dies_when_parent_is_killed(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    pid_t parent = tu_fork(daemon_parent, fds);
    pid_t daemon_pid = 0;
    assert_int_equal(read(fds[0], &daemon_pid, sizeof daemon_pid), sizeof daemon_pid);
    int dfd = (int)syscall(SYS_pidfd_open, daemon_pid, 0);
    assert_true(dfd >= 0);
    struct pollfd pfd = {.fd = dfd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0); /* alive while its parent lives */
    kill(parent, SIGKILL);
    assert_int_equal(tu_wait(parent, 10), -SIGKILL);
    assert_int_equal(poll(&pfd, 1, 10000), 1); /* then it ends */
    close(dfd);
    close(fds[0]);
    close(fds[1]);
}

/* ---- programs that ignore or reap SIGCHLD ---- */

/* On one CPU the child tends to run to its end before the parent's next
 * step, which is what widens every start/exit race. */
static void pin_to_cpu0(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    (void)sched_setaffinity(0, sizeof set, &set);
}

static void reap_everything(int sig)
{
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

/* arg 0: SIGCHLD ignored; 1: a handler that reaps every child. Starts many
 * short children; each must start (0, not ESRCH) and report its own exit
 * code. Returns 0, or 1 if a start failed, 2 if a code came back wrong. */
static int sigchld_scenario(void *arg)
{
    pin_to_cpu0();
    struct sigaction sa = {.sa_handler = arg ? reap_everything : SIG_IGN,
                           .sa_flags = SA_RESTART | SA_NOCLDSTOP};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGCHLD, &sa, NULL);
    int start_failed = 0, code_wrong = 0;
    for (int i = 0; i < 2000; i++) {
        mpool_process_t *p = mpool_process_new(return_arg, (void *)(intptr_t)(i % 200), NULL);
        if (!p) return 3;
        if (mpool_process_start(p) != 0) {
            start_failed++;
        } else {
            int code = -1;
            if (mpool_process_join(p, i % 2 ? 10.0 : MPOOL_FOREVER) != 0 ||
                !mpool_process_exitcode(p, &code) || code != i % 200)
                code_wrong++;
        }
        if (mpool_process_free(p) != 0) return 4;
    }
    if (start_failed || code_wrong)
        fprintf(stderr, "%s: %d of 2000 starts failed, %d exit codes wrong\n",
                arg ? "reaping handler" : "SIG_IGN", start_failed, code_wrong);
    return start_failed ? 1 : code_wrong ? 2 : 0;
}

static void start_and_exit_code_with_sigchld_ignored(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(sigchld_scenario, (void *)0), 100), 0);
}

static void start_and_exit_code_with_reaping_handler(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(sigchld_scenario, (void *)1), 100), 0);
}

/* ---- descriptor limits ---- */

/* Lowers the soft limit to a little above what is open, then fills the
 * table, leaving `leave` descriptors free. Returns the first descriptor of
 * the filler (they run up to the limit), or -1. */
static int fill_fd_table(int leave)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    rl.rlim_cur = (rlim_t)tu_count_fds() + 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
    int first = -1, fd;
    while ((fd = fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0 || (fd = open("/dev/null", O_RDONLY)) >= 0)
        if (first < 0) first = fd;
    if (errno != EMFILE) return -1;
    for (int i = 0; i < leave; i++) close((int)rl.rlim_cur - 1 - i);
    return first;
}

/* Closes the filler, except `keep` (what took a slot left free). */
static void unfill_fd_table(int first, int keep)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    for (int fd = first; fd < (int)rl.rlim_cur; fd++)
        if (fd != keep) close(fd);
}

/* A full table fails the start with EMFILE and leaves no child; one free
 * descriptor is enough for the pidfd. */
static int emfile_scenario(void *arg)
{
    (void)arg;
    mpool_process_t *p = mpool_process_new(return_arg, (void *)5, NULL);
    if (!p) return 1;
    int first = fill_fd_table(0);
    if (first < 0) return 2;
    int r = mpool_process_start(p);
    unfill_fd_table(first, -1);
    if (r != EMFILE) return 3;
    if (tu_count_children() != 0 || mpool_process_pid(p) != 0) return 4;
    first = fill_fd_table(1);
    if (first < 0) return 5;
    r = mpool_process_start(p);
    unfill_fd_table(first, mpool_process_sentinel(p));
    int code = -1;
    if (r != 0 || mpool_process_join(p, 10) != 0 || !mpool_process_exitcode(p, &code) || code != 5)
        return 6;
    if (mpool_process_free(p) != 0 || tu_count_children() != 0) return 7;
    return 0;
}

static void start_with_full_descriptor_table(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(emfile_scenario, NULL), 30), 0);
}

/* A thread whose first lock call comes with a full descriptor table must
 * still own the lock under its true identity: a waiter must not take it
 * from the live holder (EOWNERDEAD), and the holder's release must work. */
typedef struct {
    mpool_lock_t *lock;
    sem_t held, done;
    int acquired, released;
} emfile_lock_t;

static int sem_wait_for(sem_t *s, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)seconds;
    while (sem_timedwait(s, &ts) != 0)
        if (errno != EINTR) return errno;
    return 0;
}

static void *emfile_lock_thread(void *arg)
{
    emfile_lock_t *t = arg;
    int first = fill_fd_table(0);
    t->acquired = first < 0 ? -1 : mpool_lock_acquire(t->lock, 5);
    if (first >= 0) unfill_fd_table(first, -1);
    sem_post(&t->held);
    if (sem_wait_for(&t->done, 30) == 0 && t->acquired == 0)
        t->released = mpool_lock_release(t->lock);
    return NULL;
}

static int emfile_lock_scenario(void *arg)
{
    (void)arg;
    emfile_lock_t t = {.lock = mpool_lock_new()};
    if (!t.lock) return 1;
    sem_init(&t.held, 0, 0);
    sem_init(&t.done, 0, 0);
    pthread_t th;
    if (pthread_create(&th, NULL, emfile_lock_thread, &t) != 0) return 2;
    int rc = 0;
    if (sem_wait_for(&t.held, 30) != 0)
        rc = 3;
    else if (t.acquired == 0 && mpool_lock_acquire(t.lock, 0.3) != ETIMEDOUT)
        rc = 4;
    else if (t.acquired != 0 && t.acquired != EMFILE)
        rc = 5;
    sem_post(&t.done);
    pthread_join(th, NULL);
    if (!rc && t.acquired == 0 && t.released != 0) rc = 6;
    return rc;
}

static void lock_identity_with_full_descriptor_table(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(emfile_lock_scenario, NULL), 60), 0);
}

/* ---- a daemon dies with the thread that started it ---- */

static void *start_daemon_and_end(void *arg)
{
    mpool_process_opts_t o = {.daemon = true};
    mpool_process_t *d = mpool_process_new(block_forever, NULL, &o);
    if (d && mpool_process_start(d) != 0) {
        mpool_process_free(d);
        d = NULL;
    }
    *(mpool_process_t **)arg = d;
    return NULL; /* at once: the daemon must not outlive this thread */
}

static int short_thread_scenario(void *arg)
{
    (void)arg;
    pin_to_cpu0();
    int survivors = 0; /* the 1-based number of the first survivor */
    for (int i = 0; i < 200; i++) {
        mpool_process_t *d = NULL;
        pthread_t th;
        if (pthread_create(&th, NULL, start_daemon_and_end, &d) != 0) return 1;
        pthread_join(th, NULL);
        if (!d) return 2;
        if (mpool_process_join(d, 10) != 0) {
            survivors = i + 1;
            mpool_process_kill(d);
            mpool_process_join(d, 10);
        }
        mpool_process_free(d);
        if (survivors) break; /* one is proof enough; each costs a timeout */
    }
    if (survivors) fprintf(stderr, "daemon %d outlived its thread\n", survivors);
    return survivors ? 3 : 0;
}

static void daemon_dies_with_short_lived_thread(void **state)
{
    (void)state;
    assert_int_equal(tu_wait(tu_fork(short_thread_scenario, NULL), 100), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exit_codes_and_signals),
        cmocka_unit_test(join_times_out_then_succeeds),
        cmocka_unit_test(terminate_and_kill),
        cmocka_unit_test(names),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(no_descriptor_or_zombie_left),
        cmocka_unit_test(free_after_end_reaps),
        cmocka_unit_test(stdio_flushed_and_atexit_not_inherited),
        cmocka_unit_test(daemon_dies_when_parent_is_killed),
        cmocka_unit_test(start_and_exit_code_with_sigchld_ignored),
        cmocka_unit_test(start_and_exit_code_with_reaping_handler),
        cmocka_unit_test(start_with_full_descriptor_table),
        cmocka_unit_test(lock_identity_with_full_descriptor_table),
        cmocka_unit_test(daemon_dies_with_short_lived_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
