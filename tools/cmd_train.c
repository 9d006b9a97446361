/*
 * cmd_train: the user-facing training commands.
 *   eigenbatch train --config FILE [--set key=value]... [--output-dir DIR] [--seed N]
 *       the embedded mode: S shards and W workers as threads of this process (server_cluster),
 *       over inproc:// unless cluster.transport says otherwise; for ABS/ABSA the eigen service
 *       runs as one more thread. The output directory receives config.yaml (the resolved
 *       configuration), metrics.jsonl and weights.safetensors (worker 0, eb_run).
 *   eigenbatch eval --model M --weights FILE --data DIR [--classes N] [--batch N]
 *       test accuracy and loss of a weights file; the last line printed is a JSON object.
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

#include "eb_cli.h"
#include "eb_run.h"
#include "eb_weights.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "server_ckpt.h"
#include "server_cluster.h"
#include <zmq.h>

#include "eigensvc.h"

#define S_EVAL_BATCH 256 /* default evaluation micro-batch */

static const char s_train_usage[] =
    "usage: eigenbatch train --config FILE [--set key=value]... [--output-dir DIR] [--seed N]\n"
    "                        [--resume auto|PATH]\n"
    "Trains in this process: cluster.shards shard threads and cluster.workers worker threads\n"
    "(over inproc:// by default), the eigen service as a thread for ABS/ABSA. Writes\n"
    "DIR/config.yaml, DIR/metrics.jsonl, DIR/weights.safetensors and, every\n"
    "checkpoint.every_epochs epochs, DIR/checkpoints/epoch-NNNNNN (checkpoint.keep kept).\n"
    "--resume auto starts from the newest complete checkpoint in DIR (none: a fresh start),\n"
    "--resume PATH from that one. Any flag of `eigenbatch launch` may follow the configuration\n"
    "and overrides it. Keys: configs/*.yaml, README.md.\n";

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

/* The eigen service's configuration: the run's (eb_run_eig_cfg, as `launch` passes it to its
 * process) plus this process's endpoints, context and metrics. eps: the shard endpoints. */
static int s_eig_cfg(const struct eb_opts *o, void *ctx, const char *const *eps,
                     rt_metrics_t *metrics, struct eigensvc_cfg *ec)
{
    int rc = eb_run_eig_cfg(o, ec);
    if (rc)
        return rc;
    ec->zmq_ctx = ctx;
    ec->n_shards = (int)o->shards;
    ec->endpoints = eps;
    ec->test_db = NULL; /* worker 0 evaluates */
    ec->threads = (int)o->threads;
    ec->metrics = metrics;
    ec->timeout_ms = (int)o->timeout_ms;
    return RT_OK;
}

/* Run the cluster as threads; *eig_rc receives the eigen service's outcome. */
static int s_train_run(const struct eb_opts *o, struct server_cluster_cfg *cc,
                       struct eb_run_nn *lead)
{
    if (!eb_opts_needs_eigensvc(o))
        return server_cluster_run(cc, NULL, NULL, NULL);
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
    if ((rc = eigensvc_new(&ec, &job.svc)))
        goto out;
    if (pthread_create(&th, NULL, s_eig_main, &job)) {
        rc = rt_err_set(RT_ERR_NOMEM, "cannot start the eigen service thread");
        goto out;
    }
    started = 1;
    cc->zmq_ctx = ctx;
    cc->sync = ec.sync; /* the coordinator holds each epoch start for its decision */
    rc = server_cluster_run(cc, NULL, NULL, NULL);
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

static int s_train(struct eb_opts *o, const rt_config_t *cfg)
{
    int W = (int)o->workers, rc = RT_OK, n_open = 0;
    struct server_coord_sched sched = {0};
    server_sched_t *owned = NULL;
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    struct eb_run_nn *nns = calloc((size_t)W, sizeof *nns);
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
    rc = eb_run_nn_open(o, &nns[0], 0, 0);
    if (!rc) {
        o->params = (long)nn_net_param_count(nns[0].net);
        o->buffers = (long)nn_net_buffer_count(nns[0].net);
        o->samples = (long)rt_loader_count(nns[0].loader);
    }
    eb_run_nn_close(&nns[0]);
    if (rc)
        goto out;
    if (o->output_dir) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/config.yaml", o->output_dir);
        if ((rc = eb_run_output_dir(o->output_dir)) || (rc = rt_config_dump(cfg, path)))
            goto out;
    }
    if ((rc = eb_opts_resume(o, resume, sizeof resume)))
        goto out;
    if ((rc = eb_opts_checksum(o->checksum, &ck)) || (rc = eb_opts_schedule(o, &sched, &owned)))
        goto out;
    nn_set_threads((int)o->threads);
    for (; n_open < W; n_open++) {
        rc = eb_run_nn_open(o, &nns[n_open], 1, n_open == 0);
        if (rc) {
            n_open++;
            goto out;
        }
        cbs[n_open] = eb_run_nn_compute(&nns[n_open]);
        weights[n_open] = eb_opts_worker_weight(o, n_open);
    }
    if (!strcmp(o->transport, "ipc")) {
        if (!mkdtemp(tmpdir)) {
            rc = rt_err_set(RT_ERR_IO, "mkdtemp %s", tmpdir);
            goto out;
        }
        own_dir = 1;
        snprintf(where, sizeof where, "%s", tmpdir);
    } else if (!strcmp(o->transport, "tcp")) {
        snprintf(where, sizeof where, "127.0.0.1");
    } else if (strcmp(o->transport, "inproc")) {
        rc = rt_config_error(cfg, "cluster.transport", "expected inproc, ipc or tcp, got '%s'",
                             o->transport);
        goto out;
    }
    struct server_cluster_cfg cc = {
        .n_shards = (int)o->shards,
        .n_workers = W,
        .transport = o->transport,
        .where = where,
        .port = (int)o->port,
        .n_params = (uint64_t)o->params,
        .n_buffers = (uint64_t)o->buffers,
        .momentum = (float)o->momentum,
        .weight_decay = (float)o->wd,
        .sched = &sched,
        .compute = cbs,
        .weights = weights,
        .snapshots = eb_opts_needs_eigensvc(o),
        .sync_timeout_ms = (int)(o->sync_timeout_s * 1000.0),
        .worker_timeout_ms = (int)o->timeout_ms,
        .evict_ms = (int)o->evict_ms,
        .metrics = nns[0].metrics,
        .chunk_floats = (uint32_t)o->chunk,
        .checksum = ck,
        .ckpt_root = eb_opts_ckpt_root(o, ckpt_root, sizeof ckpt_root),
        .ckpt_every = (int)o->ckpt_every,
        .ckpt_keep = (int)o->ckpt_keep,
        .resume = o->resume,
        .model = o->model,
    };
    RT_INFO("train", "%s: %s on %s (%ld samples), %ld shards and %d workers over %s, %ld epochs",
            o->method, o->model, o->data, o->samples, o->shards, W, o->transport, o->epochs);
    double t0 = rt_progress_now();
    rc = s_train_run(o, &cc, &nns[0]);
    for (int i = 0; !rc && i < W; i++)
        if (nns[i].rc)
            rc = rt_err_set(nns[i].rc, "worker %d: %s", i, rt_err_msg());
    if (!rc) {
        json_t *j =
            json_pack("{s:s, s:f, s:f}", "output_dir", o->output_dir ? o->output_dir : "",
                      "seconds", rt_progress_now() - t0, "eval_seconds", nns[0].eval_seconds);
        if (j && isfinite(nns[0].test_accuracy)) {
            json_object_set_new(j, "test_accuracy", json_real(nns[0].test_accuracy));
            json_object_set_new(j, "test_loss", json_real(nns[0].test_loss));
        }
        char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (txt)
            printf("%s\n", txt);
        free(txt);
        json_decref(j);
    }
out:
    for (int i = 0; i < n_open; i++)
        eb_run_nn_close(&nns[i]);
    eb_opts_schedule_free(&sched, &owned);
    if (own_dir)
        rmdir(tmpdir);
    free(nns);
    free(cbs);
    free(weights);
    return rc;
}

static int s_train_main(const struct eb_opts *opts, const rt_config_t *cfg)
{
    struct eb_opts o = *opts;
    if (!cfg) {
        fprintf(stderr, "eigenbatch train: --config FILE is required\n%s", s_train_usage);
        return 2;
    }
    if (!strcmp(o.model, "synth")) {
        fprintf(stderr, "eigenbatch train: model.name must be a zoo model\n");
        return 2;
    }
    if (eb_opts_check("train", &o))
        return 2;
    int rc = s_train(&o, cfg);
    if (rc)
        fprintf(stderr, "eigenbatch train: %s\n", rt_err_msg());
    return rc ? 1 : 0;
}

int eb_cmd_train(int argc, char **argv)
{
    return eb_opts_main("train", argc, argv, s_train_usage, s_train_main);
}

/* ---- eval ------------------------------------------------------------------------------------ */

static const char s_eval_usage[] =
    "usage: eigenbatch eval --model M --weights FILE --data DIR [--classes N] [--batch N]\n"
    "                       [--threads N]\n"
    "Evaluates a weights file (safetensors, PyTorch names) on every record of an LMDB dataset;\n"
    "the last line printed is {\"accuracy\": A, \"loss\": L, \"n\": N}.\n";

int eb_cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *weights = NULL, *data = NULL;
    long classes = 10, batch = S_EVAL_BATCH, threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(s_eval_usage, stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "eigenbatch eval: unknown option or missing value '%s'\n%s", a,
                    s_eval_usage);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--weights"))
            weights = v;
        else if (!strcmp(a, "--data"))
            data = v;
        else if (!strcmp(a, "--classes")) {
            if (eb_cli_int("eval", a, v, &classes))
                return 2;
        } else if (!strcmp(a, "--batch")) {
            if (eb_cli_int("eval", a, v, &batch))
                return 2;
        } else if (!strcmp(a, "--threads")) {
            if (eb_cli_int("eval", a, v, &threads))
                return 2;
        } else {
            fprintf(stderr, "eigenbatch eval: unknown option '%s'\n%s", a, s_eval_usage);
            return 2;
        }
    }
    if (!model || !weights || !data || classes < 2 || batch < 1 || batch > INT_MAX || threads < 1) {
        fprintf(stderr, "eigenbatch eval: --model, --weights and --data are required; "
                        "--classes >= 2, --batch and --threads >= 1\n");
        return 2;
    }
    rt_loader_t *ld = NULL;
    nn_net_t *net = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    struct rt_loader_opts lo;
    rt_loader_opts_default(&lo);
    lo.threads = 0;
    lo.max_batch = (size_t)batch;
    int rc = rt_loader_new(data, &lo, &ld), c, h, w;
    if (rc)
        goto out;
    rt_loader_shape(ld, &c, &h, &w);
    nn_set_threads((int)threads);
    net = nn_zoo_new(model, c, h, w, (int)classes, (int)batch, &rc);
    if (!net) {
        rc = rt_err_set(rc ? rc : RT_ERR_CONFIG, "model '%s' for %dx%dx%d inputs: %s", model, c, h,
                        w, rt_err_msg());
        goto out;
    }
    if ((rc = eb_weights_load(net, weights)))
        goto out;
    x = malloc((size_t)batch * (size_t)(c * h * w) * sizeof(float));
    y = malloc((size_t)batch * sizeof(int32_t));
    if (!x || !y) {
        rc = rt_err_set(RT_ERR_NOMEM, "eval batch");
        goto out;
    }
    double acc, loss;
    uint64_t n;
    if ((rc = eb_run_evaluate(net, ld, x, y, &acc, &loss, &n)))
        goto out;
    json_t *j = json_pack("{s:f, s:f, s:I}", "accuracy", acc, "loss", loss, "n", (json_int_t)n);
    char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!txt)
        rc = rt_err_set(RT_ERR_NOMEM, "eval result");
    else
        printf("%s\n", txt);
    free(txt);
    json_decref(j);
out:
    if (rc)
        fprintf(stderr, "eigenbatch eval: %s\n", rt_err_msg());
    free(x);
    free(y);
    nn_net_destroy(&net);
    rt_loader_destroy(&ld);
    return rc ? 1 : 0;
}
