/* crash_report: a Pool map of 1,000 records in which a few records are
 * corrupt and make parse_record() dereference NULL. The pool reports every
 * failed item with its signal, fault address and a symbolized backtrace,
 * and every other result is checked. With --retries N, one more record is
 * flaky (its first attempt crashes, the second succeeds) and the map
 * retries it on a fresh worker.
 *
 *     crash_report [--retries N] [--workers W]
 *
 * Built with -rdynamic (CMakeLists.txt) so that dladdr can name this
 * program's own functions in the backtraces.
 */
#include <mpool.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 1000

/* Named in backtraces: exported (-rdynamic), despite the project's hidden
 * visibility preset, and not inlined into the task. */
#define NAMED __attribute__((noinline, visibility("default")))

typedef struct {
    long id;
    long *field; /* NULL in a corrupt record */
    int flaky;   /* crashes on its first attempt */
} record_t;

static unsigned *attempts; /* per record, in the shared heap: counted by the workers */

NAMED long parse_record(const record_t *r)
{
    return *r->field * 2 + r->id; /* a corrupt record: a NULL read, SIGSEGV */
}

NAMED int parse_task(const void *in, void *out, void *ctx);
int parse_task(const void *in, void *out, void *ctx)
{
    (void)ctx;
    const record_t *r = in;
    unsigned run = __atomic_add_fetch(&attempts[r->id], 1, __ATOMIC_SEQ_CST);
    if (r->flaky && run == 1) {
        volatile long *nothing = NULL;
        return (int)*nothing; /* a crash on this attempt only */
    }
    *(long *)out = parse_record(r);
    return 0;
}

static void usage(const char *argv0)
{
    printf("usage: %s [--retries N] [--workers W]\n\n"
           "Maps parse_record() over %d records, a few of which are corrupt and make it\n"
           "dereference NULL. Prints every failure (item, signal, address, backtrace), then\n"
           "checks every other result. --retries N lets the pool run an item whose worker\n"
           "died up to N more times, and adds a flaky record that crashes on its first\n"
           "attempt only: it then succeeds. --workers W: pool size (default: one per CPU).\n",
           argv0, N);
}

static int number(const char *s, long lo, long hi, long *v)
{
    char *end;
    long x = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || x < lo || x > hi) return -1;
    *v = x;
    return 0;
}

int main(int argc, char **argv)
{
    long retries = -1, workers = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(argv[i], "--retries") && !number(argv[i + 1], 0, 100, &retries)) {
            i++;
        } else if (!strcmp(argv[i], "--workers") && !number(argv[i + 1], 1, 256, &workers)) {
            i++;
        } else {
            fprintf(stderr, "%s: bad argument '%s' (see --help)\n", argv[0], argv[i]);
            return 2;
        }
    }
    static const long corrupt[] = {17, 404, 777};
    record_t *in = mpool_shm_alloc(N * sizeof *in);
    long *values = mpool_shm_alloc(N * sizeof *values), out[N];
    attempts = mpool_shm_alloc(N * sizeof *attempts);
    if (!in || !values || !attempts) return 1;
    for (long i = 0; i < N; i++) {
        values[i] = i * 3;
        in[i] = (record_t){i, &values[i], 0};
    }
    for (size_t k = 0; k < sizeof corrupt / sizeof *corrupt; k++) in[corrupt[k]].field = NULL;
    if (retries >= 0) in[500].flaky = 1;

    mpool_pool_opts_t o = {.processes = (int)workers,
                           .retries = retries > 0 ? (unsigned)retries : 0};
    mpool_pool_t *p = mpool_pool_new(&o);
    if (!p) return perror("mpool_pool_new"), 1;
    mpool_async_t *a = mpool_pool_map_async(p, parse_task, in, N, sizeof *in, out, sizeof *out, 0);
    if (!a || mpool_async_wait(a, 60.0)) return fprintf(stderr, "map did not finish\n"), 1;

    mpool_failure_t f[16];
    size_t nf = mpool_async_failures(a, f, 16);
    printf("%zu of %d items failed:\n", nf, N);
    for (size_t k = 0; k < nf && k < 16; k++) {
        char report[8192];
        mpool_failure_format(&f[k], report, sizeof report);
        printf("\n%s", report);
    }
    /* The corrupt records fail, and the flaky one when it may not retry. */
    size_t expect = sizeof corrupt / sizeof *corrupt + (retries == 0);
    bool failed[N] = {false};
    for (size_t k = 0; k < nf && k < 16; k++) failed[f[k].index] = true;
    int bad = nf != expect;
    for (long i = 0; i < N; i++) {
        if (!failed[i] && out[i] != values[i] * 2 + i) {
            printf("item %ld: wrong result %ld\n", i, out[i]);
            bad = 1;
        }
    }
    if (retries >= 0)
        printf("\nflaky item 500: %u attempts, result %s\n", attempts[500],
               out[500] == values[500] * 2 + 500 ? "correct" : "missing (no retries left)");
    printf("\n%d other results checked: %s\n", N - (int)nf, bad ? "MISMATCH" : "all correct");
    mpool_async_free(a);
    mpool_pool_free(p);
    mpool_shm_free(in);
    mpool_shm_free(values);
    mpool_shm_free(attempts);
    return bad;
}
