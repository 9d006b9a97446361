/*
 * eb_run: options of a run (defaults < YAML configuration < environment < flags) and the zoo-model
 * side of a worker with its metrics, progress line and test evaluation (see eb_run.h).
 */
#include "eb_run.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "eb_cli.h"
#include "eb_weights.h"
#include "rt_ckpt.h"
#include "rt_curve.h"
#include "rt_err.h"
#include "rt_log.h"
#include "server_ckpt.h"
#include "server_fixsched.h"

#define S_SYNTH_PARAMS 1000 /* default size of the synthetic model */
#define S_MAX_PATH 4096     /* bytes of a path under the output directory */
#define S_SYNC_TIMEOUT_S 600         /* `decisions: sync`: default longest wait for a decision */
#define S_SYNC_TIMEOUT_MAX_S 2000000 /* its largest value (milliseconds fit an int) */

/* ---- schema ---------------------------------------------------------------------------------- */

const struct rt_config_key eb_run_schema[] = {
    {"model.name", RT_CFG_STR, "cnn", "zoo model (models.md)"},
    {"model.classes", RT_CFG_INT, "10", "number of classes"},
    {"data.train", RT_CFG_STR, NULL, "LMDB training set (eigenbatch convert)"},
    {"data.test", RT_CFG_STR, NULL, "LMDB test set for evaluation, or null"},
    {"data.crop_pad", RT_CFG_INT, "0", "random crop with this much zero padding per side"},
    {"data.flip", RT_CFG_BOOL, "false", "random horizontal flip"},
    {"data.loader_threads", RT_CFG_INT, "1", "prefetch threads per worker"},
    {"cluster.shards", RT_CFG_INT, "2", "parameter-server shards"},
    {"cluster.workers", RT_CFG_INT, "2", "workers"},
    {"cluster.transport", RT_CFG_STR, "inproc", "inproc, ipc or tcp"},
    {"cluster.port", RT_CFG_INT, "0", "tcp: first port (0: free ones)"},
    {"cluster.weights", RT_CFG_LIST_FLOAT, NULL, "share weight per worker (null: equal)"},
    {"cluster.checksum", RT_CFG_STR, "fletcher64", "frame checksum: none, crc32, fletcher64"},
    {"cluster.chunk", RT_CFG_INT, "0", "floats per frame (0: default)"},
    {"cluster.timeout_ms", RT_CFG_INT, "0", "worker gives up after this much silence (0: 60 s)"},
    {"cluster.worker_timeout_ms", RT_CFG_INT, "30000",
     "evict a worker silent this long (0: never)"},
    {"schedule.method", RT_CFG_STR, "BL", "BL, FB, GG, ABS or ABSA"},
    {"schedule.batch", RT_CFG_INT, "128", "initial global batch B"},
    {"schedule.base_batch", RT_CFG_INT, NULL, "batch at which lr is given (null: batch)"},
    {"schedule.lr", RT_CFG_FLOAT, "0.1", "learning rate at base_batch"},
    {"schedule.momentum", RT_CFG_FLOAT, "0.9", "SGD momentum"},
    {"schedule.weight_decay", RT_CFG_FLOAT, "5e-4", "SGD weight decay"},
    {"schedule.epochs", RT_CFG_INT, "1", "epochs"},
    {"schedule.decay_epochs", RT_CFG_LIST_INT, NULL, "epochs at which the lr decays by rho"},
    {"schedule.rho", RT_CFG_FLOAT, "0.2", "decay factor"},
    {"schedule.warmup_epochs", RT_CFG_INT, "0", "FB: epochs of gradual warm-up"},
    {"schedule.batch_max", RT_CFG_INT, "16384", "largest batch (GG, ABS, ABSA)"},
    {"schedule.lr_cap", RT_CFG_FLOAT, "0", "bound on the base learning rate (0: none)"},
    {"abs.alpha", RT_CFG_FLOAT, "2", "grow when lambda <= lambda_ref / alpha"},
    {"abs.beta", RT_CFG_FLOAT, "2", "batch growth factor"},
    {"abs.kappa", RT_CFG_INT, "10", "grow after kappa epochs without an increase"},
    {"abs.gamma", RT_CFG_FLOAT, "0.2", "ABSA: initial adversarial fraction"},
    {"abs.epsilon", RT_CFG_FLOAT, "0.005", "ABSA: FGSM step"},
    {"abs.omega", RT_CFG_FLOAT, "2", "ABSA: gamma /= omega at every increase"},
    {"abs.tau", RT_CFG_INT, NULL, "ABSA: no adversarial samples from this epoch (null: E/2)"},
    {"abs.block_last_k", RT_CFG_INT, "0", "0: full Hessian; K: the last K parameter layers"},
    {"abs.bn", RT_CFG_STR, "eval", "BatchNorm mode of the Hessian: eval or train"},
    {"abs.preset", RT_CFG_STR, "paper", "power iteration: paper (10, 1e-2) or accurate"},
    {"abs.decisions", RT_CFG_STR, "async", "async or sync (training waits for decisions)"},
    {"abs.hessian_batch", RT_CFG_INT, "128", "samples of the Hessian batch"},
    {"abs.sync_timeout_s", RT_CFG_FLOAT, "600", "sync: longest wait for a decision, seconds"},
    {"train.micro_batch", RT_CFG_INT, "128", "samples per micro-batch m"},
    {"train.threads", RT_CFG_INT, "1", "math threads per worker"},
    {"train.eval_every", RT_CFG_INT, "1", "test evaluation every this many epochs (0: end)"},
    {"train.log_every", RT_CFG_INT, "50", "steps between step events and log lines"},
    {"train.progress_s", RT_CFG_FLOAT, "10", "seconds between progress lines"},
    {"train.seed", RT_CFG_INT, "1", "seed of the initial weights and the data order"},
    {"output.dir", RT_CFG_STR, "runs/train", "output directory"},
    {"checkpoint.every_epochs", RT_CFG_INT, "1", "checkpoint every this many epochs (0: off)"},
    {"checkpoint.keep", RT_CFG_INT, "2", "complete checkpoints kept (the newest)"},
    {"security.key", RT_CFG_STR, NULL, "this role's CURVE secret key file (null: no security)"},
    {"security.server_pub", RT_CFG_STR, NULL, "servers' public key file (null: key's own)"},
    {"security.allowed", RT_CFG_LIST_STR, NULL, ".pub files or directories admitted (null: own)"},
};
const int eb_run_schema_len = (int)(sizeof eb_run_schema / sizeof eb_run_schema[0]);

/* ---- flags ----------------------------------------------------------------------------------- */

enum s_kind { S_INT, S_DBL, S_STR };

/* One flag, and the configuration key that sets it (NULL: flag only). */
struct s_optdef {
    const char *name; /* without the leading "--" */
    enum s_kind kind; /* value type */
    size_t off;       /* offset in struct eb_opts */
    const char *key;  /* configuration key, or NULL */
};

#define S_O(name, kind, field, key)                                                                \
    {                                                                                              \
        name, kind, offsetof(struct eb_opts, field), key                                           \
    }
static const struct s_optdef s_defs[] = {
    S_O("shard", S_INT, shard, NULL),
    S_O("shards", S_INT, shards, "cluster.shards"),
    S_O("workers", S_INT, workers, "cluster.workers"),
    S_O("params", S_INT, params, NULL),
    S_O("buffers", S_INT, buffers, NULL),
    S_O("batch", S_INT, batch, "schedule.batch"),
    S_O("base-batch", S_INT, base_batch, "schedule.base_batch"),
    S_O("steps", S_INT, steps, NULL),
    S_O("samples", S_INT, samples, NULL),
    S_O("seed", S_INT, seed, "train.seed"),
    S_O("port", S_INT, port, "cluster.port"),
    S_O("chunk", S_INT, chunk, "cluster.chunk"),
    S_O("timeout-ms", S_INT, timeout_ms, "cluster.timeout_ms"),
    S_O("worker-timeout-ms", S_INT, evict_ms, "cluster.worker_timeout_ms"),
    S_O("lr", S_DBL, lr, "schedule.lr"),
    S_O("momentum", S_DBL, momentum, "schedule.momentum"),
    S_O("weight-decay", S_DBL, wd, "schedule.weight_decay"),
    S_O("weight", S_DBL, weight, NULL),
    S_O("weights", S_STR, weights, "cluster.weights"),
    S_O("bind", S_STR, bind, NULL),
    S_O("coord", S_STR, coord, NULL),
    S_O("connect", S_STR, connect, NULL),
    S_O("transport", S_STR, transport, "cluster.transport"),
    S_O("dir", S_STR, dir, NULL),
    S_O("out", S_STR, out, NULL),
    S_O("output-dir", S_STR, output_dir, "output.dir"),
    S_O("model", S_STR, model, "model.name"),
    S_O("checksum", S_STR, checksum, "cluster.checksum"),
    S_O("data", S_STR, data, "data.train"),
    S_O("test", S_STR, test, "data.test"),
    S_O("classes", S_INT, classes, "model.classes"),
    S_O("micro-batch", S_INT, micro, "train.micro_batch"),
    S_O("threads", S_INT, threads, "train.threads"),
    S_O("loader-threads", S_INT, loader_threads, "data.loader_threads"),
    S_O("crop-pad", S_INT, crop_pad, "data.crop_pad"),
    S_O("flip", S_INT, flip, "data.flip"),
    S_O("log-every", S_INT, log_every, "train.log_every"),
    S_O("eval-every", S_INT, eval_every, "train.eval_every"),
    S_O("progress-s", S_DBL, progress_s, "train.progress_s"),
    S_O("method", S_STR, method, "schedule.method"),
    S_O("epochs", S_INT, epochs, "schedule.epochs"),
    S_O("decay-epochs", S_STR, decay, "schedule.decay_epochs"),
    S_O("rho", S_DBL, rho, "schedule.rho"),
    S_O("warmup-epochs", S_INT, warmup, "schedule.warmup_epochs"),
    S_O("batch-max", S_INT, batch_max, "schedule.batch_max"),
    S_O("lr-cap", S_DBL, lr_cap, "schedule.lr_cap"),
    S_O("gamma", S_DBL, gamma, "abs.gamma"),
    S_O("epsilon", S_DBL, epsilon, "abs.epsilon"),
    S_O("tau", S_INT, tau, "abs.tau"),
    S_O("lead", S_INT, lead, NULL),
    S_O("sync", S_INT, sync, "abs.decisions"),
    S_O("kappa", S_INT, kappa, "abs.kappa"),
    S_O("hessian-batch", S_INT, hessian_batch, "abs.hessian_batch"),
    S_O("alpha", S_DBL, alpha, "abs.alpha"),
    S_O("beta", S_DBL, beta, "abs.beta"),
    S_O("omega", S_DBL, omega, "abs.omega"),
    S_O("block-last-k", S_INT, block_last_k, "abs.block_last_k"),
    S_O("bn", S_STR, bn, "abs.bn"),
    S_O("preset", S_STR, preset, "abs.preset"),
    S_O("sync-timeout-s", S_DBL, sync_timeout_s, "abs.sync_timeout_s"),
    S_O("eig-pub", S_STR, eig_pub, NULL),
    S_O("eig-query", S_STR, eig_query, NULL),
    S_O("eig-metrics", S_STR, eig_metrics, NULL),
    S_O("checkpoint-every", S_INT, ckpt_every, "checkpoint.every_epochs"),
    S_O("checkpoint-keep", S_INT, ckpt_keep, "checkpoint.keep"),
    S_O("resume", S_STR, resume, NULL),
    S_O("security-key", S_STR, sec_key, "security.key"),
    S_O("security-server-pub", S_STR, sec_server_pub, "security.server_pub"),
    S_O("security-allowed", S_STR, sec_allowed, "security.allowed"),
};
#define S_NDEFS (sizeof s_defs / sizeof s_defs[0])

static void s_defaults(struct eb_opts *o)
{
    memset(o, 0, sizeof *o);
    o->shards = 1;
    o->workers = 1;
    o->params = 0; /* synth: 1000; zoo models: the net's count */
    o->buffers = 0;
    o->batch = 128;
    o->steps = 100;
    o->samples = 60000;
    o->seed = 1;
    o->lr = 0.01;
    o->momentum = 0.9;
    o->wd = 0;
    o->weight = 1;
    o->transport = "ipc";
    o->model = "synth";
    o->checksum = "fletcher64";
    o->classes = 10;
    o->micro = 128;
    o->threads = 1;
    o->loader_threads = 1;
    o->log_every = 10;
    o->eval_every = 1;
    o->progress_s = 10;
    o->rho = 0.1;
    o->gamma = 0.2;
    o->epsilon = 0.005;
    o->tau = -1;
    o->ckpt_every = 1;
    o->ckpt_keep = SERVER_CKPT_KEEP_DEFAULT;
    o->lead = 1;
    o->kappa = 10;
    o->hessian_batch = 128;
    o->alpha = 2;
    o->beta = 2;
    o->omega = 2;
    o->bn = "eval";
    o->preset = "paper";
    o->sync_timeout_s = S_SYNC_TIMEOUT_S;
    o->evict_ms = SERVER_COORD_EVICT_MS_DEFAULT;
}

static int s_set(const char *cmd, const struct s_optdef *d, struct eb_opts *o, const char *val)
{
    char opt[64];
    snprintf(opt, sizeof opt, "--%s", d->name);
    char *p = (char *)o + d->off;
    if (d->kind == S_INT)
        return eb_cli_int(cmd, opt, val, (long *)(void *)p);
    if (d->kind == S_DBL)
        return eb_cli_double(cmd, opt, val, (double *)(void *)p);
    *(const char **)(void *)p = val;
    return 0;
}

/* Storage for list values turned into comma-separated flag text; lives with the process. */
static char s_lists[3][EB_RUN_MAX_LIST];

/* Set the options that configuration keys name, from a validated configuration. */
static int s_from_config(const char *cmd, const rt_config_t *cfg, struct eb_opts *o)
{
    int n_lists = 0;
    for (size_t i = 0; i < S_NDEFS; i++) {
        const struct s_optdef *d = &s_defs[i];
        if (!d->key || !rt_config_has(cfg, d->key))
            continue;
        const char *v = NULL;
        char num[32];
        if (!strcmp(d->key, "abs.decisions")) {
            if (rt_config_get_str(cfg, d->key, NULL, &v))
                return -1;
            if (strcmp(v, "sync") && strcmp(v, "async"))
                return rt_config_error(cfg, d->key, "expected async or sync, got '%s'", v);
            v = strcmp(v, "sync") ? "0" : "1";
        } else if (!strcmp(d->key, "data.flip")) {
            int b;
            if (rt_config_get_bool(cfg, d->key, 0, &b))
                return -1;
            snprintf(num, sizeof num, "%d", b);
            v = num;
        } else if (!strcmp(d->key, "cluster.weights") || !strcmp(d->key, "schedule.decay_epochs") ||
                   !strcmp(d->key, "security.allowed")) {
            const char *items[EB_RUN_MAX_WORKERS];
            int n;
            if (rt_config_get_strs(cfg, d->key, items, EB_RUN_MAX_WORKERS, &n))
                return -1;
            char *buf = s_lists[n_lists++];
            buf[0] = '\0';
            for (int k = 0; k < n; k++) {
                if (strlen(buf) + strlen(items[k]) + 2 >= EB_RUN_MAX_LIST)
                    return rt_config_error(cfg, d->key, "list too long");
                if (k)
                    strcat(buf, ",");
                strcat(buf, items[k]);
            }
            v = n ? buf : NULL;
            if (!v) {
                *(const char **)(void *)((char *)o + d->off) = NULL;
                continue;
            }
        } else if (rt_config_get_str(cfg, d->key, NULL, &v)) {
            return -1;
        }
        if (s_set(cmd, d, o, v))
            return rt_config_error(cfg, d->key, "invalid value '%s'", v);
        if (!strcmp(d->key, "abs.sync_timeout_s") &&
            !(o->sync_timeout_s > 0 && o->sync_timeout_s <= S_SYNC_TIMEOUT_MAX_S))
            return rt_config_error(cfg, d->key, "expected seconds in (0, %d], got '%s'",
                                   S_SYNC_TIMEOUT_MAX_S, v);
    }
    return 0;
}

/* A flag that a configuration key also sets (--seed, --output-dir, --lr, ...) goes into the
 * configuration too, so that the resolved configuration says what ran. Other arguments: 0. */
static int s_flag_to_config(rt_config_t *cfg, const char *flag, const char *val)
{
    if (strncmp(flag, "--", 2))
        return 0;
    const struct s_optdef *d = NULL;
    for (size_t k = 0; k < S_NDEFS; k++)
        if (!strcmp(flag + 2, s_defs[k].name))
            d = &s_defs[k];
    if (!d || !d->key)
        return 0;
    char a[EB_RUN_MAX_LIST + 256];
    if (!strcmp(d->key, "data.flip"))
        snprintf(a, sizeof a, "%s=%s", d->key, strcmp(val, "0") ? "true" : "false");
    else if (!strcmp(d->key, "abs.decisions"))
        snprintf(a, sizeof a, "%s=%s", d->key, strcmp(val, "0") ? "sync" : "async");
    else if (!strcmp(d->key, "cluster.weights") || !strcmp(d->key, "schedule.decay_epochs") ||
             !strcmp(d->key, "security.allowed"))
        snprintf(a, sizeof a, "%s=[%s]", d->key, val);
    else if (d->kind == S_STR)
        snprintf(a, sizeof a, "%s='%s'", d->key, val);
    else
        snprintf(a, sizeof a, "%s=%s", d->key, val);
    return rt_config_set(cfg, a);
}

/* Load --config FILE and --set overrides (in order), validate, map onto o. */
static int s_config(const char *cmd, int argc, char **argv, struct eb_opts *o, rt_config_t **out)
{
    const char *path = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--config"))
            path = argv[i + 1];
    int has_set = 0;
    for (int i = 1; i + 1 < argc; i++)
        has_set |= !strcmp(argv[i], "--set");
    if (!path && !has_set)
        return 0;
    rt_config_t *cfg = rt_config_new();
    if (!cfg) {
        fprintf(stderr, "eigenbatch %s: out of memory\n", cmd);
        return 2;
    }
    int rc = path ? rt_config_load(cfg, path) : 0;
    for (int i = 1; !rc && i + 1 < argc; i++)
        if (!strcmp(argv[i], "--set"))
            rc = rt_config_set(cfg, argv[++i]);
    for (int i = 1; !rc && i + 1 < argc; i++)
        rc = s_flag_to_config(cfg, argv[i], argv[i + 1]);
    if (!rc)
        rc = rt_config_validate(cfg, eb_run_schema, eb_run_schema_len);
    if (!rc && s_from_config(cmd, cfg, o))
        rc = RT_ERR_CONFIG;
    if (rc) {
        fprintf(stderr, "eigenbatch %s: %s\n", cmd, rt_err_msg());
        rt_config_destroy(&cfg);
        return 2;
    }
    *out = cfg;
    return 0;
}

int eb_opts_parse(const char *cmd, int argc, char **argv, struct eb_opts *o, int *help,
                  rt_config_t **cfg_out)
{
    s_defaults(o);
    *help = 0;
    *cfg_out = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            *help = 1;
            return 0;
        }
    if (s_config(cmd, argc, argv, o, cfg_out))
        return 2;
    for (size_t i = 0; i < S_NDEFS; i++) {
        char env[64] = "EB_";
        size_t k = 3;
        for (const char *c = s_defs[i].name; *c && k + 1 < sizeof env; c++)
            env[k++] = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        env[k] = '\0';
        const char *v = getenv(env);
        if (v && s_set(cmd, &s_defs[i], o, v))
            goto usage;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") || !strcmp(argv[i], "--set")) {
            if (++i >= argc) {
                fprintf(stderr, "eigenbatch %s: %s needs a value\n", cmd, argv[i - 1]);
                goto usage;
            }
            continue;
        }
        const struct s_optdef *d = NULL;
        for (size_t k = 0; k < S_NDEFS; k++)
            if (!strncmp(argv[i], "--", 2) && !strcmp(argv[i] + 2, s_defs[k].name))
                d = &s_defs[k];
        if (!d) {
            fprintf(stderr, "eigenbatch %s: unknown option '%s'\n", cmd, argv[i]);
            goto usage;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "eigenbatch %s: %s needs a value\n", cmd, argv[i]);
            goto usage;
        }
        if (s_set(cmd, d, o, argv[++i]))
            goto usage;
    }
    return 0;
usage:
    rt_config_destroy(cfg_out);
    return 2;
}

int eb_opts_main(const char *cmd, int argc, char **argv, const char *usage, eb_opts_body_fn body)
{
    struct eb_opts o;
    int help;
    rt_config_t *cfg = NULL;
    if (eb_opts_parse(cmd, argc, argv, &o, &help, &cfg))
        return 2;
    int rc = 0;
    if (help)
        fputs(usage, stdout);
    else if (eb_opts_security(cmd, &o))
        rc = 1;
    else
        rc = body(&o, cfg);
    rt_config_destroy(&cfg);
    return rc;
}

int eb_opts_security(const char *cmd, const struct eb_opts *o)
{
    if (rt_curve_configure(o->sec_key, o->sec_server_pub, o->sec_allowed)) {
        fprintf(stderr, "eigenbatch %s: %s\n", cmd, rt_err_msg());
        return 1;
    }
    /* processes started from here (launch) read the same settings from the environment */
    const char *env[][2] = {{"EB_SECURITY_KEY", o->sec_key},
                            {"EB_SECURITY_SERVER_PUB", o->sec_server_pub},
                            {"EB_SECURITY_ALLOWED", o->sec_allowed}};
    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++) {
        const char *cur = getenv(env[i][0]);
        if (cur && env[i][1] && !strcmp(cur, env[i][1]))
            continue; /* already there (the option may point into it) */
        if (env[i][1] ? setenv(env[i][0], env[i][1], 1) : unsetenv(env[i][0])) {
            fprintf(stderr, "eigenbatch %s: cannot set %s: %s\n", cmd, env[i][0],
                    strerror(errno));
            return 1;
        }
    }
    if (o->sec_key)
        RT_INFO("security", "CURVE on tcp/ipc endpoints with key %s", o->sec_key);
    return 0;
}

int eb_opts_check(const char *cmd, struct eb_opts *o)
{
    const char *bad = NULL;
    if (!strcmp(o->model, "synth") && o->params == 0)
        o->params = S_SYNTH_PARAMS;
    if (o->shards < 1 || o->shards > EB_RUN_MAX_SHARDS)
        bad = "--shards (cluster.shards) must be in 1..256";
    else if (o->workers < 1 || o->workers > EB_RUN_MAX_WORKERS)
        bad = "--workers (cluster.workers) must be in 1..256";
    else if (o->params < 0 || (o->params > 0 && o->params < o->shards))
        bad = "--params must be at least --shards";
    else if (o->buffers < 0 || o->buffers > o->params)
        bad = "--buffers must be in 0..params";
    else if (o->batch < 1 || o->batch > UINT32_MAX)
        bad = "--batch (schedule.batch) must be positive";
    else if (o->base_batch < 0 || o->base_batch > UINT32_MAX)
        bad = "--base-batch (schedule.base_batch) must be positive";
    else if (o->steps < 0 || o->samples < 1)
        bad = "--steps must be >= 0 and --samples positive";
    else if (o->timeout_ms < 0 || o->timeout_ms > INT_MAX)
        bad = "--timeout-ms out of range";
    else if (o->evict_ms != 0 && (o->evict_ms < EB_RUN_MIN_EVICT_MS || o->evict_ms > INT_MAX))
        bad = "--worker-timeout-ms (cluster.worker_timeout_ms) must be 0 (never evict) or in "
              "100..2147483647";
    else if (o->chunk < 0 || o->chunk > UINT32_MAX)
        bad = "--chunk out of range";
    else if (o->ckpt_every < 0 || o->ckpt_every > INT_MAX || o->ckpt_keep < 1 ||
             o->ckpt_keep > INT_MAX)
        bad = "--checkpoint-every (checkpoint.every_epochs) must be >= 0 and --checkpoint-keep "
              "(checkpoint.keep) >= 1";
    else if (o->resume && !*o->resume)
        bad = "--resume needs auto or a checkpoint directory";
    else if (strcmp(o->model, "synth") && !o->data)
        bad = "--model: a zoo model needs --data (data.train, an LMDB dataset); 'synth' needs none";
    else if (o->classes < 2 || o->micro < 1 || o->threads < 1 || o->loader_threads < 0 ||
             o->crop_pad < 0 || o->log_every < 1 || o->eval_every < 0 || !(o->progress_s >= 0))
        bad = "--classes >= 2, --micro-batch, --threads, --log-every >= 1, --loader-threads, "
              "--eval-every, --progress-s and --crop-pad >= 0";
    else if (!(o->epsilon >= 0) || !(o->gamma >= 0 && o->gamma <= 1) || !(o->lr_cap >= 0))
        bad = "--epsilon and --lr-cap must be >= 0, --gamma in [0, 1]";
    else if (!(o->sync_timeout_s > 0 && o->sync_timeout_s <= S_SYNC_TIMEOUT_MAX_S))
        bad = "--sync-timeout-s (abs.sync_timeout_s) must be in (0, 2000000] seconds";
    else if (strcmp(o->bn, "eval") && strcmp(o->bn, "train"))
        bad = "--bn (abs.bn) must be eval or train";
    else if (strcmp(o->preset, "paper") && strcmp(o->preset, "accurate"))
        bad = "--preset (abs.preset) must be paper or accurate";
    else if (o->block_last_k < 0 || o->block_last_k > INT_MAX || o->hessian_batch < 1 ||
             o->hessian_batch > INT_MAX || o->kappa < 0 || o->kappa > INT32_MAX)
        bad = "--block-last-k (abs.block_last_k) and --kappa (abs.kappa) must be >= 0, "
              "--hessian-batch (abs.hessian_batch) >= 1";
    if (!bad && o->weights) {
        int k = 0;
        for (const char *p = o->weights; p; k++) {
            char *end;
            double w = strtod(p, &end);
            if (end == p || !(w > 0) || (*end && *end != ','))
                bad = "--weights (cluster.weights): one positive number per worker";
            p = *end == ',' ? end + 1 : NULL;
        }
        if (k != o->workers)
            bad = "--weights (cluster.weights): one positive number per worker";
    }
    if (bad) {
        fprintf(stderr, "eigenbatch %s: %s\n", cmd, bad);
        return 2;
    }
    return 0;
}

int eb_opts_schedule(const struct eb_opts *o, struct server_coord_sched *out,
                     server_sched_t **owned)
{
    *owned = NULL;
    if (!o->method) {
        struct server_fixsched_cfg fc = {.batch = (uint32_t)o->batch,
                                         .lr = (float)o->lr,
                                         .n_samples = (uint64_t)o->samples,
                                         .steps = (uint64_t)o->steps};
        return server_fixsched_new(&fc, out);
    }
    enum server_sched_method m;
    int rc = server_sched_method_parse(o->method, &m);
    if (rc)
        return rc;
    if (o->epochs < 1 || o->epochs > INT32_MAX)
        return rt_err_set(RT_ERR_CONFIG, "--method %s needs --epochs >= 1", o->method);
    struct server_sched_config c;
    server_sched_config_default(&c, m, o->samples, (int32_t)o->epochs);
    c.batch = o->batch;
    c.base_batch = o->base_batch > 0 ? o->base_batch : o->batch;
    if (o->batch_max > 0)
        c.batch_max = o->batch_max;
    if (c.batch_max < c.batch)
        c.batch_max = c.batch;
    c.micro_batch = (int32_t)o->micro;
    c.lr = o->lr;
    c.lr_cap = o->lr_cap;
    c.momentum = o->momentum;
    c.weight_decay = o->wd;
    c.rho = o->rho;
    c.warmup_epochs = (int32_t)o->warmup;
    c.gamma0 = o->gamma;
    c.epsilon = o->epsilon;
    if (o->tau >= 0)
        c.tau = (int32_t)o->tau;
    c.n_decay = 0;
    if (o->decay) {
        char list[EB_RUN_MAX_LIST];
        snprintf(list, sizeof list, "%s", o->decay);
        for (char *sv = NULL, *t = strtok_r(list, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
            if (c.n_decay >= SERVER_SCHED_MAX_DECAY)
                return rt_err_set(RT_ERR_CONFIG, "--decay-epochs: more than %d epochs",
                                  SERVER_SCHED_MAX_DECAY);
            long e;
            if (eb_cli_int("server", "--decay-epochs", t, &e))
                return RT_ERR_CONFIG;
            c.decay_epochs[c.n_decay++] = (int32_t)e;
        }
    }
    server_sched_t *s = server_sched_new(&c);
    if (!s)
        return rt_err_set(RT_ERR_CONFIG, "schedule: %s", rt_err_msg());
    server_coord_use_sched(out, s);
    *owned = s;
    return RT_OK;
}

void eb_opts_schedule_free(struct server_coord_sched *s, server_sched_t **owned)
{
    if (*owned)
        server_sched_destroy(owned);
    else
        server_fixsched_destroy(s);
}

int eb_opts_resume(struct eb_opts *o, char *buf, size_t cap)
{
    if (!o->resume)
        return RT_OK;
    int rc = server_ckpt_resolve(o->output_dir, o->resume, buf, cap, NULL);
    if (rc)
        return rc;
    o->resume = buf[0] ? buf : NULL;
    return RT_OK;
}

const char *eb_opts_ckpt_root(const struct eb_opts *o, char *buf, size_t cap)
{
    if (!o->output_dir || o->ckpt_every <= 0)
        return NULL;
    if (snprintf(buf, cap, "%s/%s", o->output_dir, SERVER_CKPT_SUBDIR) >= (int)cap)
        return NULL;
    return buf;
}

int eb_opts_checksum(const char *name, enum rt_wire_checksum *out)
{
    if (!strcmp(name, "none"))
        *out = RT_WIRE_CK_NONE;
    else if (!strcmp(name, "crc32"))
        *out = RT_WIRE_CK_CRC32;
    else if (!strcmp(name, "fletcher64"))
        *out = RT_WIRE_CK_FLETCHER64;
    else
        return rt_err_set(RT_ERR_ARG, "unknown checksum '%s'", name);
    return RT_OK;
}

double eb_opts_worker_weight(const struct eb_opts *o, int i)
{
    if (!o->weights)
        return 1.0;
    const char *p = o->weights;
    for (int k = 0; k < i && p; k++) {
        p = strchr(p, ',');
        if (p)
            p++;
    }
    if (!p)
        return 1.0;
    char *end;
    double w = strtod(p, &end);
    return end != p && w > 0 ? w : 1.0;
}

int eb_opts_needs_eigensvc(const struct eb_opts *o)
{
    return o->method && !strncasecmp(o->method, "ABS", 3);
}

int eb_run_eig_cfg(const struct eb_opts *o, struct eigensvc_cfg *ec)
{
    memset(ec, 0, sizeof *ec);
    enum eig_power_preset pp;
    if (eig_power_preset_parse(o->preset, &pp))
        return rt_err_set(RT_ERR_CONFIG, "abs.preset: expected paper or accurate, got '%s'",
                          o->preset);
    if (strcmp(o->bn, "eval") && strcmp(o->bn, "train"))
        return rt_err_set(RT_ERR_CONFIG, "abs.bn: expected eval or train, got '%s'", o->bn);
    if (!eb_opts_needs_eigensvc(o))
        return rt_err_set(RT_ERR_CONFIG, "schedule.method %s has no eigen service",
                          o->method ? o->method : "(none)");
    eig_power_config_preset(&ec->power, pp);
    ec->power.seed = (uint64_t)o->seed;
    eig_abs_config_default(&ec->abs, (int32_t)o->epochs, !strcasecmp(o->method, "ABSA"));
    ec->abs.alpha = o->alpha;
    ec->abs.beta = o->beta;
    ec->abs.kappa = (int32_t)o->kappa;
    /* the coordinator's schedule: its B_max (the method's default when unset), lr at B */
    enum server_sched_method m;
    if (server_sched_method_parse(o->method, &m))
        return RT_ERR_CONFIG;
    struct server_sched_config dc;
    server_sched_config_default(&dc, m, o->samples, (int32_t)o->epochs);
    ec->abs.batch0 = o->batch;
    ec->abs.batch_max = o->batch_max > 0 ? o->batch_max : dc.batch_max;
    if (ec->abs.batch_max < o->batch)
        ec->abs.batch_max = o->batch;
    ec->abs.lr0 = o->base_batch > 0 ? o->lr * (double)o->batch / (double)o->base_batch : o->lr;
    ec->abs.lr_cap = o->lr_cap;
    ec->abs.gamma0 = o->gamma;
    ec->abs.omega = o->omega;
    if (o->tau >= 0)
        ec->abs.tau = (int32_t)o->tau;
    ec->abs.rho = o->rho;
    ec->abs.n_decay = 0;
    if (o->decay) {
        char list[EB_RUN_MAX_LIST];
        snprintf(list, sizeof list, "%s", o->decay);
        for (char *sv = NULL, *t = strtok_r(list, ",", &sv); t; t = strtok_r(NULL, ",", &sv)) {
            char *end;
            long e = strtol(t, &end, 10);
            if (end == t || *end || ec->abs.n_decay >= EIG_ABS_MAX_DECAY)
                return rt_err_set(RT_ERR_CONFIG, "schedule.decay_epochs: bad list '%s'", o->decay);
            ec->abs.decay_epochs[ec->abs.n_decay++] = (int32_t)e;
        }
    }
    ec->model = o->model;
    ec->classes = (int)o->classes;
    ec->train_db = o->data;
    ec->hessian_batch = (int)o->hessian_batch;
    ec->seed = (uint64_t)o->seed;
    ec->block_last_k = (int)o->block_last_k;
    ec->bn = strcmp(o->bn, "eval") ? NN_BN_TRAIN : NN_BN_EVAL;
    ec->sync = o->sync != 0;
    ec->epochs = (int)o->epochs;
    return RT_OK;
}

/* Append flag and its value (printf format) to a. */
static int s_eig_arg(struct eb_run_eig_args *a, const char *flag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_eig_arg(struct eb_run_eig_args *a, const char *flag, const char *fmt, ...)
{
    if (a->argc + 2 > EB_RUN_EIG_MAX_ARGS)
        return rt_err_set(RT_ERR_ARG, "eigen service: too many arguments");
    char *v = a->text[a->argc + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(v, EB_RUN_EIG_ARG_LEN, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= EB_RUN_EIG_ARG_LEN)
        return rt_err_set(RT_ERR_ARG, "eigen service: value of %s too long", flag);
    a->argv[a->argc++] = (char *)flag;
    a->argv[a->argc++] = v;
    a->argv[a->argc] = NULL;
    return RT_OK;
}

int eb_run_eig_args(const struct eb_opts *o, struct eb_run_eig_args *a)
{
    struct eigensvc_cfg ec;
    int rc = eb_run_eig_cfg(o, &ec);
    a->argc = 0;
    a->argv[0] = NULL;
    if (rc)
        return rc;
    const struct eig_abs_config *c = &ec.abs;
    char decay[EB_RUN_EIG_ARG_LEN] = "";
    for (int i = 0; i < c->n_decay; i++) {
        size_t k = strlen(decay);
        snprintf(decay + k, sizeof decay - k, "%s%d", i ? "," : "", (int)c->decay_epochs[i]);
    }
    /* doubles with 17 digits: the process reads back the very same values */
    if ((rc = s_eig_arg(a, "--model", "%s", ec.model)) ||
        (rc = s_eig_arg(a, "--data", "%s", ec.train_db)) ||
        (rc = s_eig_arg(a, "--classes", "%d", ec.classes)) ||
        (rc = s_eig_arg(a, "--method", "%s", c->adversarial ? "ABSA" : "ABS")) ||
        (rc = s_eig_arg(a, "--epochs", "%d", ec.epochs)) ||
        (rc = s_eig_arg(a, "--batch", "%lld", (long long)c->batch0)) ||
        (rc = s_eig_arg(a, "--batch-max", "%lld", (long long)c->batch_max)) ||
        (rc = s_eig_arg(a, "--lr", "%.17g", c->lr0)) ||
        (rc = s_eig_arg(a, "--lr-cap", "%.17g", c->lr_cap)) ||
        (rc = s_eig_arg(a, "--alpha", "%.17g", c->alpha)) ||
        (rc = s_eig_arg(a, "--beta", "%.17g", c->beta)) ||
        (rc = s_eig_arg(a, "--kappa", "%d", (int)c->kappa)) ||
        (rc = s_eig_arg(a, "--gamma", "%.17g", c->gamma0)) ||
        (rc = s_eig_arg(a, "--omega", "%.17g", c->omega)) ||
        (rc = s_eig_arg(a, "--tau", "%d", (int)c->tau)) ||
        (rc = s_eig_arg(a, "--rho", "%.17g", c->rho)) ||
        (rc = s_eig_arg(a, "--hessian-batch", "%d", ec.hessian_batch)) ||
        (rc = s_eig_arg(a, "--block-last", "%d", ec.block_last_k)) ||
        (rc = s_eig_arg(a, "--bn", "%s", o->bn)) ||
        (rc = s_eig_arg(a, "--preset", "%s", o->preset)) ||
        (rc = s_eig_arg(a, "--seed", "%llu", (unsigned long long)ec.seed)) ||
        (rc = s_eig_arg(a, "--sync", "%d", ec.sync)))
        return rc;
    if (c->n_decay && (rc = s_eig_arg(a, "--decay", "%s", decay)))
        return rc;
    return RT_OK;
}

/* ---- a zoo model on an LMDB dataset ---------------------------------------------------------- */

int eb_run_output_dir(const char *dir)
{
    char p[S_MAX_PATH];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return rt_err_set(RT_ERR_ARG, "output directory name too long");
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0777) && errno != EEXIST)
            return rt_err_set(RT_ERR_IO, "%s: %s", p, strerror(errno));
        *c = '/';
    }
    if (mkdir(p, 0777) && errno != EEXIST)
        return rt_err_set(RT_ERR_IO, "%s: %s", p, strerror(errno));
    return RT_OK;
}

static int s_eval_new(const struct eb_opts *o, struct eb_run_nn *n, int c, int h, int w);
static void s_eval_destroy(struct eb_run_nn *n);

/* A resumed run appends to metrics.jsonl: first an event saying from where. Events of the
 * interrupted run after that checkpoint (a partial epoch) stay above it; readers that want one
 * history drop the events with step >= this event's step that precede it. */
static int s_resume_event(struct eb_run_nn *n, const char *dir)
{
    json_t *m = NULL;
    uint64_t epoch = 0, step = 0;
    int rc = rt_ckpt_verify(dir, SERVER_CKPT_COORD, &m);
    if (!rc && !(rc = rt_ckpt_manifest_u64(m, dir, "epoch", &epoch)))
        rc = rt_ckpt_manifest_u64(m, dir, "step", &step);
    json_decref(m);
    if (rc)
        return rc;
    rt_metrics_begin(n->metrics, "resume");
    rt_metrics_str(n->metrics, "checkpoint", dir);
    rt_metrics_int(n->metrics, "epoch", (long long)epoch);
    rt_metrics_int(n->metrics, "step", (long long)step);
    return rt_metrics_end(n->metrics);
}

static void s_epoch_end(struct eb_run_nn *n, const float *params, const float *buffers, int final);

int eb_run_nn_open(const struct eb_opts *o, struct eb_run_nn *n, int compute, int lead)
{
    memset(n, 0, sizeof *n);
    n->o = o;
    n->epoch = -1;
    n->worker_id = -1;
    n->test_accuracy = NAN;
    n->test_loss = NAN;
    struct rt_loader_opts lo;
    rt_loader_opts_default(&lo);
    lo.seed = (uint64_t)o->seed;
    lo.threads = (int)o->loader_threads;
    lo.max_batch = (size_t)o->micro;
    lo.crop_pad = (int)o->crop_pad;
    lo.flip = o->flip != 0;
    int rc = rt_loader_new(o->data, &lo, &n->loader);
    if (rc)
        return rc;
    int c, h, w;
    rt_loader_shape(n->loader, &c, &h, &w);
    n->net = nn_zoo_new(o->model, c, h, w, (int)o->classes, (int)o->micro, &rc);
    if (!n->net)
        return rt_err_set(rc ? rc : RT_ERR_CONFIG, "model '%s' for %dx%dx%d inputs: %s", o->model,
                          c, h, w, rt_err_msg());
    if (!compute)
        return RT_OK;
    worker_feed_init(&n->feed, n->loader, lo.queue_depth);
    struct worker_nn_source src = worker_feed_source(&n->feed);
    struct worker_nn_cfg nc = {
        .micro_batch = (int)o->micro, .fgsm_epsilon = o->epsilon, .init_seed = (uint64_t)o->seed};
    n->nn = worker_nn_new(n->net, &src, &nc, &rc);
    if (!n->nn)
        return rc;
    if (!lead)
        return RT_OK;
    if (o->test && (rc = s_eval_new(o, n, c, h, w)))
        return rc;
    if (o->output_dir) {
        char path[S_MAX_PATH];
        if ((rc = eb_run_output_dir(o->output_dir)))
            return rc;
        snprintf(path, sizeof path, "%s/metrics.jsonl", o->output_dir);
        if ((rc = rt_metrics_open(path, o->resume != NULL, &n->metrics)))
            return rc;
        if (o->resume && (rc = s_resume_event(n, o->resume)))
            return rc;
    }
    long long total = o->method ? (long long)o->epochs * (long long)rt_loader_count(n->loader)
                                : (long long)o->steps * o->batch;
    n->progress = rt_progress_new("train", total, o->progress_s, NULL);
    if (!n->progress)
        return rt_err_set(RT_ERR_NOMEM, "progress");
    return RT_OK;
}

void eb_run_nn_close(struct eb_run_nn *n)
{
    worker_nn_destroy(&n->nn);
    nn_net_destroy(&n->net);
    rt_loader_destroy(&n->loader);
    s_eval_destroy(n);
    rt_metrics_close(&n->metrics);
    rt_progress_destroy(&n->progress);
}

int eb_run_evaluate(nn_net_t *net, rt_loader_t *test, float *x, int32_t *y, double *accuracy,
                    double *loss, uint64_t *n)
{
    size_t total = rt_loader_count(test), mb = (size_t)nn_net_max_batch(net);
    double sum_loss = 0;
    uint64_t correct = 0;
    for (size_t first = 0; first < total; first += mb) {
        size_t k = total - first < mb ? total - first : mb;
        int rc = rt_loader_read(test, first, k, x, y);
        if (rc)
            return rc;
        int ok = 0;
        float l = nn_net_forward(net, x, y, (int)k, NN_BN_EVAL, NULL, &ok);
        sum_loss += (double)l * (double)k;
        correct += (uint64_t)ok;
    }
    *n = total;
    *accuracy = total ? (double)correct / (double)total : 0.0;
    *loss = total ? sum_loss / (double)total : 0.0;
    return RT_OK;
}

static int s_nn_init(void *user, float *params, float *buffers)
{
    struct eb_run_nn *n = user;
    n->worker_id = 0; /* only worker 0 initialises the shards */
    struct worker_compute c = worker_nn_compute(n->nn);
    return c.init(c.user, params, buffers);
}

static int s_nn_step(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct eb_run_nn *n = user;
    n->worker_id = st->worker;
    if (n->progress && n->epoch >= 0 && (int64_t)st->epoch != n->epoch) {
        /* the weights and running statistics of this step are the last epoch's final ones */
        s_epoch_end(n, params, buffers, 0);
        n->epoch = (int64_t)st->epoch;
    }
    struct worker_compute c = worker_nn_compute(n->nn);
    return c.compute(c.user, st, params, grads, buffers, samples, loss);
}

/* What an epoch event says besides the test results. */
struct s_epoch {
    int64_t epoch;         /* the epoch that ended */
    uint64_t steps;        /* steps done by its end */
    double loss;           /* mean training loss over the epoch's samples, every worker's */
    double train_accuracy; /* ... and accuracy */
    uint32_t batch;        /* B, lr and gamma of its last step */
    float lr;
    float gamma;
    double images_per_s; /* global samples of the epoch per second */
    double elapsed;      /* seconds since the first step */
    int evaluate;        /* 1: evaluate the test set */
};

/* The evaluation thread of worker 0: a second net, the test set, one pending epoch. */
struct eb_run_eval {
    struct eb_run_nn *owner; /* the worker state (metrics, results) */
    nn_net_t *net;           /* the evaluated weights (a copy) */
    rt_loader_t *test;       /* the test set */
    float *x;                /* one evaluation micro-batch of inputs */
    int32_t *y;              /* its labels */
    pthread_t thread;        /* the thread */
    int started;             /* 1 once the thread runs */
    pthread_mutex_t mu;      /* guards the fields below and owner's results */
    pthread_cond_t cv;       /* signals a new job, a finished job and quit */
    int pending;             /* 1: ep holds a job not yet done */
    int quit;                /* 1: the thread ends once nothing is pending */
    struct s_epoch ep;       /* the job */
};

/* Write the epoch event; acc/tl NaN when not evaluated. */
static void s_epoch_write(struct eb_run_nn *n, const struct s_epoch *ep, double acc, double tl,
                          double eval_s)
{
    if (!n->metrics)
        return;
    rt_metrics_begin(n->metrics, "epoch");
    rt_metrics_int(n->metrics, "epoch", ep->epoch);
    rt_metrics_int(n->metrics, "step", (long long)ep->steps);
    rt_metrics_num(n->metrics, "loss", ep->loss);
    rt_metrics_num(n->metrics, "train_accuracy", ep->train_accuracy);
    rt_metrics_num(n->metrics, "test_accuracy", acc);
    rt_metrics_num(n->metrics, "test_loss", tl);
    rt_metrics_int(n->metrics, "batch_size", ep->batch);
    rt_metrics_num(n->metrics, "lr", ep->lr);
    rt_metrics_num(n->metrics, "gamma", ep->gamma);
    rt_metrics_num(n->metrics, "images_per_s", ep->images_per_s);
    rt_metrics_num(n->metrics, "elapsed", ep->elapsed);
    rt_metrics_num(n->metrics, "eval_seconds", eval_s);
    if (rt_metrics_end(n->metrics) && !n->rc)
        n->rc = RT_ERR_IO;
}

static void *s_eval_main(void *arg)
{
    struct eb_run_eval *ev = arg;
    struct eb_run_nn *n = ev->owner;
    pthread_mutex_lock(&ev->mu);
    for (;;) {
        while (!ev->pending && !ev->quit)
            pthread_cond_wait(&ev->cv, &ev->mu);
        if (!ev->pending)
            break;
        struct s_epoch ep = ev->ep;
        pthread_mutex_unlock(&ev->mu);
        double acc = NAN, tl = NAN, t = rt_progress_now();
        uint64_t tn = 0;
        int rc = eb_run_evaluate(ev->net, ev->test, ev->x, ev->y, &acc, &tl, &tn);
        double dt = rt_progress_now() - t;
        if (rc)
            RT_ERROR("train", "epoch %lld: test evaluation: %s", (long long)ep.epoch, rt_err_msg());
        else
            RT_INFO("train", "epoch %lld: test accuracy %.4f, loss %.4f (%llu samples, %.2f s)",
                    (long long)ep.epoch, acc, tl, (unsigned long long)tn, dt);
        pthread_mutex_lock(&ev->mu);
        if (rc && !n->rc)
            n->rc = rc;
        n->test_accuracy = acc;
        n->test_loss = tl;
        n->eval_seconds += dt;
        s_epoch_write(n, &ep, acc, tl, dt);
        ev->pending = 0;
        pthread_cond_broadcast(&ev->cv);
    }
    pthread_mutex_unlock(&ev->mu);
    return NULL;
}

/* Wait until the evaluation thread has nothing pending. */
static void s_eval_wait(struct eb_run_eval *ev)
{
    pthread_mutex_lock(&ev->mu);
    while (ev->pending)
        pthread_cond_wait(&ev->cv, &ev->mu);
    pthread_mutex_unlock(&ev->mu);
}

static int s_eval_new(const struct eb_opts *o, struct eb_run_nn *n, int c, int h, int w)
{
    struct eb_run_eval *ev = calloc(1, sizeof *ev);
    if (!ev)
        return rt_err_set(RT_ERR_NOMEM, "evaluation");
    n->ev = ev;
    ev->owner = n;
    pthread_mutex_init(&ev->mu, NULL);
    pthread_cond_init(&ev->cv, NULL);
    struct rt_loader_opts to;
    rt_loader_opts_default(&to);
    to.threads = 0;
    to.max_batch = (size_t)o->micro;
    to.out_height = h;
    to.out_width = w;
    int rc = rt_loader_new(o->test, &to, &ev->test);
    if (rc)
        return rt_err_set(rc, "test set: %s", rt_err_msg());
    int tc, th, tw;
    rt_loader_shape(ev->test, &tc, &th, &tw);
    if (tc != c || th != h || tw != w)
        return rt_err_set(RT_ERR_SHAPE, "test set %s has %dx%dx%d samples, training set %dx%dx%d",
                          o->test, tc, th, tw, c, h, w);
    ev->net = nn_zoo_new(o->model, c, h, w, (int)o->classes, (int)o->micro, &rc);
    ev->x = malloc((size_t)o->micro * (size_t)(c * h * w) * sizeof(float));
    ev->y = malloc((size_t)o->micro * sizeof(int32_t));
    if (!ev->net || !ev->x || !ev->y)
        return rt_err_set(RT_ERR_NOMEM, "evaluation net");
    if (pthread_create(&ev->thread, NULL, s_eval_main, ev))
        return rt_err_set(RT_ERR_NOMEM, "cannot start the evaluation thread");
    ev->started = 1;
    return RT_OK;
}

static void s_eval_destroy(struct eb_run_nn *n)
{
    struct eb_run_eval *ev = n->ev;
    if (!ev)
        return;
    if (ev->started) {
        pthread_mutex_lock(&ev->mu);
        ev->quit = 1;
        pthread_cond_broadcast(&ev->cv);
        pthread_mutex_unlock(&ev->mu);
        pthread_join(ev->thread, NULL);
    }
    nn_net_destroy(&ev->net);
    rt_loader_destroy(&ev->test);
    free(ev->x);
    free(ev->y);
    pthread_mutex_destroy(&ev->mu);
    pthread_cond_destroy(&ev->cv);
    free(ev);
    n->ev = NULL;
}

/* Worker 0 at the end of epoch n->epoch, with its final weights: hand the evaluation (when due)
 * and the event to the evaluation thread, or write the event now; reset the epoch's counters. */
static void s_epoch_end(struct eb_run_nn *n, const float *params, const float *buffers, int final)
{
    const struct eb_opts *o = n->o;
    double now = rt_progress_now(), secs = now - n->epoch_t0;
    struct s_epoch ep = {
        .epoch = n->epoch,
        .steps = n->last.step + 1,
        .loss = n->tot_samples ? n->tot_loss / (double)n->tot_samples : NAN,
        .train_accuracy = n->tot_samples ? (double)n->tot_correct / (double)n->tot_samples : NAN,
        .batch = n->last.batch,
        .lr = n->last.lr,
        .gamma = n->last.gamma,
        .images_per_s = secs > 0 ? (double)n->epoch_samples / secs : NAN,
        .elapsed = now - n->t0,
        .evaluate = final || (o->eval_every > 0 && (n->epoch + 1) % o->eval_every == 0),
    };
    RT_INFO("train", "epoch %lld done: loss %.4f, train accuracy %.4f, %.0f images/s",
            (long long)ep.epoch, ep.loss, ep.train_accuracy, secs > 0 ? ep.images_per_s : 0.0);
    struct eb_run_eval *ev = n->ev;
    if (ev && ep.evaluate) {
        /* at most one evaluation in flight: the copy must not change under the thread */
        s_eval_wait(ev);
        memcpy(nn_net_params(ev->net), params, nn_net_param_count(ev->net) * sizeof(float));
        if (nn_net_buffer_count(ev->net))
            memcpy(nn_net_buffers(ev->net), buffers, nn_net_buffer_count(ev->net) * sizeof(float));
        pthread_mutex_lock(&ev->mu);
        ev->ep = ep;
        ev->pending = 1;
        pthread_cond_broadcast(&ev->cv);
        pthread_mutex_unlock(&ev->mu);
        if (final)
            s_eval_wait(ev);
    } else if (ev) {
        s_eval_wait(ev); /* events stay in epoch order */
        pthread_mutex_lock(&ev->mu);
        s_epoch_write(n, &ep, NAN, NAN, 0);
        pthread_mutex_unlock(&ev->mu);
    } else {
        s_epoch_write(n, &ep, NAN, NAN, 0);
    }
    n->epoch_t0 = rt_progress_now();
    n->epoch_samples = n->tot_samples = n->tot_correct = 0;
    n->tot_loss = 0;
}

static void s_nn_step_done(void *user, const struct worker_step *st, uint32_t samples, float loss)
{
    struct eb_run_nn *n = user;
    if (!n->progress)
        return;
    double now = rt_progress_now();
    if (n->epoch < 0) {
        n->t0 = now;
        n->epoch_t0 = now;
        n->epoch = (int64_t)st->epoch;
        /* a resumed run: the epochs before count as done for the progress line */
        n->skip_samples = st->epoch * rt_loader_count(n->loader) + st->epoch_offset;
    }
    uint32_t s, correct;
    float l;
    worker_nn_last(n->nn, &s, &correct, &l);
    uint32_t global = st->samples ? st->samples : st->batch;
    n->done_samples += global;
    n->epoch_samples += global;
    n->last = *st;
    double el = now - n->t0;
    char extra[160];
    snprintf(extra, sizeof extra, "epoch %llu loss %.4f acc %.3f B %u lr %.4g",
             (unsigned long long)st->epoch, (double)loss, samples ? (double)correct / samples : 0.0,
             st->batch, (double)st->lr);
    rt_progress_update(n->progress, (long long)(n->skip_samples + n->done_samples), "%s", extra);
    if (st->step % (uint64_t)n->o->log_every)
        return;
    RT_DEBUG("train", "step %llu %s", (unsigned long long)st->step, extra);
    if (n->metrics) {
        rt_metrics_begin(n->metrics, "step");
        rt_metrics_int(n->metrics, "epoch", (long long)st->epoch);
        rt_metrics_int(n->metrics, "step", (long long)st->step);
        rt_metrics_num(n->metrics, "loss", loss);
        rt_metrics_num(n->metrics, "train_accuracy", samples ? (double)correct / samples : NAN);
        rt_metrics_int(n->metrics, "batch_size", st->batch);
        rt_metrics_num(n->metrics, "lr", st->lr);
        rt_metrics_num(n->metrics, "gamma", st->gamma);
        rt_metrics_num(n->metrics, "images_per_s", el > 0 ? n->done_samples / el : NAN);
        rt_metrics_num(n->metrics, "elapsed", el);
        if (rt_metrics_end(n->metrics) && !n->rc)
            n->rc = RT_ERR_IO;
    }
}

static uint32_t s_nn_correct(void *user)
{
    struct eb_run_nn *n = user;
    uint32_t s, correct;
    float l;
    worker_nn_last(n->nn, &s, &correct, &l);
    return correct;
}

/* Worker 0: the coordinator's totals of a step join its epoch's (they arrive before the epoch's
 * end is noticed: with the weights of the next step). */
static void s_nn_totals(void *user, const struct worker_totals *t)
{
    struct eb_run_nn *n = user;
    if (!n->progress)
        return;
    n->tot_samples += t->samples;
    n->tot_correct += t->correct;
    n->tot_loss += t->loss_sum;
}

static void s_nn_finish(void *user, uint64_t steps, const float *params, const float *buffers)
{
    struct eb_run_nn *n = user;
    const struct eb_opts *o = n->o;
    struct worker_compute c = worker_nn_compute(n->nn);
    if (c.finish)
        c.finish(c.user, steps, params, buffers); /* the final weights into the net */
    if (n->progress && n->epoch >= 0) {
        s_epoch_end(n, params, buffers, 1);
        char extra[64];
        snprintf(extra, sizeof extra, "%llu steps", (unsigned long long)steps);
        rt_progress_finish(n->progress, extra);
    }
    if (n->worker_id != 0) {
        if (o->output_dir || o->out)
            RT_DEBUG("train", "worker %d: the final weights are worker 0's to write", n->worker_id);
        return;
    }
    if (o->output_dir) {
        char path[S_MAX_PATH], a_steps[32], a_seed[32];
        snprintf(path, sizeof path, "%s/weights.safetensors", o->output_dir);
        snprintf(a_steps, sizeof a_steps, "%llu", (unsigned long long)steps);
        snprintf(a_seed, sizeof a_seed, "%ld", o->seed);
        const char *meta[] = {"model", o->model, "steps", a_steps, "seed", a_seed, NULL};
        int rc = eb_run_output_dir(o->output_dir);
        if (!rc)
            rc = eb_weights_save_meta(n->net, path, meta);
        if (rc && !n->rc)
            n->rc = rc;
        if (!rc)
            RT_INFO("train", "weights written to %s", path);
    }
    if (o->out) {
        size_t np = nn_net_param_count(n->net), nb = nn_net_buffer_count(n->net);
        FILE *fp = fopen(o->out, "wb");
        if (!fp || fwrite(params, sizeof(float), np, fp) != np ||
            (nb && fwrite(buffers, sizeof(float), nb, fp) != nb))
            n->rc = rt_err_set(RT_ERR_IO, "%s: %s", o->out, strerror(errno));
        if (fp && fclose(fp) && !n->rc)
            n->rc = rt_err_set(RT_ERR_IO, "%s: %s", o->out, strerror(errno));
    }
}

struct worker_compute eb_run_nn_compute(struct eb_run_nn *n)
{
    return (struct worker_compute){.user = n,
                                   .init = s_nn_init,
                                   .compute = s_nn_step,
                                   .correct = s_nn_correct,
                                   .totals = s_nn_totals,
                                   .step_done = s_nn_step_done,
                                   .finish = s_nn_finish};
}
