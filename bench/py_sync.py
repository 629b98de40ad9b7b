#!/usr/bin/env python3
"""Python's multiprocessing counterparts of bench_sync.c (fork start method).

    py_lock_uncontended        Lock.acquire(); Lock.release() in one process (ns)
    py_lock_contended_per_op   two processes increment one shared counter under
                               one Lock (ns per increment; fewer increments than
                               the C bench, the per-op cost is what compares)
    py_pingpong_event          two processes hand a turn over with two Events
                               (us per round trip)
"""
import multiprocessing as mp
import os
import time

QUICK = os.environ.get("MPOOL_BENCH_QUICK", "0") not in ("", "0")
N_UNCONTENDED = 20_000 if QUICK else 1_000_000
N_CONTENDED = 2_000 if QUICK else 100_000
N_ROUNDS = 200 if QUICK else 5_000


def result(metric, value, unit):
    print(f"RESULT {metric} {value:.6g} {unit}", flush=True)


def uncontended():
    lock = mp.Lock()
    acquire, release = lock.acquire, lock.release
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(N_UNCONTENDED):
            acquire()
            release()
        best = min(best, time.perf_counter() - t)
    result("py_lock_uncontended", best / N_UNCONTENDED * 1e9, "ns")


def contender(lock, counter, go):
    go.wait()
    for _ in range(N_CONTENDED):
        with lock:
            counter.value += 1


def contended():
    lock = mp.Lock()
    counter = mp.Value("l", 0, lock=False)
    go = mp.Event()
    procs = [mp.Process(target=contender, args=(lock, counter, go)) for _ in range(2)]
    for p in procs:
        p.start()
    t = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    t = time.perf_counter() - t
    assert counter.value == 2 * N_CONTENDED, counter.value
    result("py_lock_contended_per_op", t / (2 * N_CONTENDED) * 1e9, "ns")


def pong(ping, pong_ev):
    for _ in range(N_ROUNDS):
        ping.wait()
        ping.clear()
        pong_ev.set()


def pingpong():
    ping, pong_ev = mp.Event(), mp.Event()
    p = mp.Process(target=pong, args=(ping, pong_ev))
    t = time.perf_counter()
    p.start()
    for _ in range(N_ROUNDS):
        pong_ev.clear()
        ping.set()
        pong_ev.wait()
    p.join()
    t = time.perf_counter() - t
    result("py_pingpong_event", t / N_ROUNDS * 1e6, "us")


def main():
    mp.set_start_method("fork")
    uncontended()
    contended()
    pingpong()
    print("RATIO python/mpool_lock_uncontended py_lock_uncontended lock_uncontended_mpool")
    print("RATIO python/mpool_lock_contended_per_op py_lock_contended_per_op "
          "lock_contended_mpool_per_op")
    print("RATIO python/mpool_pingpong_event py_pingpong_event pingpong_mpool_event")


if __name__ == "__main__":
    main()
