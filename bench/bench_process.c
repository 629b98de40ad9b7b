/* Process start + join: libmpool against raw fork + _exit + waitpid, both
 * from this same (small) parent, interleaved in rounds so drift hits both. */
#include <mpool.h>
#include <sched.h>
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

/* Medians of interleaved rounds; `tag` names the scheduling mode. */
static void measure(const char *tag)
{
    int rounds = bench_quick() ? 3 : 15, n = bench_quick() ? 20 : 100;
    double m[15], r[15];
    for (int i = 0; i < rounds; i++) {
        m[i] = mpool_round(n);
        r[i] = raw_round(n);
    }
    char name[128];
    snprintf(name, sizeof name, "process.start_join%s.mpool", tag);
    bench_result(name, bench_median(m, rounds) * 1e6, "us");
    snprintf(name, sizeof name, "process.start_join%s.raw_fork", tag);
    bench_result(name, bench_median(r, rounds) * 1e6, "us");
}

int main(void)
{
    /* Free scheduling: the child usually runs on the other CPU, and on these
     * VMs the cross-CPU wake-ups dominate a fork + exit + wait. */
    measure("");
    /* Everything on one CPU: fork + exit + wait without cross-CPU wake-ups,
     * so the library's own overhead shows. */
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    if (sched_setaffinity(0, sizeof one, &one) == 0) measure(".pinned");
    bench_ratio("process: mpool / raw fork+waitpid (want <= 1.5)", "process.start_join.mpool",
                "process.start_join.raw_fork");
    bench_ratio("process: python / mpool (want >= 10)", "process.start_join.python",
                "process.start_join.mpool");
    bench_ratio("process, one CPU: mpool / raw fork+waitpid", "process.start_join.pinned.mpool",
                "process.start_join.pinned.raw_fork");
    bench_ratio("process, one CPU: python / mpool", "process.start_join.pinned.python",
                "process.start_join.pinned.mpool");
    return 0;
}
