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
 * and `mpirun -np 3 ./prog` (rank 0 + 2 worker ranks). On several hosts, put
 * the binary at the same path on each (or on a shared file system) and
 * list the hosts with their slots in a hostfile:
 *
 *     node1 slots=9                # rank 0 + 8 workers
 *     node2 slots=8
 *     mpirun --hostfile hosts -np 17 ./prog
 *
 * Link with libmpool_mpi (CMake: mpool::mpool_mpi); this header is not
 * included by <mpool.h>.
 *
 * Tasks by name. Function pointers do not cross hosts, so every task is
 * registered under a name on every rank before the pool is created. On rank 0
 * the fn given to mpool_pool_map & co is mapped back to its name (an
 * unregistered fn is EINVAL); the worker ranks resolve the name to their own
 * function when the pool starts (a name missing on a worker makes
 * mpool_mpi_pool_new fail with EINVAL on rank 0).
 *
 * Data travels by value: the input items of a chunk are sent to a worker,
 * its output items come back; `in` and `out` behave as with the local pool
 * (`in` is read by the time the call returns, `out` is filled by the time
 * wait/get return 0). Items are at most 1 GiB (EINVAL beyond). The task's ctx
 * is a copy of rank 0's opts.pool.ctx (ctx_size bytes), made once when the
 * pool starts. The initializer, if any, runs once on each worker rank (each
 * rank uses its own opts: the pointer is local). Work is self-scheduled:
 * rank 0 keeps a few chunks queued at each worker (opts.inflight) and sends
 * the next one to whichever worker answers, so fast and slow hosts both stay
 * busy; the default chunksize follows the local rule with the number of
 * worker ranks. A message each way costs a few us on one host (more across
 * a network): chunks of short tasks are therefore sent several per message,
 * up to about 100 us of work as timed on the job's first answers, so that
 * chunksize 1 stays cheap; long tasks still go one chunk at a time.
 *
 * Failures: a task returning non-zero fails its item with MPOOL_ETASK, as
 * locally. A worker rank that DIES (signal, exit, node lost) cannot be
 * replaced: MPI ends the whole job -- mpirun kills every rank, rank 0
 * included, and exits with a non-zero status. Nothing hangs, but rank 0 does
 * not get to see MPOOL_EWORKER. For the same reason maxtasksperchild and
 * task_timeout are not supported (EINVAL). terminate fails every unfinished
 * item with ECANCELED at once and the workers drop their queued chunks, but a
 * worker looks for the stop only between items (every 5 ms at most): one
 * long task runs to its end, and mpool_pool_free waits for it.
 *
 * MPI: mpool_mpi_pool_new calls MPI_Init_thread (MPI_THREAD_SERIALIZED)
 * unless MPI is already initialized (then at least that thread level is
 * required); rank 0 then runs one communication thread, the only thread
 * that calls MPI until the pool is freed: do not call MPI yourself meanwhile.
 * Never fork after MPI_Init (Open MPI forbids it): make local pools before.
 * One MPI pool per run: the worker ranks exit when it is freed, and when
 * libmpool initialized MPI, mpool_pool_free finalizes it. Free the pool
 * before rank 0 leaves main: a rank that exits without MPI_Finalize makes
 * mpirun end the job with an error (the workers are killed, nothing hangs).
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
    unsigned inflight; /* chunks (or batches of short chunks) queued at each worker,
                          at most 64; 0: 2 */
} mpool_mpi_opts_t;

/* Creates the MPI pool. Collective: every rank calls it with its own argc,
 * argv (passed to MPI_Init, may be NULL) and the same opts (NULL: defaults).
 *
 * Bad opts (processes < 0, maxtasksperchild or task_timeout not 0, ctx_size
 * over 64 MiB or without ctx, inflight over 64) return NULL with EINVAL on
 * every rank, before MPI starts. Past that, on rank 0 it returns the pool, or
 * NULL with errno: EINVAL (fewer than 2 ranks, processes > ranks - 1, a task
 * name unknown on a worker rank, MPI thread level too low, MPI already
 * finalized, a pool already created), MPOOL_ETASK (the initializer failed on
 * a worker rank), ENOMEM, EAGAIN (no thread). After such a NULL, MPI is
 * finalized if libmpool initialized it.
 *
 * On ranks > 0 it never returns once MPI started: the rank serves tasks until
 * the pool is freed (or fails to start), calls MPI_Finalize and exit(0). A
 * rank beyond `processes` serves nothing and waits for the end likewise. */
MPOOL_API mpool_pool_t *mpool_mpi_pool_new(int *argc, char ***argv, const mpool_mpi_opts_t *opts);

/* This process's rank and the number of ranks (both 0 before MPI_Init). */
MPOOL_API int mpool_mpi_rank(void);
MPOOL_API int mpool_mpi_size(void);

#ifdef __cplusplus
}
#endif
#endif
