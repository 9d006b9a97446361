/*
 * cmd_eig: `eigenbatch eig`: the top Hessian eigenvalue of a weights file on a dataset.
 *
 *   eigenbatch eig --model M --weights FILE.safetensors --data DIR [--classes N] [--first N]
 *                  [--block-last K] [--bn eval|train] [--preset paper|accurate] [--threads T]
 *                  [--seed S]
 *
 * The Hessian is that of the mean loss over the first N records (key order, evaluation
 * transform, no augmentation), through exact Hessian-vector products (eig_hvp): power iteration
 * under the paper preset, Lanczos under the accurate one (either by --method). The last
 * line printed is one JSON object: {"eigenvalue", "iterations", "seconds", "converged" (the
 * relative residual |Hv - lambda v| / |lambda| within the tolerance), "residual", "n",
 * "block_last_k", "bn", ...}.
 */
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "eigensvc_main.h"
#include "rt_opt.h"
#include "app_weights.h"
#include "eig_hvp.h"
#include "eig_analysis.h"
#include "eig_lanczos.h"
#include "eig_slq.h"
#include "eig_power.h"
#include "nn_net.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_loader.h"

#define S_CMD "eig"
#define S_DEFAULT_FIRST 128   /* samples of the Hessian batch */
#define S_DEFAULT_CLASSES 10  /* classes of the model */
#define S_DEFAULT_SAMPLES 100 /* --trace: Rademacher vectors */
#define S_DEFAULT_RUNS 8      /* --density: Lanczos runs */
#define S_DEFAULT_STEPS 80    /* --density: products per run */

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: eigenbatch eig --model M --weights FILE.safetensors --data DIR\n"
            "         [--classes N] [--first N] [--block-last K] [--bn eval|train]\n"
            "         [--preset paper|accurate] [--method power|lanczos [--top K]]\n"
            "         [--trace [--samples N]] [--density [--runs R] [--steps K] [--png FILE]]\n"
            "         [--tol X] [--max-iter N] [--no-reuse] [--threads T] [--seed S]\n"
            "Top Hessian eigenvalue of the mean loss on the first N records (default %d) of DIR;\n"
            "the last line is JSON {eigenvalue, iterations, seconds, converged, residual, ...}.\n"
            "--method lanczos (full reorthogonalisation): the top K eigenvalues at once, each to\n"
            "the preset's relative residual, within 5x the preset's products; the JSON adds\n"
            "eigenvalues, residuals and hvps. The accurate preset runs Lanczos and the paper\n"
            "preset power iteration unless --method says otherwise.\n"
            "--tol and --max-iter replace the preset's tolerance and products (Lanczos: at most\n"
            "5x those products). The products of one computation share its forward and backward\n"
            "passes (--no-reuse: each runs them again).\n"
            "--trace: Hutchinson's estimate of the trace from N Rademacher vectors (default %d),\n"
            "with its standard error. --density: the eigenvalue density by stochastic Lanczos\n"
            "quadrature, R runs (default %d) of K products (default %d), as grid and density\n"
            "arrays (and a PNG through gnuplot with --png).\n",
            S_DEFAULT_FIRST, S_DEFAULT_SAMPLES, S_DEFAULT_RUNS, S_DEFAULT_STEPS);
}

/* Parse "eval" / "train". */
static int s_bn_parse(const char *v, enum nn_bn_mode *out)
{
    if (strcasecmp(v, "eval") == 0)
        *out = NN_BN_EVAL;
    else if (strcasecmp(v, "train") == 0)
        *out = NN_BN_TRAIN;
    else
        return -1;
    return 0;
}

/* The command's options, as parsed. */
struct s_eig_args {
    const char *model;            /* --model: zoo name */
    const char *weights;          /* --weights: safetensors file */
    const char *data;             /* --data: LMDB directory */
    const char *preset_name;      /* --preset, as given */
    long classes;                 /* --classes */
    long first;                   /* --first: records in the Hessian batch */
    long block;                   /* --block-last: last K parameter blocks, 0 for all */
    long threads;                 /* --threads, 0 for the default */
    long seed;                    /* --seed of the power iteration */
    enum nn_bn_mode bn;           /* --bn */
    enum eig_power_preset preset; /* preset_name parsed */
    int lanczos;                  /* --method lanczos (1) or power (0); -1: the preset's own
                                     (accurate: Lanczos, paper: power) */
    long top;                     /* --top: eigenvalues wanted (lanczos) */
    int trace;                    /* --trace */
    long samples;                 /* --samples (trace) */
    int density;                  /* --density */
    long runs, steps;             /* --runs, --steps (density) */
    const char *png;              /* --png (density) */
    double tol;                   /* --tol: the preset's tolerance replaced (NaN: kept) */
    long max_iter;                /* --max-iter: the preset's products replaced (0: kept) */
    int no_reuse;                 /* --no-reuse: every product recomputes the forward pass */
};

static int s_check(struct s_eig_args *a);

/* The field and flag of a numeric option, by its short code. */
static long *s_long_field(struct s_eig_args *a, int ch, const char **flag)
{
    static const struct {
        int ch;
        const char *flag;
        size_t off;
    } fields[] = {
        {'c', "--classes", offsetof(struct s_eig_args, classes)},
        {'n', "--first", offsetof(struct s_eig_args, first)},
        {'k', "--block-last", offsetof(struct s_eig_args, block)},
        {'t', "--threads", offsetof(struct s_eig_args, threads)},
        {'s', "--seed", offsetof(struct s_eig_args, seed)},
        {'K', "--top", offsetof(struct s_eig_args, top)},
        {'S', "--samples", offsetof(struct s_eig_args, samples)},
        {'R', "--runs", offsetof(struct s_eig_args, runs)},
        {'L', "--steps", offsetof(struct s_eig_args, steps)},
        {'I', "--max-iter", offsetof(struct s_eig_args, max_iter)},
    };
    size_t i = 0;
    while (i + 1 < sizeof fields / sizeof fields[0] && fields[i].ch != ch)
        i++;
    *flag = fields[i].flag;
    return (long *)((char *)a + fields[i].off);
}

/*
 * Parse argv into *a and check it. Returns -1 to go on, else the command's exit status: 0 after
 * --help, 2 on a bad command line (the reason printed on stderr).
 */
static int s_parse(int argc, char **argv, struct s_eig_args *a)
{
    static const struct option opts[] = {{"model", required_argument, NULL, 'm'},
                                         {"weights", required_argument, NULL, 'w'},
                                         {"data", required_argument, NULL, 'd'},
                                         {"classes", required_argument, NULL, 'c'},
                                         {"first", required_argument, NULL, 'n'},
                                         {"block-last", required_argument, NULL, 'k'},
                                         {"bn", required_argument, NULL, 'b'},
                                         {"preset", required_argument, NULL, 'p'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"method", required_argument, NULL, 'M'},
                                         {"top", required_argument, NULL, 'K'},
                                         {"trace", no_argument, NULL, 'T'},
                                         {"samples", required_argument, NULL, 'S'},
                                         {"density", no_argument, NULL, 'D'},
                                         {"runs", required_argument, NULL, 'R'},
                                         {"steps", required_argument, NULL, 'L'},
                                         {"png", required_argument, NULL, 'P'},
                                         {"tol", required_argument, NULL, 'o'},
                                         {"max-iter", required_argument, NULL, 'I'},
                                         {"no-reuse", no_argument, NULL, 'U'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *a = (struct s_eig_args){.preset_name = "paper",
                             .classes = S_DEFAULT_CLASSES,
                             .first = S_DEFAULT_FIRST,
                             .bn = NN_BN_EVAL,
                             .lanczos = -1,
                             .top = 1,
                             .samples = S_DEFAULT_SAMPLES,
                             .runs = S_DEFAULT_RUNS,
                             .steps = S_DEFAULT_STEPS,
                             .tol = NAN};
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            a->model = optarg;
            break;
        case 'w':
            a->weights = optarg;
            break;
        case 'd':
            a->data = optarg;
            break;
        case 'p':
            a->preset_name = optarg;
            break;
        case 'c':
        case 'n':
        case 'k':
        case 't':
        case 's':
        case 'K':
        case 'S':
        case 'R':
        case 'L':
        case 'I': {
            const char *flag;
            long *field = s_long_field(a, ch, &flag);
            if (rt_opt_long(S_CMD, flag, optarg, field))
                return 2;
            break;
        }
        case 'b':
            if (s_bn_parse(optarg, &a->bn)) {
                fprintf(stderr, "eigenbatch eig: invalid value '%s' for --bn (eval|train)\n",
                        optarg);
                return 2;
            }
            break;
        case 'M':
            if (strcmp(optarg, "power") && strcmp(optarg, "lanczos")) {
                fprintf(stderr,
                        "eigenbatch eig: invalid value '%s' for --method "
                        "(power|lanczos)\n",
                        optarg);
                return 2;
            }
            a->lanczos = !strcmp(optarg, "lanczos");
            break;
        case 'T':
            a->trace = 1;
            break;
        case 'U':
            a->no_reuse = 1;
            break;
        case 'o':
            if (rt_opt_double(S_CMD, "--tol", optarg, &a->tol))
                return 2;
            break;
        case 'D':
            a->density = 1;
            break;
        case 'P':
            a->png = optarg;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            fprintf(stderr, "eigenbatch eig: unknown or incomplete option '%s'\n",
                    argv[optind - 1]);
            s_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "eigenbatch eig: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return s_check(a);
}

/* Check the parsed options together. -1 to go on, or 2 with the reason on stderr. */
static int s_check(struct s_eig_args *a)
{
    if (!a->model || !a->weights || !a->data) {
        fprintf(stderr, "eigenbatch eig: --model, --weights and --data are required\n");
        s_usage(stderr);
        return 2;
    }
    if (a->classes < 1 || a->first < 1 || a->first > (1L << 20) || a->block < 0 || a->threads < 0 ||
        a->seed < 0) {
        fprintf(stderr, "eigenbatch eig: --classes and --first must be >= 1 (--first <= 2^20), "
                        "--block-last, --threads and --seed >= 0\n");
        return 2;
    }
    if (eig_power_preset_parse(a->preset_name, &a->preset)) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        return 2;
    }
    /* without --method: the accurate preset is Lanczos (the accuracy asked for, in few products,
     * even when the top two eigenvalues are close); the paper preset is the reference's power
     * iteration */
    if (a->lanczos < 0)
        a->lanczos = a->preset == EIG_POWER_ACCURATE && !a->trace && !a->density;
    if (a->top < 1 || a->top > EIG_LANCZOS_MAX_TOP || (a->top > 1 && !a->lanczos)) {
        fprintf(stderr,
                "eigenbatch eig: --top must be in [1, %d], above 1 with --method "
                "lanczos\n",
                EIG_LANCZOS_MAX_TOP);
        return 2;
    }
    if (a->trace + a->density + a->lanczos > 1 || (a->png && !a->density)) {
        fprintf(stderr, "eigenbatch eig: one of --method lanczos, --trace and --density; --png "
                        "goes with --density\n");
        return 2;
    }
    if ((!isnan(a->tol) && !(a->tol >= 0 && a->tol < 1)) || a->max_iter < 0 ||
        a->max_iter > EIG_LANCZOS_MAX_ITER) {
        fprintf(stderr, "eigenbatch eig: --tol in [0, 1), --max-iter in [0, %d]\n",
                EIG_LANCZOS_MAX_ITER);
        return 2;
    }
    if (a->samples < 1 || a->samples > 1000000 || a->runs < 1 || a->runs > EIG_SLQ_MAX_RUNS ||
        a->steps < 1 || a->steps > EIG_LANCZOS_MAX_ITER) {
        fprintf(stderr,
                "eigenbatch eig: --samples in [1, 1e6], --runs in [1, %d], --steps in [1, %d]\n",
                EIG_SLQ_MAX_RUNS, EIG_LANCZOS_MAX_ITER);
        return 2;
    }
    return -1;
}

/*
 * Read the first a->first records of the dataset into x (caller owns it) and y (caller owns it),
 * after checking the dataset holds that many and every label is below --classes. Returns 0, or -1
 * with the reason printed; *x and *y are set even on failure (free them either way).
 */
static int s_read_batch(const struct s_eig_args *a, rt_loader_t *ld, size_t sample, float **x,
                        int32_t **y)
{
    *x = malloc((size_t)a->first * sample * sizeof(float));
    *y = malloc((size_t)a->first * sizeof(int32_t));
    if (!*x || !*y) {
        fprintf(stderr, "eigenbatch eig: out of memory for %ld samples\n", a->first);
        return -1;
    }
    if (rt_loader_read(ld, 0, (size_t)a->first, *x, *y)) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        return -1;
    }
    for (long i = 0; i < a->first; i++)
        if ((*y)[i] < 0 || (*y)[i] >= a->classes) {
            fprintf(stderr,
                    "eigenbatch eig: record %ld has label %d, outside [0, %ld) "
                    "(--classes)\n",
                    i, (int)(*y)[i], a->classes);
            return -1;
        }
    return 0;
}

/* The fields every result line carries, whatever the method: the batch, the block, the mode, the
 * preset, the model. NULL when out of memory. */
static json_t *s_json_common(const struct s_eig_args *a, const nn_net_t *net, const char *method)
{
    return json_pack("{s:s, s:i, s:i, s:s, s:s, s:s, s:I}", "method", method, "n", (int)a->first,
                     "block_last_k", (int)a->block, "bn", a->bn == NN_BN_EVAL ? "eval" : "train",
                     "preset", a->preset == EIG_POWER_ACCURATE ? "accurate" : "paper", "model",
                     a->model, "params", (json_int_t)nn_net_param_count(net));
}

/* j with extra's fields added; both consumed. NULL when either is NULL or out of memory. */
static json_t *s_json_merge(json_t *j, json_t *extra)
{
    if (j && extra && json_object_update(j, extra) == 0) {
        json_decref(extra);
        return j;
    }
    json_decref(j);
    json_decref(extra);
    return NULL;
}

/* Print the power iteration's result as the one-line JSON object the command ends with, with the
 * relative residual |Hv - lambda v| / |lambda| that `converged` compares with the tolerance.
 * Returns 0 or -1. */
static int s_report(const struct s_eig_args *a, const nn_net_t *net,
                    const struct eig_power_result *res, double secs)
{
    json_t *j = s_json_merge(s_json_common(a, net, "power"),
                             json_pack("{s:f, s:i, s:f, s:b, s:f}", "eigenvalue", res->eigenvalue,
                                       "iterations", (int)res->iterations, "seconds", secs,
                                       "converged", res->converged, "residual", res->residual));
    return eig_print_json(j);
}

/* Lanczos (--method lanczos, and the accurate preset's default): the top --top eigenvalues to the
 * preset's tolerance, in at most 5 times the preset's products; prints the JSON line. Returns the
 * exit status. */
static int s_run_lanczos(const struct s_eig_args *a, struct eig_hvp *hv,
                         const struct eig_power_config *pc)
{
    struct eig_lanczos_config lc = eig_hvp_lanczos_config(pc, (int)a->top);
    struct eig_lanczos_result r;
    double t0 = rt_clock_now();
    eig_hvp_begin(hv);
    int rc =
        eig_hvp_check(hv) || eig_lanczos_run(nn_net_param_count(hv->net), &lc, eig_hvp_fn, hv, &r);
    eig_hvp_end(hv);
    if (rc) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        return 1;
    }
    json_t *ev = json_array(), *rs = json_array();
    for (int i = 0; ev && rs && i < r.k; i++) {
        json_array_append_new(ev, json_real(r.eigenvalues[i]));
        json_array_append_new(rs, json_real(r.residuals[i]));
    }
    /* "o" takes ev and rs, also when the pack fails */
    json_t *j = s_json_merge(
        s_json_common(a, hv->net, "lanczos"),
        ev && rs ? json_pack("{s:f, s:i, s:i, s:f, s:b, s:f, s:I, s:o, s:o}", "eigenvalue",
                             r.eigenvalues[0], "iterations", (int)r.iterations, "hvps",
                             (int)r.iterations, "seconds", rt_clock_now() - t0, "converged",
                             r.converged, "residual", r.residuals[0], "memory_bytes",
                             (json_int_t)eig_lanczos_bytes(nn_net_param_count(hv->net), &lc),
                             "eigenvalues", ev, "residuals", rs)
                 : NULL);
    if (!(ev && rs)) {
        json_decref(ev);
        json_decref(rs);
    }
    return eig_print_json(j) ? 1 : 0;
}

/*
 * The computation: load the batch and the weights, run power iteration on Hessian-vector
 * products, print the result. Returns the command's exit status (0, or 1 with the reason printed).
 */
static int s_run(const struct s_eig_args *a)
{
    int status = 1;
    rt_loader_t *ld = NULL;
    nn_net_t *net = NULL;
    eig_power_t *pw = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    struct rt_loader_opts lo;
    rt_loader_opts_default(&lo);
    lo.threads = 0;
    lo.max_batch = (size_t)a->first;
    if (rt_loader_new(a->data, &lo, &ld)) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        goto out;
    }
    if ((size_t)a->first > rt_loader_count(ld)) {
        fprintf(stderr, "eigenbatch eig: --first %ld but %s holds %zu records\n", a->first, a->data,
                rt_loader_count(ld));
        goto out;
    }
    int c, h, w, err = 0;
    rt_loader_shape(ld, &c, &h, &w);
    net = nn_zoo_new(a->model, c, h, w, (int)a->classes, (int)a->first, &err);
    if (!net) {
        fprintf(stderr,
                "eigenbatch eig: cannot build model '%s' for %dx%dx%d inputs, %ld classes "
                "(error %d)\n",
                a->model, c, h, w, a->classes, err);
        goto out;
    }
    if (app_weights_load(net, a->weights)) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        goto out;
    }
    if (s_read_batch(a, ld, (size_t)c * (size_t)h * (size_t)w, &x, &y))
        goto out;
    struct eig_power_config pc;
    eig_power_config_preset(&pc, a->preset);
    pc.seed = (uint64_t)a->seed;
    if (!isnan(a->tol))
        pc.tol = a->tol;
    if (a->max_iter > 0)
        pc.max_iter = (int32_t)a->max_iter;
    pw = eig_power_new(nn_net_param_count(net), &pc);
    if (!pw) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        goto out;
    }
    struct eig_hvp hv = {.net = net,
                         .x = x,
                         .y = y,
                         .n = (int)a->first,
                         .bn = a->bn,
                         .block_last_k = (int)a->block,
                         .no_reuse = a->no_reuse};
    if (a->lanczos || a->trace || a->density) {
        status = a->lanczos ? s_run_lanczos(a, &hv, &pc)
                 : a->trace ? eig_analysis_trace(&hv, (int)a->samples, (uint64_t)a->seed)
                            : eig_analysis_density(&hv, (int)a->runs, (int)a->steps,
                                                   (uint64_t)a->seed, a->png);
        goto out;
    }
    struct eig_power_result res;
    double secs = 0;
    if (eig_hvp_top(pw, &hv, &res, &secs)) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        goto out;
    }
    if (s_report(a, net, &res, secs))
        goto out;
    status = 0;
out:
    eig_power_destroy(&pw);
    free(x);
    free(y);
    nn_net_destroy(&net);
    rt_loader_destroy(&ld);
    return status;
}

int eigensvc_eig_main(int argc, char **argv)
{
    struct s_eig_args a;
    int rc = s_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (a.threads > 0)
        nn_set_threads((int)a.threads);
    return s_run(&a);
}
