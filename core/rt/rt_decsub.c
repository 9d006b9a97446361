/*
 * rt_decsub: receiving the eigen service's published decisions (see rt_decsub.h).
 */
#include "rt_decsub.h"

#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"

#define S_NAME "decisions"

struct rt_decsub {
    void *ctx;            /* ZeroMQ context */
    int own_ctx;          /* created here */
    void *sock;           /* SUB socket */
    struct rt_sock_in in; /* the message received */
};

int rt_decsub_new(void *zmq_ctx, const char *pub_endpoint, rt_decsub_t **out)
{
    *out = NULL;
    if (!pub_endpoint)
        return rt_err_set(RT_ERR_ARG, "rt_decsub: no PUB endpoint");
    rt_decsub_t *s = calloc(1, sizeof *s);
    if (!s)
        return rt_err_set(RT_ERR_NOMEM, "rt_decsub");
    rt_sock_in_init(&s->in, S_NAME, 0, NULL); /* decisions carry no payload */
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
        int rc = rt_err_set(RT_ERR_ZMQ, "rt_decsub: subscribe to %s: %s", pub_endpoint,
                            zmq_strerror(zmq_errno()));
        rt_decsub_destroy(&s);
        return rc;
    }
    int rc = rt_sock_connect(s->sock, pub_endpoint);
    if (rc) {
        rt_decsub_destroy(&s);
        return rc;
    }
    *out = s;
    return RT_OK;
}

void rt_decsub_destroy(rt_decsub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_decsub_t *s = *self_p;
    rt_sock_in_close(&s->in);
    rt_sock_close(&s->sock, 0);
    if (s->own_ctx)
        rt_sock_ctx_destroy(&s->ctx);
    free(s);
    *self_p = NULL;
}

int rt_decsub_in_force(const struct rt_wire_decision *d)
{
    return d->verdict == RT_WIRE_VERDICT_ACCEPTED && d->apply_step > 0 && d->sched_version > 0;
}

/* The message in s->in: 1 with *d when it is a decision in force; else logged, 0. */
static int s_take(rt_decsub_t *s, struct rt_wire_decision *d)
{
    const struct rt_wire_msg *m = &s->in.m;
    if (m->type != RT_WIRE_PUBLISH) {
        RT_WARN(S_NAME, "dropped a message on the decision channel: %s",
                rt_wire_type_name(m->type));
        return 0;
    }
    if (!rt_decsub_in_force(&m->decision)) {
        RT_WARN(S_NAME,
                "ignored decision %llu (epoch %d): not accepted by the coordinator "
                "(verdict %d)",
                (unsigned long long)m->decision.seq, (int)m->decision.epoch,
                (int)m->decision.verdict);
        return 0;
    }
    *d = m->decision;
    return 1;
}

int rt_decsub_recv(rt_decsub_t *s, struct rt_wire_decision *d, int timeout_ms)
{
    double deadline = rt_clock_now() + timeout_ms / 1000.0;
    for (;;) {
        int rc = rt_sock_recv_until(s->sock, &s->in, deadline, "the decision channel");
        if (rc == RT_ERR_TIMEOUT)
            return rt_err_set(rc, "rt_decsub: no decision in %d ms", timeout_ms);
        if (rc)
            return rc;
        if (s_take(s, d))
            return RT_OK;
    }
}

int rt_decsub_poll(rt_decsub_t *s, struct rt_wire_decision *d)
{
    for (;;) {
        int rc = rt_sock_recv_msg(s->sock, &s->in, ZMQ_DONTWAIT, "the decision channel");
        if (rc)
            return rc; /* RT_ERR_TIMEOUT: nothing queued */
        if (s_take(s, d))
            return RT_OK;
    }
}

int rt_decsub_current(void *zmq_ctx, const char *query_endpoint, struct rt_wire_decision *d,
                      int timeout_ms)
{
    void *ctx = zmq_ctx, *sock = NULL;
    int rc;
    struct rt_sock_in in;
    rt_sock_in_init(&in, S_NAME, 0, NULL);
    if (!ctx && !(ctx = rt_sock_ctx_new(1))) {
        rc = RT_ERR_ZMQ;
        goto out;
    }
    if ((rc = rt_sock_dealer(ctx, query_endpoint, &sock)))
        goto out;
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_CURRENT, -1, S_NAME);
    rc = rt_sock_request(sock, &q, &in, rt_clock_now() + timeout_ms / 1000.0, NULL, NULL,
                         query_endpoint);
    if (rc == RT_ERR_TIMEOUT)
        rc = rt_err_set(rc, "rt_decsub: no answer from %s in %d ms", query_endpoint, timeout_ms);
    if (rc)
        goto out;
    const struct rt_wire_msg *m = &in.m;
    if (m->type == RT_WIRE_ERROR) {
        rc = rt_err_set(m->err_code < 0 ? m->err_code : RT_ERR_PEER, "rt_decsub: %s: %s",
                        query_endpoint, m->text);
        goto out;
    }
    if (m->type != RT_WIRE_PUBLISH) {
        rc = rt_err_set(RT_ERR_PEER, "rt_decsub: %s answered with a %s message", query_endpoint,
                        rt_wire_type_name(m->type));
        goto out;
    }
    if (!rt_decsub_in_force(&m->decision)) {
        rc = rt_err_set(RT_ERR_STATE,
                        "rt_decsub: %s: its current decision is not in force "
                        "(verdict %d)",
                        query_endpoint, (int)m->decision.verdict);
        goto out;
    }
    *d = m->decision;
out:
    rt_sock_in_close(&in);
    rt_sock_close(&sock, 0);
    if (!zmq_ctx)
        rt_sock_ctx_destroy(&ctx);
    return rc;
}
