/* producer_consumer: a producer and a consumer over a bounded queue.
 *
 * The producer puts the numbers 1..N, then a sentinel (an empty item); the
 * consumer adds up what it gets until the sentinel and reports its sum on a
 * second queue. The parent prints it next to N(N+1)/2. */
#include <mpool.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mpool_queue_t *work, *result;
static long n_items = 1000000;

static int producer(void *arg)
{
    (void)arg;
    for (int64_t i = 1; i <= n_items; i++)
        if (mpool_queue_put(work, &i, sizeof i, MPOOL_FOREVER)) return 1;
    return mpool_queue_put(work, NULL, 0, MPOOL_FOREVER) ? 1 : 0; /* the sentinel */
}

static int consumer(void *arg)
{
    (void)arg;
    int64_t sum = 0, x;
    for (;;) {
        size_t len;
        if (mpool_queue_get(work, &x, sizeof x, &len, MPOOL_FOREVER)) return 1;
        if (len == 0) break; /* the sentinel */
        sum += x;
    }
    return mpool_queue_put(result, &sum, sizeof sum, MPOOL_FOREVER) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s [N]\nA producer puts 1..N (default %ld) on a bounded queue, a "
               "consumer sums them until a sentinel.\n",
               argv[0], n_items);
        return 0;
    }
    if (argc > 1) n_items = atol(argv[1]);
    if (n_items < 0) n_items = 0;
    work = mpool_queue_new(64, sizeof(int64_t));
    result = mpool_queue_new(1, sizeof(int64_t));
    mpool_process_t *p = mpool_process_new(producer, NULL, NULL);
    mpool_process_t *c = mpool_process_new(consumer, NULL, NULL);
    if (!work || !result || !p || !c || mpool_process_start(c) || mpool_process_start(p)) {
        fprintf(stderr, "cannot set up the queues and processes\n");
        return 1;
    }
    int64_t sum = 0;
    size_t len;
    int r = mpool_queue_get(result, &sum, sizeof sum, &len, MPOOL_FOREVER);
    mpool_process_join(p, MPOOL_FOREVER);
    mpool_process_join(c, MPOOL_FOREVER);
    mpool_process_free(p);
    mpool_process_free(c);
    int64_t expected = (int64_t)n_items * (n_items + 1) / 2;
    printf("consumer's sum: %" PRId64 "\nexpected sum:   %" PRId64 "\n", sum, expected);
    mpool_queue_free(work);
    mpool_queue_free(result);
    return r || sum != expected;
}
