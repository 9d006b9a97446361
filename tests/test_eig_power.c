/*
 * test_eig_power: power iteration on symmetric matrices with known spectra, A = Q diag(s) Q^T with
 * a random orthogonal Q (product of Householder reflections): a well separated top eigenvalue, a
 * close second one, a negative dominant one, the tolerance and iteration limits, H v = 0, failing
 * and non-finite products, reproducibility from the seed.
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eig_power.h"
#include "rt_err.h"

#define N 48

/* A dense symmetric test matrix and its HVP counter. */
struct mat {
    double a[N * N]; /* row-major A */
    double q0[N];    /* eigenvector of the dominant eigenvalue */
    int calls;       /* HVPs done */
    int fail_at;     /* return an error on this call (0: never) */
    int nan_at;      /* produce NaN on this call (0: never) */
};

static uint64_t s_rng = 1;

static double s_uniform(void)
{
    s_rng = s_rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(s_rng >> 11) + 0.5) / 9007199254740992.0;
}

static double s_normal(void)
{
    return sqrt(-2.0 * log(s_uniform())) * cos(6.283185307179586 * s_uniform());
}

/* Q = H_1 ... H_N (Householder reflections with random normals), A = Q diag(s) Q^T. The
 * eigenvector of s[0] is Q's first column. */
static void s_build(struct mat *m, const double *s, uint64_t seed)
{
    static double q[N * N];
    memset(m, 0, sizeof *m);
    s_rng = seed;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            q[i * N + j] = i == j;
    for (int r = 0; r < N; r++) {
        double u[N], nrm = 0.0;
        for (int i = 0; i < N; i++) {
            u[i] = s_normal();
            nrm += u[i] * u[i];
        }
        /* Q <- Q (I - 2 u u^T / |u|^2) */
        for (int i = 0; i < N; i++) {
            double dot = 0.0;
            for (int k = 0; k < N; k++)
                dot += q[i * N + k] * u[k];
            for (int j = 0; j < N; j++)
                q[i * N + j] -= 2.0 * dot * u[j] / nrm;
        }
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < N; k++)
                acc += q[i * N + k] * s[k] * q[j * N + k];
            m->a[i * N + j] = acc;
        }
    for (int i = 0; i < N; i++)
        m->q0[i] = q[i * N + 0];
}

static int s_hvp(void *user, const float *v, float *hv)
{
    struct mat *m = user;
    m->calls++;
    if (m->fail_at && m->calls == m->fail_at)
        return RT_ERR_TOOBIG;
    for (int i = 0; i < N; i++) {
        double acc = 0.0;
        for (int j = 0; j < N; j++)
            acc += m->a[i * N + j] * (double)v[j];
        hv[i] = (float)acc;
    }
    if (m->nan_at && m->calls == m->nan_at)
        hv[3] = NAN;
    return 0;
}

/* |cos| of the angle between the last iterate and the dominant eigenvector. */
static double s_alignment(const eig_power_t *p, const struct mat *m)
{
    const float *v = eig_power_vector(p);
    double dot = 0.0, nv = 0.0;
    for (int i = 0; i < N; i++) {
        dot += v[i] * m->q0[i];
        nv += (double)v[i] * v[i];
    }
    assert_true(fabs(nv - 1.0) < 1e-5); /* unit vector */
    return fabs(dot);
}

/* Spectrum: s[0] = top, s[1] = second, the rest spread in [lo, hi]. */
static void s_spectrum(double *s, double top, double second, double lo, double hi)
{
    s[0] = top;
    s[1] = second;
    for (int i = 2; i < N; i++)
        s[i] = lo + (hi - lo) * (double)(i - 2) / (double)(N - 3);
}

static struct mat g_m;

static void test_separated_spectrum(void **state)
{
    (void)state;
    double s[N];
    s_spectrum(s, 10.0, 5.0, -2.0, 4.0);
    s_build(&g_m, s, 11);

    struct eig_power_config cfg;
    eig_power_config_preset(&cfg, EIG_POWER_ACCURATE);
    assert_int_equal(cfg.max_iter, 50);
    assert_true(cfg.tol == 1e-3);
    cfg.seed = 3;
    eig_power_t *p = eig_power_new(N, &cfg);
    assert_non_null(p);
    struct eig_power_result r;
    g_m.calls = 0;
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_OK);
    assert_int_equal(r.converged, 1);
    assert_int_equal(r.iterations, g_m.calls);
    assert_true(r.iterations < 50);
    assert_true(r.residual <= 1e-3); /* stopped on the residual */
    assert_true(fabs(r.eigenvalue - 10.0) / 10.0 < 1e-3);
    assert_true(s_alignment(p, &g_m) > 0.99);
    int accurate_iters = r.iterations;
    eig_power_destroy(&p);
    /* with a wide gap the tolerance does bound the error, whatever the start */
    for (uint64_t seed = 100; seed < 108; seed++) {
        cfg.seed = seed;
        eig_power_t *q = eig_power_new(N, &cfg);
        assert_non_null(q);
        assert_int_equal(eig_power_run(q, s_hvp, &g_m, &r), RT_OK);
        assert_int_equal(r.converged, 1);
        assert_true(fabs(r.eigenvalue - 10.0) / 10.0 < 1e-3);
        eig_power_destroy(&q);
    }
    assert_null(p);
    eig_power_destroy(&p);

    eig_power_config_preset(&cfg, EIG_POWER_PAPER);
    assert_int_equal(cfg.max_iter, 10);
    assert_true(cfg.tol == 1e-2);
    cfg.seed = 3;
    p = eig_power_new(N, &cfg);
    assert_non_null(p);
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_OK);
    assert_true(r.iterations <= accurate_iters);
    assert_true(r.rel_change <= 1e-2);                 /* the reference's stop: the change */
    assert_int_equal(r.converged, r.residual <= 1e-2); /* converged: the residual, nothing else */
    assert_true(fabs(r.eigenvalue - 10.0) / 10.0 < 1e-2);
    assert_true(r.eigenvalue <= 10.0 + 1e-4); /* a Rayleigh quotient never passes the top */
    eig_power_destroy(&p);
}

/* Close second eigenvalue (9.9 vs 10): the change test stops while the vector is still a mix of
 * the two top eigenvectors; the quotient then lies between them (error up to the gap, more than
 * tol), and such a result is not reported as converged: `converged` always means that an
 * eigenvalue lies within tol of the result. With a tolerance that cannot be met, all iterations
 * run. */
static void test_close_second(void **state)
{
    (void)state;
    double s[N];
    s_spectrum(s, 10.0, 9.9, 0.0, 3.0);
    s_build(&g_m, s, 12);
    struct eig_power_config cfg;
    eig_power_config_preset(&cfg, EIG_POWER_ACCURATE);
    cfg.stop = EIG_POWER_STOP_CHANGE;
    struct eig_power_result r;
    eig_power_t *p = NULL;
    int early = 0;
    for (uint64_t seed = 1; seed <= 16; seed++) {
        cfg.seed = seed;
        p = eig_power_new(N, &cfg);
        assert_non_null(p);
        assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_OK);
        assert_true(r.rel_change <= 1e-3);
        /* a Rayleigh quotient of a vector (almost) in the top-two eigenspace */
        assert_true(r.eigenvalue <= 10.0 + 1e-4 && r.eigenvalue >= 9.9 - 1e-3);
        /* the stop on the change does not bound the error by tol when the gap is small... */
        if (fabs(r.eigenvalue - 10.0) / 10.0 > 1e-3 && s_alignment(p, &g_m) < 0.9) {
            early++;
            assert_int_equal(r.converged, 0); /* ... and then it is not called converged */
        }
        /* converged: the spectrum {10, 9.9, 0..3} has an eigenvalue within tol of the result */
        if (r.converged)
            assert_true(fabs(r.eigenvalue - 10.0) <= 1e-3 * fabs(r.eigenvalue) ||
                        fabs(r.eigenvalue - 9.9) <= 1e-3 * fabs(r.eigenvalue));
        eig_power_destroy(&p);
    }
    assert_true(early > 0);
    /* the residual stop (accurate): never an early stop; a converged result is that close */
    eig_power_config_preset(&cfg, EIG_POWER_ACCURATE);
    for (uint64_t seed = 1; seed <= 16; seed++) {
        cfg.seed = seed;
        p = eig_power_new(N, &cfg);
        assert_non_null(p);
        assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_OK);
        assert_int_equal(r.converged, r.residual <= 1e-3);
        assert_true(r.converged || r.iterations == 50);
        if (r.converged)
            assert_true(fabs(r.eigenvalue - 10.0) <= 1e-3 * 10.0);
        eig_power_destroy(&p);
    }

    /* a strict tolerance cannot be met in 50 iterations: not converged, all iterations used */
    cfg.tol = 1e-9;
    eig_power_t *q = eig_power_new(N, &cfg);
    assert_non_null(q);
    g_m.calls = 0;
    assert_int_equal(eig_power_run(q, s_hvp, &g_m, &r), RT_OK);
    assert_int_equal(r.converged, 0);
    assert_int_equal(r.iterations, 50);
    assert_int_equal(g_m.calls, 50);
    assert_true(r.residual > 1e-9);
    eig_power_destroy(&q);
}

/* Negative dominant eigenvalue (-12 vs +8): the signed Rayleigh quotient is -12. */
static void test_negative_dominant(void **state)
{
    (void)state;
    double s[N];
    s_spectrum(s, -12.0, 8.0, -3.0, 6.0);
    s_build(&g_m, s, 13);
    struct eig_power_config cfg;
    eig_power_config_preset(&cfg, EIG_POWER_ACCURATE);
    eig_power_t *p = eig_power_new(N, &cfg);
    assert_non_null(p);
    struct eig_power_result r;
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_OK);
    assert_int_equal(r.converged, 1);
    assert_true(fabs(r.eigenvalue + 12.0) / 12.0 < 1e-3);
    assert_true(s_alignment(p, &g_m) > 0.99);
    eig_power_destroy(&p);
}

static void test_limits_and_errors(void **state)
{
    (void)state;
    double s[N];
    s_spectrum(s, 10.0, 5.0, -2.0, 4.0);
    s_build(&g_m, s, 14);
    struct eig_power_config cfg = {.max_iter = 3, .tol = 0.0, .seed = 1};
    eig_power_t *p = eig_power_new(N, &cfg);
    assert_non_null(p);
    struct eig_power_result r;
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_OK);
    assert_int_equal(r.iterations, 3);
    assert_int_equal(r.converged, 0);

    /* the callback's error comes back; a non-finite product is named */
    g_m.calls = 0;
    g_m.fail_at = 2;
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_ERR_TOOBIG);
    g_m.fail_at = 0;
    g_m.calls = 0;
    g_m.nan_at = 2;
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "iteration 2"));
    g_m.nan_at = 0;
    eig_power_destroy(&p);

    /* H = 0: eigenvalue 0 after one product */
    memset(&g_m, 0, sizeof g_m);
    cfg.max_iter = 10;
    p = eig_power_new(N, &cfg);
    assert_non_null(p);
    assert_int_equal(eig_power_run(p, s_hvp, &g_m, &r), RT_OK);
    assert_true(r.eigenvalue == 0.0);
    assert_int_equal(r.converged, 1);
    assert_int_equal(r.iterations, 1);
    eig_power_destroy(&p);

    /* bad arguments */
    assert_null(eig_power_new(0, &cfg));
    cfg.max_iter = 0;
    assert_null(eig_power_new(N, &cfg));
    assert_non_null(strstr(rt_err_msg(), "max_iter"));
    enum eig_power_preset pr;
    assert_int_equal(eig_power_preset_parse("accurate", &pr), RT_OK);
    assert_int_equal(pr, EIG_POWER_ACCURATE);
    assert_int_equal(eig_power_preset_parse("fast", &pr), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "fast"));
}

/* Same seed, same result bit for bit; successive runs draw new start vectors; reseed repeats. */
static void test_reproducible(void **state)
{
    (void)state;
    double s[N];
    s_spectrum(s, 10.0, 9.0, 0.0, 5.0);
    s_build(&g_m, s, 15);
    struct eig_power_config cfg;
    eig_power_config_preset(&cfg, EIG_POWER_PAPER);
    cfg.seed = 42;
    eig_power_t *a = eig_power_new(N, &cfg), *b = eig_power_new(N, &cfg);
    assert_non_null(a);
    assert_non_null(b);
    struct eig_power_result ra, rb, ra2;
    assert_int_equal(eig_power_run(a, s_hvp, &g_m, &ra), RT_OK);
    assert_int_equal(eig_power_run(b, s_hvp, &g_m, &rb), RT_OK);
    assert_memory_equal(&ra, &rb, sizeof ra);
    assert_memory_equal(eig_power_vector(a), eig_power_vector(b), N * sizeof(float));
    assert_int_equal(eig_power_run(a, s_hvp, &g_m, &ra2), RT_OK);
    assert_true(ra2.eigenvalue != ra.eigenvalue); /* a fresh start vector */
    eig_power_reseed(a, 42);
    assert_int_equal(eig_power_run(a, s_hvp, &g_m, &ra2), RT_OK);
    assert_memory_equal(&ra, &ra2, sizeof ra);
    assert_int_equal(eig_power_size(a), N);
    eig_power_destroy(&a);
    eig_power_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_separated_spectrum), cmocka_unit_test(test_close_second),
        cmocka_unit_test(test_negative_dominant),  cmocka_unit_test(test_limits_and_errors),
        cmocka_unit_test(test_reproducible),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
