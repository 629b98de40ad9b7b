/* What the MPI backend's units tell each other, beyond the wire format
 * (mpi_proto.h) and the master's engine (mpi_master.h). Internal to
 * libmpool_mpi:
 *   mpi.c         the task registry, the start-up on every rank, creation
 *   mpi_worker.c  the worker ranks' loop
 *   mpi_master.c  rank 0's engine and the Pool ops table */
#ifndef MPOOL_MPI_INTERNAL_H
#define MPOOL_MPI_INTERNAL_H

#include <stdint.h>

#include "mpool/mpi.h"

/* ---- the registry (mpi.c) ---- */

/* Rank 0's id of a registered task (its index in the registry, as sent in
 * mpool__mpi_task_hdr_t.task), -1 if fn is not registered. */
int mpool__mpi_task_id(mpool_task_fn fn);

/* ---- the worker ranks (mpi_worker.c) ---- */

/* What a worker rank needs to serve, filled by its side of the start-up. */
typedef struct {
    int rank, nworkers;
    char *pay;          /* rank 0's payload: ctx bytes, then names */
    void *ctx;          /* into pay, or NULL */
    mpool_task_fn *fns; /* by rank 0's task id */
    uint32_t ntasks;
} mpool__mpi_worker_t;

/* Serves pieces until rank 0 says STOP, then answers BYE. Called after a
 * start-up that ended in MPOOL__MPI_VERDICT_GO; the caller then finalizes. */
void mpool__mpi_worker_serve(const mpool__mpi_worker_t *w);

#endif
