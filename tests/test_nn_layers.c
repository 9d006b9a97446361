/*
 * test_nn_layers: the net framework and its simple layers (linear, relu, flatten, global average
 * pool, residual add) with the softmax cross-entropy loss, checked through small hand-built nets:
 * gradients and input gradients against central finite differences, HVPs against finite
 * differences of gradients, Hessian symmetry, block HVPs against the full HVP and their cost
 * (layer-operation counters), the flatten order and the NCHW edges, and input validation.
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "nn_layer.h"
#include "nn_net.h"
#include "nn_net_check.h"

#define BATCH 3
#define TOL_GRAD 1e-2 /* FD rounding is ~1e-3 here; a wrong term gives >= 1e-1 */
#define TOL_HVP 2e-3
#define TOL_SYM 1e-4

/* flatten -> a Linear(6) -> relu -> b Linear(4), input 2x3x3 */
static nn_net_t *s_net_mlp(void)
{
    nn_net_t *net = nn_net_new(2, 3, 3, BATCH + 1);
    assert_non_null(net);
    int x = nn_net_add(net, nn_flatten_new(), 0, -1);
    x = nn_net_add(net, nn_linear_new("a", 6), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    nn_net_add(net, nn_linear_new("b", 4), x, -1);
    assert_int_equal(nn_net_build(net), NN_OK);
    nn_net_check_perturb(net, 5, 0.1f);
    return net;
}

/* gap -> a Linear(4) -> relu -> c Linear(4) -> add(c, relu) -> b Linear(3), input 4x3x3 */
static nn_net_t *s_net_res(void)
{
    nn_net_t *net = nn_net_new(4, 3, 3, BATCH);
    assert_non_null(net);
    int x = nn_net_add(net, nn_gap_new(), 0, -1);
    x = nn_net_add(net, nn_linear_new("a", 4), x, -1);
    int r = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_linear_new("c", 4), r, -1);
    x = nn_net_add(net, nn_add_new(), x, r);
    nn_net_add(net, nn_linear_new("b", 3), x, -1);
    assert_int_equal(nn_net_build(net), NN_OK);
    nn_net_check_perturb(net, 6, 0.1f);
    return net;
}

static void s_check_all(nn_net_t *net, int k_block)
{
    float *x;
    int32_t *labels;
    nn_net_check_data(net, BATCH, 42, &x, &labels);
    double e;
    e = nn_net_check_param_grad(net, x, labels, BATCH, NN_BN_EVAL, 1e-3, 1000);
    print_message("param grad rel err %.2e\n", e);
    assert_true(e < TOL_GRAD);
    e = nn_net_check_input_grad(net, x, labels, BATCH, NN_BN_EVAL, 3e-3, 1000);
    print_message("input grad rel err %.2e\n", e);
    assert_true(e < TOL_GRAD);
    e = nn_net_check_hvp(net, x, labels, BATCH, NN_BN_EVAL, 0, 1e-2);
    print_message("hvp rel err %.2e\n", e);
    assert_true(e < TOL_HVP);
    e = nn_net_check_hvp(net, x, labels, BATCH, NN_BN_EVAL, k_block, 1e-2);
    print_message("block(%d) hvp rel err %.2e\n", k_block, e);
    assert_true(e < TOL_HVP);
    e = nn_net_check_hvp_symmetry(net, x, labels, BATCH, NN_BN_EVAL);
    print_message("symmetry %.2e\n", e);
    assert_true(e < TOL_SYM);
    for (int k = 1; k <= nn_net_param_layers(net); k++) {
        e = nn_net_check_block(net, x, labels, BATCH, NN_BN_EVAL, k);
        print_message("block %d vs full %.2e\n", k, e);
        assert_true(e < 1e-5);
    }
    free(x);
    free(labels);
}

static void test_linear_relu_flatten(void **state)
{
    (void)state;
    nn_net_t *net = s_net_mlp();
    assert_int_equal(nn_net_param_count(net), 18 * 6 + 6 + 6 * 4 + 4);
    s_check_all(net, 1);
    nn_net_destroy(&net);
    assert_null(net);
    nn_net_destroy(&net);
}

static void test_gap_add(void **state)
{
    (void)state;
    nn_net_t *net = s_net_res();
    s_check_all(net, 2); /* block {c, b}: the add sees one R-active input */
    nn_net_destroy(&net);
}

/* The gradient is scaled by grad_scale and accumulates across calls. */
static void test_grad_scale_accumulates(void **state)
{
    (void)state;
    nn_net_t *net = s_net_mlp();
    size_t np = nn_net_param_count(net);
    float *x;
    int32_t *labels;
    nn_net_check_data(net, BATCH, 1, &x, &labels);
    float *g1 = malloc(np * sizeof *g1);
    nn_net_zero_grad(net);
    nn_net_train_pass(net, x, labels, BATCH, NN_BN_EVAL, NN_PASS_PARAM_GRAD, 1.0f, NULL, NULL);
    memcpy(g1, nn_net_grads(net), np * sizeof *g1);
    nn_net_zero_grad(net);
    nn_net_train_pass(net, x, labels, BATCH, NN_BN_EVAL, NN_PASS_PARAM_GRAD, 0.25f, NULL, NULL);
    nn_net_train_pass(net, x, labels, BATCH, NN_BN_EVAL, NN_PASS_PARAM_GRAD, 0.5f, NULL, NULL);
    const float *g = nn_net_grads(net);
    for (size_t i = 0; i < np; i++)
        assert_true(fabsf(g[i] - 0.75f * g1[i]) <= 1e-6f + 1e-5f * fabsf(g1[i]));
    free(g1);
    free(x);
    free(labels);
    nn_net_destroy(&net);
}

/* Block HVP of the last layer runs no R-pass or backward below the block. */
static void test_block_skips_lower_layers(void **state)
{
    (void)state;
    nn_net_t *net = s_net_mlp(); /* layers: flatten a relu b */
    size_t np = nn_net_param_count(net);
    float *x;
    int32_t *labels;
    nn_net_check_data(net, BATCH, 2, &x, &labels);
    float *v = calloc(np, sizeof *v), *hv = calloc(np, sizeof *hv);
    for (size_t i = 0; i < np; i++)
        v[i] = 1.0f;
    struct nn_net_stats st;
    nn_net_stats_reset(net);
    nn_net_hvp(net, x, labels, BATCH, NN_BN_EVAL, 1, v, hv);
    nn_net_stats(net, &st);
    assert_int_equal(st.forward, 4);
    assert_int_equal(st.rforward, 1);  /* b only */
    assert_int_equal(st.backward, 0);  /* b's input lies below the block */
    assert_int_equal(st.rbackward, 1); /* b only */
    nn_net_stats_reset(net);
    nn_net_hvp(net, x, labels, BATCH, NN_BN_EVAL, 0, v, hv);
    nn_net_stats(net, &st);
    assert_int_equal(st.rforward, 3);  /* a relu b (the flatten of the input carries no R) */
    assert_int_equal(st.backward, 2);  /* b relu: a's input needs no gradient */
    assert_int_equal(st.rbackward, 3); /* b relu a */
    /* A training pass without input gradient skips the flatten's backward. */
    nn_net_stats_reset(net);
    nn_net_train_pass(net, x, labels, BATCH, NN_BN_EVAL, NN_PASS_PARAM_GRAD, 1.0f, NULL, NULL);
    nn_net_stats(net, &st);
    assert_int_equal(st.backward, 3);
    free(v);
    free(hv);
    free(x);
    free(labels);
    nn_net_destroy(&net);
}

/* Input NCHW -> flatten (PyTorch order c*h*w + y*w + x) -> identity Linear -> logits NCHW rows:
 * logits of sample i must be sample i's input in memory order. */
static void test_flatten_order_and_edges(void **state)
{
    (void)state;
    const int c = 2, h = 2, w = 3, f = c * h * w, n = 3;
    nn_net_t *net = nn_net_new(c, h, w, n);
    int x = nn_net_add(net, nn_flatten_new(), 0, -1);
    nn_net_add(net, nn_linear_new("id", f), x, -1);
    assert_int_equal(nn_net_build(net), NN_OK);
    const struct nn_tensor_info *wt = nn_net_tensor_find(net, "id.weight");
    const struct nn_tensor_info *bt = nn_net_tensor_find(net, "id.bias");
    assert_non_null(wt);
    assert_non_null(bt);
    float *p = nn_net_params(net);
    memset(p, 0, nn_net_param_count(net) * sizeof *p);
    for (int i = 0; i < f; i++)
        p[wt->offset + (size_t)i * f + i] = 1.0f;
    float in[3 * 12], logits[3 * 12];
    for (int i = 0; i < n * f; i++)
        in[i] = (float)i;
    nn_net_forward(net, in, NULL, n, NN_BN_EVAL, logits, NULL);
    for (int i = 0; i < n * f; i++)
        assert_true(logits[i] == in[i]);
    nn_net_destroy(&net);
}

static void test_bad_input_is_reported(void **state)
{
    (void)state;
    nn_net_t *net = s_net_mlp();
    float *x;
    int32_t *labels;
    nn_net_check_data(net, BATCH, 3, &x, &labels);
    labels[1] = 4; /* classes = 4 */
    assert_true(isnan(nn_net_forward(net, x, labels, BATCH, NN_BN_EVAL, NULL, NULL)));
    labels[1] = -1;
    assert_true(isnan(nn_net_train_pass(net, x, labels, BATCH, NN_BN_EVAL, NN_PASS_PARAM_GRAD, 1.0f,
                                        NULL, NULL)));
    labels[1] = 0;
    assert_true(isnan(nn_net_forward(net, x, labels, BATCH + 2, NN_BN_EVAL, NULL, NULL)));
    assert_true(isnan(nn_net_forward(net, x, labels, 0, NN_BN_EVAL, NULL, NULL)));
    assert_false(isnan(nn_net_forward(net, x, labels, BATCH, NN_BN_EVAL, NULL, NULL)));
    free(x);
    free(labels);
    nn_net_destroy(&net);

    /* A layer that does not fit its input: linear on an image, and add of unequal shapes. */
    net = nn_net_new(2, 3, 3, 4);
    assert_true(nn_net_add(net, nn_linear_new("f", 3), 0, -1) < 0);
    assert_int_equal(nn_net_build(net), NN_ERR_SHAPE);
    nn_net_destroy(&net);
    net = nn_net_new(2, 3, 3, 4);
    int g = nn_net_add(net, nn_gap_new(), 0, -1);
    assert_true(nn_net_add(net, nn_add_new(), g, 0) < 0);
    nn_net_destroy(&net);
    /* The last layer must give logits. */
    net = nn_net_new(2, 3, 3, 4);
    nn_net_add(net, nn_relu_new(), 0, -1);
    assert_int_equal(nn_net_build(net), NN_ERR_SHAPE);
    nn_net_destroy(&net);
}

/* Loss value and accuracy against a hand computation. */
static void test_loss_value(void **state)
{
    (void)state;
    nn_net_t *net = nn_net_new(2, 1, 1, 2);
    nn_net_add(net, nn_linear_new("id", 2), 0, -1);
    assert_int_equal(nn_net_build(net), NN_OK);
    float *p = nn_net_params(net);
    p[0] = 1, p[1] = 0, p[2] = 0, p[3] = 1, p[4] = 0, p[5] = 0;
    float x[4] = {1.0f, 0.0f, 3.0f, 1.0f};
    int32_t labels[2] = {0, 1};
    int correct = -1;
    float l = nn_net_forward(net, x, labels, 2, NN_BN_EVAL, NULL, &correct);
    double l0 = log(1 + exp(-1.0)), l1 = log(exp(3.0) + exp(1.0)) - 1.0;
    assert_true(fabs(l - (l0 + l1) / 2) < 1e-6);
    assert_int_equal(correct, 1);
    nn_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_relu_flatten),
        cmocka_unit_test(test_gap_add),
        cmocka_unit_test(test_grad_scale_accumulates),
        cmocka_unit_test(test_block_skips_lower_layers),
        cmocka_unit_test(test_flatten_order_and_edges),
        cmocka_unit_test(test_bad_input_is_reported),
        cmocka_unit_test(test_loss_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
