/*
 * activations.c - see activations.h for the contract.
 *
 * Lock order: pool->lock before cq->lock.  Workers hold no lock while they
 * run a request.
 */
#define _FILE_OFFSET_BITS 64

#include "activations.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct lwp_cq {
    pthread_mutex_t lock;
    lwp_req *head, *tail;           /* finished, not yet drained */
    int inflight;                   /* submitted, not yet finished */
    int ready;                      /* finished, not yet drained; written under
                                     * lock, read atomically without it */
    int notify_fd;
};

struct lwp_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;            /* signalled on new work and on shutdown */
    lwp_req *head, *tail;           /* FIFO of requests no worker took yet */
    int queued;                     /* length of that FIFO */
    int idle;                       /* workers waiting on cond (signalled or not) */
    int closing;
    pthread_mutex_t join_lock;      /* serialises the joins in shutdown */
    int joined;
    int nthreads;
    pthread_t threads[];
};

/* Calls that fail only on a corrupted or misused object: stop right there
 * rather than carry on with broken locking. */
static void check(int rc)
{
    if (rc != 0)
        abort();
}

#define RETRY_EINTR(res, call) \
    do { (res) = (call); } while ((res) < 0 && errno == EINTR)

static void notify(int fd)
{
    uint64_t one = 1;
    ssize_t n;

    /* EAGAIN means the eventfd counter is saturated, so it is readable
     * anyway; there is nobody to report any other error to. */
    RETRY_EINTR(n, write(fd, &one, sizeof one));
}

static void push(lwp_cq *cq, lwp_req *req)
{
    check(pthread_mutex_lock(&cq->lock));
    req->next = NULL;
    if (cq->tail) {
        cq->tail->next = req;
    } else {
        cq->head = req;
        /* Under the lock, so that once lwp_cq_free() has seen inflight == 0
         * no worker can still be about to write to notify_fd. */
        notify(cq->notify_fd);
    }
    cq->tail = req;
    cq->inflight--;
    __atomic_store_n(&cq->ready, cq->ready + 1, __ATOMIC_RELEASE);
    check(pthread_mutex_unlock(&cq->lock));
}

static int is_name_op(const lwp_req *req)
{
    return req->op == LWP_OP_GETADDRINFO || req->op == LWP_OP_GETNAMEINFO;
}

static void fill_stat(lwp_stat *out, const struct stat *st)
{
    out->dev = st->st_dev;
    out->ino = st->st_ino;
    out->nlink = st->st_nlink;
    out->rdev = st->st_rdev;
    out->mode = st->st_mode;
    out->uid = st->st_uid;
    out->gid = st->st_gid;
    out->size = st->st_size;
    out->blksize = st->st_blksize;
    out->blocks = st->st_blocks;
    out->atime_ns = (int64_t)st->st_atim.tv_sec * 1000000000 + st->st_atim.tv_nsec;
    out->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    out->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

static void run(lwp_req *req)
{
    int64_t res;
    struct stat st;
    struct addrinfo hints = {0};
    struct timespec ts;

    errno = 0;
    switch (req->op) {
    case LWP_OP_OPEN:
        RETRY_EINTR(res, open(req->path, req->flags, (mode_t)req->mode));
        break;
    case LWP_OP_CLOSE:
        /* Never retried: on Linux the descriptor is gone even after EINTR,
         * and a retry could close a newly opened file that reused it. */
        res = close(req->fd);
        break;
    case LWP_OP_PREAD:
        RETRY_EINTR(res, pread(req->fd, req->buf, req->len, (off_t)req->offset));
        break;
    case LWP_OP_PWRITE:
        RETRY_EINTR(res, pwrite(req->fd, req->buf, req->len, (off_t)req->offset));
        break;
    case LWP_OP_FSYNC:
        RETRY_EINTR(res, fsync(req->fd));
        break;
    case LWP_OP_FSTAT:
        RETRY_EINTR(res, fstat(req->fd, &st));
        if (res == 0)
            fill_stat(&req->st, &st);
        break;
    case LWP_OP_GETADDRINFO:
        hints.ai_flags = req->flags;
        hints.ai_family = req->family;
        hints.ai_socktype = req->socktype;
        hints.ai_protocol = req->protocol;
        res = getaddrinfo(req->host, req->service, &hints, &req->ai);
        break;
    case LWP_OP_GETNAMEINFO:
        res = getnameinfo(req->addr, req->addrlen,
                          req->hostbuf, (socklen_t)req->hostbuflen,
                          req->servbuf, (socklen_t)req->servbuflen, req->flags);
        break;
    case LWP_OP_USLEEP:
        ts.tv_sec = (time_t)(req->usec / 1000000);
        ts.tv_nsec = (long)(req->usec % 1000000) * 1000;
        RETRY_EINTR(res, nanosleep(&ts, &ts));
        break;
    default:
        res = -1;
        errno = ENOSYS;
    }
    req->result = res;
    if (is_name_op(req))
        req->error = res == EAI_SYSTEM ? errno : 0;
    else
        req->error = res < 0 ? errno : 0;
}

static void *worker(void *arg)
{
    lwp_pool *pool = arg;
    lwp_req *req;

    for (;;) {
        check(pthread_mutex_lock(&pool->lock));
        while (!pool->head && !pool->closing) {
            pool->idle++;
            check(pthread_cond_wait(&pool->cond, &pool->lock));
            pool->idle--;
        }
        req = pool->head;
        if (req) {
            pool->head = req->next;
            if (!pool->head)
                pool->tail = NULL;
            pool->queued--;
        }
        check(pthread_mutex_unlock(&pool->lock));
        /* shutdown empties the FIFO, so no request means we are closing */
        if (!req)
            return NULL;
        run(req);
        push(req->cq, req);
    }
}

/* Tell the workers to exit and join the first n of them. */
static void stop_workers(lwp_pool *pool, int n)
{
    int i;

    check(pthread_mutex_lock(&pool->lock));
    pool->closing = 1;
    check(pthread_cond_broadcast(&pool->cond));
    check(pthread_mutex_unlock(&pool->lock));
    for (i = 0; i < n; i++)
        check(pthread_join(pool->threads[i], NULL));
}

lwp_pool *lwp_pool_new(int nthreads)
{
    lwp_pool *pool;
    sigset_t all, old;
    int i, rc;

    if (nthreads < 1) {
        errno = EINVAL;
        return NULL;
    }
    pool = calloc(1, sizeof *pool + (size_t)nthreads * sizeof(pthread_t));
    if (!pool)
        return NULL;
    pool->nthreads = nthreads;
    if ((rc = pthread_mutex_init(&pool->lock, NULL)) != 0)
        goto fail_lock;
    if ((rc = pthread_mutex_init(&pool->join_lock, NULL)) != 0)
        goto fail_join_lock;
    if ((rc = pthread_cond_init(&pool->cond, NULL)) != 0)
        goto fail_cond;

    /* Workers inherit a mask blocking every signal, so signals go to the
     * interpreter's threads and never interrupt a worker's call. */
    sigfillset(&all);
    check(pthread_sigmask(SIG_SETMASK, &all, &old));
    for (i = 0; i < nthreads; i++) {
        if ((rc = pthread_create(&pool->threads[i], NULL, worker, pool)) != 0)
            break;
    }
    check(pthread_sigmask(SIG_SETMASK, &old, NULL));
    if (i == nthreads)
        return pool;

    stop_workers(pool, i);
    pthread_cond_destroy(&pool->cond);
fail_cond:
    pthread_mutex_destroy(&pool->join_lock);
fail_join_lock:
    pthread_mutex_destroy(&pool->lock);
fail_lock:
    free(pool);
    errno = rc;
    return NULL;
}

int lwp_pool_size(lwp_pool *pool)
{
    return pool->nthreads;
}

void lwp_pool_shutdown(lwp_pool *pool)
{
    lwp_req *req, *next;

    check(pthread_mutex_lock(&pool->lock));
    pool->closing = 1;
    req = pool->head;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    check(pthread_cond_broadcast(&pool->cond));
    check(pthread_mutex_unlock(&pool->lock));

    for (; req; req = next) {
        next = req->next;
        req->result = is_name_op(req) ? EAI_SYSTEM : -1;
        req->error = ECANCELED;
        push(req->cq, req);
    }

    check(pthread_mutex_lock(&pool->join_lock));
    if (!pool->joined) {
        stop_workers(pool, pool->nthreads);
        pool->joined = 1;
    }
    check(pthread_mutex_unlock(&pool->join_lock));
}

void lwp_pool_free(lwp_pool *pool)
{
    if (!pool)
        return;
    lwp_pool_shutdown(pool);
    pthread_cond_destroy(&pool->cond);
    pthread_mutex_destroy(&pool->join_lock);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}

int lwp_submit(lwp_pool *pool, lwp_cq *cq, lwp_req *req)
{
    int wake;

    check(pthread_mutex_lock(&pool->lock));
    if (pool->closing) {
        check(pthread_mutex_unlock(&pool->lock));
        errno = ESHUTDOWN;
        return -1;
    }
    req->cq = cq;
    req->next = NULL;
    req->result = 0;
    req->error = 0;
    req->ai = NULL;
    check(pthread_mutex_lock(&cq->lock));
    cq->inflight++;
    check(pthread_mutex_unlock(&cq->lock));
    if (pool->tail)
        pool->tail->next = req;
    else
        pool->head = req;
    pool->tail = req;
    pool->queued++;
    /* Each queued request has had its own signal while idle workers were
     * left to take it; beyond that, a busy worker takes it when done.  The
     * signal goes out after unlocking, so that the woken worker does not
     * run only to block on the lock the submitter still holds. */
    wake = pool->idle >= pool->queued;
    check(pthread_mutex_unlock(&pool->lock));
    if (wake)
        check(pthread_cond_signal(&pool->cond));
    return 0;
}

void lwp_req_release(lwp_req *req)
{
    if (req->ai) {
        freeaddrinfo(req->ai);
        req->ai = NULL;
    }
}

lwp_cq *lwp_cq_new(int notify_fd)
{
    lwp_cq *cq = calloc(1, sizeof *cq);
    int rc;

    if (!cq)
        return NULL;
    if ((rc = pthread_mutex_init(&cq->lock, NULL)) != 0) {
        free(cq);
        errno = rc;
        return NULL;
    }
    cq->notify_fd = notify_fd;
    return cq;
}

int lwp_cq_drain(lwp_cq *cq, lwp_req **out, int max)
{
    int n = 0;

    check(pthread_mutex_lock(&cq->lock));
    while (n < max && cq->head) {
        out[n++] = cq->head;
        cq->head = cq->head->next;
    }
    if (!cq->head)
        cq->tail = NULL;
    __atomic_store_n(&cq->ready, cq->ready - n, __ATOMIC_RELAXED);
    check(pthread_mutex_unlock(&cq->lock));
    return n;
}

int lwp_cq_ready(lwp_cq *cq)
{
    return __atomic_load_n(&cq->ready, __ATOMIC_ACQUIRE);
}

int lwp_cq_inflight(lwp_cq *cq)
{
    int n;

    check(pthread_mutex_lock(&cq->lock));
    n = cq->inflight;
    check(pthread_mutex_unlock(&cq->lock));
    return n;
}

int lwp_cq_free(lwp_cq *cq)
{
    int busy;

    if (!cq)
        return 0;
    check(pthread_mutex_lock(&cq->lock));
    busy = cq->inflight > 0 || cq->head != NULL;
    check(pthread_mutex_unlock(&cq->lock));
    if (busy) {
        errno = EBUSY;
        return -1;
    }
    pthread_mutex_destroy(&cq->lock);
    free(cq);
    return 0;
}
