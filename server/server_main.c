/*
 * server_main: `eigenbatch server`: one parameter-server shard (server_shard) as a process; shard
 * 0 is also the coordinator and runs the schedule (server_sched for BL/FB/GG/ABS/ABSA, or a
 * constant one for schedule.steps). Options: app_opts (every role reads the same file); the
 * per-process ones here are --shard, --bind, --coord and --resume.
 */
#include "server_main.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_model.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "rt_sock.h"
#include "server_fixsched.h"
#include "server_shard.h"

static const char s_usage[] =
    "usage: eigenbatch server [--config FILE] [--set KEY=VALUE]... --shard I --bind ENDPOINT\n"
    "                         [--coord ENDPOINT (shards > 0)] [--resume auto|PATH] [options]\n"
    "Runs one parameter-server shard; shard 0 is also the coordinator and holds the schedule\n"
    "(schedule.method, or schedule.steps > 0: a constant one). The model's sizes come from\n"
    "model.name and data.train (a zoo model) or model.params/model.buffers (synth). With an\n"
    "output directory each shard writes its part of a checkpoint every checkpoint.every_epochs\n"
    "epochs (shard 0 completes it and writes config.yaml and the evict events); --resume starts\n"
    "from one.\n";

static atomic_int s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    atomic_store(&s_stop, 1);
}

static int s_run(struct app_opts *opts, rt_config_t *cfg);

int server_main(int argc, char **argv)
{
    return app_opts_main(argc, argv, s_usage, s_run);
}

/* The shard's body: sizes, checkpoint, schedule, then serve until the run ends. */
static int s_run(struct app_opts *opts, rt_config_t *cfg)
{
    struct app_opts o = *opts;
    if (app_model_fill_sizes(&o)) {
        fprintf(stderr, "eigenbatch server: %s\n", rt_err_msg());
        return 1;
    }
    /* the coordinator writes the resolved configuration (the same file every role resolves) */
    if (o.local.shard == 0 && app_opts_write_config(&o, cfg)) {
        fprintf(stderr, "eigenbatch server: %s\n", rt_err_msg());
        return 1;
    }
    if (!o.local.bind || (o.local.shard > 0 && !o.local.coord) ||
        o.local.shard >= o.cluster.shards || o.model.params < 1) {
        fprintf(stderr, "eigenbatch server: --bind (and --coord for shards > 0), --params and a "
                        "--shard in 0..shards-1 are required\n");
        return 2;
    }
    struct server_coord_sched sched = {0};
    server_sched_t *owned = NULL;
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    server_shard_t *s = NULL;
    rt_metrics_t *metrics = NULL; /* shard 0: eviction events, appended to OUTPUT/metrics.jsonl */
    char resume[PATH_MAX], ckpt_root[PATH_MAX], mpath[PATH_MAX];
    int rc = app_opts_checksum(&o, &ck);
    if (!rc && o.local.shard == 0 && o.output_dir && o.cluster.worker_timeout_ms > 0) {
        snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o.output_dir);
        if (rt_metrics_open(mpath, 1, &metrics))
            RT_WARN("server", "evictions go to the log only: %s", rt_err_msg());
    }
    if (!rc)
        rc = app_opts_resume(&o, resume, sizeof resume);
    if (!rc)
        rc = server_main_schedule(&o, &sched, &owned);
    if (!rc) {
        struct server_shard_cfg sc = {
            .shard = (int)o.local.shard,
            .n_shards = (int)o.cluster.shards,
            .n_workers = (int)o.cluster.workers,
            .n_params = (uint64_t)o.model.params,
            .n_buffers = (uint64_t)o.model.buffers,
            .endpoint = o.local.bind,
            .coord_endpoint = o.local.coord,
            .momentum = (float)o.schedule.momentum,
            .weight_decay = (float)o.schedule.weight_decay,
            .sched = &sched,
            .ckpt_root = app_opts_ckpt_root(&o, ckpt_root, sizeof ckpt_root),
            .ckpt_every = (int)o.checkpoint.every_epochs,
            .ckpt_every_steps = (uint64_t)o.checkpoint.every_steps,
            .ckpt_every_minutes = o.checkpoint.every_minutes,
            .ckpt_keep = (int)o.checkpoint.keep,
            .resume = o.local.resume,
            .model = strcmp(o.model.name, "synth") ? o.model.name : NULL,
            .chunk_floats = (uint32_t)o.cluster.chunk,
            .checksum = ck,
            /* the eigen service reads epoch-start snapshots under ABS / ABSA */
            .snapshots = app_opts_needs_eigensvc(&o),
            .sync = app_opts_sync(&o),
            .evict_ms = (int)o.cluster.worker_timeout_ms,
            .metrics = metrics,
            .sync_timeout_ms = (int)(o.abs.sync_timeout_s * 1000.0),
            .max_grad_norm = (float)o.fault.max_grad_norm,
            .max_rejects = (int)o.fault.max_rejects,
            .coord_timeout_ms = (int)o.cluster.coordinator_timeout_ms,
            .metrics_listen = o.metrics_listen,
        };
        rc = server_shard_new(&sc, &s);
    }
    if (!rc) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = s_on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        rt_sock_tune_malloc();
        rc = server_shard_run(s, &s_stop);
    }
    if (rc)
        fprintf(stderr, "eigenbatch server: shard %ld: %s\n", o.local.shard, rt_err_msg());
    server_shard_destroy(&s);
    rt_metrics_close(&metrics);
    server_main_schedule_free(&sched, &owned);
    /* a non-finite stop has an exit status of its own: launch may roll back on it */
    return rt_err_exit_status(rc);
}

int server_main_schedule(const struct app_opts *o, struct server_coord_sched *out,
                         server_sched_t **owned)
{
    *owned = NULL;
    if (o->schedule.steps > 0) {
        struct server_fixsched_cfg fc = {.batch = (uint32_t)o->schedule.batch,
                                         .lr = (float)o->schedule.lr,
                                         .n_samples = (uint64_t)o->data.samples,
                                         .steps = (uint64_t)o->schedule.steps};
        return server_fixsched_new(&fc, out);
    }
    enum server_sched_method m;
    int rc = server_sched_method_parse(o->schedule.method, &m);
    if (rc)
        return rc;
    struct server_sched_config c;
    server_sched_config_default(&c, m, o->data.samples, (int32_t)o->schedule.epochs);
    c.batch = o->schedule.batch;
    c.base_batch = o->schedule.base_batch > 0 ? o->schedule.base_batch : o->schedule.batch;
    if (o->schedule.batch_max > 0)
        c.batch_max = o->schedule.batch_max;
    if (c.batch_max < c.batch)
        c.batch_max = c.batch;
    c.micro_batch = (int32_t)o->train.micro_batch;
    c.lr = o->schedule.lr;
    c.lr_cap = o->schedule.lr_cap;
    c.momentum = o->schedule.momentum;
    c.weight_decay = o->schedule.weight_decay;
    c.rho = o->schedule.rho;
    c.warmup_epochs = (int32_t)o->schedule.warmup_epochs;
    c.gamma0 = o->abs.gamma;
    c.epsilon = o->abs.epsilon;
    if (o->abs.tau >= 0)
        c.tau = (int32_t)o->abs.tau;
    if ((rc = app_opts_decay_epochs(o, c.decay_epochs, SERVER_SCHED_MAX_DECAY, &c.n_decay)))
        return rc;
    server_sched_t *s = server_sched_new(&c);
    if (!s)
        return rt_err_set(RT_ERR_CONFIG, "schedule: %s", rt_err_msg());
    server_coord_use_sched(out, s);
    *owned = s;
    return RT_OK;
}

void server_main_schedule_free(struct server_coord_sched *s, server_sched_t **owned)
{
    if (*owned)
        server_sched_destroy(owned);
    else
        server_fixsched_destroy(s);
}
