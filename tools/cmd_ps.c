/*
 * cmd_ps: the parameter-server role commands.
 *   eigenbatch server   one shard (shard 0 is also the coordinator)
 *   eigenbatch worker   one worker
 *   eigenbatch launch   S shards and W workers as processes of this machine (fork/exec of this
 *                       binary) over ipc:// or tcp://
 * Every option can also come from the environment (EB_SHARD, EB_SHARDS, EB_WORKERS, EB_BIND,
 * EB_COORD, EB_CONNECT, ...: the option's name in upper case with '-' as '_', prefixed EB_), for
 * docker-compose and clusters; a flag wins over the environment.
 *
 * The model is the synthetic least-squares model (worker_synth) until the NN core and the loader
 * are wired in through struct worker_compute; shards do not need the model, only its sizes.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eb_cli.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "server_cluster.h"
#include "server_fixsched.h"
#include "server_sched.h"
#include "server_shard.h"
#include "worker_loop.h"
#include "worker_feed.h"
#include "worker_nn.h"
#include "worker_synth.h"

#define S_MAX_SHARDS 256
#define S_MAX_WORKERS 256
#define S_MAX_LIST 8192     /* bytes of a comma-separated endpoint list */
#define S_SYNTH_PARAMS 1000 /* default size of the synthetic model */
#define S_MAX_ARGS 64       /* arguments of a spawned role */

/* Options shared by the three commands. */
struct s_opts {
    long shard;            /* --shard: this shard's index */
    long shards;           /* --shards */
    long workers;          /* --workers */
    long params;           /* --params: flat parameter count of the model */
    long buffers;          /* --buffers: flat buffer count */
    long batch;            /* --batch: global batch */
    long steps;            /* --steps */
    long samples;          /* --samples: training-set size (epoch length) */
    long seed;             /* --seed */
    long port;             /* --port: launch over tcp: first port (0: free ones) */
    long chunk;            /* --chunk: floats per frame */
    long timeout_ms;       /* --timeout-ms: worker gives up when the shards are silent this long */
    double lr;             /* --lr */
    double momentum;       /* --momentum */
    double wd;             /* --weight-decay */
    double weight;         /* --weight: this worker's share weight */
    const char *bind;      /* --bind: shard endpoint to bind */
    const char *coord;     /* --coord: coordinator endpoint (shards > 0) */
    const char *connect;   /* --connect: comma-separated shard endpoints, shard 0 first */
    const char *transport; /* --transport: launch: ipc or tcp */
    const char *dir;       /* --dir: launch over ipc: socket directory (default: a temp dir) */
    const char *out;       /* --out: worker: write final params then buffers (float32) here */
    const char *model;     /* --model: "synth" or a zoo model (then --data is required) */
    const char *data;      /* --data: LMDB dataset directory (zoo models) */
    long classes;          /* --classes: zoo models */
    long micro;            /* --micro-batch: zoo models */
    long threads;          /* --threads: math threads of a worker */
    long loader_threads;   /* --loader-threads: prefetch threads of a worker's loader */
    long crop_pad;         /* --crop-pad: training augmentation, pixels of padding per side */
    long flip;             /* --flip: training augmentation, 0 or 1 */
    long log_every;        /* --log-every: worker 0 logs the loss every this many steps */
    const char *method;    /* --method: BL, FB, GG, ABS, ABSA (server_sched); unset: constant */
    long epochs;           /* --epochs: with --method */
    const char *decay;     /* --decay-epochs: comma-separated epochs, with --method */
    double rho;            /* --rho: decay factor, with --method */
    long warmup;           /* --warmup-epochs: FB */
    long batch_max;        /* --batch-max: GG/ABS */
    const char *checksum;  /* --checksum: none, crc32, fletcher64 */
    long sync;             /* --sync: `decisions: sync` (ABS/ABSA): epoch starts wait for the
                              eigen service's decision */
    long kappa;            /* --kappa: launch: the eigen service's ABS timer (epochs) */
    long hessian_batch;    /* --hessian-batch: launch: samples of the eigen service's batch */
    const char *eig_pub;   /* --eig-pub: launch: the eigen service's PUB endpoint */
    const char *eig_query; /* --eig-query: launch: its current-decision endpoint (ROUTER) */
    const char *eig_metrics; /* --eig-metrics: launch: the eigen service's metrics.jsonl */
};

enum s_kind { S_INT, S_DBL, S_STR };

struct s_optdef {
    const char *name; /* without the leading "--" */
    enum s_kind kind; /* value type */
    size_t off;       /* offset in struct s_opts */
};

#define S_O(name, kind, field)                                                                     \
    {                                                                                              \
        name, kind, offsetof(struct s_opts, field)                                                 \
    }
static const struct s_optdef s_defs[] = {
    S_O("shard", S_INT, shard),
    S_O("shards", S_INT, shards),
    S_O("workers", S_INT, workers),
    S_O("params", S_INT, params),
    S_O("buffers", S_INT, buffers),
    S_O("batch", S_INT, batch),
    S_O("steps", S_INT, steps),
    S_O("samples", S_INT, samples),
    S_O("seed", S_INT, seed),
    S_O("port", S_INT, port),
    S_O("chunk", S_INT, chunk),
    S_O("timeout-ms", S_INT, timeout_ms),
    S_O("lr", S_DBL, lr),
    S_O("momentum", S_DBL, momentum),
    S_O("weight-decay", S_DBL, wd),
    S_O("weight", S_DBL, weight),
    S_O("bind", S_STR, bind),
    S_O("coord", S_STR, coord),
    S_O("connect", S_STR, connect),
    S_O("transport", S_STR, transport),
    S_O("dir", S_STR, dir),
    S_O("out", S_STR, out),
    S_O("model", S_STR, model),
    S_O("checksum", S_STR, checksum),
    S_O("data", S_STR, data),
    S_O("classes", S_INT, classes),
    S_O("micro-batch", S_INT, micro),
    S_O("threads", S_INT, threads),
    S_O("loader-threads", S_INT, loader_threads),
    S_O("crop-pad", S_INT, crop_pad),
    S_O("flip", S_INT, flip),
    S_O("log-every", S_INT, log_every),
    S_O("method", S_STR, method),
    S_O("epochs", S_INT, epochs),
    S_O("decay-epochs", S_STR, decay),
    S_O("rho", S_DBL, rho),
    S_O("warmup-epochs", S_INT, warmup),
    S_O("batch-max", S_INT, batch_max),
    S_O("sync", S_INT, sync),
    S_O("kappa", S_INT, kappa),
    S_O("hessian-batch", S_INT, hessian_batch),
    S_O("eig-pub", S_STR, eig_pub),
    S_O("eig-query", S_STR, eig_query),
    S_O("eig-metrics", S_STR, eig_metrics),
};
#define S_NDEFS (sizeof s_defs / sizeof s_defs[0])

static void s_defaults(struct s_opts *o)
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
    o->rho = 0.1;
    o->kappa = 10;
    o->hessian_batch = 128;
}

/* The schedule of a shard: server_sched from --method (BL/FB/GG/ABS/ABSA, --epochs,
 * --decay-epochs, --rho, --warmup-epochs, --batch-max), else a constant one for --steps steps.
 * *owned receives the server_sched to destroy (may stay NULL). */
static int s_schedule(const struct s_opts *o, struct server_coord_sched *out,
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
    c.base_batch = o->batch;
    if (o->batch_max > 0)
        c.batch_max = o->batch_max;
    if (c.batch_max < c.batch)
        c.batch_max = c.batch;
    c.micro_batch = (int32_t)o->micro;
    c.lr = o->lr;
    c.momentum = o->momentum;
    c.weight_decay = o->wd;
    c.rho = o->rho;
    c.warmup_epochs = (int32_t)o->warmup;
    c.n_decay = 0;
    if (o->decay) {
        char list[S_MAX_LIST];
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

/* Free what s_schedule made. */
static void s_schedule_free(struct server_coord_sched *s, server_sched_t **owned)
{
    if (*owned)
        server_sched_destroy(owned);
    else
        server_fixsched_destroy(s);
}

static int s_set(const char *cmd, const struct s_optdef *d, struct s_opts *o, const char *val)
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

/* Environment first (EB_<NAME>), then flags. Returns 0, or 2 (usage error). */
static int s_parse(const char *cmd, int argc, char **argv, struct s_opts *o, int *help)
{
    s_defaults(o);
    *help = 0;
    for (size_t i = 0; i < S_NDEFS; i++) {
        char env[64] = "EB_";
        size_t k = 3;
        for (const char *c = s_defs[i].name; *c && k + 1 < sizeof env; c++)
            env[k++] = *c == '-' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
        env[k] = '\0';
        const char *v = getenv(env);
        if (v && s_set(cmd, &s_defs[i], o, v))
            return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            *help = 1;
            return 0;
        }
        const struct s_optdef *d = NULL;
        for (size_t k = 0; k < S_NDEFS; k++)
            if (!strncmp(argv[i], "--", 2) && !strcmp(argv[i] + 2, s_defs[k].name))
                d = &s_defs[k];
        if (!d) {
            fprintf(stderr, "eigenbatch %s: unknown option '%s'\n", cmd, argv[i]);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "eigenbatch %s: %s needs a value\n", cmd, argv[i]);
            return 2;
        }
        if (s_set(cmd, d, o, argv[++i]))
            return 2;
    }
    return 0;
}

static int s_check(const char *cmd, struct s_opts *o)
{
    const char *bad = NULL;
    if (!strcmp(o->model, "synth") && o->params == 0)
        o->params = S_SYNTH_PARAMS;
    if (o->shards < 1 || o->shards > S_MAX_SHARDS)
        bad = "--shards must be in 1..256";
    else if (o->workers < 1 || o->workers > S_MAX_WORKERS)
        bad = "--workers must be in 1..256";
    else if (o->params < 0 || (o->params > 0 && o->params < o->shards))
        bad = "--params must be at least --shards";
    else if (o->buffers < 0 || o->buffers > o->params)
        bad = "--buffers must be in 0..params";
    else if (o->batch < 1 || o->batch > UINT32_MAX)
        bad = "--batch must be positive";
    else if (o->steps < 0 || o->samples < 1)
        bad = "--steps must be >= 0 and --samples positive";
    else if (o->timeout_ms < 0 || o->timeout_ms > INT_MAX)
        bad = "--timeout-ms out of range";
    else if (o->chunk < 0 || o->chunk > UINT32_MAX)
        bad = "--chunk out of range";
    else if (strcmp(o->model, "synth") && !o->data)
        bad = "--model: a zoo model needs --data (an LMDB dataset); 'synth' needs none";
    else if (o->classes < 2 || o->micro < 1 || o->threads < 1 || o->loader_threads < 0 ||
             o->crop_pad < 0 || o->log_every < 1)
        bad = "--classes >= 2, --micro-batch, --threads, --log-every >= 1, --loader-threads and "
              "--crop-pad >= 0";
    if (bad) {
        fprintf(stderr, "eigenbatch %s: %s\n", cmd, bad);
        return 2;
    }
    return 0;
}

static int s_checksum(const char *name, enum rt_wire_checksum *out)
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

static atomic_int s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    atomic_store(&s_stop, 1);
}

static void s_trap_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---- server ---------------------------------------------------------------------------------- */

static const char s_server_usage[] =
    "usage: eigenbatch server --shard I --shards S --workers W --bind ENDPOINT\n"
    "                         [--coord ENDPOINT (shards > 0)] --params N [--buffers N]\n"
    "                         [--batch B --lr LR --steps T --samples N (shard 0)]\n"
    "                         [--momentum M] [--weight-decay WD] [--checksum KIND]\n"
    "                         [--method BL|FB|GG|ABS|ABSA --epochs E [--decay-epochs e1,e2]\n"
    "                          [--rho R] [--warmup-epochs N] [--batch-max B]]\n"
    "Runs one parameter-server shard; shard 0 is also the coordinator and holds the schedule:\n"
    "with --method the BL/FB/GG/ABS schedule of server_sched, else a constant one for --steps.\n"
    "Options may also come\n"
    "from the environment (EB_SHARD, EB_BIND, ...).\n";

int eb_cmd_server(int argc, char **argv)
{
    struct s_opts o;
    int help;
    if (s_parse("server", argc, argv, &o, &help))
        return 2;
    if (help) {
        fputs(s_server_usage, stdout);
        return 0;
    }
    if (s_check("server", &o))
        return 2;
    if (!o.bind || (o.shard > 0 && !o.coord) || o.shard < 0 || o.shard >= o.shards ||
        o.params < 1) {
        fprintf(stderr, "eigenbatch server: --bind (and --coord for shards > 0), --params and a "
                        "--shard in 0..shards-1 are required\n");
        return 2;
    }
    struct server_coord_sched sched = {0};
    server_sched_t *owned = NULL;
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    server_shard_t *s = NULL;
    int rc = s_checksum(o.checksum, &ck);
    if (!rc)
        rc = s_schedule(&o, &sched, &owned);
    if (!rc) {
        struct server_shard_cfg sc = {
            .shard = (int)o.shard,
            .n_shards = (int)o.shards,
            .n_workers = (int)o.workers,
            .n_params = (uint64_t)o.params,
            .n_buffers = (uint64_t)o.buffers,
            .endpoint = o.bind,
            .coord_endpoint = o.coord,
            .momentum = (float)o.momentum,
            .weight_decay = (float)o.wd,
            .sched = &sched,
            .chunk_floats = (uint32_t)o.chunk,
            .checksum = ck,
            /* the eigen service reads epoch-start snapshots under ABS / ABSA */
            .snapshots = o.method && !strncasecmp(o.method, "ABS", 3),
            .sync = o.method && !strncasecmp(o.method, "ABS", 3) && o.sync,
        };
        rc = server_shard_new(&sc, &s);
    }
    if (!rc) {
        s_trap_signals();
        rt_sock_tune_malloc();
        rc = server_shard_run(s, &s_stop);
    }
    if (rc)
        fprintf(stderr, "eigenbatch server: shard %ld: %s\n", o.shard, rt_err_msg());
    server_shard_destroy(&s);
    s_schedule_free(&sched, &owned);
    return rc ? 1 : 0;
}

/* ---- a zoo model on an LMDB dataset ---------------------------------------------------------- */

/* What a worker needs to train a zoo model: the loader, its feed, the net and its compute. */
struct s_nn {
    rt_loader_t *loader;     /* the dataset */
    struct worker_feed feed; /* micro-batches from the loader */
    nn_net_t *net;           /* the model */
    worker_nn_t *nn;         /* its compute */
    const char *out;         /* final weights file, or NULL */
    long log_every;          /* steps between progress lines */
    int rc;                  /* result of writing `out` */
};

/* Open the dataset and build the net (compute too when `compute`). */
static int s_nn_open(const struct s_opts *o, struct s_nn *n, int compute)
{
    memset(n, 0, sizeof *n);
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
        .micro_batch = (int)o->micro, .fgsm_epsilon = 0.005, .init_seed = (uint64_t)o->seed};
    n->nn = worker_nn_new(n->net, &src, &nc, &rc);
    return n->nn ? RT_OK : rc;
}

static void s_nn_close(struct s_nn *n)
{
    worker_nn_destroy(&n->nn);
    nn_net_destroy(&n->net);
    rt_loader_destroy(&n->loader);
}

static int s_nn_init(void *user, float *params, float *buffers)
{
    struct s_nn *n = user;
    struct worker_compute c = worker_nn_compute(n->nn);
    return c.init(c.user, params, buffers);
}

static int s_nn_step(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct s_nn *n = user;
    struct worker_compute c = worker_nn_compute(n->nn);
    return c.compute(c.user, st, params, grads, buffers, samples, loss);
}

static void s_nn_progress(void *user, const struct worker_step *st, uint32_t samples, float loss)
{
    struct s_nn *n = user;
    if (st->worker == 0 && (st->step % (uint64_t)n->log_every) == 0) {
        uint32_t s, correct;
        float l;
        worker_nn_last(n->nn, &s, &correct, &l);
        RT_INFO("train",
                "step %llu epoch %llu: loss %.4f, train accuracy %.3f (%u samples), "
                "B %u, lr %g",
                (unsigned long long)st->step, (unsigned long long)st->epoch, (double)loss,
                samples ? (double)correct / samples : 0.0, samples, st->batch, (double)st->lr);
    }
}

static void s_nn_finish(void *user, uint64_t steps, const float *params, const float *buffers)
{
    struct s_nn *n = user;
    size_t np = nn_net_param_count(n->net), nb = nn_net_buffer_count(n->net);
    if (!n->out)
        return;
    FILE *fp = fopen(n->out, "wb");
    if (!fp || fwrite(params, sizeof(float), np, fp) != np ||
        (nb && fwrite(buffers, sizeof(float), nb, fp) != nb))
        n->rc = rt_err_set(RT_ERR_IO, "%s: %s", n->out, strerror(errno));
    if (fp && fclose(fp) && !n->rc)
        n->rc = rt_err_set(RT_ERR_IO, "%s: %s", n->out, strerror(errno));
    (void)steps;
}

/* ---- worker ---------------------------------------------------------------------------------- */

static const char s_worker_usage[] =
    "usage: eigenbatch worker --connect EP0,EP1,... --params N [--buffers N] [--seed S]\n"
    "                         [--weight W] [--out FILE] [--checksum KIND] [--chunk FLOATS]\n"
    "                         [--timeout-ms MS]\n"
    "Runs one worker against the shards (EP0 is shard 0, the coordinator). --out writes the\n"
    "final parameters then buffers as raw little-endian float32. Options may also come from\n"
    "the environment (EB_CONNECT, ...).\n";

/* Where the worker writes its final weights. */
struct s_finish {
    struct worker_synth *model; /* the model */
    const char *out;            /* path or NULL */
    uint64_t n_params;          /* sizes */
    uint64_t n_buffers;
    int rc; /* write result */
};

static void s_write_final(void *user, uint64_t steps, const float *params, const float *buffers)
{
    (void)steps;
    struct s_finish *f = user;
    if (!f->out)
        return;
    FILE *fp = fopen(f->out, "wb");
    if (!fp || fwrite(params, sizeof(float), f->n_params, fp) != f->n_params ||
        (f->n_buffers && fwrite(buffers, sizeof(float), f->n_buffers, fp) != f->n_buffers)) {
        f->rc = rt_err_set(RT_ERR_IO, "%s: %s", f->out, strerror(errno));
    }
    if (fp && fclose(fp) && !f->rc)
        f->rc = rt_err_set(RT_ERR_IO, "%s: %s", f->out, strerror(errno));
}

static int s_compute_fwd(void *user, const struct worker_step *st, const float *params,
                         float *grads, float *buffers, uint32_t *samples, float *loss)
{
    struct s_finish *f = user;
    struct worker_compute c = worker_synth_compute(f->model);
    return c.compute(f->model, st, params, grads, buffers, samples, loss);
}

static int s_init_fwd(void *user, float *params, float *buffers)
{
    struct s_finish *f = user;
    worker_synth_initial(f->model, params, buffers);
    return RT_OK;
}

int eb_cmd_worker(int argc, char **argv)
{
    struct s_opts o;
    int help;
    if (s_parse("worker", argc, argv, &o, &help))
        return 2;
    if (help) {
        fputs(s_worker_usage, stdout);
        return 0;
    }
    if (s_check("worker", &o))
        return 2;
    if (!o.connect || strlen(o.connect) >= S_MAX_LIST) {
        fprintf(stderr, "eigenbatch worker: --connect EP0,EP1,... is required\n");
        return 2;
    }
    char list[S_MAX_LIST];
    snprintf(list, sizeof list, "%s", o.connect);
    const char *eps[S_MAX_SHARDS];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n >= S_MAX_SHARDS) {
            fprintf(stderr, "eigenbatch worker: more than %d endpoints\n", S_MAX_SHARDS);
            return 2;
        }
        eps[n++] = t;
    }
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    if (n < 1 || s_checksum(o.checksum, &ck)) {
        fprintf(stderr, "eigenbatch worker: %s\n", n < 1 ? "no endpoint" : rt_err_msg());
        return 2;
    }
    struct worker_synth model = {0};
    struct s_nn nnw;
    int zoo = strcmp(o.model, "synth") != 0;
    int rc =
        zoo ? s_nn_open(&o, &nnw, 1)
            : worker_synth_init(&model, (uint64_t)o.seed, (uint64_t)o.params, (uint64_t)o.buffers);
    if (!rc && zoo) {
        /* the shards were sized by the launcher (or by hand): they must agree with the net */
        long np = (long)nn_net_param_count(nnw.net), nb = (long)nn_net_buffer_count(nnw.net);
        if ((o.params != np && o.params != 0) || (o.buffers != nb && o.buffers != 0))
            rc = rt_err_set(RT_ERR_SHAPE,
                            "model %s has %ld parameters and %ld buffers, "
                            "--params/--buffers say %ld/%ld",
                            o.model, np, nb, o.params, o.buffers);
        o.params = np;
        o.buffers = nb;
        nnw.out = o.out;
        nnw.log_every = o.log_every;
        nn_set_threads((int)o.threads);
    }
    if (rc) {
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
        if (zoo)
            s_nn_close(&nnw);
        return 1;
    }
    char name[RT_WIRE_NAME_MAX], host[40] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(name, sizeof name, "%s:%ld", host, (long)getpid());
    struct s_finish fin = {&model, o.out, (uint64_t)o.params, (uint64_t)o.buffers, 0};
    struct worker_compute cb = {
        .user = &fin, .init = s_init_fwd, .compute = s_compute_fwd, .finish = s_write_final};
    if (zoo)
        cb = (struct worker_compute){.user = &nnw,
                                     .init = s_nn_init,
                                     .compute = s_nn_step,
                                     .step_done = s_nn_progress,
                                     .finish = s_nn_finish};
    struct worker_cfg wc = {
        .name = name,
        .n_shards = n,
        .endpoints = eps,
        .n_params = (uint64_t)o.params,
        .n_buffers = (uint64_t)o.buffers,
        .weight = o.weight,
        .chunk_floats = (uint32_t)o.chunk,
        .checksum = ck,
        .timeout_ms = (int)o.timeout_ms,
        .stop = &s_stop,
    };
    s_trap_signals();
    rt_sock_tune_malloc();
    struct worker_stats st;
    rc = worker_run(&wc, &cb, &st);
    if (!rc && (zoo ? nnw.rc : fin.rc))
        rc = zoo ? nnw.rc : fin.rc;
    if (rc)
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
    else if (zoo && st.worker == 0)
        RT_INFO("train",
                "%llu steps in %.1f s: %.1f samples/s, %.0f%% of the time in "
                "communication",
                (unsigned long long)st.steps, st.seconds,
                st.seconds > 0 ? (double)st.steps * (double)o.batch / st.seconds : 0.0,
                st.seconds > 0 ? 100.0 * st.comm_seconds / st.seconds : 0.0);
    if (zoo)
        s_nn_close(&nnw);
    else
        worker_synth_fini(&model);
    return rc ? 1 : 0;
}

/* ---- launch ---------------------------------------------------------------------------------- */

static const char s_launch_usage[] =
    "usage: eigenbatch launch [--transport ipc|tcp|inproc] [--port P] [--dir DIR] --shards S\n"
    "                         --workers W [model, schedule and --out options as for server and\n"
    "                         worker]\n"
    "Runs S shard processes and W worker processes of this binary on this machine and waits for\n"
    "them. tcp: shard i listens on 127.0.0.1:P+i (P = 0: free ports are picked); ipc: sockets\n"
    "in DIR (default: a fresh temporary directory). --out goes to the first worker.\n"
    "inproc: the same roles as threads of this process (the embedded mode).\n"
    "--method ABS|ABSA with a zoo model also runs the eigen service as a process (`eigenbatch\n"
    "eigensvc`: --kappa, --hessian-batch, --sync 0|1, --eig-pub ENDPOINT, --eig-query ENDPOINT,\n"
    "--eig-metrics FILE).\n";

/* Spawn `eigenbatch ROLE args...`; returns the child's pid or -1. */
static pid_t s_spawn(const char *self, char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(self, args);
        fprintf(stderr, "eigenbatch launch: exec %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Bind a plain TCP socket to 127.0.0.1:port (0: any) and return the port it got, or -1. */
static int s_try_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    socklen_t len = sizeof a;
    int got = -1;
    if (!bind(fd, (struct sockaddr *)&a, sizeof a) && !getsockname(fd, (struct sockaddr *)&a, &len))
        got = ntohs(a.sin_port);
    close(fd);
    return got;
}

/* First port of n consecutive loopback ports that were free a moment ago, or -1. */
static int s_free_ports(int n)
{
    for (int tries = 0; tries < 50; tries++) {
        int base = s_try_port(0);
        if (base <= 0 || base + n > 65535)
            continue;
        int ok = 1;
        for (int i = 1; i < n && ok; i++)
            ok = s_try_port(base + i) == base + i;
        if (ok)
            return base;
    }
    return -1;
}

/* launch --transport inproc: the same roles as threads of this process (embedded mode). */
static int s_launch_threads(const struct s_opts *o)
{
    int W = (int)o->workers, rc = RT_OK;
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    struct server_coord_sched sched = {0};
    server_sched_t *owned = NULL;
    struct worker_synth *models = calloc((size_t)W, sizeof *models);
    struct worker_compute *cbs = calloc((size_t)W, sizeof *cbs);
    float *w = calloc((size_t)o->params + (size_t)o->buffers, sizeof(float));
    int n_models = 0;
    if (!models || !cbs || !w) {
        rc = rt_err_set(RT_ERR_NOMEM, "launch");
        goto out;
    }
    if ((rc = s_checksum(o->checksum, &ck)) || (rc = s_schedule(o, &sched, &owned)))
        goto out;
    for (; n_models < W; n_models++) {
        rc = worker_synth_init(&models[n_models], (uint64_t)o->seed, (uint64_t)o->params,
                               (uint64_t)o->buffers);
        if (rc)
            goto out;
        cbs[n_models] = worker_synth_compute(&models[n_models]);
    }
    struct server_cluster_cfg cc = {
        .n_shards = (int)o->shards,
        .n_workers = W,
        .transport = "inproc",
        .where = "launch",
        .n_params = (uint64_t)o->params,
        .n_buffers = (uint64_t)o->buffers,
        .momentum = (float)o->momentum,
        .weight_decay = (float)o->wd,
        .sched = &sched,
        .compute = cbs,
        .chunk_floats = (uint32_t)o->chunk,
        .checksum = ck,
        .worker_timeout_ms = (int)o->timeout_ms,
    };
    rc = server_cluster_run(&cc, w, w + o->params, NULL);
    if (!rc && o->out) {
        struct s_finish fin = {NULL, o->out, (uint64_t)o->params, (uint64_t)o->buffers, 0};
        s_write_final(&fin, (uint64_t)o->steps, w, w + o->params);
        rc = fin.rc;
    }
out:
    if (rc)
        fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
    for (int i = 0; i < n_models; i++)
        worker_synth_fini(&models[i]);
    s_schedule_free(&sched, &owned);
    free(models);
    free(cbs);
    free(w);
    return rc ? 1 : 0;
}

int eb_cmd_launch(int argc, char **argv)
{
    struct s_opts o;
    int help;
    if (s_parse("launch", argc, argv, &o, &help))
        return 2;
    if (help) {
        fputs(s_launch_usage, stdout);
        return 0;
    }
    if (s_check("launch", &o))
        return 2;
    if (strcmp(o.model, "synth")) {
        /* size the shards from the net; an epoch is the dataset */
        struct s_nn probe;
        int rc = s_nn_open(&o, &probe, 0);
        if (!rc) {
            o.params = (long)nn_net_param_count(probe.net);
            o.buffers = (long)nn_net_buffer_count(probe.net);
            o.samples = (long)rt_loader_count(probe.loader);
        }
        s_nn_close(&probe);
        if (rc) {
            fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
            return 1;
        }
        if (!strcmp(o.transport, "inproc")) {
            fprintf(stderr, "eigenbatch launch: zoo models run over ipc or tcp here; the "
                            "embedded mode for them is `eigenbatch train`\n");
            return 2;
        }
    }
    if (!strcmp(o.transport, "inproc"))
        return s_launch_threads(&o);
    int tcp = !strcmp(o.transport, "tcp");
    if (!tcp && strcmp(o.transport, "ipc")) {
        fprintf(stderr, "eigenbatch launch: --transport must be ipc, tcp or inproc\n");
        return 2;
    }
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "eigenbatch launch: cannot find this binary: %s\n", strerror(errno));
        return 1;
    }
    self[sl] = '\0';
    char tmpdir[] = "/tmp/eb-launch-XXXXXX";
    const char *dir = o.dir;
    int own_dir = 0;
    if (!tcp && !dir) {
        if (!mkdtemp(tmpdir)) {
            fprintf(stderr, "eigenbatch launch: mkdtemp: %s\n", strerror(errno));
            return 1;
        }
        dir = tmpdir;
        own_dir = 1;
    }
    int port = (int)o.port;
    if (tcp && port == 0 && (port = s_free_ports((int)o.shards)) <= 0) {
        fprintf(stderr, "eigenbatch launch: no free port range for %ld shards\n", o.shards);
        return 1;
    }
    int S = (int)o.shards, W = (int)o.workers, status = 0;
    static char eps[S_MAX_SHARDS][RT_SOCK_ENDPOINT_MAX];
    char connect[S_MAX_LIST] = "";
    for (int i = 0; i < S; i++) {
        if (rt_sock_endpoint(eps[i], sizeof eps[i], o.transport, tcp ? "127.0.0.1" : dir, port,
                             i)) {
            fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
            return 2;
        }
        if (strlen(connect) + strlen(eps[i]) + 2 >= sizeof connect) {
            fprintf(stderr, "eigenbatch launch: endpoint list too long\n");
            return 2;
        }
        if (i)
            strcat(connect, ",");
        strcat(connect, eps[i]);
    }
    /* common arguments, as strings */
    char a_shards[32], a_workers[32], a_params[32], a_buffers[32], a_batch[32], a_steps[32],
        a_samples[32], a_seed[32], a_lr[48], a_mom[48], a_wd[48], a_chunk[32];
    snprintf(a_shards, sizeof a_shards, "%d", S);
    snprintf(a_workers, sizeof a_workers, "%d", W);
    snprintf(a_params, sizeof a_params, "%ld", o.params);
    snprintf(a_buffers, sizeof a_buffers, "%ld", o.buffers);
    snprintf(a_batch, sizeof a_batch, "%ld", o.batch);
    snprintf(a_steps, sizeof a_steps, "%ld", o.steps);
    char a_epochs[32], a_rho[48], a_warmup[32], a_bmax[32], a_micro_s[32];
    snprintf(a_epochs, sizeof a_epochs, "%ld", o.epochs);
    snprintf(a_rho, sizeof a_rho, "%.9g", o.rho);
    snprintf(a_warmup, sizeof a_warmup, "%ld", o.warmup);
    snprintf(a_bmax, sizeof a_bmax, "%ld", o.batch_max);
    snprintf(a_micro_s, sizeof a_micro_s, "%ld", o.micro);
    snprintf(a_samples, sizeof a_samples, "%ld", o.samples);
    snprintf(a_seed, sizeof a_seed, "%ld", o.seed);
    snprintf(a_lr, sizeof a_lr, "%.9g", o.lr);
    snprintf(a_mom, sizeof a_mom, "%.9g", o.momentum);
    snprintf(a_wd, sizeof a_wd, "%.9g", o.wd);
    snprintf(a_chunk, sizeof a_chunk, "%ld", o.chunk);
    pid_t *pids = calloc((size_t)(S + W + 1), sizeof *pids);
    if (!pids)
        return 1;
    int n = 0;
    for (int i = 0; i < S && status == 0; i++) {
        char a_shard[32];
        snprintf(a_shard, sizeof a_shard, "%d", i);
        char *args[] = {self,
                        "server",
                        "--shard",
                        a_shard,
                        "--shards",
                        a_shards,
                        "--workers",
                        a_workers,
                        "--bind",
                        eps[i],
                        "--params",
                        a_params,
                        "--buffers",
                        a_buffers,
                        "--batch",
                        a_batch,
                        "--steps",
                        a_steps,
                        "--samples",
                        a_samples,
                        "--lr",
                        a_lr,
                        "--momentum",
                        a_mom,
                        "--weight-decay",
                        a_wd,
                        "--chunk",
                        a_chunk,
                        "--checksum",
                        (char *)o.checksum,
                        "--micro-batch",
                        a_micro_s,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL,
                        NULL};
        int k = 0;
        while (args[k])
            k++;
        if (o.method) {
            char *sched_args[] = {"--method", (char *)o.method,  "--epochs", a_epochs,      "--rho",
                                  a_rho,      "--warmup-epochs", a_warmup,   "--batch-max", a_bmax};
            for (size_t j = 0; j < sizeof sched_args / sizeof sched_args[0]; j++)
                args[k++] = sched_args[j];
            if (o.decay) {
                args[k++] = "--decay-epochs";
                args[k++] = (char *)o.decay;
            }
            if (o.sync) {
                args[k++] = "--sync";
                args[k++] = "1";
            }
        }
        if (i > 0) {
            args[k++] = "--coord";
            args[k++] = eps[0];
        }
        args[k] = NULL;
        pids[n] = s_spawn(self, args);
        if (pids[n] < 0)
            status = 1;
        else
            n++;
    }
    for (int i = 0; i < W && status == 0; i++) {
        char *args[S_MAX_ARGS];
        int k = 0;
        char *common[] = {
            self,         "worker",           "--connect", connect,         "--params", a_params,
            "--buffers",  a_buffers,          "--seed",    a_seed,          "--chunk",  a_chunk,
            "--checksum", (char *)o.checksum, "--model",   (char *)o.model, "--batch",  a_batch};
        for (size_t j = 0; j < sizeof common / sizeof common[0]; j++)
            args[k++] = common[j];
        char a_classes[32], a_micro[32], a_threads[32], a_lthreads[32], a_pad[32], a_flip[32],
            a_log[32], a_timeout[32];
        if (strcmp(o.model, "synth")) {
            snprintf(a_classes, sizeof a_classes, "%ld", o.classes);
            snprintf(a_micro, sizeof a_micro, "%ld", o.micro);
            snprintf(a_threads, sizeof a_threads, "%ld", o.threads);
            snprintf(a_lthreads, sizeof a_lthreads, "%ld", o.loader_threads);
            snprintf(a_pad, sizeof a_pad, "%ld", o.crop_pad);
            snprintf(a_flip, sizeof a_flip, "%ld", o.flip);
            snprintf(a_log, sizeof a_log, "%ld", o.log_every);
            char *zoo[] = {"--data",           (char *)o.data, "--classes",   a_classes,
                           "--micro-batch",    a_micro,        "--threads",   a_threads,
                           "--loader-threads", a_lthreads,     "--crop-pad",  a_pad,
                           "--flip",           a_flip,         "--log-every", a_log};
            for (size_t j = 0; j < sizeof zoo / sizeof zoo[0]; j++)
                args[k++] = zoo[j];
        }
        if (o.timeout_ms) {
            snprintf(a_timeout, sizeof a_timeout, "%ld", o.timeout_ms);
            args[k++] = "--timeout-ms";
            args[k++] = a_timeout;
        }
        if (i == 0 && o.out) {
            args[k++] = "--out";
            args[k++] = (char *)o.out;
        }
        args[k] = NULL;
        pids[n] = s_spawn(self, args);
        if (pids[n] < 0)
            status = 1;
        else
            n++;
    }
    /* ABS / ABSA on a zoo model: the eigen service, with the schedule's settings */
    if (status == 0 && o.method && !strncasecmp(o.method, "ABS", 3) && strcmp(o.model, "synth")) {
        char a_classes[32], a_kappa[32], a_sync_t[32], a_bmax_e[32], a_hb[32];
        snprintf(a_hb, sizeof a_hb, "%ld", o.hessian_batch);
        struct server_sched_config dc; /* the schedule's default B_max when --batch-max is 0 */
        server_sched_config_default(&dc, SERVER_SCHED_ABS, o.samples, 1);
        snprintf(a_bmax_e, sizeof a_bmax_e, "%lld",
                 o.batch_max > 0 ? (long long)o.batch_max : (long long)dc.batch_max);
        snprintf(a_classes, sizeof a_classes, "%ld", o.classes);
        snprintf(a_kappa, sizeof a_kappa, "%ld", o.kappa);
        snprintf(a_sync_t, sizeof a_sync_t, "%d", o.sync ? 0 : 5000);
        char *args[S_MAX_ARGS] = {self,
                                  "eigensvc",
                                  "--connect",
                                  connect,
                                  "--model",
                                  (char *)o.model,
                                  "--data",
                                  (char *)o.data,
                                  "--classes",
                                  a_classes,
                                  "--method",
                                  (char *)o.method,
                                  "--epochs",
                                  a_epochs,
                                  "--batch",
                                  a_batch,
                                  "--batch-max",
                                  a_bmax_e,
                                  "--lr",
                                  a_lr,
                                  "--rho",
                                  a_rho,
                                  "--kappa",
                                  a_kappa,
                                  "--seed",
                                  a_seed,
                                  "--sync",
                                  o.sync ? "1" : "0",
                                  "--hessian-batch",
                                  a_hb};
        int k = 0;
        while (args[k])
            k++;
        if (!o.sync) { /* without sync, a missed last snapshot ends the service on silence */
            args[k++] = "--timeout-ms";
            args[k++] = a_sync_t;
        }
        if (o.decay) {
            args[k++] = "--decay";
            args[k++] = (char *)o.decay;
        }
        if (o.eig_pub) {
            args[k++] = "--pub";
            args[k++] = (char *)o.eig_pub;
        }
        if (o.eig_query) {
            args[k++] = "--query";
            args[k++] = (char *)o.eig_query;
        }
        if (o.eig_metrics) {
            args[k++] = "--metrics";
            args[k++] = (char *)o.eig_metrics;
        }
        args[k] = NULL;
        pids[n] = s_spawn(self, args);
        if (pids[n] < 0)
            status = 1;
        else
            n++;
    }
    if (status)
        fprintf(stderr, "eigenbatch launch: fork: %s\n", strerror(errno));
    /* wait for everyone; the first failure stops the rest */
    int left = n;
    while (left > 0) {
        int ws;
        pid_t p = wait(&ws);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        left--;
        int ok = WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
        if (!ok && status == 0) {
            status = 1;
            fprintf(stderr, "eigenbatch launch: process %ld failed; stopping the others\n",
                    (long)p);
            for (int i = 0; i < n; i++)
                if (pids[i] != p)
                    kill(pids[i], SIGTERM);
        }
    }
    free(pids);
    if (own_dir) {
        for (int i = 0; i < S; i++)
            unlink(eps[i] + strlen("ipc://"));
        rmdir(tmpdir);
    }
    if (status == 0)
        RT_INFO("launch", "%d shards and %d workers finished", S, W);
    return status;
}
