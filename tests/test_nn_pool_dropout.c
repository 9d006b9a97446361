/*
 * test_nn_pool_dropout: the layers the ImageNet models add, one at a time through the rig
 * (nn_layer_check: gradients, R-forward, HVP and symmetry against finite differences):
 * max pooling with padding (torchvision ResNet's 3x3/2 pad 1) and AlexNet's unpadded 3x3/2,
 * adaptive average pooling to an output size (shrinking with overlapping windows, and growing
 * from an input smaller than the output, as AlexNet's 6x6 pool at small inputs), and dropout in
 * train mode (the R-passes and the backward pass must use the forward's mask) and in eval mode
 * (the identity). Also forward values of each against direct formulas, and a small net with
 * dropout in train mode: its HVP (R-operator through the forward's masks) against differences of
 * gradients when every pass draws the same masks (a fixed seed), and the Hessian's symmetry.
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_layer_check.h"
#include "nn_net.h"
#include "nn_net_check.h"

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

static struct nn_check_cfg s_cfg(int c, int h, int w, int batch, unsigned long long seed)
{
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){c, h, w};
    cfg.batch = batch;
    cfg.seed = seed;
    return cfg;
}

static void s_check_maxpool(int h, int w, int k, int s, int p, unsigned long long seed)
{
    struct nn_check_cfg cfg = s_cfg(2, h, w, 2, seed);
    cfg.eps = 5e-3; /* |eps * u| stays below half the 0.1 spacing for |u| < 10 */
    cfg.fill_input = s_fill_separated;
    assert_int_equal(nn_check_layer(nn_maxpool_new(k, s, p), &cfg), 0);
}

static void test_maxpool_padded(void **state)
{
    (void)state;
    s_check_maxpool(7, 7, 3, 2, 1, 1); /* torchvision ResNet: 3x3/2 pad 1 */
    s_check_maxpool(8, 6, 3, 2, 1, 2);
    s_check_maxpool(15, 15, 3, 2, 0, 3); /* AlexNet: 3x3/2, no padding */
    s_check_maxpool(3, 3, 3, 2, 0, 4);   /* AlexNet's last pool at its smallest input */
    s_check_maxpool(4, 5, 2, 1, 1, 5);
}

/* Padding is -infinity: a window half in the padding takes the maximum of its real part, also
 * when every real value is negative; output size floor((h + 2p - k) / s) + 1. */
static void test_maxpool_padded_values(void **state)
{
    (void)state;
    struct nn_check_cfg cfg = s_cfg(1, 4, 4, 1, 7);
    struct nn_check_rig *r = nn_check_rig_new(nn_maxpool_new(3, 2, 1), &cfg);
    assert_non_null(r);
    assert_int_equal(r->out.shape.h, 2);
    assert_int_equal(r->out.shape.w, 2);
    for (int i = 0; i < 16; i++)
        r->in[0].y[i] = -1.0f - (float)i;
    r->l->ops->forward(r->l, &r->ctx);
    assert_true(r->out.y[0] == -1.0f); /* rows 0..1, cols 0..1 */
    assert_true(r->out.y[1] == -2.0f); /* rows 0..1, cols 1..3 */
    assert_true(r->out.y[2] == -5.0f); /* rows 1..3, cols 0..1 */
    assert_true(r->out.y[3] == -6.0f);
    nn_check_rig_destroy(&r);
    assert_null(nn_maxpool_new(3, 2, 2)); /* padding above k/2 */
    assert_null(nn_maxpool_new(3, 2, -1));
}

static void test_avgpool_adaptive(void **state)
{
    (void)state;
    struct nn_check_cfg cfg = s_cfg(3, 7, 5, 2, 11);
    assert_int_equal(nn_check_layer(nn_avgpool_new(3, 2), &cfg), 0); /* overlapping windows */
    cfg = s_cfg(2, 2, 3, 3, 12);
    assert_int_equal(nn_check_layer(nn_avgpool_new(6, 6), &cfg), 0); /* input below output */
    cfg = s_cfg(2, 12, 12, 2, 13);
    assert_int_equal(nn_check_layer(nn_avgpool_new(6, 6), &cfg), 0); /* 2x2 windows */
    cfg = s_cfg(2, 4, 4, 2, 14);
    assert_int_equal(nn_check_layer(nn_avgpool_new(1, 1), &cfg), 0); /* global */
    assert_null(nn_avgpool_new(0, 6));
}

/* PyTorch's windows: rows [floor(o*ih/oh), ceil((o+1)*ih/oh)); 5 -> 3 gives [0,2) [1,4) [3,5). */
static void test_avgpool_values(void **state)
{
    (void)state;
    struct nn_check_cfg cfg = s_cfg(1, 5, 1, 1, 15);
    struct nn_check_rig *r = nn_check_rig_new(nn_avgpool_new(3, 1), &cfg);
    assert_non_null(r);
    for (int i = 0; i < 5; i++)
        r->in[0].y[i] = (float)(1 << i);
    r->l->ops->forward(r->l, &r->ctx);
    assert_true(fabsf(r->out.y[0] - 1.5f) < 1e-6f);
    assert_true(fabsf(r->out.y[1] - 14.0f / 3.0f) < 1e-6f);
    assert_true(fabsf(r->out.y[2] - 12.0f) < 1e-6f);
    nn_check_rig_destroy(&r);
}

static void test_dropout_derivatives(void **state)
{
    (void)state;
    struct nn_check_cfg cfg = s_cfg(3, 4, 5, 3, 21); /* train mode: one mask for every pass */
    assert_int_equal(nn_check_layer(nn_dropout_new("classifier.0", 0.5f), &cfg), 0);
    cfg = s_cfg(40, 1, 1, 4, 22);
    assert_int_equal(nn_check_layer(nn_dropout_new("d", 0.3f), &cfg), 0);
    cfg.bn_eval = 1; /* eval mode: the identity */
    assert_int_equal(nn_check_layer(nn_dropout_new("d", 0.5f), &cfg), 0);
    assert_null(nn_dropout_new("d", 1.0f));
    assert_null(nn_dropout_new("d", -0.1f));
}

/* Train mode keeps about 1 - p of the elements, scaled by 1/(1-p); the mask depends on the seed
 * and the name; eval mode copies. */
static void test_dropout_values(void **state)
{
    (void)state;
    struct nn_check_cfg cfg = s_cfg(64, 8, 8, 4, 23);
    struct nn_check_rig *r = nn_check_rig_new(nn_dropout_new("classifier.3", 0.5f), &cfg);
    assert_non_null(r);
    const size_t total = 4 * (size_t)64 * 8 * 8;
    for (size_t i = 0; i < total; i++)
        r->in[0].y[i] = 1.0f;
    r->l->ops->forward(r->l, &r->ctx);
    size_t kept = 0;
    for (size_t i = 0; i < total; i++) {
        assert_true(r->out.y[i] == 0.0f || r->out.y[i] == 2.0f);
        kept += r->out.y[i] != 0.0f;
    }
    assert_true(fabs((double)kept / total - 0.5) < 0.02);
    float first[64];
    memcpy(first, r->out.y, sizeof first);
    r->ctx.seed++;
    r->l->ops->forward(r->l, &r->ctx);
    assert_true(memcmp(first, r->out.y, sizeof first) != 0);
    r->ctx.seed--;
    r->l->ops->forward(r->l, &r->ctx);
    assert_memory_equal(first, r->out.y, sizeof first);
    r->ctx.dropout = 0;
    r->l->ops->forward(r->l, &r->ctx);
    for (size_t i = 0; i < total; i++)
        assert_true(r->out.y[i] == 1.0f);
    nn_check_rig_destroy(&r);
}

/* flatten -> a Linear(12) -> ReLU -> dropout -> b Linear(8) -> ReLU -> dropout -> c Linear(4) */
static void test_dropout_net_hvp(void **state)
{
    (void)state;
    const int n = 5;
    nn_net_t *net = nn_net_new(2, 3, 3, n);
    assert_non_null(net);
    int x = nn_net_add(net, nn_flatten_new(), 0, -1);
    x = nn_net_add(net, nn_linear_new("a", 12), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_dropout_new("d1", 0.5f), x, -1);
    x = nn_net_add(net, nn_linear_new("b", 8), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_dropout_new("d2", 0.3f), x, -1);
    nn_net_add(net, nn_linear_new("c", 4), x, -1);
    assert_int_equal(nn_net_build(net), NN_OK);
    nn_net_check_perturb(net, 5, 0.1f);
    float *in;
    int32_t *labels;
    nn_net_check_data(net, n, 42, &in, &labels);
    nn_net_set_seed(net, 3, 1);
    double e = nn_net_check_param_grad(net, in, labels, n, NN_BN_TRAIN, 1e-3, 1000);
    print_message("dropout net: param grad %.2e\n", e);
    assert_true(e < 1e-2);
    e = nn_net_check_hvp(net, in, labels, n, NN_BN_TRAIN, 0, 1e-2);
    print_message("dropout net: hvp %.2e\n", e);
    assert_true(e < 2e-3);
    e = nn_net_check_hvp(net, in, labels, n, NN_BN_TRAIN, 2, 1e-2);
    print_message("dropout net: block(2) hvp %.2e\n", e);
    assert_true(e < 2e-3);
    e = nn_net_check_hvp_symmetry(net, in, labels, n, NN_BN_TRAIN);
    print_message("dropout net: symmetry %.2e\n", e);
    assert_true(e < 1e-4);
    free(in);
    free(labels);
    nn_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_maxpool_padded),      cmocka_unit_test(test_maxpool_padded_values),
        cmocka_unit_test(test_avgpool_adaptive),    cmocka_unit_test(test_avgpool_values),
        cmocka_unit_test(test_dropout_derivatives), cmocka_unit_test(test_dropout_values),
        cmocka_unit_test(test_dropout_net_hvp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
