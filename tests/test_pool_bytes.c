// ctest-timeout: 300
/* Bytes items and sources through the Pool: sizes from 0 to 1 MiB and a
 * 64 MiB output, outputs larger and smaller than their inputs, reserve and
 * write mixed, inputs already in the shared heap, ordered and unordered
 * iteration, a worker killed mid-item, a task failing after it wrote, a
 * source failing mid-way, the window bound, the source's thread, a 1 GiB
 * stream in a few MiB of shared heap, random SIGKILLs with exact
 * accounting, and the shared heap back where it was after each. Every wait
 * is bounded. */
#include "testutil.h"

#include <pthread.h>

#define WAIT 60.0 /* bound on any wait that should succeed (noisy 2 CPUs) */

/* An item's first byte says what its task does; the output is built from
 * the input by `shape` (see expect()). */
enum {
    OP_REV = 'r',
    OP_DOUBLE = 'd',
    OP_HALF = 'h',
    OP_EMPTY = 'e',
    OP_KILL = 'k',
    OP_FAIL = 'f',
    OP_PTR = 'p',
    OP_MIXED = 'm',
    OP_BIG = 'b',
    OP_SLOW = 's'
};

#define BIG_OUT ((size_t)64 << 20)

static void fill_big(unsigned char *p, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++) p[i] = (unsigned char)((off + i) * 2654435761u >> 13);
}

static int task(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    const unsigned char *b = in;
    unsigned char op = len ? b[0] : OP_REV;
    switch (op) {
    case OP_DOUBLE: /* the input twice: larger than the input */
        if (mpool_out_write(out, in, len) || mpool_out_write(out, in, len)) return ENOMEM;
        return 0;
    case OP_HALF: /* the first half: smaller */
        return mpool_out_write(out, in, len / 2);
    case OP_EMPTY:
        return 0;
    case OP_KILL: /* dies with half its output written */
        mpool_out_write(out, in, len);
        raise(SIGKILL);
        return 0;
    case OP_FAIL: /* fails after writing */
        mpool_out_write(out, in, len);
        return 42;
    case OP_PTR: /* where the task found its input */
        return mpool_out_write(out, &in, sizeof in);
    case OP_MIXED: { /* write, reserve, write: "<" input-reversed ">" */
        if (mpool_out_write(out, "<", 1)) return ENOMEM;
        unsigned char *r = mpool_out_reserve(out, len);
        if (!r) return errno;
        for (size_t i = 0; i < len; i++) r[i] = b[len - 1 - i];
        return mpool_out_write(out, ">", 1);
    }
    case OP_BIG: /* 64 MiB in 1 MiB steps, reserve and write in turn */
        for (size_t off = 0; off < BIG_OUT; off += 1 << 20) {
            unsigned char chunk[4096];
            if ((off >> 20) % 2) {
                unsigned char *r = mpool_out_reserve(out, 1 << 20);
                if (!r) return errno;
                fill_big(r, off, 1 << 20);
            } else {
                for (size_t k = 0; k < (1 << 20); k += sizeof chunk) {
                    fill_big(chunk, off + k, sizeof chunk);
                    if (mpool_out_write(out, chunk, sizeof chunk)) return ENOMEM;
                }
            }
        }
        return 0;
    case OP_SLOW:
        usleep(2000);
        break;
    }
    unsigned char *r = mpool_out_reserve(out, len); /* OP_REV: reversed */
    if (!r) return errno;
    for (size_t i = 0; i < len; i++) r[i] = b[len - 1 - i];
    return 0;
}

/* An input item of `len` bytes for op (random filler after the op byte). */
static mpool_bytes_t make_item(unsigned char op, size_t len, unsigned *seed)
{
    unsigned char *d = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++) d[i] = (unsigned char)rand_r(seed);
    if (len) d[0] = op;
    return (mpool_bytes_t){d, len};
}

/* The code an item's task leads to. */
static int want_code(const mpool_bytes_t *in)
{
    unsigned char op = in->len ? ((const unsigned char *)in->data)[0] : OP_REV;
    return op == OP_KILL ? MPOOL_EWORKER : op == OP_FAIL ? MPOOL_ETASK : 0;
}

/* Checks one result and its code against its input. */
static void expect(const mpool_bytes_t *in, const mpool_bytes_t *out, int code)
{
    const unsigned char *b = in->data;
    unsigned char op = in->len ? b[0] : OP_REV;
    if (op == OP_KILL || op == OP_FAIL) {
        assert_int_equal(code, op == OP_KILL ? MPOOL_EWORKER : MPOOL_ETASK);
        assert_null(out->data);
        assert_int_equal(out->len, 0);
        return;
    }
    assert_int_equal(code, 0);
    const unsigned char *o = out->data;
    switch (op) {
    case OP_DOUBLE:
        assert_int_equal(out->len, 2 * in->len);
        assert_memory_equal(o, b, in->len);
        assert_memory_equal(o + in->len, b, in->len);
        break;
    case OP_HALF:
        assert_int_equal(out->len, in->len / 2);
        if (out->len) assert_memory_equal(o, b, out->len);
        break;
    case OP_EMPTY:
        assert_int_equal(out->len, 0);
        assert_null(out->data);
        break;
    case OP_MIXED:
        assert_int_equal(out->len, in->len + 2);
        assert_int_equal(o[0], '<');
        assert_int_equal(o[in->len + 1], '>');
        for (size_t i = 0; i < in->len; i++) assert_int_equal(o[1 + i], b[in->len - 1 - i]);
        break;
    default:
        assert_int_equal(out->len, in->len);
        for (size_t i = 0; i < in->len; i++)
            if (o[i] != b[in->len - 1 - i]) fail_msg("item byte %zu differs", i);
    }
}

static mpool_pool_t *pool(int processes)
{
    mpool_pool_opts_t o = {.processes = processes};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    return p;
}

static size_t heap_in_use(void)
{
    size_t used;
    mpool_shm_stats(NULL, &used);
    return used;
}

/* The shared heap in use, checked after each round against the first
 * round's (the pool keeps up to two staging blocks for the next call: a
 * steady state, not growth), and against the start once the pool is freed. */
typedef struct {
    size_t start, steady;
} heap_check_t;

static heap_check_t heap_start(void)
{
    return (heap_check_t){heap_in_use(), 0};
}

static void heap_round(heap_check_t *h)
{
    size_t used = heap_in_use();
    if (!h->steady) h->steady = used;
    assert_int_equal(used, h->steady);
}

static void heap_end(const heap_check_t *h)
{
    assert_int_equal(heap_in_use(), h->start);
}

static void free_items(mpool_bytes_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i].data);
}

/* ---- map_bytes -------------------------------------------------------------- */

/* Sizes from 0 to 1 MiB, outputs larger, smaller, empty and mixed, one
 * failing item; every chunk size class. */
static void test_map_sizes(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    enum { N = 300 };
    static const unsigned char ops[] = {OP_REV, OP_DOUBLE, OP_HALF, OP_EMPTY, OP_MIXED, OP_FAIL};
    mpool_bytes_t in[N], out[N];
    unsigned seed = 7;
    for (size_t i = 0; i < N; i++) {
        size_t len = i < 20 ? i : (size_t)rand_r(&seed) % (i % 10 == 0 ? (1u << 20) : 4096);
        if (i == N - 1) len = 1u << 20;
        in[i] = make_item(ops[i % (sizeof ops)], len, &seed);
    }
    size_t sizes[] = {0, 1, 7, 1000};
    for (int k = 0; k < 4; k++) {
        int err = mpool_pool_map_bytes(p, task, in, N, out, sizes[k]);
        assert_int_equal(err, MPOOL_ETASK); /* item 5 fails */
        for (size_t i = 0; i < N; i++) expect(&in[i], &out[i], want_code(&in[i]));
        free_items(out, N);
        heap_round(&h);
    }
    /* The first failure's details. */
    mpool_async_t *a = mpool_pool_map_bytes_async(p, task, in, N, out, 0);
    assert_non_null(a);
    assert_int_equal(mpool_async_get(a, WAIT), MPOOL_ETASK);
    mpool_failure_t f;
    assert_int_equal(mpool_async_failure(a, &f), 0);
    assert_int_equal(f.code, MPOOL_ETASK);
    assert_int_equal(f.status, 42);
    assert_int_equal(f.index, 5);
    mpool_async_free(a);
    free_items(out, N);
    heap_round(&h);
    /* n = 0 */
    assert_int_equal(mpool_pool_map_bytes(p, task, NULL, 0, NULL, 0), 0);
    free_items(in, N);
    mpool_pool_free(p);
    heap_end(&h);
}

static void test_big_output(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    unsigned char op = OP_BIG;
    mpool_bytes_t in = {&op, 1}, out;
    assert_int_equal(mpool_pool_map_bytes(p, task, &in, 1, &out, 0), 0);
    assert_int_equal(out.len, BIG_OUT);
    unsigned char *want = malloc(1 << 20);
    for (size_t off = 0; off < BIG_OUT; off += 1 << 20) {
        fill_big(want, off, 1 << 20);
        assert_memory_equal((unsigned char *)out.data + off, want, 1 << 20);
    }
    free(want);
    free(out.data);
    heap_round(&h);
    mpool_pool_free(p);
    heap_end(&h);
}

/* Items already in the shared heap are read in place; others are copies. */
static void test_inputs_in_heap(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    char *shared = mpool_shm_alloc(64), priv[64];
    shared[0] = priv[0] = OP_PTR;
    mpool_bytes_t in[2] = {{shared, 64}, {priv, 64}}, out[2];
    assert_int_equal(mpool_pool_map_bytes(p, task, in, 2, out, 1), 0);
    void *seen[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(out[k].len, sizeof(void *));
        memcpy(&seen[k], out[k].data, sizeof(void *));
        free(out[k].data);
    }
    assert_ptr_equal(seen[0], shared);
    assert_ptr_not_equal(seen[1], priv);
    assert_true(mpool_shm_contains(seen[1])); /* the copy */
    mpool_shm_free(shared);
    mpool_pool_free(p);
    heap_end(&h);
}

/* ---- iterators ------------------------------------------------------------- */

static void iterate(mpool_pool_t *p, bool ordered, const mpool_bytes_t *in, size_t n, size_t cs)
{
    mpool_iter_t *it = mpool_pool_imap_bytes(p, task, in, n, cs, ordered);
    assert_non_null(it);
    bool *seen = calloc(n, 1);
    long x = 0;
    assert_int_equal(mpool_iter_next(it, &x, NULL, 0), EINVAL); /* not a fixed-size iterator */
    for (size_t k = 0; k < n; k++) {
        mpool_bytes_t out = {(void *)1, 99};
        size_t idx = SIZE_MAX;
        int code = mpool_iter_next_bytes(it, &out, &idx, WAIT);
        assert_true(idx < n);
        if (ordered) assert_int_equal(idx, k);
        assert_false(seen[idx]);
        seen[idx] = true;
        expect(&in[idx], &out, code);
        free(out.data);
    }
    mpool_bytes_t out;
    assert_int_equal(mpool_iter_next_bytes(it, &out, NULL, 0), ENODATA);
    mpool_iter_free(it);
    free(seen);
}

static void test_iterators(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    enum { N = 500 };
    mpool_bytes_t in[N];
    unsigned seed = 3;
    static const unsigned char ops[] = {OP_REV, OP_DOUBLE, OP_SLOW, OP_HALF, OP_FAIL, OP_EMPTY};
    for (size_t i = 0; i < N; i++)
        in[i] = make_item(ops[i % 6], (size_t)rand_r(&seed) % 3000, &seed);
    for (size_t cs = 1; cs <= 16; cs *= 4) {
        iterate(p, true, in, N, cs);
        iterate(p, false, in, N, cs);
        heap_round(&h);
    }
    free_items(in, N);
    mpool_pool_free(p);
    heap_end(&h);
}

/* ---- deaths and failures --------------------------------------------------- */

/* A worker killed mid-item fails that item only; a task failing after it
 * wrote delivers nothing; every other item is right; nothing leaks. */
static void test_deaths(void **state)
{
    (void)state;
    int children = tu_count_children(), fds = tu_count_fds();
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    enum { N = 120 };
    mpool_bytes_t in[N], out[N];
    unsigned seed = 11;
    for (size_t i = 0; i < N; i++) {
        unsigned char op = i % 17 == 3 ? OP_KILL : i % 13 == 5 ? OP_FAIL : OP_MIXED;
        in[i] = make_item(op, 1 + (size_t)rand_r(&seed) % 5000, &seed);
    }
    for (size_t cs = 1; cs <= 8; cs *= 8) {
        mpool_async_t *a = mpool_pool_map_bytes_async(p, task, in, N, out, cs);
        assert_non_null(a);
        assert_int_equal(mpool_async_get(a, WAIT), MPOOL_EWORKER); /* item 3 is first */
        for (size_t i = 0; i < N; i++) expect(&in[i], &out[i], want_code(&in[i]));
        mpool_async_free(a);
        free_items(out, N);
        heap_round(&h);
    }
    free_items(in, N);
    mpool_pool_free(p);
    heap_end(&h);
    assert_int_equal(tu_count_children(), children);
    assert_int_equal(tu_count_fds(), fds);
}

/* Kills one of the pool's workers at random, now and then. */
static int maybe_kill(unsigned *seed)
{
    pid_t server = 0, pids[8];
    if (rand_r(seed) % 4 || tu_children(getpid(), false, &server, 1) < 1) return 0;
    int n = tu_children(server, false, pids, 8);
    return n > 0 && kill(pids[rand_r(seed) % n], SIGKILL) == 0;
}

/* Random SIGKILLs of workers during bytes iterations: every item comes out
 * once, right or MPOOL_EWORKER, at most one per kill; the heap comes back. */
static void test_chaos(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    enum { N = 3000 };
    mpool_bytes_t *in = calloc(N, sizeof *in);
    unsigned seed = 5;
    for (size_t i = 0; i < N; i++)
        in[i] = make_item(i % 2 ? OP_SLOW : OP_REV, 1 + (size_t)rand_r(&seed) % 2000, &seed);
    int kills = 0, died = 0, right = 0;
    for (int round = 0; round < 3; round++) {
        mpool_iter_t *it = mpool_pool_imap_bytes(p, task, in, N, 1 + round * 3, round != 1);
        assert_non_null(it);
        bool *seen = calloc(N, 1);
        for (size_t got = 0; got < N;) {
            mpool_bytes_t out;
            size_t idx;
            int code = mpool_iter_next_bytes(it, &out, &idx, 0.005);
            if (code == ETIMEDOUT) {
                kills += maybe_kill(&seed);
                continue;
            }
            assert_true(idx < N && !seen[idx]);
            seen[idx] = true;
            got++;
            if (code == MPOOL_EWORKER) {
                assert_null(out.data);
                died++;
                continue;
            }
            expect(&in[idx], &out, 0);
            right++;
            free(out.data);
        }
        mpool_bytes_t out;
        assert_int_equal(mpool_iter_next_bytes(it, &out, NULL, 0), ENODATA);
        mpool_iter_free(it);
        free(seen);
        heap_round(&h);
    }
    print_message("bytes chaos: %d kills, %d items failed, %d right\n", kills, died, right);
    assert_int_equal(died + right, 3 * N);
    assert_true(died <= kills);
    free_items(in, N);
    free(in);
    mpool_pool_free(p);
    heap_end(&h);
}

/* ---- sources --------------------------------------------------------------- */

typedef struct {
    size_t n, read, fail_at;
    size_t *returned; /* by the test, after each next */
    size_t max_out;   /* most items read and not yet returned */
    size_t window;
    pid_t tid;
    bool wrong_thread;
    size_t item_len;
    unsigned char buf[70000];
} src_t;

static int source(void *state, mpool_bytes_t *item)
{
    src_t *s = state;
    if (gettid() != s->tid) s->wrong_thread = true;
    if (s->read == s->fail_at) return EIO;
    if (s->read == s->n) return ENODATA;
    size_t len = s->item_len ? s->item_len : s->read % 700;
    for (size_t i = 0; i < len; i++) s->buf[i] = (unsigned char)(s->read * 31 + i);
    if (len) s->buf[0] = OP_REV;
    *item = (mpool_bytes_t){s->buf, len}; /* reused at the next call */
    s->read++;
    if (s->read - *s->returned > s->max_out) s->max_out = s->read - *s->returned;
    return 0;
}

static void check_source_item(size_t idx, const mpool_bytes_t *out)
{
    size_t len = idx % 700;
    assert_int_equal(out->len, len);
    const unsigned char *o = out->data;
    for (size_t i = 0; i < len; i++) {
        unsigned char want = i == 0 ? OP_REV : (unsigned char)(idx * 31 + i);
        if (o[len - 1 - i] != want) fail_msg("item %zu byte %zu", idx, i);
    }
}

static void run_source(mpool_pool_t *p, bool ordered, size_t window, size_t n, size_t fail_at)
{
    size_t returned = 0;
    src_t *s = calloc(1, sizeof *s);
    *s = (src_t){.n = n, .fail_at = fail_at, .returned = &returned, .tid = gettid()};
    mpool_iter_t *it = mpool_pool_imap_source(p, task, source, s, window, ordered);
    assert_non_null(it);
    bool *seen = calloc(n + 1, 1);
    size_t got = 0;
    for (;;) {
        mpool_bytes_t out;
        size_t idx = SIZE_MAX;
        int code = mpool_iter_next_bytes(it, &out, &idx, WAIT);
        if (code == ENODATA || code == EIO) {
            assert_int_equal(code, fail_at < n ? EIO : ENODATA);
            if (code == EIO) assert_int_equal(mpool_iter_next_bytes(it, &out, NULL, 0), ENODATA);
            break;
        }
        assert_int_equal(code, 0);
        returned++;
        assert_true(idx < n && !seen[idx]);
        if (ordered) assert_int_equal(idx, got);
        seen[idx] = true;
        check_source_item(idx, &out);
        free(out.data);
        got++;
    }
    assert_int_equal(got, fail_at < n ? fail_at : n);
    assert_false(s->wrong_thread);
    if (window) assert_true(s->max_out <= window);
    mpool_iter_free(it);
    free(seen);
    free(s);
}

static void test_source(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    run_source(p, true, 0, 2000, SIZE_MAX);
    run_source(p, false, 0, 2000, SIZE_MAX);
    run_source(p, true, 5, 300, SIZE_MAX);
    run_source(p, false, 1, 50, SIZE_MAX);
    run_source(p, true, 16, 1000, 377); /* the source fails mid-way */
    run_source(p, false, 16, 1000, 377);
    run_source(p, true, 0, 0, SIZE_MAX); /* empty stream */
    heap_round(&h);
    /* Bad arguments; a closed pool. */
    assert_null(mpool_pool_imap_source(p, task, NULL, NULL, 0, true));
    assert_int_equal(errno, EINVAL);
    assert_null(mpool_pool_imap_source(NULL, task, source, NULL, 0, true));
    assert_int_equal(mpool_pool_close(p), 0);
    assert_null(mpool_pool_imap_source(p, task, source, NULL, 0, true));
    assert_int_equal(errno, EINVAL);
    mpool_pool_free(p);
    heap_end(&h);
}

/* A stream of 1 GiB in 64 KiB items keeps the shared heap to a few MiB:
 * window (64) times the item size, whatever the stream's length. */
static int sum_task(const void *in, size_t len, mpool_out_t *out, void *ctx)
{
    (void)ctx;
    uint64_t sum = 0;
    const unsigned char *b = in;
    for (size_t i = 0; i < len; i += 64) sum += b[i];
    return mpool_out_write(out, &sum, sizeof sum);
}

static void test_stream_1gib(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(2);
    size_t before = heap_in_use(), peak = 0, returned = 0;
    src_t *s = calloc(1, sizeof *s);
    *s = (src_t){
        .n = 16384, .fail_at = SIZE_MAX, .returned = &returned, .tid = gettid(), .item_len = 65536};
    mpool_iter_t *it = mpool_pool_imap_source(p, sum_task, source, s, 64, true);
    assert_non_null(it);
    mpool_bytes_t out;
    size_t idx;
    int code;
    while ((code = mpool_iter_next_bytes(it, &out, &idx, WAIT)) == 0) {
        assert_int_equal(out.len, sizeof(uint64_t));
        free(out.data);
        returned++;
        size_t used = heap_in_use() - before;
        if (used > peak) peak = used;
    }
    assert_int_equal(code, ENODATA);
    assert_int_equal(returned, 16384);
    print_message("1 GiB stream: peak shared heap %.2f MiB, window %zu items at most\n",
                  (double)peak / (1 << 20), s->max_out);
    assert_true(peak < (size_t)16 << 20);
    mpool_iter_free(it);
    free(s);
    heap_round(&h);
    mpool_pool_free(p);
    heap_end(&h);
}

/* ---- life cycle ------------------------------------------------------------ */

/* An async dropped before it is done, a worker replaced every 3 items, and
 * terminate or close in the middle of a source: the v1 promises hold. */
static void test_lifecycle(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    enum { N = 400 };
    mpool_bytes_t in[N], out[N];
    unsigned seed = 9;
    for (size_t i = 0; i < N; i++)
        in[i] = make_item(i % 3 ? OP_MIXED : OP_SLOW, 1 + (size_t)rand_r(&seed) % 3000, &seed);
    mpool_pool_opts_t o = {.processes = 2, .maxtasksperchild = 3};
    mpool_pool_t *p = mpool_pool_new(&o);
    assert_non_null(p);
    assert_int_equal(mpool_pool_map_bytes(p, task, in, N, out, 4), 0);
    for (size_t i = 0; i < N; i++) expect(&in[i], &out[i], 0);
    free_items(out, N);
    mpool_async_t *a = mpool_pool_map_bytes_async(p, task, in, N, out, 1);
    assert_non_null(a);
    for (double end = tu_now() + 0.05; tu_now() < end;) {
    }                    /* let some chunks complete: the free must not collect them */
    mpool_async_free(a); /* dropped: the pool finishes it and frees it all */
    for (size_t i = 0; i < N; i++) assert_null(out[i].data); /* nothing collected by the free */
    mpool_pool_free(p);
    heap_end(&h); /* nothing of the dropped call is left */

    for (int closing = 0; closing < 2; closing++) {
        p = pool(2);
        size_t returned = 0;
        src_t *s = calloc(1, sizeof *s);
        *s = (src_t){.n = 100000, .fail_at = SIZE_MAX, .returned = &returned, .tid = gettid()};
        mpool_iter_t *it = mpool_pool_imap_source(p, task, source, s, 32, true);
        assert_non_null(it);
        int code;
        mpool_bytes_t r;
        for (size_t k = 0; k < 50; k++) {
            assert_int_equal(mpool_iter_next_bytes(it, &r, NULL, WAIT), 0);
            free(r.data);
            returned++;
        }
        assert_int_equal(closing ? mpool_pool_close(p) : mpool_pool_terminate(p), 0);
        size_t ok = 0, cancelled = 0;
        while ((code = mpool_iter_next_bytes(it, &r, NULL, WAIT)) == 0 || code == ECANCELED) {
            free(r.data);
            returned++;
            code ? cancelled++ : ok++;
        }
        print_message("%s mid-source: %zu more came out right, %zu cancelled, then %s\n",
                      closing ? "close" : "terminate", ok, cancelled, mpool_errname(code));
        assert_int_equal(code, EINVAL); /* the stream was cut */
        assert_int_equal(mpool_iter_next_bytes(it, &r, NULL, 0), ENODATA);
        assert_true(s->read - 50 <= 32); /* no more than the window was read after */
        if (closing) assert_int_equal(cancelled, 0);
        mpool_iter_free(it);
        free(s);
        mpool_pool_free(p);
    }
    heap_end(&h);
    free_items(in, N);
}

/* ---- bad input ------------------------------------------------------------- */

static void test_bad_input(void **state)
{
    (void)state;
    heap_check_t h = heap_start();
    mpool_pool_t *p = pool(1);
    char x = OP_REV;
    mpool_bytes_t in = {&x, 1}, bad = {NULL, 5}, out;
    assert_int_equal(mpool_pool_map_bytes(NULL, task, &in, 1, &out, 0), EINVAL);
    assert_int_equal(mpool_pool_map_bytes(p, NULL, &in, 1, &out, 0), EINVAL);
    assert_int_equal(mpool_pool_map_bytes(p, task, NULL, 1, &out, 0), EINVAL);
    assert_int_equal(mpool_pool_map_bytes(p, task, &in, 1, NULL, 0), EINVAL);
    assert_int_equal(mpool_pool_map_bytes(p, task, &bad, 1, &out, 0), EINVAL);
    assert_null(mpool_pool_imap_bytes(p, task, &bad, 1, 0, true));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mpool_out_write(NULL, "a", 1), EINVAL);
    assert_null(mpool_out_reserve(NULL, 1));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mpool_iter_next_bytes(NULL, &out, NULL, 0), EINVAL);
    mpool_iter_t *it = mpool_pool_imap_bytes(p, task, &in, 1, 0, true);
    assert_non_null(it);
    assert_int_equal(mpool_iter_next_bytes(it, NULL, NULL, 0), EINVAL);
    assert_int_equal(mpool_iter_next_bytes(it, &out, NULL, WAIT), 0);
    assert_int_equal(out.len, 1);
    free(out.data);
    mpool_iter_free(it);
    long v = 3;
    mpool_iter_t *fixed =
        mpool_pool_imap(p, (mpool_task_fn)(void (*)(void))task, &v, 0, sizeof v, sizeof v, 0);
    assert_non_null(fixed);
    assert_int_equal(mpool_iter_next_bytes(fixed, &out, NULL, 0), EINVAL);
    mpool_iter_free(fixed);
    assert_int_equal(mpool_pool_terminate(p), 0);
    assert_int_equal(mpool_pool_map_bytes(p, task, &in, 1, &out, 0), EINVAL);
    mpool_pool_free(p);
    heap_end(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_sizes),      cmocka_unit_test(test_big_output),
        cmocka_unit_test(test_inputs_in_heap), cmocka_unit_test(test_iterators),
        cmocka_unit_test(test_deaths),         cmocka_unit_test(test_chaos),
        cmocka_unit_test(test_source),         cmocka_unit_test(test_stream_1gib),
        cmocka_unit_test(test_lifecycle),      cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
