/*
 * sim_report: Table 3, the scan and the figure of `eigenbatch simulate` (see sim_report.h).
 */
#include "sim_report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#define S_CMD "simulate"
#define S_MB 1e6

static const char *const s_model_names[] = {"paper", "eigenbatch"};

/* Design of model 0 (paper) or 1 (eigenbatch) at p processes. */
static void s_design(const struct sim_report *sim, int model, double p, struct sim_design *d)
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

int sim_report_table3(const struct sim_report *sim, const char *hw_name, int json)
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

int sim_report_scan(const struct sim_report *sim, int json, double detail)
{
    json_t *root = NULL, *rows = NULL, *scheds = NULL;
    int w = 6; /* width of the schedule names */
    for (int i = 0; i < sim->n; i++)
        w = (int)strlen(sim->sched[i].name) > w ? (int)strlen(sim->sched[i].name) : w;
    if (json) {
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
        if (json) {
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
    if (!json) {
        printf("\n%6s", "procs");
        for (int i = 0; i < sim->n; i++)
            printf(" %*s a %*s b", w > 10 ? w : 10, sim->sched[i].name, w > 10 ? w : 10,
                   sim->sched[i].name);
        printf("\n");
    }
    for (int k = 0; k < sim->n_procs; k++) {
        if (!json)
            printf("%6.0f", sim->procs[k]);
        for (int i = 0; i < sim->n; i++)
            for (int model = 0; model < 2; model++) {
                struct sim_design d;
                struct sim_cost c;
                s_design(sim, model, sim->procs[k], &d);
                sim_cost(&d, &sim->sched[i], &c);
                if (!json) {
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
        if (!json)
            printf("\n");
    }
    if (json) {
        json_object_set_new(root, "schedules", scheds);
        json_object_set_new(root, "scan", rows);
        return s_emit_json(root);
    }
    if (detail > 0) {
        printf("\nAt %.0f processes (s): compute + communication + Hessian = total\n", detail);
        for (int i = 0; i < sim->n; i++)
            for (int model = 0; model < 2; model++) {
                struct sim_design d;
                struct sim_cost c;
                s_design(sim, model, detail, &d);
                sim_cost(&d, &sim->sched[i], &c);
                printf("%-*s %s %-10s %10.0f + %9.0f + %8.0f = %10.0f  (%.3g s/update comm)\n", w,
                       sim->sched[i].name, model ? "b" : "a", s_model_names[model], c.compute_s,
                       c.comm_s, c.hessian_s, c.total_s, sim_update_comm(&d));
            }
    }
    return 0;
}

int sim_report_plot(const struct sim_report *sim, const char *hw_name, const char *png)
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
