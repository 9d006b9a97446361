/*
 * eig_slq: Hutchinson's trace and the stochastic Lanczos quadrature density (see eig_slq.h).
 */
#include "eig_slq.h"

#include <math.h>
#include <stdlib.h>

#include "rt_err.h"
#include "rt_rng.h"

#define S_SEED_MIX 0x9e3779b97f4a7c15ull /* spreads the seeds of successive runs */

int eig_trace(size_t n, int samples, uint64_t seed, eig_power_hvp_fn hvp, void *user,
              struct eig_trace_result *out)
{
    out->trace = out->std_error = 0;
    out->samples = 0;
    if (n == 0 || samples < 1)
        return rt_err_set(RT_ERR_ARG, "trace: %d samples of %zu values", samples, n);
    float *v = malloc(2 * n * sizeof *v);
    if (!v)
        return rt_err_set(RT_ERR_NOMEM, "trace: two vectors of %zu floats", n);
    float *hv = v + n;
    uint64_t rng = seed;
    double sum = 0, sum2 = 0;
    int rc = RT_OK;
    for (int s = 0; s < samples; s++) {
        for (size_t i = 0; i < n; i++)
            v[i] = rt_rng_uniform(&rng) < 0.5 ? -1.0f : 1.0f;
        if ((rc = hvp(user, v, hv)))
            break;
        double t = 0;
        for (size_t i = 0; i < n; i++)
            t += (double)v[i] * (double)hv[i];
        if (!isfinite(t)) {
            rc = rt_err_set(RT_ERR_FORMAT, "trace: Hessian-vector product %d not finite", s + 1);
            break;
        }
        sum += t;
        sum2 += t * t;
    }
    free(v);
    if (rc)
        return rc;
    double mean = sum / samples;
    double var = samples > 1 ? (sum2 - samples * mean * mean) / (samples - 1) : 0;
    out->trace = mean;
    out->std_error = var > 0 ? sqrt(var / samples) : 0;
    out->samples = samples;
    return RT_OK;
}

int eig_slq_run(size_t n, const struct eig_slq_config *cfg, eig_power_hvp_fn hvp, void *user,
                struct eig_slq_result *res)
{
    res->runs = 0;
    res->hvps = 0;
    if (cfg->runs < 1 || cfg->runs > EIG_SLQ_MAX_RUNS || cfg->steps < 1 ||
        cfg->steps > EIG_LANCZOS_MAX_ITER)
        return rt_err_set(RT_ERR_ARG, "density: %d runs (1..%d) of %d steps (1..%d)", cfg->runs,
                          EIG_SLQ_MAX_RUNS, cfg->steps, EIG_LANCZOS_MAX_ITER);
    struct eig_lanczos_result *lr = malloc(sizeof *lr);
    if (!lr)
        return rt_err_set(RT_ERR_NOMEM, "density");
    int rc = RT_OK;
    for (int r = 0; r < cfg->runs; r++) {
        struct eig_lanczos_config lc = {.max_iter = cfg->steps,
                                        .top = 1,
                                        .tol = 0,
                                        .seed = cfg->seed ^ (uint64_t)(r + 1) * S_SEED_MIX,
                                        .rademacher = 1,
                                        .all_steps = 1};
        if ((rc = eig_lanczos_run(n, &lc, hvp, user, lr)))
            break;
        res->m[r] = lr->m;
        for (int i = 0; i < lr->m; i++) {
            res->nodes[r][i] = lr->nodes[i];
            res->weights[r][i] = lr->weights[i];
        }
        res->hvps += lr->iterations;
        res->runs = r + 1;
    }
    free(lr);
    return rc;
}

void eig_slq_range(const struct eig_slq_result *res, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int r = 0; r < res->runs; r++)
        for (int i = 0; i < res->m[r]; i++) {
            *lo = fmin(*lo, res->nodes[r][i]);
            *hi = fmax(*hi, res->nodes[r][i]);
        }
}

void eig_slq_density(const struct eig_slq_result *res, double sigma, double lo, double hi,
                     int points, double *grid, double *density)
{
    double norm = 1.0 / (res->runs * sigma * sqrt(2.0 * M_PI));
    for (int k = 0; k < points; k++) {
        double t = lo + (hi - lo) * k / (points - 1), acc = 0;
        for (int r = 0; r < res->runs; r++)
            for (int i = 0; i < res->m[r]; i++) {
                double u = (t - res->nodes[r][i]) / sigma;
                acc += res->weights[r][i] * exp(-0.5 * u * u);
            }
        grid[k] = t;
        density[k] = acc * norm;
    }
}
