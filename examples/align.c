/* align: workers align DNA reads taken from a queue.
 *
 * 1,000 random 64-bp reads (fixed seed) are put on a queue, followed by one
 * sentinel per worker. Each worker aligns every read it takes to a 1,000-bp
 * reference with Needleman-Wunsch (global in the read, free end gaps in the
 * reference: where does the read fit best?) and reports the score on a
 * result queue. The parent prints how many reads each worker aligned (they
 * sum to 1000), the best hit, and checks every score against a sequential
 * run. */
#include <mpool.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NREADS   1000
#define READ_LEN 64
#define REF_LEN  1000
#define MATCH    2
#define MISMATCH (-1)
#define GAP      (-2)

typedef struct {
    uint32_t index;
    char bases[READ_LEN];
} read_t;

typedef struct {
    uint32_t index, worker, end;
    int32_t score;
} hit_t;

static char reference[REF_LEN];
static read_t reads[NREADS];
static mpool_queue_t *todo, *done;

static uint64_t rng = 42; /* fixed seed: the same reads every run */
static char random_base(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return "ACGT"[rng >> 62];
}

static void make_data(void)
{
    for (int i = 0; i < REF_LEN; i++) reference[i] = random_base();
    for (uint32_t r = 0; r < NREADS; r++) {
        reads[r].index = r;
        for (int i = 0; i < READ_LEN; i++) reads[r].bases[i] = random_base();
    }
}

static int max3(int a, int b, int c)
{
    int m = a > b ? a : b;
    return m > c ? m : c;
}

/* Needleman-Wunsch over the read (rows) and the reference (columns), one
 * row of scores at a time. Row 0 is all zeros (the read may start
 * anywhere); the answer is the best cell of the last row. */
static hit_t align(const read_t *rd)
{
    int prev[REF_LEN + 1], cur[REF_LEN + 1];
    memset(prev, 0, sizeof prev);
    for (int i = 1; i <= READ_LEN; i++) {
        cur[0] = i * GAP;
        for (int j = 1; j <= REF_LEN; j++) {
            int diag = prev[j - 1] + (rd->bases[i - 1] == reference[j - 1] ? MATCH : MISMATCH);
            cur[j] = max3(diag, prev[j] + GAP, cur[j - 1] + GAP);
        }
        memcpy(prev, cur, sizeof prev);
    }
    hit_t h = {rd->index, 0, 0, prev[0]};
    for (int j = 1; j <= REF_LEN; j++)
        if (prev[j] > h.score) h.score = prev[j], h.end = (uint32_t)j;
    return h;
}

static int worker(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    for (;;) {
        read_t rd;
        size_t len;
        if (mpool_queue_get(todo, &rd, sizeof rd, &len, MPOOL_FOREVER)) return 1;
        if (len == 0) return 0; /* the sentinel */
        hit_t h = align(&rd);
        h.worker = id;
        if (mpool_queue_put(done, &h, sizeof h, MPOOL_FOREVER)) return 1;
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int nworkers = mpool_cpu_count();
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s [WORKERS]\nWorkers (default: one per CPU) take %d random %d-bp "
               "reads from a queue and align\neach to a %d-bp reference with "
               "Needleman-Wunsch.\n",
               argv[0], NREADS, READ_LEN, REF_LEN);
        return 0;
    }
    if (argc > 1) nworkers = atoi(argv[1]);
    if (nworkers < 1 || nworkers > 256) return 2;
    make_data();
    /* Room for every read and sentinel: the parent never blocks on a put. */
    todo = mpool_queue_new(NREADS + (size_t)nworkers, sizeof(read_t));
    done = mpool_queue_new(NREADS, sizeof(hit_t));
    if (!todo || !done) return 1;

    double t0 = now();
    mpool_process_t *w[256];
    for (int i = 0; i < nworkers; i++) {
        w[i] = mpool_process_new(worker, (void *)(uintptr_t)i, NULL);
        if (!w[i] || mpool_process_start(w[i])) return 1;
    }
    for (int r = 0; r < NREADS; r++) mpool_queue_put(todo, &reads[r], sizeof reads[r], 0);
    for (int i = 0; i < nworkers; i++) mpool_queue_put(todo, NULL, 0, 0);
    static hit_t hits[NREADS];
    unsigned counts[256] = {0};
    for (int k = 0; k < NREADS; k++) {
        hit_t h;
        size_t len;
        if (mpool_queue_get(done, &h, sizeof h, &len, MPOOL_FOREVER)) return 1;
        hits[h.index] = h;
        counts[h.worker]++;
    }
    double t_par = now() - t0;
    for (int i = 0; i < nworkers; i++) {
        mpool_process_join(w[i], MPOOL_FOREVER);
        mpool_process_free(w[i]);
    }

    t0 = now();
    int mismatches = 0, best = 0;
    for (int r = 0; r < NREADS; r++) {
        hit_t h = align(&reads[r]);
        mismatches += h.score != hits[r].score || h.end != hits[r].end;
        if (hits[r].score > hits[best].score) best = r;
    }
    double t_seq = now() - t0;
    unsigned total = 0;
    for (int i = 0; i < nworkers; i++) {
        printf("worker %d aligned %u reads\n", i, counts[i]);
        total += counts[i];
    }
    printf("total: %u reads aligned (%d differ from the sequential run)\n", total, mismatches);
    printf("best: read %d, score %d, ending at reference position %u\n", best, hits[best].score,
           hits[best].end);
    printf("sequential: %.3f s; %d workers: %.3f s, speed-up %.2fx\n", t_seq, nworkers, t_par,
           t_seq / t_par);
    mpool_queue_free(todo);
    mpool_queue_free(done);
    return total != NREADS || mismatches;
}
