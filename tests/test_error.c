/* Error model: one table behind mpool_strerror and mpool_errname. */
#include "testutil.h"

#include <sched.h>

static const int codes[] = {EINVAL,    ENOMEM, ETIMEDOUT,   EPIPE,         EMSGSIZE,
                            EPERM,     ERANGE, EOWNERDEAD,  EBUSY,         ENODATA,
                            ECANCELED, EPROTO, MPOOL_ETASK, MPOOL_EWORKER, MPOOL_EBROKEN};

static void every_code_has_a_text_and_a_name(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *t = mpool_strerror(codes[i]);
        assert_non_null(t);
        assert_string_not_equal(t, "Unknown error");
        assert_string_not_equal(mpool_errname(codes[i]), "UNKNOWN");
        for (size_t j = 0; j < i; j++) assert_string_not_equal(t, mpool_strerror(codes[j]));
    }
    assert_string_equal(mpool_errname(ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(mpool_errname(MPOOL_EWORKER), "MPOOL_EWORKER");
    assert_string_equal(mpool_errname(0), "0");
}

static void library_codes_are_distinct_and_above_errno(void **state)
{
    (void)state;
    assert_int_equal(MPOOL_ETASK, 1000);
    assert_int_equal(MPOOL_EWORKER, 1001);
    assert_int_equal(MPOOL_EBROKEN, 1002);
}

static void unknown_codes_do_not_crash(void **state)
{
    (void)state;
    assert_string_equal(mpool_strerror(-5), "Unknown error");
    assert_string_equal(mpool_strerror(999999), "Unknown error");
    assert_string_equal(mpool_errname(999999), "UNKNOWN");
    /* Other errno values fall back to libc's text. */
    assert_string_not_equal(mpool_strerror(ENOENT), "Unknown error");
}

static void cpu_count_follows_affinity(void **state)
{
    (void)state;
    cpu_set_t set;
    assert_int_equal(sched_getaffinity(0, sizeof set, &set), 0);
    assert_int_equal(mpool_cpu_count(), CPU_COUNT(&set));
    assert_true(mpool_cpu_count() >= 1);

    /* Narrowed to one CPU, in a child so the suite keeps its CPUs. */
    pid_t pid = fork();
    if (pid == 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) {
                CPU_SET(c, &one);
                break;
            }
        if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(2);
        _exit(mpool_cpu_count() == 1 ? 0 : 1);
    }
    assert_int_equal(tu_wait(pid, 10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_a_text_and_a_name),
        cmocka_unit_test(library_codes_are_distinct_and_above_errno),
        cmocka_unit_test(unknown_codes_do_not_crash),
        cmocka_unit_test(cpu_count_follows_affinity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
