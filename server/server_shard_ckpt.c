/*
 * server_shard_ckpt: the shard's checkpoints (see server_ckpt.h for the files and their layout).
 * At the end of every ckpt_every-th epoch each shard writes its range, momentum, buffers and
 * version; shard 0 also writes the coordinator's state and, once every shard's file is there, the
 * manifest that makes the checkpoint complete, and prunes the old ones. A shard started with a
 * checkpoint to resume loads its part of it (shard 0: the schedule and the ABS state too), checked
 * against this run's configuration.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "server_sched.h"
#include "server_shard_int.h"

#define S_CKPT_WAIT_MS 30000 /* shard 0 at the end: longest wait for the last checkpoint */
#define S_CKPT_POLL_MS 10    /* ... checking this often */

/* Shard 0: complete the pending checkpoint when every shard's file is there (manifest, then
 * pruning). Not yet: stays pending. */
void server_shard_ckpt_poll(server_shard_t *s)
{
    if (!s->ckpt.pending)
        return;
    /* at most every S_CKPT_POLL_MS: each look opens every shard's file */
    double now = rt_clock_now();
    if (now < s->ckpt.next_poll)
        return;
    s->ckpt.next_poll = now + S_CKPT_POLL_MS / 1000.0;
    int rc = server_ckpt_finish(s->ckpt.dir, s->ckpt.coord);
    if (rc == RT_ERR_STATE)
        return;
    s->ckpt.pending = 0;
    if (rc) {
        RT_ERROR(s->name, "checkpoint %s: %s", s->ckpt.dir, rt_err_msg());
        return;
    }
    RT_INFO(s->name, "checkpoint %s complete (epoch %llu, step %llu)", s->ckpt.dir,
            (unsigned long long)s->ckpt.coord->epoch, (unsigned long long)s->ckpt.coord->step);
    int keep = s->cfg.ckpt_keep > 0 ? s->cfg.ckpt_keep : SERVER_CKPT_KEEP_DEFAULT;
    if (rt_ckpt_prune(s->ckpt.root, keep))
        RT_WARN(s->name, "pruning checkpoints: %s", rt_err_msg());
}

/* Shard 0: wait a while for the pending checkpoint (the end of training). */
void server_shard_ckpt_drain(server_shard_t *s)
{
    for (int waited = 0; s->ckpt.pending && waited < S_CKPT_WAIT_MS; waited += S_CKPT_POLL_MS) {
        server_shard_ckpt_poll(s);
        if (s->ckpt.pending)
            usleep(S_CKPT_POLL_MS * 1000);
    }
    if (s->ckpt.pending) {
        RT_ERROR(s->name, "checkpoint %s left incomplete (does every shard write checkpoints?): %s",
                 s->ckpt.dir, rt_err_msg());
        s->ckpt.pending = 0;
    }
}

/* This shard's place in the flat vectors, as its checkpoint file records it (version and epoch
 * left to the writer). */
static struct server_ckpt_shard s_ckpt_layout(const server_shard_t *s)
{
    return (struct server_ckpt_shard){.shard = s->cfg.shard,
                                      .n_shards = s->cfg.n_shards,
                                      .n_params = s->cfg.n_params,
                                      .n_buffers = s->cfg.n_buffers,
                                      .p_off = s->data.p_off,
                                      .p_cnt = s->data.p_cnt,
                                      .b_off = s->data.b_off,
                                      .b_cnt = s->data.b_cnt};
}

/* Shard 0: the coordinator's part of the checkpoint of `epoch` (the current version ends epoch -
 * 1): the schedule's state, the step's point and the ABS state held. */
static int s_ckpt_coord(server_shard_t *s, uint64_t epoch, const char *dir)
{
    const struct server_coord_sched *cs = s->cfg.sched;
    if (!cs->ops->get_state)
        return rt_err_set(RT_ERR_UNSUPPORTED, "this schedule cannot be checkpointed");
    struct server_ckpt_coord *c = s->ckpt.coord;
    memset(c, 0, sizeof *c);
    c->epoch = epoch;
    c->step = s->data.version;
    c->n_shards = s->cfg.n_shards;
    c->n_params = s->cfg.n_params;
    c->n_buffers = s->cfg.n_buffers;
    snprintf(c->model, sizeof c->model, "%s", s->ckpt.model);
    c->batch = s->step.sched.batch;
    c->lr = s->step.sched.lr;
    c->gamma = s->step.sched.gamma;
    c->sched_version = s->step.sched.version;
    cs->ops->get_state(cs->self, &c->sched);
    c->has_abs = server_coord_get_abs(s->co.coord, &c->abs) == RT_OK;
    return server_ckpt_coord_write(dir, c);
}

/* Write this shard's part of the checkpoint of `epoch` (shard 0: and the coordinator's, then try
 * to complete it). A failure is logged: training goes on, the checkpoint stays incomplete. */
void server_shard_ckpt_write(server_shard_t *s, uint64_t epoch, int mid)
{
    if (s->ckpt.pending) {
        /* the previous one may be complete by now (its poll is rate-limited): look once more */
        s->ckpt.next_poll = 0;
        server_shard_ckpt_poll(s);
    }
    if (s->ckpt.pending) {
        RT_ERROR(s->name,
                 "checkpoint %s never completed: a shard's file is missing (does every "
                 "shard write checkpoints?)",
                 s->ckpt.dir);
        s->ckpt.pending = 0;
    }
    char dir[RT_CKPT_PATH_MAX];
    int rc = rt_ckpt_dir_key(dir, sizeof dir, s->ckpt.root,
                             RT_CKPT_KEY(epoch, mid ? s->data.version : 0));
    if (!rc)
        rc = rt_ckpt_mkdirs(dir);
    struct server_ckpt_shard h = s_ckpt_layout(s);
    h.version = s->data.version;
    h.epoch = epoch;
    if (!rc)
        rc = server_ckpt_shard_write(dir, &h, s->data.w, s->data.mom, s->data.bw);
    if (!rc && s->co.coord)
        rc = s_ckpt_coord(s, epoch, dir);
    if (rc) {
        RT_ERROR(s->name, "checkpoint of epoch %llu: %s", (unsigned long long)epoch, rt_err_msg());
        return;
    }
    RT_DEBUG(s->name, "checkpoint part of epoch %llu written at version %llu",
             (unsigned long long)epoch, (unsigned long long)s->data.version);
    if (s->co.coord) {
        snprintf(s->ckpt.dir, sizeof s->ckpt.dir, "%s", dir);
        s->ckpt.pending = 1;
        s->ckpt.next_poll = 0;
        server_shard_ckpt_poll(s);
    }
}

/* Shard 0 resuming: the schedule (this run's configuration, the checkpoint's decisions) and the
 * ABS state, from the coordinator's files of dir. */
static int s_resume_coord(server_shard_t *s, const char *dir, uint64_t epoch, uint64_t step,
                          int mid)
{
    const struct server_coord_sched *cs = s->cfg.sched;
    struct server_sched_state *cur = NULL;
    int rc;
    if (!cs->ops->get_state || !cs->ops->set_state)
        return rt_err_set(RT_ERR_UNSUPPORTED, "%s: this run's schedule cannot resume", dir);
    if ((rc = server_ckpt_check(dir, SERVER_CKPT_COORD, s->cfg.n_shards, s->cfg.n_params,
                                s->cfg.n_buffers, s->ckpt.model, NULL, NULL)) ||
        (rc = server_ckpt_check(dir, SERVER_CKPT_SCHED, s->cfg.n_shards, s->cfg.n_params,
                                s->cfg.n_buffers, s->ckpt.model, NULL, NULL)) ||
        (rc = server_ckpt_coord_read(dir, s->ckpt.coord)))
        return rc;
    struct server_ckpt_coord *c = s->ckpt.coord;
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
    if (!pt.done && (pt.epoch != epoch || (pt.epoch_offset != 0) != mid)) {
        rc = rt_err_set(RT_ERR_CONFIG,
                        "%s: the schedule puts step %llu at epoch %llu sample %llu, not %s epoch "
                        "%llu",
                        dir, (unsigned long long)step, (unsigned long long)pt.epoch,
                        (unsigned long long)pt.epoch_offset, mid ? "within" : "at the start of",
                        (unsigned long long)epoch);
        goto out;
    }
    server_coord_resume(s->co.coord, step, c->has_abs ? &c->abs : NULL);
    RT_INFO(s->name, "resumed the schedule at epoch %llu, step %llu (B %u, lr %g, %u decisions)%s",
            (unsigned long long)epoch, (unsigned long long)step, c->batch, (double)c->lr,
            c->sched.n_decisions, c->has_abs ? " and the ABS state" : "");
out:
    free(cur);
    return rc;
}

/* Load this shard's part of the checkpoint cfg->resume (all of it on shard 0). */
int server_shard_resume(server_shard_t *s, const char *dir)
{
    char name[SERVER_CKPT_NAME_MAX];
    uint64_t epoch = 0, step = 0;
    server_ckpt_shard_name(name, sizeof name, s->cfg.shard);
    int rc = server_ckpt_check(dir, name, s->cfg.n_shards, s->cfg.n_params, s->cfg.n_buffers,
                               s->ckpt.model, &epoch, &step);
    if (rc)
        return rc;
    struct server_ckpt_shard h = s_ckpt_layout(s);
    if ((rc = server_ckpt_shard_read(dir, &h, s->data.w, s->data.mom, s->data.bw)))
        return rc;
    if (h.version != step || h.epoch != epoch)
        return rt_err_set(RT_ERR_FORMAT,
                          "%s/%s: version %llu epoch %llu, the manifest says step %llu epoch %llu",
                          dir, name, (unsigned long long)h.version, (unsigned long long)h.epoch,
                          (unsigned long long)step, (unsigned long long)epoch);
    /* a checkpoint within an epoch (its directory says so) resumes mid-epoch: the schedule's
     * positions put the next step at the first sample no step has seen */
    uint64_t key = RT_CKPT_KEY(epoch, 0); /* a directory renamed by hand: at an epoch's start */
    if (rt_ckpt_dir_parse(dir, &key))
        RT_DEBUG(s->name, "%s", rt_err_msg());
    int mid = RT_CKPT_KEY_STEP(key) != 0;
    if (RT_CKPT_KEY_EPOCH(key) != epoch || (mid && RT_CKPT_KEY_STEP(key) != step))
        return rt_err_set(RT_ERR_FORMAT, "%s: the manifest says epoch %llu step %llu", dir,
                          (unsigned long long)epoch, (unsigned long long)step);
    if (s->co.coord && (rc = s_resume_coord(s, dir, epoch, step, mid)))
        return rc;
    s->ckpt.resumed_key = key;
    s->data.version = step;
    s->st.version = step;
    s->start_step = step;
    s->data.ready = 1;
    if (s->cfg.snapshots && !mid) /* the eigen service's snapshot of the epoch that starts */
        server_shard_snapshot_take(s, epoch);
    RT_INFO(s->name, "resumed from %s: epoch %llu, version %llu", dir, (unsigned long long)epoch,
            (unsigned long long)step);
    return RT_OK;
}
