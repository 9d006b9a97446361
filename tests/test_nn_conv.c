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

/* One derivative check of a conv with the given geometry on a 2-sample batch, twice: below the
 * max batch (im2col) and at it (oneDNN's primitives when built in, else im2col again). */
static void s_check(int in_c, int h, int w, int out_c, int k, int stride, int pad, int bias,
                    unsigned long long seed)
{
    for (int at_max = 0; at_max < 2; at_max++) {
        struct nn_layer *l = nn_conv_new("c", out_c, k, stride, pad, bias);
        assert_non_null(l);
        struct nn_check_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.n_in = 1;
        cfg.in_shape[0] = (struct nn_shape){in_c, h, w};
        cfg.batch = 2;
        cfg.max_batch = at_max ? 2 : 3;
        cfg.seed = seed;
        int fails = nn_check_layer(l, &cfg);
        if (fails)
            print_error("conv in %d %dx%d out %d k %d stride %d pad %d bias %d max batch %d: %d "
                        "checks failed\n",
                        in_c, h, w, out_c, k, stride, pad, bias, cfg.max_batch, fails);
        assert_int_equal(fails, 0);
    }
}

static void test_conv_k3_s1_p1(void **state)
{
    (void)state;
    s_check(3, 6, 5, 4, 3, 1, 1, 0, 1);
    s_check(3, 6, 5, 4, 3, 1, 1, 1, 2);
    s_check(2, 1, 1, 3, 3, 1, 1, 1, 10); /* kernel rows and columns that see no input */
    s_check(2, 2, 1, 3, 3, 1, 1, 0, 11);
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

/* Forward against a direct loop over NCHW semantics, on the CNHW layout, at n < max batch
 * (im2col) or n == max batch (oneDNN when built in). */
static void s_forward_direct(int max_batch)
{
    const int in_c = 5, h = 9, w = 8, out_c = 6, k = 3, s = 2, p = 1, n = 3;
    struct nn_layer *l = nn_conv_new("c", out_c, k, s, p, 1);
    assert_non_null(l);
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){in_c, h, w};
    cfg.batch = n;
    cfg.max_batch = max_batch;
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

static void test_conv_forward_direct(void **state)
{
    (void)state;
    s_forward_direct(5);
    s_forward_direct(3);
}

/* Copy sample i of a CNHW batch of n (c planes of hw) into / out of a 1-sample batch. */
static void s_take(const float *src, int n, int i, int c, int hw, float *dst)
{
    for (int ch = 0; ch < c; ch++)
        memcpy(dst + (size_t)ch * hw, src + ((size_t)ch * n + i) * hw, sizeof(float) * hw);
}

static double s_maxdiff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t j = 0; j < n; j++)
        m = fmax(m, fabs((double)a[j] - b[j]) / (1.0 + fabs(b[j])));
    return m;
}

/* A batch processed in several im2col chunks (16 x 20 x 20 input, 3x3: 57600 floats per image, so
 * chunks of 4 images and a batch of 10 gives 4 + 4 + 2) equals the same layer run image by image,
 * in every pass: outputs and R-outputs per image, input gradients per image, parameter gradients
 * and HVP summed over the images. */
static void test_conv_chunked_batch(void **state)
{
    (void)state;
    const int n = 10, in_c = 16, h = 20, w = 20, out_c = 5;
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){in_c, h, w};
    cfg.batch = n;
    cfg.seed = 21;
    struct nn_check_rig *big = nn_check_rig_new(nn_conv_new("c", out_c, 3, 1, 1, 1), &cfg);
    cfg.batch = 1;
    struct nn_check_rig *one = nn_check_rig_new(nn_conv_new("c", out_c, 3, 1, 1, 1), &cfg);
    assert_non_null(big);
    assert_non_null(one);
    const size_t nw = big->l->n_w, hw = (size_t)h * w, ohw = hw, nx = in_c * hw * n;
    const size_t ny = out_c * ohw * n;
    memcpy(one->w, big->w, nw * sizeof(float));
    struct nn_rng rng;
    nn_rng_seed(&rng, 99);
    for (size_t j = 0; j < nw; j++)
        big->v[j] = one->v[j] = nn_rng_normal(&rng);
    for (size_t j = 0; j < nx; j++)
        big->in[0].ry[j] = nn_rng_normal(&rng);
    for (size_t j = 0; j < ny; j++) {
        big->out.dy[j] = nn_rng_normal(&rng);
        big->out.rdy[j] = nn_rng_normal(&rng);
    }
    /* Batched passes. */
    memset(big->in[0].dy, 0, nx * sizeof(float));
    memset(big->in[0].rdy, 0, nx * sizeof(float));
    memset(big->g, 0, nw * sizeof(float));
    memset(big->hv, 0, nw * sizeof(float));
    big->l->ops->forward(big->l, &big->ctx);
    big->l->ops->backward(big->l, &big->ctx);
    big->l->ops->rforward(big->l, &big->ctx);
    big->l->ops->rbackward(big->l, &big->ctx);
    /* Image by image; gradients and HVP accumulate. */
    memset(one->g, 0, nw * sizeof(float));
    memset(one->hv, 0, nw * sizeof(float));
    float *t = malloc(sizeof(float) * out_c * ohw);
    assert_non_null(t);
    double err = 0.0;
    for (int i = 0; i < n; i++) {
        s_take(big->in[0].y, n, i, in_c, hw, one->in[0].y);
        s_take(big->in[0].ry, n, i, in_c, hw, one->in[0].ry);
        s_take(big->out.dy, n, i, out_c, ohw, one->out.dy);
        s_take(big->out.rdy, n, i, out_c, ohw, one->out.rdy);
        memset(one->in[0].dy, 0, in_c * hw * sizeof(float));
        memset(one->in[0].rdy, 0, in_c * hw * sizeof(float));
        one->l->ops->forward(one->l, &one->ctx);
        one->l->ops->backward(one->l, &one->ctx);
        one->l->ops->rforward(one->l, &one->ctx);
        one->l->ops->rbackward(one->l, &one->ctx);
        s_take(big->out.y, n, i, out_c, ohw, t);
        err = fmax(err, s_maxdiff(t, one->out.y, out_c * ohw));
        s_take(big->out.ry, n, i, out_c, ohw, t);
        err = fmax(err, s_maxdiff(t, one->out.ry, out_c * ohw));
        float *u = malloc(sizeof(float) * in_c * hw);
        assert_non_null(u);
        s_take(big->in[0].dy, n, i, in_c, hw, u);
        err = fmax(err, s_maxdiff(u, one->in[0].dy, in_c * hw));
        s_take(big->in[0].rdy, n, i, in_c, hw, u);
        err = fmax(err, s_maxdiff(u, one->in[0].rdy, in_c * hw));
        free(u);
    }
    err = fmax(err, s_maxdiff(big->g, one->g, nw));
    err = fmax(err, s_maxdiff(big->hv, one->hv, nw));
    assert_true(err < 1e-4);
    free(t);
    nn_check_rig_destroy(&big);
    nn_check_rig_destroy(&one);
}

static void test_conv_bad_args(void **state)
{
    (void)state;
    assert_null(nn_conv_new("c", 0, 3, 1, 1, 0));
    assert_null(nn_conv_new("", 4, 3, 1, 1, 0));
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
        cmocka_unit_test(test_conv_k3_s1_p1),       cmocka_unit_test(test_conv_k3_s2),
        cmocka_unit_test(test_conv_k3_s1_p0),       cmocka_unit_test(test_conv_k1),
        cmocka_unit_test(test_conv_forward_direct), cmocka_unit_test(test_conv_chunked_batch),
        cmocka_unit_test(test_conv_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
