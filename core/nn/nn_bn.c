/*
 * nn_bn: BatchNorm2d (eps 1e-5, momentum 0.1, PyTorch semantics) with backward and both R-passes,
 * in train mode (batch statistics) and eval mode (running statistics).
 *
 * Per channel, over its m = n*h*w values (one contiguous run in CNHW):
 *   train: mu = mean(x), var = mean((x - mu)^2) (biased), inv = 1/sqrt(var + eps)
 *          running_mean = 0.9 running_mean + 0.1 mu
 *          running_var  = 0.9 running_var  + 0.1 var * m/(m-1)   (unbiased; only if update_stats)
 *   eval:  mu = running_mean, inv = 1/sqrt(running_var + eps)
 *   xh = (x - mu) * inv,  y = gamma * xh + beta
 *
 * Backward (g = gamma * dy; in eval mode the batch-statistic terms a, b vanish):
 *   dgamma += sum(dy * xh), dbeta += sum(dy),  dx += inv * (g - a - xh * b),
 *   a = mean(g), b = mean(g * xh)   (train)
 * R-forward (vg, vb: direction of gamma, beta; only in the block):
 *   R{xh} = inv * (Rx - mean(Rx) - xh * mean(xh * Rx))   (train; eval: inv * Rx)
 *   R{y}  = gamma * R{xh} + vg * xh + vb
 * R-backward, differentiating the backward once more along the direction:
 *   R{inv} = -inv * rho with rho = inv * mean(xh * Rx)    (R{var} = 2/inv * mean(xh * Rx); train)
 *   R{g} = vg * dy + gamma * R{dy},  R{a} = mean(R{g}),  R{b} = mean(R{g} * xh + g * R{xh})
 *   R{dx} = -rho * inv * (g - a - xh * b) + inv * (R{g} - R{a} - R{xh} * b - xh * R{b})
 *   R{dgamma} = sum(R{dy} * xh + dy * R{xh}),  R{dbeta} = sum(R{dy})
 * In eval mode mu and inv do not depend on x: a = b = R{a} = R{b} = rho = 0 and
 * R{xh} = inv * Rx. Sums are accumulated in double.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_layer.h"

#define NN_BN_EPS 1e-5
#define NN_BN_MOMENTUM 0.1
/* Smallest activation (floats) worth a parallel region. */
#define NN_BN_PAR_MIN (16 * 1024)

struct nn_bn {
    struct nn_layer base; /* common header (first) */
    int c;                /* channels */
    size_t hw;            /* h * w per sample */
    int train;            /* mode of the last forward (1: batch statistics) */
    double *mu;           /* per channel: mean used by the last forward */
    double *inv;          /* per channel: 1/sqrt(var + eps) used by the last forward */
    double *mrx;          /* per channel: mean(Rx) of the last R-forward (train mode) */
    double *mxrx;         /* per channel: mean(xh * Rx) of the last R-forward (train mode) */
};

static int s_setup(struct nn_layer *l, int max_batch)
{
    struct nn_bn *b = (struct nn_bn *)l;
    if (l->n_in != 1 || !l->in[0] || !l->out || max_batch < 1) {
        nn_report(3, "batchnorm2d %s: needs exactly one input and a positive max batch", l->name);
        return NN_ERR_SHAPE;
    }
    const struct nn_shape *is = &l->in[0]->shape;
    if (is->c < 1 || is->h < 1 || is->w < 1) {
        nn_report(3, "batchnorm2d %s: invalid input shape %dx%dx%d", l->name, is->c, is->h, is->w);
        return NN_ERR_SHAPE;
    }
    b->c = is->c;
    b->hw = (size_t)is->h * is->w;
    l->out->shape = *is;
    static const char *const names[4] = {"weight", "bias", "running_mean", "running_var"};
    memset(l->decl, 0, sizeof l->decl);
    for (int t = 0; t < 4; t++) {
        strcpy(l->decl[t].suffix, names[t]);
        l->decl[t].is_buffer = t >= 2;
        l->decl[t].ndim = 1;
        l->decl[t].shape[0] = b->c;
    }
    l->n_decl = 4;
    l->work_per_sample = 0;
    free(b->mu);
    b->mu = calloc(4 * (size_t)b->c, sizeof(double));
    if (!b->mu) {
        nn_report(3, "batchnorm2d %s: out of memory", l->name);
        return NN_ERR_NOMEM;
    }
    b->inv = b->mu + b->c;
    b->mrx = b->inv + b->c;
    b->mxrx = b->mrx + b->c;
    return NN_OK;
}

/* Statistics (train: batch, with the running update; eval: running), then y = gamma xh + beta. */
static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    const size_t m = (size_t)ctx->n * b->hw;
    const float *gamma = l->w, *beta = l->w + b->c;
    float *rmean = l->buf, *rvar = l->buf + b->c;
    b->train = !ctx->bn_eval;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int ch = 0; ch < b->c; ch++) {
        const float *x = l->in[0]->y + ch * m;
        float *y = l->out->y + ch * m;
        double mu, inv;
        if (b->train) {
            double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s)
            for (size_t j = 0; j < m; j++)
                s += x[j];
            mu = s / (double)m;
#pragma omp simd reduction(+ : ss)
            for (size_t j = 0; j < m; j++) {
                double d = x[j] - mu;
                ss += d * d;
            }
            const double var = ss / (double)m;
            inv = 1.0 / sqrt(var + NN_BN_EPS);
            if (ctx->update_stats) {
                /* unbiased variance for the running estimate (m = 1: biased, i.e. 0) */
                const double uvar = m > 1 ? ss / (double)(m - 1) : var;
                rmean[ch] = (float)((1.0 - NN_BN_MOMENTUM) * rmean[ch] + NN_BN_MOMENTUM * mu);
                rvar[ch] = (float)((1.0 - NN_BN_MOMENTUM) * rvar[ch] + NN_BN_MOMENTUM * uvar);
            }
        } else {
            mu = rmean[ch];
            inv = 1.0 / sqrt((double)rvar[ch] + NN_BN_EPS);
        }
        b->mu[ch] = mu;
        b->inv[ch] = inv;
        const float scale = (float)(gamma[ch] * inv), muf = (float)mu, bf = beta[ch];
        for (size_t j = 0; j < m; j++)
            y[j] = scale * (x[j] - muf) + bf;
    }
}

/* dgamma += scale sum(dy xh), dbeta += scale sum(dy), dx += inv (gamma dy - a - xh b). */
static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    const size_t m = (size_t)ctx->n * b->hw;
    const int need_dx = l->in[0]->need_dy, need_dw = ctx->param_grad;
    if (!need_dx && !need_dw)
        return;
    const float *gamma = l->w;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int ch = 0; ch < b->c; ch++) {
        const float *x = l->in[0]->y + ch * m, *dy = l->out->dy + ch * m;
        const double mu = b->mu[ch], inv = b->inv[ch];
        double sdy = 0.0, sdyx = 0.0;
#pragma omp simd reduction(+ : sdy, sdyx)
        for (size_t j = 0; j < m; j++) {
            sdy += dy[j];
            sdyx += dy[j] * ((x[j] - mu) * inv);
        }
        if (need_dw) {
            l->g[ch] += ctx->grad_scale * (float)sdyx;
            l->g[b->c + ch] += ctx->grad_scale * (float)sdy;
        }
        if (!need_dx)
            continue;
        float *dx = l->in[0]->dy + ch * m;
        const double gm = gamma[ch];
        const double a = b->train ? gm * sdy / (double)m : 0.0;
        const double bb = b->train ? gm * sdyx / (double)m : 0.0;
        /* dx = inv*gm*dy - inv*a - inv*bb*(x - mu)*inv = p*dy + q*(x - mu) + r */
        const float p = (float)(inv * gm), q = (float)(-inv * bb * inv), r = (float)(-inv * a);
        const float muf = (float)mu;
        for (size_t j = 0; j < m; j++)
            dx[j] += p * dy[j] + q * (x[j] - muf) + r;
    }
}

/* R{y} = gamma R{xh} + vg xh + vb with R{xh} = inv (Rx - mean(Rx) - xh mean(xh Rx)) (train). */
static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    const size_t m = (size_t)ctx->n * b->hw;
    const int ra = l->in[0]->r_active, ib = l->in_block;
    const float *gamma = l->w;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int ch = 0; ch < b->c; ch++) {
        const float *x = l->in[0]->y + ch * m;
        float *ry = l->out->ry + ch * m;
        const double mu = b->mu[ch], inv = b->inv[ch];
        double mrx = 0.0, mxrx = 0.0;
        const float *rx = ra ? l->in[0]->ry + ch * m : NULL;
        if (ra && b->train) {
#pragma omp simd reduction(+ : mrx, mxrx)
            for (size_t j = 0; j < m; j++) {
                mrx += rx[j];
                mxrx += rx[j] * ((x[j] - mu) * inv);
            }
            mrx /= (double)m;
            mxrx /= (double)m;
        }
        b->mrx[ch] = mrx;
        b->mxrx[ch] = mxrx;
        /* R{y} = gamma*inv*(Rx - mrx) - gamma*inv*mxrx*xh + vg*xh + vb, xh = (x - mu)*inv */
        const double vg = ib ? l->v[ch] : 0.0, vb = ib ? l->v[b->c + ch] : 0.0;
        const double cxh = vg - gamma[ch] * inv * mxrx; /* coefficient of xh */
        const float pr = (float)(gamma[ch] * inv);
        const float px = (float)(cxh * inv);
        const float p0 = (float)(-gamma[ch] * inv * mrx + vb), muf = (float)mu;
        if (ra) {
            for (size_t j = 0; j < m; j++)
                ry[j] = pr * rx[j] + px * (x[j] - muf) + p0;
        } else {
            for (size_t j = 0; j < m; j++)
                ry[j] = px * (x[j] - muf) + p0;
        }
    }
}

/* R{dx} and R{dgamma}, R{dbeta}: see the banner for the formulas. */
static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    const size_t m = (size_t)ctx->n * b->hw;
    const int ra = l->in[0]->r_active, ib = l->in_block, need_dx = l->in[0]->need_dy;
    if (!ib && !need_dx)
        return;
    const float *gamma = l->w;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int ch = 0; ch < b->c; ch++) {
        const float *x = l->in[0]->y + ch * m, *dy = l->out->dy + ch * m;
        const float *rdy = l->out->rdy + ch * m;
        const float *rx = ra ? l->in[0]->ry + ch * m : NULL;
        const double mu = b->mu[ch], inv = b->inv[ch], gm = gamma[ch];
        const double mrx = b->mrx[ch], mxrx = b->mxrx[ch];
        /* Sums over the channel: dy, dy xh, R{dy}, R{dy} xh, dy R{xh}. */
        double sdy = 0.0, sdyx = 0.0, srdy = 0.0, srdyx = 0.0, sdyrx = 0.0;
#pragma omp simd reduction(+ : sdy, sdyx, srdy, srdyx, sdyrx)
        for (size_t j = 0; j < m; j++) {
            const double xh = (x[j] - mu) * inv;
            sdy += dy[j];
            sdyx += dy[j] * xh;
            srdy += rdy[j];
            srdyx += rdy[j] * xh;
            if (ra)
                sdyrx += dy[j] * (inv * (rx[j] - mrx - xh * mxrx));
        }
        if (ib) {
            l->hv[ch] += (float)(srdyx + sdyrx);
            l->hv[b->c + ch] += (float)srdy;
        }
        if (!need_dx)
            continue;
        const double vg = ib ? l->v[ch] : 0.0, md = (double)m;
        double a = 0.0, bb = 0.0, r_a = 0.0, r_b = 0.0, rho = 0.0;
        if (b->train) {
            a = gm * sdy / md;
            bb = gm * sdyx / md;
            r_a = (vg * sdy + gm * srdy) / md;
            r_b = (vg * sdyx + gm * srdyx + gm * sdyrx) / md;
            rho = inv * mxrx;
        }
        /* R{dx} = -rho*inv*(gm*dy - a - xh*bb) + inv*(vg*dy + gm*Rdy - r_a - R{xh}*bb - xh*r_b)
         * with xh = (x - mu)*inv and R{xh} = inv*(Rx - mrx - xh*mxrx); expand into
         * cdy*dy + crdy*Rdy + cx*(x - mu) + crx*Rx + c0. */
        const double cxh = rho * inv * bb - inv * r_b + inv * bb * inv * mxrx; /* coeff. of xh */
        const float cdy = (float)(-rho * inv * gm + inv * vg);
        const float crdy = (float)(inv * gm);
        const float crx = (float)(-inv * bb * inv);
        const float cx = (float)(cxh * inv);
        const float c0 = (float)(rho * inv * a - inv * r_a + inv * bb * inv * mrx);
        const float muf = (float)mu;
        float *rdx = l->in[0]->rdy + ch * m;
        if (ra) {
            for (size_t j = 0; j < m; j++)
                rdx[j] += cdy * dy[j] + crdy * rdy[j] + cx * (x[j] - muf) + crx * rx[j] + c0;
        } else {
            for (size_t j = 0; j < m; j++)
                rdx[j] += cdy * dy[j] + crdy * rdy[j] + cx * (x[j] - muf) + c0;
        }
    }
}

/* PyTorch's default: gamma 1, beta 0, running mean 0, running var 1. */
static void s_init(struct nn_layer *l, struct nn_rng *rng)
{
    struct nn_bn *b = (struct nn_bn *)l;
    (void)rng;
    for (int ch = 0; ch < b->c; ch++) {
        l->w[ch] = 1.0f;
        l->w[b->c + ch] = 0.0f;
        if (l->buf) {
            l->buf[ch] = 0.0f;
            l->buf[b->c + ch] = 1.0f;
        }
    }
}

static double s_flops(const struct nn_layer *l)
{
    const struct nn_bn *b = (const struct nn_bn *)l;
    return 2.0 * b->c * (double)b->hw; /* one multiply-add per element */
}

static void s_destroy(struct nn_layer *l)
{
    struct nn_bn *b = (struct nn_bn *)l;
    free(b->mu);
    b->mu = b->inv = b->mrx = b->mxrx = NULL;
}

static const struct nn_layer_ops s_bn_ops = {
    .kind = "batchnorm2d",
    .setup = s_setup,
    .forward = s_forward,
    .backward = s_backward,
    .rforward = s_rforward,
    .rbackward = s_rbackward,
    .init = s_init,
    .flops = s_flops,
    .destroy = s_destroy,
};

struct nn_layer *nn_bn_new(const char *name)
{
    if (!name || !*name || strlen(name) >= NN_NAME_MAX) {
        nn_report(3, "batchnorm2d: invalid name (empty, missing or longer than %d)",
                  NN_NAME_MAX - 1);
        return NULL;
    }
    struct nn_bn *b = nn_layer_alloc(sizeof *b, &s_bn_ops, name, 1);
    return b ? &b->base : NULL;
}
