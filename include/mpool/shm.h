/* libmpool: the shared heap.
 *
 * One anonymous MAP_SHARED region, reserved when the library is loaded (so
 * before any fork the program makes), and inherited by every process forked
 * after that. A pointer into it is valid, and means the same bytes, in every
 * process of the family -- also in processes forked before the allocation
 * was made. Every synchronization object, queue and pool buffer of the
 * library lives here. Nothing is created under /dev/shm.
 *
 * Size: MPOOL_SHM_SIZE in the environment (bytes, with an optional K, M or G
 * suffix), read at load time; default 1 GiB. The reservation costs address
 * space only: pages take memory when first touched, and large blocks give
 * their pages back to the system when freed.
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
 * (a cache line). Returns NULL with errno ENOMEM when the heap is exhausted
 * and EINVAL for a size of 0. Safe from any process and thread; never blocks
 * for long (a short internal lock, robust against a holder that died). */
MPOOL_API void *mpool_shm_alloc(size_t size);

/* Frees a block of mpool_shm_alloc. NULL, pointers outside the shared heap,
 * and blocks that are already free are ignored. */
MPOOL_API void mpool_shm_free(void *ptr);

/* True when `ptr` lies inside the shared heap (any byte of it). */
MPOOL_API bool mpool_shm_contains(const void *ptr);

/* Usage of the shared heap, in bytes: the reservation, and the bytes handed
 * out by mpool_shm_alloc and not yet freed (headers and rounding included).
 * Either pointer may be NULL. */
MPOOL_API void mpool_shm_stats(size_t *reserved, size_t *in_use);

#ifdef __cplusplus
}
#endif
#endif
