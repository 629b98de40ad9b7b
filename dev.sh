#!/usr/bin/env bash
# libmpool's one entry point for developers and CI.
#
#   ./dev.sh demos      build (Release) and run every example
#   ./dev.sh test       build and run every test (ctest)
#   ./dev.sh sanitize   the same tests built with ASan + UBSan
#   ./dev.sh install-check  install to a temporary prefix and build a small
#                       program against it with pkg-config and find_package;
#                       then the export check below on the installed libraries
#   ./dev.sh exports    what libmpool.so and libmpool_mpi.so export is exactly
#                       the MPOOL_API functions of include/ (src/libmpool.map)
#   ./dev.sh valgrind   the core tests under valgrind memcheck
#   ./dev.sh fuzz [SECONDS]  the libFuzzer harnesses (clang), 60 s each by default
#   ./dev.sh bench      run every benchmark side by side (bench/run.py)
#   ./dev.sh cross      aarch64 cross build (-Werror) and its tests under
#                       qemu-user (cmake/aarch64-linux-gnu.cmake, docs/PORTING.md)
#
# Missing tools and libraries are installed with apt-get when running as
# root; otherwise the script stops and names the Debian package to install.
set -euo pipefail
cd "$(dirname "$0")"
JOBS=$(nproc 2>/dev/null || echo 2)

need() { # need <command-or-header> <debian-package>...
    local what=$1
    shift
    case $what in
    */*) [ -e "$what" ] && return 0 ;;
    *) command -v "$what" >/dev/null 2>&1 && return 0 ;;
    esac
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "dev.sh: installing $* (for $what)" >&2
        if [ -z "${MPOOL_APT_UPDATED:-}" ]; then
            apt-get update -qq >&2 || true
            export MPOOL_APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    else
        echo "dev.sh: $what is missing: install it with 'sudo apt-get install $*'" >&2
        exit 1
    fi
}

need_build_tools() {
    need cc gcc
    need cmake cmake
    need make make
}

need_cmocka() { need /usr/include/cmocka.h libcmocka-dev; }

# Open MPI is optional (it builds and tests the MPI backend, libmpool_mpi):
# installed when we may, otherwise the MPI parts are skipped with a note.
want_mpi() {
    if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then return 0; fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        need mpicc libopenmpi-dev openmpi-bin
        need mpirun openmpi-bin
    else
        echo "dev.sh: Open MPI not found: the MPI backend is skipped" \
            "(install it with 'sudo apt-get install libopenmpi-dev openmpi-bin')" >&2
    fi
}

configure() { # configure <dir> [cmake args...]
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j "$JOBS"
}

run_tests() { # run_tests <dir> [cmake args...]
    local dir=$1
    shift
    need_build_tools
    need_cmocka
    want_mpi
    configure "$dir" -DMPOOL_BUILD_TESTS=ON -DMPOOL_BUILD_EXAMPLES=ON -DMPOOL_BUILD_BENCH=ON "$@"
    (cd "$dir" && ctest --output-on-failure)
}

demos() {
    need_build_tools
    want_mpi
    configure build-release -DCMAKE_BUILD_TYPE=Release -DMPOOL_BUILD_TESTS=OFF \
        -DMPOOL_BUILD_EXAMPLES=ON -DMPOOL_BUILD_BENCH=OFF
    local demo
    for demo in squares counter rlock pipe_hello producer_consumer joinable pi pi_pool primes align crash_report; do
        if [ -x "build-release/$demo" ]; then
            printf '\n=== %s\n' "$demo"
            "build-release/$demo"
        fi
    done
    if [ -x build-release/revcomp ]; then
        local fa=build-release/demo.fa
        printf '\n=== revcomp (a generated 2 MiB FASTA: its first record, reverse-complemented)\n'
        build-release/revcomp --generate 2 --seed 1 >"$fa"
        build-release/revcomp "$fa" | sed -n '1,4p'
        if cmp -s <(build-release/revcomp "$fa") <(build-release/revcomp --workers 0 "$fa"); then
            echo "revcomp: the pool's output equals the sequential run's ($(wc -c <"$fa") bytes)"
        else
            echo "revcomp: the pool's output differs from the sequential run's" >&2
            return 1
        fi
    fi
    if [ -x build-release/pi_mpi ] && command -v mpirun >/dev/null; then
        printf '\n=== pi_mpi (mpirun -np 3: rank 0 and 2 worker ranks)\n'
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
            mpirun --oversubscribe -np 3 build-release/pi_mpi
    fi
}

install_check() {
    need_build_tools
    need pkg-config pkg-config
    local tmp
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' RETURN
    configure "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DMPOOL_BUILD_TESTS=OFF \
        -DMPOOL_BUILD_EXAMPLES=OFF -DMPOOL_BUILD_BENCH=OFF -DCMAKE_INSTALL_PREFIX="$tmp/prefix"
    cmake --install "$tmp/build" >/dev/null
    mkdir -p "$tmp/app"
    cat >"$tmp/app/hello.c" <<'C'
#include <mpool.h>
#include <stdio.h>
static int child(void *arg) { *(long *)arg = 42; return 0; }
int main(void) {
    long *v = mpool_shm_alloc(sizeof *v);
    mpool_process_t *p = mpool_process_new(child, v, NULL);
    if (!v || !p || mpool_process_start(p) || mpool_process_join(p, 10)) return 1;
    mpool_process_free(p);
    printf("child wrote %ld\n", *v);
    return *v == 42 ? 0 : 1;
}
C
    cat >"$tmp/app/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(hello C)
find_package(mpool 1 REQUIRED)
add_executable(hello hello.c)
target_link_libraries(hello PRIVATE mpool::mpool)
CM
    echo "install-check: find_package(mpool)"
    cmake -S "$tmp/app" -B "$tmp/app/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
    cmake --build "$tmp/app/build" >/dev/null
    "$tmp/app/build/hello"
    echo "install-check: pkg-config mpool"
    local libdir
    libdir=$(find "$tmp/prefix" -name mpool.pc -printf '%h\n' | head -1)
    PKG_CONFIG_PATH=$libdir cc "$tmp/app/hello.c" -o "$tmp/app/hello-pc" \
        $(PKG_CONFIG_PATH=$libdir pkg-config --cflags --libs mpool)
    LD_LIBRARY_PATH=$(dirname "$libdir") "$tmp/app/hello-pc"
    echo "install-check: exported symbols"
    local mpi
    mpi=$(find "$tmp/prefix" -name libmpool_mpi.so | head -1)
    check_exports "$(find "$tmp/prefix" -name libmpool.so | head -1)" "$mpi"
}

# The functions declared MPOOL_API in the given headers, one a line, sorted.
api_functions() {
    local f
    for f in "$@"; do
        tr '\n' ' ' <"$f"
        echo
    done | grep -oE 'MPOOL_API[^;{}]*;' |
        sed -nE 's/^MPOOL_API[^(]*[^a-z0-9_](mpool_[a-z0-9_]+)[[:space:]]*\(.*/\1/p' | sort -u
}

# check_exports <libmpool.so> [<libmpool_mpi.so>]: the symbols each library
# exports in its public version nodes (any node but *_PRIVATE) are exactly
# the MPOOL_API functions of its headers (mpi.h for libmpool_mpi, the others
# for libmpool); no mpool__ name is public; the private node (libmpool's
# MPOOL_PRIVATE, the backend seam) holds only mpool__ names; nothing is
# exported without a version. See src/libmpool.map.
check_exports() {
    local lib=$1 mpi=${2:-} rc=0
    local -a core=() h
    for h in include/mpool/*.h; do [ "$h" = include/mpool/mpi.h ] || core+=("$h"); done
    check_lib_exports "$lib" MPOOL_PRIVATE "${core[@]}" || rc=1
    if [ -n "$mpi" ]; then
        check_lib_exports "$mpi" "" include/mpool/mpi.h || rc=1
    fi
    return $rc
}

check_lib_exports() { # <lib> <private node or ""> <headers...>
    local lib=$1 private=$2 name
    shift 2
    local syms want got bad=""
    syms=$(nm -D --defined-only --with-symbol-versions "$lib" | awk '$2 != "A" {print $3}')
    want=$(api_functions "$@")
    got=$(grep -E '@@?[A-Z0-9_.]+$' <<<"$syms" | grep -vE '@@?[A-Z0-9_.]*_PRIVATE$' | sed 's/@.*//' | sort -u)
    if [ "$want" != "$got" ]; then
        bad=1
        echo "exports: $(basename "$lib"): public nodes differ from MPOOL_API in $*:" >&2
        diff <(echo "$want") <(echo "$got") | grep -v '^[<>] *$' | sed -n 's/^</  declared, not exported:/p; s/^>/  exported, not declared:/p' >&2
    fi
    name=$(grep '^mpool__' <<<"$got" || true)
    [ -z "$name" ] || { bad=1; echo "exports: internal names in a public node:" $name >&2; }
    name=$(grep -vE '@@?[A-Z0-9_.]+$' <<<"$syms" || true)
    [ -z "$name" ] || { bad=1; echo "exports: unversioned symbols:" $name >&2; }
    local priv
    priv=$(grep -E '@@?[A-Z0-9_.]*_PRIVATE$' <<<"$syms" | sed 's/@.*//' | sort -u)
    if [ -n "$priv" ] && [ -z "$private" ]; then
        bad=1
        echo "exports: $(basename "$lib") has no private node, but exports:" $priv >&2
    fi
    name=$(grep -v '^mpool__' <<<"$priv" || true)
    [ -z "$name" ] || { bad=1; echo "exports: non-mpool__ names in the private node:" $name >&2; }
    [ -z "$bad" ] || return 1
    echo "exports: $(basename "$lib"): $(wc -l <<<"$got") public = MPOOL_API of $# header(s)," \
        "$(grep -c . <<<"$priv" || true) in ${private:-no private node}; OK"
}

# ./dev.sh exports: builds the libraries and checks what they export.
exports() {
    need_build_tools
    want_mpi
    configure build-exports -DMPOOL_BUILD_TESTS=OFF -DMPOOL_BUILD_EXAMPLES=OFF -DMPOOL_BUILD_BENCH=OFF
    local mpi=""
    [ -e build-exports/libmpool_mpi.so ] && mpi=build-exports/libmpool_mpi.so
    check_exports build-exports/libmpool.so "$mpi"
}

# valgrind 3.19 (Debian 12) does not know pidfd_open, which processes and
# the pool are built on, so memcheck covers the components without them.
VALGRIND_TESTS="test_error test_shm test_sync test_conn test_queue"

run_valgrind() {
    need_build_tools
    need_cmocka
    need valgrind valgrind
    configure build-valgrind -DMPOOL_BUILD_TESTS=ON -DMPOOL_BUILD_EXAMPLES=OFF \
        -DMPOOL_BUILD_BENCH=OFF
    local t
    for t in $VALGRIND_TESTS; do
        [ -x "build-valgrind/$t" ] || continue
        echo "valgrind: $t"
        MPOOL_UNDER_VALGRIND=1 MPOOL_TEST_SLACK=20 valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
            "build-valgrind/$t" >"build-valgrind/$t.valgrind.log" 2>&1 || {
            tail -40 "build-valgrind/$t.valgrind.log" >&2
            return 1
        }
        grep -E '^\[  (PASSED|FAILED) ' "build-valgrind/$t.valgrind.log" || true
    done
}

run_fuzz() {
    local seconds=${1:-60}
    need_build_tools
    need clang clang
    CC=clang configure build-fuzz -DMPOOL_BUILD_FUZZ=ON -DMPOOL_SANITIZE=address,undefined \
        -DMPOOL_BUILD_TESTS=OFF -DMPOOL_BUILD_EXAMPLES=OFF -DMPOOL_BUILD_BENCH=OFF
    local f name work
    for f in build-fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        name=${f#build-fuzz/fuzz_}
        work=build-fuzz/corpus-$name
        mkdir -p "$work"
        echo "fuzz: $name for ${seconds}s (seeds: fuzz/corpus/$name)"
        # New inputs go to the work folder; the committed corpus stays as it is.
        "$f" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 "$work" "fuzz/corpus/$name" 2>build-fuzz/fuzz-$name.log || {
            tail -60 build-fuzz/fuzz-$name.log >&2
            return 1
        }
        grep -E '^stat::number_of_executed_units|^Done' build-fuzz/fuzz-$name.log || true
    done
}

# Debian's cross compiler and qemu-user, and the arm64 builds of libc and
# cmocka from the multiarch archive (dpkg --add-architecture arm64): the
# target's dynamic loader at /lib/ld-linux-aarch64.so.1 lets qemu run
# programs without -L, with which qemu 7.2 hangs in fork.
need_cross_tools() {
    need_build_tools
    need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
    if ! command -v qemu-aarch64-static >/dev/null && ! command -v qemu-aarch64 >/dev/null; then
        need qemu-aarch64-static qemu-user-static
    fi
    if [ ! -e /lib/ld-linux-aarch64.so.1 ] || [ ! -e /usr/lib/aarch64-linux-gnu/libcmocka.so ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "dev.sh: the arm64 libc and cmocka are missing: run" \
                "'sudo dpkg --add-architecture arm64 && sudo apt-get update &&" \
                "sudo apt-get install libc6:arm64 libcmocka-dev:arm64'" >&2
            exit 1
        fi
        if ! dpkg --print-foreign-architectures | grep -qx arm64; then
            echo "dev.sh: adding the arm64 architecture to dpkg (for libc6:arm64, libcmocka-dev:arm64)" >&2
            dpkg --add-architecture arm64
            unset MPOOL_APT_UPDATED # the arm64 package lists are new
        fi
        need /lib/ld-linux-aarch64.so.1 libc6:arm64
        need /usr/lib/aarch64-linux-gnu/libcmocka.so libcmocka-dev:arm64
    fi
    need_cmocka # cmocka.h: the host's, arch-neutral
}

# Tests that cannot run under qemu-user, by ctest name, with the reason
# (docs/PORTING.md). Checks inside a test that qemu cannot honour are
# skipped by the test itself under MPOOL_TEST_EMULATOR instead.
CROSS_EXCLUDE=""
# Tests run a second time if they fail, each with the reason. test_faults:
# under qemu its pool chaos test once hung a round for 60 s, not analysed
# yet (the race that made it hand a chunk out twice is fixed: settle
# leaves a published chunk alone); see docs/PORTING.md.
CROSS_RETRY="test_faults"

run_cross() {
    need_cross_tools
    local t0=$SECONDS
    configure build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
        -DMPOOL_WITH_MPI=OFF -DMPOOL_WERROR=ON -DMPOOL_BUILD_TESTS=ON \
        -DMPOOL_BUILD_EXAMPLES=ON -DMPOOL_BUILD_BENCH=ON
    aarch64-linux-gnu-readelf -h build-aarch64/libmpool.so.1 | grep -q 'Machine:.*AArch64' || {
        echo "cross: build-aarch64/libmpool.so.1 is not an aarch64 library" >&2
        return 1
    }
    echo "cross: aarch64 build clean with -Werror ($((SECONDS - t0)) s); tests under qemu-user"
    # Slow emulation stretches the tests' timing bounds, as under valgrind.
    local skip=$CROSS_RETRY${CROSS_EXCLUDE:+|$CROSS_EXCLUDE}
    (cd build-aarch64 && export MPOOL_TEST_SLACK=${MPOOL_TEST_SLACK:-4} &&
        ctest --output-on-failure -j 2 -E "^($skip)\$" &&
        ctest --output-on-failure --repeat until-pass:2 -R "^($CROSS_RETRY)\$")
    # Many aarch64 kernels use 64 KiB pages (RHEL's, NVIDIA Grace's), where
    # madvise ranges must be whole 64 KiB pages: the shared heap once
    # removed part of a neighbouring block there. qemu -p sets the page size
    # the program sees; qemu-preload.c's madvise keeps the kernel's rules.
    local qemu
    qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64)
    echo "cross: test_shm with 64 KiB pages"
    (cd build-aarch64 && MPOOL_TEST_EMULATOR=$qemu "$qemu" -p 65536 \
        -E LD_PRELOAD="$PWD/qemu-preload.so" ./test_shm >test_shm-64k.log 2>&1) || {
        tail -30 build-aarch64/test_shm-64k.log >&2
        return 1
    }
    grep -E '^\[  (PASSED|FAILED) ' build-aarch64/test_shm-64k.log || true
    echo "cross: done in $((SECONDS - t0)) s"
}

case "${1:-}" in
demos) demos ;;
test) run_tests build-test ;;
sanitize) ASAN_OPTIONS=detect_leaks=1 run_tests build-asan -DMPOOL_SANITIZE=address,undefined ;;
install-check) install_check ;;
exports) exports ;;
valgrind) run_valgrind ;;
fuzz) run_fuzz "${2:-60}" ;;
cross) run_cross ;;
bench)
    need_build_tools
    shift
    python3 bench/run.py "$@"
    ;;
*)
    sed -n '2,19p' "$0"
    exit 2
    ;;
esac
