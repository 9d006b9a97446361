/*
 * eig_sub: receiving the eigen service's published decisions (see eig_sub.h).
 */
#include "eig_sub.h"

#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"

#define S_NAME "eig_sub"

struct eig_sub {
    void *ctx;                  /* ZeroMQ context */
    int own_ctx;                /* created here */
    void *sock;                 /* SUB socket */
    struct rt_sock_parts parts; /* received frames */
};

int eig_sub_new(void *zmq_ctx, const char *pub_endpoint, eig_sub_t **out)
{
    *out = NULL;
    if (!pub_endpoint)
        return rt_err_set(RT_ERR_ARG, "eig_sub: no PUB endpoint");
    eig_sub_t *s = calloc(1, sizeof *s);
    if (!s)
        return rt_err_set(RT_ERR_NOMEM, "eig_sub");
    rt_sock_parts_init(&s->parts);
    s->ctx = zmq_ctx;
    if (!s->ctx) {
        s->ctx = rt_sock_ctx_new(1);
        if (!s->ctx) {
            free(s);
            return RT_ERR_ZMQ;
        }
        s->own_ctx = 1;
    }
    s->sock = zmq_socket(s->ctx, ZMQ_SUB);
    if (!s->sock || zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, "", 0)) {
        int rc = rt_err_set(RT_ERR_ZMQ, "eig_sub: subscribe to %s: %s", pub_endpoint,
                            zmq_strerror(zmq_errno()));
        eig_sub_destroy(&s);
        return rc;
    }
    int rc = rt_sock_connect(s->sock, pub_endpoint);
    if (rc) {
        eig_sub_destroy(&s);
        return rc;
    }
    *out = s;
    return RT_OK;
}

void eig_sub_destroy(eig_sub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    eig_sub_t *s = *self_p;
    rt_sock_parts_close(&s->parts);
    rt_sock_close(&s->sock, 0);
    if (s->own_ctx)
        rt_sock_ctx_destroy(&s->ctx);
    free(s);
    *self_p = NULL;
}

/* Decode the header in parts (from `first` on) as a PUBLISH or ERROR message. */
static int s_decode(struct rt_sock_parts *p, int first, struct rt_wire_msg *m)
{
    const void *f[RT_SOCK_MAX_PARTS];
    size_t sz[RT_SOCK_MAX_PARTS];
    int n = 0;
    for (int i = first; i < p->n; i++, n++) {
        f[n] = rt_sock_part_data(p, i);
        sz[n] = rt_sock_part_size(p, i);
    }
    struct rt_wire_limits lim = {0, 0, 0};
    if (p->total != p->n || n < 1)
        return rt_err_set(RT_ERR_FORMAT, "eig_sub: %d frames", p->total);
    return rt_wire_decode(f, sz, n, &lim, m, NULL, NULL);
}

int eig_sub_in_force(const struct rt_wire_decision *d)
{
    return d->verdict == RT_WIRE_VERDICT_ACCEPTED && d->apply_step > 0 && d->sched_version > 0;
}

int eig_sub_recv(eig_sub_t *s, struct rt_wire_decision *d, int timeout_ms)
{
    for (;;) {
        zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, timeout_ms);
        if (n < 0)
            return rt_err_set(RT_ERR_ZMQ, "eig_sub: poll: %s", zmq_strerror(zmq_errno()));
        if (n == 0)
            return rt_err_set(RT_ERR_TIMEOUT, "eig_sub: no decision in %d ms", timeout_ms);
        int rc = rt_sock_recv(s->sock, &s->parts, ZMQ_DONTWAIT);
        if (rc == RT_ERR_TIMEOUT)
            continue;
        if (rc)
            return rc;
        struct rt_wire_msg m;
        rc = s_decode(&s->parts, 0, &m);
        rt_sock_parts_release(&s->parts);
        if (rc || m.type != RT_WIRE_PUBLISH) {
            RT_WARN(S_NAME, "dropped a message on the decision channel: %s",
                    rc ? rt_err_msg() : rt_wire_type_name(m.type));
            continue;
        }
        if (!eig_sub_in_force(&m.decision)) {
            RT_WARN(S_NAME,
                    "ignored decision %llu (epoch %d): not accepted by the coordinator "
                    "(verdict %d)",
                    (unsigned long long)m.decision.seq, (int)m.decision.epoch,
                    (int)m.decision.verdict);
            continue;
        }
        *d = m.decision;
        return RT_OK;
    }
}

int eig_sub_current(void *zmq_ctx, const char *query_endpoint, struct rt_wire_decision *d,
                    int timeout_ms)
{
    void *ctx = zmq_ctx, *sock = NULL;
    int rc;
    struct rt_sock_parts parts;
    rt_sock_parts_init(&parts);
    if (!ctx && !(ctx = rt_sock_ctx_new(1)))
        return RT_ERR_ZMQ;
    rc = rt_sock_dealer(ctx, query_endpoint, &sock);
    if (rc)
        goto out;
    struct rt_wire_msg q, m;
    rt_wire_msg_init(&q, RT_WIRE_CURRENT, -1, S_NAME);
    rc = rt_sock_send(sock, NULL, 0, &q, NULL, NULL, NULL);
    if (rc)
        goto out;
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    int n = zmq_poll(&it, 1, timeout_ms);
    if (n <= 0) {
        rc = rt_err_set(n < 0 ? RT_ERR_ZMQ : RT_ERR_TIMEOUT, "eig_sub: no answer from %s in %d ms",
                        query_endpoint, timeout_ms);
        goto out;
    }
    rc = rt_sock_recv(sock, &parts, ZMQ_DONTWAIT);
    if (rc)
        goto out;
    rc = s_decode(&parts, 0, &m);
    if (rc)
        goto out;
    if (m.type == RT_WIRE_ERROR) {
        rc = rt_err_set(m.err_code < 0 ? m.err_code : RT_ERR_PEER, "eig_sub: %s: %s",
                        query_endpoint, m.text);
        goto out;
    }
    if (m.type != RT_WIRE_PUBLISH) {
        rc = rt_err_set(RT_ERR_PEER, "eig_sub: %s answered with a %s message", query_endpoint,
                        rt_wire_type_name(m.type));
        goto out;
    }
    if (!eig_sub_in_force(&m.decision)) {
        rc = rt_err_set(RT_ERR_STATE,
                        "eig_sub: %s: its current decision is not in force "
                        "(verdict %d)",
                        query_endpoint, (int)m.decision.verdict);
        goto out;
    }
    *d = m.decision;
out:
    rt_sock_parts_close(&parts);
    rt_sock_close(&sock, 0);
    if (!zmq_ctx)
        rt_sock_ctx_destroy(&ctx);
    return rc;
}
