/*
 * test_nn_maxpool: MaxPool2d forward values, and its gradient, R-forward, HVP and symmetry through
 * the one-layer rig (inputs well separated so that no finite-difference step crosses a tie).
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_layer_check.h"

/* Distinct values 0.1 apart in random order: a step of eps * |u| < 0.05 never changes a maximum. */
static void s_fill_separated(float *x, size_t n, struct nn_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.1f * (float)i - 0.05f * (float)n;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(nn_rng_next(rng) % i);
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

static void s_check(int c, int h, int w, int k, int s, unsigned long long seed)
{
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){c, h, w};
    cfg.batch = 2;
    cfg.seed = seed;
    cfg.eps = 5e-3; /* |eps * u| stays below half the 0.1 spacing for |u| < 10 */
    cfg.fill_input = s_fill_separated;
    int fails = nn_check_layer(nn_maxpool_new(k, s, 0), &cfg);
    assert_int_equal(fails, 0);
}

static void test_maxpool_2x2(void **state)
{
    (void)state;
    s_check(3, 6, 8, 2, 2, 1);
    s_check(2, 7, 5, 2, 2, 2); /* odd sizes: floor, last row/column dropped */
}

static void test_maxpool_overlapping(void **state)
{
    (void)state;
    s_check(2, 7, 7, 3, 2, 3); /* ImageNet-style 3x3 stride 2: windows overlap */
}

static void test_maxpool_values(void **state)
{
    (void)state;
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){2, 4, 4};
    cfg.batch = 3;
    cfg.seed = 5;
    struct nn_check_rig *r = nn_check_rig_new(nn_maxpool_new(2, 2, 0), &cfg);
    assert_non_null(r);
    assert_int_equal(r->out.shape.c, 2);
    assert_int_equal(r->out.shape.h, 2);
    assert_int_equal(r->out.shape.w, 2);
    r->l->ops->forward(r->l, &r->ctx);
    const int n = 3;
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < 2; oy++)
                for (int ox = 0; ox < 2; ox++) {
                    const float *xp = r->in[0].y + ((size_t)c * n + i) * 16;
                    float m = -INFINITY;
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++)
                            m = fmaxf(m, xp[(2 * oy + a) * 4 + 2 * ox + b]);
                    assert_true(r->out.y[(((size_t)c * n + i) * 2 + oy) * 2 + ox] == m);
                }
    nn_check_rig_destroy(&r);
}

static void test_maxpool_bad_args(void **state)
{
    (void)state;
    assert_null(nn_maxpool_new(0, 2, 0));
    assert_null(nn_maxpool_new(2, 0, 0));
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){1, 1, 3}; /* height below the window */
    cfg.batch = 1;
    assert_null(nn_check_rig_new(nn_maxpool_new(2, 2, 0), &cfg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_2x2),
        cmocka_unit_test(test_maxpool_overlapping),
        cmocka_unit_test(test_maxpool_values),
        cmocka_unit_test(test_maxpool_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
