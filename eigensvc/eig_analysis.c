/*
 * eig_analysis: trace and density for the `eig` command (see eig_analysis.h).
 */
#include "eig_analysis.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "eig_slq.h"
#include "nn_net.h"
#include "rt_clock.h"
#include "rt_err.h"

#define S_POINTS 400     /* grid points of the density */
#define S_SIGMA_REL 0.01 /* smoothing width, relative to the range of the nodes */
#define S_PAD_SIGMAS 5.0 /* the grid extends this many widths beyond the nodes */

int eig_print_json(json_t *j)
{
    char *line = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(j);
    if (!line) {
        fprintf(stderr, "eigenbatch eig: out of memory\n");
        return -1;
    }
    printf("%s\n", line);
    free(line);
    return 0;
}

int eig_analysis_trace(struct eig_hvp *hv, int samples, uint64_t seed)
{
    struct eig_trace_result t;
    double t0 = rt_clock_now();
    eig_hvp_begin(hv);
    int rc = eig_hvp_check(hv) ||
             eig_trace(nn_net_param_count(hv->net), samples, seed, eig_hvp_fn, hv, &t);
    eig_hvp_end(hv);
    if (rc) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        return 1;
    }
    json_t *j = json_pack("{s:s, s:f, s:f, s:i, s:i, s:f, s:i}", "method", "hutchinson", "trace",
                          t.trace, "std_error", t.std_error, "samples", t.samples, "hvps",
                          t.samples, "seconds", rt_clock_now() - t0, "n", hv->n);
    return eig_print_json(j) ? 1 : 0;
}

/* Draw the density into png with gnuplot. 0 or -1 with the reason on stderr. */
static int s_plot(const char *png, const double *grid, const double *dens, int points)
{
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        fprintf(stderr, "eigenbatch eig: cannot run gnuplot: %s\n", strerror(errno));
        return -1;
    }
    fprintf(gp,
            "set terminal png size 800,500\nset output '%s'\nset xlabel 'eigenvalue'\n"
            "set ylabel 'density'\nset key off\nplot '-' with lines lw 2\n",
            png);
    for (int k = 0; k < points; k++)
        fprintf(gp, "%.9g %.9g\n", grid[k], dens[k]);
    fprintf(gp, "e\n");
    int st = pclose(gp);
    if (st != 0) {
        fprintf(stderr, "eigenbatch eig: gnuplot failed (status %d): %s not written\n", st, png);
        return -1;
    }
    return 0;
}

/* The density's JSON: grid, values and every run's quadrature. */
static json_t *s_density_json(const struct eig_slq_result *r, const double *grid,
                              const double *dens, double sigma, double lo, double hi)
{
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:f, s:f, s:f}", "method", "slq", "runs", r->runs,
                          "steps", r->m[0], "hvps", r->hvps, "sigma", sigma, "lo", lo, "hi", hi);
    json_t *g = json_array(), *d = json_array(), *nodes = json_array(), *wts = json_array();
    for (int k = 0; g && d && k < S_POINTS; k++) {
        json_array_append_new(g, json_real(grid[k]));
        json_array_append_new(d, json_real(dens[k]));
    }
    for (int q = 0; nodes && wts && q < r->runs; q++) {
        json_t *nq = json_array(), *wq = json_array();
        for (int i = 0; nq && wq && i < r->m[q]; i++) {
            json_array_append_new(nq, json_real(r->nodes[q][i]));
            json_array_append_new(wq, json_real(r->weights[q][i]));
        }
        json_array_append_new(nodes, nq);
        json_array_append_new(wts, wq);
    }
    if (j) {
        json_object_set_new(j, "grid", g);
        json_object_set_new(j, "density", d);
        json_object_set_new(j, "nodes", nodes);
        json_object_set_new(j, "weights", wts);
    }
    return j;
}

int eig_analysis_density(struct eig_hvp *hv, int runs, int steps, uint64_t seed, const char *png)
{
    struct eig_slq_result *r = malloc(sizeof *r);
    double *grid = malloc(2 * S_POINTS * sizeof *grid);
    int status = 1;
    if (!r || !grid) {
        fprintf(stderr, "eigenbatch eig: out of memory\n");
        goto out;
    }
    double *dens = grid + S_POINTS, t0 = rt_clock_now();
    struct eig_slq_config c = {.runs = runs, .steps = steps, .seed = seed};
    eig_hvp_begin(hv);
    int rc = eig_hvp_check(hv) || eig_slq_run(nn_net_param_count(hv->net), &c, eig_hvp_fn, hv, r);
    eig_hvp_end(hv);
    if (rc) {
        fprintf(stderr, "eigenbatch eig: %s\n", rt_err_msg());
        goto out;
    }
    double lo, hi;
    eig_slq_range(r, &lo, &hi);
    double sigma = S_SIGMA_REL * (hi > lo ? hi - lo : fmax(fabs(hi), 1.0));
    lo -= S_PAD_SIGMAS * sigma;
    hi += S_PAD_SIGMAS * sigma;
    eig_slq_density(r, sigma, lo, hi, S_POINTS, grid, dens);
    json_t *j = s_density_json(r, grid, dens, sigma, lo, hi);
    if (j)
        json_object_set_new(j, "seconds", json_real(rt_clock_now() - t0));
    if (j && png)
        json_object_set_new(j, "png", json_string(png));
    if (eig_print_json(j) || (png && s_plot(png, grid, dens, S_POINTS)))
        goto out;
    status = 0;
out:
    free(r);
    free(grid);
    return status;
}
