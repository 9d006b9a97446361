/*
 * nn_zoo: the models of models.md, built layer by layer in execution order with PyTorch's module
 * names, so that parameter order, tensor names and state_dict order match PyTorch:
 *   mlp, cnn, resnet20, resnet18_cifar (CIFAR-style ResNets), wrn16_4 (Wide ResNet 16-4 with
 *   Zagoruyko and Komodakis' names), and torchvision's resnet18, resnet34, resnet50 and alexnet
 *   (torchvision's state_dict names; torchvision.models.resnet18(num_classes=nc) loads our
 *   weights with strict=True, for 3-channel inputs).
 * PyTorch's BatchNorm also has a `num_batches_tracked` buffer; it plays no part in training with a
 * fixed momentum and is not a tensor of these nets (a loader of PyTorch files ignores it, a writer
 * may add it; PyTorch's strict load_state_dict fills it in when missing).
 */
#include <string.h>

#include "nn_layer.h"
#include "nn_net.h"

#define NN_ZOO_KERNEL 3        /* 3x3 convolutions everywhere */
#define NN_ZOO_POOL 2          /* cnn's 2x2 max pools */
#define NN_ZOO_ALEXNET_MIN 63  /* smallest alexnet input side: its last max pool needs 3x3 */
#define NN_ZOO_ALEXNET_POOL 6  /* alexnet's adaptive average pool: 6x6 */
#define NN_ZOO_ALEXNET_FC 4096 /* alexnet's hidden classifier width */
#define NN_ZOO_DROPOUT 0.5f    /* alexnet's dropout probability */
#define NN_ZOO_BOTTLENECK 4    /* torchvision Bottleneck's expansion */

static const char *const s_models[] = {"mlp",     "cnn",      "resnet20", "resnet18_cifar",
                                       "wrn16_4", "resnet18", "resnet34", "resnet50",
                                       "alexnet", NULL};

const char *const *nn_zoo_models(void)
{
    return s_models;
}

/* mlp: flatten -> f1 Linear(C*H*W, 512) -> ReLU -> f2 Linear(512, 256) -> ReLU -> f3 Linear(256,
 * nc) */
static void s_mlp(nn_net_t *net, int classes)
{
    int x = nn_net_add(net, nn_flatten_new(), 0, -1);
    x = nn_net_add(net, nn_linear_new("f1", 512), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_linear_new("f2", 256), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    nn_net_add(net, nn_linear_new("f3", classes), x, -1);
}

/* cnn: two conv-BN-ReLU-maxpool stages, then f1 Linear(64*(H/4)*(W/4), 128) -> ReLU -> f2. */
static void s_cnn(nn_net_t *net, int classes)
{
    int x = nn_net_add(net, nn_conv_new("c1", 32, NN_ZOO_KERNEL, 1, 1, 0), 0, -1);
    x = nn_net_add(net, nn_bn_new("b1"), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_maxpool_new(NN_ZOO_POOL, NN_ZOO_POOL, 0), x, -1);
    x = nn_net_add(net, nn_conv_new("c2", 64, NN_ZOO_KERNEL, 1, 1, 0), x, -1);
    x = nn_net_add(net, nn_bn_new("b2"), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_maxpool_new(NN_ZOO_POOL, NN_ZOO_POOL, 0), x, -1);
    x = nn_net_add(net, nn_flatten_new(), x, -1);
    x = nn_net_add(net, nn_linear_new("f1", 128), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    nn_net_add(net, nn_linear_new("f2", classes), x, -1);
}

/* BasicBlock j (in -> out channels, stride) on node x; returns the output node. Execution order
 * c1, b1, relu, c2, b2, sc.0, sc.1, add, relu is PyTorch's parameter order. */
static int s_block(nn_net_t *net, int x, int j, int in, int out, int stride)
{
    char name[NN_NAME_MAX];
    snprintf(name, sizeof name, "layers.%d.c1", j);
    int y = nn_net_add(net, nn_conv_new(name, out, NN_ZOO_KERNEL, stride, 1, 0), x, -1);
    snprintf(name, sizeof name, "layers.%d.b1", j);
    y = nn_net_add(net, nn_bn_new(name), y, -1);
    y = nn_net_add(net, nn_relu_new(), y, -1);
    snprintf(name, sizeof name, "layers.%d.c2", j);
    y = nn_net_add(net, nn_conv_new(name, out, NN_ZOO_KERNEL, 1, 1, 0), y, -1);
    snprintf(name, sizeof name, "layers.%d.b2", j);
    y = nn_net_add(net, nn_bn_new(name), y, -1);
    int sc = x;
    if (stride != 1 || in != out) {
        snprintf(name, sizeof name, "layers.%d.sc.0", j);
        sc = nn_net_add(net, nn_conv_new(name, out, 1, stride, 0, 0), x, -1);
        snprintf(name, sizeof name, "layers.%d.sc.1", j);
        sc = nn_net_add(net, nn_bn_new(name), sc, -1);
    }
    y = nn_net_add(net, nn_add_new(), y, sc);
    return nn_net_add(net, nn_relu_new(), y, -1);
}

/* "<prefix>.<leaf>" in buf (NN_NAME_MAX bytes); names of the zoo always fit. */
static const char *s_sub(char *buf, const char *prefix, const char *leaf)
{
    int k = snprintf(buf, NN_NAME_MAX, "%s.%s", prefix, leaf);
    NN_ASSERT(k > 0 && k < NN_NAME_MAX);
    return buf;
}

/* conv -> BN (-> ReLU when relu), the unit every ResNet repeats; returns the last node. */
static int s_conv_bn(nn_net_t *net, int x, const char *conv, const char *bn, int out, int k,
                     int stride, int relu)
{
    x = nn_net_add(net, nn_conv_new(conv, out, k, stride, k / 2, 0), x, -1);
    x = nn_net_add(net, nn_bn_new(bn), x, -1);
    return relu ? nn_net_add(net, nn_relu_new(), x, -1) : x;
}

/* CIFAR-style ResNet: stem conv-BN-ReLU, stages of BasicBlocks, global average pool, fc. */
static void s_resnet(nn_net_t *net, int classes, const int *widths, int stages, int blocks)
{
    int x = s_conv_bn(net, 0, "stem", "bn", widths[0], NN_ZOO_KERNEL, 1, 1);
    int in = widths[0], j = 0;
    for (int s = 0; s < stages; s++)
        for (int b = 0; b < blocks; b++, j++) {
            int stride = s > 0 && b == 0 ? 2 : 1;
            if (x < 0)
                return;
            x = s_block(net, x, j, in, widths[s], stride);
            in = widths[s];
        }
    x = nn_net_add(net, nn_gap_new(), x, -1);
    nn_net_add(net, nn_linear_new("fc", classes), x, -1);
}

/* torchvision's BasicBlock `p` ("layer2.0"): conv1 3x3 (stride) -> bn1 -> ReLU -> conv2 3x3 ->
 * bn2, plus the identity or downsample = (1x1 conv with the stride, BN); ReLU of the sum. */
static int s_tv_basic(nn_net_t *net, int x, const char *p, int in, int planes, int stride)
{
    char a[NN_NAME_MAX], b[NN_NAME_MAX];
    int y = s_conv_bn(net, x, s_sub(a, p, "conv1"), s_sub(b, p, "bn1"), planes, 3, stride, 1);
    y = s_conv_bn(net, y, s_sub(a, p, "conv2"), s_sub(b, p, "bn2"), planes, 3, 1, 0);
    int sc = x;
    if (stride != 1 || in != planes)
        sc = s_conv_bn(net, x, s_sub(a, p, "downsample.0"), s_sub(b, p, "downsample.1"), planes, 1,
                       stride, 0);
    y = nn_net_add(net, nn_add_new(), y, sc);
    return nn_net_add(net, nn_relu_new(), y, -1);
}

/* torchvision's Bottleneck (ResNet v1.5: the stride on the 3x3 conv): conv1 1x1 -> bn1 -> ReLU ->
 * conv2 3x3 (stride) -> bn2 -> ReLU -> conv3 1x1 (4 x planes) -> bn3, plus the identity or the
 * downsample; ReLU of the sum. */
static int s_tv_bottleneck(nn_net_t *net, int x, const char *p, int in, int planes, int stride)
{
    char a[NN_NAME_MAX], b[NN_NAME_MAX];
    const int out = planes * NN_ZOO_BOTTLENECK;
    int y = s_conv_bn(net, x, s_sub(a, p, "conv1"), s_sub(b, p, "bn1"), planes, 1, 1, 1);
    y = s_conv_bn(net, y, s_sub(a, p, "conv2"), s_sub(b, p, "bn2"), planes, 3, stride, 1);
    y = s_conv_bn(net, y, s_sub(a, p, "conv3"), s_sub(b, p, "bn3"), out, 1, 1, 0);
    int sc = x;
    if (stride != 1 || in != out)
        sc = s_conv_bn(net, x, s_sub(a, p, "downsample.0"), s_sub(b, p, "downsample.1"), out, 1,
                       stride, 0);
    y = nn_net_add(net, nn_add_new(), y, sc);
    return nn_net_add(net, nn_relu_new(), y, -1);
}

/* torchvision's ImageNet ResNet: conv1 7x7/2 pad 3 -> bn1 -> ReLU -> maxpool 3x3/2 pad 1 ->
 * layer1..layer4 (64, 128, 256, 512 planes; the first block of layer2..4 has stride 2) ->
 * adaptive average pool 1x1 -> fc. */
static void s_tv_resnet(nn_net_t *net, int classes, const int *blocks, int bottleneck)
{
    static const int planes[] = {64, 128, 256, 512};
    const int stem_k = 7, stem_stride = 2, pool_k = 3, pool_stride = 2, pool_pad = 1;
    int x = s_conv_bn(net, 0, "conv1", "bn1", planes[0], stem_k, stem_stride, 1);
    x = nn_net_add(net, nn_maxpool_new(pool_k, pool_stride, pool_pad), x, -1);
    int in = planes[0];
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < blocks[s]; b++) {
            char p[NN_NAME_MAX];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, b);
            const int stride = s > 0 && b == 0 ? 2 : 1;
            if (x < 0)
                return;
            x = bottleneck ? s_tv_bottleneck(net, x, p, in, planes[s], stride)
                           : s_tv_basic(net, x, p, in, planes[s], stride);
            in = bottleneck ? planes[s] * NN_ZOO_BOTTLENECK : planes[s];
        }
    x = nn_net_add(net, nn_gap_new(), x, -1);
    nn_net_add(net, nn_linear_new("fc", classes), x, -1);
}

/* Wide ResNet 16-4 (Zagoruyko and Komodakis' reference, pre-activation): conv0 3x3 (16) -> three
 * groups of 2 blocks (64, 128, 256 channels; groups 1 and 2 start with stride 2) -> bn -> ReLU ->
 * global average pool -> fc. Block `p` ("group1.block0") on x:
 *   o1 = ReLU(bn0(x)); z = conv1(ReLU(bn1(conv0(o1)))) (3x3 convs, the stride on conv0);
 *   out = z + convdim(o1) (1x1 with the stride, when the width changes), else z + x. */
static void s_wrn(nn_net_t *net, int classes)
{
    static const int widths[] = {64, 128, 256};
    const int stem = 16, groups = 3, blocks = 2;
    int x = nn_net_add(net, nn_conv_new("conv0", stem, NN_ZOO_KERNEL, 1, 1, 0), 0, -1);
    int in = stem;
    for (int g = 0; g < groups; g++)
        for (int b = 0; b < blocks; b++) {
            char p[NN_NAME_MAX], a[NN_NAME_MAX];
            snprintf(p, sizeof p, "group%d.block%d", g, b);
            const int stride = g > 0 && b == 0 ? 2 : 1, out = widths[g];
            int o1 = nn_net_add(net, nn_bn_new(s_sub(a, p, "bn0")), x, -1);
            o1 = nn_net_add(net, nn_relu_new(), o1, -1);
            int y =
                nn_net_add(net, nn_conv_new(s_sub(a, p, "conv0"), out, 3, stride, 1, 0), o1, -1);
            y = nn_net_add(net, nn_bn_new(s_sub(a, p, "bn1")), y, -1);
            y = nn_net_add(net, nn_relu_new(), y, -1);
            y = nn_net_add(net, nn_conv_new(s_sub(a, p, "conv1"), out, 3, 1, 1, 0), y, -1);
            int sc = x;
            if (in != out)
                sc = nn_net_add(net, nn_conv_new(s_sub(a, p, "convdim"), out, 1, stride, 0, 0), o1,
                                -1);
            x = nn_net_add(net, nn_add_new(), y, sc);
            in = out;
        }
    x = nn_net_add(net, nn_bn_new("bn"), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_gap_new(), x, -1);
    nn_net_add(net, nn_linear_new("fc", classes), x, -1);
}

/* torchvision's AlexNet: features.0 Conv(64, 11, 4, 2) ReLU MaxPool(3, 2), features.3 Conv(192,
 * 5, 1, 2) ReLU MaxPool, features.6/8/10 Conv 3x3 pad 1 (384, 256, 256) with ReLUs, MaxPool,
 * adaptive average pool 6x6, flatten, classifier.0 Dropout, classifier.1 Linear(9216, 4096) ReLU,
 * classifier.3 Dropout, classifier.4 Linear(4096, 4096) ReLU, classifier.6 Linear(4096, nc). Every
 * conv has a bias. */
static void s_alexnet(nn_net_t *net, int classes)
{
    static const struct {
        const char *name; /* module name */
        int out, k, s, p; /* Conv2d(out, k, stride, pad) */
        int pool;         /* MaxPool(3, 2) after the ReLU */
    } convs[] = {{"features.0", 64, 11, 4, 2, 1},
                 {"features.3", 192, 5, 1, 2, 1},
                 {"features.6", 384, 3, 1, 1, 0},
                 {"features.8", 256, 3, 1, 1, 0},
                 {"features.10", 256, 3, 1, 1, 1}};
    const int pool_k = 3, pool_stride = 2;
    int x = 0;
    for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        x = nn_net_add(
            net, nn_conv_new(convs[i].name, convs[i].out, convs[i].k, convs[i].s, convs[i].p, 1), x,
            -1);
        x = nn_net_add(net, nn_relu_new(), x, -1);
        if (convs[i].pool)
            x = nn_net_add(net, nn_maxpool_new(pool_k, pool_stride, 0), x, -1);
    }
    x = nn_net_add(net, nn_avgpool_new(NN_ZOO_ALEXNET_POOL, NN_ZOO_ALEXNET_POOL), x, -1);
    x = nn_net_add(net, nn_flatten_new(), x, -1);
    x = nn_net_add(net, nn_dropout_new("classifier.0", NN_ZOO_DROPOUT), x, -1);
    x = nn_net_add(net, nn_linear_new("classifier.1", NN_ZOO_ALEXNET_FC), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_dropout_new("classifier.3", NN_ZOO_DROPOUT), x, -1);
    x = nn_net_add(net, nn_linear_new("classifier.4", NN_ZOO_ALEXNET_FC), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    nn_net_add(net, nn_linear_new("classifier.6", classes), x, -1);
}

/* Adds model's layers to net; 0, or -1 when the name is unknown. */
static int s_build(nn_net_t *net, const char *model, int classes)
{
    static const int resnet20_w[] = {16, 32, 64};
    static const int resnet18_w[] = {64, 128, 256, 512};
    static const int blocks18[] = {2, 2, 2, 2}, blocks34[] = {3, 4, 6, 3};
    if (!strcmp(model, "mlp"))
        s_mlp(net, classes);
    else if (!strcmp(model, "cnn"))
        s_cnn(net, classes);
    else if (!strcmp(model, "resnet20"))
        s_resnet(net, classes, resnet20_w, 3, 3);
    else if (!strcmp(model, "resnet18_cifar"))
        s_resnet(net, classes, resnet18_w, 4, 2);
    else if (!strcmp(model, "wrn16_4"))
        s_wrn(net, classes);
    else if (!strcmp(model, "resnet18"))
        s_tv_resnet(net, classes, blocks18, 0);
    else if (!strcmp(model, "resnet34"))
        s_tv_resnet(net, classes, blocks34, 0);
    else if (!strcmp(model, "resnet50"))
        s_tv_resnet(net, classes, blocks34, 1);
    else if (!strcmp(model, "alexnet"))
        s_alexnet(net, classes);
    else
        return -1;
    return 0;
}

/* Input sizes a model cannot take, reported before building; NN_OK or NN_ERR_SHAPE. */
static int s_check_input(const char *model, int h, int w)
{
    if (!strcmp(model, "cnn") &&
        (h % (NN_ZOO_POOL * NN_ZOO_POOL) || w % (NN_ZOO_POOL * NN_ZOO_POOL))) {
        nn_report(3, "nn_zoo_new: cnn needs height and width divisible by 4, got %dx%d", h, w);
        return NN_ERR_SHAPE;
    }
    if (!strcmp(model, "alexnet") && (h < NN_ZOO_ALEXNET_MIN || w < NN_ZOO_ALEXNET_MIN)) {
        nn_report(3, "nn_zoo_new: alexnet needs inputs of at least %dx%d, got %dx%d",
                  NN_ZOO_ALEXNET_MIN, NN_ZOO_ALEXNET_MIN, h, w);
        return NN_ERR_SHAPE;
    }
    return NN_OK;
}

/* "mlp, cnn, ..." into buf. */
static const char *s_model_list(char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *m = s_models; *m && used < size; m++) {
        int k = snprintf(buf + used, size - used, "%s%s", m == s_models ? "" : ", ", *m);
        used += k > 0 ? (size_t)k : 0;
    }
    return buf;
}

nn_net_t *nn_zoo_new(const char *model, int c, int h, int w, int classes, int max_batch, int *err)
{
    return nn_zoo_new_flags(model, c, h, w, classes, max_batch, 0, err);
}

nn_net_t *nn_zoo_new_flags(const char *model, int c, int h, int w, int classes, int max_batch,
                           unsigned flags, int *err)
{
    int rc = NN_ERR_ARG;
    nn_net_t *net = NULL;
    char list[256];
    if (!model || classes < 1) {
        nn_report(3, "nn_zoo_new: %s", model ? "classes must be >= 1" : "no model name");
        goto out_fail;
    }
    if ((rc = s_check_input(model, h, w)) != NN_OK)
        goto out_fail;
    rc = NN_ERR_ARG;
    net = nn_net_new(c, h, w, max_batch);
    if (!net)
        goto out_fail;
    if (s_build(net, model, classes)) {
        nn_report(3, "nn_zoo_new: unknown model '%s' (%s)", model, s_model_list(list, sizeof list));
        goto out_fail;
    }
    if (flags & NN_NET_FORWARD_ONLY)
        nn_net_set_forward_only(net);
    rc = nn_net_build(net);
    if (rc != NN_OK) {
        nn_report(3, "nn_zoo_new: cannot build %s for %dx%dx%d input: %s", model, c, h, w,
                  nn_strerror(rc));
        goto out_fail;
    }
    if (err)
        *err = NN_OK;
    return net;

out_fail:
    nn_net_destroy(&net);
    if (err)
        *err = rc;
    return NULL;
}
