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
 * Options, the configuration file and the zoo-model side of a worker are in eb_run. The model is
 * the synthetic least-squares model (worker_synth) or a zoo model on an LMDB dataset (--model,
 * --data); shards do not need the model, only its sizes.
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
#include "eb_run.h"
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

#define S_MAX_SHARDS EB_RUN_MAX_SHARDS
#define S_MAX_LIST EB_RUN_MAX_LIST
#define S_MAX_ARGS 96 /* arguments of a spawned role */

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
    "                         [--output-dir DIR [--checkpoint-every N] [--checkpoint-keep N]]\n"
    "                         [--resume auto|PATH]\n"
    "                         [--batch B --lr LR --steps T --samples N (shard 0)]\n"
    "                         [--momentum M] [--weight-decay WD] [--checksum KIND]\n"
    "                         [--method BL|FB|GG|ABS|ABSA --epochs E [--decay-epochs e1,e2]\n"
    "                          [--rho R] [--warmup-epochs N] [--batch-max B]\n"
    "                          [--sync 0|1 [--sync-timeout-s S]]]\n"
    "                         [--worker-timeout-ms MS (shard 0: evict silent workers; 0: never)]\n"
    "Runs one parameter-server shard; shard 0 is also the coordinator and holds the schedule:\n"
    "with --method the BL/FB/GG/ABS schedule of server_sched, else a constant one for --steps.\n"
    "With --output-dir and --method, each shard writes its part of a checkpoint under\n"
    "DIR/checkpoints every N epochs (shard 0 completes it); --resume starts from one.\n"
    "Options may also come from the environment (EB_SHARD, EB_BIND, ...) or from a YAML\n"
    "configuration (--config FILE, as for `eigenbatch train`).\n";

static int s_server(const struct eb_opts *opts, const rt_config_t *cfg);

int eb_cmd_server(int argc, char **argv)
{
    return eb_opts_main("server", argc, argv, s_server_usage, s_server);
}

/* A zoo model sizes the shards from its net, and its dataset gives the epoch length; sizes given
 * by hand must agree. Returns 0, or 1 after printing the reason. */
static int s_size_from_model(const char *cmd, struct eb_opts *o)
{
    struct eb_run_nn probe;
    int rc = eb_run_nn_open(o, &probe, 0, 0);
    if (!rc) {
        long np = (long)nn_net_param_count(probe.net), nb = (long)nn_net_buffer_count(probe.net);
        if ((o->params != np && o->params != 0) || (o->buffers != nb && o->buffers != 0))
            rc = rt_err_set(RT_ERR_SHAPE,
                            "model %s has %ld parameters and %ld buffers, "
                            "--params/--buffers say %ld/%ld",
                            o->model, np, nb, o->params, o->buffers);
        o->params = np;
        o->buffers = nb;
        o->samples = (long)rt_loader_count(probe.loader);
    }
    eb_run_nn_close(&probe);
    if (rc) {
        fprintf(stderr, "eigenbatch %s: %s\n", cmd, rt_err_msg());
        return 1;
    }
    return 0;
}

static int s_server(const struct eb_opts *opts, const rt_config_t *cfg)
{
    struct eb_opts o = *opts;
    (void)cfg;
    if (eb_opts_check("server", &o))
        return 2;
    if (strcmp(o.model, "synth") && o.data && s_size_from_model("server", &o))
        return 1;
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
    rt_metrics_t *metrics = NULL; /* shard 0: eviction events, appended to OUTPUT/metrics.jsonl */
    char resume[PATH_MAX], ckpt_root[PATH_MAX], mpath[PATH_MAX];
    int rc = eb_opts_checksum(o.checksum, &ck);
    if (!rc && o.shard == 0 && o.output_dir && o.evict_ms > 0) {
        snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", o.output_dir);
        if (rt_metrics_open(mpath, 1, &metrics))
            RT_WARN("server", "evictions go to the log only: %s", rt_err_msg());
    }
    if (!rc)
        rc = eb_opts_resume(&o, resume, sizeof resume);
    if (!rc)
        rc = eb_opts_schedule(&o, &sched, &owned);
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
            .ckpt_root = eb_opts_ckpt_root(&o, ckpt_root, sizeof ckpt_root),
            .ckpt_every = (int)o.ckpt_every,
            .ckpt_keep = (int)o.ckpt_keep,
            .resume = o.resume,
            .model = strcmp(o.model, "synth") ? o.model : NULL,
            .chunk_floats = (uint32_t)o.chunk,
            .checksum = ck,
            /* the eigen service reads epoch-start snapshots under ABS / ABSA */
            .snapshots = o.method && !strncasecmp(o.method, "ABS", 3),
            .sync = o.method && !strncasecmp(o.method, "ABS", 3) && o.sync,
            .evict_ms = (int)o.evict_ms,
            .metrics = metrics,
            .sync_timeout_ms = (int)(o.sync_timeout_s * 1000.0),
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
    rt_metrics_close(&metrics);
    eb_opts_schedule_free(&sched, &owned);
    return rc ? 1 : 0;
}

/* ---- worker ---------------------------------------------------------------------------------- */

static const char s_worker_usage[] =
    "usage: eigenbatch worker --connect EP0,EP1,... --params N [--buffers N] [--seed S]\n"
    "                         [--weight W] [--out FILE] [--checksum KIND] [--chunk FLOATS]\n"
    "                         [--timeout-ms MS]\n"
    "Runs one worker against the shards (EP0 is shard 0, the coordinator). --out writes the\n"
    "final parameters then buffers as raw little-endian float32. Only worker 0 (numbered by the\n"
    "coordinator) writes the final weights (--out, weights.safetensors under --output-dir):\n"
    "every worker ends with the same ones. Options may also come from the environment\n"
    "(EB_CONNECT, ...).\n";

/* Where the worker writes its final weights. */
struct s_finish {
    struct worker_synth *model; /* the model */
    const char *out;            /* path or NULL */
    uint64_t n_params;          /* sizes */
    uint64_t n_buffers;
    int rc;     /* write result */
    int worker; /* id the coordinator gave the worker (-1: not known yet); only 0 writes */
};

static void s_write_final(void *user, uint64_t steps, const float *params, const float *buffers)
{
    (void)steps;
    struct s_finish *f = user;
    if (!f->out || f->worker != 0)
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
    f->worker = st->worker;
    struct worker_compute c = worker_synth_compute(f->model);
    return c.compute(f->model, st, params, grads, buffers, samples, loss);
}

static int s_init_fwd(void *user, float *params, float *buffers)
{
    struct s_finish *f = user;
    f->worker = 0; /* only worker 0 initialises the shards */
    worker_synth_initial(f->model, params, buffers);
    return RT_OK;
}

static int s_worker(const struct eb_opts *opts, const rt_config_t *cfg);

int eb_cmd_worker(int argc, char **argv)
{
    return eb_opts_main("worker", argc, argv, s_worker_usage, s_worker);
}

static int s_worker(const struct eb_opts *opts, const rt_config_t *cfg)
{
    struct eb_opts o = *opts;
    (void)cfg;
    if (eb_opts_check("worker", &o))
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
    if (n < 1 || eb_opts_checksum(o.checksum, &ck)) {
        fprintf(stderr, "eigenbatch worker: %s\n", n < 1 ? "no endpoint" : rt_err_msg());
        return 2;
    }
    struct worker_synth model = {0};
    struct eb_run_nn nnw;
    int zoo = strcmp(o.model, "synth") != 0;
    char resume[PATH_MAX];
    /* the shards load the checkpoint; worker 0 appends to metrics.jsonl when there is one */
    if (eb_opts_resume(&o, resume, sizeof resume)) {
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
        return 1;
    }
    int rc =
        zoo ? eb_run_nn_open(&o, &nnw, 1, o.lead != 0)
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
        nn_set_threads((int)o.threads);
    }
    if (rc) {
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
        if (zoo)
            eb_run_nn_close(&nnw);
        return 1;
    }
    char name[RT_WIRE_NAME_MAX], host[40] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(name, sizeof name, "%s:%ld", host, (long)getpid());
    struct s_finish fin = {&model, o.out, (uint64_t)o.params, (uint64_t)o.buffers, 0, -1};
    struct worker_compute cb = {
        .user = &fin, .init = s_init_fwd, .compute = s_compute_fwd, .finish = s_write_final};
    if (zoo)
        cb = eb_run_nn_compute(&nnw);
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
        eb_run_nn_close(&nnw);
    else
        worker_synth_fini(&model);
    return rc ? 1 : 0;
}

/* ---- launch ---------------------------------------------------------------------------------- */

static const char s_launch_usage[] =
    "usage: eigenbatch launch [--config FILE [--set key=value]...] [--output-dir DIR] [--seed N]\n"
    "                         [--transport ipc|tcp|inproc] [--port P] [--dir DIR] --shards S\n"
    "                         --workers W [model, schedule and --out options as for server and\n"
    "                         worker]\n"
    "Runs S shard processes and W worker processes of this binary on this machine and waits for\n"
    "them. The YAML configuration of `eigenbatch train` works here too (flags override it); its\n"
    "values reach the servers and workers as flags. tcp: shard i listens on 127.0.0.1:P+i (P = 0:\n"
    "free ports are picked); ipc: sockets in DIR (default: a fresh temporary directory); inproc:\n"
    "the synthetic model as threads of this process (zoo models switch to ipc). --out and\n"
    "--output-dir go to every worker: worker 0 writes the final weights, the first worker\n"
    "the metrics.\n"
    "With --output-dir the shards write checkpoints (--checkpoint-every N, --checkpoint-keep N);\n"
    "--resume auto|PATH restarts every role from one (auto: the newest complete in DIR).\n"
    "--method ABS|ABSA with a zoo model also runs the eigen service as a process (`eigenbatch\n"
    "eigensvc`, with every abs.* setting: --alpha, --beta, --kappa, --omega, --bn,\n"
    "--block-last-k, --preset, --hessian-batch, --sync 0|1; and --eig-pub ENDPOINT,\n"
    "--eig-query ENDPOINT, --eig-metrics FILE).\n";

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

/* Append the n strings of src to the argument list args (k used); returns the new count. */
static int s_append(char **args, int k, char *const *src, size_t n)
{
    for (size_t j = 0; j < n; j++)
        args[k++] = src[j];
    return k;
}
#define S_APPEND(args, k, arr) s_append(args, k, arr, sizeof arr / sizeof arr[0])

/* Append `flag val` when val is not NULL; returns the new count. */
static int s_append_opt(char **args, int k, const char *flag, const char *val)
{
    if (val) {
        args[k++] = (char *)flag;
        args[k++] = (char *)val;
    }
    return k;
}

/* Terminate args (k used) and spawn `self args...`, recording the pid in pids[*n]; returns 0, or
 * 1 when the fork failed. */
static int s_start(const char *self, char **args, int k, pid_t *pids, int *n)
{
    args[k] = NULL;
    pids[*n] = s_spawn(self, args);
    if (pids[*n] < 0)
        return 1;
    (*n)++;
    return 0;
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
static int s_launch_threads(const struct eb_opts *o)
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
    if ((rc = eb_opts_checksum(o->checksum, &ck)) || (rc = eb_opts_schedule(o, &sched, &owned)))
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
        struct s_finish fin = {NULL, o->out, (uint64_t)o->params, (uint64_t)o->buffers, 0, 0};
        s_write_final(&fin, (uint64_t)o->steps, w, w + o->params);
        rc = fin.rc;
    }
out:
    if (rc)
        fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
    for (int i = 0; i < n_models; i++)
        worker_synth_fini(&models[i]);
    eb_opts_schedule_free(&sched, &owned);
    free(models);
    free(cbs);
    free(w);
    return rc ? 1 : 0;
}

static int s_launch(const struct eb_opts *opts, const rt_config_t *cfg);

int eb_cmd_launch(int argc, char **argv)
{
    return eb_opts_main("launch", argc, argv, s_launch_usage, s_launch);
}

static int s_launch(const struct eb_opts *opts, const rt_config_t *cfg)
{
    struct eb_opts o = *opts;
    if (eb_opts_check("launch", &o))
        return 2;
    if (strcmp(o.model, "synth")) {
        if (s_size_from_model("launch", &o))
            return 1;
        if (!strcmp(o.transport, "inproc")) {
            /* processes cannot share inproc:// endpoints: the same cluster over ipc:// */
            RT_INFO("launch", "transport inproc is for threads (`eigenbatch train`); the "
                              "processes use ipc");
            o.transport = "ipc";
        }
    }
    if (cfg && o.output_dir) {
        /* the resolved configuration, next to what worker 0 writes there */
        char path[PATH_MAX];
        int rc = eb_run_output_dir(o.output_dir);
        snprintf(path, sizeof path, "%s/config.yaml", o.output_dir);
        if (!rc)
            rc = rt_config_dump(cfg, path);
        if (rc) {
            fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
            return 1;
        }
    }
    /* `auto` is resolved once here: every role starts from the same checkpoint */
    char resume[PATH_MAX];
    if (eb_opts_resume(&o, resume, sizeof resume)) {
        fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
        return 1;
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
    char a_ckpt_every[32], a_ckpt_keep[32];
    snprintf(a_ckpt_every, sizeof a_ckpt_every, "%ld", o.ckpt_every);
    snprintf(a_ckpt_keep, sizeof a_ckpt_keep, "%ld", o.ckpt_keep);
    char a_lrcap[48], a_gamma[48], a_eps[48], a_tau[32];
    snprintf(a_lrcap, sizeof a_lrcap, "%.9g", o.lr_cap);
    snprintf(a_gamma, sizeof a_gamma, "%.9g", o.gamma);
    snprintf(a_eps, sizeof a_eps, "%.9g", o.epsilon);
    snprintf(a_tau, sizeof a_tau, "%ld", o.tau);
    char a_bbatch[32], a_sync_to[48];
    snprintf(a_bbatch, sizeof a_bbatch, "%ld", o.base_batch);
    snprintf(a_sync_to, sizeof a_sync_to, "%.17g", o.sync_timeout_s);
    pid_t *pids = calloc((size_t)(S + W + 1), sizeof *pids);
    if (!pids)
        return 1;
    int n = 0;
    for (int i = 0; i < S && status == 0; i++) {
        char a_shard[32];
        snprintf(a_shard, sizeof a_shard, "%d", i);
        char *args[S_MAX_ARGS];
        int k = 0;
        char *common[] = {self,
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
                          "--lr-cap",
                          a_lrcap,
                          "--gamma",
                          a_gamma,
                          "--epsilon",
                          a_eps,
                          "--tau",
                          a_tau,
                          "--base-batch",
                          a_bbatch};
        k = S_APPEND(args, k, common);
        if (o.method) {
            char *sched_args[] = {"--method", (char *)o.method,  "--epochs", a_epochs,      "--rho",
                                  a_rho,      "--warmup-epochs", a_warmup,   "--batch-max", a_bmax};
            k = S_APPEND(args, k, sched_args);
            k = s_append_opt(args, k, "--decay-epochs", o.decay);
            k = s_append_opt(args, k, "--sync", o.sync ? "1" : NULL);
            k = s_append_opt(args, k, "--sync-timeout-s", o.sync ? a_sync_to : NULL);
        }
        k = s_append_opt(args, k, "--coord", i > 0 ? eps[0] : NULL);
        char a_evict[32]; /* the coordinator evicts silent workers */
        snprintf(a_evict, sizeof a_evict, "%ld", o.evict_ms);
        k = s_append_opt(args, k, "--worker-timeout-ms", a_evict);
        /* checkpoints: every shard writes its part, shard 0 completes them */
        if (o.output_dir) {
            char *ck_args[] = {"--output-dir", (char *)o.output_dir, "--checkpoint-every",
                               a_ckpt_every,   "--checkpoint-keep",  a_ckpt_keep};
            k = S_APPEND(args, k, ck_args);
        }
        k = s_append_opt(args, k, "--resume", o.resume);
        status = s_start(self, args, k, pids, &n);
    }
    for (int i = 0; i < W && status == 0; i++) {
        char *args[S_MAX_ARGS];
        int k = 0;
        char *common[] = {
            self,         "worker",           "--connect", connect,         "--params", a_params,
            "--buffers",  a_buffers,          "--seed",    a_seed,          "--chunk",  a_chunk,
            "--checksum", (char *)o.checksum, "--model",   (char *)o.model, "--batch",  a_batch};
        k = S_APPEND(args, k, common);
        char a_classes[32], a_micro[32], a_threads[32], a_lthreads[32], a_pad[32], a_flip[32],
            a_log[32], a_timeout[32], a_eval[32], a_prog[48], a_weight[48];
        if (strcmp(o.model, "synth")) {
            snprintf(a_classes, sizeof a_classes, "%ld", o.classes);
            snprintf(a_micro, sizeof a_micro, "%ld", o.micro);
            snprintf(a_threads, sizeof a_threads, "%ld", o.threads);
            snprintf(a_lthreads, sizeof a_lthreads, "%ld", o.loader_threads);
            snprintf(a_pad, sizeof a_pad, "%ld", o.crop_pad);
            snprintf(a_flip, sizeof a_flip, "%ld", o.flip);
            snprintf(a_log, sizeof a_log, "%ld", o.log_every);
            snprintf(a_eval, sizeof a_eval, "%ld", o.eval_every);
            snprintf(a_prog, sizeof a_prog, "%.9g", o.progress_s);
            char *zoo[] = {"--data",           (char *)o.data,
                           "--classes",        a_classes,
                           "--micro-batch",    a_micro,
                           "--threads",        a_threads,
                           "--loader-threads", a_lthreads,
                           "--crop-pad",       a_pad,
                           "--flip",           a_flip,
                           "--log-every",      a_log,
                           "--eval-every",     a_eval,
                           "--epsilon",        a_eps,
                           "--epochs",         a_epochs,
                           "--progress-s",     a_prog,
                           "--lead",           i == 0 ? "1" : "0"};
            k = S_APPEND(args, k, zoo);
            k = s_append_opt(args, k, "--method", o.method);
            k = s_append_opt(args, k, "--test", o.test);
            /* worker 0 (the coordinator's numbering) writes the weights there */
            k = s_append_opt(args, k, "--output-dir", o.output_dir);
            /* the first worker writes the metrics: it appends to metrics.jsonl on a resume */
            k = s_append_opt(args, k, "--resume", i == 0 ? o.resume : NULL);
        }
        snprintf(a_weight, sizeof a_weight, "%.9g", eb_opts_worker_weight(&o, i));
        snprintf(a_timeout, sizeof a_timeout, "%ld", o.timeout_ms);
        k = s_append_opt(args, k, "--weight", a_weight);
        k = s_append_opt(args, k, "--timeout-ms", o.timeout_ms ? a_timeout : NULL);
        /* written by worker 0 only, whichever process that is */
        k = s_append_opt(args, k, "--out", o.out);
        status = s_start(self, args, k, pids, &n);
    }
    /* ABS / ABSA on a zoo model: the eigen service, with every abs.* setting of the run, from
     * the same function as `train` (eb_run_eig_args) */
    if (status == 0 && o.method && !strncasecmp(o.method, "ABS", 3) && strcmp(o.model, "synth")) {
        struct eb_run_eig_args *ea = calloc(1, sizeof *ea);
        char a_sync_t[32];
        snprintf(a_sync_t, sizeof a_sync_t, "%d", o.sync ? 0 : 5000);
        char *args[S_MAX_ARGS] = {self, "eigensvc", "--connect", connect};
        int k = 4;
        if (!ea || eb_run_eig_args(&o, ea)) {
            fprintf(stderr, "eigenbatch launch: eigen service: %s\n",
                    ea ? rt_err_msg() : "out of memory");
            status = 1;
        } else {
            k = s_append(args, k, ea->argv, (size_t)ea->argc);
            /* without sync, a missed last snapshot ends the service on silence */
            k = s_append_opt(args, k, "--timeout-ms", o.sync ? NULL : a_sync_t);
            k = s_append_opt(args, k, "--pub", o.eig_pub);
            k = s_append_opt(args, k, "--query", o.eig_query);
            k = s_append_opt(args, k, "--metrics", o.eig_metrics);
            status = s_start(self, args, k, pids, &n);
        }
        free(ea);
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
