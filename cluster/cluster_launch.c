/*
 * cluster_launch: `eigenbatch launch`: S shard processes, W worker processes and, for ABS/ABSA on
 * a zoo model, the eigen service process, all of this binary on this machine over ipc:// or
 * tcp://, supervised until they end (cluster_super: a dead worker is respawned and rejoins, at
 * most cluster.max_restarts times; any other failure stops the others; a non-finite stop rolls
 * every role back to the newest complete checkpoint under fault.rollback). Every child reads the
 * resolved configuration the launcher writes (--config), plus its per-process flags (--shard,
 * --bind, --connect, ...): the same file a docker-compose deployment gives every role. The
 * synthetic model over inproc runs as threads of this process instead.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "app_model.h"
#include "cluster_cmds.h"
#include "cluster_embed.h"
#include "cluster_fault.h"
#include "cluster_super.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "server_main.h"
#include "worker_main.h"
#include "worker_synth.h"

static const char s_launch_usage[] =
    "usage: eigenbatch launch [--config FILE] [--set KEY=VALUE]... [--output-dir DIR]\n"
    "                         [--transport ipc|tcp|inproc] [--port P] [--dir DIR] [options]\n"
    "Runs cluster.shards shard processes and cluster.workers worker processes of this binary on\n"
    "this machine and waits for them. Every child reads the resolved configuration (written to\n"
    "DIR/config.yaml, or to the socket directory without DIR). tcp: shard i listens on\n"
    "127.0.0.1:P+i (P = 0:\n"
    "free ports are picked); ipc: sockets in DIR (default: a fresh temporary directory); inproc:\n"
    "the synthetic model as threads of this process (zoo models switch to ipc). --out and\n"
    "--output-dir go to every worker: the lead (the lowest-id live worker, as the coordinator\n"
    "says) writes the final weights and the metrics. A worker that dies is respawned with the\n"
    "same command line and rejoins (cluster.max_restarts respawns in all); a shard or eigen\n"
    "service that dies, or a worker past that, stops the run naming it. With fault.rollback, a\n"
    "stop on something not finite restarts every role from the newest complete checkpoint.\n"
    "With --output-dir the shards write checkpoints (--checkpoint-every N, --checkpoint-keep N);\n"
    "--resume auto|PATH restarts every role from one (auto: the newest complete in DIR).\n"
    "ABS/ABSA with a zoo model also runs the eigen service as a process (`eigenbatch eigensvc`\n"
    "with the same configuration; --eig-pub ENDPOINT, --eig-query ENDPOINT, --eig-metrics FILE).\n";

/* Append `flag val` when val is not NULL; returns the new count. */
static int s_append_opt(char **args, int k, const char *flag, const char *val)
{
    if (val) {
        args[k++] = (char *)flag;
        args[k++] = (char *)val;
    }
    return k;
}

/* Terminate args (k used) and start them as `role` number `index` under the supervisor; returns
 * 0, or 1 when that failed. */
static int s_start(cluster_super_t *sup, enum cluster_role role, int index, char **args, int k)
{
    args[k] = NULL;
    if (cluster_super_spawn(sup, role, index, args)) {
        fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
        return 1;
    }
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
static int s_launch_threads(const struct app_opts *o)
{
    int W = (int)o->cluster.workers, rc = RT_OK;
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    struct server_coord_sched sched = {0};
    server_sched_t *owned = NULL;
    struct worker_synth *models = calloc((size_t)W, sizeof *models);
    struct worker_compute *cbs = calloc((size_t)W, sizeof *cbs);
    float *w = calloc((size_t)o->model.params + (size_t)o->model.buffers, sizeof(float));
    int n_models = 0;
    if (!models || !cbs || !w) {
        rc = rt_err_set(RT_ERR_NOMEM, "launch");
        goto out;
    }
    if ((rc = app_opts_checksum(o, &ck)) || (rc = server_main_schedule(o, &sched, &owned)))
        goto out;
    for (; n_models < W; n_models++) {
        rc = worker_synth_init(&models[n_models], (uint64_t)o->train.seed,
                               (uint64_t)o->model.params, (uint64_t)o->model.buffers);
        if (rc)
            goto out;
        cbs[n_models] = worker_synth_compute(&models[n_models]);
    }
    struct cluster_embed_cfg cc = {
        .n_shards = (int)o->cluster.shards,
        .n_workers = W,
        .transport = "inproc",
        .where = "launch",
        .n_params = (uint64_t)o->model.params,
        .n_buffers = (uint64_t)o->model.buffers,
        .momentum = (float)o->schedule.momentum,
        .weight_decay = (float)o->schedule.weight_decay,
        .sched = &sched,
        .compute = cbs,
        .chunk_floats = (uint32_t)o->cluster.chunk,
        .checksum = ck,
        .worker_timeout_ms = (int)o->cluster.timeout_ms,
        .metrics_listen = o->metrics_listen,
    };
    rc = cluster_embed_run(&cc, w, w + o->model.params, NULL);
    if (!rc && o->local.out)
        rc = worker_main_write_raw(o->local.out, w, (uint64_t)o->model.params, w + o->model.params,
                                   (uint64_t)o->model.buffers);
out:
    if (rc)
        fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
    for (int i = 0; i < n_models; i++)
        worker_synth_fini(&models[i]);
    server_main_schedule_free(&sched, &owned);
    free(models);
    free(cbs);
    free(w);
    return rc ? 1 : 0;
}

/* The children's common start: self ROLE --config CONFIG. */
static int s_role_args(char **args, const char *self, const char *role, const char *config)
{
    args[0] = (char *)self;
    args[1] = (char *)role;
    args[2] = "--config";
    args[3] = (char *)config;
    return 4;
}

/* Where the children meet: endpoints eps[0..S) and their comma-separated list, under dir (ipc)
 * or on 127.0.0.1 from port (tcp). Returns 0 or 2 after printing the problem. */
static int s_endpoints(const struct app_opts *o, const char *dir, int port,
                       char (*eps)[RT_SOCK_ENDPOINT_MAX], char *connect, size_t cap)
{
    int tcp = !strcmp(o->cluster.transport, "tcp");
    connect[0] = '\0';
    for (int i = 0; i < (int)o->cluster.shards; i++) {
        if (rt_sock_endpoint(eps[i], sizeof eps[i], o->cluster.transport, tcp ? "127.0.0.1" : dir,
                             port, i)) {
            fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
            return 2;
        }
        if (strlen(connect) + strlen(eps[i]) + 2 >= cap) {
            fprintf(stderr, "eigenbatch launch: endpoint list too long\n");
            return 2;
        }
        if (i)
            strcat(connect, ",");
        strcat(connect, eps[i]);
    }
    return 0;
}

/* Start every role under the supervisor. Returns 0 or 1 when a start failed. */
static int s_start_roles(const struct app_opts *o, const char *config,
                         char (*eps)[RT_SOCK_ENDPOINT_MAX], const char *connect,
                         cluster_super_t *sup, const char *self)
{
    int status = 0;
    for (int i = 0; i < (int)o->cluster.shards && status == 0; i++) {
        char *args[CLUSTER_SUPER_MAX_ARGS], a_shard[32];
        snprintf(a_shard, sizeof a_shard, "%d", i);
        int k = s_role_args(args, self, "server", config);
        k = s_append_opt(args, k, "--shard", a_shard);
        k = s_append_opt(args, k, "--bind", eps[i]);
        k = s_append_opt(args, k, "--coord", i > 0 ? eps[0] : NULL);
        k = s_append_opt(args, k, "--resume", o->local.resume);
        status = s_start(sup, CLUSTER_ROLE_SHARD, i, args, k);
    }
    int eig = app_opts_needs_eigensvc(o) && strcmp(o->model.name, "synth");
    for (int i = 0; i < (int)o->cluster.workers && status == 0; i++) {
        char *args[CLUSTER_SUPER_MAX_ARGS], a_weight[48];
        snprintf(a_weight, sizeof a_weight, "%.17g", app_opts_worker_weight(o, i));
        int k = s_role_args(args, self, "worker", config);
        k = s_append_opt(args, k, "--connect", connect);
        k = s_append_opt(args, k, "--weight", a_weight);
        /* written by the lead only, whichever process the coordinator names (every worker has
         * the flags: the lead moves to another when it dies) */
        k = s_append_opt(args, k, "--out", o->local.out);
        /* the lead of the first step writes the resume event; a respawned worker, which gets
         * the same command line, rejoins later and only appends */
        k = s_append_opt(args, k, "--resume", o->local.resume);
        /* the decision stream: the worker prepares for the batch sizes it announces */
        k = s_append_opt(args, k, "--eig-pub", eig ? o->local.eig_pub : NULL);
        status = s_start(sup, CLUSTER_ROLE_WORKER, i, args, k);
    }
    if (status == 0 && eig) {
        char *args[CLUSTER_SUPER_MAX_ARGS];
        int k = s_role_args(args, self, "eigensvc", config);
        k = s_append_opt(args, k, "--connect", connect);
        /* without sync, a missed last snapshot ends the service on silence */
        k = s_append_opt(args, k, "--set",
                         !app_opts_sync(o) && !o->cluster.timeout_ms ? "cluster.timeout_ms=5000"
                                                                     : NULL);
        k = s_append_opt(args, k, "--eig-pub", o->local.eig_pub);
        k = s_append_opt(args, k, "--eig-query", o->local.eig_query);
        k = s_append_opt(args, k, "--eig-metrics", o->local.eig_metrics);
        status = s_start(sup, CLUSTER_ROLE_EIGENSVC, 0, args, k);
    }
    if (status)
        cluster_super_stop(sup);
    return status;
}

/* Run the roles under the supervisor until they end; after a non-finite stop, again from the
 * newest complete checkpoint while fault.rollback allows (cluster_fault). Returns the launch
 * status. */
static int s_run_rounds(struct app_opts *o, const char *self, const char *config,
                        char (*eps)[RT_SOCK_ENDPOINT_MAX], const char *connect)
{
    cluster_super_t *sup = cluster_super_new(self, (int)o->cluster.max_restarts);
    struct cluster_fault f = {0};
    if (!sup) {
        fprintf(stderr, "eigenbatch launch: out of memory\n");
        return 1;
    }
    int status;
    for (;;) {
        struct cluster_super_end end;
        s_start_roles(o, config, eps, connect, sup, self);
        status = cluster_super_wait(sup, &end);
        if (!status)
            break;
        /* a role process cannot say which step: its stderr names it */
        if (end.nonfinite && cluster_fault_rollback(o, &f, end.why, -1)) {
            o->local.resume = f.resume;
            continue;
        }
        fprintf(stderr, "eigenbatch launch: %s\n", end.nonfinite ? rt_err_msg() : end.why);
        break;
    }
    cluster_super_destroy(&sup);
    return status;
}

/* The processes' launch: a directory for sockets and the configuration, ports, then the roles. */
static int s_launch_processes(struct app_opts *o, const rt_config_t *cfg)
{
    int tcp = !strcmp(o->cluster.transport, "tcp");
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "eigenbatch launch: cannot find this binary: %s\n", strerror(errno));
        return 1;
    }
    self[sl] = '\0';
    char tmpdir[] = "/tmp/eb-launch-XXXXXX", config[PATH_MAX];
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "eigenbatch launch: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    const char *dir = o->local.dir ? o->local.dir : tmpdir;
    /* the children read the resolved configuration: every role resolves the same */
    snprintf(config, sizeof config, "%s/config.yaml", tmpdir);
    int port = (int)o->cluster.port, status = 0;
    if (rt_config_dump(cfg, config)) {
        fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
        status = 1;
    } else if (tcp && port == 0 && (port = s_free_ports((int)o->cluster.shards)) <= 0) {
        fprintf(stderr, "eigenbatch launch: no free port range for %ld shards\n",
                o->cluster.shards);
        status = 1;
    }
    static char eps[APP_MAX_SHARDS][RT_SOCK_ENDPOINT_MAX];
    char connect[APP_MAX_LIST], pub[RT_SOCK_ENDPOINT_MAX] = "";
    /* over ipc the eigen service publishes its decisions beside the shards (over tcp: --eig-pub) */
    if (!tcp && !o->local.eig_pub && app_opts_needs_eigensvc(o) &&
        snprintf(pub, sizeof pub, "ipc://%s/decisions", dir) < (int)sizeof pub)
        o->local.eig_pub = pub;
    if (!status)
        status = s_endpoints(o, dir, port, eps, connect, sizeof connect);
    if (!status)
        status = s_run_rounds(o, self, config, eps, connect);
    if (!tcp)
        for (int i = 0; i < (int)o->cluster.shards; i++)
            if (!strncmp(eps[i], "ipc://", 6) && !o->local.dir)
                unlink(eps[i] + strlen("ipc://"));
    if (pub[0] && !o->local.dir)
        unlink(pub + strlen("ipc://"));
    o->local.eig_pub = pub[0] ? NULL : o->local.eig_pub;
    unlink(config);
    rmdir(tmpdir);
    if (status == 0)
        RT_INFO("launch", "%ld shards and %ld workers finished", o->cluster.shards,
                o->cluster.workers);
    return status;
}

/* The command's body: supervised processes, or threads for the synthetic model over inproc. */
static int s_launch(struct app_opts *opts, rt_config_t *cfg)
{
    struct app_opts o = *opts;
    int status = 0;
    char resume[PATH_MAX];
    if (strcmp(o.model.name, "synth") && !strcmp(o.cluster.transport, "inproc")) {
        /* processes cannot share inproc:// endpoints: the same cluster over ipc:// */
        RT_INFO("launch", "transport inproc is for threads (`eigenbatch train`); the "
                          "processes use ipc");
        o.cluster.transport = "ipc";
    }
    /* the resolved configuration; `auto` is resolved once here: every role starts from the
     * same checkpoint */
    if (app_model_fill_sizes(&o) || app_opts_write_config(&o, cfg) ||
        app_opts_resume(&o, resume, sizeof resume)) {
        fprintf(stderr, "eigenbatch launch: %s\n", rt_err_msg());
        status = 1;
    } else if (!strcmp(o.cluster.transport, "inproc")) {
        status = s_launch_threads(&o);
    } else {
        status = s_launch_processes(&o, cfg);
    }
    return status;
}

int cluster_launch_main(int argc, char **argv)
{
    return app_opts_main(argc, argv, s_launch_usage, s_launch);
}
