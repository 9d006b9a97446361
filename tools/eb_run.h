/*
 * eb_run: the options of a training run, shared by `eigenbatch train`, `launch`, `server` and
 * `worker`, and the zoo-model side of a worker (loader, net, metrics, progress, test evaluation).
 *
 * Options come, in increasing priority, from the defaults, a YAML configuration (`--config FILE`
 * with `--set key=value` overrides, checked against eb_run_schema), the environment (EB_<FLAG>)
 * and flags. The configuration is mapped onto the same flags (`schedule.lr` is `--lr`), so the
 * YAML path and the flag path are one code path: `launch` hands the resolved values on to its
 * `server` and `worker` processes as flags.
 */
#ifndef EB_RUN_H
#define EB_RUN_H

#include <stdint.h>

#include "eigensvc.h"
#include "nn_net.h"
#include "rt_config.h"
#include "rt_loader.h"
#include "rt_metrics.h"
#include "rt_wire.h"
#include "server_coord.h"
#include "server_sched.h"
#include "worker_feed.h"
#include "worker_loop.h"
#include "worker_nn.h"

#define EB_RUN_MAX_SHARDS 256
#define EB_RUN_MAX_WORKERS 256
#define EB_RUN_MAX_LIST 8192 /* bytes of a comma-separated list option */
#define EB_RUN_MIN_EVICT_MS 100 /* shortest worker eviction timeout (heartbeats are a quarter) */

/* Options of a run (one struct for every role; each role reads what it needs). */
struct eb_opts {
    long shard;             /* --shard: this shard's index */
    long shards;            /* --shards */
    long workers;           /* --workers */
    long params;            /* --params: flat parameter count of the model */
    long buffers;           /* --buffers: flat buffer count */
    long batch;             /* --batch: global batch */
    long base_batch;        /* --base-batch: batch at which --lr is given (0: --batch) */
    long steps;             /* --steps (no --method: constant schedule) */
    long samples;           /* --samples: training-set size (epoch length) */
    long seed;              /* --seed */
    long port;              /* --port: tcp: first port (0: free ones) */
    long chunk;             /* --chunk: floats per frame */
    long timeout_ms;        /* --timeout-ms: worker gives up when the shards are silent this long */
    long evict_ms;          /* --worker-timeout-ms: the coordinator evicts a worker silent this
                               long (0: never) */
    double lr;              /* --lr */
    double momentum;        /* --momentum */
    double wd;              /* --weight-decay */
    double weight;          /* --weight: this worker's share weight */
    const char *weights;    /* --weights: launch/train: comma-separated share weight per worker */
    const char *bind;       /* --bind: shard endpoint to bind */
    const char *coord;      /* --coord: coordinator endpoint (shards > 0) */
    const char *connect;    /* --connect: comma-separated shard endpoints, shard 0 first */
    const char *transport;  /* --transport: ipc, tcp or inproc */
    const char *dir;        /* --dir: launch over ipc: socket directory (default: a temp dir) */
    const char *out;        /* --out: worker: write final params then buffers (float32) here */
    const char *output_dir; /* --output-dir: metrics.jsonl, weights.safetensors (worker 0) */
    const char *model;      /* --model: "synth" or a zoo model (then --data is required) */
    const char *data;       /* --data: LMDB training set (zoo models) */
    const char *test;       /* --test: LMDB test set for evaluation (zoo models), or NULL */
    long classes;           /* --classes: zoo models */
    long micro;             /* --micro-batch: zoo models */
    long threads;           /* --threads: math threads of a worker */
    long loader_threads;    /* --loader-threads: prefetch threads of a worker's loader */
    long crop_pad;          /* --crop-pad: training augmentation, pixels of padding per side */
    long flip;              /* --flip: training augmentation, 0 or 1 */
    long log_every;         /* --log-every: worker 0 logs and records every this many steps */
    long eval_every;        /* --eval-every: test evaluation every this many epochs (0: end) */
    double progress_s;      /* --progress-s: seconds between progress lines */
    const char *method;     /* --method: BL, FB, GG, ABS, ABSA (server_sched); unset: constant */
    long epochs;            /* --epochs: with --method */
    const char *decay;      /* --decay-epochs: comma-separated epochs, with --method */
    double rho;             /* --rho: decay factor, with --method */
    long warmup;            /* --warmup-epochs: FB */
    long batch_max;         /* --batch-max: GG/ABS */
    double lr_cap;          /* --lr-cap: bound on the base learning rate (0: none) */
    double gamma;           /* --gamma: ABSA initial adversarial fraction */
    double epsilon;         /* --epsilon: ABSA FGSM step */
    long tau;               /* --tau: ABSA: no adversarial samples from this epoch on (-1: E/2) */
    const char *checksum;   /* --checksum: none, crc32, fletcher64 */
    long lead;              /* --lead: 1: this worker process prints progress (launch: first) */
    long sync;              /* --sync: `decisions: sync` (ABS/ABSA): epoch starts wait for the
                               eigen service's decision */
    long kappa;             /* --kappa: the eigen service's ABS timer (epochs) */
    long hessian_batch;     /* --hessian-batch: samples of the eigen service's batch */
    double alpha;           /* --alpha: ABS trigger lambda <= lambda_ref / alpha */
    double beta;            /* --beta: ABS batch growth factor */
    double omega;           /* --omega: ABSA: gamma /= omega at every increase */
    long block_last_k;      /* --block-last-k: 0: full Hessian; K: the last K parameter layers */
    const char *bn;         /* --bn: BatchNorm mode of the Hessian: eval or train */
    const char *preset;     /* --preset: power iteration: paper or accurate */
    double sync_timeout_s;  /* --sync-timeout-s: `decisions: sync`: longest wait of an epoch
                               start for its decision, seconds (> 0) */
    const char *eig_pub;    /* --eig-pub: launch: the eigen service's PUB endpoint */
    const char *eig_query;  /* --eig-query: launch: its current-decision endpoint (ROUTER) */
    const char *eig_metrics; /* --eig-metrics: launch: the eigen service's metrics.jsonl */
    long ckpt_every;         /* --checkpoint-every: checkpoint every this many epochs (0: off) */
    long ckpt_keep;          /* --checkpoint-keep: complete checkpoints kept */
    const char *resume;      /* --resume auto|PATH: start from a checkpoint (server_ckpt.h); the
                                launcher hands its roles the resolved PATH */
    const char *sec_key;        /* --security-key: this role's CURVE secret key file (NULL: off) */
    const char *sec_server_pub; /* --security-server-pub: servers' public key file (NULL: own) */
    const char *sec_allowed;    /* --security-allowed: comma-separated .pub files/directories */
};

/* The configuration schema of a run (model, data, cluster, schedule, abs, train, output). */
extern const struct rt_config_key eb_run_schema[];
extern const int eb_run_schema_len;

/* Parse the options of sub-command cmd: defaults, then `--config FILE` (with `--set key=value`,
 * validated against eb_run_schema), then the environment, then the other flags. When a
 * configuration was given, *cfg_out receives it (caller owns it; free with rt_config_destroy;
 * option strings may point into it), else NULL. Returns 0, or 2 after printing a usage error
 * (unknown flag, bad value, a configuration error naming file:line). *help is set for --help. */
int eb_opts_parse(const char *cmd, int argc, char **argv, struct eb_opts *o, int *help,
                  rt_config_t **cfg_out);

/* The body of a sub-command that takes these options: receives the parsed options and the
 * configuration (may be NULL; borrowed) and returns the exit status. */
typedef int (*eb_opts_body_fn)(const struct eb_opts *o, const rt_config_t *cfg);

/* Entry point shared by train, launch, server and worker: parse (eb_opts_parse), print usage for
 * --help, run body, free the configuration. Returns the exit status (2 for a usage error). */
int eb_opts_main(const char *cmd, int argc, char **argv, const char *usage, eb_opts_body_fn body);

/* Configure CURVE security (rt_curve_configure) from the security.* options, and export them as
 * EB_SECURITY_KEY, EB_SECURITY_SERVER_PUB and EB_SECURITY_ALLOWED so that processes started from
 * this one (launch's roles, the eigen service) use the same. eb_opts_main calls it before the
 * body. Prints the problem (naming the file or key) and returns 1, else 0. */
int eb_opts_security(const char *cmd, const struct eb_opts *o);

/* Check ranges and combinations; prints the problem and returns 2, else 0. */
int eb_opts_check(const char *cmd, struct eb_opts *o);

/* The schedule of shard 0: server_sched from the method (BL/FB/GG/ABS/ABSA), else a constant one
 * for --steps steps. *owned receives the server_sched to destroy (may stay NULL). Returns 0 or a
 * negative rt_err code. Free with eb_opts_schedule_free. */
int eb_opts_schedule(const struct eb_opts *o, struct server_coord_sched *out,
                     server_sched_t **owned);
void eb_opts_schedule_free(struct server_coord_sched *s, server_sched_t **owned);

/* Checksum by name ("none", "crc32", "fletcher64"); 0 or RT_ERR_ARG. */
int eb_opts_checksum(const char *name, enum rt_wire_checksum *out);

/* Share weight of worker i from --weights (1 when unset or shorter). */
double eb_opts_worker_weight(const struct eb_opts *o, int i);

/* 1 when the method needs the eigen service (ABS, ABSA). */
int eb_opts_needs_eigensvc(const struct eb_opts *o);

/* The eigen service's settings from the run's options (every abs.* key, the schedule it must agree
 * with, the model and the training set): the one place `train` (a thread) and `launch` (the
 * `eigenbatch eigensvc` process, through eb_run_eig_args) take them from. Fills ec's model,
 * classes, train_db, hessian_batch, seed, block_last_k, bn, power, abs, sync and epochs and zeroes
 * the rest (endpoints, context, metrics, timeouts: the caller's). Strings borrow from o. Returns 0
 * or a negative rt_err code naming the option. */
int eb_run_eig_cfg(const struct eb_opts *o, struct eigensvc_cfg *ec);

#define EB_RUN_EIG_MAX_ARGS 64 /* flags and values of eb_run_eig_args */
#define EB_RUN_EIG_ARG_LEN 400 /* bytes of one value */

/* Flags of `eigenbatch eigensvc` that give the process the settings eb_run_eig_cfg computes
 * (eb_eigensvc_parse of them yields the same configuration). */
struct eb_run_eig_args {
    int argc;                                           /* entries of argv used */
    char *argv[EB_RUN_EIG_MAX_ARGS + 1];                /* the flags, NULL-terminated */
    char text[EB_RUN_EIG_MAX_ARGS][EB_RUN_EIG_ARG_LEN]; /* storage of the values */
};

/* Fill *a from o (strings may also borrow from o). Returns 0 or a negative rt_err code. */
int eb_run_eig_args(const struct eb_opts *o, struct eb_run_eig_args *a);

/* The zoo-model side of one worker: its loader and feed, the net and its compute; worker 0 also
 * records metrics (metrics.jsonl), prints progress and evaluates the test set. */
struct eb_run_eval;

struct eb_run_nn {
    rt_loader_t *loader;     /* the training set */
    struct worker_feed feed; /* micro-batches from the loader */
    nn_net_t *net;           /* the model */
    worker_nn_t *nn;         /* its compute */
    const struct eb_opts *o; /* the options (borrowed) */
    struct eb_run_eval *ev;  /* worker 0 with a test set: the evaluation thread and its net */
    rt_metrics_t *metrics;   /* worker 0 with an output directory: metrics.jsonl */
    rt_progress_t *progress; /* worker 0: the progress line */
    double t0;               /* time of the first step */
    double epoch_t0;         /* time the current epoch started */
    int64_t epoch;           /* epoch of the last step seen (-1 before the first) */
    uint64_t done_samples;   /* global samples of every step so far */
    uint64_t skip_samples;   /* samples of the epochs before the checkpoint a run resumed from */
    uint64_t epoch_samples;  /* global samples of this epoch's steps */
    uint64_t tot_samples;    /* samples of this epoch over every worker (coordinator totals) */
    uint64_t tot_correct;    /* ... correctly classified */
    double tot_loss;         /* ... summed loss */
    struct worker_step last; /* the last step seen */
    int worker_id;           /* id the coordinator gave this worker (-1: not known yet) */
    double eval_seconds;     /* time spent in test evaluation (on the evaluation thread) */
    double test_accuracy;    /* the last evaluation's accuracy (NaN: none yet) */
    double test_loss;        /* ... and mean loss */
    int rc;                  /* first error of a callback that cannot return one */
};

/* Resolve o->resume in place (server_ckpt_resolve under o->output_dir): afterwards it is the
 * checkpoint directory to start from, or NULL for a fresh start (`auto` without a complete
 * checkpoint). buf (cap bytes) holds the path. Returns 0 or a negative rt_err code naming the
 * checkpoint. */
int eb_opts_resume(struct eb_opts *o, char *buf, size_t cap);

/* The checkpoint root of a run, OUTPUT/checkpoints, into buf; NULL when checkpoints are off
 * (no output directory or --checkpoint-every 0), else buf. */
const char *eb_opts_ckpt_root(const struct eb_opts *o, char *buf, size_t cap);

/* Create the output directory dir and its parents (mkdir -p). Returns 0 or RT_ERR_IO naming it. */
int eb_run_output_dir(const char *dir);

/* Open the training set and build the net; with `compute`, also the compute (worker_nn) and, for
 * worker 0 (`lead`), the test set, metrics.jsonl under o->output_dir (appended to, after a
 * "resume" event, when o->resume names a checkpoint) and the progress line.
 * Returns 0 or a negative rt_err code; close with eb_run_nn_close either way. */
int eb_run_nn_open(const struct eb_opts *o, struct eb_run_nn *n, int compute, int lead);
void eb_run_nn_close(struct eb_run_nn *n);

/* The worker callbacks (user = n): init, compute, step_done (metrics, progress) and finish (the
 * last epoch's event, weights.safetensors under o->output_dir, o->out). The final weights are
 * written once per run, by the worker with id 0 (the coordinator's numbering, not --lead): every
 * worker ends holding the same final version pulled from every shard, and the others write
 * neither file, so workers may share an output directory. At each epoch end, worker
 * 0 copies the weights into a second net that a thread of its own evaluates on the test set while
 * training goes on (every eval_every epochs, and always at the end); the epoch's event is written
 * when its evaluation is done (test_accuracy null when not evaluated). test_accuracy, test_loss
 * and eval_seconds are final once eb_run_nn_close or finish has run. */
struct worker_compute eb_run_nn_compute(struct eb_run_nn *n);

/* Mean loss and accuracy of net (BatchNorm in eval mode) over every record of test in key order,
 * micro-batches of nn_net_max_batch(net) into x (that many samples) and y. Returns 0 or a negative
 * rt_err code. */
int eb_run_evaluate(nn_net_t *net, rt_loader_t *test, float *x, int32_t *y, double *accuracy,
                    double *loss, uint64_t *n);

#endif
