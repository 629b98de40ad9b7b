/* libmpool: the shared heap.
 *
 * One anonymous MAP_SHARED region, reserved when the library is loaded (so
 * before any fork the program makes), and inherited by every process forked
 * after that. A pointer into it is valid, and means the same bytes, in every
 * process of the family -- also in processes forked before the allocation
 * was made. Every synchronization object, queue and pool buffer of the
 * library lives here. Nothing is created under /dev/shm.
 *
 * Size: MPOOL_SHM_SIZE in the environment, read once at load time; default
 * 1 GiB. The value is decimal digits with at most one suffix K, M, G or T
 * (either case; powers of 1024) and nothing else: no sign, space, fraction
 * or "B". It must lie between 16 MiB and 64 TiB, and is rounded up to a
 * whole page. A value that breaks these rules is not used: the heap gets
 * the default 1 GiB and mpool_shm_size_status() says why. If the address
 * space cannot hold the size, the heap is halved until it fits (at least
 * 16 MiB), and the status says that too. The reservation costs address
 * space only: pages take memory when first touched, and large blocks give
 * their pages back to the system when freed.
 * (Changed in 1.1: before, bad values silently became 1 GiB, sizes under
 * 16 MiB were silently raised, a "B" suffix was accepted, and a value near
 * 2^64 wrapped to an unusable heap.)
 *
 * Allocate big inputs of a pool here (mpool_shm_alloc) before creating the
 * pool: shared memory costs a fork nothing, private memory costs page-table
 * copies, and a pool reads inputs that lie in the shared heap in place.
 */
#ifndef MPOOL_SHM_H
#define MPOOL_SHM_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Allocates `size` zero-filled bytes in the shared heap, aligned to 64 bytes
 * (a cache line). Returns NULL with errno ENOMEM when the heap is exhausted,
 * EINVAL for a size of 0, or the error of a thread whose identity cannot be
 * established (EMFILE...: see mpool_lock_acquire). Safe from any process and thread; never blocks
 * for long (a short internal lock, robust against a holder that died). */
MPOOL_API void *mpool_shm_alloc(size_t size);

/* Frees a block of mpool_shm_alloc. NULL, pointers outside the shared heap,
 * and blocks that are already free are ignored. A thread whose identity
 * cannot be established (see mpool_lock_acquire: EMFILE...) cannot take the
 * heap's lock: the block then stays allocated and errno says why. */
MPOOL_API void mpool_shm_free(void *ptr);

/* True when `ptr` lies inside the shared heap (any byte of it). */
MPOOL_API bool mpool_shm_contains(const void *ptr);

/* Usage of the shared heap, in bytes: the reservation, and the bytes handed
 * out by mpool_shm_alloc and not yet freed (headers and rounding included).
 * Either pointer may be NULL. */
MPOOL_API void mpool_shm_stats(size_t *reserved, size_t *in_use);

/* How MPOOL_SHM_SIZE was applied when the heap was reserved: 0 when it is
 * unset or was used as given; EINVAL when it is not a size by the rules
 * above, ERANGE when it lies outside 16 MiB..64 TiB (the heap then has the
 * default 1 GiB); ENOMEM when that size could not be mapped and the heap is
 * smaller (mpool_shm_stats gives its size; 0 when there is none). New in
 * 1.1. */
MPOOL_API int mpool_shm_size_status(void);

#ifdef __cplusplus
}
#endif
#endif
