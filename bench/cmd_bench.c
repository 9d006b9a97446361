/*
 * cmd_bench: `eigenbatch bench KIND ...`, micro-benchmarks of the system's parts. This file is the
 * dispatcher on KIND and the "train" benchmark of the neural-network core; other kinds live in
 * their own files (eb_bench_ps, eb_bench_loader, eb_bench_hetero) and are registered in s_kinds.
 *
 *   eigenbatch bench train --model M --batch N --threads T [--steps K] [--input CxHxW]
 *                          [--classes N] [--seed S] [--device cpu|cuda|cuda:N]
 * times K training steps (forward + backward + SGD with momentum, BatchNorm in train mode, random
 * inputs and labels) and K full Hessian-vector products (BatchNorm in eval mode), after one warm-up
 * of each, on the device named (cpu by default; on a GPU the weights, the SGD update and the
 * momentum stay on the device, and each timed step and HVP ends when the device is done). Progress
 * goes to stderr; the last stdout line is one JSON object, with the process's peak resident memory
 * (peak_rss_mib: getrusage's maxrss, so everything the process touched) and the mean process CPU
 * seconds of a step and an HVP (step_cpu_s, hvp_cpu_s).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "eb_cli.h"
#include "nn_backend.h"
#include "nn_net.h"
#include "rt_log.h"

#define BENCH_DEFAULT_STEPS 10
#define BENCH_DEFAULT_CLASSES 10
#define BENCH_LR 0.01f /* SGD settings of the timed steps (their values do not matter) */
#define BENCH_MOMENTUM 0.9f
#define BENCH_WD 5e-4f

/* A benchmark kind: argv[0] is the kind's name. */
struct bench_kind {
    const char *name;                  /* "train", ... */
    int (*run)(int argc, char **argv); /* entry point, returns the exit status */
    const char *summary;               /* one line for `eigenbatch bench --help` */
};

static int s_bench_train(int argc, char **argv);

static const struct bench_kind s_kinds[] = {
    {"train", s_bench_train, "training steps and Hessian-vector products of a zoo model"},
    {"ps", eb_bench_ps, "parameter-server push+pull bandwidth, beside raw TCP"},
    {"loader", eb_bench_loader, "LMDB loader throughput (raw and JPEG)"},
    {"hetero", eb_bench_hetero, "equal vs measured shares with one worker slowed down"},
    {NULL, NULL, NULL},
};

static void s_usage(FILE *f)
{
    fprintf(f, "usage: eigenbatch bench KIND [OPTIONS]\n\nkinds:\n");
    for (const struct bench_kind *k = s_kinds; k->name; k++)
        fprintf(f, "  %-8s %s\n", k->name, k->summary);
}

int eb_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        s_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (const struct bench_kind *k = s_kinds; k->name; k++)
        if (!strcmp(k->name, argv[1]))
            return k->run(argc - 1, argv + 1);
    fprintf(stderr, "eigenbatch bench: unknown kind '%s'\n", argv[1]);
    s_usage(stderr);
    return 2;
}

/* ---- bench train ------------------------------------------------------------------------- */

struct train_opts {
    const char *model;  /* zoo model name */
    long batch;         /* samples per step */
    long threads;       /* GEMM and OpenMP threads */
    long steps;         /* timed steps (and HVPs) */
    int c, h, w;        /* input shape */
    long classes;       /* number of classes */
    long seed;          /* data and weight seed */
    const char *device; /* cpu, cuda, cuda:N */
};

static void s_train_usage(FILE *f)
{
    fprintf(f, "usage: eigenbatch bench train --model M --batch N --threads T [--steps K]\n"
               "                              [--input CxHxW] [--classes N] [--seed S]\n"
               "                              [--device cpu|cuda|cuda:N]\n"
               "models:");
    for (const char *const *m = nn_zoo_models(); *m; m++)
        fprintf(f, " %s", *m);
    fprintf(f, "\n");
}

static int s_parse_train(int argc, char **argv, struct train_opts *o)
{
    *o = (struct train_opts){NULL, 0,    1, BENCH_DEFAULT_STEPS, 1, 28, 28, BENCH_DEFAULT_CLASSES,
                             1,    "cpu"};
    for (int i = 1; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            s_train_usage(stdout);
            return 1;
        }
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "eigenbatch bench train: option %s needs a value\n", opt);
            return -1;
        }
        i++;
        int rc = 0;
        if (!strcmp(opt, "--model"))
            o->model = val;
        else if (!strcmp(opt, "--device"))
            o->device = val;
        else if (!strcmp(opt, "--batch"))
            rc = rt_opt_long("bench train", opt, val, &o->batch);
        else if (!strcmp(opt, "--threads"))
            rc = rt_opt_long("bench train", opt, val, &o->threads);
        else if (!strcmp(opt, "--steps"))
            rc = rt_opt_long("bench train", opt, val, &o->steps);
        else if (!strcmp(opt, "--classes"))
            rc = rt_opt_long("bench train", opt, val, &o->classes);
        else if (!strcmp(opt, "--seed"))
            rc = rt_opt_long("bench train", opt, val, &o->seed);
        else if (!strcmp(opt, "--input")) {
            char tail;
            if (sscanf(val, "%dx%dx%d%c", &o->c, &o->h, &o->w, &tail) != 3 || o->c < 1 ||
                o->h < 1 || o->w < 1) {
                fprintf(stderr,
                        "eigenbatch bench train: invalid value '%s' for --input "
                        "(expected CxHxW, e.g. 3x32x32)\n",
                        val);
                return -1;
            }
        } else {
            fprintf(stderr, "eigenbatch bench train: unknown option '%s'\n", opt);
            s_train_usage(stderr);
            return -1;
        }
        if (rc)
            return -1;
    }
    if (!o->model || o->batch < 1 || o->threads < 1 || o->steps < 1 || o->classes < 1) {
        fprintf(stderr, "eigenbatch bench train: need --model and positive --batch, --threads, "
                        "--steps, --classes\n");
        s_train_usage(stderr);
        return -1;
    }
    return 0;
}

static double s_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double s_now(void)
{
    return s_clock(CLOCK_MONOTONIC);
}

/* CPU seconds of the whole process (all threads): on a shared machine a 1-thread run's CPU time
 * is inflated less by other jobs than its wall-clock time. */
static double s_cpu(void)
{
    return s_clock(CLOCK_PROCESS_CPUTIME_ID);
}

/* nn's report callback: into the one log. */
static void s_report(int level, const char *msg, void *user)
{
    (void)user;
    rt_log(level <= 0   ? RT_LOG_DEBUG
           : level == 1 ? RT_LOG_INFO
           : level == 2 ? RT_LOG_WARN
                        : RT_LOG_ERROR,
           "nn", "%s", msg);
}

/* Wall and CPU seconds of the timed passes of one kind. */
struct s_timing {
    double wall;     /* total wall seconds */
    double wall_min; /* fastest pass */
    double cpu;      /* total CPU seconds of the process */
};

static void s_timing_add(struct s_timing *t, double wall, double cpu)
{
    t->wall += wall;
    t->cpu += cpu;
    t->wall_min = wall < t->wall_min ? wall : t->wall_min;
}

/* One warm-up and o->steps timed products H v (full Hessian, BatchNorm eval); with reuse, the
 * products of one eigen computation (nn_net_hvp_reuse: the warm-up runs the forward and gradient
 * passes, every timed product only the R-passes). */
static struct s_timing s_time_hvp(nn_net_t *net, const struct train_opts *o, const float *x,
                                  const int32_t *labels, const float *v, float *hv, int reuse)
{
    struct s_timing t = {.wall_min = 1e30};
    nn_net_hvp_reuse(net, reuse);
    for (long s = -1; s < o->steps; s++) { /* s = -1: warm-up, not timed */
        double t0 = s_now(), c0 = s_cpu();
        nn_net_hvp(net, x, labels, (int)o->batch, NN_BN_EVAL, 0, v, hv);
        double dt = s_now() - t0;
        if (s < 0)
            continue;
        s_timing_add(&t, dt, s_cpu() - c0);
        fprintf(stderr, "bench train %s: %shvp %ld/%ld %.2f ms\n", o->model, reuse ? "reused " : "",
                s + 1, o->steps, dt * 1e3);
    }
    nn_net_hvp_reuse(net, 0);
    return t;
}

/* The result line's object (caller owns it), or NULL when out of memory. Training FLOPs: forward
 * + two backward GEMMs (input and weight gradients) = 3 x forward. */
/* Peak resident memory of this process in MiB (getrusage's maxrss), -1 when unknown. */
static double s_peak_mib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : -1.0;
}

static json_t *s_train_json(const struct train_opts *o, nn_net_t *net, const struct s_timing *st,
                            const struct s_timing *hv, const struct s_timing *re)
{
    const double step_s = st->wall / o->steps, hvp_s = hv->wall / o->steps;
    const double reuse_s = re->wall / o->steps, flops = nn_net_forward_flops(net);
    char input[64];
    snprintf(input, sizeof input, "%dx%dx%d", o->c, o->h, o->w);
    json_t *js = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "model",
        o->model, "device", o->device, "batch", (json_int_t)o->batch, "threads",
        (json_int_t)o->threads, "steps", (json_int_t)o->steps, "input", input, "classes",
        (json_int_t)o->classes, "params", (json_int_t)nn_net_param_count(net), "flops_per_image",
        flops, "images_per_s", o->batch / step_s, "step_s", step_s, "step_s_min", st->wall_min,
        "hvp_s", hvp_s, "hvp_s_min", hv->wall_min, "hvp_over_step", hvp_s / step_s, "gflops",
        3.0 * flops * o->batch / step_s * 1e-9);
    if (js && json_object_update_new(
                  js, json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "hvp_reuse_s",
                                reuse_s, "hvp_reuse_s_min", re->wall_min, "hvp_reuse_over_step",
                                reuse_s / step_s, "hvp_reuse_over_step_min",
                                re->wall_min / st->wall_min, "step_cpu_s", st->cpu / o->steps,
                                "hvp_over_step_cpu", hv->cpu / st->cpu, "hvp_reuse_cpu_s",
                                re->cpu / o->steps, "hvp_reuse_over_step_cpu", re->cpu / st->cpu,
                                "hvp_cpu_s", hv->cpu / o->steps, "peak_rss_mib", s_peak_mib()))) {
        json_decref(js);
        js = NULL;
    }
    return js;
}

static int s_bench_train(int argc, char **argv)
{
    struct train_opts o;
    int rc = s_parse_train(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    nn_set_report(s_report, NULL);
    nn_set_threads((int)o.threads);
    int err = 0, status = 1;
    const struct nn_backend_ops *be = NULL;
    if (nn_backend_get(o.device, &be) != NN_OK) { /* before the host net of a large model */
        fprintf(stderr, "eigenbatch bench train: %s\n", nn_backend_why());
        return 2;
    }
    nn_net_t *net = nn_zoo_new(o.model, o.c, o.h, o.w, (int)o.classes, (int)o.batch, &err);
    if (!net) {
        fprintf(stderr, "eigenbatch bench train: cannot build model '%s' for %dx%dx%d: %s\n",
                o.model, o.c, o.h, o.w, nn_strerror(err));
        return 2;
    }
    nn_net_init(net, (uint64_t)o.seed);
    if (strcmp(o.device, "cpu") && nn_net_to_backend(net, o.device, o.model) != NN_OK) {
        fprintf(stderr, "eigenbatch bench train: %s\n",
                *nn_backend_why() ? nn_backend_why() : "the model does not fit the device");
        nn_net_destroy(&net);
        return 2;
    }
    size_t np = nn_net_param_count(net), nx = (size_t)o.batch * o.c * o.h * o.w;
    float *x = malloc(nx * sizeof *x);
    int32_t *labels = malloc((size_t)o.batch * sizeof *labels);
    float *v = malloc(np * sizeof *v);
    float *hv = malloc(np * sizeof *hv);
    json_t *js = NULL;
    if (!x || !labels || !v || !hv) {
        fprintf(stderr, "eigenbatch bench train: out of memory\n");
        goto out_free;
    }
    struct nn_rng rng;
    nn_rng_seed(&rng, (unsigned long long)o.seed + 1);
    for (size_t i = 0; i < nx; i++)
        x[i] = nn_rng_uniform(&rng);
    for (long i = 0; i < o.batch; i++)
        labels[i] = (int32_t)(nn_rng_next(&rng) % (unsigned long long)o.classes);
    for (size_t i = 0; i < np; i++)
        v[i] = nn_rng_normal(&rng);

    RT_INFO("bench", "%s: %zu parameters, %.1f MFLOP/image forward, batch %ld, %ld threads",
            o.model, np, nn_net_forward_flops(net) * 1e-6, o.batch, o.threads);
    struct s_timing step = {.wall_min = 1e30};
    float loss = 0;
    for (long s = -1; s < o.steps; s++) { /* s = -1: warm-up, not timed */
        double t0 = s_now(), c0 = s_cpu();
        nn_net_zero_grad(net);
        loss = nn_net_train_pass(net, x, labels, (int)o.batch, NN_BN_TRAIN,
                                 NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS, 1.0f, NULL, NULL);
        if (nn_net_sgd_step(net, BENCH_LR, BENCH_MOMENTUM, BENCH_WD) != NN_OK) {
            fprintf(stderr, "eigenbatch bench train: the SGD step failed on %s\n", o.device);
            goto out_free;
        }
        double dt = s_now() - t0, dc = s_cpu() - c0;
        if (s < 0)
            continue;
        s_timing_add(&step, dt, dc);
        fprintf(stderr, "bench train %s: step %ld/%ld %.2f ms loss %.4f\n", o.model, s + 1, o.steps,
                dt * 1e3, loss);
    }
    struct s_timing plain = s_time_hvp(net, &o, x, labels, v, hv, 0);
    struct s_timing reused = s_time_hvp(net, &o, x, labels, v, hv, 1);
    js = s_train_json(&o, net, &step, &plain, &reused);
    char *line = js ? json_dumps(js, JSON_COMPACT) : NULL;
    if (!line) {
        fprintf(stderr, "eigenbatch bench train: cannot format the result\n");
        goto out_free;
    }
    printf("%s\n", line);
    fflush(stdout);
    free(line);
    status = 0;

out_free:
    json_decref(js);
    free(hv);
    free(v);
    free(labels);
    free(x);
    nn_net_destroy(&net);
    return status;
}
