/* Pipe latency and throughput: mpool_conn_t against a raw socketpair.
 *
 *   pipe_rtt_8B_*      8-byte ping-pong between two processes, per round trip
 *   pipe_stream_64K_*  one-way 64 KiB messages, bytes per second
 *
 * The raw side sends and receives bare bytes (no header, no framing): the
 * limit to approach. bench/py_conn.py measures Python's Pipe the same way. */
#include <mpool.h>

#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define CHUNK 65536

/* Reads exactly len bytes from a raw socket. */
static void raw_read(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len);
        if (n <= 0) exit(1);
        p += n;
        len -= (size_t)n;
    }
}

static void raw_write(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0) exit(1);
        p += n;
        len -= (size_t)n;
    }
}

static double raw_rtt(long n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) exit(1);
    char buf[8] = "ping!!!";
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        for (long i = 0; i < n; i++) {
            raw_read(sv[1], buf, 8);
            raw_write(sv[1], buf, 8);
        }
        _exit(0);
    }
    close(sv[1]);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        raw_write(sv[0], buf, 8);
        raw_read(sv[0], buf, 8);
    }
    double dt = bench_now() - t0;
    waitpid(pid, NULL, 0);
    close(sv[0]);
    return dt / (double)n;
}

static double mpool_rtt(long n)
{
    mpool_conn_t *a, *b;
    if (mpool_pipe(&a, &b, true)) exit(1);
    char buf[8] = "ping!!!";
    size_t len;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        mpool_conn_close(a);
        for (long i = 0; i < n; i++) {
            if (mpool_conn_recv(b, buf, sizeof buf, &len, MPOOL_FOREVER)) _exit(1);
            if (mpool_conn_send(b, buf, len)) _exit(1);
        }
        _exit(0);
    }
    mpool_conn_close(b);
    double t0 = bench_now();
    for (long i = 0; i < n; i++) {
        if (mpool_conn_send(a, buf, 8)) exit(1);
        if (mpool_conn_recv(a, buf, sizeof buf, &len, MPOOL_FOREVER)) exit(1);
    }
    double dt = bench_now() - t0;
    waitpid(pid, NULL, 0);
    mpool_conn_close(a);
    return dt / (double)n;
}

static double raw_stream(long n)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) exit(1);
    static char buf[CHUNK];
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        for (long i = 0; i < n; i++) raw_write(sv[1], buf, CHUNK);
        _exit(0);
    }
    close(sv[1]);
    raw_read(sv[0], buf, CHUNK);
    double t0 = bench_now();
    for (long i = 1; i < n; i++) raw_read(sv[0], buf, CHUNK);
    double dt = bench_now() - t0;
    waitpid(pid, NULL, 0);
    close(sv[0]);
    return (double)(n - 1) * CHUNK / dt / 1e9;
}

static double mpool_stream(long n)
{
    mpool_conn_t *a, *b;
    if (mpool_pipe(&a, &b, false)) exit(1);
    static char buf[CHUNK];
    size_t len;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        mpool_conn_close(a);
        for (long i = 0; i < n; i++)
            if (mpool_conn_send(b, buf, CHUNK)) _exit(1);
        _exit(0);
    }
    mpool_conn_close(b);
    if (mpool_conn_recv(a, buf, CHUNK, &len, MPOOL_FOREVER)) exit(1);
    double t0 = bench_now();
    for (long i = 1; i < n; i++)
        if (mpool_conn_recv(a, buf, CHUNK, &len, MPOOL_FOREVER)) exit(1);
    double dt = bench_now() - t0;
    waitpid(pid, NULL, 0);
    mpool_conn_close(a);
    return (double)(n - 1) * CHUNK / dt / 1e9;
}

#define ROUNDS 5

/* mpool and raw take turns in ROUNDS short rounds, so that the machine's
 * drift (2 shared vCPUs) hits both alike; each reports its median round. */
int main(void)
{
    bool quick = bench_quick();
    long rtt = quick ? 500 : 10000, stream = quick ? 100 : 6000;
    double m_rtt[ROUNDS], r_rtt[ROUNDS], m_st[ROUNDS], r_st[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        m_rtt[i] = mpool_rtt(rtt) * 1e6;
        r_rtt[i] = raw_rtt(rtt) * 1e6;
    }
    for (int i = 0; i < ROUNDS; i++) {
        m_st[i] = mpool_stream(stream);
        r_st[i] = raw_stream(stream);
    }
    bench_result("pipe_rtt_8B_mpool", bench_median(m_rtt, ROUNDS), "us");
    bench_result("pipe_rtt_8B_raw", bench_median(r_rtt, ROUNDS), "us");
    bench_result("pipe_stream_64K_mpool", bench_median(m_st, ROUNDS), "GB/s");
    bench_result("pipe_stream_64K_raw", bench_median(r_st, ROUNDS), "GB/s");
    bench_ratio("pipe_rtt_mpool/raw", "pipe_rtt_8B_mpool", "pipe_rtt_8B_raw");
    bench_ratio("pipe_rtt_python/mpool", "pipe_rtt_8B_python", "pipe_rtt_8B_mpool");
    bench_ratio("pipe_stream_raw/mpool", "pipe_stream_64K_raw", "pipe_stream_64K_mpool");
    bench_ratio("pipe_stream_mpool/python", "pipe_stream_64K_mpool", "pipe_stream_64K_python");
    return 0;
}
