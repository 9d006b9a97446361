/*
 * eig_lanczos: Lanczos with full reorthogonalisation, and the small symmetric eigenproblem of its
 * tridiagonal matrix by cyclic Jacobi rotations (see eig_lanczos.h).
 */
#include "eig_lanczos.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_rng.h"

#define S_BREAKDOWN 1e-6    /* beta below this times max |alpha|: the Krylov space is exhausted */
#define S_JACOBI_SWEEPS 100 /* Jacobi sweeps at most (converges in far fewer for m <= 256) */

/* A standard normal (Box-Muller, one of the pair) from rt_rng's uniform in [0, 1). */
static double s_normal(uint64_t *s)
{
    double u1 = 1.0 - rt_rng_uniform(s), u2 = rt_rng_uniform(s); /* u1 in (0, 1] */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double s_dot(const float *x, const float *y, size_t n)
{
    double acc = 0.0;
    for (size_t i = 0; i < n; i++)
        acc += (double)x[i] * (double)y[i];
    return acc;
}

/* y -= a x */
static void s_axpy(float *y, double a, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (float)((double)y[i] - a * (double)x[i]);
}

/* Eigenvalues d[0..m) and eigenvectors (columns of z, m x m row-major) of the symmetric m x m
 * matrix a (destroyed), by cyclic Jacobi rotations. */
static void s_jacobi(double *a, int m, double *d, double *z)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < m; j++)
            z[i * m + j] = i == j;
    for (int sweep = 0; sweep < S_JACOBI_SWEEPS; sweep++) {
        double off = 0.0;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++)
                off += a[p * m + q] * a[p * m + q];
        if (off < 1e-300)
            break;
        for (int p = 0; p < m; p++)
            for (int q = p + 1; q < m; q++) {
                double apq = a[p * m + q];
                if (fabs(apq) < 1e-300)
                    continue;
                /* the rotation that zeroes a[p][q]: tan(2 phi) = 2 apq / (aqq - app) */
                double th = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                double t = (th >= 0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < m; k++) { /* columns p, q */
                    double akp = a[k * m + p], akq = a[k * m + q];
                    a[k * m + p] = c * akp - s * akq;
                    a[k * m + q] = s * akp + c * akq;
                }
                for (int k = 0; k < m; k++) { /* rows p, q */
                    double apk = a[p * m + k], aqk = a[q * m + k];
                    a[p * m + k] = c * apk - s * aqk;
                    a[q * m + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < m; k++) {
                    double zkp = z[k * m + p], zkq = z[k * m + q];
                    z[k * m + p] = c * zkp - s * zkq;
                    z[k * m + q] = s * zkp + c * zkq;
                }
            }
    }
    for (int i = 0; i < m; i++)
        d[i] = a[i * m + i];
}

/* The top Ritz values of T_m (alpha, beta) with their residuals (beta_last |last component|)
 * into res; returns how many of them meet tol. work holds 2 m^2 + 2 m doubles. */
static int s_ritz(const double *alpha, const double *beta, int m, double beta_last, int top,
                  double tol, double *work, struct eig_lanczos_result *res)
{
    double *a = work, *z = work + m * m, *d = work + 2 * m * m, *idx = d + m;
    memset(a, 0, (size_t)m * (size_t)m * sizeof *a);
    for (int i = 0; i < m; i++) {
        a[i * m + i] = alpha[i];
        if (i + 1 < m)
            a[i * m + i + 1] = a[(i + 1) * m + i] = beta[i];
    }
    s_jacobi(a, m, d, z);
    /* indices by decreasing eigenvalue (insertion sort: m is small) */
    for (int i = 0; i < m; i++) {
        int k = i;
        while (k > 0 && d[(int)idx[k - 1]] < d[i]) {
            idx[k] = idx[k - 1];
            k--;
        }
        idx[k] = i;
    }
    int k = top < m ? top : m, ok = 0;
    res->k = k;
    res->m = m;
    for (int r = 0; r < m; r++) { /* the quadrature's nodes and weights */
        int i = (int)idx[r];
        res->nodes[r] = d[i];
        res->weights[r] = z[i] * z[i]; /* first row of z: the first components */
    }
    for (int r = 0; r < k; r++) {
        int i = (int)idx[r];
        double th = d[i], rr = fabs(beta_last * z[(m - 1) * m + i]);
        res->eigenvalues[r] = th;
        res->residuals[r] = th != 0.0 ? rr / fabs(th) : (rr == 0.0 ? 0.0 : INFINITY);
        ok += res->residuals[r] <= tol;
    }
    return ok;
}

size_t eig_lanczos_bytes(size_t n, const struct eig_lanczos_config *cfg)
{
    return ((size_t)cfg->max_iter + 1) * n * sizeof(float);
}

int eig_lanczos_run(size_t n, const struct eig_lanczos_config *cfg, eig_power_hvp_fn hvp,
                    void *user, struct eig_lanczos_result *res)
{
    memset(res, 0, sizeof *res);
    if (n == 0 || cfg->top < 1 || cfg->top > EIG_LANCZOS_MAX_TOP || cfg->max_iter < cfg->top ||
        cfg->max_iter > EIG_LANCZOS_MAX_ITER || !(cfg->tol >= 0.0))
        return rt_err_set(RT_ERR_ARG, "lanczos: top %d, max_iter %d (<= %d), tol %g", cfg->top,
                          cfg->max_iter, EIG_LANCZOS_MAX_ITER, cfg->tol);
    int m = cfg->max_iter, rc = RT_OK;
    float *v = malloc(eig_lanczos_bytes(n, cfg));
    double *ab = malloc(2 * (size_t)m * sizeof *ab);
    double *work = malloc((2 * (size_t)m * (size_t)m + 2 * (size_t)m) * sizeof *work);
    if (!v || !ab || !work) {
        rc = rt_err_set(RT_ERR_NOMEM, "lanczos: %zu bytes of Krylov basis",
                        eig_lanczos_bytes(n, cfg));
        goto out;
    }
    double *alpha = ab, *beta = ab + m, scale = 0.0;
    uint64_t rng = cfg->seed;
    for (size_t i = 0; i < n; i++)
        v[i] =
            cfg->rademacher ? (rt_rng_uniform(&rng) < 0.5 ? -1.0f : 1.0f) : (float)s_normal(&rng);
    double nrm = sqrt(s_dot(v, v, n));
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((double)v[i] / nrm);
    for (int j = 0; j < m; j++) {
        float *vj = v + (size_t)j * n, *w = v + (size_t)(j + 1) * n;
        if ((rc = hvp(user, vj, w)))
            goto out;
        alpha[j] = s_dot(vj, w, n);
        if (!isfinite(alpha[j])) {
            rc = rt_err_set(RT_ERR_FORMAT,
                            "lanczos: Hessian-vector product not finite at "
                            "iteration %d",
                            j + 1);
            goto out;
        }
        s_axpy(w, alpha[j], vj, n);
        if (j > 0)
            s_axpy(w, beta[j - 1], vj - n, n);
        for (int pass = 0; pass < 2; pass++) /* full reorthogonalisation, twice */
            for (int i = 0; i <= j; i++)
                s_axpy(w, s_dot(v + (size_t)i * n, w, n), v + (size_t)i * n, n);
        beta[j] = sqrt(s_dot(w, w, n));
        res->iterations = j + 1;
        int ok = s_ritz(alpha, beta, j + 1, beta[j], cfg->top, cfg->tol, work, res);
        res->converged = ok == cfg->top;
        scale = fmax(scale, fabs(alpha[j]));
        /* beta at float rounding of |H|: an invariant subspace, the values exact to rounding */
        if ((res->converged && !cfg->all_steps) || beta[j] <= S_BREAKDOWN * scale)
            break;
        for (size_t i = 0; i < n; i++)
            w[i] = (float)((double)w[i] / beta[j]);
    }
out:
    free(v);
    free(ab);
    free(work);
    return rc;
}
