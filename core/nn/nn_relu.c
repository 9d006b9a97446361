/*
 * nn_relu: rectified linear unit, elementwise on any shape (m = n*c*h*w elements).
 *   forward    y = max(x, 0)
 *   backward   dx += dy * [x > 0]          (dx = ... when dx is fresh, nn_layer.h)
 *   rforward   Ry = Rx * [x > 0]          (the second derivative is zero almost everywhere)
 *   rbackward  Rdx += Rdy * [x > 0]
 * The mask is read from the output (y > 0 exactly when x > 0), so nothing is stored. The net may
 * run it in place (output in the input's buffers, nn_net_layout.c): every pass is elementwise.
 * After a BatchNorm on blocked nodes, the BatchNorm computes all four passes (nn_bn.c).
 */
#include "nn_layer.h"

#define NN_RELU_OMP_MIN 65536 /* elements below which a loop stays on one thread */

struct nn_relu {
    struct nn_layer base; /* common header; first */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    (void)max_batch;
    if (l->n_in != 1)
        return NN_ERR_SHAPE;
    l->out->shape = l->in[0]->shape;
    l->n_decl = 0;
    l->layout = NN_LAYOUT_IN_BLK | NN_LAYOUT_OUT_BLK | NN_LAYOUT_SAME; /* elementwise */
    l->dx_set = 1;
    l->in_place = NN_IN_PLACE_RELU; /* elementwise; the mask is read from the output */
    l->reads_out = 1; /* ... so the output must not be overwritten in place after it */
    return NN_OK;
}

static size_t s_len(const struct nn_layer *l, const struct nn_ctx *ctx)
{
    return (size_t)ctx->n * nn_shape_numel(&l->out->shape);
}

/* The producer of x (a BatchNorm) runs this ReLU in all four passes (nn_node.relu). */
static int s_fused(const struct nn_layer *l)
{
    return l->in[0]->relu && l->in[0]->blk;
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (s_fused(l))
        return;
    size_t m = s_len(l, ctx);
    const float *x = l->in[0]->y;
    float *y = l->out->y;
#pragma omp parallel for simd if (m > NN_RELU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* dst = src * [y > 0] (set: dst held nothing yet) or dst += src * [y > 0] */
static void s_masked(float *dst, const float *src, const float *y, size_t m, int set)
{
    if (set) {
#pragma omp parallel for simd if (m > NN_RELU_OMP_MIN)
        for (size_t i = 0; i < m; i++)
            dst[i] = y[i] > 0.0f ? src[i] : 0.0f;
        return;
    }
#pragma omp parallel for simd if (m > NN_RELU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        dst[i] += y[i] > 0.0f ? src[i] : 0.0f;
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (s_fused(l))
        return;
    struct nn_node *x = l->in[0];
    if (x->need_dy)
        s_masked(x->dy, l->out->dy, l->out->y, s_len(l, ctx), nn_node_first_dy(x));
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (s_fused(l))
        return;
    size_t m = s_len(l, ctx);
    const float *rx = l->in[0]->ry, *y = l->out->y;
    float *ry = l->out->ry;
#pragma omp parallel for simd if (m > NN_RELU_OMP_MIN)
    for (size_t i = 0; i < m; i++)
        ry[i] = y[i] > 0.0f ? rx[i] : 0.0f;
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (s_fused(l))
        return;
    struct nn_node *x = l->in[0];
    if (x->need_dy)
        s_masked(x->rdy, l->out->rdy, l->out->y, s_len(l, ctx), nn_node_first_rdy(x));
}

static double s_flops(const struct nn_layer *l)
{
    return (double)nn_shape_numel(&l->out->shape);
}

static void s_destroy(struct nn_layer *l)
{
    (void)l;
}

static const struct nn_layer_ops s_ops = {
    "relu", s_setup, s_forward, s_backward, s_rforward, s_rbackward, NULL, s_flops, s_destroy,
};

struct nn_layer *nn_relu_new(void)
{
    struct nn_relu *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &s_ops;
    return &s->base;
}
