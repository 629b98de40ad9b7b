"""Python's multiprocessing.Pool (fork) on bytes, the twin of bench_bytes.c:
map over 1e6 bytes objects of 16-64 bytes returned reversed, and the
reverse complement of the same generated 250 MiB FASTA through Pool.imap
(records streamed from the file, chunksize 16), written to /dev/null.
Only the standard library. The FASTA comes from bench_bytes (it makes it
next to the revcomp example in the build directory, MPOOL_BENCH_BUILD)."""
import multiprocessing as mp
import os
import statistics
import time

QUICK = os.environ.get("MPOOL_BENCH_QUICK", "0") not in ("", "0")
TABLE = bytes.maketrans(b"ACGTUMRWSYKVHDBNacgtumrwsykvhdbn", b"TGCAAKYWSRMBDHVNTGCAAKYWSRMBDHVN")


def result(metric, value, unit):
    print(f"RESULT {metric} {value:.6g} {unit}", flush=True)


def reverse(b):
    return b[::-1]


def revcomp(rec):
    head, _, seq = rec.partition(b"\n")
    seq = seq.replace(b"\n", b"").translate(TABLE)[::-1]
    lines = [seq[i:i + 60] for i in range(0, len(seq), 60)]
    return head + b"\n" + b"\n".join(lines) + (b"\n" if lines else b"")


def records(path):
    """The records of a FASTA file, read in 1 MiB blocks."""
    with open(path, "rb") as f:
        rest = b""
        while True:
            block = f.read(1 << 20)
            if not block:
                break
            parts = (rest + block).split(b"\n>")
            rest = parts.pop()
            for k, part in enumerate(parts):
                yield (part if part.startswith(b">") else b">" + part) + b"\n"
            if parts:
                rest = b">" + rest if not rest.startswith(b">") else rest
        if rest:
            yield rest if rest.startswith(b">") else b">" + rest


def bench_map(p):
    n = 100000 if QUICK else 1000000
    x, items = 1, []
    for i in range(n):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        items.append(os.urandom(16 + x % 49))
    times = []
    for _ in range(3 if QUICK else 5):
        t0 = time.perf_counter()
        out = p.map(reverse, items)
        times.append((time.perf_counter() - t0) / n * 1e9)
        assert out[-1] == items[-1][::-1]
    result("py.bytes.map_ns_per_item", statistics.median(times), "ns")


def bench_revcomp(p):
    build = os.environ.get("MPOOL_BENCH_BUILD", "")
    path = os.path.join(build, "revcomp.%dM.fa" % (16 if QUICK else 250))
    if not os.path.exists(path):
        return  # bench_bytes makes it; it runs first
    times = []
    for _ in range(1 if QUICK else 3):
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as out:
            for r in p.imap(revcomp, records(path), chunksize=16):
                out.write(r)
        times.append(time.perf_counter() - t0)
    result("py.bytes.revcomp_s", statistics.median(times), "s")


def main():
    with mp.get_context("fork").Pool(2) as p:
        bench_map(p)
        bench_revcomp(p)


if __name__ == "__main__":
    main()
