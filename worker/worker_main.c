/*
 * worker_main: `eigenbatch worker`: one worker as a process, against the shards (--connect, shard 0
 * first): the synthetic least-squares model (worker_synth) or a zoo model on an LMDB dataset
 * (worker_app). Options: app_opts (every role reads the same file); the per-process ones here are
 * --connect, --weight, --lead, --out and --resume.
 */
#include "worker_main.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "app_model.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "worker_app.h"
#include "worker_synth.h"

static atomic_int s_stop;

static void s_on_signal(int sig)
{
    (void)sig;
    atomic_store(&s_stop, 1);
}

static const char s_usage[] =
    "usage: eigenbatch worker [--config FILE] [--set KEY=VALUE]... --connect EP0,EP1,...\n"
    "                         [--weight W] [--lead 0|1] [--out FILE] [--resume auto|PATH] "
    "[options]\n"
    "Runs one worker against the shards (EP0 is shard 0, the coordinator). --out writes the\n"
    "final parameters then buffers as raw little-endian float32. Only the lead (the worker the\n"
    "coordinator names: the lowest-id live one) writes the final weights (--out,\n"
    "weights.safetensors under --output-dir) and the metrics (metrics.jsonl): every worker ends\n"
    "with the same weights. --lead 0: no progress line when lead. Options may also come from\n"
    "the environment (EB_CONNECT, ...).\n";

/* Where the worker writes its final weights. */
struct s_finish {
    struct worker_synth *model; /* the model */
    const char *out;            /* path or NULL */
    uint64_t n_params;          /* sizes */
    uint64_t n_buffers;
    int rc;   /* write result */
    int lead; /* the coordinator names this worker the lead: it writes the final weights */
};

int worker_main_write_raw(const char *path, const float *params, uint64_t n_params,
                          const float *buffers, uint64_t n_buffers)
{
    int rc = RT_OK;
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(params, sizeof(float), n_params, fp) != n_params ||
        (n_buffers && fwrite(buffers, sizeof(float), n_buffers, fp) != n_buffers))
        rc = rt_err_set(RT_ERR_IO, "%s: %s", path, strerror(errno));
    if (fp && fclose(fp) && !rc)
        rc = rt_err_set(RT_ERR_IO, "%s: %s", path, strerror(errno));
    return rc;
}

static void s_write_final(void *user, uint64_t steps, const float *params, const float *buffers)
{
    (void)steps;
    struct s_finish *f = user;
    if (f->out && f->lead)
        f->rc = worker_main_write_raw(f->out, params, f->n_params, buffers, f->n_buffers);
}

static void s_lead_fwd(void *user, int is_lead)
{
    struct s_finish *f = user;
    f->lead = is_lead;
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

static int s_run(struct app_opts *opts, rt_config_t *cfg);

/* The worker's name: `given` (--name), else host:pid, with a random suffix when the pid is 1 (a
 * container's first process, where several workers of one host would all be host:1). */
static void s_name(const char *given, char *name, size_t cap)
{
    if (given && *given) {
        snprintf(name, cap, "%s", given);
        return;
    }
    char host[40] = "host";
    gethostname(host, sizeof host - 1);
    long pid = (long)getpid();
    unsigned suffix = 0;
    if (pid == 1 && getrandom(&suffix, sizeof suffix, 0) != (ssize_t)sizeof suffix)
        suffix = (unsigned)time(NULL);
    if (pid == 1)
        snprintf(name, cap, "%s:1-%04x", host, suffix & 0xffffu);
    else
        snprintf(name, cap, "%s:%ld", host, pid);
}

int worker_main(int argc, char **argv)
{
    return app_opts_main(argc, argv, s_usage, s_run);
}

/* The worker's body: endpoints, the model (synth or zoo), then the step loop. */
static int s_run(struct app_opts *opts, rt_config_t *cfg)
{
    (void)cfg;
    struct app_opts o = *opts;
    if (app_model_fill_sizes(&o)) {
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
        return 1;
    }
    if (!o.local.connect || strlen(o.local.connect) >= APP_MAX_LIST) {
        fprintf(stderr, "eigenbatch worker: --connect EP0,EP1,... is required\n");
        return 2;
    }
    char list[APP_MAX_LIST];
    snprintf(list, sizeof list, "%s", o.local.connect);
    const char *eps[APP_MAX_SHARDS];
    int n = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n >= APP_MAX_SHARDS) {
            fprintf(stderr, "eigenbatch worker: more than %d endpoints\n", APP_MAX_SHARDS);
            return 2;
        }
        eps[n++] = t;
    }
    enum rt_wire_checksum ck = RT_WIRE_CK_NONE;
    if (n < 1 || app_opts_checksum(&o, &ck)) {
        fprintf(stderr, "eigenbatch worker: %s\n", n < 1 ? "no endpoint" : rt_err_msg());
        return 2;
    }
    struct worker_synth model = {0};
    struct worker_app nnw;
    int zoo = strcmp(o.model.name, "synth") != 0;
    char resume[PATH_MAX];
    /* the shards load the checkpoint; the lead appends to metrics.jsonl when there is one */
    if (app_opts_resume(&o, resume, sizeof resume)) {
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
        return 1;
    }
    /* metrics.jsonl is opened when the coordinator names this worker the lead */
    int rc = zoo ? worker_app_open(&o, &nnw, 1, 0)
                 : worker_synth_init(&model, (uint64_t)o.train.seed, (uint64_t)o.model.params,
                                     (uint64_t)o.model.buffers);
    if (!rc && zoo) {
        /* the shards were sized by the launcher (or by hand): they must agree with the net */
        long np = (long)nn_net_param_count(nnw.net), nb = (long)nn_net_buffer_count(nnw.net);
        if ((o.model.params != np && o.model.params != 0) ||
            (o.model.buffers != nb && o.model.buffers != 0))
            rc = rt_err_set(RT_ERR_SHAPE,
                            "model %s has %ld parameters and %ld buffers, "
                            "--params/--buffers say %ld/%ld",
                            o.model.name, np, nb, o.model.params, o.model.buffers);
        o.model.params = np;
        o.model.buffers = nb;
        nn_set_threads((int)o.train.threads);
    }
    if (rc) {
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
        if (zoo)
            worker_app_close(&nnw);
        return 1;
    }
    char name[RT_WIRE_NAME_MAX];
    s_name(o.local.name, name, sizeof name);
    struct s_finish fin = {
        &model, o.local.out, (uint64_t)o.model.params, (uint64_t)o.model.buffers, 0, 0};
    struct worker_compute cb = {.user = &fin,
                                .init = s_init_fwd,
                                .compute = s_compute_fwd,
                                .lead = s_lead_fwd,
                                .finish = s_write_final};
    if (zoo)
        cb = worker_app_compute(&nnw);
    struct worker_cfg wc = {
        .name = name,
        .n_shards = n,
        .endpoints = eps,
        .n_params = (uint64_t)o.model.params,
        .n_buffers = (uint64_t)o.model.buffers,
        .weight = o.local.weight,
        .rebalance = app_opts_balance_measured(&o),
        .chunk_floats = (uint32_t)o.cluster.chunk,
        .checksum = ck,
        .timeout_ms = (int)o.cluster.timeout_ms,
        .coord_timeout_ms = (int)o.cluster.coordinator_timeout_ms,
        .stop = &s_stop,
        .decisions = o.local.eig_pub, /* the decision stream, when given */
    };
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rt_sock_tune_malloc();
    struct worker_stats st;
    rc = worker_run(&wc, &cb, &st);
    if (!rc && (zoo ? nnw.rc : fin.rc))
        rc = zoo ? nnw.rc : fin.rc;
    if (rc)
        fprintf(stderr, "eigenbatch worker: %s\n", rt_err_msg());
    else if (zoo && nnw.is_lead)
        RT_INFO("train",
                "%llu steps in %.1f s: %.1f samples/s, %.0f%% of the time in "
                "communication",
                (unsigned long long)st.steps, st.seconds,
                st.seconds > 0 ? (double)st.steps * (double)o.schedule.batch / st.seconds : 0.0,
                st.seconds > 0 ? 100.0 * st.comm_seconds / st.seconds : 0.0);
    if (zoo)
        worker_app_close(&nnw);
    else
        worker_synth_fini(&model);
    /* a non-finite loss has an exit status of its own: launch may roll back on it */
    return rt_err_exit_status(rc);
}
