/* libFuzzer harness for the pipe message framing: arbitrary bytes arrive on
 * a connection as if a peer had written them, then the peer closes. Every
 * receive must end in a documented result (a message, EMSGSIZE, EPIPE at the
 * end, EPROTO for a corrupt stream), never a crash, a hang or an allocation
 * beyond what the stream really carries. */
#include <mpool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

static void drain(mpool_conn_t *rx)
{
    char small[64];
    for (int i = 0; i < 100000; i++) {
        size_t len = 0;
        int r = mpool_conn_recv(rx, small, sizeof small, &len, 0);
        if (r == EMSGSIZE) {
            if (len > MPOOL_MSG_MAX) abort(); /* must never be announced */
            void *buf = NULL;
            r = mpool_conn_recv_alloc(rx, &buf, &len, 0);
            if (r == 0) {
                if (!buf) abort();
                free(buf);
            }
        }
        if (r == 0) continue;
        if (r != EPIPE && r != EPROTO && r != ETIMEDOUT && r != ENOMEM) abort();
        return;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpool_conn_t *rx, *tx;
    if (mpool_pipe(&rx, &tx, true) != 0) return 0;
    /* The socket buffer holds far more than libFuzzer's default max_len. */
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(mpool_conn_fileno(tx), data + off, size - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    mpool_conn_close(tx);
    drain(rx);
    mpool_conn_close(rx);
    return 0;
}
