/*
 * server_shard_coord: the coordinator as the shards see it (see server_shard_int.h). On shard 0,
 * the handlers of the messages only the coordinator accepts (the dispatch table in server_shard.c
 * marks them): registration, schedule queries, heartbeats, the eigen service's decisions and ABS
 * state queries, each handed to server_coord. On the other shards, the requests to the coordinator
 * for the schedule and the members of a step.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "server_sched.h"
#include "server_shard_int.h"

#define S_SCHED_RETRY_US 5000 /* pause before asking again while workers join */

/* ---- shard 0: the coordinator's message handlers ---------------------------------------- */

/* REGISTER: a worker joins (a repeated REGISTER from the same connection gets the same id; a
 * restarted worker takes the slot of an evicted one); WELCOME with its id, the sizes and the step
 * it starts at. */
void server_shard_on_register(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    /* a repeated REGISTER from the same connection gets the same id */
    int id = -1;
    for (int i = 0; i < s->cfg.n_workers; i++)
        if (server_shard_route_eq(&s->data.workers[i], in->route, in->route_len))
            id = i;
    if (id < 0) {
        id = server_coord_register(s->co.coord, m->name, m->weight);
        if (id < 0) {
            server_shard_drop(s, in, rt_err_msg());
            server_shard_reply_error(s, in, 0, id, rt_err_msg());
            return;
        }
        struct server_shard_worker *w = &s->data.workers[id];
        int rejoin = w->route_len > 0; /* the slot of an evicted worker */
        memcpy(w->route, in->route, in->route_len);
        w->route_len = in->route_len;
        snprintf(w->name, sizeof w->name, "%s", m->name);
        if (rejoin) {
            w->rebound = 1;
            w->bye = 0;
            server_shard_on_rejoin(s, id, in->route, in->route_len);
        }
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_WELCOME, id, s->name);
    r.n_workers = (uint32_t)s->cfg.n_workers;
    r.n_shards = (uint32_t)s->cfg.n_shards;
    r.n_params = s->cfg.n_params;
    r.n_buffers = s->cfg.n_buffers;
    /* the first step of this run (a resumed one starts later), or where a restarted worker
     * rejoins */
    r.step = s->start_step;
    if (server_coord_join_step(s->co.coord, id) > r.step)
        r.step = server_coord_join_step(s->co.coord, id);
    r.heartbeat_ms = (uint32_t)server_coord_heartbeat_ms(s->co.coord);
    server_shard_reply(s, in, &r, "welcome");
}

/* SCHED_QUERY: the schedule of a step, with the asking worker's share of its batch and the
 * members that take part. */
void server_shard_on_sched_query(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    /* a registered worker gets its share too; anyone else (the other shards, a late joiner, the
     * eigen service) gets the schedule alone */
    struct server_coord_point pt;
    uint32_t off = 0, cnt = 0;
    int rc;
    if (server_shard_bound(s, in)) {
        /* a positive weight in a query is the worker's measured throughput: re-balance */
        if (m->weight > 0 && server_coord_set_weight(s->co.coord, m->sender, m->weight))
            RT_WARN(s->name, "worker %d: %s", m->sender, rt_err_msg());
        rc = server_coord_step(s->co.coord, m->sender, m->step, &pt, &off, &cnt);
    } else
        rc = server_coord_sched(s->co.coord, m->step, &pt);
    if (rc) {
        server_shard_reply_error(s, in, m->step, rc, rt_err_msg());
        return;
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_SCHED, s->cfg.shard, s->name);
    r.step = m->step;
    r.sched_version = pt.version;
    r.sched.epoch = pt.epoch;
    r.sched.epoch_offset = pt.epoch_offset;
    r.sched.batch = pt.batch;
    r.sched.samples = pt.samples ? pt.samples : pt.batch;
    r.sched.lr = pt.lr;
    r.sched.gamma = pt.gamma;
    r.sched.share_offset = off;
    r.sched.share_count = cnt;
    r.sched.done = pt.done;
    r.sched.epoch_last = pt.epoch_last;
    r.sched.members_len = server_coord_members(s->co.coord, m->step, r.sched.members,
                                               (uint32_t)sizeof r.sched.members);
    r.sched.lead = server_coord_lead(s->co.coord, m->step);
    server_shard_reply(s, in, &r, "schedule reply");
}

/* HEARTBEAT: answered, so that a worker waiting for a slow step knows the cluster is alive (the
 * dispatch has recorded that the worker is). */
void server_shard_on_heartbeat(server_shard_t *s, const struct rt_sock_in *in)
{
    if (!server_shard_bound(s, in)) {
        server_shard_drop(s, in, "heartbeat from an unregistered peer");
        return;
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_HEARTBEAT, s->cfg.shard, s->name);
    server_shard_reply(s, in, &r, "heartbeat reply");
}

/* DECISION: hand it to the schedule; ACK with the verdict, or ERROR. */
void server_shard_on_decision(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    uint64_t apply = 0, version = 0;
    int v = server_coord_decide(s->co.coord, &m->decision, &apply, &version);
    if (v < 0) {
        server_shard_drop(s, in, rt_err_msg());
        server_shard_reply_error(s, in, m->decision.seq, v, rt_err_msg());
        return;
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_ACK, s->cfg.shard, s->name);
    r.err_code = v;
    r.step = apply;
    r.sched_version = version;
    r.decision = m->decision;
    /* stale or superseded: tell the service what the schedule holds, so that it resumes there */
    if ((v == SERVER_SCHED_STALE || v == SERVER_SCHED_SUPERSEDED) &&
        server_coord_last_decision(s->co.coord, &r.held) == RT_OK)
        r.has_held = 1;
    server_shard_reply(s, in, &r, "decision reply");
}

/* ABS_QUERY: the ABS state held, for an eigen service that starts (a resumed run,
 * or a restarted service); ERROR RT_ERR_STATE when none. */
void server_shard_on_abs_query(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    struct rt_wire_msg r;
    struct rt_wire_abs abs;
    if (server_coord_get_abs(s->co.coord, &abs)) {
        server_shard_reply_error(s, in, m->step, RT_ERR_STATE, "no ABS state held");
        return;
    }
    rt_wire_msg_init(&r, RT_WIRE_ACK, s->cfg.shard, s->name);
    r.step = m->step;
    r.has_held = 1;
    if (server_coord_last_decision(s->co.coord, &r.held) != RT_OK)
        memset(&r.held, 0, sizeof r.held);
    r.held.has_abs = 1;
    r.held.abs = abs;
    server_shard_reply(s, in, &r, "ABS state reply");
}

/* ---- the other shards' requests to the coordinator ------------------------------------- */

/* Does the coordinator's reply answer the query about step *arg (not an earlier question)? */
static int s_answers_step(const struct rt_wire_msg *r, void *arg)
{
    return r->step == *(const uint64_t *)arg;
}

/* Shards > 0: ask the coordinator the schedule of `step` (a blocking request of at most wait_ms;
 * pushes meanwhile wait in the socket's queue) into *pt; the members that come with it are
 * applied. */
int server_shard_sched_ask(server_shard_t *s, uint64_t step, struct server_coord_point *pt,
                           int wait_ms)
{
    double deadline = rt_clock_now() + wait_ms / 1000.0;
    for (;;) {
        struct rt_wire_msg q;
        rt_wire_msg_init(&q, RT_WIRE_SCHED_QUERY, -1, s->name);
        q.step = step;
        int rc = rt_sock_request(s->co.sock, &q, &s->co.in, deadline, s_answers_step, &step,
                                 "the coordinator");
        if (rc == RT_ERR_TIMEOUT)
            return rt_err_set(rc, "coordinator silent for %d ms", wait_ms);
        if (rc)
            return rc;
        const struct rt_wire_msg *r = &s->co.in.m;
        if (r->type == RT_WIRE_ERROR && r->err_code == RT_ERR_STATE) {
            /* not ready (workers still joining): ask again */
            if (rt_clock_now() + S_SCHED_RETRY_US / 1e6 >= deadline)
                return rt_err_set(RT_ERR_TIMEOUT, "coordinator not ready after %d ms", wait_ms);
            usleep(S_SCHED_RETRY_US);
            continue;
        }
        if (r->type != RT_WIRE_SCHED)
            return rt_err_set(RT_ERR_PEER, "coordinator: %s", r->text);
        pt->epoch = r->sched.epoch;
        pt->epoch_offset = r->sched.epoch_offset;
        pt->version = r->sched_version;
        pt->batch = r->sched.batch;
        pt->samples = r->sched.samples;
        pt->lr = r->sched.lr;
        pt->gamma = r->sched.gamma;
        pt->done = r->sched.done;
        pt->epoch_last = r->sched.epoch_last;
        server_shard_members(s, r->sched.members, r->sched.members_len);
        return RT_OK;
    }
}
