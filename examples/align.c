/* align: workers align DNA reads to a reference.
 *
 * Default run: 1,000 random 64-bp reads (fixed seed) are put on a queue,
 * followed by one sentinel per worker. Each worker aligns every read it
 * takes to a 1,000-bp reference with Needleman-Wunsch (global in the read,
 * free end gaps in the reference: where does the read fit best?) and
 * reports the score on a result queue. The parent prints how many reads
 * each worker aligned (they sum to 1000), the best hit, and checks every
 * score against a sequential run.
 *
 * With a FASTA file: its reads, of any length, are aligned to the same
 * reference through a Pool of bytes items (mpool_pool_map_bytes): each
 * result is a line of variable size, "name score end cigar", the CIGAR-like
 * string made of M (base against base), I (a read base against a gap) and
 * D (a reference base skipped inside the alignment). The lines are printed
 * in input order, then checked against a sequential run.
 *
 *     align [WORKERS] [FILE.fa]
 */
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

/* ---- reads of any length, from a FASTA file --------------------------------- */

/* Needleman-Wunsch as align() with a traceback, for a read of n bases:
 * writes "score end cigar" into cig (room: 32 + 2 * (n + REF_LEN) bytes)
 * and returns the score. */
static int align_cigar(const char *read, size_t n, char *line, size_t room)
{
    size_t w = REF_LEN + 1;
    int *prev = malloc(w * sizeof *prev), *cur = malloc(w * sizeof *cur);
    unsigned char *dir = malloc((n + 1) * w); /* 0 diagonal, 1 up (I), 2 left (D) */
    if (!prev || !cur || !dir) {
        free(prev), free(cur), free(dir);
        return snprintf(line, room, "- - out-of-memory"), INT32_MIN;
    }
    memset(prev, 0, w * sizeof *prev);
    for (size_t i = 1; i <= n; i++) {
        cur[0] = (int)i * GAP;
        dir[i * w] = 1;
        for (size_t j = 1; j < w; j++) {
            int diag = prev[j - 1] + (read[i - 1] == reference[j - 1] ? MATCH : MISMATCH);
            int up = prev[j] + GAP, left = cur[j - 1] + GAP;
            cur[j] = max3(diag, up, left);
            dir[i * w + j] = cur[j] == diag ? 0 : cur[j] == up ? 1 : 2;
        }
        int *t = prev;
        prev = cur, cur = t;
    }
    size_t end = 0;
    for (size_t j = 1; j < w; j++)
        if (prev[j] > prev[end]) end = j;
    int score = prev[end];
    /* Traceback: ops come out last first; then run-length encode them. */
    char *ops = malloc(n + REF_LEN + 1);
    size_t k = 0;
    for (size_t i = n, j = end; ops && i > 0;) {
        unsigned char d = j ? dir[i * w + j] : 1;
        ops[k++] = d == 0 ? 'M' : d == 1 ? 'I' : 'D';
        if (d != 2) i--;
        if (d != 1) j--;
    }
    int at = snprintf(line, room, "%d %zu ", score, end);
    for (size_t r = k; ops && r > 0;) {
        size_t run = 1;
        while (run < r && ops[r - 1 - run] == ops[r - 1]) run++;
        at += snprintf(line + at, room - (size_t)at, "%zu%c", run, ops[r - 1]);
        r -= run;
    }
    free(ops), free(prev), free(cur), free(dir);
    return score;
}

/* A FASTA record: the name (the header's first word) and the bases. */
static void parse_record(const char *rec, size_t len, const char **name, size_t *name_len,
                         char *bases, size_t *n)
{
    size_t i = 0;
    *name = rec + (len && rec[0] == '>');
    *name_len = 0;
    if (len && rec[0] == '>') {
        while (i < len && rec[i] != '\n') i++;
        while (*name_len < i - 1 && (*name)[*name_len] != ' ') (*name_len)++;
    }
    *n = 0;
    for (; i < len; i++)
        if (rec[i] != '\n' && rec[i] != '\r') bases[(*n)++] = rec[i];
}

/* The task: one record in, one line "name score end cigar\n" out. */
static int align_task(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    char *bases = malloc(len + 1);
    size_t room = 64 + 2 * (len + REF_LEN);
    char *line = malloc(room);
    if (!bases || !line) return free(bases), free(line), ENOMEM;
    const char *name;
    size_t name_len, n;
    parse_record(in, len, &name, &name_len, bases, &n);
    align_cigar(bases, n, line, room);
    int err = mpool_out_write(out, name, name_len);
    if (!err) err = mpool_out_write(out, " ", 1);
    if (!err) err = mpool_out_write(out, line, strlen(line));
    if (!err) err = mpool_out_write(out, "\n", 1);
    free(bases), free(line);
    return err;
}

/* Splits a FASTA text into records at each '>' that begins a line. */
static size_t split_records(char *text, size_t len, mpool_bytes_t **recs)
{
    size_t n = 0, cap = 0;
    *recs = NULL;
    for (size_t i = 0; i < len;) {
        size_t j = i + 1;
        while (j < len && !(text[j] == '>' && text[j - 1] == '\n')) j++;
        if (n == cap && !(*recs = realloc(*recs, (cap = cap ? 2 * cap : 1024) * sizeof **recs)))
            return 0;
        (*recs)[n++] = (mpool_bytes_t){text + i, j - i};
        i = j;
    }
    return n;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0)
        if ((n += got) == cap) buf = realloc(buf, cap *= 2);
    fclose(f);
    *len = n;
    return buf;
}

static int align_file(const char *path, int nworkers)
{
    size_t len;
    char *text = read_file(path, &len);
    if (!text) {
        fprintf(stderr, "align: %s: %s\n", path, strerror(errno));
        return 1;
    }
    mpool_bytes_t *recs, *lines;
    size_t n = split_records(text, len, &recs);
    lines = calloc(n ? n : 1, sizeof *lines);
    mpool_pool_opts_t o = {.processes = nworkers};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool || !lines || (len && !recs)) return 1;
    double t0 = now();
    int err = mpool_pool_map_bytes(pool, align_task, recs, n, lines, 0);
    double t_par = now() - t0;
    mpool_pool_free(pool);
    if (err) {
        fprintf(stderr, "align: %s\n", mpool_strerror(err));
        return 1;
    }
    for (size_t i = 0; i < n; i++) fwrite(lines[i].data, 1, lines[i].len, stdout);
    /* The same work in this process, line by line. */
    t0 = now();
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) {
        mpool_bytes_t one = {NULL, 0};
        char *bases = malloc(recs[i].len + 1), *line = malloc(64 + 2 * (recs[i].len + REF_LEN));
        const char *name;
        size_t name_len, nb;
        parse_record(recs[i].data, recs[i].len, &name, &name_len, bases, &nb);
        align_cigar(bases, nb, line, 64 + 2 * (recs[i].len + REF_LEN));
        one.len = (size_t)name_len + 2 + strlen(line);
        differ += lines[i].len != one.len ||
                  memcmp((char *)lines[i].data + name_len + 1, line, strlen(line)) != 0;
        free(bases), free(line), free(lines[i].data);
    }
    double t_seq = now() - t0;
    fprintf(stderr,
            "%zu reads aligned (%zu differ from the sequential run); sequential: %.3f s; "
            "%d workers: %.3f s\n",
            n, differ, t_seq, nworkers, t_par);
    free(lines), free(recs), free(text);
    return differ != 0;
}

int main(int argc, char **argv)
{
    int nworkers = mpool_cpu_count();
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s [WORKERS] [FILE.fa]\nWorkers (default: one per CPU) take %d random "
                   "%d-bp reads from a queue and align\neach to a %d-bp reference with "
                   "Needleman-Wunsch. With a FASTA file, its reads (of any\nlength) are aligned "
                   "through a pool of bytes items instead, and a line\n\"name score end cigar\" "
                   "is printed for each, in input order.\n",
                   argv[0], NREADS, READ_LEN, REF_LEN);
            return 0;
        }
        char *end;
        long v = strtol(argv[i], &end, 10);
        if (*argv[i] && !*end && i == 1)
            nworkers = v < 1 || v > 256 ? -1 : (int)v;
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else
            nworkers = -1;
    }
    if (nworkers < 1) {
        fprintf(stderr, "usage: %s [WORKERS] [FILE.fa] (WORKERS: 1 to 256)\n", argv[0]);
        return 2;
    }
    make_data();
    if (path) return align_file(path, nworkers);
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
