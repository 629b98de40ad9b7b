/* libmpool: the Pool across machines, on MPI (optional library libmpool_mpi).
 *
 * The same Pool API (mpool/pool.h) with worker processes that are MPI ranks,
 * possibly on other hosts. Only the creation differs:
 *
 *     static int square(const void *in, void *out, void *ctx) { ... }
 *     int main(int argc, char **argv)
 *     {
 *         mpool_task_register("square", square);      // on every rank
 *         mpool_mpi_opts_t o = {0};
 *         mpool_pool_t *pool = mpool_mpi_pool_new(&argc, &argv, &o);
 *         // only rank 0 gets here; ranks > 0 served tasks and exited
 *         mpool_pool_map(pool, square, xs, n, sizeof(long), ys, sizeof(long), 0);
 *         mpool_pool_free(pool);                       // the worker ranks exit
 *     }
 *
 * and `mpirun -np 3 ./prog` (1 master + 2 workers; on several hosts:
 * `mpirun --hostfile hosts -np 9 ./prog`, the binary at the same path on
 * every host). Link with libmpool_mpi (CMake: mpool::mpool_mpi); this header
 * is not included by <mpool.h>.
 *
 * Tasks by name. Function pointers do not cross hosts, so every task is
 * registered under a name on every rank before the pool is created. On rank 0
 * the fn given to mpool_pool_map & co is mapped back to its name (an
 * unregistered fn is EINVAL); the worker ranks resolve the name to their own
 * function when the pool starts (a name missing on a worker makes
 * mpool_mpi_pool_new fail with EINVAL on rank 0).
 *
 * Data travels by value: input items are sent to the workers, output items
 * come back and are written into `out` by a thread of rank 0 (so `out` may be
 * ordinary memory). The task's ctx is a copy of rank 0's opts.pool.ctx
 * (ctx_size bytes), made once when the pool starts. The initializer, if any,
 * runs once on each worker rank (each rank uses its own opts: the pointer is
 * local). Work is self-scheduled: rank 0 keeps a few chunks queued at each
 * worker (opts.inflight) and sends the next one to whichever worker returns
 * one, so fast and slow hosts both stay busy.
 *
 * Failures: a task returning non-zero fails its item with MPOOL_ETASK, as
 * locally. A worker rank that DIES (signal, exit, node lost) cannot be
 * replaced: MPI ends the whole job -- mpirun kills every rank, rank 0
 * included, and exits with a non-zero status. Nothing hangs, but rank 0 does
 * not get to see MPOOL_EWORKER. For the same reason maxtasksperchild and
 * task_timeout are not supported (EINVAL). terminate cancels every queued
 * chunk at once (ECANCELED), but a task already running on a worker runs to
 * its end: mpool_pool_join and mpool_pool_free wait for it.
 *
 * MPI: mpool_mpi_pool_new calls MPI_Init_thread (MPI_THREAD_SERIALIZED)
 * unless MPI is already initialized; rank 0 then runs one communication
 * thread, the only thread that calls MPI until the pool is freed. Never fork
 * after MPI_Init (Open MPI forbids it): create local pools before, not after.
 * One MPI pool per run: the worker ranks exit when it is freed, and when
 * libmpool initialized MPI, mpool_pool_free calls MPI_Finalize.
 */
#ifndef MPOOL_MPI_H
#define MPOOL_MPI_H

#include <stddef.h>
#include "pool.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest task name, in bytes (without the terminating NUL). */
#define MPOOL_TASK_NAME_MAX 63

/* Registers fn under `name` in this process. Call it on every rank, before
 * mpool_mpi_pool_new. Registering the same (name, fn) pair again is a no-op.
 * Returns 0; EINVAL for NULL or empty name, a name longer than
 * MPOOL_TASK_NAME_MAX, a name already bound to another fn, a fn already
 * registered under another name, or once an MPI pool was created; ENOMEM. */
MPOOL_API int mpool_task_register(const char *name, mpool_task_fn fn);

/* The name fn was registered under, or NULL. */
MPOOL_API const char *mpool_task_name(mpool_task_fn fn);

typedef struct {
    /* processes: worker ranks to use, 0 = all (MPI size - 1), at most size - 1;
     * initializer/initarg: run once on each worker rank;
     * maxtasksperchild, task_timeout: must be 0;
     * ctx: rank 0's context, copied to every worker (ctx_size bytes). */
    mpool_pool_opts_t pool;
    size_t ctx_size;   /* bytes of pool.ctx sent to the workers; 0: tasks get NULL */
    unsigned inflight; /* pieces queued at each worker, at most 64; 0: adaptive, 2 or
                          more: enough to cover ~500 us of that worker's work */
} mpool_mpi_opts_t;

/* Creates the MPI pool. Collective: every rank calls it with its own argc,
 * argv (passed to MPI_Init, may be NULL) and opts (may be NULL: defaults).
 *
 * On rank 0 it returns the pool, or NULL with errno: EINVAL (bad opts -- then
 * on every rank, before MPI starts --, fewer than 2 ranks, a task name
 * unknown on a worker rank, MPI already finalized or a pool already created),
 * MPOOL_ETASK (the initializer failed on a worker rank), ENOMEM, EAGAIN (no
 * thread). After a NULL past MPI_Init, MPI is left initialized.
 *
 * On ranks > 0 it never returns: the rank serves tasks until the pool is
 * freed (or fails to start), calls MPI_Finalize and exit(0). */
MPOOL_API mpool_pool_t *mpool_mpi_pool_new(int *argc, char ***argv, const mpool_mpi_opts_t *opts);

/* This process's rank and the number of ranks (both 0 before MPI_Init). */
MPOOL_API int mpool_mpi_rank(void);
MPOOL_API int mpool_mpi_size(void);

#ifdef __cplusplus
}
#endif
#endif
