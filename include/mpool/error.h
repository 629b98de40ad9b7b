/* libmpool: error codes, timeouts and machine facts.
 *
 * Every libmpool function that can fail returns an int: 0 on success,
 * otherwise a positive errno value (EINVAL, ENOMEM, ETIMEDOUT, EPIPE, ...)
 * or one of the library's own codes below (1000 and up). Constructors return
 * a pointer, or NULL with errno set. No libmpool function prints, aborts or
 * exits because of bad input.
 *
 * Every call that can block takes a `double timeout` in seconds: negative
 * (MPOOL_FOREVER) waits forever, 0 tries once, a positive value waits at most
 * that long on CLOCK_MONOTONIC, across signals and spurious wake-ups (NaN
 * counts as 0). A wait that ends without success returns ETIMEDOUT, also for
 * a timeout of 0.
 */
#ifndef MPOOL_ERROR_H
#define MPOOL_ERROR_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPOOL_API __attribute__((visibility("default")))

/* Wait without a time limit. */
#define MPOOL_FOREVER (-1.0)

/* The library's own error codes, beyond errno's range of names. */
enum {
    MPOOL_ETASK = 1000, /* a task function returned non-zero */
    MPOOL_EWORKER,      /* the worker running a task died (signal, exit or task timeout) */
    MPOOL_EBROKEN,      /* the barrier is broken (a wait timed out, or abort was called) */
};

/* A short English description of `code` (0, an errno value or an MPOOL_E*
 * code). Never NULL; the string is static and must not be freed. Unknown
 * codes give "Unknown error". */
MPOOL_API const char *mpool_strerror(int code);

/* The symbolic name of `code`, such as "ETIMEDOUT" or "MPOOL_EWORKER";
 * "0" for success and "UNKNOWN" for codes the library never returns. */
MPOOL_API const char *mpool_errname(int code);

/* The number of CPUs this process may run on (its affinity mask), at least 1. */
MPOOL_API int mpool_cpu_count(void);

#ifdef __cplusplus
}
#endif
#endif
