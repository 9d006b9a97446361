/*
 * nn_cuda_bn: BatchNorm2d on the device, the formulas of nn_bn.c (see its banner). A channel is
 * one contiguous run of m = n*h*w values in CNHW, split into P chunks (s_parts: enough blocks to
 * fill the device, each chunk at least NN_BN_MIN_CHUNK values). Each pass is a reduction kernel
 * (grid P x c: one block per chunk writes its partial sums, in double, to the thread's scratch)
 * and an apply kernel (grid P x c: every block adds up its channel's P partials, the first block
 * of the channel writes the statistics or parameter gradients, and each block updates its chunk).
 * The train-mode forward reduces twice (the mean, then the centred squares), as the CPU does.
 * The statistics of the last forward (mu, inv) and R-forward (mean(Rx), mean(xh Rx)) stay on the
 * device for the passes that differentiate it. Chunking is fixed by (m, c), so results are
 * deterministic.
 */
#include "nn_cuda.h"

#define NN_BN_EPS 1e-5
#define NN_BN_MOMENTUM 0.1
#define NN_BN_SUMS 5             /* most sums one reduction carries */
#define NN_BN_MAX_PARTS 64       /* chunks per channel at most */
#define NN_BN_MIN_CHUNK 4096     /* values per chunk at least (when the channel has them) */
#define NN_BN_TARGET_BLOCKS 1024 /* blocks per launch aimed at */

struct s_bn_dev {
    double *stat; /* per channel: mu, inv, mrx, mxrx (4 x c) */
    int train;    /* mode of the last forward */
};

/* How a channel of m values is cut: P chunks of `chunk` values (the last may be shorter). */
struct s_cut {
    int parts;
    size_t chunk;
};

static struct s_cut s_parts(size_t m, int c)
{
    size_t by_size = (m + NN_BN_MIN_CHUNK - 1) / NN_BN_MIN_CHUNK;
    size_t by_fill = ((size_t)NN_BN_TARGET_BLOCKS + c - 1) / c;
    size_t p = by_size < by_fill ? by_size : by_fill;
    p = p < 1 ? 1 : p > NN_BN_MAX_PARTS ? NN_BN_MAX_PARTS : p;
    struct s_cut cut = {(int)p, (m + p - 1) / p};
    return cut;
}

size_t nn_cuda_bn_scratch(int c)
{
    return (size_t)c * NN_BN_MAX_PARTS * NN_BN_SUMS * sizeof(double);
}

/* The thread's partial-sum scratch for c channels (grows; setup reserves it). */
static double *s_part_buf(int c)
{
    struct nn_cuda_ctx *x = nn_cuda_ctx_get();
    return (double *)nn_cuda_grow(&x->bn_part, &x->bn_part_bytes, nn_cuda_bn_scratch(c));
}

/* Block-wide sum of NN_BN_SUMS doubles (k of them used); every thread gets the totals. */
__device__ void d_block_sum(double *v, int k)
{
    __shared__ double part[NN_BN_SUMS][NN_CUDA_THREADS];
    for (int s = 0; s < k; s++)
        part[s][threadIdx.x] = v[s];
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w)
            for (int s = 0; s < k; s++)
                part[s][threadIdx.x] += part[s][threadIdx.x + w];
        __syncthreads();
    }
    for (int s = 0; s < k; s++)
        v[s] = part[s][0];
    __syncthreads();
}

/* This block's chunk of its channel: [*lo, *hi) of m, and the channel (blockIdx.y). */
__device__ int d_chunk(size_t m, size_t chunk, size_t *lo, size_t *hi)
{
    *lo = (size_t)blockIdx.x * chunk;
    *hi = *lo + chunk < m ? *lo + chunk : m;
    return blockIdx.y;
}

/* Store this block's k sums (block-reduced) as partial blockIdx.x of its channel, at slot s0. */
__device__ void d_store(double *part, int ch, double *v, int k, int s0)
{
    d_block_sum(v, k);
    if (threadIdx.x == 0)
        for (int s = 0; s < k; s++)
            part[((size_t)ch * NN_BN_MAX_PARTS + blockIdx.x) * NN_BN_SUMS + s0 + s] = v[s];
}

/* The totals over the channel's `parts` partials of slots [s0, s0 + k), in every thread. */
__device__ void d_totals(const double *part, int ch, int parts, int k, int s0, double *tot)
{
    for (int s = 0; s < k; s++)
        tot[s] = 0.0;
    for (int p = threadIdx.x; p < parts; p += blockDim.x)
        for (int s = 0; s < k; s++)
            tot[s] += part[((size_t)ch * NN_BN_MAX_PARTS + p) * NN_BN_SUMS + s0 + s];
    d_block_sum(tot, k);
}

/* ---- forward ------------------------------------------------------------------------------- */

/* slot 0: sum x */
__global__ void k_bn_fwd_sum(const float *x, double *part, size_t m, size_t chunk)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    x += ch * m;
    double v[NN_BN_SUMS] = {0};
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
        v[0] += x[j];
    d_store(part, ch, v, 1, 0);
}

/* slot 1: sum (x - mu)^2, mu from slot 0 */
__global__ void k_bn_fwd_sq(const float *x, double *part, size_t m, size_t chunk, int parts)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    x += ch * m;
    double t[NN_BN_SUMS];
    d_totals(part, ch, parts, 1, 0, t);
    const double mu = t[0] / (double)m;
    double v[NN_BN_SUMS] = {0};
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
        v[0] += ((double)x[j] - mu) * ((double)x[j] - mu);
    d_store(part, ch, v, 1, 1);
}

__global__ void k_bn_fwd_apply(const float *x, float *y, const float *gamma, const float *beta,
                               float *rmean, float *rvar, double *stat, const double *part, int c,
                               size_t m, size_t chunk, int parts, int train, int update)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    x += ch * m;
    y += ch * m;
    double mu, inv;
    if (train) {
        double t[NN_BN_SUMS];
        d_totals(part, ch, parts, 2, 0, t);
        mu = t[0] / (double)m;
        double var = t[1] / (double)m;
        inv = 1.0 / sqrt(var + NN_BN_EPS);
        if (update && blockIdx.x == 0 && threadIdx.x == 0) {
            double uvar = m > 1 ? t[1] / (double)(m - 1) : var;
            rmean[ch] = (float)((1.0 - NN_BN_MOMENTUM) * rmean[ch] + NN_BN_MOMENTUM * mu);
            rvar[ch] = (float)((1.0 - NN_BN_MOMENTUM) * rvar[ch] + NN_BN_MOMENTUM * uvar);
        }
    } else {
        mu = rmean[ch];
        inv = 1.0 / sqrt((double)rvar[ch] + NN_BN_EPS);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        stat[ch] = mu;
        stat[c + ch] = inv;
    }
    const float scale = (float)(gamma[ch] * inv), muf = (float)mu, bf = beta[ch];
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
        y[j] = scale * (x[j] - muf) + bf;
}

/* ---- backward: dgamma += s sum(dy xh), dbeta += s sum(dy), dx += inv (gamma dy - a - xh b) -- */

/* slots 0, 1: sum v, sum v xh (v: dy for the backward, Rx for the R-forward) */
__global__ void k_bn_sum_xh(const float *x, const float *v, const double *stat, double *part, int c,
                            size_t m, size_t chunk)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    x += ch * m;
    v += ch * m;
    const double mu = stat[ch], inv = stat[c + ch];
    double s[NN_BN_SUMS] = {0};
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        s[0] += v[j];
        s[1] += v[j] * (((double)x[j] - mu) * inv);
    }
    d_store(part, ch, s, 2, 0);
}

__global__ void k_bn_bwd_apply(const float *x, const float *dy, float *dx, const float *gamma,
                               float *g, const double *stat, const double *part, int c, size_t m,
                               size_t chunk, int parts, int train, float scale)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    double v[NN_BN_SUMS];
    d_totals(part, ch, parts, 2, 0, v);
    if (g && blockIdx.x == 0 && threadIdx.x == 0) {
        g[ch] += scale * (float)v[1];
        g[c + ch] += scale * (float)v[0];
    }
    if (!dx)
        return;
    x += ch * m;
    dy += ch * m;
    dx += ch * m;
    const double mu = stat[ch], inv = stat[c + ch], gm = gamma[ch];
    const double a = train ? gm * v[0] / (double)m : 0.0, bb = train ? gm * v[1] / (double)m : 0.0;
    const float p = (float)(inv * gm), q = (float)(-inv * bb * inv), r = (float)(-inv * a);
    const float muf = (float)mu;
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
        dx[j] += p * dy[j] + q * (x[j] - muf) + r;
}

/* ---- R-forward: R{y} = gamma R{xh} + vg xh + vb, R{xh} = inv (Rx - mean(Rx) - xh mean(xh Rx))
 * (train; eval: R{xh} = inv Rx) ------------------------------------------------------------- */

/* part: the partials of k_bn_sum_xh over Rx, or NULL (eval, or no Rx): the means are 0 */
__global__ void k_bn_rfwd_apply(const float *x, const float *rx, float *ry, const float *gamma,
                                const float *v, double *stat, const double *part, int c, size_t m,
                                size_t chunk, int parts)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    x += ch * m;
    ry += ch * m;
    if (rx)
        rx += ch * m;
    const double mu = stat[ch], inv = stat[c + ch];
    double s[NN_BN_SUMS] = {0};
    if (part) {
        d_totals(part, ch, parts, 2, 0, s);
        s[0] /= (double)m;
        s[1] /= (double)m;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        stat[2 * c + ch] = s[0];
        stat[3 * c + ch] = s[1];
    }
    const double vg = v ? v[ch] : 0.0, vb = v ? v[c + ch] : 0.0;
    const double cxh = vg - gamma[ch] * inv * s[1];
    const float pr = (float)(gamma[ch] * inv), px = (float)(cxh * inv);
    const float p0 = (float)(-gamma[ch] * inv * s[0] + vb), muf = (float)mu;
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
        ry[j] = (rx ? pr * rx[j] : 0.0f) + px * (x[j] - muf) + p0;
}

/* ---- R-backward: R{dx}, R{dgamma}, R{dbeta}, nn_bn.c's s_rbackward ------------------------- */

/* slots 0..4: sum dy, dy xh, Rdy, Rdy xh, dy R{xh} */
__global__ void k_bn_rbwd_sum(const float *x, const float *rx, const float *dy, const float *rdy,
                              const double *stat, double *part, int c, size_t m, size_t chunk)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    x += ch * m;
    dy += ch * m;
    rdy += ch * m;
    if (rx)
        rx += ch * m;
    const double mu = stat[ch], inv = stat[c + ch];
    const double mrx = stat[2 * c + ch], mxrx = stat[3 * c + ch];
    double s[NN_BN_SUMS] = {0};
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
        const double xh = ((double)x[j] - mu) * inv;
        s[0] += dy[j];
        s[1] += dy[j] * xh;
        s[2] += rdy[j];
        s[3] += rdy[j] * xh;
        if (rx)
            s[4] += dy[j] * (inv * (rx[j] - mrx - xh * mxrx));
    }
    d_store(part, ch, s, NN_BN_SUMS, 0);
}

__global__ void k_bn_rbwd_apply(const float *x, const float *rx, const float *dy, const float *rdy,
                                float *rdx, const float *gamma, const float *v, float *hv,
                                const double *stat, const double *part, int c, size_t m,
                                size_t chunk, int parts, int train)
{
    size_t lo, hi;
    int ch = d_chunk(m, chunk, &lo, &hi);
    double s[NN_BN_SUMS];
    d_totals(part, ch, parts, NN_BN_SUMS, 0, s);
    if (hv && blockIdx.x == 0 && threadIdx.x == 0) {
        hv[ch] += (float)(s[3] + s[4]);
        hv[c + ch] += (float)s[2];
    }
    if (!rdx)
        return;
    x += ch * m;
    dy += ch * m;
    rdy += ch * m;
    rdx += ch * m;
    if (rx)
        rx += ch * m;
    const double mu = stat[ch], inv = stat[c + ch], gm = gamma[ch];
    const double mrx = stat[2 * c + ch], mxrx = stat[3 * c + ch];
    const double vg = v ? v[ch] : 0.0, md = (double)m;
    double a = 0.0, bb = 0.0, r_a = 0.0, r_b = 0.0, rho = 0.0;
    if (train) {
        a = gm * s[0] / md;
        bb = gm * s[1] / md;
        r_a = (vg * s[0] + gm * s[2]) / md;
        r_b = (vg * s[1] + gm * s[3] + gm * s[4]) / md;
        rho = inv * mxrx;
    }
    const double cxh = rho * inv * bb - inv * r_b + inv * bb * inv * mxrx;
    const float cdy = (float)(-rho * inv * gm + inv * vg), crdy = (float)(inv * gm);
    const float crx = (float)(-inv * bb * inv), cx = (float)(cxh * inv);
    const float c0 = (float)(rho * inv * a - inv * r_a + inv * bb * inv * mrx), muf = (float)mu;
    for (size_t j = lo + threadIdx.x; j < hi; j += blockDim.x)
        rdx[j] += cdy * dy[j] + crdy * rdy[j] + cx * (x[j] - muf) + (rx ? crx * rx[j] : 0.0f) + c0;
}

static int s_setup(struct nn_layer *l, int max_batch)
{
    (void)max_batch;
    struct s_bn_dev *d = (struct s_bn_dev *)calloc(1, sizeof *d);
    if (!d)
        return NN_ERR_NOMEM;
    l->dev = d;
    d->stat = (double *)nn_cuda_alloc(4 * sizeof(double) * l->in[0]->shape.c);
    return d->stat && s_part_buf(l->in[0]->shape.c) ? NN_OK : NN_ERR_NOMEM;
}

static void s_destroy(struct nn_layer *l)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    if (!d)
        return;
    nn_cuda_free(d->stat);
    free(d);
    l->dev = NULL;
}

/* One pass's launch geometry: channels, values per channel, the cut and the grid. */
struct s_geo {
    int c;
    size_t m;
    struct s_cut cut;
    dim3 grid;
    cudaStream_t st;
    double *part;
};

static struct s_geo s_geo_of(const struct nn_layer *l, int n)
{
    struct s_geo g;
    g.c = l->in[0]->shape.c;
    g.m = (size_t)n * l->in[0]->shape.h * l->in[0]->shape.w;
    g.cut = s_parts(g.m, g.c);
    g.grid = dim3((unsigned)g.cut.parts, (unsigned)g.c);
    g.st = nn_cuda_ctx_get()->stream;
    g.part = s_part_buf(g.c);
    return g;
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    struct s_geo g = s_geo_of(l, ctx->n);
    if (!g.part)
        return;
    d->train = !ctx->bn_eval;
    if (d->train) {
        k_bn_fwd_sum<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(l->in[0]->y, g.part, g.m, g.cut.chunk);
        CUDA_LAUNCH_CHECK("k_bn_fwd_sum");
        k_bn_fwd_sq<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(l->in[0]->y, g.part, g.m, g.cut.chunk,
                                                          g.cut.parts);
        CUDA_LAUNCH_CHECK("k_bn_fwd_sq");
    }
    k_bn_fwd_apply<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(
        l->in[0]->y, l->out->y, l->w, l->w + g.c, l->buf, l->buf + g.c, d->stat, g.part, g.c, g.m,
        g.cut.chunk, g.cut.parts, d->train, ctx->update_stats);
    CUDA_LAUNCH_CHECK("k_bn_fwd_apply");
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    if (!l->in[0]->need_dy && !ctx->param_grad)
        return;
    struct s_geo g = s_geo_of(l, ctx->n);
    if (!g.part)
        return;
    k_bn_sum_xh<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(l->in[0]->y, l->out->dy, d->stat, g.part, g.c,
                                                      g.m, g.cut.chunk);
    CUDA_LAUNCH_CHECK("k_bn_sum_xh");
    k_bn_bwd_apply<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(
        l->in[0]->y, l->out->dy, l->in[0]->need_dy ? l->in[0]->dy : NULL, l->w,
        ctx->param_grad ? l->g : NULL, d->stat, g.part, g.c, g.m, g.cut.chunk, g.cut.parts,
        d->train, ctx->grad_scale);
    CUDA_LAUNCH_CHECK("k_bn_bwd_apply");
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    struct s_geo g = s_geo_of(l, ctx->n);
    if (!g.part)
        return;
    const float *rx = l->in[0]->r_active ? l->in[0]->ry : NULL;
    const int sums = rx && d->train;
    if (sums) {
        k_bn_sum_xh<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(l->in[0]->y, rx, d->stat, g.part, g.c,
                                                          g.m, g.cut.chunk);
        CUDA_LAUNCH_CHECK("k_bn_sum_xh");
    }
    k_bn_rfwd_apply<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(
        l->in[0]->y, rx, l->out->ry, l->w, l->in_block ? l->v : NULL, d->stat, sums ? g.part : NULL,
        g.c, g.m, g.cut.chunk, g.cut.parts);
    CUDA_LAUNCH_CHECK("k_bn_rfwd_apply");
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    if (!l->in_block && !l->in[0]->need_dy)
        return;
    struct s_geo g = s_geo_of(l, ctx->n);
    if (!g.part)
        return;
    const float *rx = l->in[0]->r_active ? l->in[0]->ry : NULL;
    k_bn_rbwd_sum<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(l->in[0]->y, rx, l->out->dy, l->out->rdy,
                                                        d->stat, g.part, g.c, g.m, g.cut.chunk);
    CUDA_LAUNCH_CHECK("k_bn_rbwd_sum");
    k_bn_rbwd_apply<<<g.grid, NN_CUDA_THREADS, 0, g.st>>>(
        l->in[0]->y, rx, l->out->dy, l->out->rdy, l->in[0]->need_dy ? l->in[0]->rdy : NULL, l->w,
        l->in_block ? l->v : NULL, l->in_block ? l->hv : NULL, d->stat, g.part, g.c, g.m,
        g.cut.chunk, g.cut.parts, d->train);
    CUDA_LAUNCH_CHECK("k_bn_rbwd_apply");
}

const struct nn_layer_ops nn_cuda_bn_ops = {
    "batchnorm2d", s_setup, s_forward, s_backward, s_rforward, s_rbackward, NULL, NULL, s_destroy,
};
