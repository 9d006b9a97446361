/*
 * test_nn_layout: a net whose activations run channel-blocked between oneDNN's convolutions
 * (nn_net_layout.c), with BatchNorm applying the in-place ReLU after it there, computes what the
 * same net computes with every activation CNHW (EB_NN_CNHW) and a separate ReLU:
 * the loss, the parameter and input gradients of a training pass, the running statistics it
 * updates, and Hessian-vector products (full and block, BatchNorm train and eval, with the reuse
 * of nn_net_hvp_reuse), for resnet20 and wrn16_4 (whole blocks of 16 and 64 channels, stride-2
 * and 1x1 shortcuts, GAP), cnn (max pools, flatten) and torchvision's resnet18 (an overlapping
 * padded max pool). Passes of fewer than max_batch samples run CNHW in both nets. Skipped
 * when the build has no oneDNN (no node is then blocked).
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_net.h"
#include "nn_net_impl.h"

#define N 4
#define CLASSES 5
/* Both nets run the same oneDNN primitives; only BatchNorm's sums and the order of additions into
 * a gradient differ (in double, or a few float roundings): 1e-4 relative in max norm is far
 * below what a wrong index or a lost term gives (O(1)). */
#define TEST_TOL 1e-4

static void s_near(const char *what, const char *model, const float *a, const float *b, size_t n)
{
    double r = eb_test_rel_max(a, b, n);
    if (!(r <= TEST_TOL))
        fail_msg("%s %s: blocked and CNHW differ by %.3g", model, what, r);
}

static int s_blocked_nodes(const nn_net_t *net)
{
    int k = 0;
    for (int i = 0; i < net->n_nodes; i++)
        k += net->nodes[i]->blk_ok;
    return k;
}

/* ReLUs that BatchNorm applies on blocked nodes (in place). */
static int s_fused_relus(const nn_net_t *net)
{
    int k = 0;
    for (int i = 0; i < net->n_nodes; i++)
        k += net->nodes[i]->relu && net->nodes[i]->blk_ok;
    return k;
}

/* One training pass (n samples) on both nets: loss, gradients, dx and running statistics. */
static void s_train(const char *model, nn_net_t *net[2], const float *x, const int32_t *y, int n,
                    size_t sample, enum nn_bn_mode bn)
{
    size_t np = nn_net_param_count(net[0]), nb = nn_net_buffer_count(net[0]);
    float *dx[2], loss[2];
    for (int k = 0; k < 2; k++) {
        dx[k] = calloc((size_t)n * sample, sizeof(float));
        assert_non_null(dx[k]);
        nn_net_zero_grad(net[k]);
        loss[k] = nn_net_train_pass(net[k], x, y, n, bn,
                                    NN_PASS_PARAM_GRAD | NN_PASS_INPUT_GRAD | NN_PASS_UPDATE_STATS,
                                    1.0f, dx[k], NULL);
    }
    s_near("loss", model, &loss[0], &loss[1], 1);
    s_near("gradient", model, nn_net_grads(net[0]), nn_net_grads(net[1]), np);
    s_near("input gradient", model, dx[0], dx[1], (size_t)n * sample);
    s_near("running statistics", model, nn_net_buffers(net[0]), nn_net_buffers(net[1]), nb);
    free(dx[0]);
    free(dx[1]);
}

/* Hessian-vector products on both nets, then again with reuse (two directions). */
static void s_hvp(const char *model, nn_net_t *net[2], const float *x, const int32_t *y,
                  enum nn_bn_mode bn, int block)
{
    size_t np = nn_net_param_count(net[0]);
    float *v = malloc(2 * np * sizeof(float)), *hv[2];
    hv[0] = malloc(np * sizeof(float));
    hv[1] = malloc(np * sizeof(float));
    assert_true(v && hv[0] && hv[1]);
    unsigned seed = 11 + (unsigned)block;
    for (size_t i = 0; i < 2 * np; i++)
        v[i] = eb_test_uniform(&seed);
    for (int reuse = 0; reuse < 2; reuse++)
        for (int d = 0; d < 2; d++) {
            for (int k = 0; k < 2; k++) {
                nn_net_hvp_reuse(net[k], reuse);
                float loss = nn_net_hvp(net[k], x, y, N, bn, block, v + (size_t)d * np, hv[k]);
                assert_true(isfinite(loss));
            }
            s_near(reuse ? "HVP (reused passes)" : "HVP", model, hv[0], hv[1], np);
        }
    nn_net_hvp_reuse(net[0], 0);
    nn_net_hvp_reuse(net[1], 0);
    free(v);
    free(hv[0]);
    free(hv[1]);
}

static void s_check(const char *model, int c, int h, int w)
{
    nn_net_t *net[2];
    net[0] = nn_zoo_new(model, c, h, w, CLASSES, N, NULL);
    setenv("EB_NN_CNHW", "1", 1);
    net[1] = nn_zoo_new(model, c, h, w, CLASSES, N, NULL);
    unsetenv("EB_NN_CNHW");
    assert_true(net[0] && net[1]);
    assert_int_equal(s_blocked_nodes(net[1]), 0);
    if (s_blocked_nodes(net[0]) == 0) {
        nn_net_destroy(&net[0]);
        nn_net_destroy(&net[1]);
        skip(); /* no oneDNN: nothing is blocked */
    }
    assert_true(s_fused_relus(net[0]) > 0); /* the fused BatchNorm + ReLU is what is compared */
    nn_net_init(net[0], 5);
    nn_net_init(net[1], 5);
    size_t sample = (size_t)c * h * w;
    float *x = malloc(N * sample * sizeof(float));
    int32_t y[N];
    assert_non_null(x);
    unsigned seed = 3;
    for (size_t i = 0; i < N * sample; i++)
        x[i] = eb_test_uniform(&seed);
    for (int i = 0; i < N; i++)
        y[i] = i % CLASSES;
    s_train(model, net, x, y, N, sample, NN_BN_TRAIN);
    s_train(model, net, x, y, N - 1, sample, NN_BN_TRAIN); /* CNHW in both */
    s_train(model, net, x, y, N, sample, NN_BN_EVAL);      /* BatchNorm's eval-mode sweeps */
    s_hvp(model, net, x, y, NN_BN_TRAIN, 0);
    s_hvp(model, net, x, y, NN_BN_EVAL, 0);
    s_hvp(model, net, x, y, NN_BN_TRAIN, 2);
    s_hvp(model, net, x, y, NN_BN_TRAIN, 4); /* resnets: starts at a BatchNorm before a ReLU */
    s_hvp(model, net, x, y, NN_BN_EVAL, 2);
    s_hvp(model, net, x, y, NN_BN_EVAL, 4);
    free(x);
    nn_net_destroy(&net[0]);
    nn_net_destroy(&net[1]);
}

static void test_layout_resnet20(void **state)
{
    (void)state;
    s_check("resnet20", 3, 8, 8);
}

static void test_layout_wrn(void **state)
{
    (void)state;
    s_check("wrn16_4", 3, 8, 8);
}

static void test_layout_cnn(void **state)
{
    (void)state;
    s_check("cnn", 1, 8, 8); /* max pools, flatten */
}

static void test_layout_resnet18(void **state)
{
    (void)state;
    s_check("resnet18", 1, 32, 32); /* overlapping 3x3/2 max pool with padding */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_resnet20),
        cmocka_unit_test(test_layout_wrn),
        cmocka_unit_test(test_layout_cnn),
        cmocka_unit_test(test_layout_resnet18),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
