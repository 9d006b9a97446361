/*
 * test_nn_zoo: the models of models.md: parameter counts for 1x28x28 inputs and 10 classes, tensor
 * names, shapes and state_dict order (derived here from models.md's text), flat offsets, and for
 * every model at a small size: gradients and input gradients against central finite differences,
 * HVPs against finite differences of gradients and the Hessian's symmetry, with BatchNorm in eval
 * and in train mode, and block HVPs against the full HVP.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn_backend.h"
#include "nn_net.h"
#include "nn_net_check.h"

#define MAX_TENSORS 256
#define TOL_GRAD 3e-2 /* see s_check_model */
#define TOL_HVP 3e-2
#define TOL_SYM 1e-4

/* Expected state_dict: name and shape per tensor. */
struct expect {
    int n;
    char name[MAX_TENSORS][96];
    int ndim[MAX_TENSORS];
    int shape[MAX_TENSORS][4];
};

static void s_push(struct expect *e, const char *name, int ndim, int d0, int d1, int d2, int d3)
{
    assert_true(e->n < MAX_TENSORS);
    snprintf(e->name[e->n], sizeof e->name[0], "%s", name);
    e->ndim[e->n] = ndim;
    int d[4] = {d0, d1, d2, d3};
    memcpy(e->shape[e->n], d, sizeof d);
    e->n++;
}

static void s_conv(struct expect *e, const char *name, int o, int i, int k)
{
    char t[96];
    snprintf(t, sizeof t, "%s.weight", name);
    s_push(e, t, 4, o, i, k, k);
}

static void s_linear(struct expect *e, const char *name, int o, int i)
{
    char t[96];
    snprintf(t, sizeof t, "%s.weight", name);
    s_push(e, t, 2, o, i, 0, 0);
    snprintf(t, sizeof t, "%s.bias", name);
    s_push(e, t, 1, o, 0, 0, 0);
}

static void s_bn(struct expect *e, const char *name, int c)
{
    static const char *const sfx[] = {"weight", "bias", "running_mean", "running_var"};
    char t[96];
    for (int i = 0; i < 4; i++) {
        snprintf(t, sizeof t, "%s.%s", name, sfx[i]);
        s_push(e, t, 1, c, 0, 0, 0);
    }
}

/* models.md, written out for input c x h x w and nc classes. */
static void s_expect(struct expect *e, const char *model, int c, int h, int w, int nc)
{
    e->n = 0;
    if (!strcmp(model, "mlp")) {
        s_linear(e, "f1", 512, c * h * w);
        s_linear(e, "f2", 256, 512);
        s_linear(e, "f3", nc, 256);
    } else if (!strcmp(model, "cnn")) {
        s_conv(e, "c1", 32, c, 3);
        s_bn(e, "b1", 32);
        s_conv(e, "c2", 64, 32, 3);
        s_bn(e, "b2", 64);
        s_linear(e, "f1", 128, 64 * (h / 4) * (w / 4));
        s_linear(e, "f2", nc, 128);
    } else {
        static const int w20[] = {16, 32, 64}, w18[] = {64, 128, 256, 512};
        int r20 = !strcmp(model, "resnet20");
        const int *wd = r20 ? w20 : w18;
        int stages = r20 ? 3 : 4, blocks = r20 ? 3 : 2, j = 0, in = wd[0];
        s_conv(e, "stem", wd[0], c, 3);
        s_bn(e, "bn", wd[0]);
        for (int s = 0; s < stages; s++)
            for (int b = 0; b < blocks; b++, j++) {
                char p[80];
                int stride = s > 0 && b == 0 ? 2 : 1, o = wd[s];
                snprintf(p, sizeof p, "layers.%d.c1", j);
                s_conv(e, p, o, in, 3);
                snprintf(p, sizeof p, "layers.%d.b1", j);
                s_bn(e, p, o);
                snprintf(p, sizeof p, "layers.%d.c2", j);
                s_conv(e, p, o, o, 3);
                snprintf(p, sizeof p, "layers.%d.b2", j);
                s_bn(e, p, o);
                if (stride != 1 || in != o) {
                    snprintf(p, sizeof p, "layers.%d.sc.0", j);
                    s_conv(e, p, o, in, 1);
                    snprintf(p, sizeof p, "layers.%d.sc.1", j);
                    s_bn(e, p, o);
                }
                in = o;
            }
        s_linear(e, "fc", nc, in);
    }
}

static void s_check_tensors(const char *model, int c, int h, int w, int nc)
{
    int err = -1;
    nn_net_t *net = nn_zoo_new(model, c, h, w, nc, 2, &err);
    assert_non_null(net);
    assert_int_equal(err, NN_OK);
    static struct expect e;
    s_expect(&e, model, c, h, w, nc);
    assert_int_equal(nn_net_tensor_count(net), e.n);
    size_t p_off = 0, b_off = 0;
    for (int i = 0; i < e.n; i++) {
        const struct nn_tensor_info *t = nn_net_tensor(net, i);
        if (strcmp(t->name, e.name[i]))
            fail_msg("%s tensor %d: got %s, expected %s", model, i, t->name, e.name[i]);
        assert_int_equal(t->ndim, e.ndim[i]);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            assert_int_equal(t->shape[d], e.shape[i][d]);
            numel *= (size_t)t->shape[d];
        }
        assert_int_equal(t->numel, numel);
        int is_buf = strstr(t->name, "running_") != NULL;
        assert_int_equal(t->kind, is_buf ? NN_TENSOR_BUFFER : NN_TENSOR_PARAM);
        assert_int_equal(t->offset, is_buf ? b_off : p_off);
        *(is_buf ? &b_off : &p_off) += numel;
        assert_ptr_equal(nn_net_tensor_find(net, t->name), t);
    }
    assert_int_equal(nn_net_param_count(net), p_off);
    assert_int_equal(nn_net_buffer_count(net), b_off);
    assert_null(nn_net_tensor_find(net, "b1.num_batches_tracked"));
    nn_net_destroy(&net);
}

static void test_param_counts(void **state)
{
    (void)state;
    static const struct {
        const char *model;
        size_t params;
        int layers;
    } want[] = {{"mlp", 535818, 3},
                {"cnn", 421738, 6},
                {"resnet20", 272186, 43},
                {"resnet18_cifar", 11172810, 41}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int err = -1;
        nn_net_t *net = nn_zoo_new(want[i].model, 1, 28, 28, 10, 1, &err);
        if (!net)
            fail_msg("cannot build %s: %s", want[i].model, nn_strerror(err));
        assert_int_equal(nn_net_param_count(net), want[i].params);
        assert_int_equal(nn_net_param_layers(net), want[i].layers);
        assert_int_equal(nn_net_param_layer_offset(net, want[i].layers), want[i].params);
        assert_int_equal(nn_net_classes(net), 10);
        nn_net_destroy(&net);
    }
}

/* The models written out by s_expect; the others' names are checked by PyTorch's strict
 * load_state_dict in test_torch_parity. */
static void test_tensor_names_and_shapes(void **state)
{
    (void)state;
    static const char *const cifar[] = {"mlp", "cnn", "resnet20", "resnet18_cifar"};
    for (size_t i = 0; i < sizeof cifar / sizeof cifar[0]; i++) {
        s_check_tensors(cifar[i], 1, 28, 28, 10);
        s_check_tensors(cifar[i], 3, 32, 32, 7);
    }
}

/* models.md's counts of the ImageNet models with 1000 classes (torchvision's; they do not depend
 * on the input size) and of wrn16_4 (torch_zoo.py's WideResNet, checked in test_torch_parity),
 * parameter layers, the first and last tensor names, and the zoo's list. */
static void test_imagenet_and_wrn_counts(void **state)
{
    (void)state;
    static const struct {
        const char *model; /* zoo name */
        int hw, classes;   /* input side (3 channels), classes */
        size_t params;     /* parameters */
        int layers;        /* parameter layers */
        const char *first; /* first tensor */
        const char *last;  /* last tensor */
    } want[] = {
        {"resnet18", 64, 1000, 11689512, 41, "conv1.weight", "fc.bias"},
        {"resnet34", 64, 1000, 21797672, 73, "conv1.weight", "fc.bias"},
        {"resnet50", 64, 1000, 25557032, 107, "conv1.weight", "fc.bias"},
        {"alexnet", 63, 1000, 61100840, 8, "features.0.weight", "classifier.6.bias"},
        {"wrn16_4", 32, 10, 2748890, 30, "conv0.weight", "fc.bias"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int err = -1;
        nn_net_t *net =
            nn_zoo_new(want[i].model, 3, want[i].hw, want[i].hw, want[i].classes, 1, &err);
        if (!net)
            fail_msg("cannot build %s: %s", want[i].model, nn_strerror(err));
        assert_int_equal(nn_net_param_count(net), want[i].params);
        assert_int_equal(nn_net_param_layers(net), want[i].layers);
        assert_string_equal(nn_net_tensor(net, 0)->name, want[i].first);
        assert_string_equal(nn_net_tensor(net, nn_net_tensor_count(net) - 1)->name, want[i].last);
        nn_net_destroy(&net);
    }
    assert_non_null(nn_zoo_models());
    int n = 0;
    for (const char *const *m = nn_zoo_models(); *m; m++)
        n++;
    assert_int_equal(n, 9);
    static const char *const names[] = {"layer2.0.downsample.0.weight",
                                        "layer2.0.downsample.1.running_var",
                                        "layer1.0.conv1.weight", "layer4.1.bn2.bias"};
    nn_net_t *net = nn_zoo_new("resnet18", 1, 28, 28, 10, 1, NULL); /* Fashion-MNIST's shape */
    assert_non_null(net);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_non_null(nn_net_tensor_find(net, names[i]));
    assert_null(nn_net_tensor_find(net, "layer1.0.downsample.0.weight"));
    nn_net_destroy(&net);
}

static void test_bad_models_rejected(void **state)
{
    (void)state;
    int err = 0;
    assert_null(nn_zoo_new("vgg", 1, 28, 28, 10, 8, &err));
    assert_int_equal(err, NN_ERR_ARG);
    assert_null(nn_zoo_new("cnn", 1, 30, 30, 10, 8, &err));
    assert_int_equal(err, NN_ERR_SHAPE);
    assert_null(nn_zoo_new("mlp", 1, 28, 28, 0, 8, &err));
    assert_int_equal(err, NN_ERR_ARG);
    assert_null(nn_zoo_new("mlp", 1, 28, 28, 10, 0, &err));
    assert_null(nn_zoo_new("alexnet", 3, 62, 63, 10, 1, &err)); /* its last pool needs 63x63 */
    assert_int_equal(err, NN_ERR_SHAPE);
    assert_null(nn_zoo_new("resnet18_imagenet", 3, 64, 64, 10, 1, &err));
    assert_int_equal(err, NN_ERR_ARG);
}

/* PyTorch's default init: Linear weights and biases U(-1/sqrt(in), 1/sqrt(in)); BN 1, 0, 0, 1. */
static void test_default_init(void **state)
{
    (void)state;
    nn_net_t *net = nn_zoo_new("mlp", 1, 28, 28, 10, 1, NULL);
    assert_non_null(net);
    const struct nn_tensor_info *t = nn_net_tensor_find(net, "f2.weight");
    const float *w = nn_net_params(net) + t->offset;
    float bound = 1.0f / sqrtf(512.0f), maxabs = 0;
    double mean = 0;
    for (size_t i = 0; i < t->numel; i++) {
        maxabs = fmaxf(maxabs, fabsf(w[i]));
        mean += w[i];
    }
    assert_true(maxabs <= bound && maxabs > 0.99f * bound);
    assert_true(fabs(mean / t->numel) < 0.01 * bound);
    float first = w[0];
    nn_net_init(net, 0);
    assert_true(w[0] == first); /* seeded */
    nn_net_init(net, 1);
    assert_true(w[0] != first);
    nn_net_destroy(&net);
}

static int s_sanitized(void)
{
    const char *s = getenv("EB_SANITIZED");
    return s && *s && strcmp(s, "0");
}

/* Derivative checks of one model at a small size, in one BatchNorm mode: gradient and input
 * gradient (finite differences of the loss), HVP against differences of gradients (the full HVP
 * when hvp_k = 0, else the block of the last hvp_k layers), the Hessian's symmetry and the block
 * HVP of the last 3 layers against the full one.
 *
 * Sizes and tolerances: finite differences of a ReLU net are only valid between kinks, so the
 * full-HVP check runs where the net has few units (a ResNet in eval mode on 4x4 inputs); in train
 * mode BatchNorm over a handful of values per channel is razor-sharp, so train mode uses 8x8
 * inputs and 8 samples, where the full ResNet has too many units for a kink-free difference of
 * gradients: there the HVP check covers the last 8 layers (residual blocks with BN train R-passes
 * and a projection shortcut) and symmetry covers the whole Hessian. Observed errors are <= 1.6e-2;
 * a missing or wrong term gives 1e-1 .. 1. Single input pixels have gradients too small to
 * resolve in float32 through train-mode ResNets; there the input gradient is checked along one
 * direction only (in_coords = 0). Each layer's derivatives are also checked exactly, one
 * layer at a time, in test_nn_layers, test_nn_conv, test_nn_bn and test_nn_maxpool. */
static void s_check_model(const char *model, int c, int hw, int n, enum nn_bn_mode bn, int hvp_k,
                          int per_layer, int in_coords)
{
    nn_net_t *net = nn_zoo_new(model, c, hw, hw, 5, n, NULL);
    assert_non_null(net);
    nn_net_check_perturb(net, 17, 0.05f);
    float *x;
    int32_t *labels;
    nn_net_check_data(net, n, 23, &x, &labels);
    const char *ms = bn == NN_BN_EVAL ? "eval" : "train";
    double e = nn_net_check_param_grad(net, x, labels, n, bn, 1e-3, per_layer);
    print_message("%s bn=%s: param grad %.2e\n", model, ms, e);
    assert_true(e < TOL_GRAD);
    e = nn_net_check_input_grad(net, x, labels, n, bn, 1e-3, in_coords);
    print_message("%s bn=%s: input grad %.2e\n", model, ms, e);
    assert_true(e < TOL_GRAD);
    e = nn_net_check_hvp(net, x, labels, n, bn, hvp_k, 1e-2);
    print_message("%s bn=%s: hvp (last %d layers; 0 = all) %.2e\n", model, ms, hvp_k, e);
    assert_true(e < TOL_HVP);
    e = nn_net_check_hvp_symmetry(net, x, labels, n, bn);
    print_message("%s bn=%s: symmetry %.2e\n", model, ms, e);
    assert_true(e < TOL_SYM);
    e = nn_net_check_block(net, x, labels, n, bn, 3);
    print_message("%s bn=%s: block(3) vs full %.2e\n", model, ms, e);
    assert_true(e < 1e-4);
    free(x);
    free(labels);
    nn_net_destroy(&net);
}

static void test_mlp_derivatives(void **state)
{
    (void)state;
    s_check_model("mlp", 1, 8, 3, NN_BN_EVAL, 0, s_sanitized() ? 2 : 6, 16);
}

static void test_cnn_derivatives(void **state)
{
    (void)state;
    s_check_model("cnn", 2, 8, 4, NN_BN_EVAL, 0, s_sanitized() ? 2 : 6, 16);
    s_check_model("cnn", 2, 8, 4, NN_BN_TRAIN, 0, s_sanitized() ? 2 : 6, 16);
}

static void test_resnet20_derivatives(void **state)
{
    (void)state;
    s_check_model("resnet20", 2, 4, 4, NN_BN_EVAL, 0, 0, 16);
    s_check_model("resnet20", 2, 8, 8, NN_BN_TRAIN, 8, 0, 0);
}

static void test_resnet18_cifar_derivatives(void **state)
{
    (void)state;
    s_check_model("resnet18_cifar", 1, 4, 4, NN_BN_EVAL, 0, 0, 16);
    if (!s_sanitized()) /* 11 M parameters: too slow under the sanitizers; train-mode R-passes
                         * of the same layers are covered by the resnet20 case */
        s_check_model("resnet18_cifar", 1, 8, 8, NN_BN_TRAIN, 8, 0, 0);
}

static void test_new_models_derivatives(void **state)
{
    (void)state;
    s_check_model("wrn16_4", 1, 4, 2, NN_BN_EVAL, 0, 0, 16);
    if (s_sanitized())
        return; /* millions of parameters: too slow under the sanitizers */
    s_check_model("wrn16_4", 1, 8, 8, NN_BN_TRAIN, 8, 0, 0);
    s_check_model("resnet18", 1, 16, 2, NN_BN_EVAL, 0, 0, 16);
}

/* alexnet's dropout and the pass seed: train-mode passes with different seeds differ, a
 * train-mode pass advances the seed and an eval-mode pass does not, and with dropout forced to
 * eval mode a train-mode pass equals an eval-mode one (no BatchNorm in alexnet). The HVP with
 * dropout is checked on a small net in test_nn_pool_dropout. */
static void test_alexnet_dropout(void **state)
{
    (void)state;
    const int n = 2, classes = 5;
    nn_net_t *net = nn_zoo_new("alexnet", 1, 63, 63, classes, n, NULL);
    assert_non_null(net);
    float *x;
    int32_t *labels;
    nn_net_check_data(net, n, 23, &x, &labels);
    float a[10], b[10], c[10];
    nn_net_set_seed(net, 9, 1);
    nn_net_forward(net, x, NULL, n, NN_BN_TRAIN, a, NULL);
    nn_net_forward(net, x, NULL, n, NN_BN_TRAIN, b, NULL);
    assert_memory_equal(a, b, sizeof a); /* fixed seed: the same masks */
    assert_true(nn_net_seed(net) == 9);
    nn_net_set_seed(net, 10, 0);
    nn_net_forward(net, x, NULL, n, NN_BN_TRAIN, b, NULL);
    assert_true(nn_net_seed(net) == 11); /* a train-mode pass advances the seed */
    assert_true(memcmp(a, b, sizeof a) != 0);
    nn_net_forward(net, x, NULL, n, NN_BN_EVAL, c, NULL);
    assert_true(nn_net_seed(net) == 11); /* an eval-mode pass does not */
    nn_net_set_dropout_eval(net, 1);     /* dropout off: train mode equals eval mode */
    nn_net_forward(net, x, NULL, n, NN_BN_TRAIN, a, NULL);
    assert_memory_equal(a, c, sizeof a);
    free(x);
    free(labels);
    nn_net_destroy(&net);
}

/* A forward-only net (evaluation): bit for bit the logits and loss of a full net with the same
 * weights (blocked and CNHW passes, BatchNorm in both modes), in a fraction of its activation
 * memory; its training passes and HVPs fail. */
static void s_forward_only(const char *model, int c, int h, int w, int mb, size_t max_share)
{
    const int classes = 10;
    nn_net_t *full = nn_zoo_new(model, c, h, w, classes, mb, NULL);
    nn_net_t *fo = nn_zoo_new_flags(model, c, h, w, classes, mb, NN_NET_FORWARD_ONLY, NULL);
    assert_non_null(full);
    assert_non_null(fo);
    nn_net_init(full, 5);
    memcpy(nn_net_params(fo), nn_net_params(full), nn_net_param_count(full) * sizeof(float));
    memcpy(nn_net_buffers(fo), nn_net_buffers(full), nn_net_buffer_count(full) * sizeof(float));
    float *x, *hv = malloc(nn_net_param_count(fo) * sizeof(float));
    int32_t *labels;
    nn_net_check_data(full, mb, 31, &x, &labels);
    float *la = malloc((size_t)mb * classes * sizeof(float));
    float *lb = malloc((size_t)mb * classes * sizeof(float));
    assert_non_null(hv);
    assert_non_null(la);
    assert_non_null(lb);
    for (int n = mb; n >= mb - 1; n--)
        for (int bn = 0; bn < 2; bn++) {
            const enum nn_bn_mode mode = bn ? NN_BN_TRAIN : NN_BN_EVAL;
            float a = nn_net_forward(full, x, labels, n, mode, la, NULL);
            float b = nn_net_forward(fo, x, labels, n, mode, lb, NULL);
            assert_true(isfinite(a));
            assert_memory_equal(&a, &b, sizeof a);
            assert_memory_equal(la, lb, (size_t)n * classes * sizeof(float));
        }
    struct nn_mem_plan pf, po;
    nn_net_mem_plan(full, &pf);
    nn_net_mem_plan(fo, &po);
    assert_true(po.activations == nn_net_forward_only_act_bytes(full));
    assert_true(po.activations * max_share <= pf.activations);
    assert_true(isnan(
        nn_net_train_pass(fo, x, labels, mb, NN_BN_TRAIN, NN_PASS_PARAM_GRAD, 1.0f, NULL, NULL)));
    assert_true(isnan(nn_net_hvp(fo, x, labels, mb, NN_BN_EVAL, 0, nn_net_params(fo), hv)));
    free(x);
    free(labels);
    free(hv);
    free(la);
    free(lb);
    nn_net_destroy(&full);
    nn_net_destroy(&fo);
}

static void test_forward_only(void **state)
{
    (void)state;
    s_forward_only("mlp", 1, 8, 8, 4, 2);
    s_forward_only("cnn", 1, 8, 8, 4, 4);
    s_forward_only("resnet20", 3, 8, 8, 4, 10);
    s_forward_only("wrn16_4", 3, 8, 8, 3, 8);
    s_forward_only("resnet18", 3, 32, 32, 2, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_counts),
        cmocka_unit_test(test_tensor_names_and_shapes),
        cmocka_unit_test(test_bad_models_rejected),
        cmocka_unit_test(test_default_init),
        cmocka_unit_test(test_mlp_derivatives),
        cmocka_unit_test(test_cnn_derivatives),
        cmocka_unit_test(test_resnet20_derivatives),
        cmocka_unit_test(test_resnet18_cifar_derivatives),
        cmocka_unit_test(test_imagenet_and_wrn_counts),
        cmocka_unit_test(test_new_models_derivatives),
        cmocka_unit_test(test_alexnet_dropout),
        cmocka_unit_test(test_forward_only),
    };
    const char *filter = getenv("EB_TEST_FILTER"); /* run only matching tests, e.g. "*resnet*" */
    if (filter && *filter)
        cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
