/* libmpool: message pipes (Python's multiprocessing.Pipe and Connection).
 *
 * A pipe is a connected pair of endpoints over socketpair(AF_UNIX,
 * SOCK_STREAM). A message is a byte string of any length from 0 to
 * MPOOL_MSG_MAX; it arrives whole, never cut or merged with another, however
 * the socket buffers split it. Make the pipe before forking; each process
 * then uses (and closes) the endpoint it needs. Descriptors are close-on-exec.
 * The process is never killed by SIGPIPE. A pool's helper processes do not
 * hold endpoints made before mpool_pool_new (unless its opts.inherit_fds is
 * true): closing an endpoint still gives the peer EOF or EPIPE while a pool
 * lives (since 1.1; before, the pool's processes kept every descriptor).
 *
 * An endpoint is used by one thread at a time (as in Python): two threads
 * sending on one endpoint at once may interleave their messages.
 */
#ifndef MPOOL_CONN_H
#define MPOOL_CONN_H

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mpool_conn mpool_conn_t;

/* The largest message: 1 GiB. A length header above it is refused. */
#define MPOOL_MSG_MAX ((size_t)1 << 30)

/* Makes a pipe. duplex: both ends send and receive; otherwise *a receives
 * only and *b sends only. Returns 0, EINVAL (NULL pointers), or the errno of
 * socketpair (EMFILE, ENFILE, ENOMEM). */
MPOOL_API int mpool_pipe(mpool_conn_t **a, mpool_conn_t **b, bool duplex);

/* Sends one message of `len` bytes. Blocks while the socket buffer is full
 * (until the peer reads). Returns 0; EPIPE if the peer has closed its end;
 * EMSGSIZE if len > MPOOL_MSG_MAX; EINVAL (NULL, or a receive-only end). */
MPOOL_API int mpool_conn_send(mpool_conn_t *c, const void *buf, size_t len);

/* Receives one message into buf (capacity `cap`), setting *len to its size.
 * Waits up to `timeout` for it to start arriving. Returns 0; ETIMEDOUT;
 * EPIPE at end of stream (the peer closed and nothing is left); EMSGSIZE if
 * the message is larger than cap: *len is set to the size needed and the
 * message stays for the next call; EPROTO if the stream is corrupt (a length
 * over MPOOL_MSG_MAX, or the peer closed in mid-message); EINVAL (NULL, or a
 * send-only end). Once a message has started to arrive, the rest is waited
 * for without the timeout. */
MPOOL_API int mpool_conn_recv(mpool_conn_t *c, void *buf, size_t cap, size_t *len, double timeout);

/* Like mpool_conn_recv, into a buffer it allocates with malloc (free it with
 * free(); a zero-length message still gives a non-NULL buffer). A message
 * over 1 MiB gets its buffer in doubling steps as its bytes arrive, so a
 * peer that announces a length it never sends cannot make the receiver
 * allocate it. ENOMEM if an allocation fails: before any byte of the
 * message was read, the message stays; after, the stream is lost (EPROTO
 * from then on). */
MPOOL_API int mpool_conn_recv_alloc(mpool_conn_t *c, void **buf, size_t *len, double timeout);

/* Waits until a message (or end of stream) can be received: one buffered in
 * the endpoint, or data on the descriptor. Returns 0 when one is ready,
 * ETIMEDOUT, or EINVAL (NULL, or a send-only end). */
MPOOL_API int mpool_conn_poll(mpool_conn_t *c, double timeout);

/* The endpoint's descriptor (owned by the endpoint), or -1. The endpoint
 * reads ahead: small messages that arrived together may already sit in its
 * buffer while the descriptor is not readable. So before waiting on the
 * descriptor with poll/epoll, call mpool_conn_poll(c, 0): if it returns 0, a
 * message is ready without waiting. */
MPOOL_API int mpool_conn_fileno(const mpool_conn_t *c);

/* Closes this endpoint in this process and frees it. NULL is accepted. */
MPOOL_API void mpool_conn_close(mpool_conn_t *c);

#ifdef __cplusplus
}
#endif
#endif
