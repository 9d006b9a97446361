/*
 * eigensvc_main: `eigenbatch eigensvc`: the eigen service alone, as a process, against running
 * shards (`eigenbatch server`, `launch`, docker-compose). It reads the deployment's options as
 * every role does (app_opts: --config FILE, --set, flags, EB_* variables), so its ABS rule runs
 * on the coordinator's very schedule (batch, batch_max, lr, decays); the per-process options are
 * --connect (the shards, shard 0 first), --eig-pub, --eig-query, --eig-metrics and --poll-ms.
 * Evaluation of the test set (data.test) on each snapshot, off the training path.
 */
#include "eigensvc_main.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app_model.h"
#include "rt_err.h"
#include "rt_log.h"

static const char s_usage[] =
    "usage: eigenbatch eigensvc [--config FILE] [--set KEY=VALUE]... --connect EP0,EP1,...\n"
    "                           [--eig-pub EP] [--eig-query EP] [--eig-metrics FILE] [options]\n"
    "Measures the top Hessian eigenvalue on a weight snapshot at each epoch start, runs the ABS\n"
    "rule (abs.*) and sends the decision to the coordinator (shard 0 of --connect); accepted\n"
    "decisions are published on --eig-pub, the current one answered on --eig-query. Give it the\n"
    "deployment's configuration: its schedule must be the coordinator's.\n";

static atomic_int s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    atomic_store(&s_stop, 1);
}

/* Create the directory of file path (a fresh volume), so that its metrics can be written. */
static int s_make_parent(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return RT_OK;
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    return app_mkdirs(dir);
}

int eigensvc_main_cfg(const struct app_opts *o, struct eigensvc_cfg *ec)
{
    memset(ec, 0, sizeof *ec);
    enum eig_power_preset pp;
    if (eig_power_preset_parse(o->abs.preset, &pp))
        return rt_err_set(RT_ERR_CONFIG, "abs.preset: expected paper or accurate, got '%s'",
                          o->abs.preset);
    if (!app_opts_needs_eigensvc(o))
        return rt_err_set(RT_ERR_CONFIG, "schedule.method %s has no eigen service",
                          o->schedule.method);
    eig_power_config_preset(&ec->power, pp);
    ec->power.seed = (uint64_t)o->train.seed;
    /* auto: what `eig --preset` runs (power iteration cannot reach the accurate preset's
     * tolerance when the top eigenvalues are close) */
    ec->lanczos = !strcmp(o->abs.method, "lanczos") ||
                  (!strcmp(o->abs.method, "auto") && pp == EIG_POWER_ACCURATE);
    eig_abs_config_default(&ec->abs, (int32_t)o->schedule.epochs,
                           !strcasecmp(o->schedule.method, "ABSA"));
    ec->abs.alpha = o->abs.alpha;
    ec->abs.beta = o->abs.beta;
    ec->abs.kappa = (int32_t)o->abs.kappa;
    /* the coordinator's schedule: its B_max, lr at B */
    ec->abs.batch0 = o->schedule.batch;
    ec->abs.batch_max = o->schedule.batch_max;
    if (ec->abs.batch_max < o->schedule.batch)
        ec->abs.batch_max = o->schedule.batch;
    ec->abs.lr0 = o->schedule.base_batch > 0
                      ? o->schedule.lr * (double)o->schedule.batch / (double)o->schedule.base_batch
                      : o->schedule.lr;
    ec->abs.lr_cap = o->schedule.lr_cap;
    ec->abs.gamma0 = o->abs.gamma;
    ec->abs.omega = o->abs.omega;
    if (o->abs.tau >= 0)
        ec->abs.tau = (int32_t)o->abs.tau;
    ec->abs.rho = o->schedule.rho;
    int rc = app_opts_decay_epochs(o, ec->abs.decay_epochs, EIG_ABS_MAX_DECAY, &ec->abs.n_decay);
    if (rc)
        return rc;
    ec->model = o->model.name;
    ec->classes = (int)o->model.classes;
    ec->train_db = o->data.train;
    if ((rc = app_model_loader_opts(o, (size_t)o->abs.hessian_batch, &ec->loader)))
        return rc;
    ec->use_loader = 1;
    ec->hessian_batch = (int)o->abs.hessian_batch;
    ec->seed = (uint64_t)o->train.seed;
    ec->block_last_k = (int)o->abs.block_last_k;
    ec->bn = strcmp(o->abs.bn, "eval") ? NN_BN_TRAIN : NN_BN_EVAL;
    ec->sync = app_opts_sync(o);
    ec->epochs = (int)o->schedule.epochs;
    ec->device = o->device.eigensvc;
    return RT_OK;
}

/* The service's body once the options are parsed. */
static int s_run(struct app_opts *o, rt_config_t *cfg)
{
    (void)cfg;
    struct eigensvc_cfg ec;
    char *list = NULL;
    const char *eps[APP_MAX_SHARDS];
    int n = 0, status = 1;
    rt_metrics_t *mt = NULL;
    eigensvc_t *svc = NULL;
    if (eigensvc_main_cfg(o, &ec))
        goto out_msg;
    if (!o->local.connect || !(list = strdup(o->local.connect))) {
        fprintf(stderr, "eigenbatch eigensvc: --connect EP0,EP1,... (the shards) is required\n");
        return 2;
    }
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == APP_MAX_SHARDS) {
            rt_err_set(RT_ERR_ARG, "--connect: more than %d endpoints", APP_MAX_SHARDS);
            goto out_msg;
        }
        eps[n++] = t;
    }
    ec.n_shards = n;
    ec.endpoints = eps;
    ec.pub_endpoint = o->local.eig_pub;
    ec.query_endpoint = o->local.eig_query;
    ec.test_db = o->data.test;
    ec.threads = (int)o->train.threads;
    /* the shards' silence ends the service: cluster.timeout_ms, or the coordinator's timeout
     * when that is shorter */
    ec.timeout_ms = (int)o->cluster.timeout_ms;
    long ct = o->cluster.coordinator_timeout_ms;
    if (ct > 0 && (ec.timeout_ms <= 0 || ct < ec.timeout_ms))
        ec.timeout_ms = (int)ct;
    ec.poll_ms = (int)o->local.poll_ms;
    if (o->local.eig_metrics &&
        (s_make_parent(o->local.eig_metrics) || rt_metrics_open(o->local.eig_metrics, 1, &mt)))
        goto out_msg;
    ec.metrics = mt;
    if (eigensvc_new(&ec, &svc))
        goto out_msg;
    signal(SIGINT, s_on_signal);
    signal(SIGTERM, s_on_signal);
    int rc = eigensvc_run(svc, &s_stop);
    if (rc && rc != RT_ERR_INTERRUPTED)
        goto out_msg;
    status = 0;
    goto out;
out_msg:
    fprintf(stderr, "eigenbatch eigensvc: %s\n", rt_err_msg());
out:
    eigensvc_destroy(&svc);
    rt_metrics_close(&mt);
    free(list);
    return status;
}

int eigensvc_main(int argc, char **argv)
{
    return app_opts_main(argc, argv, s_usage, s_run);
}
