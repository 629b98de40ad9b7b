/* The shared heap: zero-filled, aligned, shared across the family (also with
 * processes forked before an allocation), safe under concurrent use, and
 * ENOMEM rather than a crash when full. */
// ctest-timeout: 180
#include "testutil.h"

#include <dirent.h>
#include <stdint.h>

static bool all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

static void alloc_is_zeroed_aligned_and_inside(void **state)
{
    (void)state;
    size_t sizes[] = {1, 8, 63, 64, 65, 1000, 4096, 100000, (1 << 20) - 64, 1 << 20, 5 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = mpool_shm_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        assert_true(mpool_shm_contains(p));
        assert_true(mpool_shm_contains(p + sizes[i] - 1));
        assert_true(all_zero(p, sizes[i]));
        memset(p, 0xab, sizes[i]);
        mpool_shm_free(p);
        /* Reused memory is zero-filled again. */
        p = mpool_shm_alloc(sizes[i]);
        assert_non_null(p);
        assert_true(all_zero(p, sizes[i]));
        mpool_shm_free(p);
    }
}

static void bad_input_is_harmless(void **state)
{
    (void)state;
    errno = 0;
    assert_null(mpool_shm_alloc(0));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(mpool_shm_alloc(SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    mpool_shm_free(NULL);
    int local;
    mpool_shm_free(&local); /* not in the heap: ignored */
    assert_false(mpool_shm_contains(&local));
    char *p = mpool_shm_alloc(100);
    assert_non_null(p);
    mpool_shm_free(p + 8); /* not a block start: ignored */
    mpool_shm_free(p);
    mpool_shm_free(p); /* double free: ignored */
    /* The heap still works and hands out distinct blocks. */
    char *a = mpool_shm_alloc(100), *b = mpool_shm_alloc(100);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    mpool_shm_free(a);
    mpool_shm_free(b);
}

static void stats_count_what_is_in_use(void **state)
{
    (void)state;
    size_t reserved, before, during, after;
    mpool_shm_stats(&reserved, &before);
    assert_true(reserved >= ((size_t)16 << 20));
    void *p = mpool_shm_alloc(3 << 20);
    mpool_shm_stats(NULL, &during);
    assert_true(during >= before + (3 << 20));
    mpool_shm_free(p);
    mpool_shm_stats(NULL, &after);
    assert_int_equal(after, before);
}

/* The child reads a pointer to a block allocated after it was forked,
 * writes to it, and the parent sees the write. */
static int late_child(void *arg)
{
    int *fds = arg;
    uint64_t *block;
    if (read(fds[0], &block, sizeof block) != sizeof block) return 2;
    if (*block != 0x1234) return 3;
    *block = 0x5678;
    return 0;
}

static void shared_with_processes_forked_before(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = tu_fork(late_child, fds);
    assert_true(pid > 0);
    uint64_t *block = mpool_shm_alloc(sizeof *block);
    assert_non_null(block);
    *block = 0x1234;
    assert_int_equal(write(fds[1], &block, sizeof block), sizeof block);
    assert_int_equal(tu_wait(pid, 10), 0);
    assert_int_equal(*block, 0x5678);
    mpool_shm_free(block);
    close(fds[0]);
    close(fds[1]);
}

/* Several processes allocate and free random sizes at once, each filling its
 * blocks with its own pattern and checking it before freeing: any overlap
 * between two live blocks would show as a wrong byte. */
#define STRESS_PROCS 4
#define STRESS_LIVE  64

static int stress_child(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    unsigned char *live[STRESS_LIVE] = {0};
    size_t len[STRESS_LIVE] = {0};
    unsigned char tag = (unsigned char)(seed + 1);
    int rounds = 20000;
    for (int i = 0; i < rounds; i++) {
        int k = rand_r(&seed) % STRESS_LIVE;
        if (live[k]) {
            for (size_t j = 0; j < len[k]; j += 97)
                if (live[k][j] != tag) return 1;
            if (live[k][len[k] - 1] != tag) return 1;
            mpool_shm_free(live[k]);
            live[k] = NULL;
        } else {
            size_t n = 1 + (size_t)(rand_r(&seed) % ((rand_r(&seed) % 8) ? 2000 : 3000000));
            live[k] = mpool_shm_alloc(n);
            if (!live[k]) return 2;
            if (live[k][0] || live[k][n - 1]) return 3; /* not zero-filled */
            memset(live[k], tag, n);
            len[k] = n;
        }
    }
    for (int k = 0; k < STRESS_LIVE; k++) mpool_shm_free(live[k]);
    return 0;
}

static void concurrent_processes_never_overlap(void **state)
{
    (void)state;
    size_t before, after;
    mpool_shm_stats(NULL, &before);
    pid_t pids[STRESS_PROCS];
    for (int i = 0; i < STRESS_PROCS; i++) pids[i] = tu_fork(stress_child, (void *)(uintptr_t)i);
    for (int i = 0; i < STRESS_PROCS; i++) assert_int_equal(tu_wait(pids[i], 120), 0);
    mpool_shm_stats(NULL, &after);
    assert_int_equal(after, before);
}

static void exhaustion_is_enomem_then_recovers(void **state)
{
    (void)state;
    size_t reserved;
    mpool_shm_stats(&reserved, NULL);
    /* Large blocks come untouched from the heap: this costs no memory. */
    size_t chunk = reserved / 16, n = 0;
    void *blocks[64];
    for (; n < 64; n++) {
        errno = 0;
        blocks[n] = mpool_shm_alloc(chunk);
        if (!blocks[n]) break;
    }
    assert_true(n > 0 && n < 64);
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(mpool_shm_alloc(chunk));
    assert_int_equal(errno, ENOMEM);
    for (size_t i = 0; i < n; i++) mpool_shm_free(blocks[i]);
    void *again = mpool_shm_alloc(chunk * 4);
    assert_non_null(again);
    mpool_shm_free(again);
}

static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) v = strtol(line + strlen(key), NULL, 10);
    if (f) fclose(f);
    return v;
}

static int count_dev_shm(void)
{
    int n = 0;
    DIR *d = opendir("/dev/shm");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void reservation_costs_no_memory_and_no_files(void **state)
{
    (void)state;
    /* Run first, before this test file allocated much: the heap's resident
     * shared memory is its header page plus the blocks in use. */
    size_t in_use;
    mpool_shm_stats(NULL, &in_use);
    long shmem_kb = status_kb("RssShmem:");
    assert_true(shmem_kb >= 0);
    assert_true((size_t)shmem_kb * 1024 < in_use + (1 << 20));
    int files = count_dev_shm();
    void *p = mpool_shm_alloc(1000);
    assert_int_equal(count_dev_shm(), files);
    mpool_shm_free(p);
}

static void freed_large_blocks_give_memory_back(void **state)
{
    (void)state;
    /* qemu-user ignores madvise, so the pages stay (cmake/qemu-preload.c
     * writes the zeros MADV_REMOVE would leave). */
    if (tu_emulator()) skip();
    long before = status_kb("RssShmem:");
    size_t n = 64 << 20;
    char *p = mpool_shm_alloc(n);
    assert_non_null(p);
    memset(p, 1, n);
    long during = status_kb("RssShmem:");
    assert_true(during - before >= 60 * 1024);
    mpool_shm_free(p);
    long after = status_kb("RssShmem:");
    assert_true(after - before < 4 * 1024);
}

/* ---- MPOOL_SHM_SIZE (issue 10, bug 13) --------------------------------------- */

/* Runs this test program again with MPOOL_SHM_SIZE = value (NULL: unset)
 * and "--probe", which prints the reservation and the size status: the
 * heap is reserved when the library loads, so only a fresh program reads
 * the variable. The program is named by argv[0], not /proc/self/exe, which
 * names valgrind when the tests run under it. */
static const char *self_path;

static bool probe(const char *value, size_t *reserved, int *status)
{
    int fds[2];
    if (pipe(fds)) return false;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        if (value)
            setenv("MPOOL_SHM_SIZE", value, 1);
        else
            unsetenv("MPOOL_SHM_SIZE");
        tu_exec1(self_path, "test_shm", "--probe");
        _exit(127);
    }
    close(fds[1]);
    char buf[128] = {0};
    ssize_t n, got = 0;
    while (got < (ssize_t)sizeof buf - 1 && (n = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += n;
    close(fds[0]);
    if (tu_wait(pid, 30.0) != 0) return false;
    unsigned long long r;
    if (sscanf(buf, "%llu %d", &r, status) != 2) return false;
    *reserved = (size_t)r;
    return true;
}

static void shm_size_rules_are_exact(void **state)
{
    (void)state;
    const size_t M = (size_t)1 << 20, G = (size_t)1 << 30;
    const struct {
        const char *value;
        int status;
        size_t reserved;
    } cases[] = {
        {NULL, 0, G},
        {"64M", 0, 64 * M},
        {"2g", 0, 2 * G},
        {"16384k", 0, 16 * M},
        {"16777217", 0, 16 * M + 4096}, /* rounded up to a page */
        {"abc", EINVAL, G},
        {"-1", EINVAL, G},
        {"1.5G", EINVAL, G},
        {"", EINVAL, G},
        {"1GB", EINVAL, G},
        {" 64M", EINVAL, G},
        {"64M ", EINVAL, G},
        {"1M", ERANGE, G}, /* under 16 MiB: not raised silently */
        {"0T", ERANGE, G},
        {"65T", ERANGE, G},                  /* over 64 TiB */
        {"18446744073709551615", ERANGE, G}, /* wrapped to 0 before */
        {"18446744073709551616", ERANGE, G},
        {"17179869184G", ERANGE, G}, /* 2^64 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t reserved = 0;
        int status = -1;
        assert_true(probe(cases[i].value, &reserved, &status));
        if (status != cases[i].status || reserved != cases[i].reserved)
            fprintf(stderr, "MPOOL_SHM_SIZE=%s: status %d reserved %zu\n",
                    cases[i].value ? cases[i].value : "(unset)", status, reserved);
        assert_int_equal(status, cases[i].status);
        assert_int_equal(reserved, cases[i].reserved);
    }
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc > 1 && strcmp(argv[1], "--probe") == 0) {
        size_t reserved;
        mpool_shm_stats(&reserved, NULL);
        printf("%zu %d\n", reserved, mpool_shm_size_status());
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reservation_costs_no_memory_and_no_files),
        cmocka_unit_test(alloc_is_zeroed_aligned_and_inside),
        cmocka_unit_test(bad_input_is_harmless),
        cmocka_unit_test(stats_count_what_is_in_use),
        cmocka_unit_test(shared_with_processes_forked_before),
        cmocka_unit_test(concurrent_processes_never_overlap),
        cmocka_unit_test(exhaustion_is_enomem_then_recovers),
        cmocka_unit_test(freed_large_blocks_give_memory_back),
        cmocka_unit_test(shm_size_rules_are_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
