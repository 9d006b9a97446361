/*
 * nn_cuda_layers: the device tables of the layers without parameters, as small kernels over the
 * net's CNHW activations, each the formula of its CPU file:
 *   relu      y = max(x, 0); dx += dy [y > 0]; Ry = Rx [y > 0]; R{dx} += Rdy [y > 0]
 *   add       y = a + b and the same sum for R{y}; gradients copy to both inputs
 *   flatten   per channel the [n x hw] block transposed into feature-major [c*hw x n]
 *   maxpool   y[j] = x[a(j)] with a(j) the first maximum of the window (padding -inf); every
 *             other pass routes through a(j) (atomic adds: windows may overlap)
 *   gap       y = mean over the plane; adaptive avgpool: PyTorch's windows, the same with atomics
 *   dropout   y = m .* x with nn_dropout.c's mask (same hash of seed, name and element)
 */
#include "nn_cuda.h"

#include <stdint.h>
#include <string.h>

#define GRID_LOOP(j, total)                                                                        \
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < (total);                    \
         j += (size_t)gridDim.x * blockDim.x)
#define LAUNCH(kernel, total, ...)                                                                 \
    do {                                                                                           \
        kernel<<<nn_cuda_blocks(total), NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(          \
            __VA_ARGS__);                                                                          \
        CUDA_LAUNCH_CHECK(#kernel);                                                                \
    } while (0)

static size_t s_in_len(const struct nn_layer *l, int n)
{
    return (size_t)n * nn_shape_numel(&l->in[0]->shape);
}

static size_t s_out_len(const struct nn_layer *l, int n)
{
    return (size_t)n * nn_shape_numel(&l->out->shape);
}

static int s_no_setup(struct nn_layer *l, int max_batch)
{
    (void)l;
    (void)max_batch;
    return NN_OK;
}

/* ---- relu ----------------------------------------------------------------------------------- */

__global__ void k_relu(const float *x, float *y, size_t n)
{
    GRID_LOOP(j, n) y[j] = x[j] > 0.0f ? x[j] : 0.0f;
}

/* dst (+)= src [y > 0] */
__global__ void k_relu_mask(const float *y, const float *src, float *dst, size_t n, int add)
{
    GRID_LOOP(j, n)
    {
        float v = y[j] > 0.0f ? src[j] : 0.0f;
        dst[j] = add ? dst[j] + v : v;
    }
}

static void s_relu_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    LAUNCH(k_relu, s_out_len(l, ctx->n), l->in[0]->y, l->out->y, s_out_len(l, ctx->n));
}

static void s_relu_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        LAUNCH(k_relu_mask, s_out_len(l, ctx->n), l->out->y, l->out->dy, l->in[0]->dy,
               s_out_len(l, ctx->n), 1);
}

static void s_relu_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    LAUNCH(k_relu_mask, s_out_len(l, ctx->n), l->out->y, l->in[0]->ry, l->out->ry,
           s_out_len(l, ctx->n), 0);
}

static void s_relu_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        LAUNCH(k_relu_mask, s_out_len(l, ctx->n), l->out->y, l->out->rdy, l->in[0]->rdy,
               s_out_len(l, ctx->n), 1);
}

const struct nn_layer_ops nn_cuda_relu_ops = {
    "relu", s_no_setup, s_relu_forward, s_relu_backward, s_relu_rforward, s_relu_rbackward,
    NULL,   NULL,       NULL,
};

/* ---- add ------------------------------------------------------------------------------------ */

/* y = (a or 0) + (b or 0); dst += src */
__global__ void k_sum2(const float *a, const float *b, float *y, size_t n)
{
    GRID_LOOP(j, n) y[j] = (a ? a[j] : 0.0f) + (b ? b[j] : 0.0f);
}

__global__ void k_acc(float *dst, const float *src, size_t n)
{
    GRID_LOOP(j, n) dst[j] += src[j];
}

static void s_add_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t n = s_out_len(l, ctx->n);
    LAUNCH(k_sum2, n, l->in[0]->y, l->in[1]->y, l->out->y, n);
}

static void s_add_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t n = s_out_len(l, ctx->n);
    for (int i = 0; i < 2; i++)
        if (l->in[i]->need_dy)
            LAUNCH(k_acc, n, l->in[i]->dy, l->out->dy, n);
}

static void s_add_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t n = s_out_len(l, ctx->n);
    LAUNCH(k_sum2, n, l->in[0]->r_active ? l->in[0]->ry : NULL,
           l->in[1]->r_active ? l->in[1]->ry : NULL, l->out->ry, n);
}

static void s_add_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t n = s_out_len(l, ctx->n);
    for (int i = 0; i < 2; i++)
        if (l->in[i]->need_dy)
            LAUNCH(k_acc, n, l->in[i]->rdy, l->out->rdy, n);
}

const struct nn_layer_ops nn_cuda_add_ops = {
    "add",           s_no_setup, s_add_forward, s_add_backward, s_add_rforward,
    s_add_rbackward, NULL,       NULL,          NULL,
};

/* ---- flatten: y[(k*hw + s)*n + i] = x[(k*n + i)*hw + s] -------------------------------------- */

__global__ void k_flatten(const float *x, float *y, int n, int c, size_t hw, int back)
{
    GRID_LOOP(j, (size_t)n * c * hw)
    {
        size_t s = j % hw, ki = j / hw; /* j indexes x (CNHW) */
        int i = (int)(ki % n), k = (int)(ki / n);
        size_t t = ((size_t)k * hw + s) * n + i;
        if (back)
            y[j] += x[t]; /* here x is dy of the output and y is dx */
        else
            y[t] = x[j];
    }
}

static void s_flat(struct nn_layer *l, const struct nn_ctx *ctx, const float *src, float *dst,
                   int back)
{
    const struct nn_shape *s = &l->in[0]->shape;
    LAUNCH(k_flatten, s_in_len(l, ctx->n), src, dst, ctx->n, s->c, (size_t)s->h * s->w, back);
}

static void s_flat_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_flat(l, ctx, l->in[0]->y, l->out->y, 0);
}

static void s_flat_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_flat(l, ctx, l->out->dy, l->in[0]->dy, 1);
}

static void s_flat_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_flat(l, ctx, l->in[0]->ry, l->out->ry, 0);
}

static void s_flat_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_flat(l, ctx, l->out->rdy, l->in[0]->rdy, 1);
}

const struct nn_layer_ops nn_cuda_flatten_ops = {
    "flatten", s_no_setup, s_flat_forward, s_flat_backward, s_flat_rforward, s_flat_rbackward,
    NULL,      NULL,       NULL,
};

/* ---- max pool ------------------------------------------------------------------------------- */

struct s_pool_geo {
    int ih, iw, oh, ow, k, stride, pad; /* input and output planes, window */
};

static struct s_pool_geo s_geo(const struct nn_layer *l)
{
    const struct nn_shape *i = &l->in[0]->shape, *o = &l->out->shape;
    return (struct s_pool_geo){i->h, i->w, o->h, o->w, l->hp.k, l->hp.stride, l->hp.pad};
}

/* y[j] = max of the window (first maximum in row-major order), arg[j] its input index. */
__global__ void k_maxpool(const float *x, float *y, int *arg, size_t total, struct s_pool_geo g)
{
    GRID_LOOP(j, total)
    {
        size_t plane = j / ((size_t)g.oh * g.ow);
        int o = (int)(j % ((size_t)g.oh * g.ow)), oy = o / g.ow, ox = o % g.ow;
        const float *xp = x + plane * g.ih * g.iw;
        int best = -1;
        float bv = 0.0f;
        for (int dy = 0; dy < g.k; dy++) {
            int yy = oy * g.stride - g.pad + dy;
            if (yy < 0 || yy >= g.ih)
                continue;
            for (int dx = 0; dx < g.k; dx++) {
                int xx = ox * g.stride - g.pad + dx;
                if (xx < 0 || xx >= g.iw)
                    continue;
                float v = xp[yy * g.iw + xx];
                if (best < 0 || v > bv) {
                    best = yy * g.iw + xx;
                    bv = v;
                }
            }
        }
        arg[j] = best;
        y[j] = bv;
    }
}

/* route: dst[arg] (+)= src[j] (add: atomic scatter into the input; else gather into the output) */
__global__ void k_route(const int *arg, const float *src, float *dst, size_t total, size_t ihw,
                        size_t ohw, int scatter)
{
    GRID_LOOP(j, total)
    {
        size_t in = (j / ohw) * ihw + arg[j];
        if (scatter)
            atomicAdd(dst + in, src[j]);
        else
            dst[j] = src[in];
    }
}

static int s_mp_setup(struct nn_layer *l, int max_batch)
{
    l->dev = nn_cuda_alloc(sizeof(int) * s_out_len(l, max_batch));
    return l->dev ? NN_OK : NN_ERR_NOMEM;
}

static void s_mp_destroy(struct nn_layer *l)
{
    nn_cuda_free(l->dev);
    l->dev = NULL;
}

static void s_mp_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    size_t total = s_out_len(l, ctx->n);
    LAUNCH(k_maxpool, total, l->in[0]->y, l->out->y, (int *)l->dev, total, s_geo(l));
}

static void s_mp_route(struct nn_layer *l, const struct nn_ctx *ctx, const float *src, float *dst,
                       int scatter)
{
    struct s_pool_geo g = s_geo(l);
    size_t total = s_out_len(l, ctx->n);
    LAUNCH(k_route, total, (const int *)l->dev, src, dst, total, (size_t)g.ih * g.iw,
           (size_t)g.oh * g.ow, scatter);
}

static void s_mp_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_mp_route(l, ctx, l->out->dy, l->in[0]->dy, 1);
}

static void s_mp_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_mp_route(l, ctx, l->in[0]->ry, l->out->ry, 0);
}

static void s_mp_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_mp_route(l, ctx, l->out->rdy, l->in[0]->rdy, 1);
}

const struct nn_layer_ops nn_cuda_maxpool_ops = {
    "maxpool2d",    s_mp_setup, s_mp_forward, s_mp_backward, s_mp_rforward,
    s_mp_rbackward, NULL,       NULL,         s_mp_destroy,
};

/* ---- average pools: global (gap) and adaptive (PyTorch's windows) -------------------------- */

/* Window [lo, hi) of output o of `out` over `in` (nn_avgpool.c's s_window). */
__device__ void d_window(int o, int in, int out, int *lo, int *hi)
{
    *lo = (int)(((long long)o * in) / out);
    *hi = (int)(((long long)(o + 1) * in + out - 1) / out);
}

/* y[j] = mean of its window; gap is the window of the whole plane (oh = ow = 1). */
__global__ void k_avgpool(const float *x, float *y, size_t total, struct s_pool_geo g)
{
    GRID_LOOP(j, total)
    {
        size_t plane = j / ((size_t)g.oh * g.ow);
        int o = (int)(j % ((size_t)g.oh * g.ow)), oy = o / g.ow, ox = o % g.ow, y0, y1, x0, x1;
        d_window(oy, g.ih, g.oh, &y0, &y1);
        d_window(ox, g.iw, g.ow, &x0, &x1);
        const float *xp = x + plane * g.ih * g.iw;
        double s = 0.0;
        for (int yy = y0; yy < y1; yy++)
            for (int xx = x0; xx < x1; xx++)
                s += xp[yy * g.iw + xx];
        y[j] = (float)(s / ((double)(y1 - y0) * (x1 - x0)));
    }
}

/* dx[window of j] += dy[j] / window size */
__global__ void k_avgpool_back(const float *dy, float *dx, size_t total, struct s_pool_geo g)
{
    GRID_LOOP(j, total)
    {
        size_t plane = j / ((size_t)g.oh * g.ow);
        int o = (int)(j % ((size_t)g.oh * g.ow)), oy = o / g.ow, ox = o % g.ow, y0, y1, x0, x1;
        d_window(oy, g.ih, g.oh, &y0, &y1);
        d_window(ox, g.iw, g.ow, &x0, &x1);
        float v = dy[j] / (float)((y1 - y0) * (x1 - x0));
        float *xp = dx + plane * g.ih * g.iw;
        for (int yy = y0; yy < y1; yy++)
            for (int xx = x0; xx < x1; xx++)
                atomicAdd(xp + yy * g.iw + xx, v);
    }
}

static void s_ap(struct nn_layer *l, const struct nn_ctx *ctx, const float *src, float *dst,
                 int back)
{
    struct s_pool_geo g = s_geo(l);
    size_t total = s_out_len(l, ctx->n);
    if (back)
        LAUNCH(k_avgpool_back, total, src, dst, total, g);
    else
        LAUNCH(k_avgpool, total, src, dst, total, g);
}

static void s_ap_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_ap(l, ctx, l->in[0]->y, l->out->y, 0);
}

static void s_ap_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_ap(l, ctx, l->out->dy, l->in[0]->dy, 1);
}

static void s_ap_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_ap(l, ctx, l->in[0]->ry, l->out->ry, 0);
}

static void s_ap_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_ap(l, ctx, l->out->rdy, l->in[0]->rdy, 1);
}

const struct nn_layer_ops nn_cuda_gap_ops = {
    "gap", s_no_setup, s_ap_forward, s_ap_backward, s_ap_rforward, s_ap_rbackward, NULL, NULL, NULL,
};
const struct nn_layer_ops nn_cuda_avgpool_ops = {
    "adaptive_avgpool2d", s_no_setup, s_ap_forward, s_ap_backward, s_ap_rforward,
    s_ap_rbackward,       NULL,       NULL,         NULL,
};

/* ---- dropout: nn_dropout.c's mask, drawn on the device ----------------------------------------
 */

#define NN_DROP_BITS 24 /* as NN_DROPOUT_BITS */

struct s_drop_dev {
    float *mask;        /* max_batch elements of the input */
    uint64_t salt;      /* FNV-1a of the layer's name */
    uint32_t threshold; /* round(p * 2^24) */
    int active;         /* the last forward dropped */
};

__device__ __host__ uint64_t d_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__global__ void k_drop_mask(float *m, uint64_t key, int n, int c, size_t hw, uint32_t thr,
                            float scale)
{
    GRID_LOOP(j, (size_t)n * c * hw)
    {
        size_t e = j % hw, ki = j / hw;
        int i = (int)(ki % n), k = (int)(ki / n);
        uint64_t base = key + (uint64_t)i * c * hw + (uint64_t)k * hw;
        uint32_t bits = (uint32_t)(d_mix(base + e) >> (64 - NN_DROP_BITS));
        m[j] = bits >= thr ? scale : 0.0f;
    }
}

/* dst (+)= m .* src (m NULL: identity) */
__global__ void k_drop_apply(const float *m, const float *src, float *dst, size_t n, int add)
{
    GRID_LOOP(j, n)
    {
        float v = m ? m[j] * src[j] : src[j];
        dst[j] = add ? dst[j] + v : v;
    }
}

static int s_dr_setup(struct nn_layer *l, int max_batch)
{
    struct s_drop_dev *d = (struct s_drop_dev *)calloc(1, sizeof *d);
    if (!d)
        return NN_ERR_NOMEM;
    l->dev = d;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, as nn_dropout.c */
    for (const char *s = l->name; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    d->salt = h;
    d->threshold = (uint32_t)((double)l->hp.p * (1u << NN_DROP_BITS) + 0.5);
    d->mask = (float *)nn_cuda_alloc(sizeof(float) * s_in_len(l, max_batch));
    return d->mask ? NN_OK : NN_ERR_NOMEM;
}

static void s_dr_destroy(struct nn_layer *l)
{
    struct s_drop_dev *d = (struct s_drop_dev *)l->dev;
    if (!d)
        return;
    nn_cuda_free(d->mask);
    free(d);
    l->dev = NULL;
}

static void s_dr_apply(struct nn_layer *l, const struct nn_ctx *ctx, const float *src, float *dst,
                       int add)
{
    struct s_drop_dev *d = (struct s_drop_dev *)l->dev;
    size_t n = s_in_len(l, ctx->n);
    LAUNCH(k_drop_apply, n, d->active ? d->mask : NULL, src, dst, n, add);
}

static void s_dr_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_drop_dev *d = (struct s_drop_dev *)l->dev;
    d->active = ctx->dropout && l->hp.p > 0.0f;
    if (d->active) {
        const struct nn_shape *s = &l->in[0]->shape;
        uint64_t key = d_mix((uint64_t)ctx->seed ^ d->salt);
        LAUNCH(k_drop_mask, s_in_len(l, ctx->n), d->mask, key, ctx->n, s->c, (size_t)s->h * s->w,
               d->threshold, 1.0f / (1.0f - l->hp.p));
    }
    s_dr_apply(l, ctx, l->in[0]->y, l->out->y, 0);
}

static void s_dr_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_dr_apply(l, ctx, l->out->dy, l->in[0]->dy, 1);
}

static void s_dr_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    s_dr_apply(l, ctx, l->in[0]->ry, l->out->ry, 0);
}

static void s_dr_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    if (l->in[0]->need_dy)
        s_dr_apply(l, ctx, l->out->rdy, l->in[0]->rdy, 1);
}

const struct nn_layer_ops nn_cuda_dropout_ops = {
    "dropout",      s_dr_setup, s_dr_forward, s_dr_backward, s_dr_rforward,
    s_dr_rbackward, NULL,       NULL,         s_dr_destroy,
};
