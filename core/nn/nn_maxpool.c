/*
 * nn_maxpool: MaxPool2d (kernel k, stride s, padding p, floor output size as PyTorch) on CNHW:
 * oh = (ih + 2p - k) / s + 1. Padding is implicit -infinity (PyTorch's): a window covers only the
 * input elements inside it, and p <= k/2 (PyTorch's rule) keeps at least one in every window.
 *
 * Forward keeps, for each output element, the index of the input element that won (the first
 * maximum in row-major window order, as PyTorch's CPU kernel). Max pooling is piecewise linear,
 * so every other pass routes through that same index:
 *   y[j] = x[a(j)]      dx[a(j)] += dy[j]      R{y}[j] = R{x}[a(j)]      R{dx}[a(j)] += R{dy}[j]
 * (Within a piece the second derivative is zero: R{dx} has no term in R{x}.)
 * The input and output may be channel-blocked (nn_layer.h): the forward then takes the maxima of
 * NN_BLK channels side by side, and the other passes, which only follow the stored indices, work
 * on any layout (their threads split the output into runs whose windows stay in one input run).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "nn_layer.h"

/* Smallest output (floats) worth a parallel region. */
#define NN_POOL_PAR_MIN (16 * 1024)

struct nn_maxpool {
    struct nn_layer base; /* common header (first) */
    int k;                /* window size (square) */
    int stride;           /* stride (both directions) */
    int pad;              /* implicit -infinity padding (both sides, both directions) */
    int c, ih, iw;        /* input shape (fixed at setup) */
    int oh, ow;           /* output height and width */
    int max_batch;        /* capacity of arg */
    int *arg;             /* winning input index per output element, max_batch * c * oh * ow */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    struct nn_maxpool *p = (struct nn_maxpool *)l;
    if (l->n_in != 1 || !l->in[0] || !l->out || max_batch < 1) {
        nn_report(3, "maxpool2d: needs exactly one input and a positive max batch");
        return NN_ERR_SHAPE;
    }
    const struct nn_shape *is = &l->in[0]->shape;
    if (is->c < 1 || is->h + 2 * p->pad < p->k || is->w + 2 * p->pad < p->k) {
        nn_report(3, "maxpool2d: input %dx%dx%d (padding %d) smaller than window %d", is->c, is->h,
                  is->w, p->pad, p->k);
        return NN_ERR_SHAPE;
    }
    if ((double)max_batch * nn_shape_numel(is) >= (double)INT_MAX) {
        nn_report(3, "maxpool2d: input of %d x %dx%dx%d too large for 32-bit indices", max_batch,
                  is->c, is->h, is->w);
        return NN_ERR_SHAPE;
    }
    p->c = is->c;
    p->ih = is->h;
    p->iw = is->w;
    p->oh = (is->h + 2 * p->pad - p->k) / p->stride + 1;
    p->ow = (is->w + 2 * p->pad - p->k) / p->stride + 1;
    l->out->shape.c = p->c;
    l->out->shape.h = p->oh;
    l->out->shape.w = p->ow;
    l->n_decl = 0;
    l->work_per_sample = 0;
    l->layout = NN_LAYOUT_IN_BLK | NN_LAYOUT_OUT_BLK | NN_LAYOUT_SAME;
    l->dx_set = 1; /* zeroes a fresh dx, then scatters into it */
    free(p->arg);
    p->arg = malloc(sizeof(int) * (size_t)max_batch * p->c * p->oh * p->ow);
    if (!p->arg) {
        nn_report(3, "maxpool2d: out of memory for %d samples", max_batch);
        return NN_ERR_NOMEM;
    }
    p->max_batch = max_batch;
    return NN_OK;
}

/* Max and arg-max of the window of output (oy, ox) in one plane xp of ih x iw: rows
 * [oy*s - p, +k) and columns [ox*s - p, +k), clipped to the plane. Returns the in-plane index. */
static int s_window_max(const struct nn_maxpool *p, const float *xp, int oy, int ox, float *max)
{
    const int y0 = oy * p->stride - p->pad, x0 = ox * p->stride - p->pad;
    const int ya = y0 < 0 ? 0 : y0, yb = y0 + p->k > p->ih ? p->ih : y0 + p->k;
    const int xa = x0 < 0 ? 0 : x0, xb = x0 + p->k > p->iw ? p->iw : x0 + p->k;
    int best = ya * p->iw + xa;
    float bv = xp[best];
    for (int iy = ya; iy < yb; iy++)
        for (int ix = xa; ix < xb; ix++)
            if (xp[iy * p->iw + ix] > bv) {
                bv = xp[iy * p->iw + ix];
                best = iy * p->iw + ix;
            }
    *max = bv;
    return best;
}

/* The forward on channel-blocked x and y: per (sample, block) run, the window maxima of NN_BLK
 * channels at once, with the same first-maximum rule. */
static void s_forward_blk(struct nn_maxpool *p, const struct nn_ctx *ctx, const float *x, float *y)
{
    const int runs = ctx->n * (p->c / NN_BLK), iw = p->iw, ow = p->ow;
    const size_t irun = (size_t)p->ih * iw * NN_BLK, orun = (size_t)p->oh * ow * NN_BLK;
#pragma omp parallel for schedule(static) if (orun * runs >= NN_POOL_PAR_MIN)
    for (int q = 0; q < runs; q++) {
        const float *xq = x + (size_t)q * irun;
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const int y0 = oy * p->stride - p->pad, x0 = ox * p->stride - p->pad;
                const int ya = y0 < 0 ? 0 : y0, yb = y0 + p->k > p->ih ? p->ih : y0 + p->k;
                const int xa = x0 < 0 ? 0 : x0, xb = x0 + p->k > iw ? iw : x0 + p->k;
                float bv[NN_BLK];
                int bi[NN_BLK];
                for (int k = 0; k < NN_BLK; k++) {
                    bi[k] = (ya * iw + xa) * NN_BLK + k;
                    bv[k] = xq[bi[k]];
                }
                for (int iy = ya; iy < yb; iy++)
                    for (int ix = xa; ix < xb; ix++) {
                        const int e = (iy * iw + ix) * NN_BLK;
#pragma omp simd
                        for (int k = 0; k < NN_BLK; k++) {
                            /* selects, not branches: one masked vector step per position */
                            const float v = xq[e + k];
                            const int gt = v > bv[k];
                            bv[k] = gt ? v : bv[k];
                            bi[k] = gt ? e + k : bi[k];
                        }
                    }
                const size_t o = (size_t)q * orun + (size_t)(oy * ow + ox) * NN_BLK;
                for (int k = 0; k < NN_BLK; k++) {
                    y[o + k] = bv[k];
                    p->arg[o + k] = (int)((size_t)q * irun) + bi[k];
                }
            }
    }
}

/* y = max over each window; arg = index of the maximum in x. */
static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_maxpool *p = (struct nn_maxpool *)l;
    if (l->out->blk) {
        NN_ASSERT(ctx->n <= p->max_batch);
        s_forward_blk(p, ctx, l->in[0]->y, l->out->y);
        return;
    }
    const int planes = p->c * ctx->n, oh = p->oh, ow = p->ow;
    const size_t iplane = (size_t)p->ih * p->iw, oplane = (size_t)oh * ow;
    const float *x = l->in[0]->y;
    float *y = l->out->y;
    NN_ASSERT(ctx->n <= p->max_batch);
#pragma omp parallel for schedule(static) if (oplane * planes >= NN_POOL_PAR_MIN)
    for (int q = 0; q < planes; q++) {
        const float *xp = x + q * iplane;
        float *yp = y + q * oplane;
        int *ap = p->arg + q * oplane;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const int best = s_window_max(p, xp, oy, ox, &yp[oy * ow + ox]);
                ap[oy * ow + ox] = (int)(q * iplane) + best;
            }
    }
}

/* The windows of a blocked pool tile its input exactly (stride k, no padding, sizes multiples of
 * k): every input element then lies in one window, and its gradient is the output gradient where
 * it won and 0 elsewhere. */
static int s_tiles(const struct nn_maxpool *p)
{
    return p->stride == p->k && p->pad == 0 && p->ih == p->oh * p->k && p->iw == p->ow * p->k;
}

/* dst (+)= src routed by arg for a blocked pool whose windows tile the input: one dense pass that
 * writes every input element once (no zeroing, no scattered writes). */
static void s_route_tiled(const struct nn_maxpool *p, int n, const float *src, float *dst, int set)
{
    const int runs = n * (p->c / NN_BLK), k = p->k, iw = p->iw, ow = p->ow;
    const size_t irun = (size_t)p->ih * iw * NN_BLK, orun = (size_t)p->oh * ow * NN_BLK;
#pragma omp parallel for schedule(static) if (orun * runs >= NN_POOL_PAR_MIN)
    for (int q = 0; q < runs; q++) {
        float *dq = dst + (size_t)q * irun;
        for (int oy = 0; oy < p->oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                const size_t o = (size_t)q * orun + (size_t)(oy * ow + ox) * NN_BLK;
                const int *a = p->arg + o;
                const float *g = src + o;
                for (int wy = 0; wy < k; wy++)
                    for (int wx = 0; wx < k; wx++) {
                        const int e = ((oy * k + wy) * iw + ox * k + wx) * NN_BLK;
                        const int ge = (int)((size_t)q * irun) + e;
#pragma omp simd
                        for (int c = 0; c < NN_BLK; c++) {
                            const float v = a[c] == ge + c ? g[c] : 0.0f;
                            dq[e + c] = (set ? 0.0f : dq[e + c]) + v;
                        }
                    }
            }
    }
}

/* dst[arg[j]] += src[j]: windows may overlap (stride < k), so this loop is serial per plane and
 * planes go to threads (an index never leaves its plane; blocked: its (sample, block) run). A
 * fresh dst (set) is zeroed first. */
static void s_scatter(const struct nn_maxpool *p, int n, int blk, const float *src, float *dst,
                      int set)
{
    if (blk && s_tiles(p)) {
        s_route_tiled(p, n, src, dst, set);
        return;
    }
    const int planes = blk ? n * (p->c / NN_BLK) : p->c * n;
    const size_t oplane = (size_t)p->oh * p->ow * (blk ? NN_BLK : 1);
    if (set)
        memset(dst, 0, sizeof(float) * (size_t)p->c * n * p->ih * p->iw);
#pragma omp parallel for schedule(static) if (oplane * planes >= NN_POOL_PAR_MIN)
    for (int q = 0; q < planes; q++) {
        const int *ap = p->arg + q * oplane;
        const float *sp = src + q * oplane;
        for (size_t j = 0; j < oplane; j++)
            dst[ap[j]] += sp[j];
    }
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_node *x = l->in[0];
    if (x->need_dy)
        s_scatter((struct nn_maxpool *)l, ctx->n, x->blk, l->out->dy, x->dy, nn_node_first_dy(x));
}

/* R{y}[j] = R{x}[arg[j]] (zero when the input carries no R-direction). */
static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_maxpool *p = (struct nn_maxpool *)l;
    const size_t total = (size_t)p->c * ctx->n * p->oh * p->ow;
    float *ry = l->out->ry;
    if (!l->in[0]->r_active) {
        memset(ry, 0, sizeof(float) * total);
        return;
    }
    const float *restrict rx = l->in[0]->ry;
    const int *restrict arg = p->arg;
    float *restrict dst = ry;
#pragma omp parallel for simd if (total >= NN_POOL_PAR_MIN)
    for (size_t j = 0; j < total; j++)
        dst[j] = rx[arg[j]];
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_node *x = l->in[0];
    if (x->need_dy)
        s_scatter((struct nn_maxpool *)l, ctx->n, x->blk, l->out->rdy, x->rdy,
                  nn_node_first_rdy(x));
}

static double s_flops(const struct nn_layer *l)
{
    (void)l;
    return 0.0; /* comparisons only */
}

static void s_destroy(struct nn_layer *l)
{
    struct nn_maxpool *p = (struct nn_maxpool *)l;
    free(p->arg);
    p->arg = NULL;
}

static const struct nn_layer_ops s_maxpool_ops = {
    .kind = "maxpool2d",
    .setup = s_setup,
    .forward = s_forward,
    .backward = s_backward,
    .rforward = s_rforward,
    .rbackward = s_rbackward,
    .init = NULL,
    .flops = s_flops,
    .destroy = s_destroy,
};

struct nn_layer *nn_maxpool_new(int k, int stride, int pad)
{
    if (k < 1 || stride < 1 || pad < 0 || 2 * pad > k) {
        nn_report(3, "maxpool2d: invalid window %d, stride %d or padding %d (at most k/2)", k,
                  stride, pad);
        return NULL;
    }
    struct nn_maxpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->base.ops = &s_maxpool_ops;
    p->base.n_in = 1;
    p->k = k;
    p->stride = stride;
    p->pad = pad;
    p->base.hp = (struct nn_layer_hp){.k = k, .stride = stride, .pad = pad};
    return &p->base;
}
