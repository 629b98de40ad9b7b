"""Python's multiprocessing.Process start + join (fork start method)."""
import multiprocessing as mp
import os
import statistics
import time


def noop():
    pass


def measure(tag, rounds, n):
    per = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            p = mp.Process(target=noop)
            p.start()
            p.join()
        per.append((time.perf_counter() - t0) / n)
    print("RESULT process.start_join%s.python %.6g us" % (tag, statistics.median(per) * 1e6))


def main():
    mp.set_start_method("fork")
    quick = os.environ.get("MPOOL_BENCH_QUICK", "0") not in ("", "0")
    rounds, n = (3, 10) if quick else (7, 50)
    measure("", rounds, n)
    os.sched_setaffinity(0, {os.sched_getaffinity(0).pop()})  # one CPU, as bench_process
    measure(".pinned", rounds, n)


if __name__ == "__main__":
    main()
