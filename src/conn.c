/* Message pipes over socketpair(AF_UNIX, SOCK_STREAM).
 *
 * Wire format: each message is a 64-bit length in host byte order (both
 * ends run on one machine, with one library), then the payload. A stream
 * socket may split or join writes arbitrarily; the receiver frames them.
 *
 * Sending: one sendmsg with two iovecs (header + payload), so a message
 * costs one system call and no copy into a joined buffer.
 *
 * Receiving: small messages go through a per-endpoint buffer of RBUF bytes:
 * one recv takes whatever has arrived (the header and payload of one
 * message, or several messages), so a small message costs one system call,
 * as a bare read of a raw socketpair does. Reading the header and the
 * payload with two exact-size reads instead cost ~20% more per 8-byte round
 * trip (measured: 17.9 vs 14.8 us median, raw 15.2 us). A payload larger
 * than the buffer is read straight into the caller's memory after what was
 * buffered, so big messages are not copied twice. The price: a message can
 * wait in the buffer while the descriptor is not readable, so whoever polls
 * the descriptor directly must first ask mpool_conn_poll(c, 0) (see conn.h).
 *
 * A header whose payload did not fit the caller's buffer is kept in the
 * endpoint (`pending`), so the next recv gets the same message whole. The
 * timeout covers only the wait for the first byte of a message: once a
 * message has begun, the sender is in the middle of one sendmsg and the
 * rest follows, so it is read without a limit (a timeout there would leave
 * the stream in mid-message).
 */
#include <mpool/conn.h>

#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

enum { CAN_RECV = 1, CAN_SEND = 2 };

/* Receive buffer size: a page. Payloads beyond half of it bypass it. */
#define RBUF 4096

struct mpool_conn {
    int fd;
    int mode;          /* CAN_RECV | CAN_SEND */
    bool has_pending;  /* a header was taken and its payload not yet */
    bool corrupt;      /* the stream broke mid-message: every recv is EPROTO */
    uint64_t pending;  /* that header's length */
    size_t rpos, rend; /* unread bytes are rbuf[rpos, rend) */
    unsigned char rbuf[RBUF];
};

static mpool_conn_t *conn_new(int fd, int mode)
{
    mpool_conn_t *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->mode = mode;
    c->has_pending = c->corrupt = false;
    c->pending = 0;
    c->rpos = c->rend = 0;
    return c;
}

int mpool_pipe(mpool_conn_t **a, mpool_conn_t **b, bool duplex)
{
    if (!a || !b) return EINVAL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return errno;
    int ma = duplex ? CAN_RECV | CAN_SEND : CAN_RECV;
    int mb = duplex ? CAN_RECV | CAN_SEND : CAN_SEND;
    mpool_conn_t *ca = conn_new(sv[0], ma), *cb = conn_new(sv[1], mb);
    if (!ca || !cb) {
        free(ca);
        free(cb);
        close(sv[0]);
        close(sv[1]);
        return ENOMEM;
    }
    if (!duplex) {
        /* The kernel enforces the direction too, also on a raw descriptor
         * handed out by mpool_conn_fileno(). */
        shutdown(sv[0], SHUT_WR);
        shutdown(sv[1], SHUT_RD);
    }
    *a = ca;
    *b = cb;
    return 0;
}

/* ---- sending -------------------------------------------------------------- */

/* Maps the errno of a socket call to the codes conn.h documents: a
 * descriptor closed or replaced behind the endpoint's back is a bad
 * argument; other errors (ENOBUFS, ENOMEM) pass through. */
static int sock_error(int err)
{
    return err == EBADF || err == ENOTSOCK || err == EFAULT ? EINVAL : err;
}

static int send_error(int err)
{
    /* A peer that closed while we wrote may show up as a reset. */
    return err == ECONNRESET || err == ENOTCONN ? EPIPE : sock_error(err);
}

int mpool_conn_send(mpool_conn_t *c, const void *buf, size_t len)
{
    if (!c || !(c->mode & CAN_SEND) || (!buf && len)) return EINVAL;
    if (len > MPOOL_MSG_MAX) return EMSGSIZE;
    uint64_t hdr = len;
    struct iovec iov[2] = {{&hdr, sizeof hdr}, {(void *)buf, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    for (;;) {
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return send_error(errno);
        }
        /* A partial write: skip what went out and send the rest. */
        while (mh.msg_iovlen && (size_t)n >= mh.msg_iov[0].iov_len) {
            n -= (ssize_t)mh.msg_iov[0].iov_len;
            mh.msg_iov++;
            mh.msg_iovlen--;
        }
        if (!mh.msg_iovlen) return 0;
        mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + n;
        mh.msg_iov[0].iov_len -= (size_t)n;
    }
}

/* ---- receiving ------------------------------------------------------------ */

/* Reads exactly `len` bytes straight into buf, waiting without a limit.
 * 0, EPROTO if the stream ends first (the peer died or closed mid-message),
 * or an errno. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, MSG_WAITALL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == ECONNRESET ? EPROTO : sock_error(errno);
        }
        if (n == 0) return EPROTO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Waits until fd is readable or hung up, up to an absolute deadline
 * (NULL = forever). 0 or ETIMEDOUT. */
static int wait_readable(int fd, const struct timespec *deadline)
{
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        struct timespec left, *lp = NULL;
        if (deadline) {
            double s = mpool__remaining(deadline);
            left.tv_sec = (time_t)s;
            left.tv_nsec = (long)((s - (double)left.tv_sec) * 1e9);
            lp = &left;
        }
        int r = ppoll(&pfd, 1, lp, NULL);
        if (r > 0) return 0;
        if (r == 0) return ETIMEDOUT;
        if (errno != EINTR) return sock_error(errno);
        if (mpool__expired(deadline)) return ETIMEDOUT;
    }
}

static size_t buffered(const mpool_conn_t *c)
{
    return c->rend - c->rpos;
}

/* Receives into the buffer until it holds at least `need` (<= RBUF) bytes.
 * Only while it is empty does the wait honour the timeout (`deadline`;
 * `limited` false: forever): after that a message has begun. 0; EPIPE at
 * end of stream between messages, EPROTO inside one; ETIMEDOUT; an errno. */
static int fill(mpool_conn_t *c, size_t need, bool limited, const struct timespec *deadline)
{
    if (RBUF - c->rpos < need) { /* make room at the end */
        memmove(c->rbuf, c->rbuf + c->rpos, buffered(c));
        c->rend -= c->rpos;
        c->rpos = 0;
    }
    while (buffered(c) < need) {
        bool timed = limited && buffered(c) == 0;
        ssize_t n = recv(c->fd, c->rbuf + c->rend, RBUF - c->rend, timed ? MSG_DONTWAIT : 0);
        if (n > 0) {
            c->rend += (size_t)n;
            continue;
        }
        bool eof = n == 0 || errno == ECONNRESET;
        if (eof) return buffered(c) || c->has_pending ? EPROTO : EPIPE;
        if (errno == EINTR) continue;
        if (!timed || (errno != EAGAIN && errno != EWOULDBLOCK)) return sock_error(errno);
        int r = wait_readable(c->fd, deadline);
        if (r) return r;
    }
    return 0;
}

/* Makes sure the next message's header is in c->pending. */
static int get_header(mpool_conn_t *c, double timeout)
{
    if (c->corrupt) return EPROTO;
    if (c->has_pending) return 0;
    struct timespec ts;
    bool limited = mpool__deadline(timeout, &ts);
    int r = fill(c, sizeof(uint64_t), limited, &ts);
    if (r == 0) {
        memcpy(&c->pending, c->rbuf + c->rpos, sizeof(uint64_t));
        c->rpos += sizeof(uint64_t);
        /* Never trust a length beyond the limit: the stream is lost. */
        if (c->pending > MPOOL_MSG_MAX) r = EPROTO;
    }
    if (r == EPROTO) c->corrupt = true;
    if (r == 0) c->has_pending = true;
    return r;
}

/* Reads the pending message's payload into buf (its room checked): first
 * what is buffered, then the rest -- through the buffer if it is small,
 * straight into buf if not. */
static int read_payload(mpool_conn_t *c, unsigned char *buf)
{
    size_t len = (size_t)c->pending, take = buffered(c) < len ? buffered(c) : len;
    if (take) memcpy(buf, c->rbuf + c->rpos, take);
    c->rpos += take;
    size_t rest = len - take;
    int r = 0;
    if (rest > RBUF / 2) {
        r = read_all(c->fd, buf + take, rest);
    } else if (rest) {
        r = fill(c, rest, false, NULL);
        if (r == 0) {
            memcpy(buf + take, c->rbuf + c->rpos, rest);
            c->rpos += rest;
        }
    }
    c->has_pending = false;
    if (r) c->corrupt = true; /* part of the message is gone */
    return r == EPIPE ? EPROTO : r;
}

static bool can_recv(const mpool_conn_t *c)
{
    return c && (c->mode & CAN_RECV);
}

int mpool_conn_recv(mpool_conn_t *c, void *buf, size_t cap, size_t *len, double timeout)
{
    if (!can_recv(c) || !len || (!buf && cap)) return EINVAL;
    int r = get_header(c, timeout);
    if (r) return r;
    *len = (size_t)c->pending;
    if (c->pending > cap) return EMSGSIZE;
    return read_payload(c, buf);
}

/* A large message for recv_alloc gets its buffer in doubling steps as its
 * bytes arrive, so a peer that announces a length and never sends it cannot
 * make us allocate that length: at most twice what really arrived. Once
 * part of it is read, a failure loses the stream (later calls: EPROTO). */
#define ALLOC_STEP ((size_t)1 << 20)

static int read_payload_growing(mpool_conn_t *c, unsigned char **out)
{
    size_t len = (size_t)c->pending, cap = ALLOC_STEP, got = buffered(c);
    unsigned char *p = malloc(cap), *q;
    if (!p) return ENOMEM; /* nothing read yet: the message stays */
    memcpy(p, c->rbuf + c->rpos, got);
    c->rpos += got;
    int r = 0;
    while (!r && got < len) {
        if (got == cap) {
            cap = cap * 2 < len ? cap * 2 : len;
            q = realloc(p, cap);
            if (!q) {
                r = ENOMEM;
                break;
            }
            p = q;
        }
        r = read_all(c->fd, p + got, cap - got);
        if (!r) got = cap;
    }
    c->has_pending = false;
    if (r) {
        free(p);
        c->corrupt = true;
        return r == EPIPE ? EPROTO : r;
    }
    *out = p;
    return 0;
}

int mpool_conn_recv_alloc(mpool_conn_t *c, void **buf, size_t *len, double timeout)
{
    if (!can_recv(c) || !buf || !len) return EINVAL;
    int r = get_header(c, timeout);
    if (r) return r;
    /* The length is at most MPOOL_MSG_MAX here: get_header checked it. */
    size_t n = (size_t)c->pending;
    unsigned char *p;
    if (n > ALLOC_STEP) {
        r = read_payload_growing(c, &p);
    } else {
        if (!(p = malloc(n ? n : 1))) return ENOMEM;
        r = read_payload(c, p);
        if (r) free(p);
    }
    if (r) return r;
    *buf = p;
    *len = n;
    return 0;
}

int mpool_conn_poll(mpool_conn_t *c, double timeout)
{
    if (!can_recv(c)) return EINVAL;
    if (c->has_pending || c->corrupt || buffered(c)) return 0;
    struct timespec ts;
    bool limited = mpool__deadline(timeout, &ts);
    return wait_readable(c->fd, limited ? &ts : NULL);
}

int mpool_conn_fileno(const mpool_conn_t *c)
{
    return c ? c->fd : -1;
}

void mpool_conn_close(mpool_conn_t *c)
{
    if (!c) return;
    close(c->fd);
    free(c);
}
