/*
 * test_nn_bn: BatchNorm2d in train mode (batch statistics, R-operator through them) and eval mode
 * (running statistics): gradients, R-forward, HVP and symmetry through the one-layer rig; forward
 * values and the running-statistic update (unbiased variance) against a hand computation.
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_layer_check.h"

/* Inputs with std 2.5 and mean 0.7, so that inv = 1/std is far from 1 and a formula that drops a
 * factor of inv cannot pass. */
static void s_fill_scaled(float *x, size_t n, struct nn_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 2.5f * nn_rng_normal(rng) + 0.7f;
}

static struct nn_check_cfg s_cfg(int c, int h, int w, int batch, int eval, unsigned long long seed)
{
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){c, h, w};
    cfg.batch = batch;
    cfg.bn_eval = eval;
    cfg.seed = seed;
    cfg.fill_input = s_fill_scaled;
    return cfg;
}

static void test_bn_train_derivatives(void **state)
{
    (void)state;
    struct nn_check_cfg cfg = s_cfg(3, 3, 4, 2, 0, 1);
    assert_int_equal(nn_check_layer(nn_bn_new("b"), &cfg), 0);
    cfg = s_cfg(2, 1, 1, 5, 0, 2); /* vector-like: 5 values per channel */
    assert_int_equal(nn_check_layer(nn_bn_new("b"), &cfg), 0);
}

static void test_bn_eval_derivatives(void **state)
{
    (void)state;
    struct nn_check_cfg cfg = s_cfg(3, 3, 4, 2, 1, 3);
    assert_int_equal(nn_check_layer(nn_bn_new("b"), &cfg), 0);
}

/* Forward in train mode normalises with the biased variance and updates the running statistics
 * with the unbiased one only when update_stats is set; eval mode uses the running statistics. */
static void test_bn_running_stats(void **state)
{
    (void)state;
    const int c = 3, n = 4, hw = 6;
    struct nn_check_cfg cfg = s_cfg(c, 2, 3, n, 0, 4);
    cfg.max_batch = n;
    struct nn_check_rig *r = nn_check_rig_new(nn_bn_new("b"), &cfg);
    assert_non_null(r);
    assert_int_equal(r->l->n_decl, 4);
    assert_string_equal(r->l->decl[2].suffix, "running_mean");
    assert_true(r->l->decl[3].is_buffer && !r->l->decl[1].is_buffer);
    assert_int_equal(r->l->n_w, 2 * c);
    assert_int_equal(r->l->n_buf, 2 * c);
    /* PyTorch defaults from init. */
    r->l->ops->init(r->l, NULL);
    for (int ch = 0; ch < c; ch++) {
        assert_true(r->w[ch] == 1.0f && r->w[c + ch] == 0.0f);
        assert_true(r->buf[ch] == 0.0f && r->buf[c + ch] == 1.0f);
    }
    const float gamma[3] = {0.5f, 1.5f, -2.0f}, beta[3] = {0.1f, -0.2f, 0.3f};
    const float rm0[3] = {0.2f, -0.1f, 0.0f}, rv0[3] = {0.8f, 1.2f, 2.0f};
    for (int ch = 0; ch < c; ch++) {
        r->w[ch] = gamma[ch];
        r->w[c + ch] = beta[ch];
        r->buf[ch] = rm0[ch];
        r->buf[c + ch] = rv0[ch];
    }
    const int m = n * hw;
    for (int ch = 0; ch < c; ch++)
        for (int j = 0; j < m; j++)
            r->in[0].y[ch * m + j] = (float)(ch + 1) * sinf(0.7f * (float)j) + (float)ch;

    /* Train mode without update: running statistics unchanged. */
    r->ctx.update_stats = 0;
    r->l->ops->forward(r->l, &r->ctx);
    for (int ch = 0; ch < c; ch++)
        assert_true(r->buf[ch] == rm0[ch] && r->buf[c + ch] == rv0[ch]);

    r->ctx.update_stats = 1;
    r->l->ops->forward(r->l, &r->ctx);
    for (int ch = 0; ch < c; ch++) {
        const float *x = r->in[0].y + ch * m;
        double mu = 0.0, ss = 0.0;
        for (int j = 0; j < m; j++)
            mu += x[j];
        mu /= m;
        for (int j = 0; j < m; j++)
            ss += (x[j] - mu) * (x[j] - mu);
        const double var_b = ss / m, var_u = ss / (m - 1);
        for (int j = 0; j < m; j++) {
            double want = gamma[ch] * (x[j] - mu) / sqrt(var_b + 1e-5) + beta[ch];
            assert_true(fabs(r->out.y[ch * m + j] - want) < 1e-5 * (1.0 + fabs(want)));
        }
        double rm = 0.9 * rm0[ch] + 0.1 * mu, rv = 0.9 * rv0[ch] + 0.1 * var_u;
        assert_true(eb_test_reldiff(r->buf[ch], rm, 1e-6) < 1e-6);
        assert_true(eb_test_reldiff(r->buf[c + ch], rv, 1e-6) < 1e-6);
        /* The biased variance would give a visibly different running variance. */
        assert_true(fabs(rv - (0.9 * rv0[ch] + 0.1 * var_b)) > 1e-3);
    }

    /* Eval mode: running statistics, and they stay as they are even with update_stats. */
    float rm[3], rv[3];
    memcpy(rm, r->buf, sizeof rm);
    memcpy(rv, r->buf + c, sizeof rv);
    r->ctx.bn_eval = 1;
    r->l->ops->forward(r->l, &r->ctx);
    for (int ch = 0; ch < c; ch++) {
        assert_true(r->buf[ch] == rm[ch] && r->buf[c + ch] == rv[ch]);
        const float *x = r->in[0].y + ch * m;
        for (int j = 0; j < m; j++) {
            double want = gamma[ch] * (x[j] - rm[ch]) / sqrt(rv[ch] + 1e-5) + beta[ch];
            assert_true(fabs(r->out.y[ch * m + j] - want) < 1e-5 * (1.0 + fabs(want)));
        }
    }
    nn_check_rig_destroy(&r);
}

static void test_bn_bad_args(void **state)
{
    (void)state;
    assert_null(nn_bn_new(NULL));
    assert_null(nn_bn_new(""));
    struct nn_check_cfg cfg = s_cfg(0, 2, 2, 1, 0, 5);
    assert_null(nn_check_rig_new(nn_bn_new("b"), &cfg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bn_train_derivatives),
        cmocka_unit_test(test_bn_eval_derivatives),
        cmocka_unit_test(test_bn_running_stats),
        cmocka_unit_test(test_bn_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
