/* The MPI backend's wire format and tuning constants, in one place.
 * Internal to libmpool_mpi; no MPI call is made here (the header does not
 * even include <mpi.h>), so every name is ours: MPOOL__MPI_* and mpool__mpi_*,
 * never MPI_*.
 *
 * Roles. Rank 0 runs the user's program; its engine (mpi_master.c) owns one
 * communication thread, the only thread that calls MPI while the pool lives
 * (MPI_THREAD_SERIALIZED). Ranks 1..size-1 are workers (mpi_worker.c): they
 * loop receiving pieces, running the task on each item and sending the
 * results back, until told to stop.
 *
 * Start-up (mpi.c), collective over MPI_COMM_WORLD:
 *   1. every rank checks its opts (EINVAL before MPI starts), then MPI_Init;
 *   2. rank 0 broadcasts an mpool__mpi_start_hdr_t (its verdict, workers,
 *      sizes) and, on MPOOL__MPI_VERDICT_GO, the payload: ctx_size ctx
 *      bytes, then the registered task names, each NUL-terminated, in
 *      registry order (a task's id on the wire is its index in rank 0's
 *      registry);
 *   3. each worker resolves the names in its own registry and runs its
 *      initializer; an MPI_Allreduce(MAX) of everyone's verdict decides.
 *      On anything but GO every rank finalizes (rank 0 only if libmpool
 *      initialized MPI) and the workers exit.
 *
 * Messages of a running pool (all on MPI_COMM_WORLD, between rank 0 and one
 * worker; MPI keeps the order of messages between one pair of ranks):
 *   TASK   0 -> w  mpool__mpi_task_hdr_t + count * in_size input bytes
 *   RESULT w -> 0  mpool__mpi_result_hdr_t + count * out_size output bytes
 *                  + count task return values, MPOOL__MPI_RV_SIZE bytes each
 *   STOP   0 -> w  empty: end of the pool. The worker abandons the piece it
 *                  runs (it probes for STOP between items, every
 *                  MPOOL__MPI_STOP_PROBE of work), drops the pieces still
 *                  queued, and answers
 *   BYE    w -> 0  empty: the worker sends nothing more and finalizes.
 * Since a worker answers its pieces in the order they came, rank 0 matches a
 * result with the oldest piece in flight at that worker: no job ids travel.
 * A message that breaks these rules means the ranks run different binaries:
 * the receiver ends the job with MPI_Abort and one of MPOOL__MPI_ABORT_*.
 *
 * Byte order and layout. Headers and return values travel as raw bytes
 * (MPI_BYTE) and are read back with memcpy into the same structs, possibly
 * on another host: that needs every rank to share byte order and struct
 * layout. The asserts below pin the layout (fixed-width fields, explicit
 * padding, no compiler-inserted holes) and little-endian order (as
 * src/arch.h does for the whole library). */
#ifndef MPOOL_MPI_PROTO_H
#define MPOOL_MPI_PROTO_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "the MPI wire format sends integers as raw little-endian bytes");

/* ---- start-up ------------------------------------------------------------ */

/* A rank's verdict on the start-up. Rank 0 sends its own in the start
 * header; when that is not GO, nothing else is exchanged. Otherwise every
 * rank votes and the MAX wins, so the order matters: a failed initializer
 * outranks an unknown name, which outranks a worker out of memory. (A
 * worker that cannot hold the payload aborts: it cannot skip a
 * collective.) */
enum {
    MPOOL__MPI_VERDICT_GO,     /* all is well: the pool starts */
    MPOOL__MPI_VERDICT_BADARG, /* rank 0: thread level, too few ranks, processes > ranks - 1 */
    MPOOL__MPI_VERDICT_NOMEM,  /* out of memory: rank 0 (engine, payload), a worker (task table) */
    MPOOL__MPI_VERDICT_NAME,   /* a worker: a task name it has not registered */
    MPOOL__MPI_VERDICT_INIT,   /* a worker: its initializer failed (MPOOL_ETASK) */
};

/* Broadcast by rank 0 first (sizeof bytes, MPI_BYTE). */
typedef struct {
    int32_t verdict;  /* rank 0's: GO, BADARG or NOMEM; the rest is valid on GO */
    int32_t nworkers; /* ranks 1..nworkers serve; the others only join the collectives */
    uint32_t ntasks;  /* task names in the payload */
    uint32_t pad;     /* 0 */
    uint64_t ctx_size, names_len; /* payload: ctx bytes, then the names (NULs included) */
} mpool__mpi_start_hdr_t;

_Static_assert(sizeof(mpool__mpi_start_hdr_t) == 32, "start header: 32 bytes, no holes");
_Static_assert(offsetof(mpool__mpi_start_hdr_t, ctx_size) == 16,
               "start header: 64-bit fields at 16");

/* ---- a running pool ------------------------------------------------------ */

/* Message tags, on MPI_COMM_WORLD. */
enum {
    MPOOL__MPI_TAG_TASK = 7001,
    MPOOL__MPI_TAG_RESULT,
    MPOOL__MPI_TAG_STOP,
    MPOOL__MPI_TAG_BYE,
};

/* MPI_Abort codes for a message that breaks the protocol. */
enum {
    /* rank 0: an answer from no worker, or one with nothing in flight, or short */
    MPOOL__MPI_ABORT_UNEXPECTED = 70,
    MPOOL__MPI_ABORT_MISMATCH = 71, /* rank 0: an answer not to that worker's oldest piece */
    MPOOL__MPI_ABORT_BAD_TASK = 72, /* a worker: a TASK message it cannot run */
};

/* TASK header. The items follow it directly, so its size keeps them as
 * aligned as the receive buffer (malloc: 16 bytes). */
typedef struct {
    uint64_t start;    /* index of the piece's first item in its job */
    uint64_t count;    /* items in the piece (at most MPOOL__MPI_MSG_LIMIT) */
    uint64_t in_size;  /* bytes per input item (at most MPOOL__MPI_ITEM_MAX) */
    uint64_t out_size; /* bytes per output item (at most MPOOL__MPI_ITEM_MAX) */
    uint32_t task;     /* index in rank 0's registry (resolved by name at start) */
    uint32_t pad;      /* 0 */
    uint64_t reserved; /* 0; pads the header to 48 bytes */
} mpool__mpi_task_hdr_t;

_Static_assert(sizeof(mpool__mpi_task_hdr_t) == 48, "task header: 48 bytes, no holes");
_Static_assert(offsetof(mpool__mpi_task_hdr_t, task) == 32, "task header: task id at 32");
_Static_assert(sizeof(mpool__mpi_task_hdr_t) % 16 == 0, "input items start 16-byte aligned");

/* RESULT header: an echo of the task header's, checked by rank 0. The
 * outputs follow it (as aligned as the inputs were), then the return
 * values, which may be unaligned: they are read and written with memcpy. */
typedef struct {
    uint64_t start, count;
} mpool__mpi_result_hdr_t;

_Static_assert(sizeof(mpool__mpi_result_hdr_t) == 16, "result header: 16 bytes, outputs aligned");

/* Bytes of one task return value on the wire: an int32_t, at rvs + 4 * i,
 * read and written with these two since the list may be unaligned. */
#define MPOOL__MPI_RV_SIZE 4
_Static_assert(sizeof(int32_t) == MPOOL__MPI_RV_SIZE, "return values are 4 raw bytes");

static inline int32_t mpool__mpi_rv_get(const char *rvs, size_t i)
{
    int32_t rv;
    memcpy(&rv, rvs + MPOOL__MPI_RV_SIZE * i, MPOOL__MPI_RV_SIZE);
    return rv;
}

static inline void mpool__mpi_rv_put(char *rvs, size_t i, int32_t rv)
{
    memcpy(rvs + MPOOL__MPI_RV_SIZE * i, &rv, MPOOL__MPI_RV_SIZE);
}

/* ---- sizes ------------------------------------------------------------------ */

/* Messages the engine builds stay under MPOOL__MPI_MSG_LIMIT (chunks are cut
 * into pieces), except for a single item bigger than that; items over
 * MPOOL__MPI_ITEM_MAX are refused. The payload at start is ctx_size (at most
 * MSG_LIMIT) plus the names. Both are casts to int at the MPI calls, whose
 * counts are ints. */
#define MPOOL__MPI_MSG_LIMIT ((size_t)64 << 20)
#define MPOOL__MPI_ITEM_MAX  ((size_t)1 << 30)
_Static_assert(MPOOL__MPI_ITEM_MAX + sizeof(mpool__mpi_task_hdr_t) <= INT_MAX,
               "a TASK message of one item fits an MPI count");
_Static_assert(MPOOL__MPI_MSG_LIMIT <= MPOOL__MPI_ITEM_MAX,
               "the message limit is below the item limit");

/* ---- tuning: rank 0 ------------------------------------------------------ */

/* Pieces queued at each worker: opts.inflight, or MPOOL__MPI_DEPTH_DEFAULT;
 * at most MPOOL__MPI_DEPTH_MAX. The master's thread naps at most half the
 * work queued at a worker, and never over MPOOL__MPI_NAP_MAX. */
#define MPOOL__MPI_DEPTH_DEFAULT 2
#define MPOOL__MPI_DEPTH_MAX     64
#define MPOOL__MPI_NAP_MAX       1.28e-3

/* Longest sleep of a waiting caller before it looks again. */
#define MPOOL__MPI_WAIT_NAP 10e-3

/* Short chunks are sent together, up to this much work per message. */
#define MPOOL__MPI_PIECE_TIME 100e-6

/* ---- tuning: the worker ranks --------------------------------------------- */

/* A worker looks for STOP between items after this much work. */
#define MPOOL__MPI_STOP_PROBE 5e-3

#endif
