/*
 * nn_zoo: the models of models.md (mlp, cnn, resnet20, resnet18), built layer by layer in execution
 * order with PyTorch's module names, so that parameter order, tensor names and state_dict order
 * match PyTorch. PyTorch's BatchNorm also has a `num_batches_tracked` buffer; it plays no part in
 * training with a fixed momentum and is not a tensor of these nets (a loader of PyTorch files
 * ignores it, a writer may add it).
 */
#include <string.h>

#include "nn_layer.h"
#include "nn_net.h"

#define NN_ZOO_KERNEL 3 /* 3x3 convolutions everywhere */
#define NN_ZOO_POOL 2   /* cnn's 2x2 max pools */

static const char *const s_models[] = {"mlp", "cnn", "resnet20", "resnet18", NULL};

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
    x = nn_net_add(net, nn_maxpool_new(NN_ZOO_POOL, NN_ZOO_POOL), x, -1);
    x = nn_net_add(net, nn_conv_new("c2", 64, NN_ZOO_KERNEL, 1, 1, 0), x, -1);
    x = nn_net_add(net, nn_bn_new("b2"), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
    x = nn_net_add(net, nn_maxpool_new(NN_ZOO_POOL, NN_ZOO_POOL), x, -1);
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

/* CIFAR-style ResNet: stem conv-BN-ReLU, stages of BasicBlocks, global average pool, fc. */
static void s_resnet(nn_net_t *net, int classes, const int *widths, int stages, int blocks)
{
    int x = nn_net_add(net, nn_conv_new("stem", widths[0], NN_ZOO_KERNEL, 1, 1, 0), 0, -1);
    x = nn_net_add(net, nn_bn_new("bn"), x, -1);
    x = nn_net_add(net, nn_relu_new(), x, -1);
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

nn_net_t *nn_zoo_new(const char *model, int c, int h, int w, int classes, int max_batch, int *err)
{
    static const int resnet20_w[] = {16, 32, 64};
    static const int resnet18_w[] = {64, 128, 256, 512};
    int rc = NN_ERR_ARG;
    nn_net_t *net = NULL;
    if (!model || classes < 1) {
        nn_report(3, "nn_zoo_new: %s", model ? "classes must be >= 1" : "no model name");
        goto out_fail;
    }
    if (!strcmp(model, "cnn") &&
        (h % (NN_ZOO_POOL * NN_ZOO_POOL) || w % (NN_ZOO_POOL * NN_ZOO_POOL))) {
        nn_report(3, "nn_zoo_new: cnn needs height and width divisible by 4, got %dx%d", h, w);
        rc = NN_ERR_SHAPE;
        goto out_fail;
    }
    net = nn_net_new(c, h, w, max_batch);
    if (!net)
        goto out_fail;
    if (!strcmp(model, "mlp"))
        s_mlp(net, classes);
    else if (!strcmp(model, "cnn"))
        s_cnn(net, classes);
    else if (!strcmp(model, "resnet20"))
        s_resnet(net, classes, resnet20_w, 3, 3);
    else if (!strcmp(model, "resnet18"))
        s_resnet(net, classes, resnet18_w, 4, 2);
    else {
        nn_report(3, "nn_zoo_new: unknown model '%s' (mlp, cnn, resnet20, resnet18)", model);
        goto out_fail;
    }
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
