/* rlock: the ABManager of the lecture, shared by several processes.
 *
 * a() and b() each take the manager's RLock; both() takes it too and then
 * calls a() and b() while holding it. With a plain Lock, both() would wait
 * for itself forever; an RLock lets its owner take it again. */
#include <stdio.h>
#include <string.h>

#include <mpool.h>

#define PROCS 4
#define CALLS 10000

typedef struct {
    mpool_rlock_t *lock;
    long a, b;
} ab_manager_t;

static int ab_a(ab_manager_t *m)
{
    int r = mpool_rlock_acquire(m->lock, MPOOL_FOREVER);
    if (r) return r;
    m->a += 1;
    return mpool_rlock_release(m->lock);
}

static int ab_b(ab_manager_t *m)
{
    int r = mpool_rlock_acquire(m->lock, MPOOL_FOREVER);
    if (r) return r;
    m->b += 2;
    return mpool_rlock_release(m->lock);
}

/* a() and b() as one step: nobody sees a updated without b. */
static int ab_both(ab_manager_t *m)
{
    int r = mpool_rlock_acquire(m->lock, MPOOL_FOREVER);
    if (r) return r;
    if ((r = ab_a(m)) == 0) r = ab_b(m);
    int r2 = mpool_rlock_release(m->lock);
    return r ? r : r2;
}

static int worker(void *arg)
{
    ab_manager_t *m = arg;
    for (int i = 0; i < CALLS; i++)
        if (ab_both(m) || ab_a(m) || ab_b(m)) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        printf("usage: %s [--help]\n\n"
               "%d processes share an ABManager: a() adds 1 to a, b() adds 2 to b,\n"
               "both() calls a() and b() under the same RLock they take.\n"
               "Each process calls both(), a() and b() %d times.\n",
               argv[0], PROCS, CALLS);
        return strcmp(argv[1], "--help") && strcmp(argv[1], "-h") ? 2 : 0;
    }
    ab_manager_t *m = mpool_shm_alloc(sizeof *m);
    if (!m || !(m->lock = mpool_rlock_new())) {
        fprintf(stderr, "rlock: %s\n", mpool_strerror(errno));
        return 1;
    }
    mpool_process_t *p[PROCS];
    int failed = 0;
    for (int i = 0; i < PROCS; i++) {
        p[i] = mpool_process_new(worker, m, NULL);
        if (!p[i] || mpool_process_start(p[i]) != 0) {
            fprintf(stderr, "rlock: cannot start a process\n");
            return 1;
        }
    }
    for (int i = 0; i < PROCS; i++) {
        int code = -1;
        mpool_process_join(p[i], MPOOL_FOREVER);
        if (!mpool_process_exitcode(p[i], &code) || code != 0) failed = 1;
        mpool_process_free(p[i]);
    }
    long want_a = 2L * PROCS * CALLS, want_b = 4L * PROCS * CALLS;
    printf("a = %ld, b = %ld (expected a = %ld, b = %ld)\n", m->a, m->b, want_a, want_b);
    failed |= m->a != want_a || m->b != want_b;
    mpool_rlock_free(m->lock);
    mpool_shm_free(m);
    return failed;
}
