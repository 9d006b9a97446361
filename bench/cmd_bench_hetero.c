/*
 * cmd_bench_hetero: `eigenbatch bench hetero` measures what measured share balancing
 * (cluster.balance: measured) buys on unequal machines. Two workers and S shards run as threads of
 * this process (cluster_embed) on the synthetic model (worker_synth: its compute grows with the
 * share); worker 1 is made `--slowdown F` times slower by sleeping, after each compute, F - 1
 * times the time the compute took. The same run goes once with equal static shares and once with
 * measured balancing; the JSON line printed last holds both speeds in steps per second, their
 * ratio and the final shares of the measured run. Synchronous steps wait for the slowest worker,
 * so with equal shares a step lasts F halves of the work; with shares in proportion to speed
 * (1 : 1/F) it lasts F / (F + 1) of it: for F = 3 the ideal ratio is 2. The two runs alternate
 * `--repeat` times and the best speed of each is kept (a busy machine only ever slows a run down).
 *
 *   eigenbatch bench hetero [--slowdown F] [--steps K] [--batch B] [--params P] [--shards S]
 *                           [--repeat R]
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_embed.h"
#include "eb_cli.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "server_fixsched.h"
#include "worker_synth.h"

#define S_WORKERS 2 /* worker 0 at full speed, worker 1 slowed down */
#define S_SEED 7    /* synthetic data and weights */
#define S_LR 1e-4f  /* SGD settings (their values do not matter) */
#define S_MOMENTUM 0.9f
#define S_MAX_SLEEP_S 10.0 /* a bound on one step's added sleep */

struct s_opts {
    double slowdown; /* worker 1's compute takes this many times as long */
    long steps;      /* steps of each run */
    long batch;      /* global batch */
    long params;     /* synthetic model size (compute per sample grows with it) */
    long shards;     /* parameter-server shards */
    long repeat;     /* alternations of the two runs; the best of each is kept */
};

/* A worker's compute, slowed down by a factor, recording its last share. */
struct s_slow {
    struct worker_synth model; /* the synthetic model */
    double factor;             /* >= 1: compute time is multiplied by this */
    uint32_t last_share;       /* share of the last step computed */
    uint32_t last_samples;     /* samples of that step */
};

static int s_slow_compute(void *user, const struct worker_step *st, const float *params,
                          float *grads, float *buffers, uint32_t *samples, float *loss)
{
    struct s_slow *sl = user;
    double t0 = rt_clock_now();
    struct worker_compute c = worker_synth_compute(&sl->model);
    int rc = c.compute(&sl->model, st, params, grads, buffers, samples, loss);
    double extra = (sl->factor - 1) * (rt_clock_now() - t0);
    if (extra > S_MAX_SLEEP_S)
        extra = S_MAX_SLEEP_S;
    if (extra > 0) {
        struct timespec ts = {(time_t)extra, (long)((extra - (double)(time_t)extra) * 1e9)};
        while (nanosleep(&ts, &ts) && errno == EINTR)
            ;
    }
    sl->last_share = st->share_count;
    sl->last_samples = st->samples;
    return rc;
}

static int s_slow_init(void *user, float *params, float *buffers)
{
    worker_synth_initial(&((struct s_slow *)user)->model, params, buffers);
    return RT_OK;
}

/* One run: steps per second (the slowest worker's steps over its wall time) into *steps_per_s and
 * the final share fractions into shares. Returns 0 or an rt_err code. */
static int s_run(const struct s_opts *o, int measured, double *steps_per_s, double *shares)
{
    struct server_fixsched_cfg fc = {.batch = (uint32_t)o->batch,
                                     .lr = S_LR,
                                     .n_samples = (uint64_t)o->batch * (uint64_t)o->steps,
                                     .steps = (uint64_t)o->steps};
    struct server_coord_sched sched;
    int rc = server_fixsched_new(&fc, &sched);
    if (rc)
        return rc;
    struct s_slow sl[S_WORKERS];
    struct worker_compute cbs[S_WORKERS];
    struct worker_stats st[S_WORKERS];
    memset(sl, 0, sizeof sl);
    for (int i = 0; i < S_WORKERS && !rc; i++) {
        rc = worker_synth_init(&sl[i].model, S_SEED, (uint64_t)o->params, 0);
        sl[i].factor = i == S_WORKERS - 1 ? o->slowdown : 1.0;
        cbs[i] =
            (struct worker_compute){.user = &sl[i], .init = s_slow_init, .compute = s_slow_compute};
    }
    struct cluster_embed_cfg cc = {
        .n_shards = (int)o->shards,
        .n_workers = S_WORKERS,
        .transport = "inproc",
        .where = measured ? "hetero-measured" : "hetero-equal",
        .n_params = (uint64_t)o->params,
        .momentum = S_MOMENTUM,
        .sched = &sched,
        .compute = cbs,
        .rebalance = measured,
        .checksum = RT_WIRE_CK_NONE,
    };
    if (!rc)
        rc = cluster_embed_run(&cc, NULL, NULL, st);
    if (!rc) {
        double secs = 0;
        for (int i = 0; i < S_WORKERS; i++) {
            secs = st[i].seconds > secs ? st[i].seconds : secs;
            shares[i] = sl[i].last_samples ? (double)sl[i].last_share / sl[i].last_samples : 0;
        }
        *steps_per_s = secs > 0 ? (double)o->steps / secs : 0;
    }
    for (int i = 0; i < S_WORKERS; i++)
        worker_synth_fini(&sl[i].model);
    server_fixsched_destroy(&sched);
    return rc;
}

static const char s_usage[] =
    "usage: eigenbatch bench hetero [--slowdown F] [--steps K] [--batch B] [--params P]\n"
    "                               [--shards S] [--repeat R]\n"
    "Two workers (threads) on the synthetic model, worker 1 slowed down F times (default 3),\n"
    "trained K steps (60) at batch B (256) with P parameters (50000) and S shards (2): once\n"
    "with equal static shares, once with shares balanced to measured speed, alternating R\n"
    "times (3; the best of each is kept). Prints JSON: equal_steps_per_s,\n"
    "measured_steps_per_s, speedup and the final shares.\n";

/* Parse the options into *o. Returns 0, 1 after --help, or 2 after printing the problem. */
static int s_parse(int argc, char **argv, struct s_opts *o)
{
    *o = (struct s_opts){
        .slowdown = 3, .steps = 60, .batch = 256, .params = 50000, .shards = 2, .repeat = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(s_usage, stdout);
            return 1;
        }
        if (!v)
            break;
        if (!strcmp(a, "--slowdown"))
            o->slowdown = strtod(v, &end);
        else if (!strcmp(a, "--steps"))
            o->steps = strtol(v, &end, 10);
        else if (!strcmp(a, "--batch"))
            o->batch = strtol(v, &end, 10);
        else if (!strcmp(a, "--params"))
            o->params = strtol(v, &end, 10);
        else if (!strcmp(a, "--shards"))
            o->shards = strtol(v, &end, 10);
        else if (!strcmp(a, "--repeat"))
            o->repeat = strtol(v, &end, 10);
        if (!end || *end) {
            fprintf(stderr, "eigenbatch bench hetero: bad option '%s %s'\n%s", a, v, s_usage);
            return 2;
        }
        i++;
    }
    if (argc % 2 == 0 || !(o->slowdown >= 1 && o->slowdown <= 100) || o->steps < 4 ||
        o->batch < S_WORKERS || o->batch > 1000000 || o->shards < 1 || o->params < o->shards ||
        o->repeat < 1 || o->repeat > 100) {
        fprintf(stderr,
                "eigenbatch bench hetero: options out of range (slowdown 1..100, steps "
                ">= 4, batch >= 2, params >= shards, repeat 1..100)\n%s",
                s_usage);
        return 2;
    }
    return 0;
}

int eb_bench_hetero(int argc, char **argv)
{
    struct s_opts o;
    int rc = s_parse(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;
    double eq = 0, me = 0, eq_sh[S_WORKERS] = {0}, me_sh[S_WORKERS] = {0};
    fprintf(stderr, "bench hetero: slowdown %g, %ld steps of batch %ld, %ld parameters\n",
            o.slowdown, o.steps, o.batch, o.params);
    for (long r = 0; r < o.repeat && !rc; r++) {
        double sps, sh[S_WORKERS];
        rc = s_run(&o, 0, &sps, sh);
        if (!rc && sps > eq) {
            eq = sps;
            memcpy(eq_sh, sh, sizeof sh);
        }
        if (!rc)
            rc = s_run(&o, 1, &sps, sh);
        if (!rc && sps > me) {
            me = sps;
            memcpy(me_sh, sh, sizeof sh);
        }
        fprintf(stderr, "bench hetero: repeat %ld: best equal %.2f, measured %.2f steps/s\n", r + 1,
                eq, me);
    }
    if (rc) {
        fprintf(stderr, "eigenbatch bench hetero: %s\n", rt_err_msg());
        return 1;
    }
    json_t *j =
        json_pack("{s:s, s:f, s:i, s:i, s:i, s:f, s:f, s:f, s:[f, f], s:[f, f]}", "bench", "hetero",
                  "slowdown", o.slowdown, "steps", (json_int_t)o.steps, "batch",
                  (json_int_t)o.batch, "params", (json_int_t)o.params, "equal_steps_per_s", eq,
                  "measured_steps_per_s", me, "speedup", eq > 0 ? me / eq : 0.0, "equal_shares",
                  eq_sh[0], eq_sh[1], "measured_shares", me_sh[0], me_sh[1]);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!s) {
        json_decref(j);
        return 1;
    }
    printf("%s\n", s);
    free(s);
    json_decref(j);
    return 0;
}
