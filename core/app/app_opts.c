/*
 * app_opts: the option table of every role, and the checks that span several options (see
 * app_opts.h). A default exists here and nowhere else.
 */
#include "app_opts.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "nn_backend.h"
#include "rt_ckpt.h"
#include "rt_curve.h"
#include "rt_log.h"
#include "rt_metrics.h"
#include "rt_err.h"

#define S_INT_MAX 2147483647.0 /* upper bound of options that end up in an int */
#define S_U32_MAX 4294967295.0 /* ... in a uint32 */

/* A keyed row: section.field, flag, type, default, range, choices, help. */
#define K(field, key, flag, type, def, lo, hi, choices, help)                                      \
    {                                                                                              \
        key, flag, RT_OPT_##type, offsetof(struct app_opts, field), def, lo, hi, choices, help     \
    }
/* A per-process row (no key). */
#define L(field, flag, type, def, lo, hi, help)                                                    \
    {                                                                                              \
        NULL, flag, RT_OPT_##type, offsetof(struct app_opts, local.field), def, lo, hi, NULL, help \
    }

const struct rt_opt app_opts_table[] = {
    K(model.name, "model.name", "model", STR, "cnn", 0, 0, NULL, "zoo model (models.md) or synth"),
    K(model.classes, "model.classes", "classes", INT, "10", 2, 1e6, NULL, "number of classes"),
    K(model.params, "model.params", "params", INT, "0", 0, 1e12, NULL,
      "synth: parameter count (0: 1000); zoo: 0 or the net's count"),
    K(model.buffers, "model.buffers", "buffers", INT, "0", 0, 1e12, NULL,
      "synth: buffer floats; zoo: 0 or the net's count"),
    K(data.train, "data.train", "data", STR, NULL, 0, 0, NULL,
      "LMDB training set (eigenbatch convert)"),
    K(data.test, "data.test", "test", STR, NULL, 0, 0, NULL, "LMDB test set, or null"),
    K(data.size, "data.size", "size", LIST_INT, NULL, 1, 65535, NULL,
      "output size: [H, W] or one side (null: the records'; JPEG datasets need it)"),
    K(data.channels, "data.channels", "channels", INT, "0", 0, 3, NULL,
      "output channels, 1 or 3 (0: the records'; JPEGs convert, greyscale to 3)"),
    K(data.train_crop, "data.train_crop", "train-crop", STR, "pad", 0, 0, "pad|random_resized",
      "training crop: pad (random window, crop_pad padding) or random_resized"),
    K(data.crop_pad, "data.crop_pad", "crop-pad", INT, "0", 0, 1024, NULL,
      "random crop with this much zero padding per side"),
    K(data.train_scale, "data.train_scale", "train-scale", LIST_FLOAT, NULL, 1e-6, 1, NULL,
      "random_resized: area fraction range [lo, hi] (null: torchvision's 0.08, 1)"),
    K(data.train_ratio, "data.train_ratio", "train-ratio", LIST_FLOAT, NULL, 1e-3, 1e3, NULL,
      "random_resized: aspect ratio (w/h) range [lo, hi] (null: torchvision's 3/4, 4/3)"),
    K(data.flip, "data.flip", "flip", BOOL, "false", 0, 0, NULL, "random horizontal flip"),
    K(data.eval_resize, "data.eval_resize", "eval-resize", INT, "0", 0, 65535, NULL,
      "evaluation: shorter side resized to this, then the centre data.size (0: the centre box "
      "resized)"),
    K(data.mean, "data.mean", "mean", LIST_FLOAT, NULL, -1e6, 1e6, NULL,
      "per-channel mean of pixel/255 (null: no normalisation)"),
    K(data.std, "data.std", "std", LIST_FLOAT, NULL, 1e-9, 1e6, NULL,
      "per-channel standard deviation of pixel/255 (with data.mean)"),
    K(data.loader_threads, "data.loader_threads", "loader-threads", INT, "1", 0, 256, NULL,
      "decoding threads per worker"),
    K(data.prefetch, "data.prefetch", "prefetch", INT, "4", 1, 64, NULL,
      "batches decoded ahead per worker (bounds the loader's memory)"),
    K(data.max_image_pixels, "data.max_image_pixels", "max-image-pixels", INT, "16777216", 1, 1e10,
      NULL, "largest JPEG (width x height) accepted: bounds the decoders' memory"),
    K(data.skip_bad_records, "data.skip_bad_records", "skip-bad-records", INT, "0", 0, 4294967295.0,
      NULL,
      "records that cannot be decoded tolerated per loader: each is replaced by the next record "
      "that decodes, with a warning naming its key (0: the first one stops the run)"),
    K(data.samples, "data.samples", "samples", INT, "60000", 1, 1e12, NULL,
      "synth: samples per epoch (zoo models: the dataset's)"),
    K(cluster.shards, "cluster.shards", "shards", INT, "2", 1, APP_MAX_SHARDS, NULL,
      "parameter-server shards"),
    K(cluster.workers, "cluster.workers", "workers", INT, "2", 1, APP_MAX_WORKERS, NULL, "workers"),
    K(cluster.transport, "cluster.transport", "transport", STR, "inproc", 0, 0, "inproc|ipc|tcp",
      "train: inproc; launch: ipc or tcp (zoo models over inproc use ipc)"),
    K(cluster.port, "cluster.port", "port", INT, "0", 0, 65535, NULL,
      "tcp: first port (0: free ones)"),
    K(cluster.weights, "cluster.weights", "weights", LIST_FLOAT, NULL, 1e-9, 1e9, NULL,
      "share weight per worker (null: equal); the initial shares under balance: measured"),
    K(cluster.balance, "cluster.balance", "balance", STR, "measured", 0, 0, "static|measured",
      "measured: shares follow each worker's measured speed (min 5% of an equal share); static: "
      "cluster.weights throughout (bitwise-reproducible runs with BatchNorm)"),
    K(cluster.checksum, "cluster.checksum", "checksum", STR, "fletcher64", 0, 0,
      "none|crc32|fletcher64", "frame checksum"),
    K(cluster.chunk, "cluster.chunk", "chunk", INT, "0", 0, S_U32_MAX, NULL,
      "floats per frame (0: default)"),
    K(cluster.timeout_ms, "cluster.timeout_ms", "timeout-ms", INT, "0", 0, S_INT_MAX, NULL,
      "a worker or the eigen service gives up after this much silence (0: 60 s; sync: never)"),
    K(cluster.worker_timeout_ms, "cluster.worker_timeout_ms", "worker-timeout-ms", INT, "30000", 0,
      S_INT_MAX, NULL, "evict a worker silent this long (0: never; else >= 100)"),
    K(cluster.coordinator_timeout_ms, "cluster.coordinator_timeout_ms", "coordinator-timeout-ms",
      INT, "60000", 0, S_INT_MAX, NULL,
      "shards > 0, workers and the eigen service exit non-zero when the coordinator is gone or "
      "silent this long (0: never)"),
    K(cluster.max_restarts, "cluster.max_restarts", "max-restarts", INT, "3", 0, S_INT_MAX, NULL,
      "launch: respawns of a failed worker process (all workers together)"),
    K(schedule.method, "schedule.method", "method", STR, "BL", 0, 0, "BL|FB|GG|ABS|ABSA",
      "batch-size and learning-rate method"),
    K(schedule.batch, "schedule.batch", "batch", INT, "128", 1, S_U32_MAX, NULL,
      "initial global batch B"),
    K(schedule.base_batch, "schedule.base_batch", "base-batch", INT, "0", 0, S_U32_MAX, NULL,
      "batch at which lr is given (0: batch)"),
    K(schedule.lr, "schedule.lr", "lr", FLOAT, "0.1", 0, 1e6, NULL, "learning rate at base_batch"),
    K(schedule.momentum, "schedule.momentum", "momentum", FLOAT, "0.9", 0, 1, NULL, "SGD momentum"),
    K(schedule.weight_decay, "schedule.weight_decay", "weight-decay", FLOAT, "5e-4", 0, 1, NULL,
      "SGD weight decay"),
    K(schedule.epochs, "schedule.epochs", "epochs", INT, "1", 1, S_INT_MAX, NULL, "epochs"),
    K(schedule.decay_epochs, "schedule.decay_epochs", "decay-epochs", LIST_INT, NULL, 1, S_INT_MAX,
      NULL, "epochs at which the lr decays by rho"),
    K(schedule.rho, "schedule.rho", "rho", FLOAT, "0.2", 0, 1, NULL, "decay factor"),
    K(schedule.warmup_epochs, "schedule.warmup_epochs", "warmup-epochs", INT, "0", 0, S_INT_MAX,
      NULL, "FB: epochs of gradual warm-up"),
    K(schedule.batch_max, "schedule.batch_max", "batch-max", INT, "16384", 1, S_U32_MAX, NULL,
      "largest batch (GG, ABS, ABSA)"),
    K(schedule.lr_cap, "schedule.lr_cap", "lr-cap", FLOAT, "0", 0, 1e6, NULL,
      "bound on the base learning rate (0: none)"),
    K(schedule.steps, "schedule.steps", "steps", INT, "0", 0, 1e15, NULL,
      "> 0: that many steps at constant batch and lr, instead of the method's epochs (BL only)"),
    K(abs.alpha, "abs.alpha", "alpha", FLOAT, "2", 1, 1e12, NULL,
      "grow when lambda <= lambda_ref / alpha"),
    K(abs.beta, "abs.beta", "beta", FLOAT, "2", 1, 1e6, NULL, "batch growth factor"),
    K(abs.kappa, "abs.kappa", "kappa", INT, "10", 0, S_INT_MAX, NULL,
      "grow after kappa epochs without an increase"),
    K(abs.gamma, "abs.gamma", "gamma", FLOAT, "0.2", 0, 1, NULL,
      "ABSA: initial adversarial fraction"),
    K(abs.epsilon, "abs.epsilon", "epsilon", FLOAT, "0.005", 0, 1e6, NULL, "ABSA: FGSM step"),
    K(abs.omega, "abs.omega", "omega", FLOAT, "2", 1, 1e6, NULL,
      "ABSA: gamma /= omega at every increase"),
    K(abs.tau, "abs.tau", "tau", INT, "-1", -1, S_INT_MAX, NULL,
      "ABSA: no adversarial samples from this epoch (-1: half of the epochs)"),
    K(abs.block_last_k, "abs.block_last_k", "block-last-k", INT, "0", 0, S_INT_MAX, NULL,
      "0: full Hessian; K: the last K parameter layers"),
    K(abs.bn, "abs.bn", "bn", STR, "eval", 0, 0, "eval|train", "BatchNorm mode of the Hessian"),
    K(abs.preset, "abs.preset", "preset", STR, "paper", 0, 0, "paper|accurate",
      "power iteration: paper (10 it, 1e-2) or accurate (50, 1e-3)"),
    K(abs.method, "abs.method", "eig-method", STR, "auto", 0, 0, "auto|power|lanczos",
      "eigen service: power iteration (the reference's) or Lanczos, to the preset's tolerance; "
      "auto: Lanczos under the accurate preset, power iteration under paper (as eig)"),
    K(abs.decisions, "abs.decisions", "decisions", STR, "async", 0, 0, "async|sync",
      "sync: each epoch start waits for its decision (deterministic runs)"),
    K(abs.hessian_batch, "abs.hessian_batch", "hessian-batch", INT, "128", 1, S_INT_MAX, NULL,
      "samples of the Hessian batch"),
    K(abs.sync_timeout_s, "abs.sync_timeout_s", "sync-timeout-s", FLOAT, "600", 1e-3, 2e6, NULL,
      "sync: longest wait of an epoch start for its decision, seconds"),
    K(train.micro_batch, "train.micro_batch", "micro-batch", INT, "128", 1, S_INT_MAX, NULL,
      "samples per micro-batch m"),
    K(device.worker, "worker.device", "device", STR, "cpu", 0, 0, NULL,
      "worker's device: cpu, cuda or cuda:N"),
    K(device.eigensvc, "eigensvc.device", "eig-device", STR, "cpu", 0, 0, NULL,
      "eigen service's device: cpu, cuda or cuda:N"),
    K(device.worker_list, "worker.devices", "devices", LIST_INT, NULL, 0, 1023, NULL,
      "one worker on several GPUs of its node, e.g. [0, 1, 2, 3]: its share split over them, "
      "their gradients summed with NCCL before one push (null: worker.device)"),
    K(train.threads, "train.threads", "threads", INT, "1", 1, 1024, NULL,
      "math threads per worker (and of the eigen service)"),
    K(train.eval_every, "train.eval_every", "eval-every", INT, "1", 0, S_INT_MAX, NULL,
      "test evaluation every this many epochs (0: at the end)"),
    K(train.log_every, "train.log_every", "log-every", INT, "50", 1, S_INT_MAX, NULL,
      "steps between step events and log lines"),
    K(train.progress_s, "train.progress_s", "progress-s", FLOAT, "10", 0, 1e9, NULL,
      "seconds between progress lines"),
    K(train.seed, "train.seed", "seed", INT, "1", 0, 1e18, NULL,
      "seed of the initial weights, the data order and the Hessian batches"),
    K(output_dir, "output.dir", "output-dir", STR, NULL, 0, 0, NULL,
      "config.yaml, metrics.jsonl, checkpoints, weights.safetensors (null: none)"),
    K(output_tensorboard, "output.tensorboard", "tensorboard", BOOL, "true", 0, 0, NULL,
      "also write the metrics' numbers as TensorBoard scalars (events.out.tfevents.* beside "
      "metrics.jsonl)"),
    K(metrics_listen, "metrics.listen", "metrics-listen", STR, NULL, 0, 0, NULL,
      "the coordinator (shard 0) serves Prometheus metrics at http://HOST:PORT/metrics (null or "
      "empty: off)"),
    K(checkpoint.every_epochs, "checkpoint.every_epochs", "checkpoint-every", INT, "1", 0,
      S_INT_MAX, NULL, "checkpoint every this many epochs (0: off)"),
    K(checkpoint.every_steps, "checkpoint.every_steps", "checkpoint-every-steps", INT, "0", 0, 1e12,
      NULL, "also checkpoint within epochs, at every version that is a multiple (0: off)"),
    K(checkpoint.every_minutes, "checkpoint.every_minutes", "checkpoint-every-minutes", FLOAT, "0",
      0, 1e9, NULL, "also checkpoint within epochs this often, at a step shard 0 marks (0: off)"),
    K(checkpoint.keep, "checkpoint.keep", "checkpoint-keep", INT, "2", 1, S_INT_MAX, NULL,
      "complete checkpoints kept (the newest)"),
    K(fault.max_grad_norm, "fault.max_grad_norm", "max-grad-norm", FLOAT, NULL, 0, 1e30, NULL,
      "reject a push whose gradient slice on a shard has a larger L2 norm (null: no bound)"),
    K(fault.max_rejects, "fault.max_rejects", "max-rejects", INT, "3", 1, S_INT_MAX, NULL,
      "evict a worker after this many rejected pushes in a row"),
    K(fault.rollback, "fault.rollback", "rollback", BOOL, "false", 0, 0, NULL,
      "a non-finite loss or weight: restart every role from the newest complete checkpoint"),
    K(fault.max_rollbacks, "fault.max_rollbacks", "max-rollbacks", INT, "3", 0, S_INT_MAX, NULL,
      "rollbacks of one run at most"),
    K(security.key, "security.key", "security-key", STR, NULL, 0, 0, NULL,
      "this role's CURVE secret key file (null: no security)"),
    K(security.server_pub, "security.server_pub", "security-server-pub", STR, NULL, 0, 0, NULL,
      "servers' public key file (null: the key's own)"),
    K(security.allowed, "security.allowed", "security-allowed", LIST_STR, NULL, 0, 0, NULL,
      ".pub files or directories admitted (null: the key's own)"),
    L(shard, "shard", INT, "0", 0, APP_MAX_SHARDS - 1, "server: this shard's index"),
    L(bind, "bind", STR, NULL, 0, 0, "server: endpoint to bind"),
    L(coord, "coord", STR, NULL, 0, 0, "server: the coordinator's endpoint (shards > 0)"),
    L(connect, "connect", STR, NULL, 0, 0,
      "worker, eigensvc: shard endpoints, comma-separated, shard 0 first"),
    L(weight, "weight", FLOAT, "1", 1e-9, 1e9, "worker: this worker's share weight"),
    L(lead, "lead", BOOL, "true", 0, 0, "worker: print progress"),
    L(out, "out", STR, NULL, 0, 0, "final parameters then buffers as raw float32 (worker 0)"),
    L(resume, "resume", STR, NULL, 0, 0,
      "auto or a checkpoint directory: start every role from a checkpoint"),
    L(dir, "dir", STR, NULL, 0, 0, "launch over ipc: socket directory (default: a temporary one)"),
    L(eig_pub, "eig-pub", STR, NULL, 0, 0,
      "the eigen service's PUB endpoint for decisions (eigensvc binds it, workers subscribe)"),
    L(eig_query, "eig-query", STR, NULL, 0, 0,
      "the eigen service's current-decision endpoint (ROUTER)"),
    L(eig_metrics, "eig-metrics", STR, NULL, 0, 0, "the eigen service's metrics.jsonl"),
    L(poll_ms, "poll-ms", INT, "0", 0, S_INT_MAX,
      "eigen service: snapshot poll interval (0: default)"),
    L(name, "name", STR, NULL, 0, 0,
      "worker: its name in logs and status (default host:pid, with a random suffix as a "
      "container's pid 1)"),
};
const int app_opts_count = (int)(sizeof app_opts_table / sizeof app_opts_table[0]);

int app_opts_parse(int argc, char **argv, const char *usage, struct app_opts *o, rt_config_t **cfg)
{
    const char *cmd = argc > 0 ? argv[0] : "eigenbatch";
    memset(o, 0, sizeof *o);
    int rc = rt_opt_parse(app_opts_table, app_opts_count, o, argc, argv, cfg);
    if (rc == RT_OPT_HELP) {
        fputs(usage, stdout);
        fputs("\nOptions (flag, configuration key, environment variable; every role takes every "
              "one):\n  --config FILE  YAML configuration\n  --set KEY=VALUE  override one "
              "key\n",
              stdout);
        rt_opt_help(app_opts_table, app_opts_count, stdout);
        return RT_OPT_HELP;
    }
    if (!rc)
        rc = app_opts_check(o);
    if (rc) {
        fprintf(stderr, "eigenbatch %s: %s\n", cmd, rt_err_msg());
        rt_config_destroy(cfg);
        return 2;
    }
    return 0;
}

int app_opts_main(int argc, char **argv, const char *usage, app_opts_body_fn body)
{
    struct app_opts o;
    rt_config_t *cfg = NULL;
    int rc = app_opts_parse(argc, argv, usage, &o, &cfg);
    if (rc)
        return rc == RT_OPT_HELP ? 0 : 2;
    rt_metrics_set_tensorboard(o.output_tensorboard);
    if (app_opts_security(&o)) {
        fprintf(stderr, "eigenbatch %s: %s\n", argv[0], rt_err_msg());
        rc = 1;
    } else {
        rc = body(&o, cfg);
    }
    rt_config_destroy(&cfg);
    return rc;
}

int app_opts_check(const struct app_opts *o)
{
    const char *bad = NULL;
    if (o->model.params > 0 && o->model.params < o->cluster.shards)
        bad = "model.params (--params) must be at least cluster.shards";
    else if (o->model.params && o->model.buffers > o->model.params)
        bad = "model.buffers (--buffers) must be at most model.params";
    else if (o->cluster.worker_timeout_ms != 0 && o->cluster.worker_timeout_ms < APP_MIN_EVICT_MS)
        bad = "cluster.worker_timeout_ms (--worker-timeout-ms) must be 0 (never evict) or in "
              "100..2147483647";
    else if (o->local.resume && !*o->local.resume)
        bad = "--resume needs auto or a checkpoint directory";
    else if (strcmp(o->model.name, "synth") && !o->data.train)
        bad = "model.name: a zoo model needs data.train (--data, an LMDB dataset); 'synth' "
              "needs none";
    else if (o->metrics_listen && *o->metrics_listen && !strchr(o->metrics_listen, ':'))
        bad = "metrics.listen (--metrics-listen) is HOST:PORT, e.g. 127.0.0.1:9100 (empty: off)";
    else if (o->schedule.steps > 0 && strcasecmp(o->schedule.method, "BL"))
        bad = "schedule.steps (--steps) runs a constant schedule: it needs schedule.method BL";
    if (!bad && o->cluster.weights) {
        int k = 1;
        for (const char *p = o->cluster.weights; *p; p++)
            k += *p == ',';
        if (k != o->cluster.workers)
            bad = "cluster.weights (--weights): one positive number per worker";
    }
    if (bad)
        return rt_err_set(RT_ERR_CONFIG, "%s", bad);
    return RT_OK;
}

/* The integers of list option `key` (text, or NULL: *n = 0), at most max; `what` names them. */
static int s_int_list(const char *key, const char *text, const char *what, int32_t *out, int max,
                      int32_t *n)
{
    *n = 0;
    for (const char *p = text; p && *p;) {
        if (*n >= max)
            return rt_err_set(RT_ERR_CONFIG, "%s: more than %d %s", key, max, what);
        char *end;
        long e = strtol(p, &end, 10); /* the table checked the items */
        if (end == p || (*end && *end != ','))
            return rt_err_set(RT_ERR_CONFIG, "%s: bad list '%s'", key, text);
        out[(*n)++] = (int32_t)e;
        p = *end ? end + 1 : end;
    }
    return RT_OK;
}

int app_opts_decay_epochs(const struct app_opts *o, int32_t *out, int max, int32_t *n)
{
    return s_int_list("schedule.decay_epochs", o->schedule.decay_epochs, "epochs", out, max, n);
}

int app_opts_worker_devices(const struct app_opts *o, char (*names)[APP_DEVICE_NAME_MAX], int max,
                            int *n)
{
    int32_t idx[APP_MAX_DEVICES], count = 0;
    *n = 0;
    int rc = s_int_list("worker.devices", o->device.worker_list, "devices", idx,
                        max < APP_MAX_DEVICES ? max : APP_MAX_DEVICES, &count);
    if (rc)
        return rc;
    if (count == 0) {
        snprintf(names[0], APP_DEVICE_NAME_MAX, "%s", o->device.worker ? o->device.worker : "cpu");
        *n = 1;
        return RT_OK;
    }
    for (int i = 0; i < count; i++)
        for (int j = 0; j < i; j++)
            if (idx[i] == idx[j])
                return rt_err_set(RT_ERR_CONFIG, "worker.devices: device %d listed twice",
                                  (int)idx[i]);
    if (count > 1 && !nn_backend_have_nccl())
        return rt_err_set(RT_ERR_CONFIG,
                          "worker.devices lists %d devices, but this eigenbatch was built without "
                          "NCCL, which sums their gradients (list one device, or build with CUDA "
                          "and NCCL)",
                          (int)count);
    for (int i = 0; i < count; i++)
        snprintf(names[i], APP_DEVICE_NAME_MAX, "cuda:%d", (int)idx[i]);
    *n = count;
    return RT_OK;
}

int app_opts_needs_eigensvc(const struct app_opts *o)
{
    return !strncasecmp(o->schedule.method, "ABS", 3);
}

int app_opts_sync(const struct app_opts *o)
{
    return app_opts_needs_eigensvc(o) && !strcmp(o->abs.decisions, "sync");
}

int app_opts_balance_measured(const struct app_opts *o)
{
    return !strcmp(o->cluster.balance, "measured");
}

double app_opts_worker_weight(const struct app_opts *o, int i)
{
    const char *p = o->cluster.weights;
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

const char *app_opts_ckpt_root(const struct app_opts *o, char *buf, size_t cap)
{
    if (!o->output_dir || (o->checkpoint.every_epochs <= 0 && o->checkpoint.every_steps <= 0 &&
                           !(o->checkpoint.every_minutes > 0)))
        return NULL;
    if (snprintf(buf, cap, "%s/checkpoints", o->output_dir) >= (int)cap)
        return NULL;
    return buf;
}

int app_mkdirs(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return rt_err_set(RT_ERR_ARG, "directory name too long: %s", dir);
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

int app_opts_write_config(const struct app_opts *o, const rt_config_t *cfg)
{
    if (!o->output_dir)
        return RT_OK;
    char path[PATH_MAX];
    int rc = app_mkdirs(o->output_dir);
    if (!rc && snprintf(path, sizeof path, "%s/config.yaml", o->output_dir) >= (int)sizeof path)
        rc = rt_err_set(RT_ERR_ARG, "output directory name too long: %s", o->output_dir);
    if (!rc)
        rc = rt_config_dump(cfg, path);
    return rc;
}

int app_opts_security(const struct app_opts *o)
{
    int rc = rt_curve_configure(o->security.key, o->security.server_pub, o->security.allowed);
    if (!rc && o->security.key)
        RT_INFO("security", "CURVE on tcp/ipc endpoints with key %s", o->security.key);
    return rc;
}

int app_opts_resume(struct app_opts *o, char *buf, size_t cap)
{
    if (!o->local.resume)
        return RT_OK;
    int rc = rt_ckpt_resolve(o->output_dir, o->local.resume, buf, cap, NULL);
    if (rc)
        return rc;
    o->local.resume = buf[0] ? buf : NULL;
    return RT_OK;
}

int app_opts_checksum(const struct app_opts *o, enum rt_wire_checksum *out)
{
    const char *name = o->cluster.checksum;
    if (!strcmp(name, "none"))
        *out = RT_WIRE_CK_NONE;
    else if (!strcmp(name, "crc32"))
        *out = RT_WIRE_CK_CRC32;
    else if (!strcmp(name, "fletcher64"))
        *out = RT_WIRE_CK_FLETCHER64;
    else
        return rt_err_set(RT_ERR_ARG, "cluster.checksum: unknown checksum '%s'", name);
    return RT_OK;
}
