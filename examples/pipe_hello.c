/* pipe_hello: a child process answers over a pipe.
 *
 * The parent sends "Hello!" down a duplex pipe; the child replies
 * "you sent me Hello!"; the parent prints the reply. */
#include <mpool.h>

#include <stdio.h>
#include <string.h>

static mpool_conn_t *parent_end, *child_end;

static int child(void *arg)
{
    (void)arg;
    mpool_conn_close(parent_end); /* this process's copy of the other end */
    char msg[256], reply[300];
    size_t len;
    if (mpool_conn_recv(child_end, msg, sizeof msg - 1, &len, 10.0)) return 1;
    msg[len] = '\0';
    int n = snprintf(reply, sizeof reply, "you sent me %s", msg);
    return mpool_conn_send(child_end, reply, (size_t)n) ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s\nA child process answers a message sent over an mpool pipe.\n", argv[0]);
        return 0;
    }
    int r = mpool_pipe(&parent_end, &child_end, true);
    if (r) {
        fprintf(stderr, "mpool_pipe: %s\n", mpool_strerror(r));
        return 1;
    }
    mpool_process_t *p = mpool_process_new(child, NULL, NULL);
    if (!p || mpool_process_start(p)) {
        fprintf(stderr, "cannot start the child\n");
        return 1;
    }
    mpool_conn_close(child_end);
    char reply[300];
    size_t len = 0;
    r = mpool_conn_send(parent_end, "Hello!", 6);
    if (!r) r = mpool_conn_recv(parent_end, reply, sizeof reply - 1, &len, 10.0);
    if (r)
        fprintf(stderr, "pipe: %s\n", mpool_strerror(r));
    else
        printf("%.*s\n", (int)len, reply);
    mpool_conn_close(parent_end);
    int code = 1;
    mpool_process_join(p, MPOOL_FOREVER);
    mpool_process_exitcode(p, &code);
    mpool_process_free(p);
    return r || code ? 1 : 0;
}
