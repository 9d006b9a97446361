/*
 * server_shard_evict: workers that stop answering (see server_shard.h). Shard 0 evicts a worker
 * silent for cfg.evict_ms (server_coord decides who is overdue and what the interruption costs):
 * the step it blocks completes with the others, every parameter averaged over the gradients that
 * arrived for it. The other shards learn the members of a step from the coordinator, with its
 * schedule and by asking while a step waits. A restarted worker takes its evicted slot back from
 * the first step nobody has asked about.
 */
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "server_shard_int.h"

#define S_MEMBERS_POLL_MS 200 /* shards > 0: ask the members of a waiting step this often */

/* Shard 0: the workers that rejoined and take part in the current step are awaited again (their
 * slot has no push of this step: they rejoin at a step nobody had asked about). */
void server_shard_rejoin_check(server_shard_t *s)
{
    for (int i = 0; i < s->cfg.n_workers; i++) {
        struct server_shard_worker *w = &s->data.workers[i];
        if (w->evicted && w->rebound && !server_shard_started(w) &&
            server_coord_is_member(s->co.coord, i, s->data.version)) {
            w->evicted = 0;
            w->rebound = 0;
        }
    }
}

/* Shard 0: a restarted worker took the slot `id` of an evicted one (log, metrics). */
void server_shard_on_rejoin(server_shard_t *s, int id, const uint8_t *route, size_t rlen)
{
    char hex[RT_SOCK_ROUTE_HEX];
    rt_sock_route_hex(route, rlen, hex, sizeof hex);
    uint64_t step = server_coord_join_step(s->co.coord, id);
    RT_WARN(s->name, "worker %d '%s' (peer %s) rejoins: it takes part from step %llu", id,
            s->data.workers[id].name, hex, (unsigned long long)step);
    if (s->cfg.metrics) {
        rt_metrics_begin(s->cfg.metrics, "rejoin");
        rt_metrics_int(s->cfg.metrics, "worker", id);
        rt_metrics_str(s->cfg.metrics, "name", s->data.workers[id].name);
        rt_metrics_str(s->cfg.metrics, "peer", hex);
        rt_metrics_int(s->cfg.metrics, "step", (long long)step);
        if (rt_metrics_end(s->cfg.metrics))
            RT_WARN(s->name, "rejoin event: %s", rt_err_msg());
    }
    server_shard_rejoin_check(s);
}

/* The members of the step as the coordinator sent them (bitmap; empty: every worker): the workers
 * left out are evicted here too (the step is not applied here: see server_shard_on_evicted). */
void server_shard_members(server_shard_t *s, const uint8_t *bits, uint32_t len)
{
    for (int i = 0; i < s->cfg.n_workers; i++) {
        struct server_shard_worker *w = &s->data.workers[i];
        int member = !len || ((uint32_t)(i / 8) < len && (bits[i / 8] & (1u << (i % 8))));
        if (!member)
            server_shard_on_evicted(s, i, 0);
        else if (w->evicted && w->rebound && !server_shard_started(w)) {
            /* a restarted worker takes part from here (a step it has not pushed yet) */
            w->evicted = 0;
            w->rebound = 0;
            RT_INFO(s->name, "worker %d '%s' takes part again from step %llu", i, w->name,
                    (unsigned long long)s->data.version);
        }
    }
}

/* Worker `id` is no longer awaited (the coordinator evicted it): what it pushed of the current
 * step counts for the parameters it reached; with `progress`, apply the step if it is complete
 * now (not while a push is being handled: that push finishes first). */
void server_shard_on_evicted(server_shard_t *s, int id, int progress)
{
    struct server_shard_worker *w = &s->data.workers[id];
    if (w->evicted)
        return;
    w->evicted = 1;
    s->st.evicted++;
    if (server_shard_partial(w))
        RT_WARN(s->name,
                "worker %d '%s' evicted in the middle of its push of step %llu: its gradient "
                "counts for the first %llu of %llu parameters here",
                id, w->name, (unsigned long long)s->data.version, (unsigned long long)w->p_recv,
                (unsigned long long)s->data.p_cnt);
    else if (!s->co.coord)
        RT_WARN(s->name, "worker %d '%s' evicted by the coordinator at step %llu", id, w->name,
                (unsigned long long)s->data.version);
    /* its pulls waiting for the next version go nowhere */
    int keep = 0;
    for (int i = 0; i < s->data.n_pend; i++)
        if (!server_shard_route_eq(w, s->data.pend[i].route, s->data.pend[i].route_len))
            s->data.pend[keep++] = s->data.pend[i];
    s->data.n_pend = keep;
    if (progress)
        server_shard_progress(s);
}

void server_shard_evict(server_shard_t *s, int id, const char *reason, double silent_ms)
{
    struct server_shard_worker *w = &s->data.workers[id];
    /* a slice complete here counts: the step its loss interrupts is the next one */
    uint64_t from = s->data.version + (s->data.ready && w->complete ? 1 : 0);
    struct server_coord_loss loss;
    if (server_coord_evict(s->co.coord, id, from, &loss))
        return;
    char hex[RT_SOCK_ROUTE_HEX], silent[48] = "";
    rt_sock_route_hex(w->route, w->route_len, hex, sizeof hex);
    if (silent_ms >= 0)
        snprintf(silent, sizeof silent, " for %.0f ms", silent_ms);
    s->st.lost += loss.samples;
    RT_WARN(s->name,
            "worker %d '%s' (peer %s) %s%s: evicted at step %llu; %llu samples of %d interrupted "
            "step(s) lost for this epoch, the other workers share the batch from the next step",
            id, w->name, hex, reason, silent, (unsigned long long)s->data.version,
            (unsigned long long)loss.samples, loss.steps);
    if (s->cfg.metrics) {
        rt_metrics_begin(s->cfg.metrics, "evict");
        rt_metrics_int(s->cfg.metrics, "worker", id);
        rt_metrics_str(s->cfg.metrics, "name", w->name);
        rt_metrics_str(s->cfg.metrics, "peer", hex);
        rt_metrics_str(s->cfg.metrics, "reason", reason);
        rt_metrics_int(s->cfg.metrics, "step", (long long)s->data.version);
        if (silent_ms >= 0)
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
    server_shard_on_evicted(s, id, 1);
}

/* Shard 0: evict the workers silent for longer than the timeout, and complete the step they were
 * blocking. */
void server_shard_evict_poll(server_shard_t *s)
{
    if (!s->co.coord)
        return;
    int gone[RT_WIRE_MEMBERS_BYTES * 8] = {0};
    int n = s->cfg.n_workers < (int)(sizeof gone / sizeof gone[0])
                ? s->cfg.n_workers
                : (int)(sizeof gone / sizeof gone[0]);
    for (int i = 0; i < n; i++)
        gone[i] = s->data.workers[i].bye;
    double silent_ms = 0;
    int id;
    while ((id = server_coord_overdue(s->co.coord, n == s->cfg.n_workers ? gone : NULL,
                                      &silent_ms)) >= 0) {
        uint64_t before = s->st.evicted;
        server_shard_evict(s, id, "silent", silent_ms);
        if (s->st.evicted == before)
            break;
    }
}

/* Shards > 0: while some awaited worker has not pushed the current step (or said goodbye at the
 * end), ask the coordinator every S_MEMBERS_POLL_MS (with force: now) who still takes part. */
void server_shard_members_poll(server_shard_t *s, int force)
{
    if (s->co.coord || !s->data.ready)
        return;
    int waiting = 0;
    for (int i = 0; i < s->cfg.n_workers; i++) {
        const struct server_shard_worker *w = &s->data.workers[i];
        waiting |= !w->evicted && !w->bye && !w->complete;
    }
    double now = rt_clock_now();
    if (!waiting || (!force && now - s->ev.members_at < S_MEMBERS_POLL_MS / 1000.0))
        return;
    s->ev.members_at = now;
    /* ask about a step already announced (never announce one: decisions are stamped from the
     * first step nobody has asked about): the current one once a worker pushed it, else the
     * last one applied */
    uint64_t step;
    if (s->step.sched_known)
        step = s->data.version;
    else if (s->data.version > s->start_step)
        step = s->data.version - 1;
    else
        return;
    uint64_t before = s->st.evicted;
    struct server_coord_point pt;
    if (server_shard_sched_ask(s, step, &pt, SERVER_SHARD_MEMBERS_WAIT_MS)) {
        RT_WARN(s->name, "asking the coordinator for the members: %s", rt_err_msg());
        return;
    }
    if (s->st.evicted != before)
        server_shard_progress(s);
}
