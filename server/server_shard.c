/*
 * server_shard: one parameter-server shard and, on shard 0, the coordinator's message handling
 * (see server_shard.h).
 */
#include "server_shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_net.h"
#include "rt_ckpt.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "rt_sock.h"
#include "server_ckpt.h"
#include "server_sched.h"

#define S_POLL_MS 100          /* poll period: how often `stop` is checked */
#define S_MAX_PENDING 256      /* queued pulls waiting for a future version */
#define S_ZC_WAIT_MS 2000      /* wait for queued zero-copy frames at destroy */
#define S_APPLY_BLOCK 16384    /* floats updated per cache-sized block */
#define S_APPLY_MIN 65536      /* smallest prefix worth updating early */
#define S_SCHED_WAIT_MS 30000  /* shards > 0: longest wait for the coordinator's schedule */
#define S_SCHED_RETRY_US 5000  /* pause before asking again while workers join */
#define S_CKPT_WAIT_MS 30000   /* shard 0 at the end: longest wait for the last checkpoint */
#define S_CKPT_POLL_MS 10      /* ... checking this often */
#define S_MEMBERS_POLL_MS 200  /* shards > 0: ask the members of a waiting step this often */
#define S_MEMBERS_WAIT_MS 1000 /* ... and wait this long for the answer */
#define S_PULL_AHEAD                                                                               \
    8 /* pulls kept waiting for up to this many versions ahead (a worker                           \
         that rejoins starts a step or two ahead of a lagging shard) */
#define S_END_LINGER_MS                                                                            \
    1000 /* shard 0: answer the other shards this long after the end when a                        \
            worker was evicted (they learn it from the coordinator) */

/* A worker as this shard sees it. */
struct s_worker {
    uint8_t route[RT_SOCK_ROUTE_MAX]; /* ROUTER routing id bound to the worker id */
    size_t route_len;                 /* 0: not bound yet */
    char name[RT_WIRE_NAME_MAX];      /* worker's name */
    uint64_t p_recv;                  /* floats of the current step's (or INIT's) slice received */
    int b_recv;                       /* buffer slice of the current step received */
    uint32_t samples;                 /* samples behind the current step's gradient */
    int complete;                     /* current step's slices all received */
    int bye;                          /* said goodbye */
    int evicted;                      /* evicted by the coordinator: no longer awaited */
    int rebound;                      /* evicted, and bound to its restarted process since: it is
                                         awaited again from the step it rejoins at */
};

/* A pull waiting for a future version. */
struct s_pull {
    uint8_t route[RT_SOCK_ROUTE_MAX]; /* requester */
    size_t route_len;                 /* bytes of route */
    uint64_t version;                 /* version wanted */
};

struct server_shard {
    struct server_shard_cfg cfg;         /* configuration (endpoint/init pointers not kept) */
    void *ctx;                           /* ZeroMQ context */
    int own_ctx;                         /* ctx created here */
    void *sock;                          /* bound ROUTER */
    uint64_t p_off, p_cnt;               /* parameter range */
    uint64_t b_off, b_cnt;               /* buffer range */
    float *w;                            /* weights of the range */
    float *mom;                          /* momentum of the range */
    float *acc;                          /* sum over workers of samples * gradient */
    float *bw;                           /* buffers of the range */
    float *bacc;                         /* sum over workers of samples * buffers */
    int ready;                           /* weights initialised (version 0 exists) */
    uint64_t version;                    /* updates applied; pushes must be for step == version */
    int n_complete;                      /* workers whose slice of the current step is complete */
    int n_started;                       /* workers that sent a chunk of the current step */
    uint64_t total_samples;              /* samples of the current step (known once all started) */
    double total_loss;                   /* sum over its workers of samples * mean loss */
    uint64_t total_correct;              /* samples of the current step classified correctly */
    uint64_t prev_samples;               /* the step before `version`: samples, over every worker */
    double prev_loss;                    /* ... summed loss */
    uint64_t prev_correct;               /* ... correctly classified (shard 0 serves the three) */
    uint64_t summed;                     /* floats [0, summed) hold at least one contribution */
    int b_summed;                        /* bacc holds at least one contribution */
    uint64_t applied;                    /* floats [0, applied) already updated for this step */
    int sched_known;                     /* `sched` holds the schedule of step `version` */
    struct server_coord_point sched;     /* schedule of the current step, from the coordinator */
    void *coord_sock;                    /* shards > 0: DEALER to the coordinator */
    struct rt_sock_in cin;               /* shards > 0: the coordinator's replies */
    struct s_worker *workers;            /* n_workers entries */
    struct s_pull pend[S_MAX_PENDING];   /* pulls for a future version */
    int n_pend;                          /* entries in pend */
    struct rt_sock_zc zc;                /* zero-copy frames of weights in flight */
    uint64_t *wck;                       /* checksum of each weights chunk of version wck_version */
    uint64_t bck;                        /* checksum of the buffer slice of that version */
    float *snap_w;                       /* snapshots: the slice at the latest epoch start */
    float *snap_b;                       /* and its buffers */
    uint64_t snap_version;               /* version of the snapshot; UINT64_MAX: none yet */
    uint64_t snap_epoch;                 /* the epoch it starts */
    uint64_t wck_version;                /* version the checksums belong to; UINT64_MAX: none */
    struct rt_sock_in in;                /* the message being handled (ROUTER) */
    server_coord_t *coord;               /* shard 0: coordinator, else NULL */
    struct rt_wire_limits lim;           /* decode limits */
    char name[RT_WIRE_NAME_MAX];         /* "shard-<i>" */
    char endpoint[RT_SOCK_ENDPOINT_MAX]; /* endpoint bound */
    struct server_shard_stats st;        /* counters */
    uint64_t start_step;                 /* version resumed from (0: a fresh start) */
    char ckpt_root[RT_CKPT_PATH_MAX];    /* checkpoints go under here ("": none) */
    char model[SERVER_CKPT_MODEL_MAX];   /* model name for checkpoints ("": unknown) */
    int ckpt_pending;                    /* shard 0: ckpt waits for the other shards' files */
    char ckpt_dir[RT_CKPT_PATH_MAX];     /* shard 0: that checkpoint's directory */
    struct server_ckpt_coord *ckpt;      /* shard 0: its coordinator part (allocated once) */
    double ckpt_next_poll;               /* shard 0: monotonic time of the next look at it */
    double members_at;                   /* shards > 0: when the members were last asked */
    double end_at;                       /* when to return after the last goodbye (0: not yet) */
};

/* ---- helpers ---------------------------------------------------------------------------- */

/* 1 when the worker has sent a chunk of the current step. */
static int s_started(const struct s_worker *w)
{
    return w->p_recv > 0 || w->b_recv || w->complete;
}

/* 1 when an evicted worker's contribution to the current step is partial here: it covers the
 * parameters [0, p_recv) (and the buffers when b_recv), not the rest. */
static int s_partial(const struct s_worker *w)
{
    return w->evicted && !w->complete && s_started(w);
}

/* Log a dropped message with its sender and the reason. */
static void s_drop(server_shard_t *s, const uint8_t *route, size_t rlen,
                   const struct rt_wire_msg *m, const char *why)
{
    char hex[RT_SOCK_ROUTE_HEX];
    rt_sock_route_hex(route, rlen, hex, sizeof hex);
    s->st.dropped++;
    if (m)
        RT_WARN(s->name, "dropped %s from peer %s (worker %d '%s', step %llu): %s",
                rt_wire_type_name(m->type), hex, m->sender, m->name, (unsigned long long)m->step,
                why);
    else
        RT_WARN(s->name, "dropped message from peer %s: %s", hex, why);
}

static int s_route_eq(const struct s_worker *w, const uint8_t *route, size_t rlen)
{
    return w->route_len == rlen && !memcmp(w->route, route, rlen);
}

/* The worker a data-plane message claims to be, if the connection is bound to it; else NULL. */
static struct s_worker *s_bound(server_shard_t *s, const uint8_t *route, size_t rlen,
                                const struct rt_wire_msg *m)
{
    if (m->sender < 0 || m->sender >= s->cfg.n_workers)
        return NULL;
    struct s_worker *w = &s->workers[m->sender];
    return w->route_len && s_route_eq(w, route, rlen) ? w : NULL;
}

static int s_reply_error(server_shard_t *s, const uint8_t *route, size_t rlen, uint64_t step,
                         int code, const char *text)
{
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_ERROR, s->cfg.shard, s->name);
    r.step = step;
    r.err_code = code;
    snprintf(r.text, sizeof r.text, "%s", text);
    return rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL);
}

/* Send the weights of the current version to one peer, in chunks; the buffer slice rides with
 * the first chunk. Weights go zero-copy: they do not change before every worker has received them
 * (the next update needs every worker's push, which follows its pull). */
static int s_send_weights(server_shard_t *s, const uint8_t *route, size_t rlen)
{
    uint64_t chunk = s->cfg.chunk_floats;
    uint64_t done = 0;
    int first = 1;
    do {
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_WEIGHTS, s->cfg.shard, s->name);
        r.step = s->version;
        r.checksum = s->cfg.checksum;
        if (s->coord && s->version > 0) {
            /* the coordinator's totals of the step that made this version (train metrics) */
            r.samples = (uint32_t)s->prev_samples;
            r.loss = s->prev_samples ? (float)(s->prev_loss / (double)s->prev_samples) : 0.0f;
            r.correct = (uint32_t)s->prev_correct;
        }
        uint64_t k = s->p_cnt - done < chunk ? s->p_cnt - done : chunk;
        if (k > 0) {
            r.has_params = 1;
            r.params.offset = s->p_off + done;
            r.params.count = k;
        }
        if (first && s->b_cnt > 0) {
            r.has_buffers = 1;
            r.buffers.offset = s->b_off;
            r.buffers.count = s->b_cnt;
        }
        if (!r.has_params && !r.has_buffers)
            break;
        /* every worker pulls the same chunks: checksum each once per version */
        uint64_t ci = done / chunk;
        if (s->wck_version != s->version) {
            rt_wire_seal(&r, s->w + done, s->bw);
            if (r.has_params)
                s->wck[ci] = r.params.checksum;
            if (r.has_buffers)
                s->bck = r.buffers.checksum;
            if (done + k >= s->p_cnt)
                s->wck_version = s->version;
        } else {
            r.params.checksum = r.has_params ? s->wck[ci] : 0;
            r.buffers.checksum = r.has_buffers ? s->bck : 0;
        }
        r.sealed = 1;
        int rc = rt_sock_send(s->sock, route, rlen, &r, s->w + done, s->bw, &s->zc);
        if (rc)
            return rc;
        done += k;
        first = 0;
    } while (done < s->p_cnt);
    s->st.pulls++;
    return RT_OK;
}

/* Answer the pulls waiting for the current version. */
static void s_serve_pending(server_shard_t *s)
{
    int keep = 0;
    for (int i = 0; i < s->n_pend; i++) {
        struct s_pull *p = &s->pend[i];
        if (s->ready && p->version == s->version) {
            int rc = s_send_weights(s, p->route, p->route_len);
            if (rc)
                RT_WARN(s->name, "weights reply failed: %s", rt_err_msg());
        } else {
            s->pend[keep++] = *p;
        }
    }
    s->n_pend = keep;
}

static void s_snapshot_take(server_shard_t *s, uint64_t epoch);
static void s_ckpt_write(server_shard_t *s, uint64_t epoch);
static void s_rejoin_check(server_shard_t *s);
static void s_members_poll(server_shard_t *s);

/* Update [s->applied, end): average the summed gradient and run SGD, a cache-sized block at a
 * time. Called as soon as every worker's chunks cover a prefix, so that the update overlaps the
 * rest of the push. */
/* Samples behind the summed gradient of parameter i of the range: the step's total, less the
 * evicted workers' whose partial slice stops at or before i; *seg_end gets the end of the run of
 * parameters with the same count. Without evictions: the total, up to the end. */
static uint64_t s_samples_at(const server_shard_t *s, uint64_t i, uint64_t *seg_end)
{
    uint64_t tot = s->total_samples, end = s->p_cnt;
    for (int k = 0; k < s->cfg.n_workers; k++) {
        const struct s_worker *w = &s->workers[k];
        if (!s_partial(w))
            continue;
        if (w->p_recv <= i)
            tot -= w->samples;
        else if (w->p_recv < end)
            end = w->p_recv;
    }
    *seg_end = end;
    return tot;
}

static void s_apply_upto(server_shard_t *s, uint64_t end)
{
    for (uint64_t a = s->applied; a < end;) {
        uint64_t seg;
        uint64_t tot = s_samples_at(s, a, &seg);
        float inv = tot ? 1.0f / (float)tot : 0.0f;
        if (seg > end)
            seg = end;
        while (a < seg) {
            uint64_t n = seg - a < S_APPLY_BLOCK ? seg - a : S_APPLY_BLOCK;
            float *g = s->acc + a;
            for (uint64_t i = 0; i < n; i++)
                g[i] *= inv;
            nn_sgd_step(s->w + a, s->mom + a, g, (size_t)n, s->sched.lr, s->cfg.momentum,
                        s->cfg.weight_decay);
            a += n;
        }
    }
    if (end > s->applied)
        s->applied = end;
}

/* Every worker's slice of the step is in: finish the update, average the buffers, new version. */
static void s_apply(server_shard_t *s)
{
    s_apply_upto(s, s->p_cnt);
    /* the buffers: averaged over the workers whose buffer slice arrived */
    uint64_t btot = s->total_samples;
    for (int k = 0; k < s->cfg.n_workers; k++)
        if (s_partial(&s->workers[k]) && !s->workers[k].b_recv)
            btot -= s->workers[k].samples;
    if (s->b_cnt && btot) {
        float inv = 1.0f / (float)btot;
        for (uint64_t i = 0; i < s->b_cnt; i++)
            s->bw[i] = s->bacc[i] * inv;
    }
    s->n_started = 0;
    s->summed = 0;
    s->b_summed = 0;
    s->applied = 0;
    for (int i = 0; i < s->cfg.n_workers; i++) {
        struct s_worker *w = &s->workers[i];
        w->p_recv = 0;
        w->b_recv = 0;
        w->samples = 0;
        w->complete = 0;
    }
    s->n_complete = 0;
    s->prev_samples = s->total_samples;
    s->prev_loss = s->total_loss;
    s->prev_correct = s->total_correct;
    s->total_samples = 0;
    s->total_loss = 0;
    s->total_correct = 0;
    s->version++;
    s->st.version = s->version;
    /* the step just applied ended its epoch: the new version is the next epoch's start, known
     * before anyone asks for its schedule (which `decisions: sync` holds until the decision) */
    if (s->cfg.snapshots && s->sched_known && !s->sched.done && s->sched.epoch_last)
        s_snapshot_take(s, s->sched.epoch + 1);
    /* ... and a checkpoint of that version, before anyone can pull it (and move on) */
    if (s->ckpt_root[0] && s->cfg.ckpt_every > 0 && s->sched_known && !s->sched.done &&
        s->sched.epoch_last && (s->sched.epoch + 1) % (uint64_t)s->cfg.ckpt_every == 0)
        s_ckpt_write(s, s->sched.epoch + 1);
    s->sched_known = 0;
    if (s->coord)
        s_rejoin_check(s);
    RT_DEBUG(s->name, "version %llu", (unsigned long long)s->version);
    s_serve_pending(s);
}

/* Copy the slice (the weights of the current version) as the snapshot of the start of `epoch`,
 * once per epoch. */
static void s_snapshot_take(server_shard_t *s, uint64_t epoch)
{
    if (s->snap_version != UINT64_MAX && epoch == s->snap_epoch)
        return;
    memcpy(s->snap_w, s->w, s->p_cnt * sizeof(float));
    if (s->b_cnt)
        memcpy(s->snap_b, s->bw, s->b_cnt * sizeof(float));
    s->snap_version = s->version;
    s->snap_epoch = epoch;
    RT_DEBUG(s->name, "snapshot of epoch %llu at version %llu", (unsigned long long)s->snap_epoch,
             (unsigned long long)s->snap_version);
}

/* With snapshots on, when the current step starts a new epoch: the weights are still those of
 * version `version`, the epoch's first (the bump in s_apply usually took it already). */
static void s_snapshot_maybe(server_shard_t *s)
{
    if (!s->cfg.snapshots || s->sched.done)
        return;
    s_snapshot_take(s, s->sched.epoch);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

/* Shard 0: complete the pending checkpoint when every shard's file is there (manifest, then
 * pruning). Not yet: stays pending. */
static void s_ckpt_poll(server_shard_t *s)
{
    if (!s->ckpt_pending)
        return;
    /* at most every S_CKPT_POLL_MS: each look opens every shard's file */
    double now = rt_clock_now();
    if (now < s->ckpt_next_poll)
        return;
    s->ckpt_next_poll = now + S_CKPT_POLL_MS / 1000.0;
    int rc = server_ckpt_finish(s->ckpt_dir, s->ckpt);
    if (rc == RT_ERR_STATE)
        return;
    s->ckpt_pending = 0;
    if (rc) {
        RT_ERROR(s->name, "checkpoint %s: %s", s->ckpt_dir, rt_err_msg());
        return;
    }
    RT_INFO(s->name, "checkpoint %s complete (epoch %llu, step %llu)", s->ckpt_dir,
            (unsigned long long)s->ckpt->epoch, (unsigned long long)s->ckpt->step);
    int keep = s->cfg.ckpt_keep > 0 ? s->cfg.ckpt_keep : SERVER_CKPT_KEEP_DEFAULT;
    if (rt_ckpt_prune(s->ckpt_root, keep))
        RT_WARN(s->name, "pruning checkpoints: %s", rt_err_msg());
}

/* Shard 0: wait a while for the pending checkpoint (the end of training). */
static void s_ckpt_drain(server_shard_t *s)
{
    for (int waited = 0; s->ckpt_pending && waited < S_CKPT_WAIT_MS; waited += S_CKPT_POLL_MS) {
        s_ckpt_poll(s);
        if (s->ckpt_pending)
            usleep(S_CKPT_POLL_MS * 1000);
    }
    if (s->ckpt_pending) {
        RT_ERROR(s->name, "checkpoint %s left incomplete (does every shard write checkpoints?): %s",
                 s->ckpt_dir, rt_err_msg());
        s->ckpt_pending = 0;
    }
}

/* The coordinator's part of the checkpoint of `epoch` (the current version ends epoch - 1). */
/* This shard's place in the flat vectors, as its checkpoint file records it (version and epoch
 * left to the writer). */
static struct server_ckpt_shard s_ckpt_layout(const server_shard_t *s)
{
    return (struct server_ckpt_shard){.shard = s->cfg.shard,
                                      .n_shards = s->cfg.n_shards,
                                      .n_params = s->cfg.n_params,
                                      .n_buffers = s->cfg.n_buffers,
                                      .p_off = s->p_off,
                                      .p_cnt = s->p_cnt,
                                      .b_off = s->b_off,
                                      .b_cnt = s->b_cnt};
}

static int s_ckpt_coord(server_shard_t *s, uint64_t epoch, const char *dir)
{
    const struct server_coord_sched *cs = s->cfg.sched;
    if (!cs->ops->get_state)
        return rt_err_set(RT_ERR_UNSUPPORTED, "this schedule cannot be checkpointed");
    struct server_ckpt_coord *c = s->ckpt;
    memset(c, 0, sizeof *c);
    c->epoch = epoch;
    c->step = s->version;
    c->n_shards = s->cfg.n_shards;
    c->n_params = s->cfg.n_params;
    c->n_buffers = s->cfg.n_buffers;
    snprintf(c->model, sizeof c->model, "%s", s->model);
    c->batch = s->sched.batch;
    c->lr = s->sched.lr;
    c->gamma = s->sched.gamma;
    c->sched_version = s->sched.version;
    cs->ops->get_state(cs->self, &c->sched);
    c->has_abs = server_coord_get_abs(s->coord, &c->abs) == RT_OK;
    return server_ckpt_coord_write(dir, c);
}

/* Write this shard's part of the checkpoint of `epoch` (shard 0: and the coordinator's, then try
 * to complete it). A failure is logged: training goes on, the checkpoint stays incomplete. */
static void s_ckpt_write(server_shard_t *s, uint64_t epoch)
{
    if (s->ckpt_pending) {
        RT_ERROR(s->name,
                 "checkpoint %s never completed: a shard's file is missing (does every "
                 "shard write checkpoints?)",
                 s->ckpt_dir);
        s->ckpt_pending = 0;
    }
    char dir[RT_CKPT_PATH_MAX];
    int rc = rt_ckpt_dir(dir, sizeof dir, s->ckpt_root, epoch);
    if (!rc)
        rc = rt_ckpt_mkdirs(dir);
    struct server_ckpt_shard h = s_ckpt_layout(s);
    h.version = s->version;
    h.epoch = epoch;
    if (!rc)
        rc = server_ckpt_shard_write(dir, &h, s->w, s->mom, s->bw);
    if (!rc && s->coord)
        rc = s_ckpt_coord(s, epoch, dir);
    if (rc) {
        RT_ERROR(s->name, "checkpoint of epoch %llu: %s", (unsigned long long)epoch, rt_err_msg());
        return;
    }
    RT_DEBUG(s->name, "checkpoint part of epoch %llu written at version %llu",
             (unsigned long long)epoch, (unsigned long long)s->version);
    if (s->coord) {
        snprintf(s->ckpt_dir, sizeof s->ckpt_dir, "%s", dir);
        s->ckpt_pending = 1;
        s->ckpt_next_poll = 0;
        s_ckpt_poll(s);
    }
}

/* Shard 0 resuming: the schedule (this run's configuration, the checkpoint's decisions) and the
 * ABS state, from the coordinator's files of dir. */
static int s_resume_coord(server_shard_t *s, const char *dir, uint64_t epoch, uint64_t step)
{
    const struct server_coord_sched *cs = s->cfg.sched;
    struct server_sched_state *cur = NULL;
    int rc;
    if (!cs->ops->get_state || !cs->ops->set_state)
        return rt_err_set(RT_ERR_UNSUPPORTED, "%s: this run's schedule cannot resume", dir);
    if ((rc = server_ckpt_check(dir, SERVER_CKPT_COORD, s->cfg.n_shards, s->cfg.n_params,
                                s->cfg.n_buffers, s->model, NULL, NULL)) ||
        (rc = server_ckpt_check(dir, SERVER_CKPT_SCHED, s->cfg.n_shards, s->cfg.n_params,
                                s->cfg.n_buffers, s->model, NULL, NULL)) ||
        (rc = server_ckpt_coord_read(dir, s->ckpt)))
        return rc;
    struct server_ckpt_coord *c = s->ckpt;
    if (c->epoch != epoch || c->step != step)
        return rt_err_set(
            RT_ERR_FORMAT, "%s/%s: epoch %llu step %llu, the manifest says epoch %llu step %llu",
            dir, SERVER_CKPT_COORD, (unsigned long long)c->epoch, (unsigned long long)c->step,
            (unsigned long long)epoch, (unsigned long long)step);
    if (!(cur = malloc(sizeof *cur)))
        return rt_err_set(RT_ERR_NOMEM, "schedule state");
    cs->ops->get_state(cs->self, cur);
    const struct server_sched_config *a = &c->sched.config, *b = &cur->config;
    const char *field = a->method != b->method               ? "schedule.method"
                        : a->dataset_size != b->dataset_size ? "dataset size (samples per epoch)"
                        : a->batch != b->batch               ? "schedule.batch"
                        : a->base_batch != b->base_batch     ? "schedule.base_batch"
                        : a->drop_last != b->drop_last       ? "drop_last"
                                                             : NULL;
    if (field) {
        rc = rt_err_set(RT_ERR_CONFIG, "%s/%s: %s differs from this run's configuration", dir,
                        SERVER_CKPT_SCHED, field);
        goto out;
    }
    /* this run's configuration (more epochs, a new decay, ...) with the decisions taken so far */
    struct server_sched_state st = c->sched;
    st.config = cur->config;
    if ((rc = cs->ops->set_state(cs->self, &st))) {
        rc = rt_err_set(rc, "%s/%s: %s", dir, SERVER_CKPT_SCHED, rt_err_msg());
        goto out;
    }
    struct server_coord_point pt;
    if ((rc = cs->ops->at(cs->self, step, &pt)))
        goto out;
    if (!pt.done && (pt.epoch != epoch || pt.epoch_offset != 0)) {
        rc = rt_err_set(RT_ERR_CONFIG,
                        "%s: the schedule puts step %llu at epoch %llu sample %llu, not at the "
                        "start of epoch %llu",
                        dir, (unsigned long long)step, (unsigned long long)pt.epoch,
                        (unsigned long long)pt.epoch_offset, (unsigned long long)epoch);
        goto out;
    }
    server_coord_resume(s->coord, step, c->has_abs ? &c->abs : NULL);
    RT_INFO(s->name, "resumed the schedule at epoch %llu, step %llu (B %u, lr %g, %u decisions)%s",
            (unsigned long long)epoch, (unsigned long long)step, c->batch, (double)c->lr,
            c->sched.n_decisions, c->has_abs ? " and the ABS state" : "");
out:
    free(cur);
    return rc;
}

/* Load this shard's part of the checkpoint cfg->resume (all of it on shard 0). */
static int s_resume(server_shard_t *s, const char *dir)
{
    char name[SERVER_CKPT_NAME_MAX];
    uint64_t epoch = 0, step = 0;
    server_ckpt_shard_name(name, sizeof name, s->cfg.shard);
    int rc = server_ckpt_check(dir, name, s->cfg.n_shards, s->cfg.n_params, s->cfg.n_buffers,
                               s->model, &epoch, &step);
    if (rc)
        return rc;
    struct server_ckpt_shard h = s_ckpt_layout(s);
    if ((rc = server_ckpt_shard_read(dir, &h, s->w, s->mom, s->bw)))
        return rc;
    if (h.version != step || h.epoch != epoch)
        return rt_err_set(RT_ERR_FORMAT,
                          "%s/%s: version %llu epoch %llu, the manifest says step %llu epoch %llu",
                          dir, name, (unsigned long long)h.version, (unsigned long long)h.epoch,
                          (unsigned long long)step, (unsigned long long)epoch);
    if (s->coord && (rc = s_resume_coord(s, dir, epoch, step)))
        return rc;
    s->version = step;
    s->st.version = step;
    s->start_step = step;
    s->ready = 1;
    if (s->cfg.snapshots)
        s_snapshot_take(s, epoch); /* the eigen service's snapshot of the epoch that starts */
    RT_INFO(s->name, "resumed from %s: epoch %llu, version %llu", dir, (unsigned long long)epoch,
            (unsigned long long)step);
    return RT_OK;
}

static void s_on_evicted(server_shard_t *s, int id, int progress);
static int s_sched_ask(server_shard_t *s, uint64_t step, struct server_coord_point *pt,
                       int wait_ms);

/* The members of the step as the coordinator sent them (bitmap; empty: every worker): the workers
 * left out are evicted here too (the step is not applied here: see s_on_evicted). */
static void s_members(server_shard_t *s, const uint8_t *bits, uint32_t len)
{
    for (int i = 0; i < s->cfg.n_workers; i++) {
        struct s_worker *w = &s->workers[i];
        int member = !len || ((uint32_t)(i / 8) < len && (bits[i / 8] & (1u << (i % 8))));
        if (!member)
            s_on_evicted(s, i, 0);
        else if (w->evicted && w->rebound && !s_started(w)) {
            /* a restarted worker takes part from here (a step it has not pushed yet) */
            w->evicted = 0;
            w->rebound = 0;
            RT_INFO(s->name, "worker %d '%s' takes part again from step %llu", i, w->name,
                    (unsigned long long)s->version);
        }
    }
}

/* The schedule of the current step (version): shard 0 asks its schedule, the other shards ask
 * the coordinator (a blocking request; pushes meanwhile wait in the socket's queue). */
static int s_sched_current(server_shard_t *s)
{
    if (s->sched_known)
        return RT_OK;
    if (s->coord) {
        int rc = server_coord_sched(s->coord, s->version, &s->sched);
        if (rc)
            return rc;
        s->sched_known = 1;
        s_snapshot_maybe(s);
        return RT_OK;
    }
    int rc = s_sched_ask(s, s->version, &s->sched, S_SCHED_WAIT_MS);
    if (rc)
        return rc;
    s->sched_known = 1;
    s_snapshot_maybe(s);
    return RT_OK;
}

/* Does the coordinator's reply answer the query about step *arg (not an earlier question)? */
static int s_answers_step(const struct rt_wire_msg *r, void *arg)
{
    return r->step == *(const uint64_t *)arg;
}

/* Shards > 0: ask the coordinator the schedule of `step` (a blocking request of at most wait_ms;
 * pushes meanwhile wait in the socket's queue) into *pt; the members that come with it are
 * applied. */
static int s_sched_ask(server_shard_t *s, uint64_t step, struct server_coord_point *pt, int wait_ms)
{
    double deadline = rt_clock_now() + wait_ms / 1000.0;
    for (;;) {
        struct rt_wire_msg q;
        rt_wire_msg_init(&q, RT_WIRE_SCHED_QUERY, -1, s->name);
        q.step = step;
        int rc = rt_sock_request(s->coord_sock, &q, &s->cin, deadline, s_answers_step, &step,
                                 "the coordinator");
        if (rc == RT_ERR_TIMEOUT)
            return rt_err_set(rc, "coordinator silent for %d ms", wait_ms);
        if (rc)
            return rc;
        const struct rt_wire_msg *r = &s->cin.m;
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
        s_members(s, r->sched.members, r->sched.members_len);
        return RT_OK;
    }
}

/* ---- message handlers ------------------------------------------------------------------- */

/* Shard 0: the workers that rejoined and take part in the current step are awaited again (their
 * slot has no push of this step: they rejoin at a step nobody had asked about). */
static void s_rejoin_check(server_shard_t *s)
{
    for (int i = 0; i < s->cfg.n_workers; i++) {
        struct s_worker *w = &s->workers[i];
        if (w->evicted && w->rebound && !s_started(w) &&
            server_coord_is_member(s->coord, i, s->version)) {
            w->evicted = 0;
            w->rebound = 0;
        }
    }
}

/* Shard 0: a restarted worker took the slot `id` of an evicted one (log, metrics). */
static void s_on_rejoin(server_shard_t *s, int id, const uint8_t *route, size_t rlen)
{
    char hex[RT_SOCK_ROUTE_HEX];
    rt_sock_route_hex(route, rlen, hex, sizeof hex);
    uint64_t step = server_coord_join_step(s->coord, id);
    RT_WARN(s->name, "worker %d '%s' (peer %s) rejoins: it takes part from step %llu", id,
            s->workers[id].name, hex, (unsigned long long)step);
    if (s->cfg.metrics) {
        rt_metrics_begin(s->cfg.metrics, "rejoin");
        rt_metrics_int(s->cfg.metrics, "worker", id);
        rt_metrics_str(s->cfg.metrics, "name", s->workers[id].name);
        rt_metrics_str(s->cfg.metrics, "peer", hex);
        rt_metrics_int(s->cfg.metrics, "step", (long long)step);
        if (rt_metrics_end(s->cfg.metrics))
            RT_WARN(s->name, "rejoin event: %s", rt_err_msg());
    }
    s_rejoin_check(s);
}

static void s_on_register(server_shard_t *s, const uint8_t *route, size_t rlen,
                          const struct rt_wire_msg *m)
{
    /* a repeated REGISTER from the same connection gets the same id */
    int id = -1;
    for (int i = 0; i < s->cfg.n_workers; i++)
        if (s_route_eq(&s->workers[i], route, rlen))
            id = i;
    if (id < 0) {
        id = server_coord_register(s->coord, m->name, m->weight);
        if (id < 0) {
            s_drop(s, route, rlen, m, rt_err_msg());
            s_reply_error(s, route, rlen, 0, id, rt_err_msg());
            return;
        }
        struct s_worker *w = &s->workers[id];
        int rejoin = w->route_len > 0; /* the slot of an evicted worker */
        memcpy(w->route, route, rlen);
        w->route_len = rlen;
        snprintf(w->name, sizeof w->name, "%s", m->name);
        if (rejoin) {
            w->rebound = 1;
            w->bye = 0;
            s_on_rejoin(s, id, route, rlen);
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
    if (server_coord_join_step(s->coord, id) > r.step)
        r.step = server_coord_join_step(s->coord, id);
    r.heartbeat_ms = (uint32_t)server_coord_heartbeat_ms(s->coord);
    if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
        RT_WARN(s->name, "welcome failed: %s", rt_err_msg());
}

static void s_on_hello(server_shard_t *s, const uint8_t *route, size_t rlen,
                       const struct rt_wire_msg *m)
{
    if (m->sender < 0 || m->sender >= s->cfg.n_workers) {
        s_drop(s, route, rlen, m, "hello with a worker id out of range");
        return;
    }
    struct s_worker *w = &s->workers[m->sender];
    if (w->route_len && !s_route_eq(w, route, rlen) && !w->evicted && !s->coord) {
        /* maybe a restarted worker whose eviction this shard has not heard of yet */
        s->members_at = 0;
        s_members_poll(s);
    }
    if (w->route_len && !s_route_eq(w, route, rlen)) {
        if (s->coord || !w->evicted) {
            s_drop(s, route, rlen, m, "hello for a worker id bound to another connection");
            return;
        }
        /* the restarted process of an evicted worker (shard 0 rebinds at its registration) */
        memcpy(w->route, route, rlen);
        w->route_len = rlen;
        snprintf(w->name, sizeof w->name, "%s", m->name);
        w->rebound = 1;
        w->bye = 0;
        RT_INFO(s->name, "worker %d '%s' rebound to its restarted process", m->sender, w->name);
    }
    if (!w->route_len) {
        memcpy(w->route, route, rlen);
        w->route_len = rlen;
        snprintf(w->name, sizeof w->name, "%s", m->name);
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_ACK, s->cfg.shard, s->name);
    r.n_params = s->cfg.n_params;
    r.n_buffers = s->cfg.n_buffers;
    r.params_range.offset = s->p_off;
    r.params_range.count = s->p_cnt;
    r.buffers_range.offset = s->b_off;
    r.buffers_range.count = s->b_cnt;
    if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
        RT_WARN(s->name, "ack failed: %s", rt_err_msg());
}

static void s_on_sched_query(server_shard_t *s, const uint8_t *route, size_t rlen,
                             const struct rt_wire_msg *m)
{
    /* a registered worker gets its share too; anyone else (the other shards, a late joiner, the
     * eigen service) gets the schedule alone */
    struct server_coord_point pt;
    uint32_t off = 0, cnt = 0;
    int rc;
    if (s_bound(s, route, rlen, m)) {
        /* a positive weight in a query is the worker's measured throughput: re-balance */
        if (m->weight > 0 && server_coord_set_weight(s->coord, m->sender, m->weight))
            RT_WARN(s->name, "worker %d: %s", m->sender, rt_err_msg());
        rc = server_coord_step(s->coord, m->sender, m->step, &pt, &off, &cnt);
    } else
        rc = server_coord_sched(s->coord, m->step, &pt);
    if (rc) {
        s_reply_error(s, route, rlen, m->step, rc, rt_err_msg());
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
    r.sched.members_len =
        server_coord_members(s->coord, m->step, r.sched.members, (uint32_t)sizeof r.sched.members);
    if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
        RT_WARN(s->name, "schedule reply failed: %s", rt_err_msg());
}

/* Check that a chunk continues the worker's slice in order; returns a reason or NULL. */
static const char *s_check_chunk(const server_shard_t *s, const struct s_worker *w,
                                 const struct rt_wire_msg *m)
{
    if (m->has_params) {
        if (m->params.offset != s->p_off + w->p_recv)
            return "parameter chunk out of order, duplicated or outside this shard's range";
        if (m->params.count > s->p_cnt - w->p_recv)
            return "parameter chunk runs past this shard's range";
    }
    if (m->has_buffers) {
        if (w->b_recv)
            return "buffer slice sent twice";
        if (m->buffers.offset != s->b_off || m->buffers.count != s->b_cnt)
            return "buffer slice does not match this shard's buffer range";
    }
    return NULL;
}

static void s_on_init(server_shard_t *s, const uint8_t *route, size_t rlen,
                      const struct rt_wire_msg *m, const void *pp, const void *bp)
{
    struct s_worker *w = s_bound(s, route, rlen, m);
    if (!w || m->sender != 0) {
        s_drop(s, route, rlen, m, "initial weights from a peer other than worker 0");
        return;
    }
    if (s->ready) {
        RT_DEBUG(s->name, "initial weights ignored: already initialised");
        return;
    }
    const char *why = s_check_chunk(s, w, m);
    if (why) {
        s_drop(s, route, rlen, m, why);
        return;
    }
    if (m->has_params) {
        memcpy(s->w + w->p_recv, pp, m->params.count * sizeof(float));
        w->p_recv += m->params.count;
    }
    if (m->has_buffers) {
        memcpy(s->bw, bp, s->b_cnt * sizeof(float));
        w->b_recv = 1;
    }
    if (w->p_recv == s->p_cnt && (s->b_cnt == 0 || w->b_recv)) {
        w->p_recv = 0;
        w->b_recv = 0;
        s->ready = 1;
        RT_INFO(s->name, "initial weights received from worker 0");
        s_serve_pending(s);
    }
}

/* After a push chunk or an eviction: apply the step when every worker still awaited has pushed
 * its whole slice, else update the prefix that every awaited worker covers once all of them have
 * started (the step's sample count is known then). */
static void s_progress(server_shard_t *s)
{
    if (!s->ready || !s->sched_known)
        return;
    int all = 1, started = 1;
    uint64_t lo = s->p_cnt;
    for (int i = 0; i < s->cfg.n_workers; i++) {
        const struct s_worker *w = &s->workers[i];
        if (w->evicted)
            continue;
        all &= w->complete;
        started &= s_started(w);
        if (w->p_recv < lo)
            lo = w->p_recv;
    }
    /* every parameter needs a contribution (not the case when every worker was evicted early) */
    if (all && s->summed == s->p_cnt && (s->b_cnt == 0 || s->b_summed)) {
        s_apply(s);
    } else if (started && s->n_started > 0 && lo <= s->summed && lo >= s->applied + S_APPLY_MIN) {
        s_apply_upto(s, lo);
    }
}

/* Worker `id` is no longer awaited (the coordinator evicted it): what it pushed of the current
 * step counts for the parameters it reached; with `progress`, apply the step if it is complete
 * now (not while a push is being handled: that push finishes first). */
static void s_on_evicted(server_shard_t *s, int id, int progress)
{
    struct s_worker *w = &s->workers[id];
    if (w->evicted)
        return;
    w->evicted = 1;
    s->st.evicted++;
    if (s_partial(w))
        RT_WARN(s->name,
                "worker %d '%s' evicted in the middle of its push of step %llu: its gradient "
                "counts for the first %llu of %llu parameters here",
                id, w->name, (unsigned long long)s->version, (unsigned long long)w->p_recv,
                (unsigned long long)s->p_cnt);
    else if (!s->coord)
        RT_WARN(s->name, "worker %d '%s' evicted by the coordinator at step %llu", id, w->name,
                (unsigned long long)s->version);
    /* its pulls waiting for the next version go nowhere */
    int keep = 0;
    for (int i = 0; i < s->n_pend; i++)
        if (!s_route_eq(w, s->pend[i].route, s->pend[i].route_len))
            s->pend[keep++] = s->pend[i];
    s->n_pend = keep;
    if (progress)
        s_progress(s);
}

static void s_on_push(server_shard_t *s, const uint8_t *route, size_t rlen,
                      const struct rt_wire_msg *m, const void *pp, const void *bp)
{
    struct s_worker *w = s_bound(s, route, rlen, m);
    char why[128];
    if (!w) {
        s_drop(s, route, rlen, m, "push from a peer not bound to that worker id");
        return;
    }
    if (!s->ready || m->step != s->version) {
        snprintf(why, sizeof why, "push for step %llu, this shard is at step %llu",
                 (unsigned long long)m->step, (unsigned long long)s->version);
        s_drop(s, route, rlen, m, why);
        return;
    }
    if (w->complete) {
        s_drop(s, route, rlen, m, "worker already pushed its whole slice of this step");
        return;
    }
    const char *bad = s_check_chunk(s, w, m);
    if (bad) {
        s_drop(s, route, rlen, m, bad);
        return;
    }
    if (w->p_recv > 0 || w->b_recv) {
        if (m->samples != w->samples) {
            s_drop(s, route, rlen, m, "sample count differs between chunks of one push");
            return;
        }
    }
    int rc = s_sched_current(s);
    if (rc) {
        snprintf(why, sizeof why, "schedule of the step unavailable: %s", rt_err_msg());
        s_drop(s, route, rlen, m, why);
        return;
    }
    if (w->evicted && w->rebound && !s->coord) {
        /* a restarted worker's first push here: ask whether it takes part in this step */
        struct server_coord_point pt;
        if (s_sched_ask(s, s->version, &pt, S_MEMBERS_WAIT_MS))
            RT_WARN(s->name, "asking the coordinator for the members: %s", rt_err_msg());
    }
    if (w->evicted) {
        s_drop(s, route, rlen, m, "push from an evicted worker");
        return;
    }
    if (s->sched.done || m->lr != s->sched.lr || m->sched_version != s->sched.version) {
        snprintf(why, sizeof why,
                 "push uses schedule v%llu lr %g, the schedule in force is v%llu lr %g%s",
                 (unsigned long long)m->sched_version, (double)m->lr,
                 (unsigned long long)s->sched.version, (double)s->sched.lr,
                 s->sched.done ? " (training is over)" : "");
        s_drop(s, route, rlen, m, why);
        return;
    }
    float a = (float)m->samples;
    if (w->p_recv == 0 && !w->b_recv) {
        /* first chunk of this worker: its sample count joins the step's total */
        w->samples = m->samples;
        s->total_samples += m->samples;
        s->total_loss += (double)m->loss * (double)m->samples;
        s->total_correct += m->correct;
        s->n_started++;
    }
    if (m->has_buffers) {
        /* the first contribution of the step overwrites, the others add */
        rt_wire_axpy(s->bacc, a, bp, (size_t)s->b_cnt, s->b_summed);
        s->b_summed = 1;
        w->b_recv = 1;
    }
    if (m->has_params) {
        /* the part below `summed` adds to earlier contributions, the part above is the first */
        uint64_t lo = w->p_recv, hi = w->p_recv + m->params.count;
        uint64_t mid = hi < s->summed ? hi : (lo > s->summed ? lo : s->summed);
        const uint8_t *src = pp;
        if (mid > lo)
            rt_wire_axpy(s->acc + lo, a, src, (size_t)(mid - lo), 1);
        if (hi > mid)
            rt_wire_axpy(s->acc + mid, a, src + (mid - lo) * sizeof(float), (size_t)(hi - mid), 0);
        if (hi > s->summed)
            s->summed = hi;
        w->p_recv = hi;
    }
    s->st.pushes++;
    if (w->p_recv == s->p_cnt && (s->b_cnt == 0 || w->b_recv)) {
        w->complete = 1;
        s->n_complete++;
    }
    s_progress(s);
}

static void s_on_pull(server_shard_t *s, const uint8_t *route, size_t rlen,
                      const struct rt_wire_msg *m)
{
    char why[128];
    struct s_worker *pw = s_bound(s, route, rlen, m);
    if (!pw) {
        s_drop(s, route, rlen, m, "pull from a peer not bound to that worker id");
        return;
    }
    if (pw->evicted && !pw->rebound) {
        s_drop(s, route, rlen, m, "pull from an evicted worker");
        s_reply_error(s, route, rlen, m->step, RT_ERR_PEER, "this worker was evicted");
        return;
    }
    if (s->ready && m->step == s->version) {
        if (s_send_weights(s, route, rlen))
            RT_WARN(s->name, "weights reply failed: %s", rt_err_msg());
        return;
    }
    if ((!s->ready && m->step == 0) ||
        (s->ready && m->step > s->version && m->step <= s->version + S_PULL_AHEAD)) {
        if (s->n_pend >= S_MAX_PENDING) {
            s_drop(s, route, rlen, m, "too many pulls waiting");
            return;
        }
        struct s_pull *p = &s->pend[s->n_pend++];
        memcpy(p->route, route, rlen);
        p->route_len = rlen;
        p->version = m->step;
        return;
    }
    snprintf(why, sizeof why, "pull for version %llu, this shard is at version %llu",
             (unsigned long long)m->step, (unsigned long long)s->version);
    s_drop(s, route, rlen, m, why);
    s_reply_error(s, route, rlen, m->step, RT_ERR_STATE, why);
}

/* SNAPSHOT from any peer (the eigen service): the latest epoch-start copy, copied into the
 * frames (the copy changes at the next epoch, a slow reader must not see it move). */
static void s_on_snapshot(server_shard_t *s, const uint8_t *route, size_t rlen,
                          const struct rt_wire_msg *m)
{
    if (!s->cfg.snapshots || s->snap_version == UINT64_MAX) {
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_ERROR, s->cfg.shard, s->name);
        r.step = m->step;
        r.sched_version = m->sched_version; /* the observer's round */
        r.err_code = RT_ERR_STATE;
        snprintf(r.text, sizeof r.text, "%s",
                 s->cfg.snapshots ? "no snapshot yet" : "this shard keeps no snapshots");
        if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
            RT_WARN(s->name, "snapshot reply failed: %s", rt_err_msg());
        return;
    }
    if (m->step && m->step - 1 == s->snap_version) {
        /* the observer holds this snapshot already (step = its version + 1): a SNAPSHOT header
         * back, no weights */
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_SNAPSHOT, s->cfg.shard, s->name);
        r.step = s->snap_version;
        r.epoch = s->snap_epoch;
        r.sched_version = m->sched_version; /* echo the observer's round */
        if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
            RT_WARN(s->name, "snapshot reply failed: %s", rt_err_msg());
        return;
    }
    uint64_t chunk = s->cfg.chunk_floats, done = 0;
    do {
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_WEIGHTS, s->cfg.shard, s->name);
        r.step = s->snap_version;
        r.epoch = s->snap_epoch;
        r.sched_version = m->sched_version; /* echo the observer's round */
        r.checksum = s->cfg.checksum;
        uint64_t k = s->p_cnt - done < chunk ? s->p_cnt - done : chunk;
        r.has_params = 1;
        r.params.offset = s->p_off + done;
        r.params.count = k;
        if (done == 0 && s->b_cnt) {
            r.has_buffers = 1;
            r.buffers.offset = s->b_off;
            r.buffers.count = s->b_cnt;
        }
        if (rt_sock_send(s->sock, route, rlen, &r, s->snap_w + done, s->snap_b, NULL)) {
            RT_WARN(s->name, "snapshot reply failed: %s", rt_err_msg());
            return;
        }
        done += k;
    } while (done < s->p_cnt);
}

/* DECISION (coordinator): hand it to the schedule; ACK with the verdict, or ERROR. */
static void s_on_decision(server_shard_t *s, const uint8_t *route, size_t rlen,
                          const struct rt_wire_msg *m)
{
    uint64_t apply = 0, version = 0;
    int v = server_coord_decide(s->coord, &m->decision, &apply, &version);
    if (v < 0) {
        s_drop(s, route, rlen, m, rt_err_msg());
        s_reply_error(s, route, rlen, m->decision.seq, v, rt_err_msg());
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
        server_coord_last_decision(s->coord, &r.held) == RT_OK)
        r.has_held = 1;
    if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
        RT_WARN(s->name, "decision reply failed: %s", rt_err_msg());
}

/* ABS_QUERY (coordinator): the ABS state held, for an eigen service that starts (a resumed run,
 * or a restarted service); ERROR RT_ERR_STATE when none. */
static void s_on_abs_query(server_shard_t *s, const uint8_t *route, size_t rlen,
                           const struct rt_wire_msg *m)
{
    struct rt_wire_msg r;
    struct rt_wire_abs abs;
    if (server_coord_get_abs(s->coord, &abs)) {
        s_reply_error(s, route, rlen, m->step, RT_ERR_STATE, "no ABS state held");
        return;
    }
    rt_wire_msg_init(&r, RT_WIRE_ACK, s->cfg.shard, s->name);
    r.step = m->step;
    r.has_held = 1;
    if (server_coord_last_decision(s->coord, &r.held) != RT_OK)
        memset(&r.held, 0, sizeof r.held);
    r.held.has_abs = 1;
    r.held.abs = abs;
    if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
        RT_WARN(s->name, "ABS state reply failed: %s", rt_err_msg());
}

/* 1 when every worker has said goodbye or was evicted. */
static int s_all_gone(const server_shard_t *s)
{
    for (int i = 0; i < s->cfg.n_workers; i++)
        if (!s->workers[i].bye && !s->workers[i].evicted)
            return 0;
    return 1;
}

/* Shard 0: evict the workers silent for longer than the timeout (a warning naming the worker and
 * its peer, an "evict" event in the metrics), and complete the step they were blocking. */
static void s_evict_poll(server_shard_t *s)
{
    if (!s->coord)
        return;
    int gone[RT_WIRE_MEMBERS_BYTES * 8] = {0};
    int n = s->cfg.n_workers < (int)(sizeof gone / sizeof gone[0])
                ? s->cfg.n_workers
                : (int)(sizeof gone / sizeof gone[0]);
    for (int i = 0; i < n; i++)
        gone[i] = s->workers[i].bye;
    double silent_ms = 0;
    int id;
    while ((id = server_coord_overdue(s->coord, n == s->cfg.n_workers ? gone : NULL, &silent_ms)) >=
           0) {
        struct s_worker *w = &s->workers[id];
        /* a slice complete here counts: the step its loss interrupts is the next one */
        uint64_t from = s->version + (s->ready && w->complete ? 1 : 0);
        struct server_coord_loss loss;
        if (server_coord_evict(s->coord, id, from, &loss))
            break;
        char hex[RT_SOCK_ROUTE_HEX];
        rt_sock_route_hex(w->route, w->route_len, hex, sizeof hex);
        s->st.lost += loss.samples;
        RT_WARN(s->name,
                "worker %d '%s' (peer %s) silent for %.0f ms: evicted at step %llu; %llu samples "
                "of %d interrupted step(s) lost for this epoch, the other workers share the "
                "batch from the next step",
                id, w->name, hex, silent_ms, (unsigned long long)s->version,
                (unsigned long long)loss.samples, loss.steps);
        if (s->cfg.metrics) {
            rt_metrics_begin(s->cfg.metrics, "evict");
            rt_metrics_int(s->cfg.metrics, "worker", id);
            rt_metrics_str(s->cfg.metrics, "name", w->name);
            rt_metrics_str(s->cfg.metrics, "peer", hex);
            rt_metrics_int(s->cfg.metrics, "step", (long long)s->version);
            rt_metrics_num(s->cfg.metrics, "silent_ms", silent_ms);
            rt_metrics_int(s->cfg.metrics, "lost_samples", (long long)loss.samples);
            rt_metrics_int(s->cfg.metrics, "lost_steps", loss.steps);
            if (loss.steps) {
                rt_metrics_int(s->cfg.metrics, "lost_epoch", (long long)loss.epoch);
                rt_metrics_int(s->cfg.metrics, "lost_from_step", (long long)loss.first_step);
            }
            if (rt_metrics_end(s->cfg.metrics))
                RT_WARN(s->name, "evict event: %s", rt_err_msg());
        }
        s_on_evicted(s, id, 1);
    }
}

/* Shards > 0: while some awaited worker has not pushed the current step (or said goodbye at the
 * end), ask the coordinator every S_MEMBERS_POLL_MS who still takes part. */
static void s_members_poll(server_shard_t *s)
{
    if (s->coord || !s->ready)
        return;
    int waiting = 0;
    for (int i = 0; i < s->cfg.n_workers; i++) {
        const struct s_worker *w = &s->workers[i];
        waiting |= !w->evicted && !w->bye && !w->complete;
    }
    double now = rt_clock_now();
    if (!waiting || now - s->members_at < S_MEMBERS_POLL_MS / 1000.0)
        return;
    s->members_at = now;
    /* ask about a step already announced (never announce one: decisions are stamped from the
     * first step nobody has asked about): the current one once a worker pushed it, else the
     * last one applied */
    uint64_t step;
    if (s->sched_known)
        step = s->version;
    else if (s->version > s->start_step)
        step = s->version - 1;
    else
        return;
    uint64_t before = s->st.evicted;
    struct server_coord_point pt;
    if (s_sched_ask(s, step, &pt, S_MEMBERS_WAIT_MS)) {
        RT_WARN(s->name, "asking the coordinator for the members: %s", rt_err_msg());
        return;
    }
    if (s->st.evicted != before)
        s_progress(s);
}

/* Handle the message received in s->in (decoded: rt_sock_recv_msg drops malformed ones); returns
 * 1 when every worker has said goodbye. */
static int s_handle(server_shard_t *s)
{
    const uint8_t *route = s->in.route;
    size_t rlen = s->in.route_len;
    const void *pp = s->in.params, *bp = s->in.buffers;
    const struct rt_wire_msg *m = &s->in.m;
    /* any message of a bound worker shows it alive */
    if (s->coord && m->type != RT_WIRE_REGISTER && s_bound(s, route, rlen, m))
        server_coord_heartbeat(s->coord, m->sender);
    switch (m->type) {
    case RT_WIRE_REGISTER:
    case RT_WIRE_SCHED_QUERY:
    case RT_WIRE_HEARTBEAT:
        if (!s->coord) {
            s_drop(s, route, rlen, m, "coordinator message sent to a shard other than 0");
            break;
        }
        if (m->type == RT_WIRE_REGISTER)
            s_on_register(s, route, rlen, m);
        else if (m->type == RT_WIRE_SCHED_QUERY)
            s_on_sched_query(s, route, rlen, m);
        else if (s_bound(s, route, rlen, m)) {
            /* answer, so that a worker waiting for a slow step knows the cluster is alive */
            server_coord_heartbeat(s->coord, m->sender);
            struct rt_wire_msg r;
            rt_wire_msg_init(&r, RT_WIRE_HEARTBEAT, s->cfg.shard, s->name);
            if (rt_sock_send(s->sock, route, rlen, &r, NULL, NULL, NULL))
                RT_WARN(s->name, "heartbeat reply failed: %s", rt_err_msg());
        } else
            s_drop(s, route, rlen, m, "heartbeat from an unregistered peer");
        break;
    case RT_WIRE_HELLO:
        s_on_hello(s, route, rlen, m);
        break;
    case RT_WIRE_SNAPSHOT:
        s_on_snapshot(s, route, rlen, m);
        break;
    case RT_WIRE_DECISION:
        if (s->coord)
            s_on_decision(s, route, rlen, m);
        else
            s_drop(s, route, rlen, m, "decision sent to a shard other than 0");
        break;
    case RT_WIRE_ABS_QUERY:
        if (s->coord)
            s_on_abs_query(s, route, rlen, m);
        else
            s_drop(s, route, rlen, m, "ABS query sent to a shard other than 0");
        break;
    case RT_WIRE_INIT:
        s_on_init(s, route, rlen, m, pp, bp);
        break;
    case RT_WIRE_PUSH:
        s_on_push(s, route, rlen, m, pp, bp);
        break;
    case RT_WIRE_PULL:
        s_on_pull(s, route, rlen, m);
        break;
    case RT_WIRE_BYE: {
        struct s_worker *w = s_bound(s, route, rlen, m);
        if (!w) {
            s_drop(s, route, rlen, m, "goodbye from an unknown peer");
            break;
        }
        w->bye = 1;
        if (s_all_gone(s))
            return 1;
        break;
    }
    default:
        s_drop(s, route, rlen, m, "message type not accepted by a shard");
        break;
    }
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

int server_shard_new(const struct server_shard_cfg *cfg, server_shard_t **out)
{
    *out = NULL;
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
    int rc = RT_ERR_NOMEM;
    server_shard_t *s = calloc(1, sizeof *s);
    if (!s)
        return rt_err_set(RT_ERR_NOMEM, "shard %d", cfg->shard);
    s->cfg = *cfg;
    s->cfg.endpoint = NULL;
    s->cfg.init_params = NULL;
    s->cfg.init_buffers = NULL;
    s->cfg.coord_endpoint = NULL;
    s->cfg.ckpt_root = NULL;
    s->cfg.resume = NULL;
    s->cfg.model = NULL;
    if (cfg->ckpt_root && snprintf(s->ckpt_root, sizeof s->ckpt_root, "%s", cfg->ckpt_root) >=
                              (int)sizeof s->ckpt_root) {
        rt_err_set(RT_ERR_ARG, "checkpoint directory %s: path too long", cfg->ckpt_root);
        rc = RT_ERR_ARG;
        goto out_destroy;
    }
    snprintf(s->model, sizeof s->model, "%s", cfg->model ? cfg->model : "");
    if (!s->cfg.chunk_floats)
        s->cfg.chunk_floats = SERVER_CHUNK_FLOATS_DEFAULT;
    snprintf(s->name, sizeof s->name, "shard-%d", cfg->shard);
    rt_sock_in_init(&s->in, s->name, 1, NULL);
    rt_sock_in_init(&s->cin, s->name, 0, NULL);
    atomic_init(&s->zc.in_flight, 0);
    rt_wire_partition(cfg->n_params, cfg->n_shards, cfg->shard, &s->p_off, &s->p_cnt);
    rt_wire_partition(cfg->n_buffers, cfg->n_shards, cfg->shard, &s->b_off, &s->b_cnt);
    s->w = nn_alloc(s->p_cnt * sizeof(float));
    s->mom = nn_alloc(s->p_cnt * sizeof(float));
    s->acc = nn_alloc(s->p_cnt * sizeof(float));
    s->bw = nn_alloc((s->b_cnt + 1) * sizeof(float));
    s->bacc = nn_alloc((s->b_cnt + 1) * sizeof(float));
    s->workers = calloc((size_t)cfg->n_workers, sizeof *s->workers);
    s->wck = calloc((size_t)(s->p_cnt / s->cfg.chunk_floats + 1), sizeof *s->wck);
    s->wck_version = UINT64_MAX;
    s->snap_version = UINT64_MAX;
    if (cfg->snapshots) {
        s->snap_w = nn_alloc(s->p_cnt * sizeof(float));
        s->snap_b = nn_alloc((s->b_cnt + 1) * sizeof(float));
        if (!s->snap_w || !s->snap_b) {
            rt_err_set(RT_ERR_NOMEM, "shard %d: snapshot of %llu floats", cfg->shard,
                       (unsigned long long)s->p_cnt);
            goto out_destroy;
        }
    }
    if (!s->w || !s->mom || !s->acc || !s->bw || !s->bacc || !s->workers || !s->wck) {
        rt_err_set(RT_ERR_NOMEM, "shard %d: %llu floats", cfg->shard, (unsigned long long)s->p_cnt);
        goto out_destroy;
    }
    memset(s->mom, 0, s->p_cnt * sizeof(float));
    memset(s->acc, 0, s->p_cnt * sizeof(float));
    memset(s->bw, 0, (s->b_cnt + 1) * sizeof(float));
    memset(s->bacc, 0, (s->b_cnt + 1) * sizeof(float));
    if (cfg->init_params) {
        memcpy(s->w, cfg->init_params + s->p_off, s->p_cnt * sizeof(float));
        if (cfg->init_buffers && s->b_cnt)
            memcpy(s->bw, cfg->init_buffers + s->b_off, s->b_cnt * sizeof(float));
        s->ready = 1;
    }
    if (cfg->shard == 0) {
        s->coord = server_coord_new(cfg->n_workers, cfg->sched);
        if (!s->coord) {
            rt_err_set(RT_ERR_NOMEM, "coordinator");
            goto out_destroy;
        }
        server_coord_set_sync(s->coord, cfg->sync, cfg->sync_timeout_ms);
        server_coord_set_evict(s->coord, cfg->evict_ms);
        if ((cfg->ckpt_root || cfg->resume) && !(s->ckpt = calloc(1, sizeof *s->ckpt))) {
            rt_err_set(RT_ERR_NOMEM, "checkpoint state");
            goto out_destroy;
        }
    }
    if (cfg->resume && (rc = s_resume(s, cfg->resume)))
        goto out_destroy;
    if (s->coord && s->ckpt_root[0] &&
        (rc = rt_ckpt_remove_after(s->ckpt_root, s->start_step ? s->ckpt->epoch : 0)))
        goto out_destroy;
    s->lim.n_params = cfg->n_params;
    s->lim.n_buffers = cfg->n_buffers;
    s->lim.max_floats = s->p_cnt > s->b_cnt ? s->p_cnt : s->b_cnt;
    s->in.lim = s->lim;
    s->cin.lim = s->lim;
    if (cfg->zmq_ctx) {
        s->ctx = cfg->zmq_ctx;
    } else {
        s->ctx = rt_sock_ctx_new(cfg->io_threads);
        if (!s->ctx) {
            rc = RT_ERR_ZMQ;
            goto out_destroy;
        }
        s->own_ctx = 1;
    }
    /* peers may send chunks of any size up to the whole range; bigger frames are dropped */
    long max_frame = (long)(s->lim.max_floats * sizeof(float));
    if (max_frame < RT_WIRE_MAX_HEADER)
        max_frame = RT_WIRE_MAX_HEADER;
    rc = rt_sock_router(s->ctx, cfg->endpoint, max_frame, &s->sock);
    if (rc)
        goto out_destroy;
    if (cfg->shard > 0) {
        rc = rt_sock_dealer(s->ctx, cfg->coord_endpoint, &s->coord_sock);
        if (rc)
            goto out_destroy;
    }
    size_t elen = sizeof s->endpoint;
    if (zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, s->endpoint, &elen) != 0)
        snprintf(s->endpoint, sizeof s->endpoint, "%s", cfg->endpoint);
    RT_INFO(s->name, "serving %s: params [%llu, +%llu), buffers [%llu, +%llu), %d workers",
            s->endpoint, (unsigned long long)s->p_off, (unsigned long long)s->p_cnt,
            (unsigned long long)s->b_off, (unsigned long long)s->b_cnt, cfg->n_workers);
    *out = s;
    return RT_OK;
out_destroy:
    server_shard_destroy(&s);
    return rc;
}

int server_shard_run(server_shard_t *s, const atomic_int *stop)
{
    for (;;) {
        if (stop && atomic_load(stop))
            return rt_err_set(RT_ERR_INTERRUPTED, "%s: stopped", s->name);
        zmq_pollitem_t it = {s->sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, S_POLL_MS);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return rt_err_set(RT_ERR_ZMQ, "%s: poll: %s", s->name, zmq_strerror(zmq_errno()));
        }
        /* drain what is queued before polling again */
        int bye = 0;
        while (n > 0 && !bye) {
            int rc = rt_sock_recv_msg(s->sock, &s->in, ZMQ_DONTWAIT, NULL);
            if (rc == RT_ERR_TIMEOUT)
                break;
            if (rc)
                return rc;
            bye = s_handle(s);
            rt_sock_in_release(&s->in);
        }
        s_evict_poll(s);
        if (n == 0)
            s_members_poll(s);
        s_ckpt_poll(s);
        if ((bye || s_all_gone(s)) && s->end_at == 0) {
            int any_bye = 0;
            for (int i = 0; i < s->cfg.n_workers; i++)
                any_bye |= s->workers[i].bye;
            if (!any_bye)
                return rt_err_set(RT_ERR_PEER, "%s: every worker was evicted at version %llu",
                                  s->name, (unsigned long long)s->version);
            RT_INFO(s->name, "all workers left at version %llu (%llu messages dropped)",
                    (unsigned long long)s->version,
                    (unsigned long long)(s->st.dropped + s->in.dropped));
            s_ckpt_drain(s);
            /* the coordinator keeps answering a while when a worker was evicted: the other
             * shards learn it from its answers */
            s->end_at = rt_clock_now() + (s->coord && s->st.evicted ? S_END_LINGER_MS / 1000.0 : 0);
        }
        if (s->end_at > 0 && rt_clock_now() >= s->end_at)
            return RT_OK;
    }
}

void server_shard_range(const server_shard_t *s, uint64_t *p_off, uint64_t *p_cnt, uint64_t *b_off,
                        uint64_t *b_cnt)
{
    *p_off = s->p_off;
    *p_cnt = s->p_cnt;
    *b_off = s->b_off;
    *b_cnt = s->b_cnt;
}

const char *server_shard_endpoint(const server_shard_t *s)
{
    return s->endpoint;
}

uint64_t server_shard_start_step(const server_shard_t *s)
{
    return s->start_step;
}

const float *server_shard_params(const server_shard_t *s)
{
    return s->w;
}

const float *server_shard_buffers(const server_shard_t *s)
{
    return s->bw;
}

void server_shard_stats(const server_shard_t *s, struct server_shard_stats *out)
{
    *out = s->st;
    out->version = s->version;
    out->dropped += s->in.dropped; /* malformed: dropped as they were received */
}

void server_shard_destroy(server_shard_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    server_shard_t *s = *self_p;
    rt_sock_close(&s->sock, 0);
    rt_sock_close(&s->coord_sock, 0);
    rt_sock_in_close(&s->in);
    rt_sock_in_close(&s->cin);
    int leak = 0;
    if (rt_sock_zc_wait(&s->zc, S_ZC_WAIT_MS)) {
        /* a peer never read its weights: their frames still point into w; keep it alive */
        RT_WARN(s->name, "%s; keeping the weight buffer", rt_err_msg());
        leak = 1;
    }
    if (s->own_ctx)
        rt_sock_ctx_destroy(&s->ctx);
    server_coord_destroy(&s->coord);
    if (!leak) {
        nn_free(s->w);
        nn_free(s->bw);
    }
    nn_free(s->snap_w);
    nn_free(s->snap_b);
    nn_free(s->mom);
    nn_free(s->acc);
    nn_free(s->bacc);
    free(s->workers);
    free(s->wck);
    free(s->ckpt);
    free(s);
    *self_p = NULL;
}
