/* counter: two processes add 1,000,000 each to one shared counter.
 *
 * With a Lock around each increment the total is exactly 2000000. With
 * --no-lock the two read-modify-write sequences interleave and updates are
 * lost, so the total comes out smaller. */
#include <stdio.h>
#include <string.h>

#include <mpool.h>

#define ADDS 1000000

typedef struct {
    mpool_lock_t *lock;  /* NULL: no locking */
    volatile long value; /* volatile: one load and one store per increment */
} counter_t;

static int add_many(void *arg)
{
    counter_t *c = arg;
    for (int i = 0; i < ADDS; i++) {
        if (c->lock && mpool_lock_acquire(c->lock, MPOOL_FOREVER) != 0) return 1;
        c->value = c->value + 1;
        if (c->lock && mpool_lock_release(c->lock) != 0) return 1;
    }
    return 0;
}

static void usage(const char *prog)
{
    printf("usage: %s [--no-lock] [--help]\n\n"
           "Two processes each add %d to one counter in shared memory, under a\n"
           "Lock: the total is 2000000. --no-lock drops the lock and shows lost\n"
           "updates: the total is smaller.\n",
           prog, ADDS);
}

int main(int argc, char **argv)
{
    bool use_lock = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(argv[0]);
            return 0;
        } else if (!strcmp(argv[i], "--no-lock")) {
            use_lock = false;
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    counter_t *c = mpool_shm_alloc(sizeof *c);
    if (!c || (use_lock && !(c->lock = mpool_lock_new()))) {
        fprintf(stderr, "counter: %s\n", mpool_strerror(errno));
        return 1;
    }
    mpool_process_t *p[2];
    for (int i = 0; i < 2; i++) {
        p[i] = mpool_process_new(add_many, c, NULL);
        int r = p[i] ? mpool_process_start(p[i]) : errno;
        if (r) {
            fprintf(stderr, "counter: cannot start a process: %s\n", mpool_strerror(r));
            return 1;
        }
    }
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        int code = -1;
        mpool_process_join(p[i], MPOOL_FOREVER);
        if (!mpool_process_exitcode(p[i], &code) || code != 0) failed = 1;
        mpool_process_free(p[i]);
    }
    long total = c->value;
    printf("%ld\n", total);
    if (!use_lock && total < 2L * ADDS)
        printf("without the lock, %ld of %ld updates were lost\n", 2L * ADDS - total, 2L * ADDS);
    mpool_lock_free(c->lock);
    mpool_shm_free(c);
    return failed;
}
