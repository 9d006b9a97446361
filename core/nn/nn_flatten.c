/*
 * nn_flatten: CNHW [c x n x hw] -> feature-major [(c*hw) x n] in PyTorch's flatten order (feature
 * f = k*h*w + y*w + x). Per channel k it is a transpose of the [n x hw] block into rows
 * k*hw .. k*hw+hw-1 of the output.
 *   forward    y[k*hw + s, i] = x[k, i, s]
 *   backward   dx[k, i, s] += dy[k*hw + s, i]
 *   rforward / rbackward: the same maps on R{x} and R{dy}.
 */
#include "nn_layer.h"

#define NN_FLATTEN_OMP_MIN 65536 /* elements below which a loop stays on one thread */

struct nn_flatten {
    struct nn_layer base; /* common header; first */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    (void)max_batch;
    if (l->n_in != 1)
        return NN_ERR_SHAPE;
    l->out->shape = (struct nn_shape){(int)nn_shape_numel(&l->in[0]->shape), 1, 1};
    l->n_decl = 0;
    return NN_OK;
}

/* y[(k*hw + s)*n + i] = x[(k*n + i)*hw + s] */
static void s_to_features(const struct nn_layer *l, int n, const float *x, float *y)
{
    int c = l->in[0]->shape.c;
    size_t hw = (size_t)l->in[0]->shape.h * l->in[0]->shape.w;
#pragma omp parallel for if ((size_t)n * c * hw > NN_FLATTEN_OMP_MIN)
    for (int k = 0; k < c; k++) {
        const float *src = x + (size_t)k * n * hw;
        float *dst = y + (size_t)k * hw * n;
        for (int i = 0; i < n; i++)
            for (size_t s = 0; s < hw; s++)
                dst[s * n + i] = src[(size_t)i * hw + s];
    }
}

/* dx[(k*n + i)*hw + s] += dy[(k*hw + s)*n + i] */
static void s_from_features(const struct nn_layer *l, int n, const float *dy, float *dx)
{
    int c = l->in[0]->shape.c;
    size_t hw = (size_t)l->in[0]->shape.h * l->in[0]->shape.w;
#pragma omp parallel for if ((size_t)n * c * hw > NN_FLATTEN_OMP_MIN)
    for (int k = 0; k < c; k++) {
        const float *src = dy + (size_t)k * hw * n;
        float *dst = dx + (size_t)k * n * hw;
        for (int i = 0; i < n; i++)
            for (size_t s = 0; s < hw; s++)
                dst[(size_t)i * hw + s] += src[s * n + i];
    }
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_to_features(l, ctx->n, l->in[0]->y, l->out->y);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_from_features(l, ctx->n, l->out->dy, l->in[0]->dy);
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_to_features(l, ctx->n, l->in[0]->ry, l->out->ry);
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_from_features(l, ctx->n, l->out->rdy, l->in[0]->rdy);
}

static double s_flops(const struct nn_layer *l)
{
    (void)l;
    return 0.0;
}

static void s_destroy(struct nn_layer *l)
{
    (void)l;
}

static const struct nn_layer_ops s_ops = {
    "flatten", s_setup, s_forward, s_backward, s_rforward, s_rbackward, NULL, s_flops, s_destroy,
};

struct nn_layer *nn_flatten_new(void)
{
    struct nn_flatten *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &s_ops;
    return &s->base;
}
