"""Python's multiprocessing.Pool (fork), the twin of bench_pool.c: same
metrics, prefixed py. Only the standard library."""
import math
import multiprocessing as mp
import os
import statistics
import time

QUICK = os.environ.get("MPOOL_BENCH_QUICK", "0") not in ("", "0")


def square(x):
    return x * x


def pi_part(span):
    lo, hi, h = span
    s = 0.0
    for i in range(lo, hi):
        x = (i + 0.5) * h
        s += 4.0 / (1.0 + x * x)
    return s * h


def result(metric, value, unit):
    print(f"RESULT {metric} {value:.6g} {unit}", flush=True)


def bench_start(ctx):
    times = []
    for _ in range(3 if QUICK else 9):
        t0 = time.perf_counter()
        with ctx.Pool(2) as p:
            p.map(square, range(4))
            p.close()
            p.join()
        times.append((time.perf_counter() - t0) * 1e3)
    result("py.pool.start_ms", statistics.median(times), "ms")


def bench_map(p):
    n = 100000 if QUICK else 1000000
    data = list(range(n))
    times = []
    for _ in range(3 if QUICK else 5):
        t0 = time.perf_counter()
        out = p.map(square, data)
        times.append((time.perf_counter() - t0) / n * 1e9)
        assert out[n - 1] == (n - 1) ** 2
    result("py.pool.map_ns_per_item", statistics.median(times), "ns")


def bench_rtt(p):
    k = 200 if QUICK else 2000
    t0 = time.perf_counter()
    for i in range(k):
        assert p.apply(square, (i,)) == i * i
    result("py.pool.apply_rtt_us", (time.perf_counter() - t0) / k * 1e6, "us")
    n = 1000 if QUICK else 10000
    t0 = time.perf_counter()
    got = sum(1 for _ in p.imap_unordered(square, range(n), chunksize=1))
    assert got == n
    result("py.pool.imap_cs1_us", (time.perf_counter() - t0) / n * 1e6, "us")


def main():
    ctx = mp.get_context("fork")
    bench_start(ctx)
    with ctx.Pool(2) as p:
        bench_map(p)
        bench_rtt(p)
        if not QUICK:
            n, tasks = 2000000, 64  # pi in pure Python: N reduced, ratio only
            h = 1.0 / n
            spans = [(n * t // tasks, n * (t + 1) // tasks, h) for t in range(tasks)]
            t0 = time.perf_counter()
            seq = sum(pi_part(s) for s in spans)
            t_seq = time.perf_counter() - t0
            t0 = time.perf_counter()
            par = sum(p.map(pi_part, spans, chunksize=1))
            t_par = time.perf_counter() - t0
            assert math.isclose(seq, par, rel_tol=1e-9)
            result("py.pool.pi_pool2_speedup", t_seq / t_par, "x")


if __name__ == "__main__":
    main()
