/*
 * eig_power: power iteration with Rayleigh quotients over an HVP callback (see eig_power.h).
 */
#include "eig_power.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rt_err.h"

struct eig_power {
    size_t n;                    /* vector length */
    struct eig_power_config cfg; /* iteration limits */
    float *a;                    /* work vector (n floats) */
    float *b;                    /* work vector (n floats) */
    const float *last;           /* the last iterate: a or b */
    uint64_t rng;                /* splitmix64 state of the start-vector generator */
};

void eig_power_config_preset(struct eig_power_config *cfg, enum eig_power_preset preset)
{
    memset(cfg, 0, sizeof *cfg);
    if (preset == EIG_POWER_ACCURATE) {
        cfg->max_iter = 50;
        cfg->tol = 1e-3;
        cfg->stop = EIG_POWER_STOP_RESIDUAL;
    } else {
        cfg->max_iter = 10;
        cfg->tol = 1e-2;
        cfg->stop = EIG_POWER_STOP_CHANGE; /* the reference's rule, for the ABS decisions */
    }
}

int eig_power_preset_parse(const char *name, enum eig_power_preset *out)
{
    if (name && strcasecmp(name, "paper") == 0) {
        *out = EIG_POWER_PAPER;
        return RT_OK;
    }
    if (name && strcasecmp(name, "accurate") == 0) {
        *out = EIG_POWER_ACCURATE;
        return RT_OK;
    }
    return rt_err_set(RT_ERR_CONFIG, "power iteration: unknown preset '%s' (paper, accurate)",
                      name ? name : "(null)");
}

eig_power_t *eig_power_new(size_t n, const struct eig_power_config *cfg)
{
    if (n == 0) {
        rt_err_set(RT_ERR_ARG, "power iteration: vector length is 0");
        return NULL;
    }
    if (!cfg || cfg->max_iter < 1 || !isfinite(cfg->tol) || cfg->tol < 0.0 ||
        (cfg->stop != EIG_POWER_STOP_RESIDUAL && cfg->stop != EIG_POWER_STOP_CHANGE)) {
        rt_err_set(RT_ERR_CONFIG, "power iteration: max_iter %d must be >= 1 and tol %g >= 0",
                   cfg ? cfg->max_iter : 0, cfg ? cfg->tol : 0.0);
        return NULL;
    }
    eig_power_t *self = calloc(1, sizeof *self);
    if (!self)
        goto out_nomem;
    self->a = malloc(n * sizeof *self->a);
    if (!self->a)
        goto out_free_self;
    self->b = malloc(n * sizeof *self->b);
    if (!self->b)
        goto out_free_a;
    self->n = n;
    self->cfg = *cfg;
    self->rng = cfg->seed;
    self->last = self->a;
    memset(self->a, 0, n * sizeof *self->a);
    return self;

out_free_a:
    free(self->a);
out_free_self:
    free(self);
out_nomem:
    rt_err_set(RT_ERR_NOMEM, "power iteration: no memory for 2 x %zu floats", n);
    return NULL;
}

void eig_power_destroy(eig_power_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    eig_power_t *self = *self_p;
    free(self->a);
    free(self->b);
    free(self);
    *self_p = NULL;
}

void eig_power_reseed(eig_power_t *self, uint64_t seed)
{
    self->rng = seed;
}

const float *eig_power_vector(const eig_power_t *self)
{
    return self->last;
}

size_t eig_power_size(const eig_power_t *self)
{
    return self->n;
}

/* splitmix64: 64 random bits. */
static uint64_t s_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in (0, 1): 53 random bits, never 0. */
static double s_uniform(uint64_t *s)
{
    return ((double)(s_next(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

/* Fill v with standard normals (Box-Muller, both values used). */
static void s_gaussian(uint64_t *s, float *v, size_t n)
{
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(s_uniform(s)));
        double th = two_pi * s_uniform(s);
        v[i] = (float)(r * cos(th));
        if (i + 1 < n)
            v[i + 1] = (float)(r * sin(th));
    }
}

static double s_dot(const float *x, const float *y, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++)
        acc += (double)x[i] * (double)y[i];
    return acc;
}

/* Scale v to unit length in place; returns its former norm. */
static double s_normalise(float *v, size_t n)
{
    double nrm = sqrt(s_dot(v, v, n));
    if (nrm > 0.0) {
        double inv = 1.0 / nrm;
        for (size_t i = 0; i < n; i++)
            v[i] = (float)((double)v[i] * inv);
    }
    return nrm;
}

int eig_power_run(eig_power_t *self, eig_power_hvp_fn hvp, void *user, struct eig_power_result *res)
{
    const size_t n = self->n;
    float *v = self->a, *hv = self->b;
    double lam_prev = 0.0;

    memset(res, 0, sizeof *res);
    res->rel_change = NAN;
    do { /* a zero start vector is possible only in theory (n draws of exactly 0); redraw */
        s_gaussian(&self->rng, v, n);
    } while (s_normalise(v, n) == 0.0);
    self->last = v;

    for (int32_t it = 1; it <= self->cfg.max_iter; it++) {
        int rc = hvp(user, v, hv);
        if (rc != 0)
            return rc;
        double lam = s_dot(v, hv, n);
        if (!isfinite(lam))
            return rt_err_set(RT_ERR_FORMAT,
                              "power iteration: Hessian-vector product not finite at iteration %d",
                              it);
        res->eigenvalue = lam;
        res->iterations = it;
        double nrm = s_normalise(hv, n);
        if (!isfinite(nrm))
            return rt_err_set(RT_ERR_FORMAT,
                              "power iteration: Hessian-vector product not finite at iteration %d",
                              it);
        if (nrm == 0.0) { /* v is in the null space: H v = 0, eigenvalue 0 */
            res->eigenvalue = 0.0;
            res->residual = 0.0;
            res->converged = 1;
            return RT_OK;
        }
        /* |hv - lam v|^2 = |hv|^2 - lam^2 for a unit v with lam = v . hv */
        double r2 = nrm * nrm - lam * lam;
        res->residual = lam != 0.0 ? sqrt(r2 > 0.0 ? r2 : 0.0) / fabs(lam) : INFINITY;
        res->converged = res->residual <= self->cfg.tol;
        float *t = v;
        v = hv;
        hv = t;
        self->last = v;
        if (self->cfg.stop == EIG_POWER_STOP_RESIDUAL && res->converged)
            return RT_OK;
        if (it > 1) {
            double diff = fabs(lam - lam_prev);
            res->rel_change = lam != 0.0 ? diff / fabs(lam) : (diff == 0.0 ? 0.0 : INFINITY);
            if (self->cfg.stop == EIG_POWER_STOP_CHANGE && diff <= self->cfg.tol * fabs(lam))
                return RT_OK;
        }
        lam_prev = lam;
    }
    return RT_OK;
}
