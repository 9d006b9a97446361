/*
 * server_shard_status: what shard 0 tells observers (see server_shard_int.h): the answer to a
 * STATUS query (`eigenbatch status`: the workers, the shards, the schedule of the step in
 * progress, the latest decisions) and the Prometheus endpoint's gauges (metrics.listen). Both
 * only read the coordinator's state (server_coord_peek, server_coord_worker_info): a query never
 * announces a step, freezes a share table or delays a reply to a worker beyond its own handling.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_prom.h"
#include "rt_wire_status.h"
#include "server_shard_int.h"

/* Weight of the newest step in the smoothed samples per second. */
#define S_RATE_EMA 0.1

int server_shard_obs_open(server_shard_t *s, const char *metrics_listen)
{
    struct server_shard_obs *ob = &s->obs;
    ob->started_at = rt_clock_now();
    ob->shard_heard = calloc((size_t)s->cfg.n_shards, sizeof *ob->shard_heard);
    ob->st = malloc(sizeof *ob->st);
    ob->buf = malloc(RT_WIRE_STATUS_MAX);
    ob->w = calloc((size_t)s->cfg.n_workers, sizeof *ob->w);
    ob->bad = calloc((size_t)s->cfg.n_workers, sizeof *ob->bad);
    if (!ob->shard_heard || !ob->st || !ob->buf || !ob->w || !ob->bad)
        return rt_err_set(RT_ERR_NOMEM, "%s: status", s->name);
    if (!metrics_listen || !*metrics_listen)
        return RT_OK;
    int rc = rt_prom_http_start(metrics_listen, &ob->http);
    if (rc)
        return rc;
    const char *colon = strrchr(metrics_listen, ':'); /* rt_prom_http_start checked it */
    RT_INFO(s->name, "Prometheus metrics at http://%.*s:%d/metrics", (int)(colon - metrics_listen),
            metrics_listen, rt_prom_http_port(ob->http));
    return RT_OK;
}

void server_shard_obs_close(server_shard_t *s)
{
    struct server_shard_obs *ob = &s->obs;
    rt_prom_http_stop(&ob->http);
    free(ob->shard_heard);
    free(ob->st);
    free(ob->buf);
    free(ob->w);
    free(ob->bad);
    memset(ob, 0, sizeof *ob);
}

void server_shard_obs_heard(server_shard_t *s, const struct rt_sock_in *in)
{
    int i;
    char rest;
    /* the other shards name themselves "shard-<i>" in every message to the coordinator */
    if (!s->obs.shard_heard || sscanf(in->m.name, "shard-%d%c", &i, &rest) != 1)
        return;
    if (i > 0 && i < s->cfg.n_shards && !server_shard_bound(s, in))
        s->obs.shard_heard[i] = rt_clock_now();
}

void server_shard_obs_decision(server_shard_t *s, const struct rt_wire_decision *d, int verdict,
                               uint64_t apply_step, uint64_t version)
{
    struct server_shard_obs *ob = &s->obs;
    struct rt_wire_decision *e = &ob->dec[ob->dec_next];
    *e = *d;
    e->verdict = verdict;
    e->apply_step = verdict == RT_WIRE_VERDICT_ACCEPTED ? apply_step : 0;
    e->sched_version = verdict == RT_WIRE_VERDICT_ACCEPTED ? (uint32_t)version : 0;
    e->has_abs = 0;
    /* a DECISION carries the base lr and gamma; the schedule gives what the step trains with */
    struct server_coord_point pt;
    e->lr = e->gamma = 0;
    if (verdict == RT_WIRE_VERDICT_ACCEPTED &&
        server_coord_peek(s->co.coord, apply_step, &pt) == RT_OK && !pt.done) {
        e->lr = pt.lr;
        e->gamma = pt.gamma;
    }
    ob->dec_next = (ob->dec_next + 1) % RT_WIRE_STATUS_DECISIONS;
    if (ob->n_dec < RT_WIRE_STATUS_DECISIONS)
        ob->n_dec++;
    rt_prom_set("eigenbatch_eigenvalue", NULL, "top Hessian eigenvalue of the latest decision",
                d->lambda);
    rt_prom_set("eigenbatch_decisions_total", NULL, "decisions the coordinator received",
                (double)++ob->decisions);
}

/* The share weights for the next unasked step into s->obs.w; returns their sum. */
static double s_weights(server_shard_t *s)
{
    double sum = 0;
    server_coord_weights(s->co.coord, s->obs.w);
    for (int i = 0; i < s->cfg.n_workers; i++)
        sum += s->obs.w[i];
    return sum;
}

/* The workers as the coordinator sees them into st. */
static void s_fill_workers(server_shard_t *s, struct rt_wire_status *st)
{
    int n = s->cfg.n_workers;
    const double *w = s->obs.w;
    double sum = s_weights(s);
    int k = 0;
    for (int i = 0; i < n && k < RT_WIRE_STATUS_WORKERS; i++) {
        struct server_coord_worker info;
        if (server_coord_worker_info(s->co.coord, i, &info))
            continue; /* not registered yet */
        struct rt_wire_worker_status *ws = &st->workers[k++];
        ws->id = i;
        snprintf(ws->name, sizeof ws->name, "%s", info.name);
        ws->share = sum > 0 ? w[i] / sum : 0;
        ws->speed = info.speed;
        ws->heartbeat_age_s = info.silent_s;
        ws->evicted = info.evicted;
        ws->join_step = info.join_step;
        ws->bad_records = server_shard_obs_bad_of(s, i);
    }
    st->n_listed_workers = k;
}

/* The whole status of the run into s->obs.st. */
static void s_fill(server_shard_t *s)
{
    struct server_shard_obs *ob = &s->obs;
    struct rt_wire_status *st = ob->st;
    double now = rt_clock_now();
    memset(st, 0, sizeof *st);
    st->version = s->data.version;
    st->step = s->data.version;
    struct server_coord_point pt;
    if (server_coord_peek(s->co.coord, st->step, &pt) == RT_OK) {
        st->epoch = pt.epoch;
        st->batch = pt.batch;
        st->lr = pt.lr;
        st->gamma = pt.gamma;
        st->sched_version = pt.version;
        st->done = pt.done;
    }
    st->n_workers = (uint32_t)s->cfg.n_workers;
    st->n_shards = (uint32_t)s->cfg.n_shards;
    st->uptime_s = now - ob->started_at;
    st->images_per_s = ob->rate;
    uint64_t n = s->step.prev_samples;
    st->loss = n ? (float)(s->step.prev_loss / (double)n) : 0.0f;
    st->train_accuracy = n ? (float)((double)s->step.prev_correct / (double)n) : 0.0f;
    st->eval = s->obs.eval;
    st->bad_records = server_shard_obs_bad_total(s);
    s_fill_workers(s, st);
    for (int i = 0; i < s->cfg.n_shards && i < RT_WIRE_STATUS_SHARDS; i++) {
        struct rt_wire_shard_status *sh = &st->shards[st->n_listed_shards++];
        sh->shard = i;
        sh->heard_age_s = i == 0 ? 0 : ob->shard_heard[i] > 0 ? now - ob->shard_heard[i] : -1;
        sh->version = i == 0 ? s->data.version : 0;
    }
    for (int i = 0; i < ob->n_dec; i++) {
        int slot =
            (ob->dec_next - ob->n_dec + i + RT_WIRE_STATUS_DECISIONS) % RT_WIRE_STATUS_DECISIONS;
        st->decisions[st->n_decisions++] = ob->dec[slot];
    }
}

/* STATUS: the run's status, encoded by rt_wire_status. Anyone may ask (as anyone may ping); the
 * query carries nothing the coordinator acts on. Another shard answers with an ERROR. */
void server_shard_on_status(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    if (!s->co.coord) {
        /* refused with an answer, so that the asker learns where to ask */
        server_shard_reply_error(s, in, m->step, RT_ERR_PEER,
                                 "not the coordinator: ask shard 0 for the status");
        return;
    }
    s_fill(s);
    size_t len = 0;
    if (rt_wire_status_encode(s->obs.st, s->cfg.shard, s->name, s->obs.buf, RT_WIRE_STATUS_MAX,
                              &len)) {
        RT_WARN(s->name, "status reply: %s", rt_err_msg());
        server_shard_reply_error(s, in, m->step, RT_ERR_TOOBIG, "status too large");
        return;
    }
    if (rt_sock_send_frame(s->io.sock, in->route, in->route_len, s->obs.buf, len))
        RT_WARN(s->name, "status reply failed: %s", rt_err_msg());
}

/* Gauges of worker i (share, speed, heartbeat age). */
static void s_worker_gauges(server_shard_t *s, int i, double share)
{
    struct server_coord_worker info;
    if (server_coord_worker_info(s->co.coord, i, &info))
        return;
    char labels[RT_PROM_LABELS_MAX];
    snprintf(labels, sizeof labels, "worker=\"%d\"", i);
    rt_prom_set("eigenbatch_worker_speed", labels,
                "worker's measured samples per second of compute (smoothed)", info.speed);
    rt_prom_set("eigenbatch_worker_share", labels, "worker's fraction of the global batch", share);
    rt_prom_set("eigenbatch_worker_heartbeat_age_seconds", labels,
                "seconds since the coordinator last heard from the worker", info.silent_s);
    rt_prom_set("eigenbatch_worker_evicted", labels, "1 when the worker is evicted", info.evicted);
    rt_prom_set("eigenbatch_worker_bad_records", labels,
                "undecodable records the worker's loaders skipped (data.skip_bad_records)",
                (double)server_shard_obs_bad_of(s, i));
}

static uint64_t s_sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int server_shard_bad_report(struct server_shard_bad *b, uint64_t count)
{
    if (count == b->last)
        return 0;
    if (count < b->last) /* a new process of that worker, counting from 0 again */
        b->base = s_sat_add(b->base, b->last);
    b->last = count;
    return 1;
}

uint64_t server_shard_bad_count(const struct server_shard_bad *b)
{
    return s_sat_add(b->base, b->last);
}

void server_shard_obs_bad(server_shard_t *s, int id, uint64_t count)
{
    if (!s->co.coord || !s->obs.bad || id < 0 || id >= s->cfg.n_workers)
        return;
    if (server_shard_bad_report(&s->obs.bad[id], count))
        RT_INFO(s->name, "worker %d: %llu undecodable records skipped (data.skip_bad_records)", id,
                (unsigned long long)server_shard_bad_count(&s->obs.bad[id]));
}

uint64_t server_shard_obs_bad_of(const server_shard_t *s, int id)
{
    if (!s->obs.bad || id < 0 || id >= s->cfg.n_workers)
        return 0;
    return server_shard_bad_count(&s->obs.bad[id]);
}

uint64_t server_shard_obs_bad_total(const server_shard_t *s)
{
    uint64_t t = 0;
    for (int i = 0; i < s->cfg.n_workers; i++)
        t = s_sat_add(t, server_shard_obs_bad_of(s, i));
    return t;
}

void server_shard_obs_eval(server_shard_t *s, const struct rt_wire_eval *e)
{
    struct rt_wire_eval *held = &s->obs.eval;
    if (!e->present || (held->present && held->epoch > e->epoch))
        return;
    *held = *e;
    if (!rt_prom_enabled())
        return;
    rt_prom_set("eigenbatch_test_accuracy", NULL,
                "fraction of the test set classified correctly at the latest evaluation",
                (double)e->correct / (double)e->samples);
    rt_prom_set("eigenbatch_test_loss", NULL, "mean test loss at the latest evaluation", e->loss);
    rt_prom_set("eigenbatch_test_epoch", NULL, "epoch of the latest evaluation", (double)e->epoch);
    rt_prom_set("eigenbatch_test_samples", NULL, "test samples of the latest evaluation",
                (double)e->samples);
}

void server_shard_obs_step(server_shard_t *s)
{
    struct server_shard_obs *ob = &s->obs;
    double now = rt_clock_now();
    uint64_t n = s->step.prev_samples;
    if (ob->step_at > 0 && now > ob->step_at) {
        double r = (double)n / (now - ob->step_at);
        ob->rate = ob->rate > 0 ? (1 - S_RATE_EMA) * ob->rate + S_RATE_EMA * r : r;
    }
    ob->step_at = now;
    if (!rt_prom_enabled())
        return;
    const struct server_coord_point *pt = &s->step.sched;
    rt_prom_set("eigenbatch_step", NULL, "parameter version: steps completed",
                (double)s->data.version);
    if (s->step.sched_known) {
        rt_prom_set("eigenbatch_epoch", NULL, "epoch of the last step", (double)pt->epoch);
        rt_prom_set("eigenbatch_batch_size", NULL, "global batch B of the last step", pt->batch);
        rt_prom_set("eigenbatch_lr", NULL, "learning rate of the last step", pt->lr);
        rt_prom_set("eigenbatch_gamma", NULL, "adversarial fraction of the last step", pt->gamma);
    }
    if (n) {
        rt_prom_set("eigenbatch_loss", NULL, "mean training loss of the last step",
                    s->step.prev_loss / (double)n);
        rt_prom_set("eigenbatch_train_accuracy", NULL,
                    "fraction of the last step's samples classified correctly",
                    (double)s->step.prev_correct / (double)n);
    }
    rt_prom_set("eigenbatch_images_per_second", NULL,
                "training samples per second over the recent steps (smoothed)", ob->rate);
    rt_prom_set("eigenbatch_bad_records", NULL,
                "undecodable records the workers' loaders skipped, summed over the workers",
                (double)server_shard_obs_bad_total(s));
    double sum = s_weights(s);
    for (int i = 0; i < s->cfg.n_workers; i++)
        s_worker_gauges(s, i, sum > 0 ? s->obs.w[i] / sum : 0);
}
