/*
 * server_shard: one parameter-server shard (see server_shard.h): its lifecycle, the serving loop
 * and the one table that says which handler takes each message type and which types only the
 * coordinator (shard 0) accepts. The handlers live with their concern (server_shard_int.h).
 */
#include "server_shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_net.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "server_shard_int.h"

#define S_POLL_MS 100 /* poll period: how often `stop` is checked */
/* Shard 0 answers the other shards this long after the end when a worker was evicted (they learn
 * it from the coordinator). */
#define S_END_LINGER_MS 1000

/* What the shard does with a message type. */
struct s_handler {
    enum rt_wire_type type;      /* the message type */
    server_shard_handler_fn *fn; /* its handler */
    int coord_only;              /* only the coordinator (shard 0) accepts it */
};

static const struct s_handler s_handlers[] = {
    {RT_WIRE_REGISTER, server_shard_on_register, 1},
    {RT_WIRE_SCHED_QUERY, server_shard_on_sched_query, 1},
    {RT_WIRE_HEARTBEAT, server_shard_on_heartbeat, 0},
    {RT_WIRE_DECISION, server_shard_on_decision, 1},
    {RT_WIRE_ABS_QUERY, server_shard_on_abs_query, 1},
    {RT_WIRE_REJECT, server_shard_on_reject, 1},
    {RT_WIRE_VERIFY, server_shard_on_verify, 1},
    {RT_WIRE_STATUS, server_shard_on_status, 0},
    {RT_WIRE_HELLO, server_shard_on_hello, 0},
    {RT_WIRE_INIT, server_shard_on_init, 0},
    {RT_WIRE_PUSH, server_shard_on_push, 0},
    {RT_WIRE_PULL, server_shard_on_pull, 0},
    {RT_WIRE_SNAPSHOT, server_shard_on_snapshot, 0},
    {RT_WIRE_BYE, server_shard_on_bye, 0},
};

/* ---- helpers shared by the shard's files ------------------------------------------------ */

int server_shard_route_eq(const struct server_shard_worker *w, const uint8_t *route, size_t rlen)
{
    return w->route_len == rlen && !memcmp(w->route, route, rlen);
}

struct server_shard_worker *server_shard_bound(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    if (m->sender < 0 || m->sender >= s->cfg.n_workers)
        return NULL;
    struct server_shard_worker *w = &s->data.workers[m->sender];
    return w->route_len && server_shard_route_eq(w, in->route, in->route_len) ? w : NULL;
}

void server_shard_drop(server_shard_t *s, const struct rt_sock_in *in, const char *why)
{
    const struct rt_wire_msg *m = &in->m;
    char hex[RT_SOCK_ROUTE_HEX];
    rt_sock_route_hex(in->route, in->route_len, hex, sizeof hex);
    s->st.dropped++;
    RT_WARN(s->name, "dropped %s from peer %s (worker %d '%s', step %llu): %s",
            rt_wire_type_name(m->type), hex, m->sender, m->name, (unsigned long long)m->step, why);
}

void server_shard_reply(server_shard_t *s, const struct rt_sock_in *in, struct rt_wire_msg *r,
                        const char *what)
{
    if (rt_sock_send(s->io.sock, in->route, in->route_len, r, NULL, NULL, NULL))
        RT_WARN(s->name, "%s failed: %s", what, rt_err_msg());
}

void server_shard_reply_error(server_shard_t *s, const struct rt_sock_in *in, uint64_t step,
                              int code, const char *text)
{
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_ERROR, s->cfg.shard, s->name);
    r.step = step;
    r.err_code = code;
    snprintf(r.text, sizeof r.text, "%s", text);
    rt_sock_send(s->io.sock, in->route, in->route_len, &r, NULL, NULL, NULL);
}

int server_shard_all_gone(const server_shard_t *s)
{
    for (int i = 0; i < s->cfg.n_workers; i++)
        if (!s->data.workers[i].bye && !s->data.workers[i].evicted)
            return 0;
    return 1;
}

/* ---- dispatch --------------------------------------------------------------------------- */

/* Hand the message received in s->io.in to its handler (s_handlers); returns 1 when it was a
 * goodbye after which every worker has left. */
static int s_handle(server_shard_t *s)
{
    const struct rt_sock_in *in = &s->io.in;
    const struct rt_wire_msg *m = &in->m;
    /* a bound worker's message shows it alive once it works (it pulled or pushed since it
     * registered): a peer that registers and only heartbeats is evicted like a silent one */
    struct server_shard_worker *bw = s->co.coord ? server_shard_bound(s, in) : NULL;
    if (bw && m->type != RT_WIRE_REGISTER &&
        (bw->active || m->type == RT_WIRE_PULL || m->type == RT_WIRE_PUSH ||
         m->type == RT_WIRE_INIT))
        server_coord_heartbeat(s->co.coord, m->sender);
    if (s->co.coord && !bw)
        server_shard_obs_heard(s, in);
    const struct s_handler *h = NULL;
    for (size_t i = 0; i < sizeof s_handlers / sizeof s_handlers[0]; i++)
        if (s_handlers[i].type == m->type) {
            h = &s_handlers[i];
            break;
        }
    if (!h) {
        server_shard_drop(s, in, "message type not accepted by a shard");
        return 0;
    }
    if (h->coord_only && !s->co.coord) {
        server_shard_drop(s, in, "coordinator message sent to a shard other than 0");
        return 0;
    }
    h->fn(s, in);
    return m->type == RT_WIRE_BYE && server_shard_all_gone(s);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

/* The configuration's own consistency. */
static int s_check_cfg(const struct server_shard_cfg *cfg)
{
    if (cfg->n_shards < 1 || cfg->shard < 0 || cfg->shard >= cfg->n_shards)
        return rt_err_set(RT_ERR_ARG, "shard %d of %d", cfg->shard, cfg->n_shards);
    if (cfg->n_workers < 1)
        return rt_err_set(RT_ERR_ARG, "shard %d: %d workers", cfg->shard, cfg->n_workers);
    if (cfg->n_params < (uint64_t)cfg->n_shards)
        return rt_err_set(RT_ERR_ARG, "%llu parameters cannot be split into %d shards",
                          (unsigned long long)cfg->n_params, cfg->n_shards);
    if (cfg->shard == 0 && (!cfg->sched || !cfg->sched->ops || !cfg->sched->ops->at))
        return rt_err_set(RT_ERR_ARG, "shard 0 (the coordinator) needs a schedule");
    if (!cfg->endpoint)
        return rt_err_set(RT_ERR_ARG, "shard %d: no endpoint", cfg->shard);
    if (cfg->shard > 0 && !cfg->coord_endpoint)
        return rt_err_set(RT_ERR_ARG, "shard %d: no coordinator endpoint", cfg->shard);
    return RT_OK;
}

/* Keep the configuration (without the pointers that are not kept), the checkpoint paths and the
 * names. */
static int s_set_cfg(server_shard_t *s, const struct server_shard_cfg *cfg)
{
    s->cfg = *cfg;
    s->cfg.endpoint = NULL;
    s->cfg.init_params = NULL;
    s->cfg.init_buffers = NULL;
    s->cfg.coord_endpoint = NULL;
    s->cfg.ckpt_root = NULL;
    s->cfg.resume = NULL;
    s->cfg.model = NULL;
    if (!s->cfg.chunk_floats)
        s->cfg.chunk_floats = SERVER_CHUNK_FLOATS_DEFAULT;
    snprintf(s->name, sizeof s->name, "shard-%d", cfg->shard);
    snprintf(s->ckpt.model, sizeof s->ckpt.model, "%s", cfg->model ? cfg->model : "");
    if (cfg->ckpt_root && snprintf(s->ckpt.root, sizeof s->ckpt.root, "%s", cfg->ckpt_root) >=
                              (int)sizeof s->ckpt.root)
        return rt_err_set(RT_ERR_ARG, "checkpoint directory %s: path too long", cfg->ckpt_root);
    return RT_OK;
}

/* This shard's ranges and every buffer of the data plane (and the snapshots), with the initial
 * weights when the configuration has them. */
static int s_alloc(server_shard_t *s, const struct server_shard_cfg *cfg)
{
    struct server_shard_data *d = &s->data;
    rt_wire_partition(cfg->n_params, cfg->n_shards, cfg->shard, &d->p_off, &d->p_cnt);
    rt_wire_partition(cfg->n_buffers, cfg->n_shards, cfg->shard, &d->b_off, &d->b_cnt);
    d->w = nn_alloc(d->p_cnt * sizeof(float));
    d->mom = nn_alloc(d->p_cnt * sizeof(float));
    d->acc = nn_alloc(d->p_cnt * sizeof(float));
    d->bw = nn_alloc((d->b_cnt + 1) * sizeof(float));
    d->bacc = nn_alloc((d->b_cnt + 1) * sizeof(float));
    d->workers = calloc((size_t)cfg->n_workers, sizeof *d->workers);
    d->wck = calloc((size_t)(d->p_cnt / s->cfg.chunk_floats + 1), sizeof *d->wck);
    d->wck_version = UINT64_MAX;
    s->snap.version = UINT64_MAX;
    if (cfg->snapshots) {
        s->snap.w = nn_alloc(d->p_cnt * sizeof(float));
        s->snap.b = nn_alloc((d->b_cnt + 1) * sizeof(float));
        if (!s->snap.w || !s->snap.b)
            return rt_err_set(RT_ERR_NOMEM, "shard %d: snapshot of %llu floats", cfg->shard,
                              (unsigned long long)d->p_cnt);
    }
    if (!d->w || !d->mom || !d->acc || !d->bw || !d->bacc || !d->workers || !d->wck)
        return rt_err_set(RT_ERR_NOMEM, "shard %d: %llu floats", cfg->shard,
                          (unsigned long long)d->p_cnt);
    memset(d->mom, 0, d->p_cnt * sizeof(float));
    memset(d->acc, 0, d->p_cnt * sizeof(float));
    memset(d->bw, 0, (d->b_cnt + 1) * sizeof(float));
    memset(d->bacc, 0, (d->b_cnt + 1) * sizeof(float));
    if (cfg->init_params) {
        memcpy(d->w, cfg->init_params + d->p_off, d->p_cnt * sizeof(float));
        if (cfg->init_buffers && d->b_cnt)
            memcpy(d->bw, cfg->init_buffers + d->b_off, d->b_cnt * sizeof(float));
        d->ready = 1;
    }
    return RT_OK;
}

/* Shard 0: the coordinator, and room for the coordinator's part of checkpoints. */
static int s_coord_new(server_shard_t *s, const struct server_shard_cfg *cfg)
{
    s->co.coord = server_coord_new(cfg->n_workers, cfg->sched);
    if (!s->co.coord)
        return rt_err_set(RT_ERR_NOMEM, "coordinator");
    server_coord_set_sync(s->co.coord, cfg->sync, cfg->sync_timeout_ms);
    server_coord_set_evict(s->co.coord, cfg->evict_ms);
    server_coord_set_ckpt_minutes(s->co.coord, cfg->ckpt_root ? cfg->ckpt_every_minutes : 0);
    if ((cfg->ckpt_root || cfg->resume) && !(s->ckpt.coord = calloc(1, sizeof *s->ckpt.coord)))
        return rt_err_set(RT_ERR_NOMEM, "checkpoint state");
    return RT_OK;
}

/* The context, the bound ROUTER (frames up to the whole range) and, on shards > 0, the DEALER to
 * the coordinator. */
static int s_open(server_shard_t *s, const struct server_shard_cfg *cfg)
{
    const struct server_shard_data *d = &s->data;
    struct rt_wire_limits lim = {.n_params = cfg->n_params,
                                 .n_buffers = cfg->n_buffers,
                                 .max_floats = d->p_cnt > d->b_cnt ? d->p_cnt : d->b_cnt};
    s->io.in.lim = lim;
    s->co.in.lim = lim;
    if (cfg->zmq_ctx) {
        s->io.ctx = cfg->zmq_ctx;
    } else {
        if (!(s->io.ctx = rt_sock_ctx_new(cfg->io_threads)))
            return RT_ERR_ZMQ;
        s->io.own_ctx = 1;
    }
    /* peers may send chunks of any size up to the whole range; bigger frames are dropped */
    long max_frame = (long)(lim.max_floats * sizeof(float));
    if (max_frame < RT_WIRE_MAX_HEADER)
        max_frame = RT_WIRE_MAX_HEADER;
    int rc = rt_sock_router(s->io.ctx, cfg->endpoint, max_frame, &s->io.sock);
    if (rc)
        return rc;
    if (cfg->shard > 0 && (rc = rt_sock_dealer(s->io.ctx, cfg->coord_endpoint, &s->co.sock)))
        return rc;
    size_t elen = sizeof s->io.endpoint;
    if (zmq_getsockopt(s->io.sock, ZMQ_LAST_ENDPOINT, s->io.endpoint, &elen) != 0)
        snprintf(s->io.endpoint, sizeof s->io.endpoint, "%s", cfg->endpoint);
    return RT_OK;
}

int server_shard_new(const struct server_shard_cfg *cfg, server_shard_t **out)
{
    *out = NULL;
    int rc = s_check_cfg(cfg);
    if (rc)
        return rc;
    server_shard_t *s = calloc(1, sizeof *s);
    if (!s)
        return rt_err_set(RT_ERR_NOMEM, "shard %d", cfg->shard);
    rt_sock_in_init(&s->io.in, s->name, 1, NULL);
    rt_sock_in_init(&s->co.in, s->name, 0, NULL);
    if (!(s->io.zc = rt_sock_zc_new())) {
        rc = rt_err_set(RT_ERR_NOMEM, "shard %d", cfg->shard);
        goto out_destroy;
    }
    if ((rc = s_set_cfg(s, cfg)) || (rc = s_alloc(s, cfg)))
        goto out_destroy;
    if (cfg->shard == 0 &&
        ((rc = s_coord_new(s, cfg)) || (rc = server_shard_obs_open(s, cfg->metrics_listen))))
        goto out_destroy;
    if (cfg->resume && (rc = server_shard_resume(s, cfg->resume)))
        goto out_destroy;
    /* this run writes the later checkpoints again */
    if (s->co.coord && s->ckpt.root[0] &&
        (rc = rt_ckpt_remove_after(s->ckpt.root, s->ckpt.resumed_key)))
        goto out_destroy;
    if ((rc = s_open(s, cfg)))
        goto out_destroy;
    RT_INFO(s->name, "serving %s: params [%llu, +%llu), buffers [%llu, +%llu), %d workers",
            s->io.endpoint, (unsigned long long)s->data.p_off, (unsigned long long)s->data.p_cnt,
            (unsigned long long)s->data.b_off, (unsigned long long)s->data.b_cnt, cfg->n_workers);
    *out = s;
    return RT_OK;
out_destroy:
    server_shard_destroy(&s);
    return rc;
}

/* How long a shard whose workers were all evicted waits for one to rejoin: five eviction
 * timeouts, at least 10 s. */
static double s_rejoin_wait_s(const server_shard_t *s)
{
    double t = 5.0 * (s->cfg.evict_ms > 0 ? s->cfg.evict_ms : SERVER_COORD_EVICT_MS_DEFAULT) / 1e3;
    return t < 10.0 ? 10.0 : t;
}

/* Every worker has said goodbye or was evicted: fail when none said goodbye (after a while for a
 * rejoin) or when they left before the schedule's end, else finish the
 * checkpoint in progress and set when to return. */
static int s_end(server_shard_t *s)
{
    int any_bye = 0;
    for (int i = 0; i < s->cfg.n_workers; i++)
        any_bye |= s->data.workers[i].bye;
    if (!any_bye) {
        /* every worker was evicted: wait a while for one to come back (a restarted process, or a
         * real worker after squatters), then give up */
        double now = rt_clock_now(), wait_s = s_rejoin_wait_s(s);
        if (s->ev.all_gone_at == 0) {
            s->ev.all_gone_at = now;
            RT_WARN(s->name,
                    "every worker was evicted at version %llu: waiting %.0f s for one to "
                    "rejoin",
                    (unsigned long long)s->data.version, wait_s);
        }
        if (now - s->ev.all_gone_at < wait_s)
            return RT_OK;
        return rt_err_set(RT_ERR_PEER,
                          "%s: every worker was evicted at version %llu and none rejoined within "
                          "%.0f s",
                          s->name, (unsigned long long)s->data.version, wait_s);
    }
    if (s->co.coord && s->data.ready) {
        /* goodbyes before the schedule's end: the run did not finish */
        struct server_coord_point pt;
        if (server_coord_sched(s->co.coord, s->data.version, &pt) == RT_OK && !pt.done)
            return rt_err_set(RT_ERR_PEER,
                              "%s: the workers left at version %llu, before the end of training "
                              "(epoch %llu)",
                              s->name, (unsigned long long)s->data.version,
                              (unsigned long long)pt.epoch);
    }
    RT_INFO(s->name, "all workers left at version %llu (%llu messages dropped)",
            (unsigned long long)s->data.version,
            (unsigned long long)(s->st.dropped + s->io.in.dropped));
    server_shard_ckpt_drain(s);
    /* the coordinator keeps answering a while when a worker was evicted: the other shards learn
     * it from its answers */
    s->end_at = rt_clock_now() + (s->co.coord && s->st.evicted ? S_END_LINGER_MS / 1000.0 : 0);
    return RT_OK;
}

int server_shard_run(server_shard_t *s, const atomic_int *stop)
{
    for (;;) {
        if (stop && atomic_load(stop))
            return rt_err_set(RT_ERR_INTERRUPTED, "%s: stopped", s->name);
        zmq_pollitem_t it = {s->io.sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, S_POLL_MS);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return rt_err_set(RT_ERR_ZMQ, "%s: poll: %s", s->name, zmq_strerror(zmq_errno()));
        }
        /* drain what is queued before polling again */
        int bye = 0;
        while (n > 0 && !bye) {
            int rc = rt_sock_recv_msg(s->io.sock, &s->io.in, ZMQ_DONTWAIT, NULL);
            if (rc == RT_ERR_TIMEOUT)
                break;
            if (rc)
                return rc;
            bye = s_handle(s);
            rt_sock_in_release(&s->io.in);
            if (s->step.nonfinite)
                return rt_err_set(
                    RT_ERR_NONFINITE,
                    "%s: the averaged gradient or buffers of the step from version "
                    "%llu are not finite (the sum of finite pushes overflowed): stopping "
                    "without applying it; resume from the last checkpoint",
                    s->name, (unsigned long long)s->data.version);
        }
        server_shard_evict_poll(s);
        if (n == 0)
            server_shard_members_poll(s, 0);
        server_shard_ckpt_poll(s);
        int rc;
        if ((rc = server_shard_coord_alive(s)))
            return rc;
        int gone = server_shard_all_gone(s);
        if (!gone)
            s->ev.all_gone_at = 0; /* someone rejoined */
        if ((bye || gone) && s->end_at == 0 && (rc = s_end(s)))
            return rc;
        if (s->end_at > 0 && rt_clock_now() >= s->end_at)
            return RT_OK;
    }
}

void server_shard_range(const server_shard_t *s, uint64_t *p_off, uint64_t *p_cnt, uint64_t *b_off,
                        uint64_t *b_cnt)
{
    *p_off = s->data.p_off;
    *p_cnt = s->data.p_cnt;
    *b_off = s->data.b_off;
    *b_cnt = s->data.b_cnt;
}

const char *server_shard_endpoint(const server_shard_t *s)
{
    return s->io.endpoint;
}

uint64_t server_shard_start_step(const server_shard_t *s)
{
    return s->start_step;
}

const float *server_shard_params(const server_shard_t *s)
{
    return s->data.w;
}

const float *server_shard_buffers(const server_shard_t *s)
{
    return s->data.bw;
}

void server_shard_stats(const server_shard_t *s, struct server_shard_stats *out)
{
    *out = s->st;
    out->version = s->data.version;
    out->dropped += s->io.in.dropped; /* malformed: dropped as they were received */
}

void server_shard_destroy(server_shard_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    server_shard_t *s = *self_p;
    rt_sock_close(&s->io.sock, 0);
    rt_sock_close(&s->co.sock, 0);
    rt_sock_in_close(&s->io.in);
    rt_sock_in_close(&s->co.in);
    /* a peer that never read its weights leaves frames pointing into w: w goes with the last */
    void *const bufs[] = {s->data.w, s->data.bw};
    long left = rt_sock_zc_release(s->io.zc, nn_free, bufs, 2);
    s->io.zc = NULL;
    s->data.w = s->data.bw = NULL;
    if (left)
        RT_INFO(s->name, "%ld zero-copy frames still queued; the weights go when ZeroMQ drops them",
                left);
    if (s->io.own_ctx)
        rt_sock_ctx_destroy(&s->io.ctx);
    server_shard_obs_close(s);
    server_coord_destroy(&s->co.coord);
    nn_free(s->snap.w);
    nn_free(s->snap.b);
    nn_free(s->data.mom);
    nn_free(s->data.acc);
    nn_free(s->data.bacc);
    free(s->data.workers);
    free(s->data.wck);
    free(s->ckpt.coord);
    free(s);
    *self_p = NULL;
}
