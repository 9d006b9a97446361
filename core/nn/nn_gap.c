/*
 * nn_gap: global average pooling, CNHW [c x n x (h*w)] -> feature-major [c x n] (= c x 1 x 1).
 *   forward    y[k,i] = (1/hw) sum_s x[k,i,s]
 *   backward   dx[k,i,s] += dy[k,i] / hw
 *   rforward   Ry = (1/hw) sum_s Rx            (linear: same map)
 *   rbackward  Rdx[k,i,s] += Rdy[k,i] / hw
 * The input may be channel-blocked (nn_layer.h); the output is always feature-major.
 */
#include "nn_layer.h"

#define NN_GAP_OMP_MIN 65536 /* input elements below which a loop stays on one thread */

struct nn_gap {
    struct nn_layer base; /* common header; first */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    (void)max_batch;
    if (l->n_in != 1)
        return NN_ERR_SHAPE;
    l->out->shape = (struct nn_shape){l->in[0]->shape.c, 1, 1};
    l->n_decl = 0;
    l->layout = NN_LAYOUT_IN_BLK;
    l->dx_set = 1;
    return NN_OK;
}

/* s_pool on a channel-blocked input: each (sample, block) is hw runs of NN_BLK channels. */
static void s_pool_blk(const struct nn_layer *l, const struct nn_ctx *ctx, const float *x, float *y)
{
    const int n = ctx->n, cb = l->in[0]->shape.c / NN_BLK;
    const size_t hw = (size_t)l->in[0]->shape.h * l->in[0]->shape.w;
    const float inv = 1.0f / (float)hw;
#pragma omp parallel for if ((size_t)n * cb * hw * NN_BLK > NN_GAP_OMP_MIN)
    for (int r = 0; r < n * cb; r++) {
        const int i = r / cb, b = r % cb;
        const float *src = x + (size_t)r * hw * NN_BLK;
        float sum[NN_BLK] = {0};
        for (size_t s = 0; s < hw; s++)
            for (int k = 0; k < NN_BLK; k++)
                sum[k] += src[s * NN_BLK + k];
        for (int k = 0; k < NN_BLK; k++)
            y[(size_t)(b * NN_BLK + k) * n + i] = sum[k] * inv;
    }
}

/* s_spread into a channel-blocked input gradient. */
static void s_spread_blk(const struct nn_layer *l, const struct nn_ctx *ctx, const float *dy,
                         float *dx, int set)
{
    const int n = ctx->n, cb = l->in[0]->shape.c / NN_BLK;
    const size_t hw = (size_t)l->in[0]->shape.h * l->in[0]->shape.w;
    const float inv = 1.0f / (float)hw;
#pragma omp parallel for if ((size_t)n * cb * hw * NN_BLK > NN_GAP_OMP_MIN)
    for (int r = 0; r < n * cb; r++) {
        const int i = r / cb, b = r % cb;
        float *dst = dx + (size_t)r * hw * NN_BLK;
        float g[NN_BLK];
        for (int k = 0; k < NN_BLK; k++)
            g[k] = dy[(size_t)(b * NN_BLK + k) * n + i] * inv;
        for (size_t s = 0; s < hw; s++)
            for (int k = 0; k < NN_BLK; k++)
                dst[s * NN_BLK + k] = (set ? 0.0f : dst[s * NN_BLK + k]) + g[k];
    }
}

static void s_pool(const struct nn_layer *l, const struct nn_ctx *ctx, const float *x, float *y)
{
    if (l->in[0]->blk) {
        s_pool_blk(l, ctx, x, y);
        return;
    }
    size_t rows = (size_t)ctx->n * l->in[0]->shape.c;
    size_t hw = (size_t)l->in[0]->shape.h * l->in[0]->shape.w;
    float inv = 1.0f / (float)hw;
#pragma omp parallel for if (rows * hw > NN_GAP_OMP_MIN)
    for (size_t r = 0; r < rows; r++) {
        const float *src = x + r * hw;
        float sum = 0.0f;
        for (size_t s = 0; s < hw; s++)
            sum += src[s];
        y[r] = sum * inv;
    }
}

/* dx += dy / hw spread over each plane (dx = ... when set: dx held nothing yet). */
static void s_spread(const struct nn_layer *l, const struct nn_ctx *ctx, const float *dy, float *dx,
                     int set)
{
    if (l->in[0]->blk) {
        s_spread_blk(l, ctx, dy, dx, set);
        return;
    }
    size_t rows = (size_t)ctx->n * l->in[0]->shape.c;
    size_t hw = (size_t)l->in[0]->shape.h * l->in[0]->shape.w;
    float inv = 1.0f / (float)hw;
#pragma omp parallel for if (rows * hw > NN_GAP_OMP_MIN)
    for (size_t r = 0; r < rows; r++) {
        float g = dy[r] * inv;
        float *dst = dx + r * hw;
        for (size_t s = 0; s < hw; s++)
            dst[s] = (set ? 0.0f : dst[s]) + g;
    }
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_pool(l, ctx, l->in[0]->y, l->out->y);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_spread(l, ctx, l->out->dy, l->in[0]->dy, nn_node_first_dy(l->in[0]));
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_pool(l, ctx, l->in[0]->ry, l->out->ry);
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_spread(l, ctx, l->out->rdy, l->in[0]->rdy, nn_node_first_rdy(l->in[0]));
}

static double s_flops(const struct nn_layer *l)
{
    return (double)nn_shape_numel(&l->in[0]->shape);
}

static void s_destroy(struct nn_layer *l)
{
    (void)l;
}

static const struct nn_layer_ops s_ops = {
    "gap", s_setup, s_forward, s_backward, s_rforward, s_rbackward, NULL, s_flops, s_destroy,
};

struct nn_layer *nn_gap_new(void)
{
    struct nn_gap *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &s_ops;
    return &s->base;
}
