/*
 * test_eig_hvp: the top Hessian eigenvalue of a net by power iteration over nn_net_hvp (eig_hvp)
 * against the dense Hessian of a tiny net (about 50 parameters, built column by column from
 * nn_net_hvp) whose spectrum comes from a Jacobi eigen-solver, full and block (last layer); and
 * `eigenbatch eig` on a weights file and a small LMDB against the same computation in process
 * (power iteration by --method power, Lanczos under the accurate preset's default), with its
 * errors on bad input.
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app_weights.h"
#include "eig_hvp.h"
#include "nn_layer.h"
#include "nn_net.h"
#include "rt_err.h"
#include "rt_loader.h"

#define TINY_N 6       /* samples of the tiny net's batch */
#define TINY_CLASSES 3 /* its classes */
#define JACOBI_SWEEPS 100

/* Eigenvalues of the symmetric n x n matrix a (row-major, destroyed) by cyclic Jacobi rotations. */
static void s_jacobi(double *a, int n, double *eig)
{
    for (int sweep = 0; sweep < JACOBI_SWEEPS; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++)
                off += a[p * n + q] * a[p * n + q];
        if (off < 1e-30)
            break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300)
                    continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++)
        eig[i] = a[i * n + i];
}

/* The eigenvalue of largest magnitude (what power iteration finds). */
static double s_dominant(const double *eig, int n, double *second)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (fabs(eig[i]) > fabs(eig[best]))
            best = i;
    *second = 0;
    for (int i = 0; i < n; i++)
        if (i != best && fabs(eig[i]) > *second)
            *second = fabs(eig[i]);
    return eig[best];
}

static nn_net_t *s_tiny(void)
{
    nn_net_t *net = nn_net_new(1, 2, 2, TINY_N);
    assert_non_null(net);
    int x = nn_net_add(net, nn_flatten_new(), 0, -1);
    x = nn_net_add(net, nn_linear_new("a", 6), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    nn_net_add(net, nn_linear_new("b", TINY_CLASSES), x, -1);
    assert_int_equal(nn_net_build(net), 0);
    nn_net_init(net, 5);
    return net;
}

/* Dense Hessian (or its block) in double, from nn_net_hvp column by column; checks symmetry. */
static void s_dense(struct eig_hvp *h, size_t lo, int n, double *hd)
{
    size_t np = nn_net_param_count(h->net);
    float *v = calloc(np, sizeof(float)), *hv = calloc(np, sizeof(float));
    for (int j = 0; j < n; j++) {
        memset(v, 0, np * sizeof(float));
        v[lo + (size_t)j] = 1;
        eig_hvp_fn(h, v, hv);
        for (int i = 0; i < n; i++)
            hd[i * n + j] = hv[lo + (size_t)i];
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            if (fabs(hd[i * n + j] - hd[j * n + i]) > 1e-4 * (1 + fabs(hd[i * n + j])))
                fail_msg("H[%d][%d] = %g but H[%d][%d] = %g", i, j, hd[i * n + j], j, i,
                         hd[j * n + i]);
            hd[i * n + j] = hd[j * n + i] = 0.5 * (hd[i * n + j] + hd[j * n + i]);
        }
    free(v);
    free(hv);
}

static void s_check_top(struct eig_hvp *h, size_t lo, int n)
{
    double *hd = calloc((size_t)n * (size_t)n, sizeof(double)),
           *ev = calloc((size_t)n, sizeof(double));
    s_dense(h, lo, n, hd);
    s_jacobi(hd, n, ev);
    double second, top = s_dominant(ev, n, &second);
    assert_true(fabs(top) > 1e-3);
    /* a clear gap so that power iteration converges in the iterations given */
    assert_true(second < 0.9 * fabs(top));
    struct eig_power_config pc = {.max_iter = 2000, .tol = 1e-9, .seed = 3};
    eig_power_t *pw = eig_power_new(nn_net_param_count(h->net), &pc);
    assert_non_null(pw);
    struct eig_power_result res;
    double secs = -1;
    assert_int_equal(eig_hvp_top(pw, h, &res, &secs), 0);
    assert_true(secs >= 0);
    if (eb_test_reldiff(res.eigenvalue, top, 1e-6) > 1e-4)
        fail_msg("power iteration %.8g, dense Hessian %.8g (n %d)", res.eigenvalue, top, n);
    eig_power_destroy(&pw);
    free(hd);
    free(ev);
}

static void s_tiny_batch(float *x, int32_t *y)
{
    for (int i = 0; i < TINY_N * 4; i++)
        x[i] = (float)sin(1.7 * i + 0.3);
    for (int i = 0; i < TINY_N; i++)
        y[i] = i % TINY_CLASSES;
}

static void test_tiny_net_full_and_block(void **state)
{
    (void)state;
    nn_net_t *net = s_tiny();
    size_t np = nn_net_param_count(net);
    assert_true(np > 40 && np < 60);
    float x[TINY_N * 4];
    int32_t y[TINY_N];
    s_tiny_batch(x, y);
    struct eig_hvp h = {.net = net, .x = x, .y = y, .n = TINY_N, .bn = NN_BN_EVAL};
    s_check_top(&h, 0, (int)np);
    /* block of the last layer: the Hessian's lower-right block */
    h.block_last_k = 1;
    int layers = nn_net_param_layers(net);
    size_t lo = nn_net_param_layer_offset(net, layers - 1);
    s_check_top(&h, lo, (int)(np - lo));
    nn_net_destroy(&net);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    nn_net_t *net = s_tiny();
    float x[TINY_N * 4];
    int32_t y[TINY_N];
    s_tiny_batch(x, y);
    struct eig_hvp h = {.net = net, .x = x, .y = y, .n = TINY_N + 1, .bn = NN_BN_EVAL};
    assert_int_equal(eig_hvp_check(&h), RT_ERR_ARG);
    h.n = TINY_N;
    h.block_last_k = 3;
    assert_int_equal(eig_hvp_check(&h), RT_ERR_ARG);
    assert_non_null(strstr(rt_err_msg(), "block"));
    h.block_last_k = 0;
    struct eig_power_config pc = {.max_iter = 5, .tol = 0, .seed = 1};
    eig_power_t *pw = eig_power_new(7, &pc); /* wrong size */
    struct eig_power_result res;
    assert_int_equal(eig_hvp_top(pw, &h, &res, NULL), RT_ERR_ARG);
    eig_power_destroy(&pw);
    /* a label outside the classes: the net refuses, and so does the power iteration */
    pw = eig_power_new(nn_net_param_count(net), &pc);
    y[2] = TINY_CLASSES;
    assert_int_equal(eig_hvp_top(pw, &h, &res, NULL), RT_ERR_ARG);
    assert_non_null(strstr(rt_err_msg(), "refused"));
    eig_power_destroy(&pw);
    nn_net_destroy(&net);
}

/* Run a command line, capture the last line of stdout; returns the exit status. */
static int s_run(const char *cmd, char *last, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[4096];
    last[0] = '\0';
    while (fgets(line, sizeof line, p))
        snprintf(last, cap, "%s", line);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define DB_N 16
static void test_eig_command(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], wpath[4200], cmd[16384], out[4096];
    snprintf(db, sizeof db, "%s/db", tmp);
    snprintf(wpath, sizeof wpath, "%s/w.safetensors", tmp);
    eb_test_make_raw_db(db, DB_N, 1, 4, 4);
    const int first = 8;
    nn_net_t *net = nn_zoo_new("cnn", 1, 4, 4, DB_N, first, NULL);
    assert_non_null(net);
    nn_net_init(net, 11);
    assert_int_equal(app_weights_save(net, wpath), 0);

    /* in process: the same batch (first 8 records in key order), preset, seed */
    struct rt_loader_opts lo;
    rt_loader_opts_default(&lo);
    lo.threads = 0;
    rt_loader_t *ld = NULL;
    assert_int_equal(rt_loader_new(db, &lo, &ld), 0);
    float *x = malloc(first * 16 * sizeof(float));
    int32_t y[8];
    assert_int_equal(rt_loader_read(ld, 0, first, x, y), 0);
    struct eig_power_config pc;
    eig_power_config_preset(&pc, EIG_POWER_ACCURATE);
    pc.seed = 4;
    eig_power_t *pw = eig_power_new(nn_net_param_count(net), &pc);
    struct eig_hvp h = {
        .net = net, .x = x, .y = y, .n = first, .bn = NN_BN_EVAL, .block_last_k = 2};
    struct eig_power_result res;
    assert_int_equal(eig_hvp_top(pw, &h, &res, NULL), 0);

    snprintf(cmd, sizeof cmd,
             "'%s' eig --model cnn --weights '%s' --data '%s' --classes %d --first %d "
             "--block-last 2 --bn eval --preset accurate --method power --seed 4 --threads 1",
             eb_test_binary(), wpath, db, DB_N, first);
    assert_int_equal(s_run(cmd, out, sizeof out), 0);
    json_error_t jerr;
    json_t *j = json_loads(out, 0, &jerr);
    if (!j)
        fail_msg("last line is not JSON: %s (%s)", out, jerr.text);
    double ev = json_number_value(json_object_get(j, "eigenvalue"));
    int it = (int)json_integer_value(json_object_get(j, "iterations"));
    assert_true(json_is_number(json_object_get(j, "seconds")));
    assert_true(json_is_boolean(json_object_get(j, "converged")));
    assert_true(json_is_number(json_object_get(j, "residual")));
    /* converged means the residual met the preset's tolerance (accurate: 1e-3) */
    assert_int_equal(json_is_true(json_object_get(j, "converged")),
                     json_number_value(json_object_get(j, "residual")) <= 1e-3);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), first);
    assert_int_equal(json_integer_value(json_object_get(j, "block_last_k")), 2);
    assert_string_equal(json_string_value(json_object_get(j, "bn")), "eval");
    assert_string_equal(json_string_value(json_object_get(j, "method")), "power");
    assert_int_equal(it, res.iterations);
    if (eb_test_reldiff(ev, res.eigenvalue, 1e-6) > 1e-4)
        fail_msg("eig command %.8g, in process %.8g", ev, res.eigenvalue);
    json_decref(j);

    /* the accurate preset without --method is Lanczos: as eig_hvp_top_lanczos in process */
    struct eig_power_result lres;
    assert_int_equal(eig_hvp_top_lanczos(&pc, &h, &lres, NULL), 0);
    snprintf(cmd, sizeof cmd,
             "'%s' eig --model cnn --weights '%s' --data '%s' --classes %d --first %d "
             "--block-last 2 --bn eval --preset accurate --seed 4 --threads 1",
             eb_test_binary(), wpath, db, DB_N, first);
    assert_int_equal(s_run(cmd, out, sizeof out), 0);
    j = json_loads(out, 0, &jerr);
    if (!j)
        fail_msg("accurate: last line is not JSON: %s (%s)", out, jerr.text);
    assert_string_equal(json_string_value(json_object_get(j, "method")), "lanczos");
    assert_string_equal(json_string_value(json_object_get(j, "preset")), "accurate");
    assert_int_equal(json_integer_value(json_object_get(j, "block_last_k")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "iterations")), lres.iterations);
    assert_int_equal(json_is_true(json_object_get(j, "converged")), lres.converged);
    ev = json_number_value(json_object_get(j, "eigenvalue"));
    if (eb_test_reldiff(ev, lres.eigenvalue, 1e-6) > 1e-4)
        fail_msg("eig --preset accurate %.8g, Lanczos in process %.8g", ev, lres.eigenvalue);
    json_decref(j);

    /* Lanczos: the top 2 at once; its top agrees with a converged power iteration */
    snprintf(cmd, sizeof cmd,
             "'%s' eig --model cnn --weights '%s' --data '%s' --classes %d --first %d "
             "--block-last 2 --bn eval --preset accurate --seed 4 --threads 1 --method lanczos "
             "--top 2",
             eb_test_binary(), wpath, db, DB_N, first);
    assert_int_equal(s_run(cmd, out, sizeof out), 0);
    j = json_loads(out, 0, &jerr);
    if (!j)
        fail_msg("lanczos: last line is not JSON: %s (%s)", out, jerr.text);
    json_t *evs = json_object_get(j, "eigenvalues"), *rss = json_object_get(j, "residuals");
    assert_int_equal(json_array_size(evs), 2);
    assert_int_equal(json_array_size(rss), 2);
    double l0 = json_number_value(json_array_get(evs, 0));
    double l1 = json_number_value(json_array_get(evs, 1));
    assert_true(l0 >= l1);
    assert_true(json_integer_value(json_object_get(j, "hvps")) >= 2);
    if (json_is_true(json_object_get(j, "converged"))) {
        assert_true(json_number_value(json_array_get(rss, 0)) <= 1e-3);
        if (res.converged && res.eigenvalue > 0 && eb_test_reldiff(l0, res.eigenvalue, 1e-6) > 2e-3)
            fail_msg("lanczos top %.8g, power iteration %.8g", l0, res.eigenvalue);
    }
    json_decref(j);

    /* bad input: clear errors, no crash */
    snprintf(cmd, sizeof cmd, "'%s' eig --model cnn --data '%s' 2>/dev/null", eb_test_binary(), db);
    assert_int_equal(s_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd,
             "'%s' eig --model cnn --weights '%s' --data '%s' --classes %d --first 99 2>&1",
             eb_test_binary(), wpath, db, DB_N);
    assert_int_equal(s_run(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "--first"));
    snprintf(cmd, sizeof cmd,
             "'%s' eig --model cnn --weights '%s' --data '%s' --classes %d --bn sideways 2>&1",
             eb_test_binary(), wpath, db, DB_N);
    assert_int_equal(s_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd,
             "'%s' eig --model mlp --weights '%s' --data '%s' --classes %d --first 4 2>&1",
             eb_test_binary(), wpath, db, DB_N);
    assert_int_equal(s_run(cmd, out, sizeof out), 1); /* cnn weights into an mlp */

    eig_power_destroy(&pw);
    rt_loader_destroy(&ld);
    free(x);
    nn_net_destroy(&net);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_net_full_and_block),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_eig_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
