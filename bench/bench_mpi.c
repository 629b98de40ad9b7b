/* The MPI backend of the Pool against a sequential loop and the local Pool.
 *
 * Run by bench/run.py without mpirun: this process measures the sequential
 * pi and the local Pool (2 workers, forked before any MPI_Init), then
 * re-executes itself under `mpirun --oversubscribe -np 3` (1 master + 2
 * worker ranks) for the MPI part. Both print RESULT lines on the same
 * stdout. Metrics:
 *   pi_seq_s, pi_local_s, pi_mpi_s      pi integral, N = 2e8, 200 spans, chunksize 1
 *   map_local_ns, map_mpi_ns            x*x over 1,000,000 longs, default chunksize
 *   task_local_us, task_mpi_us          per item at chunksize 1 (20,000 items; the MPI
 *                                       engine sends many such chunks per message)
 *   apply_local_us, apply_mpi_us        round trip of one mpool_pool_apply (one message
 *                                       each way for MPI)
 *   mpi_start_ms                        mpool_mpi_pool_new on rank 0 (MPI_Init included)
 * BENCH_INFLIGHT=k in the environment fixes opts.inflight (default: adaptive).
 */
#include <mpool.h>
#include <mpool/mpi.h>

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define PIECES 200 /* as examples/pi_pool.c and pi_mpi.c: 200 spans, chunksize 1 */

typedef struct {
    long lo, hi;
    double step;
} range_t;

static int pi_range(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const range_t *r = in;
    double s = 0;
    for (long i = r->lo; i < r->hi; i++) {
        double x = ((double)i + 0.5) * r->step;
        s += 4.0 / (1.0 + x * x);
    }
    *(double *)out = s * r->step;
    return 0;
}

static int square(const void *in, void *out, void *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static long pi_n(void)
{
    return bench_quick() ? 2000000L : 200000000L;
}

static size_t map_n(void)
{
    return bench_quick() ? 10000 : 1000000;
}

static size_t task_n(void)
{
    return bench_quick() ? 1000 : 20000;
}

static range_t ranges[PIECES];
static double parts[PIECES];

static void make_ranges(void)
{
    long n = pi_n();
    for (long k = 0; k < PIECES; k++)
        ranges[k] = (range_t){n * k / PIECES, n * (k + 1) / PIECES, 1.0 / (double)n};
}

/* Times the three workloads on `pool`, reporting them with `suffix`. */
static int measure(mpool_pool_t *pool, const char *suffix)
{
    char name[64];
    size_t n = map_n(), m = task_n();
    long *xs = malloc(n * sizeof *xs), *ys = malloc(n * sizeof *ys);
    for (size_t i = 0; i < n; i++) xs[i] = (long)i;
    double t0 = bench_now();
    int err = mpool_pool_map(pool, pi_range, ranges, PIECES, sizeof *ranges, parts, 8, 1);
    double t1 = bench_now();
    err |= mpool_pool_map(pool, square, xs, n, sizeof(long), ys, sizeof(long), 0);
    double t2 = bench_now();
    err |= mpool_pool_map(pool, square, xs, m, sizeof(long), ys, sizeof(long), 1);
    double t3 = bench_now();
    size_t k = m / 10;
    for (size_t i = 0; i < k; i++) err |= mpool_pool_apply(pool, square, &xs[i], 8, &ys[i], 8);
    double t4 = bench_now();
    snprintf(name, sizeof name, "pi_%s_s", suffix);
    bench_result(name, t1 - t0, "s");
    snprintf(name, sizeof name, "map_%s_ns", suffix);
    bench_result(name, (t2 - t1) * 1e9 / (double)n, "ns");
    snprintf(name, sizeof name, "task_%s_us", suffix);
    bench_result(name, (t3 - t2) * 1e6 / (double)m, "us");
    snprintf(name, sizeof name, "apply_%s_us", suffix);
    bench_result(name, (t4 - t3) * 1e6 / (double)k, "us");
    free(xs);
    free(ys);
    return err;
}

/* Under mpirun: every rank gets here; only rank 0 returns from pool_new. */
static int mpi_part(int argc, char **argv)
{
    mpool_task_register("pi_range", pi_range);
    mpool_task_register("square", square);
    double t0 = bench_now();
    mpool_mpi_opts_t o = {0};
    if (getenv("BENCH_INFLIGHT")) o.inflight = (unsigned)atoi(getenv("BENCH_INFLIGHT"));
    mpool_pool_t *pool = mpool_mpi_pool_new(&argc, &argv, &o);
    if (!pool) {
        fprintf(stderr, "bench_mpi: mpool_mpi_pool_new: %s\n", mpool_strerror(errno));
        return 1;
    }
    bench_result("mpi_start_ms", (bench_now() - t0) * 1e3, "ms");
    int err = measure(pool, "mpi");
    mpool_pool_free(pool);
    return err ? 1 : 0;
}

/* Runs this program again under mpirun with 3 ranks. */
static int rerun_under_mpirun(void)
{
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return 1;
    self[len] = 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        execlp("mpirun", "mpirun", "--oversubscribe", "-np", "3", self, (char *)NULL);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
    make_ranges();
    if (getenv("OMPI_COMM_WORLD_SIZE")) return mpi_part(argc, argv);
    double t0 = bench_now();
    for (int k = 0; k < PIECES; k++) pi_range(&ranges[k], &parts[k], NULL);
    bench_result("pi_seq_s", bench_now() - t0, "s");
    mpool_pool_opts_t o = {.processes = 2};
    mpool_pool_t *pool = mpool_pool_new(&o);
    int err = pool ? measure(pool, "local") : 1;
    mpool_pool_free(pool);
    err |= rerun_under_mpirun();
    bench_ratio("mpi pi speed-up over sequential (want >= 1.7)", "pi_seq_s", "pi_mpi_s");
    bench_ratio("local pi speed-up over sequential", "pi_seq_s", "pi_local_s");
    bench_ratio("mpi / local per-item map (default chunksize)", "map_mpi_ns", "map_local_ns");
    bench_ratio("mpi / local per-task at chunksize 1", "task_mpi_us", "task_local_us");
    bench_ratio("mpi / local apply round trip", "apply_mpi_us", "apply_local_us");
    return err ? 1 : 0;
}
