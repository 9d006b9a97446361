/*
 * nn_cuda_bn: BatchNorm2d on the device, the formulas of nn_bn.c (see its banner) with one block
 * per channel: a channel is one contiguous run of m = n*h*w values in CNHW, so each pass is a
 * block-wide reduction in double followed by an elementwise update of the run. The statistics of
 * the last forward (mu, inv) and R-forward (mean(Rx), mean(xh Rx)) stay on the device for the
 * passes that differentiate it.
 */
#include "nn_cuda.h"

#define NN_BN_EPS 1e-5
#define NN_BN_MOMENTUM 0.1
#define NN_BN_SUMS 5 /* most sums one reduction carries */

struct s_bn_dev {
    double *stat; /* per channel: mu, inv, mrx, mxrx (4 x c) */
    int train;    /* mode of the last forward */
};

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

__global__ void k_bn_forward(const float *x, float *y, const float *gamma, const float *beta,
                             float *rmean, float *rvar, double *stat, int c, size_t m, int train,
                             int update)
{
    int ch = blockIdx.x;
    x += ch * m;
    y += ch * m;
    double mu, inv;
    if (train) {
        double v[NN_BN_SUMS] = {0};
        for (size_t j = threadIdx.x; j < m; j += blockDim.x)
            v[0] += x[j];
        d_block_sum(v, 1);
        mu = v[0] / (double)m;
        v[0] = 0.0;
        for (size_t j = threadIdx.x; j < m; j += blockDim.x)
            v[0] += ((double)x[j] - mu) * ((double)x[j] - mu);
        d_block_sum(v, 1);
        double var = v[0] / (double)m;
        inv = 1.0 / sqrt(var + NN_BN_EPS);
        if (update && threadIdx.x == 0) {
            double uvar = m > 1 ? v[0] / (double)(m - 1) : var;
            rmean[ch] = (float)((1.0 - NN_BN_MOMENTUM) * rmean[ch] + NN_BN_MOMENTUM * mu);
            rvar[ch] = (float)((1.0 - NN_BN_MOMENTUM) * rvar[ch] + NN_BN_MOMENTUM * uvar);
        }
    } else {
        mu = rmean[ch];
        inv = 1.0 / sqrt((double)rvar[ch] + NN_BN_EPS);
    }
    if (threadIdx.x == 0) {
        stat[ch] = mu;
        stat[c + ch] = inv;
    }
    const float scale = (float)(gamma[ch] * inv), muf = (float)mu, bf = beta[ch];
    for (size_t j = threadIdx.x; j < m; j += blockDim.x)
        y[j] = scale * (x[j] - muf) + bf;
}

/* dgamma += s sum(dy xh), dbeta += s sum(dy), dx += inv (gamma dy - a - xh b) */
__global__ void k_bn_backward(const float *x, const float *dy, float *dx, const float *gamma,
                              float *g, const double *stat, int c, size_t m, int train, float scale)
{
    int ch = blockIdx.x;
    x += ch * m;
    dy += ch * m;
    const double mu = stat[ch], inv = stat[c + ch];
    double v[NN_BN_SUMS] = {0};
    for (size_t j = threadIdx.x; j < m; j += blockDim.x) {
        v[0] += dy[j];
        v[1] += dy[j] * (((double)x[j] - mu) * inv);
    }
    d_block_sum(v, 2);
    if (g && threadIdx.x == 0) {
        g[ch] += scale * (float)v[1];
        g[c + ch] += scale * (float)v[0];
    }
    if (!dx)
        return;
    dx += ch * m;
    const double gm = gamma[ch];
    const double a = train ? gm * v[0] / (double)m : 0.0, bb = train ? gm * v[1] / (double)m : 0.0;
    const float p = (float)(inv * gm), q = (float)(-inv * bb * inv), r = (float)(-inv * a);
    const float muf = (float)mu;
    for (size_t j = threadIdx.x; j < m; j += blockDim.x)
        dx[j] += p * dy[j] + q * (x[j] - muf) + r;
}

/* R{y} = gamma R{xh} + vg xh + vb, R{xh} = inv (Rx - mean(Rx) - xh mean(xh Rx)) (train) */
__global__ void k_bn_rforward(const float *x, const float *rx, float *ry, const float *gamma,
                              const float *v, double *stat, int c, size_t m, int train)
{
    int ch = blockIdx.x;
    x += ch * m;
    ry += ch * m;
    if (rx)
        rx += ch * m;
    const double mu = stat[ch], inv = stat[c + ch];
    double s[NN_BN_SUMS] = {0};
    if (rx && train) {
        for (size_t j = threadIdx.x; j < m; j += blockDim.x) {
            s[0] += rx[j];
            s[1] += rx[j] * (((double)x[j] - mu) * inv);
        }
        d_block_sum(s, 2);
        s[0] /= (double)m;
        s[1] /= (double)m;
    }
    if (threadIdx.x == 0) {
        stat[2 * c + ch] = s[0];
        stat[3 * c + ch] = s[1];
    }
    const double vg = v ? v[ch] : 0.0, vb = v ? v[c + ch] : 0.0;
    const double cxh = vg - gamma[ch] * inv * s[1];
    const float pr = (float)(gamma[ch] * inv), px = (float)(cxh * inv);
    const float p0 = (float)(-gamma[ch] * inv * s[0] + vb), muf = (float)mu;
    for (size_t j = threadIdx.x; j < m; j += blockDim.x)
        ry[j] = (rx ? pr * rx[j] : 0.0f) + px * (x[j] - muf) + p0;
}

/* R{dx}, R{dgamma}, R{dbeta}: nn_bn.c's s_rbackward, one block per channel. */
__global__ void k_bn_rbackward(const float *x, const float *rx, const float *dy, const float *rdy,
                               float *rdx, const float *gamma, const float *v, float *hv,
                               const double *stat, int c, size_t m, int train)
{
    int ch = blockIdx.x;
    x += ch * m;
    dy += ch * m;
    rdy += ch * m;
    if (rx)
        rx += ch * m;
    const double mu = stat[ch], inv = stat[c + ch], gm = gamma[ch];
    const double mrx = stat[2 * c + ch], mxrx = stat[3 * c + ch];
    double s[NN_BN_SUMS] = {0}; /* dy, dy xh, Rdy, Rdy xh, dy R{xh} */
    for (size_t j = threadIdx.x; j < m; j += blockDim.x) {
        const double xh = ((double)x[j] - mu) * inv;
        s[0] += dy[j];
        s[1] += dy[j] * xh;
        s[2] += rdy[j];
        s[3] += rdy[j] * xh;
        if (rx)
            s[4] += dy[j] * (inv * (rx[j] - mrx - xh * mxrx));
    }
    d_block_sum(s, NN_BN_SUMS);
    if (hv && threadIdx.x == 0) {
        hv[ch] += (float)(s[3] + s[4]);
        hv[c + ch] += (float)s[2];
    }
    if (!rdx)
        return;
    rdx += ch * m;
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
    for (size_t j = threadIdx.x; j < m; j += blockDim.x)
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
    return d->stat ? NN_OK : NN_ERR_NOMEM;
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

static size_t s_run(const struct nn_layer *l, int n)
{
    return (size_t)n * l->in[0]->shape.h * l->in[0]->shape.w;
}

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    int c = l->in[0]->shape.c;
    d->train = !ctx->bn_eval;
    k_bn_forward<<<c, NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(
        l->in[0]->y, l->out->y, l->w, l->w + c, l->buf, l->buf + c, d->stat, c, s_run(l, ctx->n),
        d->train, ctx->update_stats);
    CUDA_LAUNCH_CHECK("k_bn_forward");
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    int c = l->in[0]->shape.c;
    if (!l->in[0]->need_dy && !ctx->param_grad)
        return;
    k_bn_backward<<<c, NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(
        l->in[0]->y, l->out->dy, l->in[0]->need_dy ? l->in[0]->dy : NULL, l->w,
        ctx->param_grad ? l->g : NULL, d->stat, c, s_run(l, ctx->n), d->train, ctx->grad_scale);
    CUDA_LAUNCH_CHECK("k_bn_backward");
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    int c = l->in[0]->shape.c;
    k_bn_rforward<<<c, NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(
        l->in[0]->y, l->in[0]->r_active ? l->in[0]->ry : NULL, l->out->ry, l->w,
        l->in_block ? l->v : NULL, d->stat, c, s_run(l, ctx->n), d->train);
    CUDA_LAUNCH_CHECK("k_bn_rforward");
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_bn_dev *d = (struct s_bn_dev *)l->dev;
    int c = l->in[0]->shape.c;
    if (!l->in_block && !l->in[0]->need_dy)
        return;
    k_bn_rbackward<<<c, NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(
        l->in[0]->y, l->in[0]->r_active ? l->in[0]->ry : NULL, l->out->dy, l->out->rdy,
        l->in[0]->need_dy ? l->in[0]->rdy : NULL, l->w, l->in_block ? l->v : NULL,
        l->in_block ? l->hv : NULL, d->stat, c, s_run(l, ctx->n), d->train);
    CUDA_LAUNCH_CHECK("k_bn_rbackward");
}

const struct nn_layer_ops nn_cuda_bn_ops = {
    "batchnorm2d", s_setup, s_forward, s_backward, s_rforward, s_rbackward, NULL, NULL, s_destroy,
};
