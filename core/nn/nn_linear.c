/*
 * nn_linear: fully connected layer, PyTorch's Linear(in, out) with bias.
 *
 * Shapes (n samples, feature-major): X [in x n], W [out x in] (row-major, PyTorch's weight),
 * b [out], Y [out x n]. The input must be a vector (h = w = 1); put a flatten layer in front of
 * images. s = grad_scale; V, Vb = the HVP direction of W, b.
 *   forward    Y   = W X + b 1^T
 *   backward   dX += W^T dY;   dW += s dY X^T;   db += s dY 1
 *   rforward   RY  = W RX + V X + Vb 1^T
 *   rbackward  RdX += W^T RdY + V^T dY;   hvW += RdY X^T + dY RX^T;   hvb += RdY 1
 */
#include <math.h>
#include <string.h>

#include "nn_gemm.h"
#include "nn_layer.h"

struct nn_linear {
    struct nn_layer base; /* common header; first */
    int in_f;             /* input features */
    int out_f;            /* output features */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    struct nn_linear *s = (struct nn_linear *)l;
    (void)max_batch;
    const struct nn_shape *in = &l->in[0]->shape;
    if (l->n_in != 1 || in->h != 1 || in->w != 1 || s->out_f < 1)
        return NN_ERR_SHAPE;
    s->in_f = in->c;
    l->out->shape = (struct nn_shape){s->out_f, 1, 1};
    l->n_decl = 2;
    l->decl[0] = (struct nn_tensor_decl){"weight", 0, 2, {s->out_f, s->in_f, 0, 0}};
    l->decl[1] = (struct nn_tensor_decl){"bias", 0, 1, {s->out_f, 0, 0, 0}};
    l->work_per_sample = 0;
    return NN_OK;
}

/* y[o, :] = b[o] for every row (b may be NULL: zero). */
static void s_fill_rows(float *y, const float *b, int rows, int n)
{
    for (int o = 0; o < rows; o++) {
        float v = b ? b[o] : 0.0f;
        float *row = y + (size_t)o * n;
        for (int i = 0; i < n; i++)
            row[i] = v;
    }
}

/* acc[o] += scale * sum_i m[o, i] */
static void s_add_rowsum(float *acc, const float *m, int rows, int n, float scale)
{
    for (int o = 0; o < rows; o++) {
        const float *row = m + (size_t)o * n;
        float sum = 0.0f;
        for (int i = 0; i < n; i++)
            sum += row[i];
        acc[o] += scale * sum;
    }
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_linear *s = (struct nn_linear *)l;
    int n = ctx->n, in = s->in_f, out = s->out_f;
    const float *wt = l->w, *b = l->w + (size_t)out * in;
    s_fill_rows(l->out->y, b, out, n);
    nn_gemm(NN_NO_TRANS, NN_NO_TRANS, out, n, in, 1.0f, wt, in, l->in[0]->y, n, 1.0f, l->out->y, n);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_linear *s = (struct nn_linear *)l;
    int n = ctx->n, in = s->in_f, out = s->out_f;
    const float *dy = l->out->dy;
    if (ctx->param_grad) {
        nn_gemm(NN_NO_TRANS, NN_TRANS, out, in, n, ctx->grad_scale, dy, n, l->in[0]->y, n, 1.0f,
                l->g, in);
        s_add_rowsum(l->g + (size_t)out * in, dy, out, n, ctx->grad_scale);
    }
    if (l->in[0]->need_dy)
        nn_gemm(NN_TRANS, NN_NO_TRANS, in, n, out, 1.0f, l->w, in, dy, n, 1.0f, l->in[0]->dy, n);
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_linear *s = (struct nn_linear *)l;
    int n = ctx->n, in = s->in_f, out = s->out_f;
    float *ry = l->out->ry;
    s_fill_rows(ry, l->in_block ? l->v + (size_t)out * in : NULL, out, n);
    if (l->in[0]->r_active)
        nn_gemm(NN_NO_TRANS, NN_NO_TRANS, out, n, in, 1.0f, l->w, in, l->in[0]->ry, n, 1.0f, ry, n);
    if (l->in_block)
        nn_gemm(NN_NO_TRANS, NN_NO_TRANS, out, n, in, 1.0f, l->v, in, l->in[0]->y, n, 1.0f, ry, n);
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_linear *s = (struct nn_linear *)l;
    int n = ctx->n, in = s->in_f, out = s->out_f;
    const float *dy = l->out->dy, *rdy = l->out->rdy;
    struct nn_node *x = l->in[0];
    if (x->need_dy) {
        nn_gemm(NN_TRANS, NN_NO_TRANS, in, n, out, 1.0f, l->w, in, rdy, n, 1.0f, x->rdy, n);
        if (l->in_block)
            nn_gemm(NN_TRANS, NN_NO_TRANS, in, n, out, 1.0f, l->v, in, dy, n, 1.0f, x->rdy, n);
    }
    if (l->in_block) {
        nn_gemm(NN_NO_TRANS, NN_TRANS, out, in, n, 1.0f, rdy, n, x->y, n, 1.0f, l->hv, in);
        if (x->r_active)
            nn_gemm(NN_NO_TRANS, NN_TRANS, out, in, n, 1.0f, dy, n, x->ry, n, 1.0f, l->hv, in);
        s_add_rowsum(l->hv + (size_t)out * in, rdy, out, n, 1.0f);
    }
}

/* PyTorch's default: kaiming_uniform(a = sqrt(5)) for W, i.e. U(-1/sqrt(in), 1/sqrt(in)), and the
 * same bound for b. */
static void s_init(struct nn_layer *l, struct nn_rng *rng)
{
    struct nn_linear *s = (struct nn_linear *)l;
    float bound = 1.0f / sqrtf((float)s->in_f);
    for (size_t i = 0; i < l->n_w; i++)
        l->w[i] = (2.0f * nn_rng_uniform(rng) - 1.0f) * bound;
}

static double s_flops(const struct nn_layer *l)
{
    const struct nn_linear *s = (const struct nn_linear *)l;
    return 2.0 * s->in_f * s->out_f;
}

static void s_destroy(struct nn_layer *l)
{
    (void)l;
}

static const struct nn_layer_ops s_ops = {
    "linear", s_setup, s_forward, s_backward, s_rforward, s_rbackward, s_init, s_flops, s_destroy,
};

struct nn_layer *nn_linear_new(const char *name, int out_features)
{
    struct nn_linear *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &s_ops;
    snprintf(s->base.name, sizeof s->base.name, "%s", name ? name : "");
    s->out_f = out_features;
    return &s->base;
}
