/*
 * test_eig_lanczos: Lanczos with full reorthogonalisation on symmetric matrices of known spectrum
 * (A = H diag(s) H with H = I - 2 u u^T, a random reflection). The top-k values come out to the
 * tolerance asked for, with residuals that say so; a close second eigenvalue that power iteration
 * cannot separate in 50 products takes Lanczos far fewer; an invariant subspace ends it exactly;
 * bad configurations and non-finite products are errors. Hutchinson's trace falls within three
 * standard errors of the exact one; the stochastic Lanczos quadrature puts the density's mass
 * where the spectrum is (two clusters: the mass of each within a window around it matches its
 * share of the eigenvalues) and integrates to 1.
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eig_lanczos.h"
#include "eig_power.h"
#include "eig_slq.h"
#include "rt_err.h"

#define N 60

struct s_mat {
    double a[N * N]; /* the matrix, row-major */
    int calls;       /* products done */
    int nan_at;      /* > 0: the product of that call is NaN */
};

/* A = H diag(s) H, H = I - 2 u u^T for a unit u from seed. */
static void s_build(struct s_mat *m, const double *s, unsigned seed)
{
    double u[N], nrm = 0;
    srand(seed);
    for (int i = 0; i < N; i++) {
        u[i] = (double)rand() / RAND_MAX - 0.5;
        nrm += u[i] * u[i];
    }
    for (int i = 0; i < N; i++)
        u[i] /= sqrt(nrm);
    memset(m, 0, sizeof *m);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < N; k++) {
                double hik = (i == k) - 2 * u[i] * u[k], hjk = (j == k) - 2 * u[j] * u[k];
                acc += hik * s[k] * hjk;
            }
            m->a[i * N + j] = acc;
        }
}

static int s_hvp(void *user, const float *v, float *hv)
{
    struct s_mat *m = user;
    m->calls++;
    for (int i = 0; i < N; i++) {
        double acc = 0;
        for (int j = 0; j < N; j++)
            acc += m->a[i * N + j] * v[j];
        hv[i] = m->nan_at == m->calls ? NAN : (float)acc;
    }
    return 0;
}

static struct s_mat g_m;

static void test_top_three_with_close_values(void **state)
{
    (void)state;
    double s[N];
    for (int i = 0; i < N; i++)
        s[i] = -2.0 + 6.0 * i / N; /* the bulk in [-2, 4) */
    s[0] = 10.0, s[1] = 9.9, s[2] = 9.5;
    s_build(&g_m, s, 7);
    struct eig_lanczos_config c = {.max_iter = N, .top = 3, .tol = 1e-5, .seed = 3};
    struct eig_lanczos_result r;
    assert_int_equal(eig_lanczos_run(N, &c, s_hvp, &g_m, &r), RT_OK);
    assert_int_equal(r.converged, 1);
    assert_int_equal(r.k, 3);
    const double want[3] = {10.0, 9.9, 9.5};
    for (int i = 0; i < 3; i++) {
        assert_true(r.residuals[i] <= 1e-5);
        if (fabs(r.eigenvalues[i] - want[i]) > 1e-4 * want[i])
            fail_msg("eigenvalue %d: %.8f, want %.8f", i, r.eigenvalues[i], want[i]);
    }
    assert_int_equal(r.iterations, g_m.calls);

    /* the same accuracy on the top one: Lanczos in far fewer products than power iteration */
    struct eig_lanczos_config c1 = {.max_iter = N, .top = 1, .tol = 1e-3, .seed = 3};
    g_m.calls = 0;
    assert_int_equal(eig_lanczos_run(N, &c1, s_hvp, &g_m, &r), RT_OK);
    assert_int_equal(r.converged, 1);
    assert_true(fabs(r.eigenvalues[0] - 10.0) <= 1e-3 * 10.0);
    int lanczos_hvps = r.iterations;
    struct eig_power_config pc;
    eig_power_config_preset(&pc, EIG_POWER_ACCURATE);
    pc.seed = 3;
    eig_power_t *p = eig_power_new(N, &pc);
    assert_non_null(p);
    struct eig_power_result pr;
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &pr), RT_OK);
    eig_power_destroy(&p);
    print_message("  top eigenvalue to 1e-3: Lanczos %d products; power iteration %d (converged "
                  "%d, residual %.2g)\n",
                  lanczos_hvps, pr.iterations, pr.converged, pr.residual);
    assert_true(lanczos_hvps * 2 < pr.iterations);
}

static void test_invariant_subspace_is_exact(void **state)
{
    (void)state;
    double s[N];
    for (int i = 0; i < N; i++)
        s[i] = i % 3 == 0 ? 4.0 : (i % 3 == 1 ? 1.0 : -1.0); /* three distinct values */
    s_build(&g_m, s, 9);
    struct eig_lanczos_config c = {.max_iter = 20, .top = 2, .tol = 1e-12, .seed = 5};
    struct eig_lanczos_result r;
    assert_int_equal(eig_lanczos_run(N, &c, s_hvp, &g_m, &r), RT_OK);
    assert_true(r.iterations <= 4); /* the Krylov space of 3 distinct values has dimension 3 */
    assert_true(fabs(r.eigenvalues[0] - 4.0) < 1e-4 && fabs(r.eigenvalues[1] - 1.0) < 1e-4);
}

static void test_errors(void **state)
{
    (void)state;
    double s[N];
    for (int i = 0; i < N; i++)
        s[i] = i + 1.0;
    s_build(&g_m, s, 11);
    struct eig_lanczos_result r;
    struct eig_lanczos_config bad[] = {{.max_iter = 10, .top = 0, .tol = 1e-3},
                                       {.max_iter = 2, .top = 3, .tol = 1e-3},
                                       {.max_iter = 1000, .top = 3, .tol = 1e-3},
                                       {.max_iter = 10, .top = 3, .tol = -1}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(eig_lanczos_run(N, &bad[i], s_hvp, &g_m, &r), RT_ERR_ARG);
    struct eig_lanczos_config c = {.max_iter = 10, .top = 1, .tol = 0, .seed = 1};
    g_m.calls = 0;
    g_m.nan_at = 3;
    assert_int_equal(eig_lanczos_run(N, &c, s_hvp, &g_m, &r), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "iteration 3"));
    g_m.nan_at = 0;
    /* a tolerance of 0 cannot be met: every product used, not converged */
    g_m.calls = 0;
    assert_int_equal(eig_lanczos_run(N, &c, s_hvp, &g_m, &r), RT_OK);
    assert_int_equal(r.iterations, 10);
    assert_int_equal(r.converged, 0);
}

static void test_trace_and_density(void **state)
{
    (void)state;
    /* 20 eigenvalues near 1, 40 near 5 (with a small spread) */
    double sp[N], tr = 0;
    for (int i = 0; i < N; i++) {
        sp[i] = i < 20 ? 1.0 + 0.01 * i : 5.0 + 0.01 * (i - 20);
        tr += sp[i];
    }
    s_build(&g_m, sp, 11);
    struct eig_trace_result t;
    assert_int_equal(eig_trace(N, 200, 3, s_hvp, &g_m, &t), RT_OK);
    assert_int_equal(t.samples, 200);
    assert_true(t.std_error > 0);
    if (fabs(t.trace - tr) > 3 * t.std_error)
        fail_msg("trace %.4f +- %.4f, exact %.4f", t.trace, t.std_error, tr);
    assert_int_equal(eig_trace(N, 0, 3, s_hvp, &g_m, &t), RT_ERR_ARG);

    struct eig_slq_result *r = malloc(sizeof *r);
    assert_non_null(r);
    struct eig_slq_config c = {.runs = 8, .steps = 30, .seed = 5};
    assert_int_equal(eig_slq_run(N, &c, s_hvp, &g_m, r), RT_OK);
    assert_int_equal(r->runs, 8);
    assert_int_equal(r->hvps, 8 * 30);
    for (int k = 0; k < r->runs; k++) {
        double w = 0;
        for (int i = 0; i < r->m[k]; i++)
            w += r->weights[k][i];
        assert_true(fabs(w - 1.0) < 1e-6); /* the weights of a quadrature sum to 1 */
    }
    double lo, hi;
    eig_slq_range(r, &lo, &hi);
    assert_true(fabs(lo - 1.0) < 0.05 && fabs(hi - 5.39) < 0.05);
    enum { P = 801 };
    static double grid[P], dens[P];
    eig_slq_density(r, 0.05, 0.0, 6.5, P, grid, dens);
    double total = 0, low = 0, step = grid[1] - grid[0];
    for (int k = 0; k < P; k++) {
        total += dens[k] * step;
        if (grid[k] < 3.0)
            low += dens[k] * step;
    }
    assert_true(fabs(total - 1.0) < 0.01);
    if (fabs(low - 20.0 / N) > 0.1) /* a third of the eigenvalues in the low cluster */
        fail_msg("mass below 3: %.3f, expected %.3f", low, 20.0 / N);
    struct eig_slq_config bad = {.runs = 0, .steps = 30};
    assert_int_equal(eig_slq_run(N, &bad, s_hvp, &g_m, r), RT_ERR_ARG);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_three_with_close_values),
        cmocka_unit_test(test_invariant_subspace_is_exact),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_trace_and_density),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
