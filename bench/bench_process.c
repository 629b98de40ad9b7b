/* Process start + join: libmpool against raw fork + _exit + waitpid, both
 * from this same (small) parent, interleaved in rounds so drift hits both. */
#include <mpool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

static int noop(void *arg)
{
    (void)arg;
    return 0;
}

static double mpool_round(int n)
{
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        mpool_process_t *p = mpool_process_new(noop, NULL, NULL);
        if (!p || mpool_process_start(p) || mpool_process_join(p, MPOOL_FOREVER)) exit(1);
        mpool_process_free(p);
    }
    return (bench_now() - t0) / n;
}

static double raw_round(int n)
{
    double t0 = bench_now();
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid) exit(1);
    }
    return (bench_now() - t0) / n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    int rounds = bench_quick() ? 3 : 15, n = bench_quick() ? 20 : 100;
    double m[15], r[15];
    for (int i = 0; i < rounds; i++) {
        m[i] = mpool_round(n);
        r[i] = raw_round(n);
    }
    qsort(m, rounds, sizeof m[0], cmp);
    qsort(r, rounds, sizeof r[0], cmp);
    bench_result("process.start_join.mpool", m[rounds / 2] * 1e6, "us");
    bench_result("process.start_join.raw_fork", r[rounds / 2] * 1e6, "us");
    bench_ratio("process: mpool / raw fork+waitpid (want <= 1.5)", "process.start_join.mpool",
                "process.start_join.raw_fork");
    bench_ratio("process: python / mpool (want >= 10)", "process.start_join.python",
                "process.start_join.mpool");
    return 0;
}
