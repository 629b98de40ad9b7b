/* Shared by the benchmark programs: a clock, the output protocol of
 * bench/run.py, and the quick-mode switch. */
#ifndef MPOOL_BENCH_H
#define MPOOL_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* MPOOL_BENCH_QUICK=1: a smoke run with small counts. */
static inline bool bench_quick(void)
{
    const char *q = getenv("MPOOL_BENCH_QUICK");
    return q && *q && *q != '0';
}

/* One measurement for bench/run.py. Units ending in "/s" are rates. */
static inline void bench_result(const char *metric, double value, const char *unit)
{
    printf("RESULT %s %.6g %s\n", metric, value, unit);
    fflush(stdout);
}

/* Asks bench/run.py to report median(a) / median(b). */
static inline void bench_ratio(const char *label, const char *a, const char *b)
{
    printf("RATIO %s %s %s\n", label, a, b);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of n measurements (sorts them in place). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Keeps the compiler from dropping a computation. */
static inline void bench_use(const void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

#endif
