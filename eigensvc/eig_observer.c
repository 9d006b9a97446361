/*
 * eig_observer: snapshots and decisions for the eigen service (see eig_observer.h).
 */
#include "eig_observer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"

#define S_SNAPSHOT_TRIES 5 /* shards that disagree on the snapshot: ask again this often */
#define S_NAME "eigensvc"  /* our name in headers */

struct eig_observer {
    void *ctx;               /* ZeroMQ context */
    int own_ctx;             /* created here */
    int n_shards;            /* shards */
    void **socks;            /* DEALER per shard */
    uint64_t *p_off, *p_cnt; /* each shard's parameter range */
    uint64_t *b_off, *b_cnt; /* and buffer range */
    struct rt_sock_in in;    /* the shards' replies */
    uint64_t round;          /* snapshot round, echoed by the shards: older replies are dropped */
    int registered;          /* the coordinator knows this connection as the eigen service */
};

int eig_observer_new(void *zmq_ctx, int n_shards, const char *const *endpoints, uint64_t n_params,
                     uint64_t n_buffers, eig_observer_t **out)
{
    *out = NULL;
    if (n_shards < 1 || !endpoints || n_params < (uint64_t)n_shards)
        return rt_err_set(RT_ERR_ARG, "observer: %d shards for %llu parameters", n_shards,
                          (unsigned long long)n_params);
    int rc = RT_ERR_NOMEM;
    eig_observer_t *o = calloc(1, sizeof *o);
    if (!o)
        return rt_err_set(rc, "observer");
    o->n_shards = n_shards;
    rt_sock_in_init(&o->in, S_NAME, 0, NULL);
    o->socks = calloc((size_t)n_shards, sizeof *o->socks);
    o->p_off = calloc((size_t)n_shards * 4, sizeof(uint64_t));
    if (!o->socks || !o->p_off) {
        rt_err_set(rc, "observer");
        goto out_destroy;
    }
    o->p_cnt = o->p_off + n_shards;
    o->b_off = o->p_cnt + n_shards;
    o->b_cnt = o->b_off + n_shards;
    for (int i = 0; i < n_shards; i++) {
        rt_wire_partition(n_params, n_shards, i, &o->p_off[i], &o->p_cnt[i]);
        rt_wire_partition(n_buffers, n_shards, i, &o->b_off[i], &o->b_cnt[i]);
    }
    o->in.lim.n_params = n_params;
    o->in.lim.n_buffers = n_buffers;
    o->in.lim.max_floats = n_params > n_buffers ? n_params : n_buffers;
    if (zmq_ctx) {
        o->ctx = zmq_ctx;
    } else {
        o->ctx = rt_sock_ctx_new(1);
        if (!o->ctx) {
            rc = RT_ERR_ZMQ;
            goto out_destroy;
        }
        o->own_ctx = 1;
    }
    for (int i = 0; i < n_shards; i++)
        if ((rc = rt_sock_dealer(o->ctx, endpoints[i], &o->socks[i])))
            goto out_destroy;
    *out = o;
    return RT_OK;
out_destroy:
    eig_observer_destroy(&o);
    return rc;
}

void eig_observer_destroy(eig_observer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    eig_observer_t *o = *self_p;
    for (int i = 0; o->socks && i < o->n_shards; i++)
        rt_sock_close(&o->socks[i], 0);
    rt_sock_in_close(&o->in);
    if (o->own_ctx)
        rt_sock_ctx_destroy(&o->ctx);
    free(o->socks);
    free(o->p_off);
    free(o);
    *self_p = NULL;
}

/* Receive and decode one message from shard i within the deadline (into o->in). */
static int s_recv(eig_observer_t *o, int i, double deadline)
{
    char from[32];
    snprintf(from, sizeof from, "shard %d", i);
    return rt_sock_recv_until(o->socks[i], &o->in, deadline, from);
}

/* One round: every shard's snapshot; *agree = 0 when their versions differ. */
static int s_snapshot_round(eig_observer_t *o, uint64_t have, float *params, float *buffers,
                            uint64_t *version, uint64_t *epoch, int *agree, double deadline)
{
    *agree = 1;
    uint64_t round = ++o->round;
    for (int i = 0; i < o->n_shards; i++) {
        struct rt_wire_msg q;
        rt_wire_msg_init(&q, RT_WIRE_SNAPSHOT, -1, S_NAME);
        q.sched_version = round;
        q.step = have == UINT64_MAX ? 0 : have + 1; /* 0: send it whatever I hold */
        int rc = rt_sock_send(o->socks[i], NULL, 0, &q, NULL, NULL, NULL);
        if (rc)
            return rc;
    }
    for (int i = 0; i < o->n_shards; i++) {
        uint64_t got = 0;
        int got_b = o->b_cnt[i] == 0, first = 1;
        while (got < o->p_cnt[i] || !got_b) {
            int rc = s_recv(o, i, deadline);
            if (rc)
                return rc;
            const struct rt_wire_msg *m = &o->in.m;
            const void *pp = o->in.params, *bp = o->in.buffers;
            if (m->sched_version != round)
                continue; /* an answer to an earlier round that gave up */
            if (m->type == RT_WIRE_ERROR)
                return rt_err_set(m->err_code ? m->err_code : RT_ERR_PEER, "shard %d: %s", i,
                                  m->text);
            /* WEIGHTS chunks, or SNAPSHOT: "unchanged since the version you hold" */
            int unchanged = m->type == RT_WIRE_SNAPSHOT && have != UINT64_MAX && m->step == have;
            if (m->type != RT_WIRE_WEIGHTS && !unchanged)
                continue;
            if (unchanged && !first)
                continue; /* a late answer to an earlier round: this round's chunks are coming */
            if (first && i == 0) {
                *version = m->step;
                *epoch = m->epoch;
            } else if (m->step != *version) {
                *agree = 0;
            }
            first = 0;
            if (unchanged) {
                got = o->p_cnt[i]; /* the caller holds this range already */
                got_b = 1;
                continue;
            }
            if (m->has_params) {
                if (m->params.offset != o->p_off[i] + got || m->params.count > o->p_cnt[i] - got)
                    return rt_err_set(RT_ERR_PEER, "shard %d: snapshot frame out of its range", i);
                memcpy(params + m->params.offset, pp, m->params.count * sizeof(float));
                got += m->params.count;
            }
            if (m->has_buffers) {
                if (m->buffers.offset != o->b_off[i] || m->buffers.count != o->b_cnt[i])
                    return rt_err_set(RT_ERR_PEER, "shard %d: snapshot buffers out of range", i);
                memcpy(buffers + m->buffers.offset, bp, m->buffers.count * sizeof(float));
                got_b = 1;
            }
        }
    }
    return RT_OK;
}

int eig_observer_snapshot(eig_observer_t *o, float *params, float *buffers, uint64_t *version,
                          uint64_t *epoch, int timeout_ms)
{
    return eig_observer_snapshot_since(o, UINT64_MAX, params, buffers, version, epoch, timeout_ms);
}

int eig_observer_snapshot_since(eig_observer_t *o, uint64_t have, float *params, float *buffers,
                                uint64_t *version, uint64_t *epoch, int timeout_ms)
{
    double deadline = rt_clock_now() + timeout_ms / 1000.0;
    for (int t = 0; t < S_SNAPSHOT_TRIES; t++) {
        int agree;
        int rc = s_snapshot_round(o, have, params, buffers, version, epoch, &agree, deadline);
        if (rc || agree)
            return rc;
    }
    return rt_err_set(RT_ERR_STATE, "shards kept disagreeing on the snapshot version");
}

int eig_observer_decide(eig_observer_t *o, const struct rt_wire_decision *d, uint64_t *apply_step,
                        uint64_t *version, int timeout_ms)
{
    return eig_observer_decide_held(o, d, apply_step, version, NULL, NULL, timeout_ms);
}

/* Is the coordinator's reply the answer to a registration (WELCOME, or an ERROR)? */
static int s_answers_register(const struct rt_wire_msg *r, void *arg)
{
    (void)arg;
    return r->type == RT_WIRE_WELCOME || r->type == RT_WIRE_ERROR;
}

/* Register this connection as the eigen service with the coordinator, once (again after `force`:
 * a restarted coordinator forgot it): only its decisions and ABS queries count. */
static int s_register(eig_observer_t *o, int force, int timeout_ms)
{
    if (o->registered && !force)
        return RT_OK;
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_REGISTER, -1, S_NAME);
    q.role = RT_WIRE_ROLE_EIGENSVC;
    int rc = rt_sock_request(o->socks[0], &q, &o->in, rt_clock_now() + timeout_ms / 1000.0,
                             s_answers_register, NULL, "the coordinator");
    if (rc)
        return rc;
    if (o->in.m.type == RT_WIRE_ERROR)
        return rt_err_set(RT_ERR_PEER, "coordinator refused the eigen service: %s", o->in.m.text);
    o->registered = 1;
    return RT_OK;
}

/* Does the coordinator's reply answer the decision *arg (its ACK, or an ERROR)? */
static int s_answers_decision(const struct rt_wire_msg *r, void *arg)
{
    const struct rt_wire_decision *d = arg;
    return r->type == RT_WIRE_ERROR || (r->type == RT_WIRE_ACK && r->decision.seq == d->seq);
}

int eig_observer_decide_held(eig_observer_t *o, const struct rt_wire_decision *d,
                             uint64_t *apply_step, uint64_t *version, struct rt_wire_decision *held,
                             int *has_held, int timeout_ms)
{
    if (has_held)
        *has_held = 0;
    int rc = s_register(o, 0, timeout_ms);
    for (int attempt = 0; !rc; attempt++) {
        struct rt_wire_msg q;
        rt_wire_msg_init(&q, RT_WIRE_DECISION, -1, S_NAME);
        q.decision = *d;
        rc = rt_sock_request(o->socks[0], &q, &o->in, rt_clock_now() + timeout_ms / 1000.0,
                             s_answers_decision, (void *)d, "the coordinator");
        if (rc || attempt > 0 || o->in.m.type != RT_WIRE_ERROR || o->in.m.err_code != RT_ERR_PEER)
            break;
        rc = s_register(o, 1, timeout_ms); /* a restarted coordinator: register again, retry */
    }
    if (rc)
        return rc;
    const struct rt_wire_msg *r = &o->in.m;
    if (r->type == RT_WIRE_ERROR)
        return rt_err_set(r->err_code < 0 ? r->err_code : RT_ERR_PEER, "coordinator: %s", r->text);
    *apply_step = r->step;
    *version = r->sched_version;
    if (r->has_held && held && has_held) {
        *held = r->held;
        *has_held = 1;
    }
    return r->err_code;
}

/* Does the coordinator's reply answer the ABS query numbered *arg (an ERROR, or an ACK that
 * holds the state)? */
static int s_answers_abs_query(const struct rt_wire_msg *r, void *arg)
{
    if (r->step != *(const uint64_t *)arg)
        return 0; /* a late answer to an earlier query */
    return r->type == RT_WIRE_ERROR || (r->type == RT_WIRE_ACK && r->has_held && r->held.has_abs);
}

int eig_observer_abs_state(eig_observer_t *o, struct rt_wire_abs *out, int timeout_ms)
{
    int rc = s_register(o, 0, timeout_ms);
    if (rc)
        return rc;
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_ABS_QUERY, -1, S_NAME);
    q.step = ++o->round; /* echoed: a late answer to an earlier query is not this one's */
    rc = rt_sock_request(o->socks[0], &q, &o->in, rt_clock_now() + timeout_ms / 1000.0,
                         s_answers_abs_query, &q.step, "the coordinator");
    if (rc)
        return rc;
    const struct rt_wire_msg *r = &o->in.m;
    if (r->type == RT_WIRE_ERROR)
        return rt_err_set(r->err_code < 0 ? r->err_code : RT_ERR_PEER, "coordinator: %s", r->text);
    *out = r->held.abs;
    return RT_OK;
}
