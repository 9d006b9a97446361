/*
 * server_shard_coord: the coordinator as the shards see it (see server_shard_int.h). On shard 0,
 * the handlers of the messages only the coordinator accepts (the dispatch table in server_shard.c
 * marks them): registration, schedule queries, heartbeats, the eigen service's decisions and ABS
 * state queries, each handed to server_coord. On the other shards, the requests to the coordinator
 * for the schedule and the members of a step.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "server_sched.h"
#include "server_shard_int.h"

#define S_SCHED_RETRY_US 5000  /* pause before asking again while workers join */
#define S_REFUSED_LOG_EVERY 40 /* refused registrations logged: the first and every 40th */

/* ---- shard 0: the coordinator's message handlers ---------------------------------------- */

/* REGISTER: a worker joins (a repeated REGISTER from the same connection gets the same id; a
 * restarted worker takes the slot of an evicted one); WELCOME with its id, the sizes and the step
 * it starts at. */
/* A fresh registration token: random, so that only the process WELCOME gave it to can name it. */
static uint64_t s_token(void)
{
    uint64_t t = 0;
    if (getrandom(&t, sizeof t, 0) != (ssize_t)sizeof t) /* never blocks once the pool is ready */
        t = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ (uint64_t)(rt_clock_now() * 1e9);
    return t ? t : 1;
}

/* REGISTER of the eigen service: its connection becomes the only one whose decisions and ABS
 * queries count (a restarted service replaces it, logged); WELCOME back. */
static void s_register_eigensvc(server_shard_t *s, const struct rt_sock_in *in)
{
    char hex[RT_SOCK_ROUTE_HEX];
    rt_sock_route_hex(in->route, in->route_len, hex, sizeof hex);
    struct server_shard_coordination *co = &s->co;
    if (co->eig_route_len &&
        !(co->eig_route_len == in->route_len && !memcmp(co->eig_route, in->route, in->route_len)))
        RT_WARN(s->name, "eigen service '%s' (peer %s) registers: it replaces the one before",
                in->m.name, hex);
    else
        RT_INFO(s->name, "eigen service '%s' (peer %s) registered", in->m.name, hex);
    memcpy(co->eig_route, in->route, in->route_len);
    co->eig_route_len = in->route_len;
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_WELCOME, -1, s->name);
    r.n_workers = (uint32_t)s->cfg.n_workers;
    r.n_shards = (uint32_t)s->cfg.n_shards;
    r.n_params = s->cfg.n_params;
    r.n_buffers = s->cfg.n_buffers;
    r.role = RT_WIRE_ROLE_EIGENSVC;
    server_shard_reply(s, in, &r, "welcome");
}

/* 1 when `in` comes from the connection registered as the eigen service; else dropped with an
 * ERROR. */
static int s_from_eigensvc(server_shard_t *s, const struct rt_sock_in *in, uint64_t step)
{
    const struct server_shard_coordination *co = &s->co;
    if (co->eig_route_len == in->route_len && !memcmp(co->eig_route, in->route, in->route_len))
        return 1;
    server_shard_drop(s, in, "not from the connection registered as the eigen service");
    server_shard_reply_error(s, in, step, RT_ERR_PEER,
                             "register as the eigen service first: refused");
    return 0;
}

void server_shard_on_register(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    if (m->role == RT_WIRE_ROLE_EIGENSVC) {
        s_register_eigensvc(s, in);
        return;
    }
    if (m->role != RT_WIRE_ROLE_WORKER) {
        server_shard_drop(s, in, "registration with an unknown role");
        server_shard_reply_error(s, in, 0, RT_ERR_PEER, "unknown role");
        return;
    }
    /* a repeated REGISTER from the same connection gets the same id */
    int id = -1;
    for (int i = 0; i < s->cfg.n_workers; i++)
        if (server_shard_route_eq(&s->data.workers[i], in->route, in->route_len))
            id = i;
    if (id < 0) {
        id = server_coord_register(s->co.coord, m->name, m->weight);
        if (id < 0) {
            /* every slot taken: the worker asks again a few times a second until one frees up;
             * the refusal is logged on the first ask and every S_REFUSED_LOG_EVERY-th */
            if (id != RT_ERR_STATE || s->co.refused++ % S_REFUSED_LOG_EVERY == 0)
                server_shard_drop(s, in, rt_err_msg());
            else
                s->st.dropped++;
            server_shard_reply_error(s, in, 0, id, rt_err_msg());
            return;
        }
        s->co.refused = 0;
        struct server_shard_worker *w = &s->data.workers[id];
        int rejoin = w->route_len > 0; /* the slot of an evicted worker */
        memcpy(w->route, in->route, in->route_len);
        w->route_len = in->route_len;
        w->token = s_token();
        w->active = 0;
        w->reject_streak = 0;
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
    r.token = s->data.workers[id].token;
    server_shard_reply(s, in, &r, "welcome");
}

/* A worker's measured speed: when the coordinator re-splits the batch, announce the new shares
 * and the step they apply from (log, and a "balance" event in metrics.jsonl), as for an eviction.
 */
static void s_report_speed(server_shard_t *s, int id, double speed)
{
    uint64_t from = 0;
    int rc = server_coord_report_speed(s->co.coord, id, speed, &from);
    if (rc < 0)
        RT_WARN(s->name, "worker %d: %s", id, rt_err_msg());
    if (rc <= 0)
        return;
    int n = s->cfg.n_workers;
    double *w = malloc((size_t)n * sizeof *w); /* rare: only when the shares move */
    if (!w)
        return;
    server_coord_weights(s->co.coord, w);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += w[i];
    char line[512];
    size_t len = 0;
    json_t *ev = json_object(), *shares = json_array();
    for (int i = 0; i < n && sum > 0; i++) {
        if (len < sizeof line)
            len += (size_t)snprintf(line + len, sizeof line - len, " %d:%.1f%%", i,
                                    100.0 * w[i] / sum);
        json_array_append_new(shares, json_real(w[i] / sum));
    }
    RT_INFO(s->name, "shares re-balanced to measured speed from step %llu:%s",
            (unsigned long long)from, line);
    if (s->cfg.metrics && ev && shares) {
        json_object_set_new(ev, "event", json_string("balance"));
        json_object_set_new(ev, "step", json_integer((json_int_t)from));
        json_object_set(ev, "shares", shares);
        if (rt_metrics_write(s->cfg.metrics, ev))
            RT_WARN(s->name, "balance event: %s", rt_err_msg());
    }
    json_decref(shares);
    json_decref(ev);
    free(w);
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
        /* a positive weight in a query is the worker's measured speed (cluster.balance:
         * measured): the shares may follow it */
        if (m->weight > 0)
            s_report_speed(s, m->sender, m->weight);
        server_shard_obs_eval(s, &m->eval);
        server_shard_obs_bad(s, m->sender, m->bad_records);
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
    r.sched.checkpoint = pt.checkpoint;
    r.sched.members_len = server_coord_members(s->co.coord, m->step, r.sched.members,
                                               (uint32_t)sizeof r.sched.members);
    r.sched.lead = server_coord_lead(s->co.coord, m->step);
    server_shard_reply(s, in, &r, "schedule reply");
}

/* HEARTBEAT: answered, so that a worker waiting for a slow step, another shard or the eigen
 * service knows the coordinator is alive (for a bound worker that works, the dispatch has recorded
 * that it is; from anyone else it changes nothing). Every shard answers it, from anyone: it is
 * the status probe of `eigenbatch ping` (deployment healthchecks). */
void server_shard_on_heartbeat(server_shard_t *s, const struct rt_sock_in *in)
{
    if (server_shard_bound(s, in)) {
        server_shard_obs_eval(s, &in->m.eval); /* the lead's latest test-set evaluation */
        server_shard_obs_bad(s, in->m.sender, in->m.bad_records);
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_HEARTBEAT, s->cfg.shard, s->name);
    server_shard_reply(s, in, &r, "heartbeat reply");
}

/* DECISION: hand it to the schedule; ACK with the verdict, or ERROR. */
void server_shard_on_decision(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    if (!s_from_eigensvc(s, in, m->decision.seq))
        return;
    uint64_t apply = 0, version = 0;
    int v = server_coord_decide(s->co.coord, &m->decision, &apply, &version);
    server_shard_obs_decision(s, &m->decision, v, apply, version);
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
    if (!s_from_eigensvc(s, in, m->step))
        return;
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
    return (r->type == RT_WIRE_SCHED || r->type == RT_WIRE_ERROR) &&
           r->step == *(const uint64_t *)arg;
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
        s->co.heard_at = rt_clock_now();
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
        pt->checkpoint = r->sched.checkpoint;
        server_shard_members(s, r->sched.members, r->sched.members_len);
        return RT_OK;
    }
}

/* VERIFY answers carry the request's nonce in `step`, with the top bit set so that no answer to
 * a schedule query (a real step) can be taken for one. */
#define S_NONCE_BIT (1ull << 63)

/* Does the coordinator's reply answer the VERIFY numbered *arg? */
static int s_answers_verify(const struct rt_wire_msg *r, void *arg)
{
    return (r->type == RT_WIRE_ACK || r->type == RT_WIRE_ERROR) &&
           r->step == *(const uint64_t *)arg;
}

int server_shard_verify(server_shard_t *s, int id, uint64_t token, int wait_ms)
{
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_VERIFY, s->cfg.shard, s->name);
    q.step = S_NONCE_BIT | ++s->co.nonce;
    q.worker = id;
    q.token = token;
    int rc = rt_sock_request(s->co.sock, &q, &s->co.in, rt_clock_now() + wait_ms / 1000.0,
                             s_answers_verify, &q.step, "the coordinator");
    if (rc) {
        RT_WARN(s->name, "worker %d's registration could not be checked: %s", id, rt_err_msg());
        return 0;
    }
    s->co.heard_at = rt_clock_now();
    return s->co.in.m.type == RT_WIRE_ACK;
}

int server_shard_coord_alive(server_shard_t *s)
{
    if (s->co.coord || s->cfg.coord_timeout_ms <= 0)
        return RT_OK;
    double now = rt_clock_now();
    /* answers to pings (and late answers) waiting on the socket: the coordinator lives */
    while (rt_sock_recv_msg(s->co.sock, &s->co.in, ZMQ_DONTWAIT, "the coordinator") == RT_OK) {
        s->co.heard_at = now;
        rt_sock_in_release(&s->co.in);
    }
    if (s->co.heard_at == 0)
        s->co.heard_at = now; /* the clock starts with the first look */
    double silent_ms = (now - s->co.heard_at) * 1000.0;
    if (silent_ms >= s->cfg.coord_timeout_ms)
        return rt_err_set(RT_ERR_TIMEOUT,
                          "%s: the coordinator (shard 0) has been silent for %.0f ms "
                          "(cluster.coordinator_timeout_ms %d): stopping",
                          s->name, silent_ms, s->cfg.coord_timeout_ms);
    double period = s->cfg.coord_timeout_ms / 4000.0;
    if (period > 1.0)
        period = 1.0;
    if (now - s->co.heard_at >= period && now - s->co.pinged_at >= period) {
        struct rt_wire_msg q;
        rt_wire_msg_init(&q, RT_WIRE_HEARTBEAT, s->cfg.shard, s->name);
        if (rt_sock_send(s->co.sock, NULL, 0, &q, NULL, NULL, NULL) == RT_OK)
            s->co.pinged_at = now;
    }
    return RT_OK;
}

/* VERIFY (from another shard): ACK when `token` is worker `worker`'s current registration (not
 * evicted since), else ERROR. */
void server_shard_on_verify(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    int id = m->worker;
    const struct server_shard_worker *w =
        id >= 0 && id < s->cfg.n_workers ? &s->data.workers[id] : NULL;
    if (!w || !w->route_len || w->token != m->token || server_coord_is_evicted(s->co.coord, id)) {
        server_shard_reply_error(s, in, m->step, RT_ERR_PEER, "not a current registration");
        return;
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_ACK, s->cfg.shard, s->name);
    r.step = m->step;
    r.worker = id;
    server_shard_reply(s, in, &r, "verify reply");
}

/* REJECT (from another shard): record that it rejected worker `worker`'s push of `step`. */
void server_shard_on_reject(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    if (m->worker < 0 || m->worker >= s->cfg.n_workers || server_shard_bound(s, in)) {
        server_shard_drop(s, in, "reject about no worker, or from a worker");
        return;
    }
    char why[RT_WIRE_TEXT_MAX + RT_WIRE_NAME_MAX + 8];
    snprintf(why, sizeof why, "%s (at %s)", m->text, m->name);
    server_shard_rejected(s, m->worker, m->step, why);
}

void server_shard_rejected(server_shard_t *s, int id, uint64_t step, const char *why)
{
    if (!s->co.coord) {
        struct rt_wire_msg q;
        rt_wire_msg_init(&q, RT_WIRE_REJECT, s->cfg.shard, s->name);
        q.step = step;
        q.worker = id;
        snprintf(q.text, sizeof q.text, "%s", why);
        if (rt_sock_send(s->co.sock, NULL, 0, &q, NULL, NULL, NULL))
            RT_WARN(s->name, "telling the coordinator of a rejected push: %s", rt_err_msg());
        return;
    }
    struct server_shard_worker *w = &s->data.workers[id];
    if (w->reject_streak > 0 && step <= w->reject_step)
        return; /* another shard's (late) report of a push already counted */
    w->reject_streak =
        w->reject_streak > 0 && step == w->reject_step + 1 ? w->reject_streak + 1 : 1;
    w->reject_step = step;
    int limit = s->cfg.max_rejects > 0 ? s->cfg.max_rejects : SERVER_SHARD_MAX_REJECTS_DEFAULT;
    char hex[RT_SOCK_ROUTE_HEX];
    rt_sock_route_hex(w->route, w->route_len, hex, sizeof hex);
    RT_WARN(s->name, "worker %d '%s' (peer %s): push of step %llu rejected: %s (%d of %d in a row)",
            id, w->name, hex, (unsigned long long)step, why, w->reject_streak, limit);
    if (s->cfg.metrics) {
        rt_metrics_begin(s->cfg.metrics, "reject");
        rt_metrics_int(s->cfg.metrics, "worker", id);
        rt_metrics_str(s->cfg.metrics, "name", w->name);
        rt_metrics_str(s->cfg.metrics, "peer", hex);
        rt_metrics_int(s->cfg.metrics, "step", (long long)step);
        rt_metrics_str(s->cfg.metrics, "reason", why);
        rt_metrics_int(s->cfg.metrics, "in_a_row", w->reject_streak);
        if (rt_metrics_end(s->cfg.metrics))
            RT_WARN(s->name, "reject event: %s", rt_err_msg());
    }
    if (w->reject_streak >= limit && !server_coord_is_evicted(s->co.coord, id))
        server_shard_evict(s, id, "rejected pushes", -1);
}
