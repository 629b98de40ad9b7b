/* Benchmarks of bytes items and sources, against Python's multiprocessing
 * (bench/py_bytes.py, same metrics prefixed py.) and against the same C
 * code run in one process:
 *
 *   bytes.map_ns_per_item     map_bytes over 1e6 items of 16-64 bytes, each
 *                             returned reversed (2 workers)
 *   bytes.map_shm_ns_per_item the same with the items' bytes in the shared
 *                             heap (read in place: no copy in)
 *   bytes.revcomp_seq_s       examples/revcomp --workers 0 on a generated
 *                             250 MiB FASTA (records of 1-10,000 bases,
 *                             seed 1): the same code without the pool
 *   bytes.revcomp_pool2_s     the same with a pool of 2 workers
 *   bytes.revcomp_1g_rss_MiB  peak RSS of revcomp --workers 2 on a 1 GiB
 *                             input (wait4's ru_maxrss, as /usr/bin/time -v)
 *   bytes.source_busy_<P>w    imap_source with the default window and P
 *                             workers over tasks that sleep 2 ms: the
 *                             fraction of the ideal P items per 2 ms
 *                             reached (1.0: no worker ever waits for input;
 *                             usleep's own overshoot keeps it below). The
 *                             tasks sleep, so 64 workers measure the
 *                             window, not the 2 CPUs.
 *   bytes.source_busy_<P>w_w4096  the same with a window of 4096 items: a
 *                             default as good as a large window gives the
 *                             same figure
 *
 * The FASTA files are made once with `revcomp --generate` in the build
 * directory (bench/run.py builds the examples) and kept for later runs.
 */
#include <mpool.h>

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

static bool quick;

static int reverse(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    char *r = mpool_out_reserve(out, len);
    if (!r) return errno;
    const char *s = in;
    for (size_t i = 0; i < len; i++) r[i] = s[len - 1 - i];
    return 0;
}

static mpool_pool_t *pool_of(int processes)
{
    mpool_pool_opts_t o = {.processes = processes};
    mpool_pool_t *p = mpool_pool_new(&o);
    if (!p) {
        fprintf(stderr, "pool_new: %s\n", mpool_strerror(errno));
        exit(1);
    }
    return p;
}

/* shm: the items' bytes lie in the shared heap (read in place, no copy). */
static void bench_map(bool shm)
{
    size_t n = quick ? 100000 : 1000000;
    mpool_bytes_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    char *data = shm ? mpool_shm_alloc(n * 64) : malloc(n * 64);
    uint64_t x = 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t len = 16 + x % 49;
        for (size_t k = 0; k < len; k++) data[i * 64 + k] = (char)(x >> (k % 56));
        in[i] = (mpool_bytes_t){data + i * 64, len};
    }
    mpool_pool_t *p = pool_of(2);
    double t[5];
    int reps = quick ? 3 : 5;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_now();
        int err = mpool_pool_map_bytes(p, reverse, in, n, out, 0);
        t[r] = (bench_now() - t0) / (double)n * 1e9;
        if (err || out[n - 1].len != in[n - 1].len ||
            ((char *)out[n - 1].data)[0] != ((char *)in[n - 1].data)[in[n - 1].len - 1]) {
            fprintf(stderr, "map_bytes: %s\n", mpool_strerror(err));
            exit(1);
        }
        for (size_t i = 0; i < n; i++) free(out[i].data);
    }
    mpool_pool_free(p);
    bench_result(shm ? "bytes.map_shm_ns_per_item" : "bytes.map_ns_per_item", bench_median(t, reps),
                 "ns");
    free(in), free(out);
    shm ? mpool_shm_free(data) : free(data);
}

/* ---- revcomp, as a separate program ------------------------------------------ */

static char revcomp_path[4096];

/* Runs argv with stdout to `out` (a path); returns seconds, and the peak
 * RSS in KiB (of the program and the children it waited for) in *rss. */
static double run(char *const argv[], const char *out, long *rss)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    double t0 = bench_now();
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ)) {
        fprintf(stderr, "cannot run %s\n", argv[0]);
        exit(1);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "%s failed\n", argv[0]);
        exit(1);
    }
    posix_spawn_file_actions_destroy(&fa);
    if (rss) *rss = ru.ru_maxrss;
    return bench_now() - t0;
}

/* The generated input of `mib` MiB, made once. */
static const char *fasta(int mib, char *path, size_t size)
{
    snprintf(path, size, "%s.%dM.fa", revcomp_path, mib);
    if (access(path, R_OK) == 0) return path;
    char m[16];
    snprintf(m, sizeof m, "%d", mib);
    char *argv[] = {revcomp_path, "--generate", m, "--seed", "1", NULL};
    run(argv, path, NULL);
    return path;
}

static void bench_revcomp(void)
{
    char path[4200];
    const char *in = fasta(quick ? 16 : 250, path, sizeof path);
    double seq[5], par[5];
    int reps = quick ? 1 : 3;
    for (int r = 0; r < reps; r++) {
        char *a0[] = {revcomp_path, "--workers", "0", (char *)in, NULL};
        char *a2[] = {revcomp_path, "--workers", "2", (char *)in, NULL};
        seq[r] = run(a0, "/dev/null", NULL);
        par[r] = run(a2, "/dev/null", NULL);
    }
    bench_result("bytes.revcomp_seq_s", bench_median(seq, reps), "s");
    bench_result("bytes.revcomp_pool2_s", bench_median(par, reps), "s");
    if (quick) return;
    in = fasta(1024, path, sizeof path);
    long rss;
    char *a2[] = {revcomp_path, "--workers", "2", (char *)in, NULL};
    run(a2, "/dev/null", &rss);
    bench_result("bytes.revcomp_1g_rss_MiB", (double)rss / 1024, "MiB");
}

/* ---- the source's default window ---------------------------------------------- */

static int nap(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    usleep(2000);
    return mpool_out_write(out, in, len < 8 ? len : 8);
}

typedef struct {
    size_t left;
    char item[32];
} count_t;

static int countdown(void *state, mpool_bytes_t *item)
{
    count_t *c = state;
    if (!c->left) return ENODATA;
    c->left--;
    *item = (mpool_bytes_t){c->item, sizeof c->item};
    return 0;
}

static void bench_window(int processes, size_t window)
{
    mpool_pool_t *p = pool_of(processes);
    size_t n = (size_t)processes * (quick ? 10 : 50);
    count_t c = {.left = n};
    double t0 = bench_now();
    mpool_iter_t *it = mpool_pool_imap_source(p, nap, countdown, &c, window, true);
    mpool_bytes_t out;
    while (it && mpool_iter_next_bytes(it, &out, NULL, MPOOL_FOREVER) == 0) free(out.data);
    double t = bench_now() - t0, ideal = (double)n * 2e-3 / processes;
    mpool_iter_free(it);
    mpool_pool_free(p);
    char name[64];
    snprintf(name, sizeof name, "bytes.source_busy_%dw%s", processes, window ? "_w4096" : "");
    bench_result(name, ideal / t, "x");
}

int main(int argc, char **argv)
{
    (void)argc;
    quick = bench_quick();
    const char *slash = strrchr(argv[0], '/');
    snprintf(revcomp_path, sizeof revcomp_path, "%.*srevcomp",
             slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
    /* revcomp first, while this process is small: posix_spawn's child
     * shares our memory until it execs, and ru_maxrss counts that too. */
    if (access(revcomp_path, X_OK) == 0)
        bench_revcomp();
    else
        fprintf(stderr, "bench_bytes: %s not built: revcomp skipped\n", revcomp_path);
    bench_map(false);
    bench_map(true);
    for (int k = 0; k < 2; k++) {
        bench_window(2, k ? 4096 : 0);
        bench_window(64, k ? 4096 : 0);
    }
    bench_ratio("bytes.map_python_over_mpool", "py.bytes.map_ns_per_item", "bytes.map_ns_per_item");
    bench_ratio("bytes.revcomp_seq_over_pool2", "bytes.revcomp_seq_s", "bytes.revcomp_pool2_s");
    bench_ratio("bytes.revcomp_python_over_mpool", "py.bytes.revcomp_s", "bytes.revcomp_pool2_s");
    return 0;
}
