/*
 * cmd_simulate: `eigenbatch simulate`, the wall-clock time of a batch-size schedule on 8 to 4,096
 * processes under (a) the paper's model (Yao et al., Table 3: ring all-reduce, every Hessian
 * computation on the critical path) and (b) this system (W workers, S shards, the eigen service on
 * its own device). The schedule comes from a run's metrics.jsonl (`--metrics`), from rules on the
 * command line (`--method ...`), or, by default, the paper's four ImageNet schedules.
 * `--paper-table3` reproduces the paper's Table 3. The arithmetic lives in sim_model.{c,h}; this
 * file reads options and metrics and prints tables, JSON and the gnuplot figure.
 *
 * Options are described once, in s_opts: the parser, the defaults and --help all read it.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "eb_cli.h"
#include "rt_err.h"
#include "sim_model.h"

#define S_CMD "simulate"
#define S_PROCS_MAX 64       /* process counts in one scan */
#define S_EPOCHS_MAX 1000000 /* largest epoch number accepted from metrics */
#define S_MB 1e6

/* ---- options ------------------------------------------------------------------------------ */

struct s_args {
    int help;              /* --help */
    int paper_table3;      /* --paper-table3 */
    const char *metrics;   /* --metrics FILE */
    const char *method;    /* --method BL|GG|ABS|ABSA */
    const char *name;      /* --name: label of a --metrics schedule */
    double samples;        /* --samples N */
    double epochs;         /* --epochs E */
    double batch;          /* --batch B */
    double batch_max;      /* --batch-max M */
    const char *decay;     /* --decay-epochs LIST (GG) */
    double gg_factor;      /* --gg-factor F */
    double beta;           /* --beta */
    double grow_every;     /* --grow-every D */
    double gamma;          /* --gamma */
    double omega;          /* --omega */
    double tau;            /* --tau (NaN: epochs / 2) */
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

enum s_kind {
    S_SWITCH, /* no value: sets an int to 1 */
    S_STR,    /* a string */
    S_POS,    /* a number > 0 */
    S_NONNEG, /* a number >= 0 */
};

/* Options that describe a schedule by rules (they need --method). */
#define S_GROUP_PLAN 1
/* Options that override model (b)'s hardware preset. */
#define S_GROUP_HW 2
/* --hw itself (--paper-table3 defaults to the paper's hardware for model (b)). */
#define S_GROUP_PRESET 4

struct s_opt {
    const char *flag; /* "--epochs" */
    const char *arg;  /* value's name in --help; NULL for a switch */
    enum s_kind kind; /* how the value parses */
    size_t off;       /* offsetof(struct s_args, field) */
    const char *def;  /* default, parsed as a value and shown by --help; NULL: none (NaN) */
    int group;        /* S_GROUP_*, or 0 */
    const char *help; /* one line */
};

#define S_OFF(f) offsetof(struct s_args, f)

static const struct s_opt s_opts[] = {
    {"--paper-table3", NULL, S_SWITCH, S_OFF(paper_table3), NULL, 0,
     "the paper's Table 3 (512 processes) under its model, beside this system's"},
    {"--metrics", "FILE", S_STR, S_OFF(metrics), NULL, 0,
     "the schedule of a run: its epoch events (steps, batch_size, gamma) and eig events"},
    {"--name", "NAME", S_STR, S_OFF(name), NULL, 0,
     "label of the --metrics schedule (default: run)"},
    {"--method", "M", S_STR, S_OFF(method), NULL, 0,
     "a schedule by rules: BL, GG, ABS or ABSA (with the options below)"},
    {"--samples", "N", S_POS, S_OFF(samples), "1281167", S_GROUP_PLAN,
     "training samples; an epoch is ceil(N / B) updates"},
    {"--epochs", "E", S_POS, S_OFF(epochs), "90", S_GROUP_PLAN, "epochs"},
    {"--batch", "B", S_POS, S_OFF(batch), "256", S_GROUP_PLAN, "(starting) global batch"},
    {"--batch-max", "M", S_NONNEG, S_OFF(batch_max), "16384", S_GROUP_PLAN,
     "cap of the growing batch (GG, ABS, ABSA); 0: none"},
    {"--decay-epochs", "LIST", S_STR, S_OFF(decay), "30,60,80", S_GROUP_PLAN,
     "GG: epochs at which the batch grows"},
    {"--gg-factor", "F", S_POS, S_OFF(gg_factor), "10", S_GROUP_PLAN, "GG: batch factor at each"},
    {"--beta", "F", S_POS, S_OFF(beta), "2", S_GROUP_PLAN, "ABS/ABSA: batch factor at a growth"},
    {"--grow-every", "D", S_POS, S_OFF(grow_every), "10", S_GROUP_PLAN,
     "ABS/ABSA: epochs per batch size (kappa: the timer alone)"},
    {"--gamma", "G", S_NONNEG, S_OFF(gamma), "0.2", S_GROUP_PLAN,
     "ABSA: adversarial share, / omega at each growth"},
    {"--omega", "W", S_POS, S_OFF(omega), "2", S_GROUP_PLAN, "ABSA: gamma's divisor"},
    {"--tau", "T", S_NONNEG, S_OFF(tau), NULL, S_GROUP_PLAN,
     "ABSA: no adversarial samples from epoch T (default: E / 2)"},
    {"--hw", "here|paper", S_STR, S_OFF(hw), "here", S_GROUP_PRESET,
     "model (b)'s constants: measured here (CPU cores, tcp) or the paper's (GPUs; "
     "--paper-table3's default)"},
    {"--params", "P", S_POS, S_OFF(params), "11689512", 0, "parameters (fp32): ResNet-18's"},
    {"--shards", "S", S_NONNEG, S_OFF(shards), "0", 0, "model (b): shards; 0: one per worker"},
    {"--decisions", "async|sync", S_STR, S_OFF(decisions), "async", 0,
     "model (b): sync makes every measured epoch end wait for the eigen service"},
    {"--sample-s", "T", S_NONNEG, S_OFF(sample_s), NULL, S_GROUP_HW,
     "model (b): training compute per sample on one worker, s"},
    {"--floor-s", "T", S_NONNEG, S_OFF(floor_s), NULL, S_GROUP_HW,
     "model (b): least compute time of an update on a worker, s"},
    {"--fgsm-cost", "X", S_NONNEG, S_OFF(fgsm_cost), NULL, S_GROUP_HW,
     "model (b): extra compute per adversarial sample, in training samples"},
    {"--hessian-s", "T", S_NONNEG, S_OFF(hessian_s), NULL, S_GROUP_HW,
     "model (b): one top-eigenvalue computation of the eigen service, s"},
    {"--bw", "BYTES/S", S_POS, S_OFF(bw), NULL, S_GROUP_HW,
     "model (b): link bandwidth per direction"},
    {"--latency-s", "T", S_NONNEG, S_OFF(latency_s), NULL, S_GROUP_HW,
     "model (b): one message's latency on a link, s"},
    {"--msg-s", "T", S_NONNEG, S_OFF(msg_s), NULL, S_GROUP_HW,
     "model (b): software cost of one message at a shard or worker, s"},
    {"--procs", "LIST", S_STR, S_OFF(procs), "8,16,32,64,128,256,512,1024,2048,4096", 0,
     "process counts (workers in model (b))"},
    {"--detail", "P", S_NONNEG, S_OFF(detail), "512", 0,
     "also break the times down at P processes; 0: no"},
    {"--json", NULL, S_SWITCH, S_OFF(json), NULL, 0, "one JSON object on stdout instead of tables"},
    {"--plot", "FILE.png", S_STR, S_OFF(plot), NULL, 0,
     "draw time against processes (gnuplot) into FILE.png"},
    {"--help", NULL, S_SWITCH, S_OFF(help), NULL, 0, "this text"},
    {NULL, NULL, 0, 0, NULL, 0, NULL},
};

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

static int s_parse_value(const struct s_opt *o, const char *val, struct s_args *a)
{
    char *field = (char *)a + o->off;
    if (o->kind == S_STR) {
        *(const char **)field = val;
        return 0;
    }
    double v = 0;
    if (rt_opt_double(S_CMD, o->flag, val, &v))
        return -1;
    if (!isfinite(v) || (o->kind == S_POS && !(v > 0)) || (o->kind == S_NONNEG && !(v >= 0))) {
        fprintf(stderr, "eigenbatch %s: %s must be %s (got '%s')\n", S_CMD, o->flag,
                o->kind == S_POS ? "> 0" : ">= 0", val);
        return -1;
    }
    *(double *)field = v;
    return 0;
}

#define S_HELP_INDENT 27 /* column of the options' help text */
#define S_HELP_WIDTH 100 /* wrap --help at this column */

static void s_usage(FILE *f)
{
    fputs(s_about, f);
    for (const struct s_opt *o = s_opts; o->flag; o++) {
        char left[64], text[512];
        snprintf(left, sizeof left, "%s%s%s", o->flag, o->arg ? " " : "", o->arg ? o->arg : "");
        snprintf(text, sizeof text, "%s%s%s%s", o->help, o->def && o->kind != S_SWITCH ? " [" : "",
                 o->def && o->kind != S_SWITCH ? o->def : "",
                 o->def && o->kind != S_SWITCH ? "]" : (o->group == S_GROUP_HW ? " [--hw]" : ""));
        fprintf(f, "  %-24s", left);
        /* word-wrap text from S_HELP_INDENT to S_HELP_WIDTH */
        int col = S_HELP_INDENT - 1;
        for (char *w = strtok(text, " "); w; w = strtok(NULL, " ")) {
            int len = (int)strlen(w);
            if (col + 1 + len > S_HELP_WIDTH && col > S_HELP_INDENT - 1) {
                fprintf(f, "\n%*s", S_HELP_INDENT - 1, "");
                col = S_HELP_INDENT - 1;
            }
            fprintf(f, " %s", w);
            col += 1 + len;
        }
        fprintf(f, "\n");
    }
}

/* Parse argv into *a; *set gets the groups of the options given. 0, or -1 after a message. */
static int s_parse(int argc, char **argv, struct s_args *a, int *set)
{
    memset(a, 0, sizeof *a);
    *set = 0;
    for (const struct s_opt *o = s_opts; o->flag; o++) {
        if (o->kind == S_POS || o->kind == S_NONNEG)
            *(double *)((char *)a + o->off) = NAN;
        if (o->def && o->kind != S_SWITCH && s_parse_value(o, o->def, a))
            return -1; /* a bad default is a bug in s_opts; say so rather than abort */
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
        const struct s_opt *o = s_opts;
        while (o->flag && !(strlen(o->flag) == len && !strncmp(o->flag, arg, len)))
            o++;
        if (!o->flag) {
            fprintf(stderr, "eigenbatch %s: unknown option '%s' (see --help)\n", S_CMD, arg);
            return -1;
        }
        *set |= o->group;
        if (o->kind == S_SWITCH) {
            if (eq) {
                fprintf(stderr, "eigenbatch %s: %s takes no value\n", S_CMD, o->flag);
                return -1;
            }
            *(int *)((char *)a + o->off) = 1;
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val) {
            fprintf(stderr, "eigenbatch %s: %s needs a value (%s)\n", S_CMD, o->flag, o->arg);
            return -1;
        }
        if (s_parse_value(o, val, a))
            return -1;
    }
    return 0;
}

/* Parse a comma-separated list of numbers > 0 for option opt. Returns the count, or -1. */
static int s_list(const char *opt, const char *text, double *out, int max)
{
    int n = 0;
    const char *p = text;
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

/* ---- output ------------------------------------------------------------------------------- */

static const char *const s_model_names[] = {"paper", "eigenbatch"};

/* The schedules and designs of one invocation. */
struct s_sim {
    struct sim_sched sched[SIM_METHODS]; /* the schedules (one from --metrics / --method) */
    struct sim_plan plan[SIM_METHODS];   /* their rules (paper or --method), when they have some */
    int has_plan[SIM_METHODS];           /* plan[i] is meaningful */
    int n;                               /* schedules */
    double procs[S_PROCS_MAX];           /* process counts */
    int n_procs;                         /* entries of procs */
    struct sim_hw hw_b;                  /* model (b)'s constants */
    double bytes;                        /* 4 x parameters */
    double shards;                       /* model (b): S, 0 = W */
    int sync;                            /* model (b): decisions sync */
};

/* Design of model 0 (paper) or 1 (eigenbatch) at p processes. */
static void s_design(const struct s_sim *sim, int model, double p, struct sim_design *d)
{
    if (model == 0) {
        sim_paper_design(d, p);
        d->bytes = sim->bytes;
        return;
    }
    memset(d, 0, sizeof *d);
    d->kind = SIM_MODEL_PS;
    d->procs = p;
    d->shards = sim->shards;
    d->sync = sim->sync;
    d->bytes = sim->bytes;
    d->hw = sim->hw_b;
}

static json_t *s_hw_json(const struct sim_hw *hw)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "floor_s", hw->floor_s, "sample_s",
                     hw->sample_s, "adv_factor", hw->adv_factor, "fgsm_cost", hw->fgsm_cost,
                     "hessian_s", hw->hessian_s, "bw", hw->bw, "latency_s", hw->latency_s, "msg_s",
                     hw->msg_s);
}

static json_t *s_cost_json(const struct sim_cost *c)
{
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f}", "updates", c->updates, "hessians",
                     c->hessians, "compute_s", c->compute_s, "comm_s", c->comm_s, "hessian_s",
                     c->hessian_s, "total_s", c->total_s);
}

/* First and last batch sizes of a schedule, as "256-16384". */
static void s_batches(const struct sim_sched *s, char *buf, size_t n)
{
    double lo = s->n ? s->phase[0].batch : 0, hi = lo;
    for (size_t i = 0; i < s->n; i++)
        hi = fmax(hi, s->phase[i].batch);
    if (lo == hi)
        snprintf(buf, n, "%.0f", lo);
    else
        snprintf(buf, n, "%.0f-%.0f", lo, hi);
}

static int s_emit_json(json_t *root)
{
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(root);
    if (!text) {
        fprintf(stderr, "eigenbatch %s: cannot format the JSON output\n", S_CMD);
        return 1;
    }
    printf("%s\n", text);
    free(text);
    return 0;
}

/* --paper-table3: the four schedules at 512 processes under both models. */
static int s_table3(const struct s_sim *sim, const char *hw_name, int json)
{
    struct sim_design da, db;
    s_design(sim, 0, SIM_PAPER_PROCS, &da);
    s_design(sim, 1, SIM_PAPER_PROCS, &db);
    json_t *rows = json ? json_array() : NULL;
    if (!json) {
        printf("Table 3 of Yao et al.: ResNet-18 on ImageNet (%.0f images, %.0f epochs), %d "
               "processes\n\n",
               SIM_IMAGENET_SAMPLES, SIM_PAPER_EPOCHS, SIM_PAPER_PROCS);
        printf("(a) the paper's model: compute %.3g s (ABSA %.3g s) + ring all-reduce %.3g s per "
               "update,\n    %.3g s per Hessian\n",
               SIM_PAPER_COMPUTE_S, SIM_PAPER_COMPUTE_ADV_S, sim_update_comm(&da),
               SIM_PAPER_HESSIAN_S);
        printf("%-5s %-11s %9s %9s %9s %8s %9s %9s %8s %7s\n", "", "batch", "updates", "compute s",
               "comm s", "Hessians", "Hessian s", "total s", "paper s", "diff");
    }
    struct sim_cost ca[SIM_METHODS], cb[SIM_METHODS];
    for (int m = 0; m < SIM_METHODS; m++) {
        sim_cost(&da, &sim->sched[m], &ca[m]);
        sim_cost(&db, &sim->sched[m], &cb[m]);
        double paper = sim_paper_total(m), diff = (ca[m].total_s - paper) / paper;
        int backed = m == SIM_ABS || m == SIM_ABSA;
        char b[48];
        s_batches(&sim->sched[m], b, sizeof b);
        if (json) {
            json_t *r =
                json_pack("{s:s, s:s, s:f, s:f, s:b, s:o, s:o}", "method", sim_method_name(m),
                          "batch", b, "paper_s", paper, "rel_diff", diff, "backed_out", backed,
                          "paper_model", s_cost_json(&ca[m]), "eigenbatch", s_cost_json(&cb[m]));
            if (backed && r)
                json_object_set_new(r, "grow_every", json_real(sim->plan[m].grow_every));
            json_array_append_new(rows, r);
            continue;
        }
        printf("%-5s %-11s %8.0f%s %9.1f %9.1f %8.1f %9.1f %9.1f %9.0f %+6.2f%%\n",
               sim_method_name(m), b, ca[m].updates, backed ? "*" : " ", ca[m].compute_s,
               ca[m].comm_s, ca[m].hessians, ca[m].hessian_s, ca[m].total_s, paper, 100 * diff);
    }
    if (json) {
        json_t *root = json_pack("{s:i, s:o, s:o, s:o}", "procs", SIM_PAPER_PROCS, "table3", rows,
                                 "paper_hw", s_hw_json(&da.hw), "eigenbatch_hw", s_hw_json(&db.hw));
        return s_emit_json(root);
    }
    printf(
        "\n* backed out of the paper's total (it gives none of these counts): the batch doubles "
        "from 256\n  to 16384 every D epochs (ABS D = %.3f, ABSA D = %.3f), one Hessian per epoch "
        "end below 16384,\n  D solved so that (a) gives the total.\n",
        sim->plan[SIM_ABS].grow_every, sim->plan[SIM_ABSA].grow_every);
    printf("\n(b) this system, --hw %s (shards: %s; decisions %s; %.3g s per message):\n", hw_name,
           sim->shards > 0 ? "fixed" : "one per worker", sim->sync ? "sync" : "async", db.hw.msg_s);
    printf("%-5s %9s %9s %9s %9s %9s %9s\n", "", "updates", "compute s", "comm s", "Hessian s",
           "total s", "vs (a)");
    for (int m = 0; m < SIM_METHODS; m++)
        printf("%-5s %9.0f %9.1f %9.1f %9.1f %9.1f %8.2fx\n", sim_method_name(m), cb[m].updates,
               cb[m].compute_s, cb[m].comm_s, cb[m].hessian_s, cb[m].total_s,
               cb[m].total_s / ca[m].total_s);
    return 0;
}

static void s_print_hw(const char *what, const struct sim_hw *hw, int model)
{
    printf("%s: compute %.4g s per sample, floor %.4g s, ", what, hw->sample_s, hw->floor_s);
    if (model == 0)
        printf("ABSA x%.3g, ", hw->adv_factor);
    else
        printf("FGSM %.3g samples, ", hw->fgsm_cost);
    printf("Hessian %.4g s;\n    link %.4g GB/s, latency %.3g s", hw->hessian_s, hw->bw / 1e9,
           hw->latency_s);
    if (model == 1)
        printf(", %.3g s per message", hw->msg_s);
    printf("\n");
}

/* The scan: every schedule on every process count under both models. */
static int s_scan(const struct s_sim *sim, const struct s_args *a)
{
    json_t *root = NULL, *rows = NULL, *scheds = NULL;
    int w = 6; /* width of the schedule names */
    for (int i = 0; i < sim->n; i++)
        w = (int)strlen(sim->sched[i].name) > w ? (int)strlen(sim->sched[i].name) : w;
    if (a->json) {
        rows = json_array();
        scheds = json_array();
        struct sim_hw ph;
        sim_paper_hw(&ph);
        root = json_pack("{s:f, s:f, s:s, s:o, s:o}", "bytes", sim->bytes, "shards", sim->shards,
                         "decisions", sim->sync ? "sync" : "async", "paper_hw", s_hw_json(&ph),
                         "eigenbatch_hw", s_hw_json(&sim->hw_b));
    } else {
        printf("Wall-clock time, s: (a) the paper's model, (b) eigenbatch; %.1f MB of gradient\n",
               sim->bytes / S_MB);
        struct sim_hw ph;
        sim_paper_hw(&ph);
        s_print_hw("(a) constants", &ph, 0);
        s_print_hw("(b) constants", &sim->hw_b, 1);
        printf("(b) shards: %s; decisions %s; the eigen service on one more device\n\n",
               sim->shards > 0 ? "fixed" : "one per worker", sim->sync ? "sync" : "async");
        printf("%-*s %-11s %11s %9s %9s\n", w, "sched", "batch", "updates", "Hessians", "epochs");
    }
    for (int i = 0; i < sim->n; i++) {
        const struct sim_sched *s = &sim->sched[i];
        char b[48];
        s_batches(s, b, sizeof b);
        double ep = 0;
        for (size_t k = 0; k < s->n; k++)
            ep += s->phase[k].epochs;
        if (a->json) {
            json_t *o =
                json_pack("{s:s, s:s, s:f, s:f, s:f, s:b}", "name", s->name, "batch", b, "updates",
                          sim_sched_updates(s), "hessians", sim_sched_hessians(s), "epochs", ep,
                          "adversarial", s->adversarial);
            if (o && sim->has_plan[i] &&
                (sim->plan[i].method == SIM_ABS || sim->plan[i].method == SIM_ABSA))
                json_object_set_new(o, "grow_every", json_real(sim->plan[i].grow_every));
            json_array_append_new(scheds, o);
        } else {
            printf("%-*s %-11s %11.0f %9.1f %9.2f\n", w, s->name, b, sim_sched_updates(s),
                   sim_sched_hessians(s), ep);
        }
    }
    if (!a->json) {
        printf("\n%6s", "procs");
        for (int i = 0; i < sim->n; i++)
            printf(" %*s a %*s b", w > 10 ? w : 10, sim->sched[i].name, w > 10 ? w : 10,
                   sim->sched[i].name);
        printf("\n");
    }
    for (int k = 0; k < sim->n_procs; k++) {
        if (!a->json)
            printf("%6.0f", sim->procs[k]);
        for (int i = 0; i < sim->n; i++)
            for (int model = 0; model < 2; model++) {
                struct sim_design d;
                struct sim_cost c;
                s_design(sim, model, sim->procs[k], &d);
                sim_cost(&d, &sim->sched[i], &c);
                if (!a->json) {
                    printf(" %*.0f", (w > 10 ? w : 10) + 2, c.total_s);
                    continue;
                }
                json_t *r = s_cost_json(&c);
                if (r) {
                    json_object_set_new(r, "procs", json_real(sim->procs[k]));
                    json_object_set_new(r, "schedule", json_string(sim->sched[i].name));
                    json_object_set_new(r, "model", json_string(s_model_names[model]));
                }
                json_array_append_new(rows, r);
            }
        if (!a->json)
            printf("\n");
    }
    if (a->json) {
        json_object_set_new(root, "schedules", scheds);
        json_object_set_new(root, "scan", rows);
        return s_emit_json(root);
    }
    if (a->detail > 0) {
        printf("\nAt %.0f processes (s): compute + communication + Hessian = total\n", a->detail);
        for (int i = 0; i < sim->n; i++)
            for (int model = 0; model < 2; model++) {
                struct sim_design d;
                struct sim_cost c;
                s_design(sim, model, a->detail, &d);
                sim_cost(&d, &sim->sched[i], &c);
                printf("%-*s %s %-10s %10.0f + %9.0f + %8.0f = %10.0f  (%.3g s/update comm)\n", w,
                       sim->sched[i].name, model ? "b" : "a", s_model_names[model], c.compute_s,
                       c.comm_s, c.hessian_s, c.total_s, sim_update_comm(&d));
            }
    }
    return 0;
}

/* --plot: time against processes, both models, via gnuplot. */
static int s_plot(const struct s_sim *sim, const char *hw_name, const char *png)
{
    char data[] = "/tmp/eb-simulate-XXXXXX";
    int fd = mkstemp(data);
    FILE *df = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!df) {
        fprintf(stderr, "eigenbatch %s: cannot write a temporary file: %s\n", S_CMD,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    for (int k = 0; k < sim->n_procs; k++) {
        fprintf(df, "%.0f", sim->procs[k]);
        for (int i = 0; i < sim->n; i++)
            for (int model = 0; model < 2; model++) {
                struct sim_design d;
                struct sim_cost c;
                s_design(sim, model, sim->procs[k], &d);
                sim_cost(&d, &sim->sched[i], &c);
                fprintf(df, " %.10g", c.total_s);
            }
        fprintf(df, "\n");
    }
    int rc = 1;
    if (fclose(df)) {
        fprintf(stderr, "eigenbatch %s: cannot write %s: %s\n", S_CMD, data, strerror(errno));
        goto out;
    }
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        fprintf(stderr, "eigenbatch %s: cannot run gnuplot: %s\n", S_CMD, strerror(errno));
        goto out;
    }
    fprintf(gp,
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) "
            "{ set terminal pngcairo size 1000,650 } else { set terminal png size 1000,650 }\n"
            "set output '%s'\n"
            "set title 'simulated wall-clock time: the paper''s model (dashed), eigenbatch "
            "with --hw %s (solid)'\n"
            "set xlabel 'processes (workers)'\n set ylabel 'wall-clock time, s'\n"
            "set logscale x 2\n set logscale y 10\n set grid\n set key outside right\n"
            "plot ",
            png, hw_name);
    for (int i = 0; i < sim->n; i++)
        for (int model = 0; model < 2; model++)
            fprintf(gp, "%s'%s' using 1:%d with linespoints lw 2 pt 7 lc %d dt %d title '%s %s'",
                    i || model ? ", " : "", data, 2 + 2 * i + model, i + 1, model ? 1 : 2,
                    sim->sched[i].name, model ? "eigenbatch" : "paper");
    fprintf(gp, "\n");
    int st = pclose(gp);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "eigenbatch %s: gnuplot failed writing %s (status %d)\n", S_CMD, png, st);
        goto out;
    }
    rc = 0;
out:
    unlink(data);
    return rc;
}

/* ---- the command ------------------------------------------------------------------------- */

/* Fill sim's schedules from the options. 0, or -1 after a message. */
static int s_schedules(const struct s_args *a, int set, struct s_sim *sim)
{
    if (a->paper_table3 && (a->metrics || a->method || (set & S_GROUP_PLAN))) {
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
    if (a->metrics && (a->method || (set & S_GROUP_PLAN))) {
        fprintf(stderr,
                "eigenbatch %s: --metrics gives the schedule: no --method or schedule "
                "rules with it\n",
                S_CMD);
        return -1;
    }
    if (!a->metrics && !a->method && (set & S_GROUP_PLAN)) {
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
        pl->samples = a->samples;
        pl->epochs = a->epochs;
        pl->batch = a->batch;
        pl->batch_max = a->batch_max;
        pl->gg_factor = a->gg_factor;
        pl->beta = a->beta;
        pl->grow_every = a->grow_every;
        pl->gamma = a->gamma;
        pl->omega = a->omega;
        pl->tau = isnan(a->tau) ? a->epochs / 2 : a->tau;
        if (m == SIM_GG) {
            pl->n_decay = s_list("--decay-epochs", a->decay, pl->decay, SIM_DECAYS_MAX);
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
    int set = 0;
    if (s_parse(argc, argv, &a, &set))
        return 2;
    if (a.help) {
        s_usage(stdout);
        return 0;
    }
    struct s_sim sim;
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
    if (a.paper_table3 && !(set & S_GROUP_PRESET))
        a.hw = "paper";
    if (s_hw(&a, &sim.hw_b))
        goto out;
    sim.n_procs = s_list("--procs", a.procs, sim.procs, S_PROCS_MAX);
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
    if (s_schedules(&a, set, &sim))
        goto out;
    status = 1;
    if (a.paper_table3)
        status = s_table3(&sim, a.hw, a.json);
    else
        status = s_scan(&sim, &a);
    if (status == 0 && a.plot)
        status = s_plot(&sim, a.hw, a.plot);
out:
    for (int i = 0; i < SIM_METHODS; i++)
        sim_sched_clear(&sim.sched[i]);
    return status;
}
