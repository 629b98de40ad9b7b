/* Rank 0's side of the MPI Pool (mpi_master.c): the engine that schedules
 * pieces over the worker ranks, and the Pool ops table over it. Internal
 * to libmpool_mpi; mpi.c makes the engine during the start-up and the pool
 * with mpool__pool_new_with(&mpool__pool_mpi_ops, ...). */
#ifndef MPOOL_MPI_MASTER_H
#define MPOOL_MPI_MASTER_H

#include <stdbool.h>

#include "pool_backend.h"

typedef struct mpool__mpi_eng mpool__mpi_eng_t;

/* An engine over worker ranks 1..nworkers of `size` ranks, `depth` pieces
 * queued per worker (0: MPOOL__MPI_DEPTH_DEFAULT); `finalize`: libmpool
 * called MPI_Init, so the pool's destroy calls MPI_Finalize. Made before
 * the start-up exchange, so that running out of memory is a verdict like
 * the others. NULL with errno ENOMEM. */
mpool__mpi_eng_t *mpool__mpi_eng_new(int nworkers, int size, unsigned depth, bool finalize);

/* Stops the engine's thread if it runs, waits for it and frees everything
 * (for an engine that no pool adopted, and the pool's destroy). Never
 * finalizes MPI. */
void mpool__mpi_eng_free(mpool__mpi_eng_t *e);

/* Hands e (or NULL: nothing) to the next pool made with mpool__pool_mpi_ops:
 * its start op adopts e as p->impl and starts the communication thread,
 * which from then on makes every MPI call of rank 0. ops->start takes no
 * argument but the pool, and there is one MPI pool per run, made by one
 * thread (mpi.c), so one slot suffices. If the pool cannot be made, e
 * stays the caller's. */
void mpool__mpi_eng_stage(mpool__mpi_eng_t *e);

/* The MPI backend: every op of pool_backend.h on the engine in p->impl.
 * submit maps job->fn to its registry id (EINVAL when unregistered). */
extern const mpool__pool_ops_t mpool__pool_mpi_ops;

#endif
