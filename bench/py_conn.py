"""Python's multiprocessing.Pipe: 8-byte send_bytes ping-pong and one-way
64 KiB send_bytes streaming between two processes: the twin of
bench_conn.c."""
import multiprocessing as mp
import os
import time

CHUNK = 65536


def echo(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def rtt(n):
    a, b = mp.Pipe(True)
    p = mp.Process(target=echo, args=(b, n))
    p.start()
    msg = b"ping!!!\0"
    t0 = time.perf_counter()
    for _ in range(n):
        a.send_bytes(msg)
        a.recv_bytes()
    dt = time.perf_counter() - t0
    p.join()
    return dt / n


def sender(conn, n):
    buf = bytes(CHUNK)
    for _ in range(n):
        conn.send_bytes(buf)


def stream(n):
    r, w = mp.Pipe(False)
    p = mp.Process(target=sender, args=(w, n))
    p.start()
    r.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        r.recv_bytes()
    dt = time.perf_counter() - t0
    p.join()
    return (n - 1) * CHUNK / dt / 1e9


def main():
    mp.set_start_method("fork")
    quick = os.environ.get("MPOOL_BENCH_QUICK", "0") not in ("", "0")
    print(f"RESULT pipe_rtt_8B_python {rtt(500 if quick else 20000) * 1e6:.6g} us")
    print(f"RESULT pipe_stream_64K_python {stream(200 if quick else 20000):.6g} GB/s")


if __name__ == "__main__":
    main()
