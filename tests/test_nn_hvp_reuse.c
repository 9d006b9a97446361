/*
 * test_nn_hvp_reuse: within one eigen computation (nn_net_hvp_reuse on) the forward pass, the
 * loss and the gradient's backward pass run once; every later Hessian-vector product on the same
 * batch runs only the R-passes and equals the product computed from scratch within 1e-6
 * (relative, max norm), for mlp, cnn, resnet20 and wrn16_4, BatchNorm eval and train, full and
 * block Hessians. A forward pass in between, or another batch, makes the next product compute
 * everything again.
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_net.h"

#define N 6
#define CLASSES 4
#define DIRS 3

static void s_check(const char *model, int c, int h, int w, enum nn_bn_mode bn, int block)
{
    nn_net_t *net = nn_zoo_new(model, c, h, w, CLASSES, N, NULL);
    assert_non_null(net);
    nn_net_init(net, 3);
    size_t np = nn_net_param_count(net), sample = (size_t)c * h * w;
    float *x = malloc(N * sample * sizeof(float)), *v = malloc(DIRS * np * sizeof(float));
    float *ref = malloc(DIRS * np * sizeof(float)), *hv = malloc(np * sizeof(float));
    int32_t y[N];
    assert_true(x && v && ref && hv);
    unsigned seed = 7;
    for (size_t i = 0; i < N * sample; i++)
        x[i] = eb_test_uniform(&seed);
    for (int i = 0; i < N; i++)
        y[i] = i % CLASSES;
    for (size_t i = 0; i < DIRS * np; i++)
        v[i] = eb_test_uniform(&seed);
    /* from scratch */
    float loss0 = 0;
    struct nn_net_stats before, after;
    nn_net_stats(net, &before);
    for (int d = 0; d < DIRS; d++)
        loss0 = nn_net_hvp(net, x, y, N, bn, block, v + (size_t)d * np, ref + (size_t)d * np);
    nn_net_stats(net, &after);
    assert_true(isfinite(loss0));
    long fwd_one = (after.forward - before.forward) / DIRS;
    long bwd_one = (after.backward - before.backward) / DIRS;
    /* with reuse: one forward and backward for the three products */
    nn_net_hvp_reuse(net, 1);
    nn_net_stats(net, &before);
    for (int d = 0; d < DIRS; d++) {
        float loss = nn_net_hvp(net, x, y, N, bn, block, v + (size_t)d * np, hv);
        assert_true(loss == loss0);
        double r = eb_test_rel_max(hv, ref + (size_t)d * np, np);
        if (!(r <= 1e-6))
            fail_msg("%s bn %d block %d direction %d: reuse differs by %.3g", model, (int)bn, block,
                     d, r);
    }
    nn_net_stats(net, &after);
    /* one forward and one backward pass for the three products */
    assert_int_equal(after.forward - before.forward, fwd_one);
    assert_int_equal(after.backward - before.backward, bwd_one);
    /* a forward pass in between: the next product computes everything again, and is right */
    float logits[N * CLASSES];
    nn_net_forward(net, x, NULL, N, NN_BN_EVAL, logits, NULL);
    nn_net_stats(net, &before);
    nn_net_hvp(net, x, y, N, bn, block, v, hv);
    nn_net_stats(net, &after);
    assert_true(after.forward > before.forward);
    assert_true(eb_test_rel_max(hv, ref, np) <= 1e-6);
    nn_net_hvp_reuse(net, 0);
    free(x);
    free(v);
    free(ref);
    free(hv);
    nn_net_destroy(&net);
}

static void test_reuse_equals_recompute(void **state)
{
    (void)state;
    const enum nn_bn_mode modes[] = {NN_BN_EVAL, NN_BN_TRAIN};
    for (int m = 0; m < 2; m++)
        for (int block = 0; block <= 2; block += 2) {
            s_check("mlp", 1, 8, 8, modes[m], block);
            s_check("cnn", 1, 8, 8, modes[m], block);
            s_check("resnet20", 3, 8, 8, modes[m], block);
            s_check("wrn16_4", 3, 8, 8, modes[m], block);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reuse_equals_recompute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
