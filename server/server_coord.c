/*
 * server_coord: membership, shares and the schedule in force (see server_coord.h).
 */
#include "server_coord.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "server_sched.h"

/* Steps whose share tables are remembered. Synchronous training has at most two steps in flight
 * (a fast worker asks for t+1 before a slow one has asked for t), so a few are plenty. */
#define S_SNAP_RING 8

/* The share weights frozen for one step, so that every worker of the step sees the same table
 * however the weights move meanwhile. */
struct s_snap {
    uint64_t step; /* step the table belongs to */
    int valid;     /* slot in use */
    double *w;     /* n_workers weights */
    int lead;      /* the step's lead worker (s_lead_freeze) */
};

#define S_CKPT_MARKS 4 /* steps marked for a time-based checkpoint that are remembered */

struct server_coord {
    int n_workers;                          /* slots */
    int registered;                         /* slots taken, ids 0..registered-1 */
    double *weight;                         /* share weight per id (current) */
    double *speed;                          /* per id: smoothed reported samples/s (0: none) */
    double *target;                         /* scratch: weights the speeds call for */
    struct s_snap snap[S_SNAP_RING];        /* frozen share weights per step */
    double *last_seen;                      /* monotonic seconds of the last message per id */
    int *evicted;                           /* per id: 1 once evicted (until a rejoin) */
    uint64_t *join_step;                    /* per id: first step it takes part in */
    char (*names)[RT_WIRE_NAME_MAX];        /* per id: the name it registered with */
    int evict_ms;                           /* eviction timeout (<= 0: never) */
    const struct server_coord_sched *sched; /* schedule in force (borrowed) */
    uint64_t next_step;                     /* first step not asked about yet */
    int sync;                               /* hold epoch starts for their decision */
    int64_t decided_epoch;                  /* highest epoch a decision arrived for (-1: none) */
    int sync_timeout_ms;                    /* longest hold of an epoch start (sync) */
    int64_t hold_epoch;                     /* epoch whose start is held (-1: none) */
    double hold_since;                      /* when that hold began (monotonic seconds) */
    int has_abs;                            /* `abs` holds the eigen service's ABS state */
    struct rt_wire_abs abs;                 /* its latest ABS state (checkpoints, restarts) */
    double ckpt_every_s;                    /* a checkpoint this often (<= 0: none by time) */
    double ckpt_last;                       /* monotonic seconds of the last one marked */
    uint64_t ckpt_steps[S_CKPT_MARKS];      /* steps marked for a checkpoint (+1; 0: unused) */
    int ckpt_next;                          /* next slot of ckpt_steps */
    int lead;                               /* lead worker of the last frozen step (-1: none) */
    uint64_t lead_join;                     /* its join step when it was chosen */
};

server_coord_t *server_coord_new(int n_workers, const struct server_coord_sched *sched)
{
    if (n_workers < 1 || !sched || !sched->ops || !sched->ops->at)
        return NULL;
    server_coord_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->n_workers = n_workers;
    c->sched = sched;
    c->decided_epoch = -1;
    c->sync_timeout_ms = SERVER_COORD_SYNC_TIMEOUT_MS;
    c->hold_epoch = -1;
    c->lead = -1;
    c->weight = calloc((size_t)n_workers, sizeof *c->weight);
    c->speed = calloc((size_t)n_workers, sizeof *c->speed);
    c->target = calloc((size_t)n_workers, sizeof *c->target);
    c->last_seen = calloc((size_t)n_workers, sizeof *c->last_seen);
    c->evicted = calloc((size_t)n_workers, sizeof *c->evicted);
    c->join_step = calloc((size_t)n_workers, sizeof *c->join_step);
    c->names = calloc((size_t)n_workers, sizeof *c->names);
    if (!c->weight || !c->speed || !c->target || !c->last_seen || !c->evicted || !c->join_step ||
        !c->names) {
        server_coord_destroy(&c);
        return NULL;
    }
    for (int i = 0; i < S_SNAP_RING; i++) {
        c->snap[i].w = calloc((size_t)n_workers, sizeof(double));
        if (!c->snap[i].w) {
            server_coord_destroy(&c);
            return NULL;
        }
    }
    return c;
}

void server_coord_destroy(server_coord_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    server_coord_t *c = *self_p;
    free(c->weight);
    free(c->speed);
    free(c->target);
    free(c->last_seen);
    free(c->evicted);
    free(c->join_step);
    free(c->names);
    for (int i = 0; i < S_SNAP_RING; i++)
        free(c->snap[i].w);
    free(c);
    *self_p = NULL;
}

int server_coord_register(server_coord_t *c, const char *name, double weight)
{
    if (!(weight > 0) || !isfinite(weight))
        return rt_err_set(RT_ERR_ARG, "worker '%s': share weight %g must be positive", name,
                          weight);
    if (c->registered >= c->n_workers) {
        /* a rejoin: the evicted slot of the same name, else the first evicted one */
        int id = -1;
        for (int i = 0; i < c->n_workers; i++)
            if (c->evicted[i] && (id < 0 || !strcmp(c->names[i], name)))
                id = i;
        if (id < 0)
            return rt_err_set(RT_ERR_STATE, "worker '%s': all %d worker slots are taken", name,
                              c->n_workers);
        c->evicted[id] = 0;
        c->weight[id] = weight;
        c->speed[id] = 0; /* measured afresh */
        c->last_seen[id] = rt_clock_now();
        c->join_step[id] = c->next_step;
        snprintf(c->names[id], sizeof c->names[id], "%s", name);
        RT_WARN("coord", "worker '%s' rejoins as worker %d (weight %g) from step %llu", name, id,
                weight, (unsigned long long)c->next_step);
        return id;
    }
    int id = c->registered++;
    c->weight[id] = weight;
    c->last_seen[id] = rt_clock_now();
    snprintf(c->names[id], sizeof c->names[id], "%s", name ? name : "");
    RT_INFO("coord", "worker %d '%s' registered (weight %g, %d/%d)", id, name, weight,
            c->registered, c->n_workers);
    return id;
}

int server_coord_registered(const server_coord_t *c)
{
    return c->registered;
}

void server_coord_heartbeat(server_coord_t *c, int id)
{
    if (id >= 0 && id < c->registered && !c->evicted[id])
        c->last_seen[id] = rt_clock_now();
}

void server_coord_set_evict(server_coord_t *c, int timeout_ms)
{
    c->evict_ms = timeout_ms > 0 ? timeout_ms : 0;
}

int server_coord_heartbeat_ms(const server_coord_t *c)
{
    if (c->evict_ms <= 0)
        return 0;
    int ms = c->evict_ms / 4;
    return ms < 1 ? 1 : (ms > SERVER_COORD_HEARTBEAT_MAX_MS ? SERVER_COORD_HEARTBEAT_MAX_MS : ms);
}

int server_coord_overdue(const server_coord_t *c, const int *gone, double *silent_ms)
{
    if (c->evict_ms <= 0)
        return -1;
    double now = rt_clock_now();
    for (int i = 0; i < c->registered; i++) {
        if (c->evicted[i] || (gone && gone[i]))
            continue;
        double ms = (now - c->last_seen[i]) * 1000.0;
        if (ms > (double)c->evict_ms) {
            if (silent_ms)
                *silent_ms = ms;
            return i;
        }
    }
    return -1;
}

int server_coord_is_evicted(const server_coord_t *c, int id)
{
    return id >= 0 && id < c->n_workers && c->evicted[id];
}

int server_coord_evict(server_coord_t *c, int id, uint64_t from_step,
                       struct server_coord_loss *loss)
{
    if (id < 0 || id >= c->registered || c->evicted[id])
        return rt_err_set(RT_ERR_ARG, "worker %d is not a registered member", id);
    struct server_coord_loss l = {0};
    /* steps announced with a share for it: nobody else computes that share */
    for (uint64_t t = from_step; t < c->next_step; t++) {
        struct s_snap *sn = &c->snap[t % S_SNAP_RING];
        struct server_coord_point pt;
        if (!sn->valid || sn->step != t || !(sn->w[id] > 0) ||
            c->sched->ops->at(c->sched->self, t, &pt) || pt.done)
            continue;
        uint32_t off, cnt;
        server_coord_share(pt.samples ? pt.samples : pt.batch, sn->w, c->n_workers, id, &off, &cnt);
        if (!cnt)
            continue;
        if (!l.steps) {
            l.first_step = t;
            l.epoch = pt.epoch;
        }
        l.steps++;
        l.samples += cnt;
        RT_WARN("coord",
                "worker %d evicted: samples [%llu, +%u) of epoch %llu's order (step %llu) get no "
                "(or only a partial) gradient in this epoch",
                id, (unsigned long long)(pt.epoch_offset + off), cnt, (unsigned long long)pt.epoch,
                (unsigned long long)t);
    }
    c->evicted[id] = 1;
    c->weight[id] = 0;
    c->speed[id] = 0;
    if (loss)
        *loss = l;
    return RT_OK;
}

uint64_t server_coord_join_step(const server_coord_t *c, int id)
{
    return id >= 0 && id < c->n_workers ? c->join_step[id] : 0;
}

int server_coord_is_member(const server_coord_t *c, int id, uint64_t step)
{
    return id >= 0 && id < c->registered && !c->evicted[id] && step >= c->join_step[id];
}

uint32_t server_coord_members(const server_coord_t *c, uint64_t step, uint8_t *bits, uint32_t cap)
{
    int all = 1;
    for (int i = 0; i < c->n_workers; i++)
        all &= i >= c->registered || server_coord_is_member(c, i, step);
    uint32_t len = (uint32_t)(c->n_workers + 7) / 8;
    if (all || len > cap)
        return 0;
    memset(bits, 0, len);
    for (int i = 0; i < c->n_workers; i++)
        if (i >= c->registered || server_coord_is_member(c, i, step))
            bits[i / 8] |= (uint8_t)(1u << (i % 8));
    return len;
}

int server_coord_set_weight(server_coord_t *c, int id, double weight)
{
    if (id < 0 || id >= c->registered)
        return rt_err_set(RT_ERR_ARG, "no worker %d", id);
    if (c->evicted[id])
        return RT_OK; /* it has no share any more */
    if (!(weight > 0) || !isfinite(weight))
        return rt_err_set(RT_ERR_ARG, "worker %d: share weight %g must be positive", id, weight);
    if (weight != c->weight[id])
        RT_DEBUG("coord", "worker %d share weight %g -> %g", id, c->weight[id], weight);
    c->weight[id] = weight;
    return RT_OK;
}

void server_coord_weights(const server_coord_t *c, double *w)
{
    memcpy(w, c->weight, (size_t)c->n_workers * sizeof *w);
}

int server_coord_worker_info(const server_coord_t *c, int id, struct server_coord_worker *out)
{
    memset(out, 0, sizeof *out);
    if (id < 0 || id >= c->registered)
        return RT_ERR_ARG;
    snprintf(out->name, sizeof out->name, "%s", c->names[id]);
    out->weight = c->weight[id];
    out->speed = c->speed[id];
    out->silent_s = c->last_seen[id] > 0 ? rt_clock_now() - c->last_seen[id] : -1;
    out->evicted = c->evicted[id];
    out->join_step = c->join_step[id];
    return RT_OK;
}

/* The share weights measured speeds call for, into t: each member's speed over the members' mean
 * speed, a share under SERVER_COORD_MIN_SHARE of an equal one raised to it (the others keep their
 * ratios). Returns the members, or 0 while one of them has not reported. */
static int s_speed_weights(const server_coord_t *c, double *t)
{
    int n = 0, low = 0;
    double sum = 0, high = 0;
    for (int i = 0; i < c->n_workers; i++) {
        t[i] = 0;
        if (i >= c->registered || c->evicted[i])
            continue;
        if (!(c->speed[i] > 0))
            return 0;
        n++;
        sum += c->speed[i];
    }
    if (!n)
        return 0;
    for (int i = 0; i < c->n_workers; i++)
        if (c->speed[i] > 0 && !c->evicted[i] && i < c->registered) {
            t[i] = c->speed[i] * n / sum; /* mean 1 */
            if (t[i] < SERVER_COORD_MIN_SHARE)
                low++;
            else
                high += t[i];
        }
    /* raised ones get m with n * m / (high + low * m) = MIN: exactly the minimum share */
    double m = low ? SERVER_COORD_MIN_SHARE * high / (n - low * SERVER_COORD_MIN_SHARE) : 0;
    for (int i = 0; i < c->n_workers; i++)
        if (t[i] > 0 && t[i] < SERVER_COORD_MIN_SHARE)
            t[i] = m;
    return n;
}

int server_coord_report_speed(server_coord_t *c, int id, double samples_per_s, uint64_t *from_step)
{
    if (id < 0 || id >= c->registered)
        return rt_err_set(RT_ERR_ARG, "no worker %d", id);
    if (!(samples_per_s > 0) || !isfinite(samples_per_s))
        return rt_err_set(RT_ERR_ARG, "worker %d: speed %g must be positive", id, samples_per_s);
    if (c->evicted[id])
        return 0; /* it has no share any more */
    c->speed[id] = c->speed[id] > 0 ? (1 - SERVER_COORD_SPEED_EMA) * c->speed[id] +
                                          SERVER_COORD_SPEED_EMA * samples_per_s
                                    : samples_per_s;
    double *t = c->target;
    int n = s_speed_weights(c, t);
    if (!n)
        return 0;
    /* compare with the weights in force, on the same scale (mean 1 over the members) */
    double cur = 0;
    for (int i = 0; i < c->n_workers; i++)
        cur += t[i] > 0 ? c->weight[i] : 0;
    int move = !(cur > 0);
    for (int i = 0; i < c->n_workers && !move; i++) {
        double w = c->weight[i] * n / cur;
        move = t[i] > 0 && fabs(t[i] - w) > SERVER_COORD_BALANCE_DEADBAND * w;
    }
    if (!move)
        return 0;
    for (int i = 0; i < c->n_workers; i++)
        if (t[i] > 0)
            c->weight[i] = t[i];
    if (from_step)
        *from_step = c->next_step;
    return 1;
}

void server_coord_share(uint32_t batch, const double *w, int n, int i, uint32_t *off, uint32_t *cnt)
{
    double total = 0, before = 0;
    for (int k = 0; k < n; k++) {
        total += w[k];
        if (k < i)
            before += w[k];
    }
    if (!(total > 0) || !(w[i] > 0)) {
        *off = 0;
        *cnt = 0;
        return;
    }
    /* cumulative rounding: boundary k is round(B * W_<k / W); the last boundary is exactly B */
    uint32_t lo = (uint32_t)llround((double)batch * before / total);
    uint32_t hi = i == n - 1 ? batch : (uint32_t)llround((double)batch * (before + w[i]) / total);
    if (hi > batch)
        hi = batch;
    if (lo > hi)
        lo = hi;
    *off = lo;
    *cnt = hi - lo;
}

/* Sync mode: 1 when the start of `epoch` has been held for longer than the sync timeout. Then the
 * epoch goes ahead with the schedule in force (a dead eigen service costs stale decisions, never
 * the run), and a later decision still applies from the next step not yet announced. */
static int s_hold_expired(server_coord_t *c, int64_t epoch)
{
    double now = rt_clock_now();
    if (c->hold_epoch != epoch) {
        c->hold_epoch = epoch;
        c->hold_since = now;
        return 0;
    }
    if ((now - c->hold_since) * 1000.0 < (double)c->sync_timeout_ms)
        return 0;
    RT_WARN("coord",
            "no decision for epoch %lld after %d ms (decisions: sync): epoch %lld starts with the "
            "schedule in force",
            (long long)epoch - 1, c->sync_timeout_ms, (long long)epoch);
    c->decided_epoch = epoch - 1;
    return 1;
}

/* The longest-standing member of `step` (earliest join step, then lowest id), or -1 when none. */
static int s_senior_member(const server_coord_t *c, uint64_t step)
{
    int best = -1;
    for (int i = 0; i < c->registered; i++)
        if (server_coord_is_member(c, i, step) &&
            (best < 0 || c->join_step[i] < c->join_step[best]))
            best = i;
    return best;
}

/* 1 while the lead chosen last is a member of `step` and has not rejoined since. */
static int s_lead_holds(const server_coord_t *c, uint64_t step)
{
    return server_coord_is_member(c, c->lead, step) && c->join_step[c->lead] == c->lead_join;
}

/* The lead of `step` as its share table is frozen: the lead so far while it holds, else the
 * longest-standing member (in a run without evictions: the lowest id, worker 0). It never moves
 * to a worker that rejoined after an eviction while another has been there longer: the lead
 * holds the totals of the epoch in progress, which a rejoined worker lacks. */
static int s_lead_freeze(server_coord_t *c, uint64_t step)
{
    if (!s_lead_holds(c, step)) {
        int was = c->lead;
        c->lead = s_senior_member(c, step);
        c->lead_join = c->lead >= 0 ? c->join_step[c->lead] : 0;
        if (was >= 0 && c->lead >= 0)
            RT_WARN("coord",
                    "worker %d is the lead from step %llu (worker %d was evicted): it writes the "
                    "metrics and the final weights",
                    c->lead, (unsigned long long)step, was);
    }
    return c->lead;
}

int server_coord_lead(const server_coord_t *c, uint64_t step)
{
    const struct s_snap *sn = &c->snap[step % S_SNAP_RING];
    if (sn->valid && sn->step == step)
        return sn->lead;
    return s_lead_holds(c, step) ? c->lead : s_senior_member(c, step);
}

int server_coord_step(server_coord_t *c, int id, uint64_t step, struct server_coord_point *pt,
                      uint32_t *share_off, uint32_t *share_cnt)
{
    if (c->registered < c->n_workers)
        return rt_err_set(RT_ERR_STATE, "waiting for workers: %d of %d registered", c->registered,
                          c->n_workers);
    if (id < 0 || id >= c->n_workers)
        return rt_err_set(RT_ERR_PEER, "no worker %d", id);
    if (c->evicted[id])
        return rt_err_set(RT_ERR_EVICTED,
                          "worker %d was evicted (silent, or its pushes kept "
                          "being rejected)",
                          id);
    if (c->sync && step >= c->next_step) {
        /* a step not announced yet: hold it if it starts an epoch whose decision is missing */
        int rc = c->sched->ops->at(c->sched->self, step, pt);
        if (rc)
            return rc;
        if (!pt->done && pt->epoch >= 1 && pt->epoch_offset == 0 &&
            (int64_t)pt->epoch - 1 > c->decided_epoch && !s_hold_expired(c, (int64_t)pt->epoch)) {
            server_coord_heartbeat(c, id);
            return rt_err_set(RT_ERR_STATE,
                              "step %llu starts epoch %llu: waiting for the "
                              "decision of epoch %llu (decisions: sync)",
                              (unsigned long long)step, (unsigned long long)pt->epoch,
                              (unsigned long long)pt->epoch - 1);
        }
    }
    int rc = server_coord_sched(c, step, pt);
    if (rc)
        return rc;
    server_coord_heartbeat(c, id);
    struct s_snap *sn = &c->snap[step % S_SNAP_RING];
    if (!sn->valid || sn->step != step) {
        if (sn->valid && sn->step > step)
            RT_WARN("coord", "worker %d asks for step %llu, long past: shares may overlap", id,
                    (unsigned long long)step);
        memcpy(sn->w, c->weight, (size_t)c->n_workers * sizeof(double));
        sn->step = step;
        sn->valid = 1;
        sn->lead = s_lead_freeze(c, step);
    }
    server_coord_share(pt->samples ? pt->samples : pt->batch, sn->w, c->n_workers, id, share_off,
                       share_cnt);
    return RT_OK;
}

int server_coord_sched(server_coord_t *c, uint64_t step, struct server_coord_point *pt)
{
    int rc = c->sched->ops->at(c->sched->self, step, pt);
    if (rc)
        return rc;
    if (step >= c->next_step) {
        /* the first announcement of the step: mark it for a checkpoint when one is due by time
         * (not an epoch's last step: the epoch checkpoints cover those) */
        double now = rt_clock_now();
        if (c->ckpt_every_s > 0 && now - c->ckpt_last >= c->ckpt_every_s && !pt->done &&
            !pt->epoch_last) {
            c->ckpt_steps[c->ckpt_next] = step + 1;
            c->ckpt_next = (c->ckpt_next + 1) % S_CKPT_MARKS;
            c->ckpt_last = now;
        }
        c->next_step = step + 1;
    }
    pt->checkpoint = 0;
    for (int i = 0; i < S_CKPT_MARKS; i++)
        pt->checkpoint |= c->ckpt_steps[i] == step + 1;
    return RT_OK;
}

int server_coord_peek(const server_coord_t *c, uint64_t step, struct server_coord_point *pt)
{
    return c->sched->ops->at(c->sched->self, step, pt);
}

void server_coord_set_ckpt_minutes(server_coord_t *c, double minutes)
{
    c->ckpt_every_s = minutes > 0 ? minutes * 60.0 : 0;
    c->ckpt_last = rt_clock_now();
}

void server_coord_set_sync(server_coord_t *c, int sync, int timeout_ms)
{
    c->sync = sync ? 1 : 0;
    c->sync_timeout_ms = timeout_ms > 0 ? timeout_ms : SERVER_COORD_SYNC_TIMEOUT_MS;
}

uint64_t server_coord_next_step(const server_coord_t *c)
{
    return c->next_step;
}

/* server_sched as a coordinator schedule. */
static int s_sched_at(void *self, uint64_t step, struct server_coord_point *out)
{
    struct server_sched_point p;
    if (step > INT64_MAX)
        return rt_err_set(RT_ERR_ARG, "step %llu out of range", (unsigned long long)step);
    int rc = server_sched_at(self, (int64_t)step, -1, &p);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    out->done = p.done;
    if (p.done)
        return RT_OK;
    if (p.batch < 1 || p.batch > UINT32_MAX || p.samples < 0 || p.samples > p.batch)
        return rt_err_set(RT_ERR_STATE, "step %llu: batch %lld / %lld samples out of range",
                          (unsigned long long)step, (long long)p.batch, (long long)p.samples);
    out->epoch = (uint64_t)p.epoch;
    out->epoch_offset = (uint64_t)p.offset;
    out->version = p.version;
    out->batch = (uint32_t)p.batch;
    out->samples = (uint32_t)p.samples;
    out->lr = (float)p.lr;
    out->gamma = (float)p.gamma;
    struct server_sched_point next;
    if (server_sched_at(self, (int64_t)step + 1, -1, &next) == RT_OK)
        out->epoch_last = next.done || next.epoch != p.epoch;
    return RT_OK;
}

static int s_sched_decide(void *self, const struct rt_wire_decision *d, uint64_t next_step,
                          uint64_t *apply_step, uint64_t *version)
{
    struct server_sched_decision in =
                                     {
                                         .seq = d->seq,
                                         .snapshot_version = d->snapshot_version,
                                         .epoch = d->epoch,
                                         .batch = d->batch,
                                         .lr_base = d->lr_base,
                                         .gamma_base = d->gamma_base,
                                         .lambda = d->lambda,
                                     },
                                 stamped;
    if (next_step > INT64_MAX)
        return rt_err_set(RT_ERR_STATE, "step %llu out of range", (unsigned long long)next_step);
    int verdict = server_sched_accept(self, &in, (int64_t)next_step, &stamped);
    if (verdict == SERVER_SCHED_ACCEPTED) {
        *apply_step = (uint64_t)stamped.apply_step;
        *version = stamped.version;
    }
    return verdict;
}

static int s_sched_last(void *self, struct rt_wire_decision *out)
{
    uint32_t v = server_sched_version(self);
    const struct server_sched_decision *d = v ? server_sched_decision(self, v) : NULL;
    if (!d)
        return rt_err_set(RT_ERR_STATE, "no decision accepted yet");
    memset(out, 0, sizeof *out);
    out->seq = d->seq;
    out->snapshot_version = d->snapshot_version;
    out->epoch = d->epoch;
    out->batch = d->batch;
    out->lr_base = d->lr_base;
    out->gamma_base = d->gamma_base;
    out->lambda = d->lambda;
    out->apply_step = (uint64_t)d->apply_step;
    out->sched_version = d->version;
    return RT_OK;
}

static void s_sched_get_state(void *self, struct server_sched_state *out)
{
    server_sched_get_state(self, out);
}

static int s_sched_set_state(void *self, const struct server_sched_state *in)
{
    return server_sched_set_state(self, in);
}

static const struct server_coord_sched_ops s_sched_ops = {
    s_sched_at, NULL, s_sched_decide, s_sched_last, s_sched_get_state, s_sched_set_state};

void server_coord_set_abs(server_coord_t *c, const struct rt_wire_abs *abs)
{
    if (c->has_abs && abs->last_epoch < c->abs.last_epoch)
        return;
    c->abs = *abs;
    c->has_abs = 1;
}

int server_coord_get_abs(const server_coord_t *c, struct rt_wire_abs *out)
{
    if (!c->has_abs)
        return rt_err_set(RT_ERR_STATE, "no ABS state held");
    *out = c->abs;
    return RT_OK;
}

void server_coord_resume(server_coord_t *c, uint64_t step, const struct rt_wire_abs *abs)
{
    if (step > c->next_step)
        c->next_step = step;
    c->has_abs = 0;
    if (abs)
        server_coord_set_abs(c, abs);
}

int server_coord_last_decision(server_coord_t *c, struct rt_wire_decision *out)
{
    if (!c->sched->ops->last)
        return rt_err_set(RT_ERR_UNSUPPORTED, "this schedule takes no eigen-service decisions");
    return c->sched->ops->last(c->sched->self, out);
}

int server_coord_decide(server_coord_t *c, const struct rt_wire_decision *d, uint64_t *apply_step,
                        uint64_t *version)
{
    if (!c->sched->ops->decide)
        return rt_err_set(RT_ERR_UNSUPPORTED, "this schedule takes no eigen-service decisions");
    int v = c->sched->ops->decide(c->sched->self, d, c->next_step, apply_step, version);
    if (v >= 0 && d->epoch > c->decided_epoch)
        c->decided_epoch = d->epoch;
    /* the rule's state moves on with every decision the schedule took or found unchanged; a
     * stale or superseded one is replaced by the service's resumed state with its next decision */
    if (d->has_abs &&
        (v == SERVER_SCHED_ACCEPTED || v == SERVER_SCHED_NOCHANGE || v == SERVER_SCHED_DUPLICATE))
        server_coord_set_abs(c, &d->abs);
    if (v == 0)
        RT_INFO("coord", "decision %llu (epoch %d, B %lld, lr %g): version %llu from step %llu",
                (unsigned long long)d->seq, d->epoch, (long long)d->batch, d->lr_base,
                (unsigned long long)*version, (unsigned long long)*apply_step);
    return v;
}

void server_coord_use_sched(struct server_coord_sched *out, struct server_sched *sched)
{
    out->ops = &s_sched_ops;
    out->self = sched;
}
