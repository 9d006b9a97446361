/*
 * app_opts: every option of eigenbatch, described once (app_opts_table, an rt_opt table) and read
 * by every role the same way: `train`, `launch`, `server`, `worker` and `eigensvc` take
 * `--config FILE`, the same `--set key=value` keys, the same flags and EB_* variables, so one
 * YAML file drives a whole deployment and every process resolves the same configuration.
 *
 * The options are grouped as the YAML file is, one struct per section; each role reads the
 * sections it needs (a server: cluster, schedule, checkpoint, security and its `local` part;
 * the eigen service: model, data, schedule, abs). `local` holds what differs between the
 * processes of one deployment (which shard this is, its endpoints, --resume): flags and
 * environment only, never part of the configuration.
 */
#ifndef APP_OPTS_H
#define APP_OPTS_H

#include <stdint.h>

#include "rt_config.h"
#include "rt_opt.h"
#include "rt_wire.h"

#define APP_MAX_SHARDS 256
#define APP_MAX_DEVICES 16 /* devices of one worker (worker.devices) at most */
#define APP_MAX_WORKERS 256
#define APP_MAX_LIST 8192     /* bytes of a comma-separated list option */
#define APP_MIN_EVICT_MS 100  /* shortest worker eviction timeout (heartbeats are a quarter) */
#define APP_SYNTH_PARAMS 1000 /* parameters of the synthetic model when model.params is 0 */

struct app_model_opts {
    const char *name; /* model.name: a zoo model (models.md) or "synth" */
    long classes;     /* model.classes */
    long params;      /* model.params: synth: its size; zoo: 0 or the net's count */
    long buffers;     /* model.buffers: synth: buffer floats; zoo: 0 or the net's */
};

/* The data section. Transforms are flat keys: data.size is the output of both; training takes
 * data.train_crop (pad: a random window of the image padded by crop_pad; random_resized:
 * RandomResizedCrop with train_scale and train_ratio) and data.flip; evaluation takes
 * data.eval_resize (Resize of the shorter side, then CenterCrop of data.size); both normalise
 * with data.mean and data.std when given. See README.md, "Data". */
struct app_data_opts {
    const char *train;       /* data.train: LMDB training set */
    const char *test;        /* data.test: LMDB test set, or NULL */
    const char *size;        /* data.size: output H,W or one side (NULL: the records') */
    long channels;           /* data.channels: 1 or 3 (0: the records') */
    const char *train_crop;  /* data.train_crop: pad or random_resized */
    long crop_pad;           /* data.crop_pad: random crop with this much padding */
    const char *train_scale; /* data.train_scale: random_resized area fraction lo,hi */
    const char *train_ratio; /* data.train_ratio: random_resized aspect ratio lo,hi */
    int flip;                /* data.flip: random horizontal flip */
    long eval_resize;        /* data.eval_resize: shorter side before the centre crop (0: none) */
    const char *mean;        /* data.mean: per-channel mean after /255 (NULL: no normalisation) */
    const char *std;         /* data.std: per-channel standard deviation after /255 */
    long loader_threads;     /* data.loader_threads: prefetch threads per worker */
    long prefetch;           /* data.prefetch: batches decoded ahead (the queue's bound) */
    long max_image_pixels;   /* data.max_image_pixels: largest JPEG accepted (bounds memory) */
    long skip_bad_records;   /* data.skip_bad_records: undecodable records tolerated */
    long samples;            /* data.samples: synth: epoch length (zoo: the dataset's) */
};

struct app_cluster_opts {
    long shards;                 /* cluster.shards */
    long workers;                /* cluster.workers */
    const char *transport;       /* cluster.transport: inproc, ipc or tcp */
    long port;                   /* cluster.port: tcp: first port (0: free ones) */
    const char *weights;         /* cluster.weights: share weight per worker, comma-separated */
    const char *balance;         /* cluster.balance: static (weights) or measured (speed) */
    const char *checksum;        /* cluster.checksum: none, crc32, fletcher64 */
    long chunk;                  /* cluster.chunk: floats per frame (0: default) */
    long timeout_ms;             /* cluster.timeout_ms: a client gives up after this silence */
    long worker_timeout_ms;      /* cluster.worker_timeout_ms: evict a silent worker (0: never) */
    long coordinator_timeout_ms; /* cluster.coordinator_timeout_ms: the coordinator gone or silent
                                    this long ends the other roles non-zero (0: never) */
    long max_restarts;           /* cluster.max_restarts: launch's respawns of failed workers */
};

struct app_schedule_opts {
    const char *method;       /* schedule.method: BL, FB, GG, ABS, ABSA */
    long batch;               /* schedule.batch: initial global batch */
    long base_batch;          /* schedule.base_batch: batch at which lr is given (0: batch) */
    double lr;                /* schedule.lr */
    double momentum;          /* schedule.momentum */
    double weight_decay;      /* schedule.weight_decay */
    long epochs;              /* schedule.epochs */
    const char *decay_epochs; /* schedule.decay_epochs: comma-separated, or NULL */
    double rho;               /* schedule.rho: decay factor */
    long warmup_epochs;       /* schedule.warmup_epochs: FB */
    long batch_max;           /* schedule.batch_max: GG, ABS, ABSA */
    double lr_cap;            /* schedule.lr_cap: bound on the base lr (0: none) */
    long steps;               /* schedule.steps: > 0: that many steps at constant B and lr */
};

struct app_abs_opts {
    double alpha;          /* abs.alpha: grow when lambda <= lambda_ref / alpha */
    double beta;           /* abs.beta: growth factor */
    long kappa;            /* abs.kappa: grow after kappa epochs without one */
    double gamma;          /* abs.gamma: ABSA initial adversarial fraction */
    double epsilon;        /* abs.epsilon: FGSM step */
    double omega;          /* abs.omega: gamma /= omega at every growth */
    long tau;              /* abs.tau: no adversarial samples from this epoch (-1: E/2) */
    long block_last_k;     /* abs.block_last_k: 0 full Hessian, K the last K layers */
    const char *bn;        /* abs.bn: eval or train */
    const char *preset;    /* abs.preset: paper or accurate */
    const char *method;    /* abs.method: power or lanczos */
    const char *decisions; /* abs.decisions: async or sync */
    long hessian_batch;    /* abs.hessian_batch */
    double sync_timeout_s; /* abs.sync_timeout_s: sync: longest wait for a decision */
};

struct app_train_opts {
    long micro_batch;  /* train.micro_batch */
    long threads;      /* train.threads: math threads per worker (and the eigen service) */
    long eval_every;   /* train.eval_every: epochs between test evaluations (0: at the end) */
    long log_every;    /* train.log_every: steps between step events */
    double progress_s; /* train.progress_s: seconds between progress lines */
    long seed;         /* train.seed */
};

/* Devices of the compute roles (nn_backend.h): cpu, cuda or cuda:N. */
struct app_device_opts {
    const char *worker;      /* worker.device */
    const char *eigensvc;    /* eigensvc.device */
    const char *worker_list; /* worker.devices: CUDA indices, comma-separated, or NULL */
};

struct app_checkpoint_opts {
    long every_epochs;    /* checkpoint.every_epochs (0: off) */
    long every_steps;     /* checkpoint.every_steps: also within epochs (0: off) */
    double every_minutes; /* checkpoint.every_minutes: also within epochs by time (0: off) */
    long keep;            /* checkpoint.keep */
};

struct app_fault_opts {
    double max_grad_norm; /* fault.max_grad_norm: bound on a push's slice norm (NaN: none) */
    long max_rejects;     /* fault.max_rejects: rejected pushes in a row before eviction */
    int rollback;         /* fault.rollback: restart from the newest checkpoint on non-finite */
    long max_rollbacks;   /* fault.max_rollbacks */
};

struct app_security_opts {
    const char *key;        /* security.key: this role's CURVE secret key file */
    const char *server_pub; /* security.server_pub: the servers' public key file */
    const char *allowed;    /* security.allowed: admitted .pub files/directories */
};

/* Per-process options: flags and environment only. */
struct app_local_opts {
    long shard;              /* --shard: this shard's index */
    const char *bind;        /* --bind: this shard's endpoint */
    const char *coord;       /* --coord: the coordinator's endpoint (shards > 0) */
    const char *connect;     /* --connect: shard endpoints, shard 0 first */
    double weight;           /* --weight: this worker's share weight */
    int lead;                /* --lead: this worker prints progress */
    const char *out;         /* --out: raw float32 final weights */
    const char *resume;      /* --resume auto|PATH */
    const char *dir;         /* --dir: launch over ipc: socket directory */
    const char *eig_pub;     /* --eig-pub: the eigen service's PUB endpoint */
    const char *eig_query;   /* --eig-query: its current-decision endpoint */
    const char *eig_metrics; /* --eig-metrics: its metrics.jsonl */
    long poll_ms;            /* --poll-ms: the eigen service's snapshot poll interval */
    const char *name;        /* --name: the worker's name in logs and status (NULL: host:pid) */
};

/* Every option, by section. */
struct app_opts {
    struct app_model_opts model;
    struct app_data_opts data;
    struct app_cluster_opts cluster;
    struct app_schedule_opts schedule;
    struct app_abs_opts abs;
    struct app_train_opts train;
    struct app_device_opts device;
    const char *output_dir;     /* output.dir: config.yaml, metrics.jsonl, checkpoints, weights */
    int output_tensorboard;     /* output.tensorboard: TensorBoard scalars beside metrics.jsonl */
    const char *metrics_listen; /* metrics.listen: the coordinator's Prometheus endpoint,
                                   HOST:PORT (NULL or "": none) */
    struct app_checkpoint_opts checkpoint;
    struct app_fault_opts fault;
    struct app_security_opts security;
    struct app_local_opts local;
};

extern const struct rt_opt app_opts_table[];
extern const int app_opts_count;

/* Parse a command's argv (argv[0] the command name) into *o: app_opts_table's defaults,
 * --config, environment, --set and flags, then app_opts_check. *cfg receives the resolved
 * configuration (caller owns it; strings of *o point into it and into argv). Returns 0,
 * RT_OPT_HELP (after printing usage and the table to stdout), or 2 after printing the problem
 * (naming the file:line, flag or variable) to stderr. */
int app_opts_parse(int argc, char **argv, const char *usage, struct app_opts *o, rt_config_t **cfg);

/* The body of a role command: the parsed options and the resolved configuration (borrowed);
 * returns the exit status. */
typedef int (*app_opts_body_fn)(struct app_opts *o, rt_config_t *cfg);

/* A role command's entry: app_opts_parse (usage for --help: exit 0; a bad option: 2), the
 * security settings (app_opts_security: 1 when they fail), then body. Returns the exit status. */
int app_opts_main(int argc, char **argv, const char *usage, app_opts_body_fn body);

/* Cross-option checks (the table checks each value alone). Returns 0 or RT_ERR_CONFIG. */
int app_opts_check(const struct app_opts *o);

/* schedule.decay_epochs as integers into out (at most max). Returns 0 or RT_ERR_CONFIG. */
int app_opts_decay_epochs(const struct app_opts *o, int32_t *out, int max, int32_t *n);

/* 1 when the method needs the eigen service (ABS, ABSA). */
int app_opts_needs_eigensvc(const struct app_opts *o);

/* The worker's devices: worker.devices (CUDA indices, distinct) when set, else worker.device
 * alone. Fills out[0..*n) with device strings ("cpu", "cuda:N"), each written into its own
 * APP_DEVICE_NAME_MAX bytes of names. Returns RT_OK, or RT_ERR_CONFIG with one line naming the
 * problem: more than max devices, a repeated index, or several devices in a build without NCCL
 * (nn_backend_have_nccl). */
#define APP_DEVICE_NAME_MAX 16
int app_opts_worker_devices(const struct app_opts *o, char (*names)[APP_DEVICE_NAME_MAX], int max,
                            int *n);

/* 1 under abs.decisions sync with ABS/ABSA. */
int app_opts_sync(const struct app_opts *o);

/* 1 under cluster.balance measured: workers report their speed with each schedule query and the
 * coordinator sets the shares in proportion (cluster.weights are the initial shares). */
int app_opts_balance_measured(const struct app_opts *o);

/* Share weight of worker i from cluster.weights (1 when unset or shorter). */
double app_opts_worker_weight(const struct app_opts *o, int i);

/* The checkpoint root, OUTPUT/checkpoints, into buf; NULL when checkpoints are off. */
const char *app_opts_ckpt_root(const struct app_opts *o, char *buf, size_t cap);

/* Write cfg as OUTPUT/config.yaml (creating the directory); no-op without an output directory.
 * Returns 0 or an rt_err code naming the path. */
int app_opts_write_config(const struct app_opts *o, const rt_config_t *cfg);

/* Configure CURVE security from security.* (rt_curve_configure). Returns 0 or an rt_err code. */
int app_opts_security(const struct app_opts *o);

/* Resolve --resume in place (rt_ckpt_resolve under the output directory): afterwards
 * local.resume is the checkpoint directory to start from, or NULL for a fresh start (`auto`
 * without a complete checkpoint). buf (cap bytes) holds the path. Returns 0 or an rt_err code. */
int app_opts_resume(struct app_opts *o, char *buf, size_t cap);

/* The frame checksum cluster.checksum names. Returns 0 or RT_ERR_ARG. */
int app_opts_checksum(const struct app_opts *o, enum rt_wire_checksum *out);

/* Create dir and its parents (mkdir -p). Returns 0 or RT_ERR_IO naming it. */
int app_mkdirs(const char *dir);

#endif
