/*
 * cmd_plot: `eigenbatch plot RUN_DIR [--out FILE.png]`: the schedule of a run, like Figure 1 of
 * Yao et al.: learning rate and batch size against epoch, with the measured top eigenvalue, drawn
 * by gnuplot (pngcairo, else png) from RUN_DIR/metrics.jsonl (events "eig" of the eigen service;
 * "epoch" events with B / batch_size and lr fill in epochs without a decision). The rows are
 * sorted by epoch before they are drawn: the eigen service's events and the workers' land in the
 * file in arrival order, and gnuplot's `steps` joins rows in file order, so unsorted rows drew
 * rectangles instead of a staircase. `--data FILE` keeps the sorted rows that were drawn.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "eb_cli.h"

#define S_PATH_MAX 4096
#define S_LINE_MAX (1 << 20) /* longest metrics line */

/* A number field of obj, or NaN. */
static double s_num(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : (double)NAN;
}

/* One drawn row: x (epoch), the schedule in force and the eigenvalue measured (NaN: none). */
struct s_row {
    double epoch; /* x: the epoch the values hold for */
    double lr;    /* learning rate, or NaN */
    double batch; /* batch size, or NaN */
    double lam;   /* top eigenvalue measured at the end of epoch - 1, or NaN */
    long order;   /* position in the file: ties keep it */
};

static int s_row_cmp(const void *a, const void *b)
{
    const struct s_row *x = a, *y = b;
    if (x->epoch != y->epoch)
        return x->epoch < y->epoch ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* Append a row to *rows (growing *cap). Returns 0 or -1 when out of memory. */
static int s_row_add(struct s_row **rows, int *n, int *cap, struct s_row r)
{
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 64;
        struct s_row *p = realloc(*rows, (size_t)nc * sizeof *p);
        if (!p)
            return -1;
        *rows = p;
        *cap = nc;
    }
    r.order = *n;
    (*rows)[(*n)++] = r;
    return 0;
}

/* Read the rows of metrics (epoch lr batch eigenvalue, one per event with a value) into *rows
 * (caller frees), sorted by epoch. Returns 0 or -1 (reported). */
static int s_read_rows(const char *metrics, struct s_row **rows, int *n_rows)
{
    FILE *f = fopen(metrics, "r");
    if (!f) {
        fprintf(stderr, "eigenbatch plot: cannot open %s: %s\n", metrics, strerror(errno));
        return -1;
    }
    char *line = malloc(S_LINE_MAX);
    if (!line) {
        fclose(f);
        return -1;
    }
    long lineno = 0;
    int cap = 0, rc = 0;
    *rows = NULL;
    *n_rows = 0;
    while (fgets(line, S_LINE_MAX, f)) {
        lineno++;
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o || !json_is_object(o)) {
            fprintf(stderr, "eigenbatch plot: %s:%ld: not a JSON object (%s), skipped\n", metrics,
                    lineno, o ? "not an object" : jerr.text);
            json_decref(o);
            continue;
        }
        const char *ev = json_string_value(json_object_get(o, "event"));
        double epoch = s_num(o, "epoch"), lr = s_num(o, "lr"), b = s_num(o, "batch_size");
        double lam = NAN;
        if (ev && strcmp(ev, "eig") == 0) {
            lam = s_num(o, "eigenvalue");
            epoch += 1; /* a decision at the end of epoch e sets epoch e + 1 */
        } else if (ev && strcmp(ev, "epoch") == 0) {
            if (isnan(b))
                b = s_num(o, "B");
        } else {
            json_decref(o);
            continue;
        }
        if (!isnan(epoch) && (!isnan(lr) || !isnan(b)) &&
            s_row_add(rows, n_rows, &cap, (struct s_row){epoch, lr, b, lam, 0})) {
            fprintf(stderr, "eigenbatch plot: out of memory\n");
            rc = -1;
        }
        json_decref(o);
        if (rc)
            break;
    }
    free(line);
    fclose(f);
    if (!rc && *n_rows > 1)
        qsort(*rows, (size_t)*n_rows, sizeof **rows, s_row_cmp);
    return rc;
}

/* Write the rows as gnuplot data: epoch lr batch eigenvalue. */
static void s_write_rows(const struct s_row *rows, int n, FILE *out)
{
    for (int i = 0; i < n; i++) {
        fprintf(out, "%g %.10g %.10g ", rows[i].epoch, rows[i].lr, rows[i].batch);
        if (isnan(rows[i].lam))
            fprintf(out, "NaN\n");
        else
            fprintf(out, "%.10g\n", rows[i].lam);
    }
}

int eb_cmd_plot(int argc, char **argv)
{
    const char *dir = NULL, *outp = NULL, *keep = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            outp = argv[++i];
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            keep = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: eigenbatch plot RUN_DIR [--out FILE.png] [--data FILE]\n");
            return 0;
        } else if (argv[i][0] == '-' || dir) {
            fprintf(stderr,
                    "eigenbatch plot: unexpected argument '%s'\n"
                    "usage: eigenbatch plot RUN_DIR [--out FILE.png] [--data FILE]\n",
                    argv[i]);
            return 2;
        } else {
            dir = argv[i];
        }
    }
    if (!dir) {
        fprintf(stderr, "usage: eigenbatch plot RUN_DIR [--out FILE.png] [--data FILE]\n");
        return 2;
    }
    char metrics[S_PATH_MAX], png[S_PATH_MAX], data[S_PATH_MAX];
    if (snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir) >= (int)sizeof metrics ||
        snprintf(png, sizeof png, "%s", outp ? outp : "") >= (int)sizeof png ||
        snprintf(data, sizeof data, "%s", keep ? keep : "") >= (int)sizeof data) {
        fprintf(stderr, "eigenbatch plot: path too long\n");
        return 2;
    }
    if (!outp)
        snprintf(png, sizeof png, "%s/schedule.png", dir);
    if (!keep && snprintf(data, sizeof data, "%s/.schedule.dat", dir) >= (int)sizeof data) {
        fprintf(stderr, "eigenbatch plot: path too long\n");
        return 2;
    }
    struct s_row *rows = NULL;
    int n_rows = 0;
    if (s_read_rows(metrics, &rows, &n_rows)) {
        free(rows);
        return 1;
    }
    if (n_rows == 0) {
        fprintf(stderr, "eigenbatch plot: %s has no eig or epoch events with lr / batch size\n",
                metrics);
        free(rows);
        return 1;
    }
    FILE *df = fopen(data, "w");
    if (!df) {
        fprintf(stderr, "eigenbatch plot: cannot write %s: %s\n", data, strerror(errno));
        free(rows);
        return 1;
    }
    s_write_rows(rows, n_rows, df);
    free(rows);
    if (fclose(df)) {
        fprintf(stderr, "eigenbatch plot: cannot write %s: %s\n", data, strerror(errno));
        unlink(data);
        return 1;
    }
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        fprintf(stderr, "eigenbatch plot: cannot run gnuplot: %s\n", strerror(errno));
        if (!keep)
            unlink(data);
        return 1;
    }
    /* pngcairo when the build has it, else the GD png terminal */
    fprintf(gp,
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) "
            "{ set terminal pngcairo size 1200,500 } else { set terminal png size 1200,500 }\n"
            "set output '%s'\n"
            "set multiplot layout 1,2 title 'eigenbatch schedule'\n"
            "set xlabel 'epoch'\n set grid\n set key top left\n set xrange [0:*]\n"
            "set ylabel 'learning rate'\n set y2label 'batch size'\n"
            "set ytics nomirror\n set y2tics\n set logscale y2 2\n"
            "plot '%s' using 1:2 with steps lw 2 title 'lr', "
            "'' using 1:3 axes x1y2 with steps lw 2 title 'batch size'\n"
            "unset logscale y2\n unset y2tics\n unset y2label\n set ytics mirror\n"
            "set ylabel 'top Hessian eigenvalue'\n"
            "plot '%s' using ($1-1):4 with linespoints lw 2 pt 7 title 'eigenvalue (epoch end)'\n"
            "unset multiplot\n",
            png, data, data);
    int st = pclose(gp);
    if (!keep)
        unlink(data);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "eigenbatch plot: gnuplot failed (status %d)\n", st);
        return 1;
    }
    printf("%s\n", png);
    return 0;
}
