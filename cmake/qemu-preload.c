/* Preloaded into the tests when they run under qemu-user (see
 * aarch64-linux-gnu.cmake); never part of the library. It undoes two
 * places where qemu-user 7.2 tells a guest something the kernel would not,
 * each of which breaks a guarantee the library builds on.
 *
 * 1. /proc/<pid>/stat. qemu answers a guest's open of /proc/self/stat, and
 *    of /proc/<its own pid>/stat, with a stat line of its own making, whose
 *    start time (field 22) is that of the qemu process the program began
 *    in: a forked child reports its parent's. Every other process reads the
 *    child's real line from the kernel. libmpool's lock identity is (TID,
 *    start time), read by the holder from its own /proc/<tid>/stat and
 *    checked by waiters against the same file, so under qemu every lock
 *    held by a forked process's main thread looks held by a dead process,
 *    and waiters take it over. The kernel's /proc/<tid>/task/<tid>/stat is
 *    the same line and qemu passes it through: open() and openat() rewrite
 *    the one path to the other.
 *
 * 2. madvise. qemu ignores every madvise and returns success (it may have
 *    turned a private file mapping into an anonymous one, where
 *    MADV_DONTNEED would lose data). The shared heap frees a large block
 *    with MADV_REMOVE and counts on the kernel's zeros afterwards
 *    (src/shm.c: "every byte after the header is zero"), so under qemu a
 *    reused block keeps its old bytes. madvise(MADV_REMOVE) here writes the
 *    zeros itself, by the kernel's rules on alignment and length; the
 *    memory is not given back, which only the test of that (test_shm
 *    freed_large_blocks_give_memory_back) can see. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* "/proc/<digits>/stat" exactly: the pid's digits in *digits, *len long. */
static int proc_pid_stat(const char *path, const char **digits, size_t *len)
{
    if (strncmp(path, "/proc/", 6) != 0) return 0;
    size_t n = strspn(path + 6, "0123456789");
    if (n == 0 || n > 10 || strcmp(path + 6 + n, "/stat") != 0) return 0;
    *digits = path + 6;
    *len = n;
    return 1;
}

static int open_rewritten(int dirfd, const char *path, int flags, mode_t mode)
{
    char buf[64];
    const char *digits;
    size_t n;
    if (path && proc_pid_stat(path, &digits, &n)) {
        snprintf(buf, sizeof buf, "/proc/%.*s/task/%.*s/stat", (int)n, digits, (int)n, digits);
        path = buf;
    }
    return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_rewritten(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_rewritten(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return open_rewritten(dirfd, path, flags, mode);
}

int madvise(void *addr, size_t len, int advice)
{
    if (advice == MADV_REMOVE) {
        /* What the kernel does, rules included: the start must be aligned
         * to the system page, and the length is rounded up to whole pages
         * (which matters under `qemu -p 65536`, a 64 KiB-page system). */
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
        if ((uintptr_t)addr & (page - 1)) {
            errno = EINVAL;
            return -1;
        }
        memset(addr, 0, (len + page - 1) & ~(page - 1));
        return 0;
    }
    return (int)syscall(SYS_madvise, addr, len, advice);
}
