/*
 * cmd_simulate: `eigenbatch simulate`, the wall-clock time of a batch-size schedule on 8 to 4,096
 * processes under (a) the paper's model (Yao et al., Table 3: ring all-reduce, every Hessian
 * computation on the critical path) and (b) this system (W workers, S shards, the eigen service on
 * its own device). The schedule comes from a run's metrics.jsonl (`--metrics`), from rules on the
 * command line (`--method ...`), or, by default, the paper's four ImageNet schedules.
 * `--paper-table3` reproduces the paper's Table 3. The arithmetic lives in sim_model.{c,h}, the
 * tables, JSON and the gnuplot figure in sim_report.{c,h}; this file reads the options and the
 * metrics and builds the schedules.
 *
 * Options are described once, in the rt_opt table s_opts: the parser, the defaults, the EB_*
 * variables and --help all read it.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "eb_cli.h"
#include "rt_err.h"
#include "rt_opt.h"
#include "sim_model.h"
#include "sim_report.h"

#define S_CMD "simulate"
#define S_EPOCHS_MAX 1000000 /* largest epoch number accepted from metrics */

/* ---- options ------------------------------------------------------------------------------ */

/* Rules of a schedule (--method): given without --method they are an error. */
struct s_rules {
    double samples;    /* --samples N */
    double epochs;     /* --epochs E */
    double batch;      /* --batch B */
    double batch_max;  /* --batch-max M */
    const char *decay; /* --decay-epochs LIST (GG) */
    double gg_factor;  /* --gg-factor F */
    double beta;       /* --beta */
    double grow_every; /* --grow-every D */
    double gamma;      /* --gamma */
    double omega;      /* --omega */
    double tau;        /* --tau (NaN: epochs / 2) */
};

struct s_args {
    int paper_table3;      /* --paper-table3 */
    const char *metrics;   /* --metrics FILE */
    const char *method;    /* --method BL|GG|ABS|ABSA */
    const char *name;      /* --name: label of a --metrics schedule */
    struct s_rules rules;  /* --samples ... --tau */
    const char *hw;        /* --hw here|paper: model (b)'s constants */
    double params;         /* --params P */
    double shards;         /* --shards S (0: one per worker) */
    const char *decisions; /* --decisions async|sync */
    double sample_s;       /* overrides of the --hw preset (NaN: the preset's) */
    double floor_s;
    double fgsm_cost;
    double hessian_s;
    double bw;
    double latency_s;
    double msg_s;
    const char *procs; /* --procs LIST */
    double detail;     /* --detail P: breakdown at P processes (0: none) */
    int json;          /* --json */
    const char *plot;  /* --plot FILE.png */
};

/* A row of s_opts: a per-process option (no configuration key), flag only; then min, max,
 * choices, help (S_POS and S_NONNEG stand for min, max). */
#define S_OPT(field, flag, type, def, ...)                                                         \
    {                                                                                              \
        NULL, flag, RT_OPT_##type, offsetof(struct s_args, field), def, __VA_ARGS__                \
    }
#define S_POS RT_OPT_POSITIVE, RT_OPT_UNBOUNDED /* a number > 0 */
#define S_NONNEG 0, RT_OPT_UNBOUNDED            /* a number >= 0 */
#define S_HW_UNSET "; unset: the --hw preset's"

static const struct rt_opt s_opts[] = {
    S_OPT(paper_table3, "paper-table3", SWITCH, NULL, 0, 0, NULL,
          "the paper's Table 3 (512 processes) under its model, beside this system's"),
    S_OPT(metrics, "metrics", STR, NULL, 0, 0, NULL,
          "the schedule of a run: its epoch events (steps, batch_size, gamma) and eig events"),
    S_OPT(name, "name", STR, NULL, 0, 0, NULL, "label of the --metrics schedule (unset: run)"),
    S_OPT(method, "method", STR, NULL, 0, 0, NULL,
          "a schedule by rules: BL, GG, ABS or ABSA (with the options below)"),
    S_OPT(rules.samples, "samples", FLOAT, "1281167", S_POS, NULL,
          "training samples; an epoch is ceil(samples / batch) updates"),
    S_OPT(rules.epochs, "epochs", FLOAT, "90", S_POS, NULL, "epochs"),
    S_OPT(rules.batch, "batch", FLOAT, "256", S_POS, NULL, "(starting) global batch"),
    S_OPT(rules.batch_max, "batch-max", FLOAT, "16384", S_NONNEG, NULL,
          "cap of the growing batch (GG, ABS, ABSA); 0: none"),
    S_OPT(rules.decay, "decay-epochs", STR, "30,60,80", 0, 0, NULL,
          "GG: epochs at which the batch grows"),
    S_OPT(rules.gg_factor, "gg-factor", FLOAT, "10", S_POS, NULL, "GG: batch factor at each"),
    S_OPT(rules.beta, "beta", FLOAT, "2", S_POS, NULL, "ABS/ABSA: batch factor at a growth"),
    S_OPT(rules.grow_every, "grow-every", FLOAT, "10", S_POS, NULL,
          "ABS/ABSA: epochs per batch size (kappa: the timer alone)"),
    S_OPT(rules.gamma, "gamma", FLOAT, "0.2", S_NONNEG, NULL,
          "ABSA: adversarial share, / omega at each growth"),
    S_OPT(rules.omega, "omega", FLOAT, "2", S_POS, NULL, "ABSA: gamma's divisor"),
    S_OPT(rules.tau, "tau", FLOAT, NULL, S_NONNEG, NULL,
          "ABSA: no adversarial samples from this epoch on (unset: --epochs / 2)"),
    S_OPT(hw, "hw", STR, "here", 0, 0, "here|paper",
          "model (b)'s constants: measured here (CPU cores, tcp) or the paper's (GPUs; "
          "--paper-table3's default)"),
    S_OPT(params, "params", FLOAT, "11689512", S_POS, NULL, "parameters (fp32): ResNet-18's"),
    S_OPT(shards, "shards", FLOAT, "0", S_NONNEG, NULL, "model (b): shards; 0: one per worker"),
    S_OPT(decisions, "decisions", STR, "async", 0, 0, "async|sync",
          "model (b): sync makes every measured epoch end wait for the eigen service"),
    S_OPT(sample_s, "sample-s", FLOAT, NULL, S_NONNEG, NULL,
          "model (b): training compute per sample on one worker, s" S_HW_UNSET),
    S_OPT(floor_s, "floor-s", FLOAT, NULL, S_NONNEG, NULL,
          "model (b): least compute time of an update on a worker, s" S_HW_UNSET),
    S_OPT(fgsm_cost, "fgsm-cost", FLOAT, NULL, S_NONNEG, NULL,
          "model (b): extra compute per adversarial sample, in training samples" S_HW_UNSET),
    S_OPT(hessian_s, "hessian-s", FLOAT, NULL, S_NONNEG, NULL,
          "model (b): one top-eigenvalue computation of the eigen service, s" S_HW_UNSET),
    S_OPT(bw, "bw", FLOAT, NULL, S_POS, NULL,
          "model (b): link bandwidth per direction, bytes/s" S_HW_UNSET),
    S_OPT(latency_s, "latency-s", FLOAT, NULL, S_NONNEG, NULL,
          "model (b): one message's latency on a link, s" S_HW_UNSET),
    S_OPT(msg_s, "msg-s", FLOAT, NULL, S_NONNEG, NULL,
          "model (b): software cost of one message at a shard or worker, s" S_HW_UNSET),
    S_OPT(procs, "procs", STR, "8,16,32,64,128,256,512,1024,2048,4096", 0, 0, NULL,
          "process counts (workers in model (b)), comma-separated"),
    S_OPT(detail, "detail", FLOAT, "512", S_NONNEG, NULL,
          "also break the times down at this many processes; 0: no"),
    S_OPT(json, "json", SWITCH, NULL, 0, 0, NULL, "one JSON object on stdout instead of tables"),
    S_OPT(plot, "plot", STR, NULL, 0, 0, NULL,
          "draw time against processes (gnuplot) into this PNG file"),
};
#define S_N_OPTS ((int)(sizeof s_opts / sizeof s_opts[0]))

static const char s_about[] =
    "usage: eigenbatch simulate --paper-table3 [--json]\n"
    "       eigenbatch simulate [--metrics FILE | --method M [rules]] [constants] [output]\n"
    "\n"
    "Wall-clock time of a batch-size schedule on --procs processes, under\n"
    "  (a) the paper's model (Yao et al., Table 3): ring all-reduce of the gradient over all p\n"
    "      processes, 2 (p-1)/p * bytes / bw + 2 (p-1) * latency per update (alpha-beta), and\n"
    "      every Hessian computation (1.15 s) on the critical path. Its constants are the\n"
    "      paper's: 2.2e-2 s of compute per update (ABSA 3.6e-2 s), taken as the time of a\n"
    "      process's share of up to 32 samples (B_max 16384 on 512 processes), larger shares\n"
    "      in proportion; 1.5e-2 s of communication at 512 processes, from a 10 GB/s link\n"
    "      and a latency solved to give it for ResNet-18 (46.8 MB of fp32 gradient). GG's\n"
    "      last 1,080 updates (50 and 500 samples a process) put it 0.55% above 6150 s.\n"
    "  (b) this system: W = p workers push to S shards and pull the weights,\n"
    "      2 * (max(bytes, bytes * W / S) / bw + latency + max(W, S) * msg) per update;\n"
    "      compute max(floor, ceil(B / W) * sample) * (1 + gamma * fgsm-cost); the eigen\n"
    "      service on its own device, off the critical path unless --decisions sync (then\n"
    "      each measured epoch end waits hessian-s plus a weight snapshot).\n"
    "Compute and communication do not overlap in either model.\n"
    "\n"
    "Schedules: by default the paper's four on ImageNet (1,281,167 images, 90 epochs): BL at\n"
    "256; GG x10 at epochs 30, 60, 80 (256 to 256,000); ABS and ABSA doubling from 256 to\n"
    "16384 every D epochs, one Hessian per epoch end below 16384, ABSA's gamma 0.2 halved at\n"
    "each growth and 0 from epoch 45. The paper gives only their totals: D, hence the\n"
    "update and Hessian counts, is backed out so that model (a) at 512 processes gives\n"
    "2666 s (ABS) and 3467 s (ABSA); --paper-table3 prints them. --metrics takes the\n"
    "updates, batch and gamma of each epoch event and counts eig events as Hessians;\n"
    "--method builds one from the rules below. --hw here: constants measured on the\n"
    "build machine (bench/RESULTS.md, \"Simulated wall-clock time\"): one CPU core per\n"
    "worker, tcp; --hw paper: the paper's GPU constants with this system's message cost\n"
    "and FGSM costed so that an update at gamma 0.2 takes the paper's 3.6e-2 s.\n"
    "\n"
    "options:\n";

/* Parse argv into *a (rt_opt: defaults, EB_* variables, flags); *rules_given: a schedule rule
 * (--samples ... --tau) was on the command line; *hw_given: --hw was. 0, RT_OPT_HELP after
 * printing --help, or -1 after a message. */
static int s_parse(int argc, char **argv, struct s_args *a, int *rules_given, int *hw_given)
{
    memset(a, 0, sizeof *a);
    rt_config_t *cfg = NULL; /* empty: the rows have no keys */
    int rc = rt_opt_parse(s_opts, S_N_OPTS, a, argc, argv, &cfg);
    rt_config_destroy(&cfg);
    if (rc == RT_OPT_HELP) {
        fputs(s_about, stdout);
        rt_opt_help(s_opts, S_N_OPTS, stdout);
        return RT_OPT_HELP;
    }
    if (rc) {
        const char *msg = rt_err_msg(), *own = S_CMD ": ";
        if (!strncmp(msg, own, strlen(own)))
            msg += strlen(own); /* rt_opt names the command itself */
        fprintf(stderr, "eigenbatch %s: %s\n", S_CMD, msg);
        return -1;
    }
    *rules_given = 0;
    for (const struct rt_opt *o = s_opts; o < s_opts + S_N_OPTS; o++)
        if (o->off >= offsetof(struct s_args, rules) &&
            o->off < offsetof(struct s_args, rules) + sizeof(struct s_rules))
            *rules_given |= rt_opt_given(s_opts, S_N_OPTS, o, argc, argv);
    *hw_given =
        rt_opt_given(s_opts, S_N_OPTS, rt_opt_find(s_opts, S_N_OPTS, NULL, "hw"), argc, argv);
    return 0;
}

/* Parse a comma-separated list of numbers > 0 for option opt (NULL: given empty, which rt_opt
 * stores as unset). Returns the count, or -1. */
static int s_list(const char *opt, const char *text, double *out, int max)
{
    int n = 0;
    const char *p = text ? text : "";
    while (*p) {
        char *end = NULL;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || errno || !isfinite(v) || !(v > 0) || (*end && *end != ',') || n == max) {
            fprintf(stderr,
                    "eigenbatch %s: invalid value '%s' for %s (up to %d numbers > 0, "
                    "comma-separated)\n",
                    S_CMD, text, opt, max);
            return -1;
        }
        out[n++] = v;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        fprintf(stderr, "eigenbatch %s: %s is empty\n", S_CMD, opt);
        return -1;
    }
    return n;
}

/* ---- hardware constants of model (b) ------------------------------------------------------ */

/* The --hw preset, then the overrides given. 0, or -1 after a message. */
static int s_hw(const struct s_args *a, struct sim_hw *hw)
{
    if (!strcmp(a->hw, "here")) {
        sim_here_hw(hw);
    } else if (!strcmp(a->hw, "paper")) {
        sim_paper_hw(hw);
        hw->msg_s = SIM_HERE_MSG_S; /* the paper has no such figure: this system's, measured */
    } else {
        fprintf(stderr, "eigenbatch %s: invalid value '%s' for --hw (here or paper)\n", S_CMD,
                a->hw);
        return -1;
    }
    const struct {
        double v;
        double *dst;
    } over[] = {
        {a->sample_s, &hw->sample_s},   {a->floor_s, &hw->floor_s}, {a->fgsm_cost, &hw->fgsm_cost},
        {a->hessian_s, &hw->hessian_s}, {a->bw, &hw->bw},           {a->latency_s, &hw->latency_s},
        {a->msg_s, &hw->msg_s}};
    for (size_t i = 0; i < sizeof over / sizeof over[0]; i++)
        if (!isnan(over[i].v))
            *over[i].dst = over[i].v;
    return 0;
}

/* ---- schedules from metrics.jsonl --------------------------------------------------------- */

/* What the metrics say about one epoch. */
struct s_epoch {
    long line;    /* line of its epoch event; 0: none seen */
    double step;  /* updates completed at its end (cumulative) */
    double batch; /* batch size in force */
    double gamma; /* adversarial share in force */
    int measured; /* an eig event measured the eigenvalue at its end */
};

/* Grow *ep to hold epoch e. */
static int s_epoch_slot(struct s_epoch **ep, size_t *n, size_t e)
{
    if (e < *n)
        return 0;
    size_t m = e + 1 > 2 * *n ? e + 1 : 2 * *n;
    struct s_epoch *p = realloc(*ep, m * sizeof *p);
    if (!p)
        return -1;
    memset(p + *n, 0, (m - *n) * sizeof *p);
    *ep = p;
    *n = m;
    return 0;
}

static double s_num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : (double)NAN;
}

/* Read the schedule of a run from its metrics.jsonl. A repeated epoch (after a resume) replaces
 * the earlier one. 0, or -1 after a message naming the file and line. */
static int s_read_metrics(const char *path, struct sim_sched *s)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "eigenbatch %s: cannot open %s: %s\n", S_CMD, path, strerror(errno));
        return -1;
    }
    struct s_epoch *ep = NULL;
    size_t n_ep = 0, last = 0;
    int have = 0, rc = -1;
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line))
            continue;
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!json_is_object(o)) {
            fprintf(stderr, "eigenbatch %s: %s:%ld: not a JSON object (%s)\n", S_CMD, path, lineno,
                    o ? "another JSON value" : jerr.text);
            json_decref(o);
            goto out;
        }
        const char *ev = json_string_value(json_object_get(o, "event"));
        int is_epoch = ev && !strcmp(ev, "epoch"), is_eig = ev && !strcmp(ev, "eig");
        double e = s_num(o, "epoch");
        if ((is_epoch || is_eig) && !(e >= 0 && e <= S_EPOCHS_MAX && e == floor(e))) {
            fprintf(stderr, "eigenbatch %s: %s:%ld: %s event without a valid \"epoch\"\n", S_CMD,
                    path, lineno, ev);
            json_decref(o);
            goto out;
        }
        if ((is_epoch || is_eig) && s_epoch_slot(&ep, &n_ep, (size_t)e)) {
            fprintf(stderr, "eigenbatch %s: out of memory\n", S_CMD);
            json_decref(o);
            goto out;
        }
        if (is_epoch) {
            struct s_epoch *x = &ep[(size_t)e];
            x->step = s_num(o, "step");
            x->batch = s_num(o, "batch_size");
            if (isnan(x->batch))
                x->batch = s_num(o, "B");
            x->gamma = s_num(o, "gamma");
            if (isnan(x->gamma))
                x->gamma = 0;
            if (!(x->step >= 0) || !(x->batch >= 1) || !(x->gamma >= 0)) {
                fprintf(stderr,
                        "eigenbatch %s: %s:%ld: epoch event needs \"step\" >= 0, "
                        "\"batch_size\" >= 1 and \"gamma\" >= 0\n",
                        S_CMD, path, lineno);
                json_decref(o);
                goto out;
            }
            x->line = lineno;
            last = (size_t)e;
            have = 1;
        } else if (is_eig) {
            json_t *m = json_object_get(o, "measured");
            if (!m || json_is_true(m))
                ep[(size_t)e].measured = 1;
        }
        json_decref(o);
    }
    if (ferror(f)) {
        fprintf(stderr, "eigenbatch %s: cannot read %s: %s\n", S_CMD, path, strerror(errno));
        goto out;
    }
    if (!have) {
        fprintf(stderr, "eigenbatch %s: %s has no epoch events\n", S_CMD, path);
        goto out;
    }
    double prev = 0;
    for (size_t e = 0; e <= last; e++) {
        if (!ep[e].line) {
            fprintf(stderr, "eigenbatch %s: %s: no epoch event for epoch %zu\n", S_CMD, path, e);
            goto out;
        }
        if (ep[e].step < prev) {
            fprintf(stderr, "eigenbatch %s: %s:%ld: step %g is below the previous epoch's %g\n",
                    S_CMD, path, ep[e].line, ep[e].step, prev);
            goto out;
        }
        struct sim_phase ph = {ep[e].step - prev, ep[e].batch, ep[e].gamma, ep[e].measured, 1};
        if (sim_sched_add(s, &ph)) {
            fprintf(stderr, "eigenbatch %s: %s\n", S_CMD, rt_err_msg());
            goto out;
        }
        s->adversarial |= ep[e].gamma > 0;
        prev = ep[e].step;
    }
    rc = 0;
out:
    free(line);
    free(ep);
    fclose(f);
    return rc;
}

/* ---- the command ------------------------------------------------------------------------- */

/* Fill sim's schedules from the options. 0, or -1 after a message. */
static int s_schedules(const struct s_args *a, int rules_given, struct sim_report *sim)
{
    if (a->paper_table3 && (a->metrics || a->method || rules_given)) {
        fprintf(stderr,
                "eigenbatch %s: --paper-table3 takes the paper's schedules: no "
                "--metrics, --method or schedule rules\n",
                S_CMD);
        return -1;
    }
    if (a->paper_table3 && a->plot) {
        fprintf(stderr,
                "eigenbatch %s: --plot draws the scan over --procs; not with "
                "--paper-table3\n",
                S_CMD);
        return -1;
    }
    if (a->metrics && (a->method || rules_given)) {
        fprintf(stderr,
                "eigenbatch %s: --metrics gives the schedule: no --method or schedule "
                "rules with it\n",
                S_CMD);
        return -1;
    }
    if (!a->metrics && !a->method && rules_given) {
        fprintf(stderr, "eigenbatch %s: schedule rules (--epochs, --batch, ...) need --method\n",
                S_CMD);
        return -1;
    }
    if (a->name && !a->metrics) {
        fprintf(stderr, "eigenbatch %s: --name labels a --metrics schedule\n", S_CMD);
        return -1;
    }
    if (a->metrics) {
        sim->n = 1;
        if (s_read_metrics(a->metrics, &sim->sched[0]))
            return -1;
        snprintf(sim->sched[0].name, sizeof sim->sched[0].name, "%s", a->name ? a->name : "run");
        return 0;
    }
    if (a->method) {
        int m = sim_method_parse(a->method);
        if (m < 0) {
            fprintf(stderr, "eigenbatch %s: invalid value '%s' for --method (BL, GG, ABS, ABSA)\n",
                    S_CMD, a->method);
            return -1;
        }
        struct sim_plan *pl = &sim->plan[0];
        memset(pl, 0, sizeof *pl);
        pl->method = m;
        pl->samples = a->rules.samples;
        pl->epochs = a->rules.epochs;
        pl->batch = a->rules.batch;
        pl->batch_max = a->rules.batch_max;
        pl->gg_factor = a->rules.gg_factor;
        pl->beta = a->rules.beta;
        pl->grow_every = a->rules.grow_every;
        pl->gamma = a->rules.gamma;
        pl->omega = a->rules.omega;
        pl->tau = isnan(a->rules.tau) ? a->rules.epochs / 2 : a->rules.tau;
        if (m == SIM_GG) {
            pl->n_decay = s_list("--decay-epochs", a->rules.decay, pl->decay, SIM_DECAYS_MAX);
            if (pl->n_decay < 0)
                return -1;
        }
        sim->n = 1;
        sim->has_plan[0] = 1;
        if (sim_plan_sched(pl, &sim->sched[0])) {
            fprintf(stderr, "eigenbatch %s: %s\n", S_CMD, rt_err_msg());
            return -1;
        }
        return 0;
    }
    for (int m = 0; m < SIM_METHODS; m++) {
        if (sim_paper_plan(m, &sim->plan[m]) || sim_plan_sched(&sim->plan[m], &sim->sched[m])) {
            fprintf(stderr, "eigenbatch %s: %s\n", S_CMD, rt_err_msg());
            return -1;
        }
        sim->has_plan[m] = 1;
    }
    sim->n = SIM_METHODS;
    return 0;
}

int eb_cmd_simulate(int argc, char **argv)
{
    struct s_args a;
    int rules_given = 0, hw_given = 0;
    int prc = s_parse(argc, argv, &a, &rules_given, &hw_given);
    if (prc)
        return prc == RT_OPT_HELP ? 0 : 2;
    struct sim_report sim;
    memset(&sim, 0, sizeof sim);
    int status = 2;
    if (strcmp(a.decisions, "async") && strcmp(a.decisions, "sync")) {
        fprintf(stderr, "eigenbatch %s: invalid value '%s' for --decisions (async or sync)\n",
                S_CMD, a.decisions);
        goto out;
    }
    sim.sync = !strcmp(a.decisions, "sync");
    sim.bytes = 4 * a.params;
    sim.shards = a.shards;
    if (a.paper_table3 && !hw_given)
        a.hw = "paper";
    if (s_hw(&a, &sim.hw_b))
        goto out;
    sim.n_procs = s_list("--procs", a.procs, sim.procs, SIM_REPORT_PROCS_MAX);
    if (sim.n_procs < 0)
        goto out;
    for (int k = 0; k < sim.n_procs; k++)
        if (sim.procs[k] != floor(sim.procs[k])) {
            fprintf(stderr, "eigenbatch %s: invalid value '%s' for --procs (whole numbers)\n",
                    S_CMD, a.procs);
            goto out;
        }
    if (a.detail != floor(a.detail)) {
        fprintf(stderr, "eigenbatch %s: invalid value '%g' for --detail (a whole number)\n", S_CMD,
                a.detail);
        goto out;
    }
    if (s_schedules(&a, rules_given, &sim))
        goto out;
    status = 1;
    if (a.paper_table3)
        status = sim_report_table3(&sim, a.hw, a.json);
    else
        status = sim_report_scan(&sim, a.json, a.detail);
    if (status == 0 && a.plot)
        status = sim_report_plot(&sim, a.hw, a.plot);
out:
    for (int i = 0; i < SIM_METHODS; i++)
        sim_sched_clear(&sim.sched[i]);
    return status;
}
