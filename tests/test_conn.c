// ctest-timeout: 120
/* Tests of message pipes (conn.h), across real processes. */
#include "testutil.h"

#include <sys/resource.h>
#include <sys/socket.h>

static mpool_conn_t *ca, *cb;

/* Child side of most tests: uses cb (the other end is closed in the child). */
static int echo_child(void *arg)
{
    (void)arg;
    mpool_conn_close(ca);
    for (;;) {
        void *buf;
        size_t len;
        int r = mpool_conn_recv_alloc(cb, &buf, &len, 10.0);
        if (r == EPIPE) return 0;
        if (r) return 10;
        r = mpool_conn_send(cb, buf, len);
        free(buf);
        if (r) return 11;
    }
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 131 + seed + (i >> 12));
}

static void test_bad_args(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    size_t len;
    char buf[4];
    void *p;
    assert_int_equal(mpool_pipe(NULL, &b, true), EINVAL);
    assert_int_equal(mpool_pipe(&a, NULL, true), EINVAL);
    assert_int_equal(mpool_conn_send(NULL, "x", 1), EINVAL);
    assert_int_equal(mpool_conn_recv(NULL, buf, 4, &len, 0), EINVAL);
    assert_int_equal(mpool_conn_recv_alloc(NULL, &p, &len, 0), EINVAL);
    assert_int_equal(mpool_conn_poll(NULL, 0), EINVAL);
    assert_int_equal(mpool_conn_fileno(NULL), -1);
    mpool_conn_close(NULL);
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    assert_int_equal(mpool_conn_send(a, NULL, 1), EINVAL);
    assert_int_equal(mpool_conn_send(a, buf, MPOOL_MSG_MAX + 1), EMSGSIZE);
    assert_int_equal(mpool_conn_recv(a, NULL, 4, &len, 0), EINVAL);
    assert_int_equal(mpool_conn_recv(a, buf, 4, NULL, 0), EINVAL);
    assert_int_equal(mpool_conn_recv_alloc(a, NULL, &len, 0), EINVAL);
    assert_int_equal(mpool_conn_recv_alloc(a, &p, NULL, 0), EINVAL);
    assert_true(mpool_conn_fileno(a) >= 0);
    mpool_conn_close(a);
    mpool_conn_close(b);
}

static void test_duplex_echo_across_fork(void **state)
{
    (void)state;
    int fds = tu_count_fds();
    assert_int_equal(mpool_pipe(&ca, &cb, true), 0);
    pid_t pid = tu_fork(echo_child, NULL);
    mpool_conn_close(cb);
    static unsigned char out[300000], in[300000];
    size_t sizes[] = {0, 1, 7, 8, 9, 4095, 4096, 65536, 65537, 300000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        fill(out, sizes[i], (unsigned)i);
        assert_int_equal(mpool_conn_send(ca, out, sizes[i]), 0);
        size_t len = 12345;
        assert_int_equal(mpool_conn_recv(ca, in, sizeof in, &len, 10.0), 0);
        assert_int_equal(len, sizes[i]);
        assert_memory_equal(in, out, len ? len : 1);
    }
    mpool_conn_close(ca);
    assert_int_equal(tu_wait(pid, 10.0), 0);
    assert_int_equal(tu_count_fds(), fds);
}

/* Many messages back to back: the stream splits and joins them, the
 * receiver must not. */
static int burst_child(void *arg)
{
    (void)arg;
    mpool_conn_close(ca);
    unsigned char buf[10000];
    for (unsigned i = 0; i < 5000; i++) {
        size_t n = (i * 7919u) % sizeof buf;
        fill(buf, n, i);
        if (mpool_conn_send(cb, buf, n)) return 1;
    }
    mpool_conn_close(cb);
    return 0;
}

static void test_boundaries_kept(void **state)
{
    (void)state;
    assert_int_equal(mpool_pipe(&ca, &cb, false), 0);
    pid_t pid = tu_fork(burst_child, NULL);
    mpool_conn_close(cb);
    static unsigned char buf[10000], want[10000];
    for (unsigned i = 0; i < 5000; i++) {
        size_t n = (i * 7919u) % sizeof buf, len;
        assert_int_equal(mpool_conn_recv(ca, buf, sizeof buf, &len, 10.0), 0);
        assert_int_equal(len, n);
        fill(want, n, i);
        assert_memory_equal(buf, want, n ? n : 1);
    }
    size_t len;
    assert_int_equal(mpool_conn_recv(ca, buf, sizeof buf, &len, 10.0), EPIPE);
    assert_int_equal(mpool_conn_poll(ca, 1.0), 0); /* EOF counts as ready */
    assert_int_equal(tu_wait(pid, 10.0), 0);
    mpool_conn_close(ca);
}

static void test_one_way(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    size_t len;
    char buf[8];
    void *p;
    assert_int_equal(mpool_pipe(&a, &b, false), 0);
    assert_int_equal(mpool_conn_send(a, "x", 1), EINVAL);
    assert_int_equal(mpool_conn_recv(b, buf, sizeof buf, &len, 0), EINVAL);
    assert_int_equal(mpool_conn_recv_alloc(b, &p, &len, 0), EINVAL);
    assert_int_equal(mpool_conn_poll(b, 0), EINVAL);
    /* The kernel enforces the direction on the raw descriptor as well. */
    assert_true(send(mpool_conn_fileno(a), "x", 1, MSG_NOSIGNAL) < 0);
    assert_int_equal(mpool_conn_send(b, "hello", 5), 0);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 1.0), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    mpool_conn_close(a);
    mpool_conn_close(b);
}

static void test_emsgsize_keeps_message(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    unsigned char out[100], in[100];
    size_t len = 0;
    fill(out, sizeof out, 3);
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    assert_int_equal(mpool_conn_send(b, out, 100), 0);
    assert_int_equal(mpool_conn_send(b, "next", 4), 0);
    assert_int_equal(mpool_conn_recv(a, in, 10, &len, 1.0), EMSGSIZE);
    assert_int_equal(len, 100);
    assert_int_equal(mpool_conn_recv(a, NULL, 0, &len, 1.0), EMSGSIZE);
    assert_int_equal(len, 100);
    assert_int_equal(mpool_conn_poll(a, 0), 0);
    assert_int_equal(mpool_conn_recv(a, in, sizeof in, &len, 1.0), 0);
    assert_int_equal(len, 100);
    assert_memory_equal(in, out, 100);
    /* Again, finishing with recv_alloc. */
    assert_int_equal(mpool_conn_send(b, out, 50), 0);
    assert_int_equal(mpool_conn_recv(a, in, 4, &len, 1.0), 0); /* "next" fits */
    assert_int_equal(len, 4);
    assert_int_equal(mpool_conn_recv(a, in, 4, &len, 1.0), EMSGSIZE);
    assert_int_equal(len, 50);
    void *p = NULL;
    assert_int_equal(mpool_conn_recv_alloc(a, &p, &len, 1.0), 0);
    assert_int_equal(len, 50);
    assert_memory_equal(p, out, 50);
    free(p);
    mpool_conn_close(a);
    mpool_conn_close(b);
}

/* Messages that arrived together are buffered: poll must still see them
 * while the descriptor itself is not readable any more. */
static void test_poll_sees_buffered(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    char buf[8];
    size_t len;
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(mpool_conn_send(b, "abc", 3), 0);
    assert_int_equal(mpool_conn_send(b, NULL, 0), 0);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 1.0), 0);
    struct pollfd pfd = {.fd = mpool_conn_fileno(a), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0); /* all read ahead */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mpool_conn_poll(a, 0), 0);
        assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 0), 0);
        assert_int_equal(len, 3);
        assert_memory_equal(buf, "abc", 3);
    }
    assert_int_equal(mpool_conn_poll(a, 0), 0);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(len, 0);
    assert_int_equal(mpool_conn_poll(a, 0), ETIMEDOUT);
    mpool_conn_close(a);
    mpool_conn_close(b);
}

static void test_zero_length(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    size_t len = 99;
    void *p = NULL;
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    assert_int_equal(mpool_conn_send(a, NULL, 0), 0);
    assert_int_equal(mpool_conn_send(a, "", 0), 0);
    assert_int_equal(mpool_conn_recv(b, NULL, 0, &len, 1.0), 0);
    assert_int_equal(len, 0);
    assert_int_equal(mpool_conn_recv_alloc(b, &p, &len, 1.0), 0);
    assert_non_null(p);
    assert_int_equal(len, 0);
    free(p);
    assert_int_equal(mpool_conn_recv(b, NULL, 0, &len, 0), ETIMEDOUT);
    mpool_conn_close(a);
    mpool_conn_close(b);
}

static void test_timeouts(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    char buf[8];
    size_t len;
    void *p;
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 0), ETIMEDOUT);
    assert_int_equal(mpool_conn_poll(a, 0), ETIMEDOUT);
    double t0 = tu_now();
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 0.2), ETIMEDOUT);
    double dt = tu_now() - t0;
    assert_true(dt >= 0.19 && dt < 3.0);
    t0 = tu_now();
    assert_int_equal(mpool_conn_recv_alloc(a, &p, &len, 0.1), ETIMEDOUT);
    assert_int_equal(mpool_conn_poll(a, 0.1), ETIMEDOUT);
    dt = tu_now() - t0;
    assert_true(dt >= 0.19 && dt < 3.0);
    mpool_conn_close(a);
    mpool_conn_close(b);
}

static int late_sender(void *arg)
{
    (void)arg;
    mpool_conn_close(ca);
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* the point: the message arrives during the wait */
    return mpool_conn_send(cb, "late", 4) ? 1 : 0;
}

static void test_wait_then_receive(void **state)
{
    (void)state;
    assert_int_equal(mpool_pipe(&ca, &cb, true), 0);
    pid_t pid = tu_fork(late_sender, NULL);
    mpool_conn_close(cb);
    assert_int_equal(mpool_conn_poll(ca, 10.0), 0);
    char buf[8];
    size_t len;
    assert_int_equal(mpool_conn_recv(ca, buf, sizeof buf, &len, 10.0), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "late", 4);
    assert_int_equal(mpool_conn_recv(ca, buf, sizeof buf, &len, 10.0), EPIPE);
    assert_int_equal(tu_wait(pid, 10.0), 0);
    mpool_conn_close(ca);
}

static void test_closed_peer(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    char buf[8] = {0};
    size_t len;
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    assert_int_equal(mpool_conn_send(b, "last", 4), 0);
    mpool_conn_close(b);
    /* SIGPIPE keeps its default action (death): the test survives only if
     * it is never raised. */
    assert_int_equal(mpool_conn_send(a, "x", 1), EPIPE);
    assert_int_equal(mpool_conn_send(a, buf, sizeof buf), EPIPE);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 1.0), 0);
    assert_int_equal(len, 4);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 1.0), EPIPE);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 0), EPIPE);
    mpool_conn_close(a);
}

static int blocked_sender(void *arg)
{
    (void)arg;
    mpool_conn_close(ca);
    size_t n = (size_t)8 << 20; /* far more than the socket buffers hold */
    void *p = calloc(1, n);
    if (!p) return 2;
    int r = mpool_conn_send(cb, p, n);
    free(p);
    return r == EPIPE ? 0 : 1; /* and not killed by SIGPIPE */
}

/* The receiver goes away while the sender is blocked in mid-message. */
static void test_peer_closes_during_send(void **state)
{
    (void)state;
    assert_int_equal(mpool_pipe(&ca, &cb, false), 0);
    pid_t pid = tu_fork(blocked_sender, NULL);
    mpool_conn_close(cb);
    assert_int_equal(mpool_conn_poll(ca, 10.0), 0); /* the send has begun */
    mpool_conn_close(ca);
    assert_int_equal(tu_wait(pid, 10.0), 0);
}

static void test_corrupt_length(void **state)
{
    (void)state;
    mpool_conn_t *a, *b;
    char buf[8];
    size_t len;
    void *p = NULL;
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    uint64_t hostile = (uint64_t)1 << 40;
    assert_int_equal(write(mpool_conn_fileno(b), &hostile, sizeof hostile), 8);
    assert_int_equal(mpool_conn_recv_alloc(a, &p, &len, 1.0), EPROTO);
    assert_null(p);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 1.0), EPROTO);
    mpool_conn_close(a);
    mpool_conn_close(b);

    /* A message cut short by the sender's death. */
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    uint64_t hdr = 100;
    assert_int_equal(write(mpool_conn_fileno(b), &hdr, sizeof hdr), 8);
    assert_int_equal(write(mpool_conn_fileno(b), "0123456789", 10), 10);
    mpool_conn_close(b);
    assert_int_equal(mpool_conn_recv_alloc(a, &p, &len, 1.0), EPROTO);
    assert_null(p);
    mpool_conn_close(a);

    /* A header cut in the middle. */
    assert_int_equal(mpool_pipe(&a, &b, true), 0);
    assert_int_equal(write(mpool_conn_fileno(b), &hdr, 3), 3);
    mpool_conn_close(b);
    assert_int_equal(mpool_conn_recv(a, buf, sizeof buf, &len, 1.0), EPROTO);
    mpool_conn_close(a);
}

#define BIG ((size_t)64 << 20)

static int big_child(void *arg)
{
    (void)arg;
    mpool_conn_close(ca);
    void *p;
    size_t len;
    /* Receive 64 MiB, check it, send it back. */
    if (mpool_conn_recv_alloc(cb, &p, &len, 30.0) || len != BIG) return 1;
    unsigned char *want = malloc(BIG);
    if (!want) return 2;
    fill(want, BIG, 77);
    int bad = memcmp(p, want, BIG) != 0;
    free(want);
    if (bad) return 3;
    int r = mpool_conn_send(cb, p, len);
    free(p);
    return r ? 4 : 0;
}

/* A peer announcing 1 GiB and sending 10 bytes must not make recv_alloc
 * allocate 1 GiB: with the address space capped well below that, the
 * receive still ends in EPROTO (the stream was cut), not ENOMEM. */
#if !defined(__SANITIZE_ADDRESS__)
static int announced_but_never_sent(void *arg)
{
    (void)arg;
    mpool_conn_t *rx, *tx;
    if (mpool_pipe(&rx, &tx, true)) return 10;
    uint64_t hdr = (uint64_t)1 << 30;
    char junk[10] = {0};
    if (write(mpool_conn_fileno(tx), &hdr, sizeof hdr) != sizeof hdr) return 11;
    if (write(mpool_conn_fileno(tx), junk, sizeof junk) != sizeof junk) return 12;
    mpool_conn_close(tx);
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f || fscanf(f, "%lu", &pages) != 1) return 13;
    fclose(f);
    struct rlimit rl = {.rlim_cur = pages * 4096 + (256 << 20), .rlim_max = RLIM_INFINITY};
    if (setrlimit(RLIMIT_AS, &rl)) return 14;
    void *buf = NULL;
    size_t len = 0;
    int r = mpool_conn_recv_alloc(rx, &buf, &len, 5);
    free(buf);
    mpool_conn_close(rx);
    return r == EPROTO ? 0 : 20 + (r == ENOMEM);
}
#endif

static void test_announced_length_is_not_trusted(void **state)
{
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's shadow memory does not live under an address-space cap */
#else
    if (tu_under_valgrind()) skip(); /* valgrind needs address space of its own */
    assert_int_equal(tu_wait(tu_fork(announced_but_never_sent, NULL), 30), 0);
#endif
}

static void test_64mib_message(void **state)
{
    (void)state;
    assert_int_equal(mpool_pipe(&ca, &cb, true), 0);
    pid_t pid = tu_fork(big_child, NULL);
    mpool_conn_close(cb);
    unsigned char *out = malloc(BIG);
    assert_non_null(out);
    fill(out, BIG, 77);
    assert_int_equal(mpool_conn_send(ca, out, BIG), 0);
    void *in = NULL;
    size_t len = 0;
    assert_int_equal(mpool_conn_recv_alloc(ca, &in, &len, 30.0), 0);
    assert_int_equal(len, BIG);
    assert_true(memcmp(in, out, BIG) == 0);
    free(in);
    free(out);
    assert_int_equal(tu_wait(pid, 30.0), 0);
    mpool_conn_close(ca);
}

static void test_no_fd_leak(void **state)
{
    (void)state;
    int fds = tu_count_fds();
    for (int i = 0; i < 100; i++) {
        mpool_conn_t *a, *b;
        assert_int_equal(mpool_pipe(&a, &b, i % 2), 0);
        mpool_conn_close(a);
        mpool_conn_close(b);
    }
    assert_int_equal(tu_count_fds(), fds);
    assert_int_equal(tu_count_children(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_duplex_echo_across_fork),
        cmocka_unit_test(test_boundaries_kept),
        cmocka_unit_test(test_one_way),
        cmocka_unit_test(test_emsgsize_keeps_message),
        cmocka_unit_test(test_poll_sees_buffered),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_wait_then_receive),
        cmocka_unit_test(test_closed_peer),
        cmocka_unit_test(test_peer_closes_during_send),
        cmocka_unit_test(test_corrupt_length),
        cmocka_unit_test(test_announced_length_is_not_trusted),
        cmocka_unit_test(test_64mib_message),
        cmocka_unit_test(test_no_fd_leak),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
