/* The shared heap: one anonymous MAP_SHARED region, mapped when the library
 * loads so that every process the program forks afterwards inherits it at
 * the same address.
 *
 * Layout: the heap header sits in the first page. Small blocks (total size
 * a power of two, 128 B to 1 MiB) are carved upwards from `low`; large ones
 * (whole pages) downwards from `high`. The heap is full when the two meet.
 * Every block starts with a 64-byte header, so user pointers are 64-byte
 * aligned.
 *
 * Free small blocks go on one list per size class and are reused as they
 * are. Free large blocks go on an address-ordered list, merged with free
 * neighbours, and hold the invariant "every byte after the header is zero":
 * their pages are given back to the system with MADV_REMOVE (the kernel
 * then reads them as zeros), so big buffers cost no memory once freed and
 * need no memset when reused.
 *
 * Every heap update happens under `lock`, a robust mutex: a process killed
 * inside the allocator can at worst leak the block it was handling. */
#include <mpool/shm.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "mutex.h"

#define DEFAULT_SIZE ((size_t)1 << 30)
#define MIN_SIZE     ((size_t)16 << 20)
/* 64 TiB: half of x86-64's user address space (aarch64 kernels with 48-bit
 * addresses have twice that; with 39-bit ones, 512 GiB, the mmap fails and
 * a smaller heap is reserved, as on any limited address space). */
#define MAX_SIZE ((size_t)1 << 46)
/* A block header is one cache line, so that user pointers start one (shm.h
 * promises 64 bytes; a build with a larger MPOOL__CACHELINE gets more). */
#define HEADER    MPOOL__CACHELINE
#define MIN_CLASS 7  /* 128 B */
#define MAX_CLASS 20 /* 1 MiB */
#define NCLASSES  (MAX_CLASS - MIN_CLASS + 1)
/* The heap's own page: the granularity of large blocks. Not the system's
 * page, which is 4 KiB on x86-64 but 4, 16 or 64 KiB on aarch64 kernels
 * (64 KiB is the default of RHEL's and NVIDIA Grace's): see large_scrub. */
#define PAGE        4096
#define BLOCK_MAGIC 0x6d706f6f6c626c6bULL /* "mpoolblk" */

enum { BLOCK_FREE = 1, BLOCK_USED = 2 };

typedef struct block {
    uint64_t magic;
    size_t size; /* whole block, header included */
    uint32_t state;
    uint32_t cls; /* size class, or 0 for a large block */
    struct block *next;
} block_t;

typedef struct {
    mpool__mutex_t lock;
    char *base, *low, *high, *end;
    size_t in_use;
    block_t *small[NCLASSES];
    block_t *large; /* address order */
} heap_t;

_Static_assert(sizeof(block_t) <= HEADER, "a block header fits its 64 bytes");
_Static_assert(HEADER >= 64 && PAGE % HEADER == 0,
               "user pointers are aligned to at least 64 bytes (shm.h), pages to headers");
_Static_assert(sizeof(heap_t) <= PAGE, "the heap header fits the first page");
_Static_assert(MIN_SIZE % PAGE == 0 && DEFAULT_SIZE >= MIN_SIZE && DEFAULT_SIZE <= MAX_SIZE,
               "the default size obeys the rules of shm.h");

static heap_t *heap;
static pthread_once_t heap_once = PTHREAD_ONCE_INIT;
static int size_status;           /* mpool_shm_size_status(); set once by heap_init */
static uintptr_t sys_page = PAGE; /* the system's page size; set once by heap_init */

/* MPOOL_SHM_SIZE by the rules of shm.h: digits, then at most one of K, M,
 * G, T (either case, powers of 1024), nothing else. 0 and *out set, EINVAL
 * (not a size) or ERANGE (below MIN_SIZE, above MAX_SIZE, or overflowing). */
static int parse_size(const char *s, size_t *out)
{
    if (*s < '0' || *s > '9') return EINVAL; /* also "", "-1", " 1" */
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    bool overflow = errno == ERANGE;
    static const char suffixes[] = "KMGT";
    unsigned shift = 0;
    if (*end) {
        const char *k = strchr(suffixes, *end & ~0x20); /* upper case */
        if (!k || !*k || end[1] != '\0') return EINVAL;
        shift = 10 * (unsigned)(k - suffixes + 1);
    }
    if (overflow || v > (MAX_SIZE >> shift)) return ERANGE;
    v <<= shift;
    if (v < MIN_SIZE) return ERANGE;
    *out = (size_t)v;
    return 0;
}

static void heap_init(void)
{
    size_t size = DEFAULT_SIZE;
    const char *env = getenv("MPOOL_SHM_SIZE");
    if (env) size_status = parse_size(env, &size);
    if (size_status) size = DEFAULT_SIZE;
    long sp = sysconf(_SC_PAGESIZE);
    if (sp > PAGE && (sp & (sp - 1)) == 0) sys_page = (uintptr_t)sp;
    size = (size + PAGE - 1) & ~(size_t)(PAGE - 1);
    void *p = MAP_FAILED;
    /* A smaller heap beats none when the address space is limited; the
     * status says so (the size is in mpool_shm_stats). */
    for (size_t want = size; size >= MIN_SIZE; size /= 2) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                 0);
        if (p != MAP_FAILED) break;
        if (size == want && !size_status) size_status = ENOMEM;
    }
    if (p == MAP_FAILED) return;
    heap = p;
    heap->base = p;
    heap->low = (char *)p + PAGE;
    heap->high = heap->end = (char *)p + size;
}

/* Loaded before main, so before any fork the program makes. */
__attribute__((constructor)) static void shm_ctor(void)
{
    pthread_once(&heap_once, heap_init);
}

static heap_t *get_heap(void)
{
    pthread_once(&heap_once, heap_init);
    return heap;
}

/* 0, or the error of a caller whose identity is unknown (EMFILE...: see
 * mutex.h), which must not touch the heap. EOWNERDEAD counts as 0: a holder
 * died in here, and at worst leaked one block. */
static int heap_lock(heap_t *h)
{
    int r = mpool__mutex_lock(&h->lock, MPOOL_FOREVER);
    return r == EOWNERDEAD ? 0 : r;
}

static unsigned size_class(size_t total)
{
    unsigned c = MIN_CLASS;
    while (((size_t)1 << c) < total) c++;
    return c;
}

static void *small_alloc(heap_t *h, size_t size)
{
    unsigned c = size_class(size + HEADER);
    size_t total = (size_t)1 << c;
    block_t *b = h->small[c - MIN_CLASS];
    if (b) {
        h->small[c - MIN_CLASS] = b->next;
    } else {
        if ((size_t)(h->high - h->low) < total) return NULL;
        b = (block_t *)h->low;
        h->low += total;
        b->magic = BLOCK_MAGIC;
        b->size = total;
        b->cls = c;
    }
    b->state = BLOCK_USED;
    b->next = NULL;
    h->in_use += total;
    return (char *)b + HEADER; /* not zeroed yet: see heap_alloc */
}

static void large_init(block_t *b, size_t total, uint32_t state)
{
    b->magic = BLOCK_MAGIC;
    b->size = total;
    b->cls = 0;
    b->state = state;
    b->next = NULL;
}

static void *large_alloc(heap_t *h, size_t size)
{
    size_t total = (size + HEADER + PAGE - 1) & ~(size_t)(PAGE - 1);
    block_t **link = &h->large, *b;
    for (b = *link; b; link = &b->next, b = *link)
        if (b->size >= total) break;
    if (b) {
        /* First fit; the tail stays free (its bytes are zero already). */
        if (b->size > total) {
            block_t *rest = (block_t *)((char *)b + total);
            large_init(rest, b->size - total, BLOCK_FREE);
            rest->next = b->next;
            *link = rest;
        } else {
            *link = b->next;
        }
        large_init(b, total, BLOCK_USED);
    } else {
        if ((size_t)(h->high - h->low) < total) return NULL;
        h->high -= total;
        b = (block_t *)h->high;
        large_init(b, total, BLOCK_USED);
    }
    h->in_use += total;
    return (char *)b + HEADER;
}

/* Small blocks come back dirty from their free list; large ones are zero
 * by the heap's invariant. A small block is zeroed (when asked) after the
 * lock is released: it is the caller's already, and a memset of up to
 * 1 MiB under the lock would hold up every process allocating meanwhile. */
static void *heap_alloc(size_t size, bool zero)
{
    heap_t *h = get_heap();
    if (size == 0) {
        errno = EINVAL;
        return NULL;
    }
    if (!h || size > (size_t)(h->end - h->base)) { /* also keeps size + HEADER from wrapping */
        errno = ENOMEM;
        return NULL;
    }
    int r = heap_lock(h);
    if (r) {
        errno = r;
        return NULL;
    }
    bool small = size + HEADER <= ((size_t)1 << MAX_CLASS);
    void *p = small ? small_alloc(h, size) : large_alloc(h, size);
    mpool__mutex_unlock(&h->lock);
    if (!p) errno = ENOMEM;
    if (p && small && zero) memset(p, 0, size);
    return p;
}

void *mpool_shm_alloc(size_t size)
{
    return heap_alloc(size, true);
}

void *mpool__shm_alloc_uninit(size_t size)
{
    return heap_alloc(size, false);
}

/* Zeroes a free large block's body and returns its pages to the system:
 * the whole system pages inside the body go with MADV_REMOVE, the bytes
 * before and after them are cleared by hand. A block is PAGE-aligned, and a
 * system page may be larger: madvise fails on a start that is not aligned
 * to it, and rounds a length up to whole pages, so a range ending inside a
 * system page would remove the start of the next block, in use or not. */
static void large_scrub(block_t *b)
{
    char *first = (char *)b + HEADER, *end = (char *)b + b->size;
    char *pages = (char *)(((uintptr_t)first + sys_page - 1) & ~(sys_page - 1));
    char *pages_end = (char *)((uintptr_t)end & ~(sys_page - 1));
    if (pages_end <= pages) {
        memset(first, 0, (size_t)(end - first));
        return;
    }
    memset(first, 0, (size_t)(pages - first));
    if (madvise(pages, (size_t)(pages_end - pages), MADV_REMOVE) != 0)
        memset(pages, 0, (size_t)(pages_end - pages));
    memset(pages_end, 0, (size_t)(end - pages_end));
}

static void large_free(heap_t *h, block_t *b)
{
    large_scrub(b);
    b->state = BLOCK_FREE;
    if ((char *)b == h->high) { /* the lowest large block: give it back to the gap */
        h->high += b->size;
        memset(b, 0, HEADER);
        /* The free block now touching the gap goes back to it too. */
        while (h->large && (char *)h->large == h->high) {
            block_t *n = h->large;
            h->large = n->next;
            h->high += n->size;
            memset(n, 0, HEADER);
        }
        return;
    }
    block_t **link = &h->large, *prev = NULL;
    while (*link && *link < b) {
        prev = *link;
        link = &prev->next;
    }
    b->next = *link;
    *link = b;
    if (b->next && (char *)b + b->size == (char *)b->next) {
        block_t *n = b->next;
        b->size += n->size;
        b->next = n->next;
        memset(n, 0, HEADER);
    }
    if (prev && (char *)prev + prev->size == (char *)b) {
        prev->size += b->size;
        prev->next = b->next;
        memset(b, 0, HEADER);
    }
}

void mpool_shm_free(void *ptr)
{
    heap_t *h = get_heap();
    if (!ptr || !h || !mpool_shm_contains(ptr)) return;
    block_t *b = (block_t *)((char *)ptr - HEADER);
    if (((uintptr_t)ptr & (HEADER - 1)) || (char *)b < h->base + PAGE) return;
    int r = heap_lock(h);
    if (r) {
        errno = r; /* the block stays allocated: see shm.h */
        return;
    }
    if (b->magic == BLOCK_MAGIC && b->state == BLOCK_USED) {
        h->in_use -= b->size;
        if (b->cls) {
            b->state = BLOCK_FREE;
            b->next = h->small[b->cls - MIN_CLASS];
            h->small[b->cls - MIN_CLASS] = b;
        } else {
            large_free(h, b);
        }
    }
    mpool__mutex_unlock(&h->lock);
}

bool mpool_shm_contains(const void *ptr)
{
    heap_t *h = get_heap();
    return h && (const char *)ptr >= h->base && (const char *)ptr < h->end;
}

void mpool__shm_range(const char **lo, const char **hi)
{
    heap_t *h = get_heap();
    *lo = h ? h->base : NULL;
    *hi = h ? h->end : NULL;
}

int mpool_shm_size_status(void)
{
    get_heap();
    return size_status;
}

void mpool_shm_stats(size_t *reserved, size_t *in_use)
{
    heap_t *h = get_heap();
    if (reserved) *reserved = h ? (size_t)(h->end - h->base) : 0;
    if (in_use) *in_use = h ? __atomic_load_n(&h->in_use, __ATOMIC_RELAXED) : 0;
}
