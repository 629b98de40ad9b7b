#!/usr/bin/env python3
"""Runs every libmpool benchmark side by side and prints one table.

    python3 bench/run.py [--reps N] [--quick] [--markdown] [--build DIR] [NAME ...]

Builds the benchmarks and the examples some of them run (Release, in
build-bench/ unless --build is given),
then runs every bench/bench_<name> executable and every bench/py_<name>.py
script, NAME filters by component. The programs of one repetition run one
after the other, and repetitions are interleaved, so drift on a noisy
machine hits libmpool, raw syscalls and Python alike.

Protocol: a benchmark prints lines
    RESULT <metric> <value> <unit>    one measurement (lower is better unless
                                       the unit ends in "/s" or is "x")
    RATIO <label> <metric-a> <metric-b>   report median(a) / median(b); the
                                       label may contain spaces
and anything else, which is ignored. MPOOL_BENCH_QUICK=1 in the environment
(--quick) asks for a short smoke run.
"""
import argparse
import glob
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(build_dir):
    subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release",
                    "-DMPOOL_BUILD_TESTS=OFF", "-DMPOOL_BUILD_EXAMPLES=ON",
                    "-DMPOOL_BUILD_BENCH=ON"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build_dir, "-j", str(os.cpu_count() or 2)],
                   check=True, stdout=subprocess.DEVNULL)


def programs(build_dir, names):
    progs = []
    for src in sorted(glob.glob(os.path.join(ROOT, "bench", "bench_*.c"))):
        name = os.path.basename(src)[len("bench_"):-2]
        exe = os.path.join(build_dir, "bench_" + name)
        if os.path.exists(exe) and (not names or name in names):
            progs.append((name, [exe]))
    for py in sorted(glob.glob(os.path.join(ROOT, "bench", "py_*.py"))):
        name = os.path.basename(py)[len("py_"):-3]
        if not names or name in names:
            progs.append((name + " (python)", [sys.executable, py]))
    return progs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"))
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    env = dict(os.environ)
    env["MPOOL_BENCH_BUILD"] = os.path.abspath(args.build)  # where the examples are (bench_bytes)
    if args.quick:
        env["MPOOL_BENCH_QUICK"] = "1"
    build(args.build)
    progs = programs(args.build, set(args.names))
    if not progs:
        sys.exit("no benchmark matched")
    results, units, ratios, order = {}, {}, [], []
    failed = []
    for rep in range(args.reps):
        for name, cmd in progs:
            print(f"[rep {rep + 1}/{args.reps}] {name}", file=sys.stderr, flush=True)
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
            if r.returncode != 0:
                failed.append(f"{name} (exit {r.returncode}): {r.stderr.strip()[-300:]}")
            for line in r.stdout.splitlines():
                f = line.split()
                if len(f) == 4 and f[0] == "RESULT":
                    if f[1] not in results:
                        order.append(f[1])
                    results.setdefault(f[1], []).append(float(f[2]))
                    units[f[1]] = f[3]
                elif len(f) >= 4 and f[0] == "RATIO":
                    # The label may hold spaces: the last two words are the metrics.
                    ratio = (" ".join(f[1:-2]), f[-2], f[-1])
                    if ratio not in ratios:
                        ratios.append(ratio)
    md = args.markdown
    print("| metric | median | unit | min | max | runs |" if md else
          f"{'metric':48} {'median':>12} {'unit':10} {'min':>12} {'max':>12} runs")
    if md:
        print("|---|---:|---|---:|---:|---:|")
    for m in order:
        v = results[m]
        row = (m, statistics.median(v), units[m], min(v), max(v), len(v))
        print("| %s | %.4g | %s | %.4g | %.4g | %d |" % row if md else
              "%-48s %12.4g %-10s %12.4g %12.4g %d" % row)
    if ratios:
        print()
        print("| ratio | a / b | a | b |" if md else f"{'ratio':48} {'a/b':>10}  a / b")
        if md:
            print("|---|---:|---|---|")
        for label, a, b in ratios:
            if a in results and b in results:
                q = statistics.median(results[a]) / statistics.median(results[b])
                print(f"| {label} | {q:.3g} | {a} | {b} |" if md else
                      f"{label:48} {q:10.3g}  {a} / {b}")
            else:
                print(f"{label}: missing {a if a not in results else b}")
    for f in failed:
        print("FAILED:", f, file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
