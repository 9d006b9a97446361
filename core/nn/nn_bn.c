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
 * Each pass works in either layout of nn_layer.h: CNHW, one run per channel (here), or
 * channel-blocked, NN_BLK channels side by side in every run (vectorised across them; nn_bn_blk.c);
 * both share the per-channel coefficients (nn_bn_*_coef, nn_bn_*_param).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_bn_impl.h"

#define NN_BN_EPS 1e-5
#define NN_BN_MOMENTUM 0.1

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
    l->layout = NN_LAYOUT_IN_BLK | NN_LAYOUT_OUT_BLK | NN_LAYOUT_SAME;
    l->fuses_relu = 1; /* every pass on blocked nodes (nn_node.relu) */
    l->dx_set = 1;     /* dx = ... instead of += when dx is fresh (nn_layer.h) */
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

/* ---- per-channel coefficients (shared by both layouts) ----------------------------------------
 */

/* Coefficients of y = scale * (x - mu) + beta for channel ch, from its sums over m values: s = sum
 * x and ss = sum (x - s/m)^2 (train mode; eval mode reads the running statistics). Records mu and
 * inv for the later passes and updates the running statistics when asked. */
void nn_bn_fwd_coef(struct nn_bn *b, const struct nn_ctx *ctx, int ch, double s, double ss,
                    size_t m, float *scale, float *muf)
{
    struct nn_layer *l = &b->base;
    float *rmean = l->buf, *rvar = l->buf + b->c;
    double mu, inv;
    if (b->train) {
        mu = s / (double)m;
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
    *scale = (float)(l->w[ch] * inv);
    *muf = (float)mu;
}

/* The parameter gradients of channel ch (when asked) from sdy = sum dy, sdyx = sum dy xh. */
void nn_bn_bwd_param(struct nn_bn *b, const struct nn_ctx *ctx, int ch, double sdy, double sdyx)
{
    struct nn_layer *l = &b->base;
    if (ctx->param_grad) {
        l->g[ch] += ctx->grad_scale * (float)sdyx;
        l->g[b->c + ch] += ctx->grad_scale * (float)sdy;
    }
}

/* Backward of channel ch from its sums: dx = k[0] dy + k[1] (x - mu) + k[2] (in eval mode k[0] =
 * inv gamma alone, whatever the sums). */
void nn_bn_bwd_coef(struct nn_bn *b, int ch, double sdy, double sdyx, size_t m, float k[3])
{
    struct nn_layer *l = &b->base;
    const double inv = b->inv[ch], gm = l->w[ch];
    const double a = b->train ? gm * sdy / (double)m : 0.0;
    const double bb = b->train ? gm * sdyx / (double)m : 0.0;
    /* dx = inv*gm*dy - inv*a - inv*bb*(x - mu)*inv = p*dy + q*(x - mu) + r */
    k[0] = (float)(inv * gm);
    k[1] = (float)(-inv * bb * inv);
    k[2] = (float)(-inv * a);
}

/* R-forward of channel ch from mrx = mean(Rx), mxrx = mean(xh Rx) (0 when not train or not
 * R-active): records them and gives R{y} = k[0] Rx + k[1] (x - mu) + k[2]. */
void nn_bn_rfwd_coef(struct nn_bn *b, int ch, double mrx, double mxrx, float k[3])
{
    struct nn_layer *l = &b->base;
    const int ib = l->in_block;
    const double inv = b->inv[ch], gm = l->w[ch];
    b->mrx[ch] = mrx;
    b->mxrx[ch] = mxrx;
    /* R{y} = gamma*inv*(Rx - mrx) - gamma*inv*mxrx*xh + vg*xh + vb, xh = (x - mu)*inv */
    const double vg = ib ? l->v[ch] : 0.0, vb = ib ? l->v[b->c + ch] : 0.0;
    const double cxh = vg - gm * inv * mxrx; /* coefficient of xh */
    k[0] = (float)(gm * inv);
    k[1] = (float)(cxh * inv);
    k[2] = (float)(-gm * inv * mrx + vb);
}

/* R{dgamma}, R{dbeta} of channel ch (in the block) from its sums. */
void nn_bn_rbwd_param(struct nn_bn *b, int ch, const double sum[S_NSUMS])
{
    struct nn_layer *l = &b->base;
    if (l->in_block) {
        l->hv[ch] += (float)(sum[S_RDYX] + sum[S_DYRX]);
        l->hv[b->c + ch] += (float)sum[S_RDY];
    }
}

/* R-backward of channel ch from its sums: R{dx} = k[0] dy + k[1] R{dy} + k[2] (x - mu) + k[3] Rx +
 * k[4] (in eval mode k[0] = inv vg and k[1] = inv gamma alone, whatever the sums). */
void nn_bn_rbwd_coef(struct nn_bn *b, int ch, const double sum[S_NSUMS], size_t m, float k[5])
{
    struct nn_layer *l = &b->base;
    const int ib = l->in_block;
    const double inv = b->inv[ch], gm = l->w[ch], mrx = b->mrx[ch], mxrx = b->mxrx[ch];
    const double sdy = sum[S_DY], sdyx = sum[S_DYX], srdy = sum[S_RDY], srdyx = sum[S_RDYX];
    const double sdyrx = sum[S_DYRX];
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
    k[0] = (float)(-rho * inv * gm + inv * vg);
    k[1] = (float)(inv * gm);
    k[2] = (float)(cxh * inv);
    k[3] = (float)(-inv * bb * inv);
    k[4] = (float)(rho * inv * a - inv * r_a + inv * bb * inv * mrx);
}

/* ---- CNHW: one contiguous run of m = n*h*w values per channel ------------------------------- */

/* Statistics (train: batch, with the running update; eval: running), then y = gamma xh + beta. */
static void s_forward_cnhw(struct nn_bn *b, const struct nn_ctx *ctx)
{
    struct nn_layer *l = &b->base;
    const size_t m = (size_t)ctx->n * b->hw;
    const float *beta = l->w + b->c;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int ch = 0; ch < b->c; ch++) {
        const float *x = l->in[0]->y + ch * m;
        float *y = l->out->y + ch * m;
        double s = 0.0, ss = 0.0;
        if (b->train) {
#pragma omp simd reduction(+ : s)
            for (size_t j = 0; j < m; j++)
                s += x[j];
            const double mu = s / (double)m;
#pragma omp simd reduction(+ : ss)
            for (size_t j = 0; j < m; j++) {
                double d = x[j] - mu;
                ss += d * d;
            }
        }
        float scale, muf;
        nn_bn_fwd_coef(b, ctx, ch, s, ss, m, &scale, &muf);
        const float bf = beta[ch];
        for (size_t j = 0; j < m; j++)
            y[j] = scale * (x[j] - muf) + bf;
    }
}

/* dgamma += scale sum(dy xh), dbeta += scale sum(dy), dx += inv (gamma dy - a - xh b). */
static void s_backward_cnhw(struct nn_bn *b, const struct nn_ctx *ctx, int set)
{
    struct nn_layer *l = &b->base;
    const size_t m = (size_t)ctx->n * b->hw;
    const int need_dx = l->in[0]->need_dy;
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
        float k[3];
        nn_bn_bwd_param(b, ctx, ch, sdy, sdyx);
        nn_bn_bwd_coef(b, ch, sdy, sdyx, m, k);
        if (!need_dx)
            continue;
        float *dx = l->in[0]->dy + ch * m;
        const float muf = (float)mu;
        for (size_t j = 0; j < m; j++)
            dx[j] = (set ? 0.0f : dx[j]) + k[0] * dy[j] + k[1] * (x[j] - muf) + k[2];
    }
}

/* R{y} = gamma R{xh} + vg xh + vb with R{xh} = inv (Rx - mean(Rx) - xh mean(xh Rx)) (train). */
static void s_rforward_cnhw(struct nn_bn *b, const struct nn_ctx *ctx)
{
    struct nn_layer *l = &b->base;
    const size_t m = (size_t)ctx->n * b->hw;
    const int ra = l->in[0]->r_active;
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
        float k[3];
        nn_bn_rfwd_coef(b, ch, mrx, mxrx, k);
        const float muf = (float)mu;
        if (ra) {
            for (size_t j = 0; j < m; j++)
                ry[j] = k[0] * rx[j] + k[1] * (x[j] - muf) + k[2];
        } else {
            for (size_t j = 0; j < m; j++)
                ry[j] = k[1] * (x[j] - muf) + k[2];
        }
    }
}

/* R{dx} and R{dgamma}, R{dbeta}: see the banner for the formulas. */
static void s_rbackward_cnhw(struct nn_bn *b, const struct nn_ctx *ctx, int set)
{
    struct nn_layer *l = &b->base;
    const size_t m = (size_t)ctx->n * b->hw;
    const int ra = l->in[0]->r_active, need_dx = l->in[0]->need_dy;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int ch = 0; ch < b->c; ch++) {
        const float *x = l->in[0]->y + ch * m, *dy = l->out->dy + ch * m;
        const float *rdy = l->out->rdy + ch * m;
        const float *rx = ra ? l->in[0]->ry + ch * m : NULL;
        const double mu = b->mu[ch], inv = b->inv[ch];
        const double mrx = b->mrx[ch], mxrx = b->mxrx[ch];
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
        const double sum[S_NSUMS] = {sdy, sdyx, srdy, srdyx, sdyrx};
        float k[5];
        nn_bn_rbwd_param(b, ch, sum);
        nn_bn_rbwd_coef(b, ch, sum, m, k);
        if (!need_dx)
            continue;
        const float muf = (float)mu;
        float *rdx = l->in[0]->rdy + ch * m;
        if (ra) {
            for (size_t j = 0; j < m; j++)
                rdx[j] = (set ? 0.0f : rdx[j]) + k[0] * dy[j] + k[1] * rdy[j] +
                         k[2] * (x[j] - muf) + k[3] * rx[j] + k[4];
        } else {
            for (size_t j = 0; j < m; j++)
                rdx[j] = (set ? 0.0f : rdx[j]) + k[0] * dy[j] + k[1] * rdy[j] +
                         k[2] * (x[j] - muf) + k[4];
        }
    }
}

/* ---- operations --------------------------------------------------------------------------------
 */

static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    b->train = !ctx->bn_eval;
    b->dy_masked = 0; /* the next backward pass writes a new dy */
    if (l->out->blk)
        nn_bn_forward_blk(b, ctx);
    else
        s_forward_cnhw(b, ctx);
}

static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    if (!l->in[0]->need_dy && !ctx->param_grad)
        return;
    const int set = l->in[0]->need_dy && nn_node_first_dy(l->in[0]);
    if (l->out->blk) {
        if (b->train)
            nn_bn_backward_blk(b, ctx, set);
        else
            nn_bn_backward_blk_eval(b, ctx, set);
        b->dy_masked = l->out->relu;
    } else {
        s_backward_cnhw(b, ctx, set);
    }
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    if (l->out->blk)
        nn_bn_rforward_blk(b, ctx);
    else
        s_rforward_cnhw(b, ctx);
}

static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    if (!l->in_block && !l->in[0]->need_dy)
        return;
    const int set = l->in[0]->need_dy && nn_node_first_rdy(l->in[0]);
    if (l->out->blk) {
        if (b->train)
            nn_bn_rbackward_blk(b, ctx, set);
        else
            nn_bn_rbackward_blk_eval(b, ctx, set);
        b->dy_masked = l->out->relu;
    } else
        s_rbackward_cnhw(b, ctx, set);
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
