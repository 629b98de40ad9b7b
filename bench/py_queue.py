"""Python's multiprocessing.Queue, one producer process -> one consumer
process, 8-byte and 4 KiB bytes items: the twin of bench_queue.c.

The consumer times from the first item to the last, as bench_queue.c does.
Queue() (unbounded, Python's fastest) is the figure the ratios use;
Queue(maxsize=1024), the same capacity as the mpool queue, is printed too.
"""
import multiprocessing as mp
import os
import time


def producer(q, item, n):
    for _ in range(n):
        q.put(item)


def run(item, n, maxsize=0):
    q = mp.Queue(maxsize)
    p = mp.Process(target=producer, args=(q, item, n))
    p.start()
    q.get()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        q.get()
    dt = time.perf_counter() - t0
    p.join()
    return dt


def main():
    mp.set_start_method("fork")
    quick = os.environ.get("MPOOL_BENCH_QUICK", "0") not in ("", "0")
    n8 = 2000 if quick else 200000
    n4k = 500 if quick else 50000
    dt = run(b"12345678", n8)
    print(f"RESULT queue_8B_python {(n8 - 1) / dt:.6g} msgs/s")
    dt = run(b"12345678", n8, 1024)
    print(f"RESULT queue_8B_python_bounded {(n8 - 1) / dt:.6g} msgs/s")
    dt = run(bytes(4096), n4k)
    print(f"RESULT queue_4K_python {(n4k - 1) * 4096 / dt / 1e6:.6g} MB/s")


if __name__ == "__main__":
    main()
