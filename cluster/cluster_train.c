/*
 * cluster_train: `eigenbatch train`, the embedded mode: S shards and W workers as threads of this
 * process (cluster_embed), over inproc:// unless cluster.transport says otherwise; for ABS/ABSA
 * the eigen service runs as one more thread. The output directory receives config.yaml (the
 * resolved configuration), metrics.jsonl and weights.safetensors (written by the worker the
 * coordinator names the lead, worker_app). With fault.rollback, a run that stops on something not
 * finite starts again from its newest complete checkpoint (cluster_fault).
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include <zmq.h>

#include "app_model.h"
#include "cluster_cmds.h"
#include "cluster_embed.h"
#include "cluster_fault.h"
#include "eigensvc_main.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "server_main.h"
#include "worker_app.h"

static const char s_train_usage[] =
    "usage: eigenbatch train --config FILE [--set key=value]... [--output-dir DIR] [--seed N]\n"
    "                        [--resume auto|PATH]\n"
    "Trains in this process: cluster.shards shard threads and cluster.workers worker threads\n"
    "(over inproc:// by default), the eigen service as a thread for ABS/ABSA. Writes\n"
    "DIR/config.yaml, DIR/metrics.jsonl, DIR/weights.safetensors and, every\n"
    "checkpoint.every_epochs epochs, DIR/checkpoints/epoch-NNNNNN (checkpoint.keep kept).\n"
    "--resume auto starts from the newest complete checkpoint in DIR (none: a fresh start),\n"
    "--resume PATH from that one. With fault.rollback (--rollback true), a run that stops on\n"
    "something not finite starts again from the newest complete checkpoint (at most\n"
    "fault.max_rollbacks times, a rollback event each). Flags and --set follow the\n"
    "configuration and override it.\n"
    "Keys: configs/*.yaml, README.md.\n";

/* The eigen service's PUB endpoint in this process's context, unless --eig-pub names one. */
#define S_DECISIONS_EP "inproc://eb-decisions"

/* The eigen service thread. */
struct s_eig_job {
    eigensvc_t *svc; /* the service */
    atomic_int stop; /* raised when training is over */
    int rc;          /* eigensvc_run's result */
    char err[256];   /* its detail */
};

static void *s_eig_main(void *arg)
{
    struct s_eig_job *j = arg;
    j->rc = eigensvc_run(j->svc, &j->stop);
    if (j->rc)
        snprintf(j->err, sizeof j->err, "%s", rt_err_msg());
    return NULL;
}

/* The eigen service's configuration: the run's (eigensvc_main_cfg, as the eigen service process
 * reads it) plus this process's endpoints, context and metrics. eps: the shard endpoints. */
static int s_eig_cfg(const struct app_opts *o, void *ctx, const char *const *eps,
                     rt_metrics_t *metrics, struct eigensvc_cfg *ec)
{
    int rc = eigensvc_main_cfg(o, ec);
    if (rc)
        return rc;
    ec->zmq_ctx = ctx;
    ec->n_shards = (int)o->cluster.shards;
    ec->endpoints = eps;
    ec->test_db = NULL; /* worker 0 evaluates */
    ec->threads = (int)o->train.threads;
    ec->metrics = metrics;
    ec->timeout_ms = (int)o->cluster.timeout_ms;
    return RT_OK;
}

/* Run the cluster as threads; *eig_rc receives the eigen service's outcome. */
static int s_train_run(const struct app_opts *o, struct cluster_embed_cfg *cc,
                       struct worker_app *lead)
{
    if (!app_opts_needs_eigensvc(o))
        return cluster_embed_run(cc, NULL, NULL, NULL);
    if (strcmp(cc->transport, "inproc") && strcmp(cc->transport, "ipc"))
        return rt_err_set(RT_ERR_CONFIG,
                          "cluster.transport: %s with the eigen service: use "
                          "inproc or ipc",
                          cc->transport);
    int S = cc->n_shards, rc;
    char(*eps)[RT_SOCK_ENDPOINT_MAX] = calloc((size_t)S, sizeof *eps);
    const char **ep = calloc((size_t)S, sizeof *ep);
    void *ctx = rt_sock_ctx_new(cc->io_threads);
    struct s_eig_job job = {0};
    atomic_init(&job.stop, 0);
    pthread_t th;
    int started = 0;
    struct eigensvc_cfg ec;
    if (!eps || !ep || !ctx) {
        rc = rt_err_set(RT_ERR_NOMEM, "eigen service");
        goto out;
    }
    for (int i = 0; i < S; i++) {
        if ((rc = rt_sock_endpoint(eps[i], sizeof eps[i], cc->transport, cc->where, cc->port, i)))
            goto out;
        ep[i] = eps[i];
    }
    if ((rc = s_eig_cfg(o, ctx, ep, lead->metrics, &ec)))
        goto out;
    /* the decision stream: the workers prepare for the batch sizes it announces */
    if (!ec.pub_endpoint)
        ec.pub_endpoint = S_DECISIONS_EP;
    cc->decisions = ec.pub_endpoint;
    if ((rc = eigensvc_new(&ec, &job.svc)))
        goto out;
    if (pthread_create(&th, NULL, s_eig_main, &job)) {
        rc = rt_err_set(RT_ERR_NOMEM, "cannot start the eigen service thread");
        goto out;
    }
    started = 1;
    cc->zmq_ctx = ctx;
    cc->sync = ec.sync; /* the coordinator holds each epoch start for its decision */
    rc = cluster_embed_run(cc, NULL, NULL, NULL);
out:
    if (started) {
        /* training is over: stop the service, and end any call of it that waits on the shards
         * (they are gone) by shutting the shared context down */
        atomic_store(&job.stop, 1);
        zmq_ctx_shutdown(ctx);
        pthread_join(th, NULL);
        if (job.rc)
            RT_INFO("train", "eigen service stopped after training: %s", job.err);
    }
    eigensvc_destroy(&job.svc);
    rt_sock_ctx_destroy(&ctx);
    free(eps);
    free(ep);
    return rc;
}

static int s_train(struct app_opts *o, const rt_config_t *cfg)
{
    int W = (int)o->cluster.workers, rc = RT_OK, n_open = 0;
    struct server_coord_sched sched = {0};
    server_sched_t *owned = NULL;
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    struct worker_app *nns = calloc((size_t)W, sizeof *nns);
    struct worker_compute *cbs = calloc((size_t)W, sizeof *cbs);
    double *weights = calloc((size_t)W, sizeof *weights);
    char where[64] = "train", tmpdir[] = "/tmp/eb-train-XXXXXX";
    char resume[PATH_MAX], ckpt_root[PATH_MAX];
    int own_dir = 0;
    if (!nns || !cbs || !weights) {
        rc = rt_err_set(RT_ERR_NOMEM, "train");
        goto out;
    }
    /* size the shards from the net; an epoch is the dataset */
    if ((rc = app_model_fill_sizes(o)) || (rc = app_opts_write_config(o, cfg)))
        goto out;
    if ((rc = app_opts_resume(o, resume, sizeof resume)))
        goto out;
    if ((rc = app_opts_checksum(o, &ck)) || (rc = server_main_schedule(o, &sched, &owned)))
        goto out;
    nn_set_threads((int)o->train.threads);
    for (; n_open < W; n_open++) {
        /* the first opens metrics.jsonl now (the shard and eigen-service threads write to it
         * too); the others write to the same when the coordinator names one of them the lead */
        rc = worker_app_open(o, &nns[n_open], 1, n_open == 0);
        if (rc) {
            n_open++;
            goto out;
        }
        if (n_open > 0)
            worker_app_borrow_metrics(&nns[n_open], nns[0].metrics);
        cbs[n_open] = worker_app_compute(&nns[n_open]);
        weights[n_open] = app_opts_worker_weight(o, n_open);
    }
    if (!strcmp(o->cluster.transport, "ipc")) {
        if (!mkdtemp(tmpdir)) {
            rc = rt_err_set(RT_ERR_IO, "mkdtemp %s", tmpdir);
            goto out;
        }
        own_dir = 1;
        snprintf(where, sizeof where, "%s", tmpdir);
    } else if (!strcmp(o->cluster.transport, "tcp")) {
        snprintf(where, sizeof where, "127.0.0.1");
    }
    struct cluster_embed_cfg cc = {
        .n_shards = (int)o->cluster.shards,
        .n_workers = W,
        .transport = o->cluster.transport,
        .where = where,
        .port = (int)o->cluster.port,
        .n_params = (uint64_t)o->model.params,
        .n_buffers = (uint64_t)o->model.buffers,
        .momentum = (float)o->schedule.momentum,
        .weight_decay = (float)o->schedule.weight_decay,
        .sched = &sched,
        .compute = cbs,
        .weights = weights,
        .rebalance = app_opts_balance_measured(o),
        .snapshots = app_opts_needs_eigensvc(o),
        .sync_timeout_ms = (int)(o->abs.sync_timeout_s * 1000.0),
        .worker_timeout_ms = (int)o->cluster.timeout_ms,
        .evict_ms = (int)o->cluster.worker_timeout_ms,
        .max_grad_norm = (float)o->fault.max_grad_norm,
        .max_rejects = (int)o->fault.max_rejects,
        .metrics = nns[0].metrics,
        .chunk_floats = (uint32_t)o->cluster.chunk,
        .checksum = ck,
        .ckpt_root = app_opts_ckpt_root(o, ckpt_root, sizeof ckpt_root),
        .ckpt_every = (int)o->checkpoint.every_epochs,
        .ckpt_every_steps = (uint64_t)o->checkpoint.every_steps,
        .ckpt_every_minutes = o->checkpoint.every_minutes,
        .ckpt_keep = (int)o->checkpoint.keep,
        .resume = o->local.resume,
        .model = o->model.name,
        .metrics_listen = o->metrics_listen,
    };
    RT_INFO("train", "%s: %s on %s (%ld samples), %ld shards and %d workers over %s, %ld epochs",
            o->schedule.method, o->model.name, o->data.train, o->data.samples, o->cluster.shards, W,
            o->cluster.transport, o->schedule.epochs);
    double t0 = rt_progress_now();
    rc = s_train_run(o, &cc, &nns[0]);
    for (int i = 0; !rc && i < W; i++)
        if (nns[i].rc)
            rc = rt_err_set(nns[i].rc, "worker %d: %s", i, rt_err_msg());
    int lead = 0; /* the worker the coordinator named the lead at the end evaluated */
    for (int i = 0; i < W; i++)
        if (nns[i].is_lead)
            lead = i;
    if (!rc) {
        json_t *j =
            json_pack("{s:s, s:f, s:f}", "output_dir", o->output_dir ? o->output_dir : "",
                      "seconds", rt_progress_now() - t0, "eval_seconds", nns[lead].eval_seconds);
        if (j && isfinite(nns[lead].test_accuracy)) {
            json_object_set_new(j, "test_accuracy", json_real(nns[lead].test_accuracy));
            json_object_set_new(j, "test_loss", json_real(nns[lead].test_loss));
        }
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (txt)
            printf("%s\n", txt);
        free(txt);
        json_decref(j);
    }
out:
    /* the first worker owns the metrics the others borrow: it closes last */
    for (int i = n_open - 1; i >= 0; i--)
        worker_app_close(&nns[i]);
    server_main_schedule_free(&sched, &owned);
    if (own_dir)
        rmdir(tmpdir);
    free(nns);
    free(cbs);
    free(weights);
    return rc;
}

/* The command's body: a zoo model, trained in this process; after a non-finite stop, again from
 * the newest complete checkpoint while fault.rollback allows (cluster_fault). */
static int s_train_main(struct app_opts *o, rt_config_t *cfg)
{
    if (!strcmp(o->model.name, "synth")) {
        fprintf(stderr, "eigenbatch train: model.name must be a zoo model\n");
        return 2;
    }
    struct cluster_fault f = {0};
    for (;;) {
        int rc = s_train(o, cfg);
        if (!rc)
            return 0;
        char why[512];
        snprintf(why, sizeof why, "%s", rt_err_msg());
        if (rc != RT_ERR_NONFINITE || !cluster_fault_rollback(o, &f, why, cluster_fault_step(why)))
            break;
        o->local.resume = f.resume; /* s_train's own copy of the last one is gone */
    }
    fprintf(stderr, "eigenbatch train: %s\n", rt_err_msg());
    return 1;
}

int cluster_train_main(int argc, char **argv)
{
    return app_opts_main(argc, argv, s_train_usage, s_train_main);
}
