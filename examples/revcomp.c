/* revcomp: the reverse complement of every record of a FASTA file, through
 * a pool source (mpool_pool_imap_source), in input order, in bounded
 * memory whatever the input size. The Benchmarks Game's rules: each header
 * line unchanged; the sequence reverse-complemented with the IUPAC table
 * (ACGTUMRWSYKVHDBN to TGCAAKYWSRMBDHVN, lower case to the same upper-case
 * complements; other bytes are kept as they are); sequence lines wrapped at
 * 60 characters.
 *
 * The caller's process only finds record boundaries and moves bytes; the
 * workers do the line handling and the complementing.
 *
 *     revcomp [--workers N] [--window N] [FILE]   (stdin without FILE;
 *                                                 N = 0: no pool, one process)
 *     revcomp --generate MIB [--seed S]          a random FASTA of about MIB
 *                                                 MiB on stdout (records of
 *                                                 1-10,000 bases)
 */
#include <mpool.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE 60

static unsigned char complement[256];

static void init_complement(void)
{
    for (int c = 0; c < 256; c++) complement[c] = (unsigned char)c;
    const char *from = "ACGTUMRWSYKVHDBN", *to = "TGCAAKYWSRMBDHVN";
    for (int i = 0; from[i]; i++) {
        complement[(unsigned char)from[i]] = (unsigned char)to[i];
        complement[(unsigned char)from[i] + 'a' - 'A'] = (unsigned char)to[i];
    }
}

/* ---- one record: the work of a task ----------------------------------------- */

/* A record is its header line (from '>' to the newline, if it starts with
 * '>') and the sequence lines after it. */
static size_t header_len(const char *rec, size_t len)
{
    if (!len || rec[0] != '>') return 0;
    const char *nl = memchr(rec, '\n', len);
    return nl ? (size_t)(nl - rec) + 1 : len;
}

/* Bases in s: every byte but the line ends, counted with memchr (which
 * scans many bytes a step) rather than byte by byte. */
static size_t count_of(const char *s, size_t len, char c)
{
    size_t n = 0;
    for (const char *p = s, *end = s + len; (p = memchr(p, c, (size_t)(end - p))); p++) n++;
    return n;
}

static size_t bases(const char *s, size_t len)
{
    return len - count_of(s, len, '\n') - count_of(s, len, '\r');
}

/* Bytes of the record's reverse complement. */
static size_t revcomp_size(const char *rec, size_t len)
{
    size_t h = header_len(rec, len), n = bases(rec + h, len - h);
    return h + (h && rec[h - 1] != '\n') + n + (n + LINE - 1) / LINE;
}

/* dst[k] = complement of src[n - 1 - k]: no aliasing, so the compiler may
 * unroll it. */
static void complement_reversed(char *restrict dst, const unsigned char *restrict src, size_t n)
{
    for (size_t k = 0; k < n; k++) dst[k] = (char)complement[src[n - 1 - k]];
}

/* Writes the reverse complement of the record to dst (revcomp_size bytes).
 * The sequence is read backwards one input line at a time (memrchr finds
 * the line ends) and written forwards in runs that end at an input line's
 * start or an output line's end, so that the inner loop is only the table
 * lookup. */
static void revcomp_into(const char *rec, size_t len, char *dst)
{
    size_t h = header_len(rec, len);
    memcpy(dst, rec, h);
    dst += h;
    if (h && rec[h - 1] != '\n') *dst++ = '\n';
    const unsigned char *p = (const unsigned char *)rec + len,
                        *stop = (const unsigned char *)rec + h;
    size_t col = 0;
    while (p > stop) {
        const unsigned char *nl = memrchr(stop, '\n', (size_t)(p - stop));
        const unsigned char *from = nl ? nl + 1 : stop;
        if (p > from && p[-1] == '\r') p--; /* CRLF input */
        while (p > from) {
            size_t run = (size_t)(p - from), room = LINE - col;
            if (run > room) run = room;
            p -= run;
            complement_reversed(dst, p, run);
            dst += run;
            if ((col += run) == LINE) {
                *dst++ = '\n';
                col = 0;
            }
        }
        p = nl ? nl : stop;
    }
    if (col) *dst = '\n';
}

static int revcomp_task(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    size_t size = revcomp_size(in, len);
    char *dst = mpool_out_reserve(out, size);
    if (!dst) return errno;
    revcomp_into(in, len, dst);
    return 0;
}

/* ---- reading records: the source -------------------------------------------- */

typedef struct {
    FILE *f;
    char *buf;
    size_t cap, start, end; /* unread bytes: buf[start, end) */
    bool eof;
    int error;
} reader_t;

/* Makes room and reads more; false at the end of the input (or an error). */
static bool read_more(reader_t *r)
{
    if (r->eof) return false;
    if (r->start) { /* keep the unread bytes at the front */
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : (size_t)1 << 20;
        char *b = realloc(r->buf, cap);
        if (!b) {
            r->error = ENOMEM;
            return false;
        }
        r->buf = b;
        r->cap = cap;
    }
    size_t got = fread(r->buf + r->end, 1, r->cap - r->end, r->f);
    r->end += got;
    if (got == 0) {
        r->eof = true;
        if (ferror(r->f)) r->error = EIO;
    }
    return got > 0;
}

/* The next record: from r->start up to the next '>' that begins a line,
 * or the end. Valid until the next call: the pool copies it first. Looks
 * for the rare '>' rather than for every newline. */
static int next_record(void *state, mpool_bytes_t *item)
{
    reader_t *r = state;
    size_t from = 1; /* offset from start where to look for '>' */
    for (;;) {
        size_t avail = r->end - r->start;
        const char *s = r->buf + r->start, *gt;
        while (from < avail && (gt = memchr(s + from, '>', avail - from))) {
            if (gt[-1] == '\n') {
                size_t len = (size_t)(gt - s);
                *item = (mpool_bytes_t){(void *)s, len};
                r->start += len;
                return 0;
            }
            from = (size_t)(gt - s) + 1;
        }
        from = avail > 1 ? avail : 1;
        if (!read_more(r)) break;
    }
    if (r->error) return r->error;
    if (r->start == r->end) return ENODATA;
    *item = (mpool_bytes_t){r->buf + r->start, r->end - r->start};
    r->start = r->end;
    return 0;
}

/* ---- the two ways to run it --------------------------------------------------- */

static int run_pool(reader_t *r, int workers, size_t window)
{
    mpool_pool_opts_t o = {.processes = workers};
    mpool_pool_t *pool = mpool_pool_new(&o);
    if (!pool) {
        fprintf(stderr, "revcomp: pool: %s\n", mpool_strerror(errno));
        return 1;
    }
    mpool_iter_t *it = mpool_pool_imap_source(pool, revcomp_task, next_record, r, window, true);
    int code = it ? 0 : errno;
    mpool_bytes_t out;
    while (it && (code = mpool_iter_next_bytes(it, &out, NULL, MPOOL_FOREVER)) == 0) {
        fwrite(out.data, 1, out.len, stdout);
        free(out.data);
    }
    mpool_iter_free(it);
    mpool_pool_free(pool);
    if (code != ENODATA) {
        fprintf(stderr, "revcomp: %s\n", mpool_strerror(code));
        return 1;
    }
    return 0;
}

static int run_sequential(reader_t *r)
{
    char *dst = NULL;
    size_t cap = 0;
    mpool_bytes_t rec;
    int code;
    while ((code = next_record(r, &rec)) == 0) {
        size_t size = revcomp_size(rec.data, rec.len);
        if (size > cap) {
            free(dst);
            if (!(dst = malloc(cap = size))) {
                code = ENOMEM;
                break;
            }
        }
        revcomp_into(rec.data, rec.len, dst);
        fwrite(dst, 1, size, stdout);
    }
    free(dst);
    if (code != ENODATA) {
        fprintf(stderr, "revcomp: %s\n", mpool_strerror(code));
        return 1;
    }
    return 0;
}

/* ---- a test input -------------------------------------------------------------- */

static int generate(double mib, uint64_t seed)
{
    static const char alphabet[] = "ACGTACGTACGTACGTacgtNRYKM";
    uint64_t x = seed * 2654435761u + 1;
    char line[LINE + 1];
    double total = 0, want = mib * 1048576.0;
    for (unsigned long rec = 0; total < want; rec++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        size_t n = 1 + (size_t)(x % 10000);
        total += printf(">rec%lu random sequence of %zu bases\n", rec, n);
        for (size_t done = 0; done < n;) {
            size_t k = n - done < LINE ? n - done : LINE;
            for (size_t i = 0; i < k; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                line[i] = alphabet[x % (sizeof alphabet - 1)];
            }
            line[k] = '\n';
            fwrite(line, 1, k + 1, stdout);
            total += (double)k + 1;
            done += k;
        }
    }
    return 0;
}

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [--workers N] [--window N] [FILE]\n"
            "       %s --generate MIB [--seed S]\n\n"
            "Writes the reverse complement of every FASTA record of FILE (or stdin)\n"
            "to stdout, in input order: headers unchanged, sequences complemented\n"
            "with the IUPAC table and wrapped at %d characters. Records go to a pool\n"
            "of N worker processes (default: one per CPU; 0: no pool) through a\n"
            "source with a window of N records (default: the pool's).\n"
            "--generate writes a random FASTA of about MIB MiB instead.\n",
            prog, prog, LINE);
}

/* A whole non-negative number, or -1. */
static long number(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v >= 0 ? v : -1;
}

int main(int argc, char **argv)
{
    long workers = mpool_cpu_count(), window = 0, gen = -1, seed = 1;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long *opt = !strcmp(a, "--workers")    ? &workers
                    : !strcmp(a, "--window")   ? &window
                    : !strcmp(a, "--generate") ? &gen
                    : !strcmp(a, "--seed")     ? &seed
                                               : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, argv[0]);
            return 0;
        } else if (opt) {
            if (i + 1 == argc || (*opt = number(argv[++i])) < 0) {
                fprintf(stderr, "revcomp: %s needs a whole number\n", a);
                return 2;
            }
        } else if (a[0] == '-' || path) {
            usage(stderr, argv[0]);
            return 2;
        } else {
            path = a;
        }
    }
    static char obuf[1 << 20];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    if (gen >= 0) return generate((double)gen, (uint64_t)seed);
    init_complement();
    reader_t r = {.f = path ? fopen(path, "rb") : stdin};
    if (!r.f) {
        fprintf(stderr, "revcomp: %s: %s\n", path, strerror(errno));
        return 1;
    }
    int rc = workers ? run_pool(&r, (int)workers, (size_t)window) : run_sequential(&r);
    if (path) fclose(r.f);
    free(r.buf);
    if (fflush(stdout)) rc = 1;
    return rc;
}
