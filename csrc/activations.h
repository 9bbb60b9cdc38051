/*
 * activations.h - a pool of native threads ("activations") that run blocking
 * calls which cannot be polled (regular-file I/O, name resolution) without
 * any interpreter lock, and post each finished request to the completion
 * queue of the LWP that asked for it.
 *
 * Ownership and lifetime rules:
 *  - A request (lwp_req) and every buffer or string it points to belong to
 *    the submitter, who must keep them alive and untouched from lwp_submit()
 *    until the request has come out of lwp_cq_drain().  After draining, call
 *    lwp_req_release() to free what the worker allocated (the addrinfo list).
 *  - A completion queue (lwp_cq) may be freed only when no request targeting
 *    it is queued, running or undrained; lwp_cq_free() refuses with EBUSY
 *    otherwise.  lwp_pool_shutdown() completes every request, so shutting the
 *    pool down and draining always makes a queue freeable.
 *  - notify_fd must be non-blocking (an eventfd made with EFD_NONBLOCK): a
 *    worker writes to it while holding the queue's lock.
 *
 * Only libc and pthreads are used; the only state is in the pool and queues.
 */
#ifndef LWP_ACTIVATIONS_H
#define LWP_ACTIVATIONS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <netdb.h>

#ifdef __cplusplus
extern "C" {
#endif

/* LWP_CDEF_BEGIN - lwp/_native_build.py hands this part to cffi verbatim. */

typedef struct lwp_pool lwp_pool;
typedef struct lwp_cq lwp_cq;

enum lwp_op {
    LWP_OP_OPEN = 1,
    LWP_OP_CLOSE = 2,
    LWP_OP_PREAD = 3,
    LWP_OP_PWRITE = 4,
    LWP_OP_FSYNC = 5,
    LWP_OP_FSTAT = 6,
    LWP_OP_GETADDRINFO = 7,
    LWP_OP_GETNAMEINFO = 8,
    LWP_OP_USLEEP = 9
};

/* The fields of struct stat that os.stat_result needs, in fixed widths. */
typedef struct lwp_stat {
    uint64_t dev;
    uint64_t ino;
    uint64_t nlink;
    uint64_t rdev;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    int64_t size;
    int64_t blksize;
    int64_t blocks;
    int64_t atime_ns;
    int64_t mtime_ns;
    int64_t ctime_ns;
} lwp_stat;

typedef struct lwp_req {
    /* Inputs, set by the submitter; which ones are read depends on op. */
    int op;
    int fd;                         /* CLOSE PREAD PWRITE FSYNC FSTAT */
    const char *path;               /* OPEN */
    int flags;                      /* OPEN: O_*; GETADDRINFO: AI_*; GETNAMEINFO: NI_* */
    int mode;                       /* OPEN */
    void *buf;                      /* PREAD PWRITE */
    size_t len;
    int64_t offset;
    int64_t usec;                   /* USLEEP */
    const char *host;               /* GETADDRINFO node, may be NULL */
    const char *service;            /* GETADDRINFO, may be NULL */
    int family;                     /* GETADDRINFO hints */
    int socktype;
    int protocol;
    const struct sockaddr *addr;    /* GETNAMEINFO */
    socklen_t addrlen;
    char *hostbuf;                  /* GETNAMEINFO outputs */
    size_t hostbuflen;
    char *servbuf;
    size_t servbuflen;
    uint64_t cookie;                /* opaque to the pool */

    /* Outputs, valid once drained.  For file ops and USLEEP, result is the
     * call's return value and error its errno (0 on success).  For
     * GETADDRINFO/GETNAMEINFO, result is the EAI_* code (0 on success) and
     * error the errno when result is EAI_SYSTEM.  A request cancelled by
     * lwp_pool_shutdown() gets error ECANCELED with result -1, or EAI_SYSTEM
     * for the two name-resolution ops. */
    int64_t result;
    int error;
    struct addrinfo *ai;            /* GETADDRINFO; freed by lwp_req_release */
    lwp_stat st;                    /* FSTAT */

    /* Private to the pool. */
    lwp_cq *cq;
    struct lwp_req *next;
} lwp_req;

/* Start nthreads (>= 1) workers.  NULL with errno set on failure. */
lwp_pool *lwp_pool_new(int nthreads);
int lwp_pool_size(lwp_pool *pool);
/* Refuse new requests (ESHUTDOWN), complete queued ones with ECANCELED, let
 * running ones finish, and join the workers.  Thread-safe and idempotent:
 * every caller returns only once the workers are joined. */
void lwp_pool_shutdown(lwp_pool *pool);
/* Shut down (if not yet) and free.  No call may use the pool afterwards. */
void lwp_pool_free(lwp_pool *pool);

/* Queue req for a worker; its completion goes to cq.  0, or -1 with errno
 * ESHUTDOWN once the pool is shut down (req is then untouched by the pool). */
int lwp_submit(lwp_pool *pool, lwp_cq *cq, lwp_req *req);
/* Free the worker-allocated results of a drained request. */
void lwp_req_release(lwp_req *req);

/* A completion queue that writes uint64 1 to notify_fd whenever it goes from
 * empty to non-empty.  Its owner must read (reset) notify_fd *before*
 * draining, and drain until fewer than max come back, or it can miss a
 * completion.  NULL with errno set on failure. */
lwp_cq *lwp_cq_new(int notify_fd);
/* Pop up to max finished requests into out, oldest first. */
int lwp_cq_drain(lwp_cq *cq, lwp_req **out, int max);
/* Requests submitted for cq that have not been pushed to it yet. */
int lwp_cq_inflight(lwp_cq *cq);
/* Requests pushed to cq and not drained yet.  Takes no lock (one atomic
 * load), so an owner may poll it in a tight loop without slowing the
 * workers; a non-zero answer stays true until the owner drains. */
int lwp_cq_ready(lwp_cq *cq);
/* 0, or -1 with errno EBUSY (and nothing freed) if requests are in flight or
 * undrained. */
int lwp_cq_free(lwp_cq *cq);

/* LWP_CDEF_END */

#ifdef __cplusplus
}
#endif

#endif /* LWP_ACTIVATIONS_H */
