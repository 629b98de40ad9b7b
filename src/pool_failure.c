/* Failures that explain themselves, the caller's side: the per-item
 * records of large jobs, the failure list of an async, an iterator's last
 * failure, and the human-readable messages and backtraces, built lazily
 * from what the job recorded (codes, per-item records, and the details
 * that the worker or the fork server pushed on job->details:
 * pool_backend.h).
 *
 * Lifetime. The strings must live until the handle is freed, and the
 * shared records and details no longer than the job; the front end frees
 * a job without telling this file (bytes jobs excepted:
 * mpool__failures_release), but it always sees the handle ready first. So
 * when a handle becomes ready (every item done, no worker can write the
 * job again) its failures are harvested into this process's memory and
 * the shared table and details are freed at once: the shared heap holds
 * them only while the job runs. The harvest and the strings are kept in a
 * registry, one entry per job that has any, and the job carries the
 * entry's name (fail_id). A freed job's block is zeroed (large blocks) or
 * reused by a job that the front end initializes afresh, and the pool code
 * zeroes its tag before the free: an entry whose job no longer has its
 * fail_id, or whose job's tag moved on, belongs to a freed job and is
 * swept (the heap stays mapped, so reading a freed job is safe, as in
 * settle_claim), at every new entry and at the pool's destroy.
 */
#include <mpool/pool.h>
#include <mpool/shm.h>

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool_front.h"

typedef struct {
    size_t index;
    char *msg, *bt;
} fstr_t;

/* A failure harvested from a finished job. */
typedef struct {
    size_t index;
    int32_t status;
    uint16_t reruns, cause;
    mpool__fail_detail_t *d; /* a private copy, NULL none */
} hv_t;

typedef struct reg {
    mpool__job_t *job;
    uint64_t id, tag;           /* tag: the job's, once seen non-zero */
    mpool__item_fail_t *table;  /* the job's records, when in a block of their own */
    mpool__fail_detail_t *head; /* job->details as last seen: freed with the entry */
    bool harvested;             /* hv holds the failures, table and head are gone */
    hv_t *hv;
    size_t nhv;
    fstr_t *s; /* strings built, by index */
    size_t ns, cap;
    struct reg *next;
} reg_t;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static reg_t *regs;
static uint64_t next_id = 1;

static void free_details(mpool__fail_detail_t *d)
{
    while (d) {
        mpool__fail_detail_t *next = d->next;
        mpool_shm_free(d);
        d = next;
    }
}

static void reg_free(reg_t *r)
{
    free_details(r->head);
    mpool_shm_free(r->table);
    for (size_t k = 0; k < r->ns; k++) {
        free(r->s[k].msg);
        free(r->s[k].bt);
    }
    free(r->s);
    for (size_t k = 0; k < r->nhv; k++) free(r->hv[k].d);
    free(r->hv);
    free(r);
}

/* True while r's job is still the one it names. */
static bool reg_alive(reg_t *r)
{
    const mpool__job_t *j = r->job;
    if (__atomic_load_n(&j->fail_id, __ATOMIC_ACQUIRE) != r->id) return false;
    uint64_t tag = __atomic_load_n(&j->tag, __ATOMIC_ACQUIRE);
    if (!r->tag) r->tag = tag;
    return tag == r->tag;
}

/* Drops the entries of freed jobs, and that of `job` (under reg_lock). */
static void sweep(const mpool__job_t *job)
{
    for (reg_t **at = &regs; *at;) {
        reg_t *r = *at;
        if (r->job == job || !reg_alive(r)) {
            *at = r->next;
            if (r->job == job) r->head = __atomic_load_n(&r->job->details, __ATOMIC_ACQUIRE);
            reg_free(r);
        } else {
            at = &r->next;
        }
    }
}

/* The job's entry (under reg_lock), made when `make`; NULL without one. */
static reg_t *reg_get(mpool__job_t *j, bool make)
{
    for (reg_t *r = regs; r; r = r->next)
        if (r->job == j && reg_alive(r)) {
            r->head = __atomic_load_n(&j->details, __ATOMIC_ACQUIRE);
            return r;
        }
    if (!make) return NULL;
    sweep(NULL);
    reg_t *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->job = j;
    r->id = 0x6661696cull << 32 | next_id++;
    __atomic_store_n(&j->fail_id, r->id, __ATOMIC_RELEASE);
    r->tag = __atomic_load_n(&j->tag, __ATOMIC_ACQUIRE);
    r->head = __atomic_load_n(&j->details, __ATOMIC_ACQUIRE);
    r->next = regs;
    regs = r;
    return r;
}

void mpool__job_attach_items(mpool__job_t *j)
{
    if (j->n <= MPOOL__ITEMS_IN_JOB) {
        j->items = mpool__job_in_block(j);
        return;
    }
    mpool__item_fail_t *t = mpool_shm_alloc(j->n * sizeof *t); /* zero: a large block */
    if (!t) return;                                            /* the fallback */
    pthread_mutex_lock(&reg_lock);
    reg_t *r = reg_get(j, true);
    if (r) r->table = t;
    pthread_mutex_unlock(&reg_lock);
    if (r)
        j->items = t;
    else
        mpool_shm_free(t);
}

/* Newest details of item i in the list, NULL none. */
static const mpool__fail_detail_t *detail_of(const mpool__fail_detail_t *d, size_t i)
{
    for (; d; d = d->next)
        if (d->index == i) return d;
    return NULL;
}

/* Moves the failures of r's finished job into private memory and frees its
 * shared table and details (under reg_lock). Without memory for the copy
 * they stay shared until the entry is swept. */
/* Appends v (with a private copy of d, if any) to the harvest; false
 * without memory. */
static bool hv_add(hv_t **hv, size_t *n, size_t *cap, hv_t v, const mpool__fail_detail_t *d)
{
    if (*n == *cap) {
        size_t more_cap = *cap ? 2 * *cap : 16;
        hv_t *more = realloc(*hv, more_cap * sizeof *more);
        if (!more) return false;
        *hv = more;
        *cap = more_cap;
    }
    if (d && !(v.d = malloc(sizeof *d))) return false;
    if (d) memcpy(v.d, d, sizeof *d);
    (*hv)[(*n)++] = v;
    return true;
}

static void harvest(reg_t *r)
{
    mpool__job_t *j = r->job;
    size_t first = __atomic_load_n(&j->first_fail, __ATOMIC_ACQUIRE), cap = 0, n = 0;
    hv_t *hv = NULL;
    for (size_t i = first; i < j->n; i++) {
        if (i % 16 == 0 && !__atomic_load_n(&j->codes[i / 16], __ATOMIC_ACQUIRE)) {
            i += 15; /* a word without a failure */
            continue;
        }
        int status, code = mpool__item_code(j, i, &status);
        if (!code) continue;
        const mpool__item_fail_t *rec = j->items ? &j->items[i] : NULL;
        hv_t v = {i, status, rec ? rec->reruns : 0, rec ? rec->cause : 0, NULL};
        if (!hv_add(&hv, &n, &cap, v, detail_of(r->head, i))) {
            for (size_t k = 0; k < n; k++) free(hv[k].d);
            free(hv);
            return;
        }
    }
    r->hv = hv;
    r->nhv = n;
    r->harvested = true;
    free_details(r->head);
    r->head = NULL;
    __atomic_store_n(&j->details, NULL, __ATOMIC_RELEASE);
    j->items = NULL;
    mpool_shm_free(r->table);
    r->table = NULL;
}

void mpool__failures_job_ready(mpool_async_t *a)
{
    mpool__job_t *j = a->job;
    if (!j || (!j->fail_id && !__atomic_load_n(&j->details, __ATOMIC_ACQUIRE))) return;
    pthread_mutex_lock(&reg_lock);
    reg_t *r = reg_get(j, true);
    if (r && !r->harvested) harvest(r);
    pthread_mutex_unlock(&reg_lock);
}

/* A harvested failure of item i, NULL none (under reg_lock). */
static const hv_t *hv_of(const reg_t *r, size_t i)
{
    size_t lo = 0, hi = r->nhv;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->hv[mid].index < i)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->nhv && r->hv[lo].index == i ? &r->hv[lo] : NULL;
}

int mpool__failure_status(mpool_async_t *a, size_t i, int status)
{
    if (!a->ready || !a->job->fail_id) return status;
    pthread_mutex_lock(&reg_lock);
    reg_t *r = reg_get(a->job, false);
    const hv_t *h = r && r->harvested ? hv_of(r, i) : NULL;
    if (h) status = h->status;
    pthread_mutex_unlock(&reg_lock);
    return status;
}

/* Everything job j keeps outside its block (under reg_lock). */
static void job_gone(mpool__job_t *j)
{
    if (reg_get(j, false))
        sweep(j);
    else
        free_details(__atomic_load_n(&j->details, __ATOMIC_ACQUIRE));
    j->details = NULL;
    j->items = NULL;
    j->fail_id = 0;
}

void mpool__failures_release(mpool_async_t *a)
{
    if (!a->job) return;
    pthread_mutex_lock(&reg_lock);
    job_gone(a->job);
    pthread_mutex_unlock(&reg_lock);
}

void mpool__failures_pool_gone(mpool_pool_t *p)
{
    pthread_mutex_lock(&reg_lock);
    sweep(NULL);
    for (mpool_async_t *a = p->live; a; a = a->next)
        if (a->job) job_gone(a->job);
    pthread_mutex_unlock(&reg_lock);
}

/* ---- text ------------------------------------------------------------------ */

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGABRT:
        return "SIGABRT";
    case SIGTRAP:
        return "SIGTRAP";
    case SIGSYS:
        return "SIGSYS";
    case SIGKILL:
        return "SIGKILL";
    case SIGTERM:
        return "SIGTERM";
    default:
        return NULL;
    }
}

/* "function+0xoff (object)": frame k of a stack (k > 0: a return address,
 * looked up one byte back, as the call may end its function). */
static int frame_text(char *buf, size_t cap, uint64_t addr, unsigned k)
{
    Dl_info di;
    void *at = (void *)(uintptr_t)(addr - (k > 0));
    if (!dladdr(at, &di) || !di.dli_fname)
        return snprintf(buf, cap, "0x%llx", (unsigned long long)addr);
    if (di.dli_sname && di.dli_saddr)
        return snprintf(buf, cap, "%s+0x%llx (%s)", di.dli_sname,
                        (unsigned long long)(addr - (uintptr_t)di.dli_saddr), di.dli_fname);
    return snprintf(buf, cap, "0x%llx (%s+0x%llx)", (unsigned long long)addr, di.dli_fname,
                    (unsigned long long)(addr - (uintptr_t)di.dli_fbase));
}

/* Appends to buf (cap bytes, *len used), keeping it NUL-terminated. */
__attribute__((format(printf, 4, 5))) static void put(char *buf, size_t cap, size_t *len,
                                                      const char *fmt, ...)
{
    if (*len >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (r > 0) *len += (size_t)r < cap - *len ? (size_t)r : cap - *len - 1;
}

/* How item i's worker died, after "item i: ". */
static void death_text(char *m, size_t cap, size_t *len, const mpool__fail_detail_t *d, int status,
                       unsigned cause)
{
    if (d && d->pid)
        put(m, cap, len, "worker %d ", (int)d->pid);
    else
        put(m, cap, len, "its worker ");
    if ((cause & 0xff) == MPOOL__CAUSE_EXIT) {
        put(m, cap, len, "exited with status %u", cause >> 8);
        return;
    }
    const char *name = sig_name(status);
    if (name)
        put(m, cap, len, "killed by %s", name);
    else
        put(m, cap, len, "killed by signal %d", status);
    if (d && d->has_addr) put(m, cap, len, " at address 0x%llx", (unsigned long long)d->fault_addr);
    if (d && d->nframes) {
        char fr[256];
        frame_text(fr, sizeof fr, d->frames[0], 0);
        put(m, cap, len, " in %s", fr);
    }
    static const char *why[] = {
        [MPOOL__CAUSE_TIMEOUT] = " (task timeout)",
        [MPOOL__CAUSE_OUTSIDE] = " (from outside the pool)",
        [MPOOL__CAUSE_OOM] = " (by the OOM killer)",
        [MPOOL__CAUSE_SERVER] = " (the pool's fork server died)",
    };
    if ((cause & 0xff) < sizeof why / sizeof *why && why[cause & 0xff])
        put(m, cap, len, "%s", why[cause & 0xff]);
}

/* The message and backtrace of failure f (index, code, status, attempts
 * set) with details d (NULL: none): malloc'd; NULL message without memory. */
static void build(const mpool_failure_t *f, const mpool__fail_detail_t *d, unsigned cause,
                  char **msg, char **bt)
{
    char m[1024];
    size_t len = 0;
    put(m, sizeof m, &len, "item %zu: ", f->index);
    if (f->code == MPOOL_ETASK) {
        put(m, sizeof m, &len, "task returned %d", f->status);
        if (d && d->msg[0]) put(m, sizeof m, &len, ": %s", d->msg);
    } else if (f->code == MPOOL_EWORKER) {
        death_text(m, sizeof m, &len, d, f->status, cause);
    } else if (f->code == ECANCELED) {
        put(m, sizeof m, &len, "cancelled (the pool was terminated)");
    } else if (f->code == ENOMEM) {
        put(m, sizeof m, &len, "no memory in the caller's process for its result");
    } else {
        put(m, sizeof m, &len, "%s", mpool_strerror(f->code));
    }
    if (f->attempts > 1) put(m, sizeof m, &len, ", after %u attempts", f->attempts);
    *msg = strdup(m);
    *bt = NULL;
    if (!d || !d->nframes || !*msg) return;
    size_t cap = (size_t)d->nframes * 256, blen = 0;
    char *b = malloc(cap);
    if (!b) return;
    b[0] = 0;
    for (unsigned k = 0; k < d->nframes; k++) {
        char fr[256];
        frame_text(fr, sizeof fr, d->frames[k], k);
        put(b, cap, &blen, "%s%s", k ? "\n" : "", fr);
    }
    *bt = b;
}

/* ---- the records ------------------------------------------------------------ */

/* The strings of item i in r, built on first use (under reg_lock). */
static const fstr_t *strings(reg_t *r, const mpool_failure_t *f, const mpool__fail_detail_t *d,
                             unsigned cause)
{
    size_t lo = 0, hi = r->ns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->s[mid].index < f->index)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < r->ns && r->s[lo].index == f->index) return &r->s[lo];
    if (r->ns == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 8;
        fstr_t *s = realloc(r->s, cap * sizeof *s);
        if (!s) return NULL;
        r->s = s;
        r->cap = cap;
    }
    fstr_t n = {f->index, NULL, NULL};
    build(f, d, cause, &n.msg, &n.bt);
    if (!n.msg) return NULL;
    memmove(&r->s[lo + 1], &r->s[lo], (r->ns - lo) * sizeof *r->s);
    r->s[lo] = n;
    r->ns++;
    return &r->s[lo];
}

/* Fills f for failed item i (code and status known). */
static void fill(mpool_async_t *a, size_t i, int code, int status, mpool_failure_t *f)
{
    mpool__job_t *j = a->job;
    *f = (mpool_failure_t){.index = i, .code = code, .status = status};
    f->message = "item failed (no memory for its message)";
    pthread_mutex_lock(&reg_lock);
    reg_t *r = reg_get(j, true);
    unsigned reruns = 0, cause = 0;
    const mpool__fail_detail_t *d = NULL;
    const hv_t *h = r && r->harvested ? hv_of(r, i) : NULL;
    if (h) {
        f->status = h->status;
        reruns = h->reruns, cause = h->cause, d = h->d;
    } else if (j->items) {
        reruns = j->items[i].reruns, cause = j->items[i].cause;
    }
    if (!h && r) d = detail_of(r->head, i);
    if (code != MPOOL_EWORKER) cause = 0;
    f->attempts = code == ENOMEM ? 1 : reruns + (code != ECANCELED);
    if (d && d->has_addr) f->fault_addr = (uintptr_t)d->fault_addr;
    const fstr_t *s = r ? strings(r, f, d, cause) : NULL;
    if (s) {
        f->message = s->msg;
        f->backtrace = s->bt;
    }
    pthread_mutex_unlock(&reg_lock);
}

/* Next failed item at or after i, SIZE_MAX none (local: the bytes call's
 * own failure, SIZE_MAX none): skips words without a failure at once. */
static size_t next_failed(const mpool_async_t *a, size_t i, size_t local)
{
    const mpool__job_t *j = a->job;
    while (i < j->n) {
        if (i == local) return i;
        uint32_t w = __atomic_load_n(&j->codes[i / 16], __ATOMIC_ACQUIRE);
        if (i % 16 == 0 && !w && (local < i || local >= i + 16)) {
            i += 16;
            continue;
        }
        if ((w >> 2 * (i % 16)) & 3) return i;
        i++;
    }
    return SIZE_MAX;
}

size_t mpool_async_failures(mpool_async_t *a, mpool_failure_t *f, size_t cap)
{
    if (!a || (cap && !f) || a->source || !a->job) return 0;
    if (!mpool__pool_enter(a->pool)) return 0;
    mpool__async_check(a);
    size_t local = a->bytes ? mpool__bytes_first_local_failure(a) : SIZE_MAX, total = 0;
    for (size_t i = next_failed(a, 0, local); i != SIZE_MAX; i = next_failed(a, i + 1, local)) {
        int status, code = mpool__async_item_code(a, i, &status);
        if (!code) continue;
        if (total < cap) fill(a, i, code, status, &f[total]);
        total++;
    }
    mpool__pool_leave(a->pool);
    return total;
}

int mpool__failure_fill(mpool_async_t *a, size_t i, mpool_failure_t *f)
{
    int status, code = mpool__async_item_code(a, i, &status);
    if (!code) return ENODATA;
    fill(a, i, code, status, f);
    return 0;
}

int mpool_iter_failure(mpool_iter_t *it, mpool_failure_t *f)
{
    if (!it || !f || it->a.source) return EINVAL;
    if (!mpool__pool_enter(it->a.pool)) return ECANCELED;
    int err = ENODATA;
    if (it->last_code) {
        fill(&it->a, it->last, it->last_code, it->last_status, f);
        err = 0;
    }
    mpool__pool_leave(it->a.pool);
    return err;
}

/* Appends n bytes of src at buf + *len as far as cap allows (one byte kept
 * for the NUL); *len counts them all, like snprintf's return. */
static void append(char *buf, size_t cap, size_t *len, const char *src, size_t n)
{
    if (*len + 1 < cap) {
        size_t room = cap - 1 - *len;
        memcpy(buf + *len, src, n < room ? n : room);
    }
    *len += n;
}

size_t mpool_failure_format(const mpool_failure_t *f, char *buf, size_t cap)
{
    char dummy;
    if (!buf || !cap) buf = &dummy, cap = 1;
    size_t len = 0;
    if (f) {
        const char *m = f->message ? f->message : "item failed";
        append(buf, cap, &len, m, strlen(m));
        append(buf, cap, &len, "\n", 1);
        for (const char *l = f->backtrace; l && *l;) {
            size_t n = strcspn(l, "\n");
            append(buf, cap, &len, "  ", 2);
            append(buf, cap, &len, l, n);
            append(buf, cap, &len, "\n", 1);
            l += n + (l[n] == '\n');
        }
    }
    buf[len < cap ? len : cap - 1] = 0;
    return len;
}
