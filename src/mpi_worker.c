/* The worker ranks' loop of the MPI Pool (ranks 1..size-1): receive a piece
 * from rank 0, run the task on each of its items, send the results back, in
 * the order the pieces came; on STOP drop the rest and say BYE. The messages
 * are described in mpi_proto.h.
 *
 * A worker makes MPI calls from its one thread only, and waits by polling
 * (MPI_Iprobe) then napping, so that an idle worker leaves the CPU to the
 * others on a shared host. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mpi.h>

#include "internal.h"
#include "mpi_internal.h"
#include "mpi_proto.h"

/* Growable message buffer. */
typedef struct {
    char *p;
    size_t cap;
} buf_t;

static void buf_need(buf_t *b, size_t len)
{
    if (len <= b->cap) return;
    char *p = realloc(b->p, len);
    if (!p) MPI_Abort(MPI_COMM_WORLD, ENOMEM); /* a worker cannot answer without it */
    b->p = p;
    b->cap = len;
}

static void nap(unsigned idle)
{
    unsigned shift = idle < 6 ? idle : 6;
    struct timespec ts = {0, 10000L << shift}; /* 10 us .. 640 us */
    nanosleep(&ts, NULL);
}

/* Waits for the next message from rank 0; polls for a while, then naps, so
 * that an idle worker leaves the CPU to the others. Returns its tag. */
static int worker_wait(MPI_Status *st)
{
    for (unsigned idle = 0;; idle++) {
        int flag;
        MPI_Iprobe(0, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, st);
        if (flag) return st->MPI_TAG;
        if (idle >= 256) nap((idle - 256) / 4);
    }
}

static bool stop_pending(void)
{
    int flag;
    MPI_Iprobe(0, MPOOL__MPI_TAG_STOP, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
    return flag;
}

/* When to look for STOP between items: every MPOOL__MPI_STOP_PROBE of work.
 * The clock is read after every item while items are slow, and only every
 * 64th once they take under 1 us, so that the look costs tiny tasks
 * nothing. */
typedef struct {
    double probed, read; /* last probe, last clock reading */
    unsigned mask, k;    /* read the clock when (++k & mask) == 0 */
} stop_check_t;

static bool stop_due(stop_check_t *sc)
{
    if (++sc->k & sc->mask) return false;
    double t = mpool__now(), per = (t - sc->read) / (sc->mask + 1);
    sc->read = t;
    sc->mask = per < 1e-6 ? (sc->mask << 1 | 1) & 63 : 0;
    if (t - sc->probed < MPOOL__MPI_STOP_PROBE) return false;
    sc->probed = t;
    return true;
}

/* Runs one piece (message in `in`, `len` bytes) and sends the answer:
 * result header, outputs, then the int32 return values (outputs first, so
 * they are as aligned as the inputs). Returns false, without answering, when
 * rank 0 asked to stop meanwhile. */
static bool worker_run(const mpool__mpi_worker_t *w, const char *msg, size_t len, buf_t *res)
{
    enum { RV = MPOOL__MPI_RV_SIZE };
    mpool__mpi_task_hdr_t h;
    if (len < sizeof h) MPI_Abort(MPI_COMM_WORLD, MPOOL__MPI_ABORT_BAD_TASK);
    memcpy(&h, msg, sizeof h);
    if (h.task >= w->ntasks || h.in_size > MPOOL__MPI_ITEM_MAX ||
        h.out_size > MPOOL__MPI_ITEM_MAX || h.count > MPOOL__MPI_MSG_LIMIT ||
        len != sizeof h + h.count * h.in_size ||
        (h.count > 1 && h.count * (h.out_size + RV) > MPOOL__MPI_MSG_LIMIT))
        MPI_Abort(MPI_COMM_WORLD, MPOOL__MPI_ABORT_BAD_TASK); /* mismatched binaries */
    size_t rlen = sizeof(mpool__mpi_result_hdr_t) + h.count * (h.out_size + RV);
    buf_need(res, rlen);
    mpool__mpi_result_hdr_t rh = {.start = h.start, .count = h.count};
    memcpy(res->p, &rh, sizeof rh);
    char *outs = res->p + sizeof rh, *rvs = outs + h.count * h.out_size;
    const char *in = msg + sizeof h;
    mpool_task_fn fn = w->fns[h.task];
    stop_check_t sc = {.probed = mpool__now(), .read = mpool__now()};
    for (size_t i = 0; i < h.count; i++) {
        int32_t rv = fn(in + i * h.in_size, outs + i * h.out_size, w->ctx);
        mpool__mpi_rv_put(rvs, i, rv);
        if (i + 1 < h.count && stop_due(&sc) && stop_pending()) return false;
    }
    MPI_Send(res->p, (int)rlen, MPI_BYTE, 0, MPOOL__MPI_TAG_RESULT, MPI_COMM_WORLD);
    return true;
}

/* Receives and drops what rank 0 sent before STOP, then STOP itself. */
static void worker_drain(buf_t *msg)
{
    for (;;) {
        MPI_Status st;
        int tag = worker_wait(&st), count;
        MPI_Get_count(&st, MPI_BYTE, &count);
        buf_need(msg, (size_t)count + 1);
        MPI_Recv(msg->p, count, MPI_BYTE, 0, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (tag == MPOOL__MPI_TAG_STOP) return;
    }
}

void mpool__mpi_worker_serve(const mpool__mpi_worker_t *w)
{
    buf_t msg = {0}, res = {0};
    for (;;) {
        MPI_Status st;
        int tag = worker_wait(&st), count;
        if (tag != MPOOL__MPI_TAG_TASK || stop_pending()) break;
        MPI_Get_count(&st, MPI_BYTE, &count);
        buf_need(&msg, (size_t)count + 1);
        MPI_Recv(msg.p, count, MPI_BYTE, 0, MPOOL__MPI_TAG_TASK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        if (!worker_run(w, msg.p, (size_t)count, &res)) break;
    }
    worker_drain(&msg);
    MPI_Send(NULL, 0, MPI_BYTE, 0, MPOOL__MPI_TAG_BYE, MPI_COMM_WORLD);
    free(msg.p);
    free(res.p);
}
