/*
 * rt_sock: ZeroMQ socket helpers (see rt_sock.h).
 */
#include "rt_sock.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#include "rt_err.h"

#define S_HWM 100000                /* messages queued per peer before ZeroMQ blocks or drops */
#define S_BUF_BYTES (4 << 20)       /* kernel socket buffers for tcp/ipc */
#define S_MMAP_THRESHOLD (32 << 20) /* glibc's largest: frames below it come from the heap */
#define S_TRIM_THRESHOLD (1L << 30) /* keep freed frame memory for the next frames */

#define S_ZMQ_CHECK(expr, what)                                                                    \
    do {                                                                                           \
        if ((expr) != 0)                                                                           \
            return rt_err_set(RT_ERR_ZMQ, "%s: %s: %s", what, #expr, zmq_strerror(zmq_errno()));   \
    } while (0)

void rt_sock_tune_malloc(void)
{
    if (getenv("EB_NO_MALLOC_TUNING"))
        return;
    mallopt(M_MMAP_THRESHOLD, S_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, S_TRIM_THRESHOLD);
}

void *rt_sock_ctx_new(int io_threads)
{
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        rt_err_set(RT_ERR_ZMQ, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    if (zmq_ctx_set(ctx, ZMQ_IO_THREADS, io_threads < 1 ? 1 : io_threads) != 0) {
        rt_err_set(RT_ERR_ZMQ, "ZMQ_IO_THREADS=%d: %s", io_threads, zmq_strerror(zmq_errno()));
        zmq_ctx_term(ctx);
        return NULL;
    }
    return ctx;
}

void rt_sock_ctx_destroy(void **ctx_p)
{
    if (!ctx_p || !*ctx_p)
        return;
    while (zmq_ctx_term(*ctx_p) != 0 && zmq_errno() == EINTR)
        ;
    *ctx_p = NULL;
}

/* Options shared by every socket. */
static int s_common(void *s, const char *ep)
{
    int hwm = S_HWM, buf = S_BUF_BYTES, linger = 0;
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_SNDBUF, &buf, sizeof buf), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_RCVBUF, &buf, sizeof buf), ep);
    S_ZMQ_CHECK(zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger), ep);
    return RT_OK;
}

int rt_sock_router(void *ctx, const char *endpoint, long max_frame_bytes, void **out)
{
    *out = NULL;
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    if (!s)
        return rt_err_set(RT_ERR_ZMQ, "ROUTER socket for %s: %s", endpoint,
                          zmq_strerror(zmq_errno()));
    int rc = s_common(s, endpoint);
    if (rc)
        goto out_close;
    if (max_frame_bytes > 0) {
        int64_t mx = max_frame_bytes;
        if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &mx, sizeof mx) != 0) {
            rc = rt_err_set(RT_ERR_ZMQ, "%s: ZMQ_MAXMSGSIZE: %s", endpoint,
                            zmq_strerror(zmq_errno()));
            goto out_close;
        }
    }
    if (zmq_bind(s, endpoint) != 0) {
        rc = rt_err_set(RT_ERR_ZMQ, "bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto out_close;
    }
    *out = s;
    return RT_OK;
out_close:
    zmq_close(s);
    return rc;
}

int rt_sock_dealer(void *ctx, const char *endpoint, void **out)
{
    *out = NULL;
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s)
        return rt_err_set(RT_ERR_ZMQ, "DEALER socket for %s: %s", endpoint,
                          zmq_strerror(zmq_errno()));
    int rc = s_common(s, endpoint);
    if (rc)
        goto out_close;
    if (zmq_connect(s, endpoint) != 0) {
        rc = rt_err_set(RT_ERR_ZMQ, "connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
        goto out_close;
    }
    *out = s;
    return RT_OK;
out_close:
    zmq_close(s);
    return rc;
}

void rt_sock_close(void **sock_p, int linger_ms)
{
    if (!sock_p || !*sock_p)
        return;
    zmq_setsockopt(*sock_p, ZMQ_LINGER, &linger_ms, sizeof linger_ms);
    zmq_close(*sock_p);
    *sock_p = NULL;
}

int rt_sock_endpoint(char *buf, size_t cap, const char *transport, const char *where, int port,
                     int index)
{
    int n;
    if (!transport || !where)
        return rt_err_set(RT_ERR_ARG, "endpoint: transport and address are required");
    if (!strcmp(transport, "inproc"))
        n = snprintf(buf, cap, "inproc://%s-%d", where, index);
    else if (!strcmp(transport, "ipc"))
        n = snprintf(buf, cap, "ipc://%s/shard-%d.sock", where, index);
    else if (!strcmp(transport, "tcp")) {
        if (port <= 0 || port + index > 65535)
            return rt_err_set(RT_ERR_ARG, "tcp endpoint: port %d+%d out of range", port, index);
        n = snprintf(buf, cap, "tcp://%s:%d", where, port + index);
    } else
        return rt_err_set(RT_ERR_ARG, "unknown transport '%s' (inproc, ipc or tcp)", transport);
    if (n < 0 || (size_t)n >= cap)
        return rt_err_set(RT_ERR_ARG, "endpoint for '%s' too long", where);
    return RT_OK;
}

void rt_sock_parts_init(struct rt_sock_parts *p)
{
    for (int i = 0; i < RT_SOCK_MAX_PARTS; i++)
        zmq_msg_init(&p->msg[i]);
    p->n = 0;
    p->total = 0;
}

void rt_sock_parts_close(struct rt_sock_parts *p)
{
    for (int i = 0; i < RT_SOCK_MAX_PARTS; i++)
        zmq_msg_close(&p->msg[i]);
    p->n = 0;
    p->total = 0;
}

void rt_sock_parts_release(struct rt_sock_parts *p)
{
    for (int i = 0; i < p->n; i++) {
        zmq_msg_close(&p->msg[i]);
        zmq_msg_init(&p->msg[i]);
    }
    p->n = 0;
    p->total = 0;
}

int rt_sock_recv(void *sock, struct rt_sock_parts *p, int flags)
{
    rt_sock_parts_release(p);
    for (;;) {
        zmq_msg_t *m;
        zmq_msg_t spill;
        int spilled = p->n >= RT_SOCK_MAX_PARTS;
        if (spilled) {
            zmq_msg_init(&spill);
            m = &spill;
        } else {
            m = &p->msg[p->n];
        }
        int rc = zmq_msg_recv(m, sock, p->total == 0 ? flags : 0);
        if (rc < 0) {
            int e = zmq_errno();
            if (spilled)
                zmq_msg_close(&spill);
            if (e == EAGAIN)
                return RT_ERR_TIMEOUT;
            if (e == ETERM || e == EINTR)
                return rt_err_set(RT_ERR_INTERRUPTED, "recv: %s", zmq_strerror(e));
            return rt_err_set(RT_ERR_ZMQ, "recv: %s", zmq_strerror(e));
        }
        p->total++;
        int more = zmq_msg_more(m);
        if (spilled)
            zmq_msg_close(&spill);
        else
            p->n++;
        if (!more)
            return RT_OK;
    }
}

/* ZeroMQ releases a zero-copy frame. */
static void s_zc_free(void *data, void *hint)
{
    (void)data;
    struct rt_sock_zc *zc = hint;
    atomic_fetch_sub(&zc->in_flight, 1);
}

static int s_send_bytes(void *sock, const void *data, size_t n, int more, struct rt_sock_zc *zc)
{
    zmq_msg_t msg;
    int flags = more ? ZMQ_SNDMORE : 0;
    if (zc && n >= RT_SOCK_ZC_MIN_BYTES) {
        atomic_fetch_add(&zc->in_flight, 1);
        if (zmq_msg_init_data(&msg, (void *)data, n, s_zc_free, zc) != 0) {
            atomic_fetch_sub(&zc->in_flight, 1);
            return rt_err_set(RT_ERR_ZMQ, "zmq_msg_init_data: %s", zmq_strerror(zmq_errno()));
        }
    } else {
        if (zmq_msg_init_size(&msg, n) != 0)
            return rt_err_set(RT_ERR_NOMEM, "zmq_msg_init_size(%zu)", n);
        if (n)
            memcpy(zmq_msg_data(&msg), data, n);
    }
    for (;;) {
        if (zmq_msg_send(&msg, sock, flags) >= 0)
            return RT_OK;
        if (zmq_errno() != EINTR)
            break;
    }
    int e = zmq_errno();
    zmq_msg_close(&msg); /* releases a zero-copy frame through s_zc_free */
    return rt_err_set(RT_ERR_ZMQ, "send: %s", zmq_strerror(e));
}

int rt_sock_send(void *sock, const void *route, size_t route_len, struct rt_wire_msg *m,
                 const float *params, const float *buffers, struct rt_sock_zc *zc)
{
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    size_t hlen = 0;
    if (m->checksum != RT_WIRE_CK_NONE && !m->sealed)
        rt_wire_seal(m, params, buffers);
    int rc = rt_wire_encode(m, hdr, sizeof hdr, &hlen);
    if (rc)
        return rc;
    int has_p = m->has_params && params, has_b = m->has_buffers && buffers;
    if (route) {
        rc = s_send_bytes(sock, route, route_len, 1, NULL);
        if (rc)
            return rc;
    }
    rc = s_send_bytes(sock, hdr, hlen, has_p || has_b, NULL);
    if (rc)
        return rc;
    if (has_p) {
        rc = s_send_bytes(sock, params, (size_t)m->params.count * sizeof(float), has_b, zc);
        if (rc)
            return rc;
    }
    if (has_b)
        rc = s_send_bytes(sock, buffers, (size_t)m->buffers.count * sizeof(float), 0, zc);
    return rc;
}

int rt_sock_zc_wait(struct rt_sock_zc *zc, int timeout_ms)
{
    struct timespec ts = {0, 1000000};
    for (int waited = 0; atomic_load(&zc->in_flight) > 0; waited++) {
        if (waited >= timeout_ms)
            return rt_err_set(RT_ERR_TIMEOUT, "%ld zero-copy frames still queued after %d ms",
                              (long)atomic_load(&zc->in_flight), timeout_ms);
        nanosleep(&ts, NULL);
    }
    return RT_OK;
}
