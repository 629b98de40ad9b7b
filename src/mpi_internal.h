/* The MPI backend of the Pool: wire protocol, task registry and the master's
 * engine (rank 0). Internal to libmpool_mpi.
 *
 * Roles. Rank 0 runs the user's program; its engine owns one communication
 * thread, the only thread that calls MPI while the pool lives
 * (MPI_THREAD_SERIALIZED). Ranks 1..size-1 are workers: they loop receiving
 * chunks, running the task on each item and sending the results back, until
 * told to stop.
 *
 * Messages (all on MPI_COMM_WORLD, between rank 0 and one worker; MPI keeps
 * the order of messages between one pair of ranks):
 *   TAG_TASK   0 -> w  mpi_task_hdr + count * in_size input bytes
 *   TAG_RESULT w -> 0  mpi_result_hdr + count * out_size output bytes
 *                      + count int32 task return values
 *   TAG_STOP   0 -> w  empty: end of the pool. The worker abandons the chunk it
 *                      runs (it probes for STOP between items every few ms),
 *                      drops the chunks still queued, and answers
 *   TAG_BYE    w -> 0  empty: the worker sends nothing more and finalizes.
 * Since a worker answers its chunks in the order they came, rank 0 matches a
 * result with the oldest chunk in flight at that worker: no job ids travel.
 */
#ifndef MPOOL_MPI_INTERNAL_H
#define MPOOL_MPI_INTERNAL_H

#include <mpi.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mpool/mpi.h"
#include "pool_backend.h"

enum { MPI_TAG_TASK = 7001, MPI_TAG_RESULT, MPI_TAG_STOP, MPI_TAG_BYE };

typedef struct {
    uint64_t start;    /* index of the chunk's first item in its job */
    uint64_t count;    /* items in the chunk */
    uint64_t in_size;  /* bytes per input item */
    uint64_t out_size; /* bytes per output item */
    uint32_t task;     /* index in rank 0's registry (resolved by name at start) */
    uint32_t pad;
    uint64_t reserved; /* 48 bytes: the input items start 16-byte aligned */
} mpi_task_hdr;

typedef struct {
    uint64_t start, count; /* echo of the task header, checked by rank 0 */
} mpi_result_hdr;

/* libmpool_mpi is a library of its own: libmpool's internal helpers
 * (src/internal.c) are hidden from it, so the two it needs are restated
 * here. (pool_backend.h's functions are exported for it.) */

/* Now on CLOCK_MONOTONIC, in seconds. */
static inline double mpi_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The absolute CLOCK_MONOTONIC time `seconds` from now. */
static inline struct timespec mpi_after(double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)(seconds * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    return ts;
}

/* Pieces queued at each worker: opts.inflight, or MPI_DEPTH_DEFAULT; at
 * most MPI_DEPTH_MAX. The master's thread naps at most half the work queued
 * at a worker, and never over MPI_NAP_MAX. */
#define MPI_DEPTH_DEFAULT 2
#define MPI_DEPTH_MAX     64
#define MPI_NAP_MAX       1.28e-3

/* Longest sleep of a waiting caller before it looks again. */
#define MPI_WAIT_NAP 10e-3

/* Short chunks are sent together, up to this much work per message. */
#define MPI_PIECE_TIME 100e-6

/* Messages the engine builds stay under MPI_MSG_LIMIT (chunks are cut into
 * pieces), except for a single item bigger than that; items over
 * MPI_ITEM_MAX are refused (MPI counts are ints). */
#define MPI_MSG_LIMIT ((size_t)64 << 20)
#define MPI_ITEM_MAX  ((size_t)1 << 30)

/* ---- registry (mpi.c) ---- */
int mpool__mpi_task_id(mpool_task_fn fn); /* -1 if not registered */

/* ---- the master's engine (mpi_master.c): the ops of pool_backend.h ---- */
typedef struct mpi_eng mpi_eng_t;

/* An engine over worker ranks 1..nworkers of `size` ranks, `depth` pieces
 * queued per worker (0: MPI_DEPTH_DEFAULT); NULL with errno ENOMEM. Its thread starts with
 * mpool__mpi_eng_start (0 or EAGAIN), once no other thread calls MPI. */
mpi_eng_t *mpool__mpi_eng_new(int nworkers, int size, unsigned depth);
int mpool__mpi_eng_start(mpi_eng_t *e);

/* Queues the job's items for the workers; `task` = registry index of
 * job->fn. 0, EINVAL (closed) or ENOMEM. */
int mpool__mpi_eng_submit(mpi_eng_t *e, mpool__job_t *job, int task);

/* Moves whenever a chunk progresses, and when the engine stops. */
uint32_t mpool__mpi_eng_event(mpi_eng_t *e);
/* ops->wait of pool_backend.h. */
void mpool__mpi_eng_wait(mpi_eng_t *e, mpool__job_t *job, uint32_t seen,
                         const struct timespec *deadline);

/* No more jobs; the workers are stopped once the queued work is done. */
void mpool__mpi_eng_close(mpi_eng_t *e);
/* Waits until the workers said goodbye. 0 or ETIMEDOUT. */
int mpool__mpi_eng_join(mpi_eng_t *e, const struct timespec *deadline);
/* Drops every queued and running chunk; on return no job is touched again.
 * The workers are told to stop. */
void mpool__mpi_eng_terminate(mpi_eng_t *e);
/* After terminate or join (or never started): waits for the thread, frees
 * everything. */
void mpool__mpi_eng_free(mpi_eng_t *e);

#endif
