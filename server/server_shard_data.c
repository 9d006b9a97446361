/*
 * server_shard_data: the shard's data plane (see server_shard_int.h). Workers bind their
 * connections (HELLO), worker 0 may send the initial weights (INIT), every worker pushes its
 * gradient slice of the current step in chunks (PUSH); once every awaited worker's chunks cover a
 * prefix of the range it is averaged (weighted by sample count) and updated with SGD, and when
 * every slice is in the buffers are averaged and the version moves on. Pulls are answered with the
 * weights of the version asked for, at once or when it is made; the eigen service gets the
 * snapshot of the latest epoch start (SNAPSHOT).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn_net.h"
#include "rt_err.h"
#include "rt_log.h"
#include "server_shard_int.h"

#define S_APPLY_BLOCK 16384   /* floats updated per cache-sized block */
#define S_APPLY_MIN 65536     /* smallest prefix worth updating early */
#define S_SCHED_WAIT_MS 30000 /* shards > 0: longest wait for the coordinator's schedule */
/* Pulls are kept waiting for up to this many versions ahead (a worker that rejoins starts a step or
 * two ahead of a lagging shard). */
#define S_PULL_AHEAD 8

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
        r.step = s->data.version;
        r.checksum = s->cfg.checksum;
        if (s->co.coord && s->data.version > 0) {
            /* the coordinator's totals of the step that made this version (train metrics) */
            r.samples = (uint32_t)s->step.prev_samples;
            r.loss = s->step.prev_samples
                         ? (float)(s->step.prev_loss / (double)s->step.prev_samples)
                         : 0.0f;
            r.correct = (uint32_t)s->step.prev_correct;
        }
        uint64_t k = s->data.p_cnt - done < chunk ? s->data.p_cnt - done : chunk;
        if (k > 0) {
            r.has_params = 1;
            r.params.offset = s->data.p_off + done;
            r.params.count = k;
        }
        if (first && s->data.b_cnt > 0) {
            r.has_buffers = 1;
            r.buffers.offset = s->data.b_off;
            r.buffers.count = s->data.b_cnt;
        }
        if (!r.has_params && !r.has_buffers)
            break;
        /* every worker pulls the same chunks: checksum each once per version */
        uint64_t ci = done / chunk;
        if (s->data.wck_version != s->data.version) {
            rt_wire_seal(&r, s->data.w + done, s->data.bw);
            if (r.has_params)
                s->data.wck[ci] = r.params.checksum;
            if (r.has_buffers)
                s->data.bck = r.buffers.checksum;
            if (done + k >= s->data.p_cnt)
                s->data.wck_version = s->data.version;
        } else {
            r.params.checksum = r.has_params ? s->data.wck[ci] : 0;
            r.buffers.checksum = r.has_buffers ? s->data.bck : 0;
        }
        r.sealed = 1;
        int rc = rt_sock_send(s->io.sock, route, rlen, &r, s->data.w + done, s->data.bw, s->io.zc);
        if (rc)
            return rc;
        done += k;
        first = 0;
    } while (done < s->data.p_cnt);
    s->st.pulls++;
    return RT_OK;
}

/* Answer the pulls waiting for the current version. */
void server_shard_serve_pending(server_shard_t *s)
{
    int keep = 0;
    for (int i = 0; i < s->data.n_pend; i++) {
        struct server_shard_pull *p = &s->data.pend[i];
        if (s->data.ready && p->version == s->data.version) {
            int rc = s_send_weights(s, p->route, p->route_len);
            if (rc)
                RT_WARN(s->name, "weights reply failed: %s", rt_err_msg());
        } else {
            s->data.pend[keep++] = *p;
        }
    }
    s->data.n_pend = keep;
}

/* Samples behind the summed gradient of parameter i of the range: the step's total, less the
 * evicted workers' whose partial slice stops at or before i; *seg_end gets the end of the run of
 * parameters with the same count. Without evictions: the total, up to the end. */
static uint64_t s_samples_at(const server_shard_t *s, uint64_t i, uint64_t *seg_end)
{
    uint64_t tot = s->step.total_samples, end = s->data.p_cnt;
    for (int k = 0; k < s->cfg.n_workers; k++) {
        const struct server_shard_worker *w = &s->data.workers[k];
        if (!server_shard_partial(w))
            continue;
        if (w->p_recv <= i)
            tot -= w->samples;
        else if (w->p_recv < end)
            end = w->p_recv;
    }
    *seg_end = end;
    return tot;
}

/* Update [applied, end): average the summed gradient and run SGD, a cache-sized block at a time.
 * Called as soon as every worker's chunks cover a prefix, so that the update overlaps the rest of
 * the push. */
static void s_apply_upto(server_shard_t *s, uint64_t end)
{
    for (uint64_t a = s->step.applied; a < end;) {
        uint64_t seg;
        uint64_t tot = s_samples_at(s, a, &seg);
        float inv = tot ? 1.0f / (float)tot : 0.0f;
        if (seg > end)
            seg = end;
        if (!tot) {
            /* no gradient arrived for these (every push that would cover them was rejected):
             * their weights and momentum stay as they are */
            a = seg;
            continue;
        }
        while (a < seg) {
            uint64_t n = seg - a < S_APPLY_BLOCK ? seg - a : S_APPLY_BLOCK;
            float *g = s->data.acc + a;
            int bad = 0; /* x - x is 0, or NaN (!= 0) for an infinite or NaN x; vectorises */
            for (uint64_t i = 0; i < n; i++) {
                g[i] *= inv;
                bad |= (g[i] - g[i]) != 0.0f;
            }
            if (bad) /* never applied: the weights stay those of the last version */
                s->step.nonfinite = 1;
            else
                nn_sgd_step(s->data.w + a, s->data.mom + a, g, (size_t)n, s->step.sched.lr,
                            s->cfg.momentum, s->cfg.weight_decay);
            a += n;
        }
    }
    if (end > s->step.applied)
        s->step.applied = end;
}

/* Every worker's slice of the step is in: finish the update, average the buffers, new version. */
static void s_apply(server_shard_t *s)
{
    s_apply_upto(s, s->data.p_cnt);
    int bad = 0;
    for (uint64_t i = 0; i < s->data.b_cnt; i++)
        bad |= (s->data.bacc[i] - s->data.bacc[i]) != 0.0f;
    if (bad)
        s->step.nonfinite = 1;
    if (s->step.nonfinite)
        return; /* no new version: server_shard_run stops with the error */
    /* the buffers: averaged over the workers whose buffer slice arrived */
    uint64_t btot = s->step.total_samples;
    for (int k = 0; k < s->cfg.n_workers; k++)
        if (server_shard_partial(&s->data.workers[k]) && !s->data.workers[k].b_recv)
            btot -= s->data.workers[k].samples;
    if (s->data.b_cnt && btot && s->step.b_summed) {
        float inv = 1.0f / (float)btot;
        for (uint64_t i = 0; i < s->data.b_cnt; i++)
            s->data.bw[i] = s->data.bacc[i] * inv;
    }
    s->step.n_started = 0;
    s->step.summed = 0;
    s->step.b_summed = 0;
    s->step.applied = 0;
    for (int i = 0; i < s->cfg.n_workers; i++) {
        struct server_shard_worker *w = &s->data.workers[i];
        w->p_recv = 0;
        w->b_recv = 0;
        w->samples = 0;
        w->complete = 0;
        w->rejected = 0;
        w->norm2 = 0;
    }
    s->step.n_complete = 0;
    s->step.prev_samples = s->step.total_samples;
    s->step.prev_loss = s->step.total_loss;
    s->step.prev_correct = s->step.total_correct;
    s->step.total_samples = 0;
    s->step.total_loss = 0;
    s->step.total_correct = 0;
    s->data.version++;
    s->st.version = s->data.version;
    /* the step just applied ended its epoch: the new version is the next epoch's start, known
     * before anyone asks for its schedule (which `decisions: sync` holds until the decision) */
    if (s->cfg.snapshots && s->step.sched_known && !s->step.sched.done && s->step.sched.epoch_last)
        server_shard_snapshot_take(s, s->step.sched.epoch + 1);
    /* ... and a checkpoint of that version, before anyone can pull it (and move on) */
    if (s->ckpt.root[0] && s->step.sched_known && !s->step.sched.done) {
        const struct server_coord_point *pt = &s->step.sched;
        if (pt->epoch_last && s->cfg.ckpt_every > 0 &&
            (pt->epoch + 1) % (uint64_t)s->cfg.ckpt_every == 0)
            server_shard_ckpt_write(s, pt->epoch + 1, 0);
        else if (!pt->epoch_last &&
                 (pt->checkpoint ||
                  (s->cfg.ckpt_every_steps > 0 && s->data.version % s->cfg.ckpt_every_steps == 0)))
            server_shard_ckpt_write(s, pt->epoch, 1); /* within epoch pt->epoch */
    }
    if (s->co.coord)
        server_shard_obs_step(s);
    s->step.sched_known = 0;
    if (s->co.coord)
        server_shard_rejoin_check(s);
    RT_DEBUG(s->name, "version %llu", (unsigned long long)s->data.version);
    server_shard_serve_pending(s);
}

/* Copy the slice (the weights of the current version) as the snapshot of the start of `epoch`,
 * once per epoch. */
void server_shard_snapshot_take(server_shard_t *s, uint64_t epoch)
{
    if (s->snap.version != UINT64_MAX && epoch == s->snap.epoch)
        return;
    memcpy(s->snap.w, s->data.w, s->data.p_cnt * sizeof(float));
    if (s->data.b_cnt)
        memcpy(s->snap.b, s->data.bw, s->data.b_cnt * sizeof(float));
    s->snap.version = s->data.version;
    s->snap.epoch = epoch;
    RT_DEBUG(s->name, "snapshot of epoch %llu at version %llu", (unsigned long long)s->snap.epoch,
             (unsigned long long)s->snap.version);
}

/* With snapshots on, when the current step starts a new epoch: the weights are still those of
 * version `version`, the epoch's first (the bump in s_apply usually took it already). */
static void s_snapshot_maybe(server_shard_t *s)
{
    if (!s->cfg.snapshots || s->step.sched.done)
        return;
    server_shard_snapshot_take(s, s->step.sched.epoch);
}

/* Longest wait of shards > 0 for the coordinator's schedule: S_SCHED_WAIT_MS, or less when the
 * coordinator's silence ends the shard sooner. */
static int s_sched_wait_ms(const server_shard_t *s)
{
    int t = s->cfg.coord_timeout_ms;
    return t > 0 && t < S_SCHED_WAIT_MS ? t : S_SCHED_WAIT_MS;
}

/* The schedule of the current step (version): shard 0 asks its schedule, the other shards ask
 * the coordinator (a blocking request; pushes meanwhile wait in the socket's queue). */
static int s_sched_current(server_shard_t *s)
{
    if (s->step.sched_known)
        return RT_OK;
    int rc = s->co.coord
                 ? server_coord_sched(s->co.coord, s->data.version, &s->step.sched)
                 : server_shard_sched_ask(s, s->data.version, &s->step.sched, s_sched_wait_ms(s));
    if (rc)
        return rc;
    s->step.sched_known = 1;
    s_snapshot_maybe(s);
    return RT_OK;
}

/* Check that a chunk continues the worker's slice in order; returns a reason or NULL. */
static const char *s_check_chunk(const server_shard_t *s, const struct server_shard_worker *w,
                                 const struct rt_wire_msg *m)
{
    if (m->has_params) {
        if (m->params.offset != s->data.p_off + w->p_recv)
            return "parameter chunk out of order, duplicated or outside this shard's range";
        if (m->params.count > s->data.p_cnt - w->p_recv)
            return "parameter chunk runs past this shard's range";
    }
    if (m->has_buffers) {
        if (w->b_recv)
            return "buffer slice sent twice";
        if (m->buffers.offset != s->data.b_off || m->buffers.count != s->data.b_cnt)
            return "buffer slice does not match this shard's buffer range";
    }
    return NULL;
}

/* Check what a push chunk carries before it is summed: a sample count within the step's batch,
 * a finite loss, finite values, and the norm of the worker's slice so far within
 * cfg.max_grad_norm. Returns the reason to reject it, or NULL. */
static const char *s_check_values(const server_shard_t *s, struct server_shard_worker *w,
                                  const struct rt_wire_msg *m, const struct rt_sock_in *in)
{
    uint32_t batch = s->step.sched.samples ? s->step.sched.samples : s->step.sched.batch;
    if (m->samples == 0 || m->samples > batch)
        return "sample count outside the step's batch";
    if (!isfinite(m->loss))
        return "loss not finite";
    double sq = 0;
    if (m->has_params)
        sq += rt_wire_sumsq(in->params, (size_t)m->params.count);
    if (m->has_buffers && !isfinite(rt_wire_sumsq(in->buffers, (size_t)m->buffers.count)))
        return "buffers not finite (NaN or Inf)";
    if (!isfinite(sq))
        return "gradient not finite (NaN or Inf)";
    w->norm2 += sq;
    double bound = s->cfg.max_grad_norm;
    if (bound > 0 && w->norm2 > bound * bound)
        return "gradient norm over fault.max_grad_norm";
    return NULL;
}

/* HELLO: bind the connection to the worker id it names, if the token it presents is that worker's
 * registration (shard 0 handed it out on this very connection; the other shards ask shard 0); a
 * restarted process of an evicted worker rebinds its slot this way. ACK with this shard's ranges;
 * anyone else gets an ERROR and changes nothing. */
void server_shard_on_hello(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    if (m->sender < 0 || m->sender >= s->cfg.n_workers) {
        server_shard_drop(s, in, "hello with a worker id out of range");
        server_shard_reply_error(s, in, 0, RT_ERR_PEER, "worker id out of range");
        return;
    }
    struct server_shard_worker *w = &s->data.workers[m->sender];
    int same = server_shard_route_eq(w, in->route, in->route_len) && w->token == m->token;
    if (s->co.coord && !same) {
        server_shard_drop(s, in, "hello for a worker id this connection did not register");
        server_shard_reply_error(s, in, 0, RT_ERR_PEER, "register first: hello refused");
        return;
    }
    if (!same) {
        if (!server_shard_verify(s, m->sender, m->token, SERVER_SHARD_MEMBERS_WAIT_MS)) {
            server_shard_drop(s, in, "hello whose token is not that worker's registration");
            server_shard_reply_error(s, in, 0, RT_ERR_PEER, "unknown registration: hello refused");
            return;
        }
        if (w->route_len) {
            /* the worker's current registration is a new process: the old one was evicted (the
             * coordinator hands out an evicted slot only); learn it before rebinding */
            server_shard_members_poll(s, 1);
            w->rebound = w->evicted;
            w->bye = 0;
            RT_INFO(s->name, "worker %d '%s' rebound to its restarted process", m->sender, m->name);
        }
        memcpy(w->route, in->route, in->route_len);
        w->route_len = in->route_len;
        w->token = m->token;
        snprintf(w->name, sizeof w->name, "%s", m->name);
    }
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_ACK, s->cfg.shard, s->name);
    r.n_params = s->cfg.n_params;
    r.n_buffers = s->cfg.n_buffers;
    r.params_range.offset = s->data.p_off;
    r.params_range.count = s->data.p_cnt;
    r.buffers_range.offset = s->data.b_off;
    r.buffers_range.count = s->data.b_cnt;
    server_shard_reply(s, in, &r, "ack");
}

/* INIT: a chunk of worker 0's initial weights (when the shard has none); version 0 exists once the
 * whole slice is in. */
void server_shard_on_init(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    struct server_shard_worker *w = server_shard_bound(s, in);
    if (!w || m->sender != 0) {
        server_shard_drop(s, in, "initial weights from a peer other than worker 0");
        return;
    }
    if (s->data.ready) {
        RT_DEBUG(s->name, "initial weights ignored: already initialised");
        return;
    }
    const char *why = s_check_chunk(s, w, m);
    if (why) {
        server_shard_drop(s, in, why);
        return;
    }
    if (m->has_params) {
        memcpy(s->data.w + w->p_recv, in->params, m->params.count * sizeof(float));
        w->p_recv += m->params.count;
    }
    if (m->has_buffers) {
        memcpy(s->data.bw, in->buffers, s->data.b_cnt * sizeof(float));
        w->b_recv = 1;
    }
    if (w->p_recv == s->data.p_cnt && (s->data.b_cnt == 0 || w->b_recv)) {
        w->p_recv = 0;
        w->b_recv = 0;
        s->data.ready = 1;
        RT_INFO(s->name, "initial weights received from worker 0");
        server_shard_serve_pending(s);
    }
}

/* After a push chunk or an eviction: apply the step when every worker still awaited has pushed
 * its whole slice, else update the prefix that every awaited worker covers once all of them have
 * started (the step's sample count is known then). */
void server_shard_progress(server_shard_t *s)
{
    if (!s->data.ready || !s->step.sched_known)
        return;
    int all = 1, started = 1, rejected = 0;
    uint64_t lo = s->data.p_cnt;
    for (int i = 0; i < s->cfg.n_workers; i++) {
        const struct server_shard_worker *w = &s->data.workers[i];
        rejected |= w->rejected && !w->evicted;
        if (server_shard_excluded(w))
            continue;
        all &= w->complete;
        started &= server_shard_started(w);
        if (w->p_recv < lo)
            lo = w->p_recv;
    }
    /* every parameter needs a contribution (not the case when every worker was evicted early),
     * unless a push was rejected: then the parameters no gradient reached keep their values */
    if (all && (rejected ||
                (s->step.summed == s->data.p_cnt && (s->data.b_cnt == 0 || s->step.b_summed)))) {
        s_apply(s);
    } else if (started && s->step.n_started > 0 && lo <= s->step.summed &&
               lo >= s->step.applied + S_APPLY_MIN) {
        s_apply_upto(s, lo);
    }
}

/* PUSH: a gradient chunk of the current step, weighted by its sample count; the update overlaps the
 * rest of the push (server_shard_progress). */
void server_shard_on_push(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    struct server_shard_worker *w = server_shard_bound(s, in);
    char why[128];
    if (!w) {
        server_shard_drop(s, in, "push from a peer not bound to that worker id");
        return;
    }
    if (!s->data.ready || m->step != s->data.version) {
        snprintf(why, sizeof why, "push for step %llu, this shard is at step %llu",
                 (unsigned long long)m->step, (unsigned long long)s->data.version);
        server_shard_drop(s, in, why);
        return;
    }
    if (w->complete) {
        server_shard_drop(s, in, "worker already pushed its whole slice of this step");
        return;
    }
    const char *order = s_check_chunk(s, w, m);
    if (order) {
        server_shard_drop(s, in, order);
        return;
    }
    if (w->p_recv > 0 || w->b_recv) {
        if (m->samples != w->samples) {
            server_shard_drop(s, in, "sample count differs between chunks of one push");
            return;
        }
    }
    int rc = s_sched_current(s);
    if (rc) {
        snprintf(why, sizeof why, "schedule of the step unavailable: %s", rt_err_msg());
        server_shard_drop(s, in, why);
        return;
    }
    if (w->evicted && w->rebound && !s->co.coord) {
        /* a restarted worker's first push here: ask whether it takes part in this step */
        struct server_coord_point pt;
        if (server_shard_sched_ask(s, s->data.version, &pt, SERVER_SHARD_MEMBERS_WAIT_MS))
            RT_WARN(s->name, "asking the coordinator for the members: %s", rt_err_msg());
    }
    if (w->evicted) {
        server_shard_drop(s, in, "push from an evicted worker");
        return;
    }
    if (s->step.sched.done || m->lr != s->step.sched.lr ||
        m->sched_version != s->step.sched.version) {
        snprintf(why, sizeof why,
                 "push uses schedule v%llu lr %g, the schedule in force is v%llu lr %g%s",
                 (unsigned long long)m->sched_version, (double)m->lr,
                 (unsigned long long)s->step.sched.version, (double)s->step.sched.lr,
                 s->step.sched.done ? " (training is over)" : "");
        server_shard_drop(s, in, why);
        return;
    }
    if (w->rejected) {
        s->st.dropped++; /* the rest of a rejected push: reported once, with the first */
        return;
    }
    const char *bad = s_check_values(s, w, m, in);
    if (bad) {
        w->rejected = 1;
        s->st.rejected++;
        server_shard_drop(s, in, bad);
        server_shard_rejected(s, m->sender, s->data.version, bad);
        server_shard_progress(s);
        return;
    }
    w->active = 1;
    float a = (float)m->samples;
    if (w->p_recv == 0 && !w->b_recv) {
        /* first chunk of this worker: its sample count joins the step's total */
        w->samples = m->samples;
        s->step.total_samples += m->samples;
        s->step.total_loss += (double)m->loss * (double)m->samples;
        s->step.total_correct += m->correct;
        s->step.n_started++;
    }
    if (m->has_buffers) {
        /* the first contribution of the step overwrites, the others add */
        rt_wire_axpy(s->data.bacc, a, in->buffers, (size_t)s->data.b_cnt, s->step.b_summed);
        s->step.b_summed = 1;
        w->b_recv = 1;
    }
    if (m->has_params) {
        /* the part below `summed` adds to earlier contributions, the part above is the first */
        uint64_t lo = w->p_recv, hi = w->p_recv + m->params.count;
        uint64_t mid = hi < s->step.summed ? hi : (lo > s->step.summed ? lo : s->step.summed);
        const uint8_t *src = in->params;
        if (mid > lo)
            rt_wire_axpy(s->data.acc + lo, a, src, (size_t)(mid - lo), 1);
        if (hi > mid)
            rt_wire_axpy(s->data.acc + mid, a, src + (mid - lo) * sizeof(float), (size_t)(hi - mid),
                         0);
        if (hi > s->step.summed)
            s->step.summed = hi;
        w->p_recv = hi;
    }
    s->st.pushes++;
    if (w->p_recv == s->data.p_cnt && (s->data.b_cnt == 0 || w->b_recv)) {
        w->complete = 1;
        s->step.n_complete++;
    }
    server_shard_progress(s);
}

/* PULL: the weights of a version, now when it is the current one, else once it is made (a few
 * versions ahead at most). */
void server_shard_on_pull(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    char why[128];
    struct server_shard_worker *pw = server_shard_bound(s, in);
    if (!pw) {
        server_shard_drop(s, in, "pull from a peer not bound to that worker id");
        return;
    }
    pw->active = 1;
    if (pw->evicted && !pw->rebound) {
        server_shard_drop(s, in, "pull from an evicted worker");
        server_shard_reply_error(s, in, m->step, RT_ERR_EVICTED, "this worker was evicted");
        return;
    }
    if (s->data.ready && m->step == s->data.version) {
        if (s_send_weights(s, in->route, in->route_len))
            RT_WARN(s->name, "weights reply failed: %s", rt_err_msg());
        return;
    }
    if ((!s->data.ready && m->step == 0) ||
        (s->data.ready && m->step > s->data.version && m->step <= s->data.version + S_PULL_AHEAD)) {
        if (s->data.n_pend >= SERVER_SHARD_MAX_PENDING) {
            server_shard_drop(s, in, "too many pulls waiting");
            return;
        }
        struct server_shard_pull *p = &s->data.pend[s->data.n_pend++];
        memcpy(p->route, in->route, in->route_len);
        p->route_len = in->route_len;
        p->version = m->step;
        return;
    }
    snprintf(why, sizeof why, "pull for version %llu, this shard is at version %llu",
             (unsigned long long)m->step, (unsigned long long)s->data.version);
    server_shard_drop(s, in, why);
    server_shard_reply_error(s, in, m->step, RT_ERR_STATE, why);
}

/* SNAPSHOT from any peer (the eigen service): the latest epoch-start copy, copied into the
 * frames (the copy changes at the next epoch, a slow reader must not see it move). */
void server_shard_on_snapshot(server_shard_t *s, const struct rt_sock_in *in)
{
    const struct rt_wire_msg *m = &in->m;
    if (!s->cfg.snapshots || s->snap.version == UINT64_MAX) {
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_ERROR, s->cfg.shard, s->name);
        r.step = m->step;
        r.sched_version = m->sched_version; /* the observer's round */
        r.err_code = RT_ERR_STATE;
        snprintf(r.text, sizeof r.text, "%s",
                 s->cfg.snapshots ? "no snapshot yet" : "this shard keeps no snapshots");
        server_shard_reply(s, in, &r, "snapshot reply");
        return;
    }
    if (m->step && m->step - 1 == s->snap.version) {
        /* the observer holds this snapshot already (step = its version + 1): a SNAPSHOT header
         * back, no weights */
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_SNAPSHOT, s->cfg.shard, s->name);
        r.step = s->snap.version;
        r.epoch = s->snap.epoch;
        r.sched_version = m->sched_version; /* echo the observer's round */
        server_shard_reply(s, in, &r, "snapshot reply");
        return;
    }
    uint64_t chunk = s->cfg.chunk_floats, done = 0;
    do {
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_WEIGHTS, s->cfg.shard, s->name);
        r.step = s->snap.version;
        r.epoch = s->snap.epoch;
        r.sched_version = m->sched_version; /* echo the observer's round */
        r.checksum = s->cfg.checksum;
        uint64_t k = s->data.p_cnt - done < chunk ? s->data.p_cnt - done : chunk;
        r.has_params = 1;
        r.params.offset = s->data.p_off + done;
        r.params.count = k;
        if (done == 0 && s->data.b_cnt) {
            r.has_buffers = 1;
            r.buffers.offset = s->data.b_off;
            r.buffers.count = s->data.b_cnt;
        }
        if (rt_sock_send(s->io.sock, in->route, in->route_len, &r, s->snap.w + done, s->snap.b,
                         NULL)) {
            RT_WARN(s->name, "snapshot reply failed: %s", rt_err_msg());
            return;
        }
        done += k;
    } while (done < s->data.p_cnt);
}

/* BYE: the worker leaves (the serving loop ends once every worker has left). */
void server_shard_on_bye(server_shard_t *s, const struct rt_sock_in *in)
{
    struct server_shard_worker *w = server_shard_bound(s, in);
    if (!w) {
        server_shard_drop(s, in, "goodbye from an unknown peer");
        return;
    }
    w->bye = 1;
}
