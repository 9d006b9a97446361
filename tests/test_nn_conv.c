/*
 * test_nn_conv: Conv2d gradients, R-forward, HVP and symmetry against finite differences through
 * the one-layer rig, over kernel 1 and 3, stride 1 and 2, padding 0 and 1, with and without bias;
 * and forward values against a direct (loop) convolution.
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_layer_check.h"

/* One derivative check of a conv with the given geometry on a 2-sample batch. */
static void s_check(int in_c, int h, int w, int out_c, int k, int stride, int pad, int bias,
                    unsigned long long seed)
{
    struct nn_layer *l = nn_conv_new("c", out_c, k, stride, pad, bias);
    assert_non_null(l);
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){in_c, h, w};
    cfg.batch = 2;
    cfg.seed = seed;
    int fails = nn_check_layer(l, &cfg);
    if (fails)
        print_error("conv in %d %dx%d out %d k %d stride %d pad %d bias %d: %d checks failed\n",
                    in_c, h, w, out_c, k, stride, pad, bias, fails);
    assert_int_equal(fails, 0);
}

static void test_conv_k3_s1_p1(void **state)
{
    (void)state;
    s_check(3, 6, 5, 4, 3, 1, 1, 0, 1);
    s_check(3, 6, 5, 4, 3, 1, 1, 1, 2);
}

static void test_conv_k3_s2(void **state)
{
    (void)state;
    s_check(2, 7, 6, 3, 3, 2, 1, 1, 3);
    s_check(2, 7, 7, 3, 3, 2, 0, 0, 4);
}

static void test_conv_k3_s1_p0(void **state)
{
    (void)state;
    s_check(2, 5, 6, 3, 3, 1, 0, 1, 5);
}

static void test_conv_k1(void **state)
{
    (void)state;
    s_check(4, 4, 5, 3, 1, 1, 0, 0, 6); /* direct path, no im2col */
    s_check(4, 4, 5, 3, 1, 1, 0, 1, 7);
    s_check(4, 5, 5, 3, 1, 2, 0, 0, 8); /* ResNet shortcut geometry */
    s_check(2, 3, 3, 2, 1, 1, 1, 1, 9); /* padded 1x1 goes through im2col */
}

/* Forward against a direct loop over NCHW semantics, on the CNHW layout, at n < max batch and with a
 * batch large enough to need several im2col chunks. */
static void test_conv_forward_direct(void **state)
{
    (void)state;
    const int in_c = 5, h = 9, w = 8, out_c = 6, k = 3, s = 2, p = 1, n = 3;
    struct nn_layer *l = nn_conv_new("c", out_c, k, s, p, 1);
    assert_non_null(l);
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){in_c, h, w};
    cfg.batch = n;
    cfg.max_batch = n + 2;
    cfg.seed = 11;
    struct nn_check_rig *r = nn_check_rig_new(l, &cfg);
    assert_non_null(r);
    assert_int_equal(r->out.shape.c, out_c);
    assert_int_equal(r->out.shape.h, (h + 2 * p - k) / s + 1);
    assert_int_equal(r->out.shape.w, (w + 2 * p - k) / s + 1);
    assert_int_equal(r->l->n_w, (size_t)out_c * in_c * k * k + out_c);
    l->ops->forward(l, &r->ctx);
    const int oh = r->out.shape.h, ow = r->out.shape.w;
    double maxerr = 0.0;
    for (int o = 0; o < out_c; o++)
        for (int i = 0; i < n; i++)
            for (int oy = 0; oy < oh; oy++)
                for (int ox = 0; ox < ow; ox++) {
                    double acc = r->w[(size_t)out_c * in_c * k * k + o];
                    for (int c = 0; c < in_c; c++)
                        for (int ki = 0; ki < k; ki++)
                            for (int kj = 0; kj < k; kj++) {
                                int iy = oy * s - p + ki, ix = ox * s - p + kj;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    continue;
                                acc += (double)r->w[((o * in_c + c) * k + ki) * k + kj] *
                                       r->in[0].y[(((size_t)c * n + i) * h + iy) * w + ix];
                            }
                    float got = r->out.y[(((size_t)o * n + i) * oh + oy) * ow + ox];
                    maxerr = fmax(maxerr, fabs(got - acc));
                }
    assert_true(maxerr < 1e-4);
    nn_check_rig_destroy(&r);
    assert_null(r);
}

/* A batch split into several chunks (per-image im2col block > chunk target / n). */
static void test_conv_chunked_batch(void **state)
{
    (void)state;
    s_check(16, 24, 24, 2, 3, 1, 1, 1, 12); /* 144 rows x 576 cols per image */
}

static void test_conv_bad_args(void **state)
{
    (void)state;
    assert_null(nn_conv_new("c", 0, 3, 1, 1, 0));
    assert_null(nn_conv_new("c", 4, 3, 0, 1, 0));
    assert_null(nn_conv_new("c", 4, 3, 1, -1, 0));
    struct nn_layer *l = nn_conv_new("c", 4, 5, 1, 0, 0);
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){2, 3, 3}; /* smaller than the kernel */
    cfg.batch = 1;
    struct nn_check_rig *r = nn_check_rig_new(l, &cfg);
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_k3_s1_p1),     cmocka_unit_test(test_conv_k3_s2),
        cmocka_unit_test(test_conv_k3_s1_p0),     cmocka_unit_test(test_conv_k1),
        cmocka_unit_test(test_conv_forward_direct), cmocka_unit_test(test_conv_chunked_batch),
        cmocka_unit_test(test_conv_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
