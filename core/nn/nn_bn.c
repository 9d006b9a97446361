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
 * Each pass works in either layout of nn_layer.h: CNHW, one run per channel, or channel-blocked,
 * NN_BLK channels side by side in every run (vectorised across them); both share the per-channel
 * coefficients (s_*_coef).
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
    int dy_masked;        /* out->dy holds the in-place ReLU's masked gradient already (blocked
                           * nodes, nn_node.relu): it changes only after a forward, which clears
                           * this */
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
static void s_fwd_coef(struct nn_bn *b, const struct nn_ctx *ctx, int ch, double s, double ss,
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
static void s_bwd_param(struct nn_bn *b, const struct nn_ctx *ctx, int ch, double sdy, double sdyx)
{
    struct nn_layer *l = &b->base;
    if (ctx->param_grad) {
        l->g[ch] += ctx->grad_scale * (float)sdyx;
        l->g[b->c + ch] += ctx->grad_scale * (float)sdy;
    }
}

/* Backward of channel ch from its sums: dx = k[0] dy + k[1] (x - mu) + k[2] (in eval mode k[0] =
 * inv gamma alone, whatever the sums). */
static void s_bwd_coef(struct nn_bn *b, int ch, double sdy, double sdyx, size_t m, float k[3])
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
static void s_rfwd_coef(struct nn_bn *b, int ch, double mrx, double mxrx, float k[3])
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

/* Sums of channel ch for the R-backward (over its m values): dy, dy xh, R{dy}, R{dy} xh, dy R{xh}.
 */
enum { S_DY, S_DYX, S_RDY, S_RDYX, S_DYRX, S_NSUMS };

/* R{dgamma}, R{dbeta} of channel ch (in the block) from its sums. */
static void s_rbwd_param(struct nn_bn *b, int ch, const double sum[S_NSUMS])
{
    struct nn_layer *l = &b->base;
    if (l->in_block) {
        l->hv[ch] += (float)(sum[S_RDYX] + sum[S_DYRX]);
        l->hv[b->c + ch] += (float)sum[S_RDY];
    }
}

/* R-backward of channel ch from its sums: R{dx} = k[0] dy + k[1] R{dy} + k[2] (x - mu) + k[3] Rx +
 * k[4] (in eval mode k[0] = inv vg and k[1] = inv gamma alone, whatever the sums). */
static void s_rbwd_coef(struct nn_bn *b, int ch, const double sum[S_NSUMS], size_t m, float k[5])
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
        s_fwd_coef(b, ctx, ch, s, ss, m, &scale, &muf);
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
        s_bwd_param(b, ctx, ch, sdy, sdyx);
        s_bwd_coef(b, ch, sdy, sdyx, m, k);
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
        s_rfwd_coef(b, ch, mrx, mxrx, k);
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
        s_rbwd_param(b, ch, sum);
        s_rbwd_coef(b, ch, sum, m, k);
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

/* ---- channel-blocked: per (sample, block of NN_BLK channels) one run of h*w*NN_BLK values -----
 */

/* Sums over a channel block run in float over at most this many floats (NN_BLK lanes of 256
 * positions) and are then added into double: float rounding stays at the level of a 256-term
 * sum, and each step is one vector operation per NN_BLK channels instead of two in double. */
#define NN_BN_CHUNK (256 * NN_BLK)

/* The end of the chunk of a run (run floats) that starts at j0. */
static inline size_t s_chunk_end(size_t j0, size_t run)
{
    return j0 + NN_BN_CHUNK < run ? j0 + NN_BN_CHUNK : run;
}

/* The run of sample i, channel block cb (of nb) in a channel-blocked tensor t. */
static inline size_t s_run_off(int i, int cb, int nb, size_t run)
{
    return ((size_t)i * nb + cb) * run;
}

/* g[j] = y[j] > 0 ? g[j] : 0 over [j0, j1): the backward (and R-backward) of the in-place ReLU
 * after this BatchNorm (nn_node.relu), as nn_relu.c computes it, done chunk by chunk just before
 * the sums read the chunk, so that it comes from cache instead of a separate pass over memory. */
static void s_relu_mask(float *g, const float *y, size_t j0, size_t j1)
{
#pragma omp simd
    for (size_t j = j0; j < j1; j++)
        g[j] = y[j] > 0.0f ? g[j] : 0.0f;
}

/* mu and inv of the NN_BLK channels of block cb, in float for the vector loops. */
static void s_lanes(const struct nn_bn *b, int cb, float mu[NN_BLK], float inv[NN_BLK])
{
    for (int k = 0; k < NN_BLK; k++) {
        mu[k] = (float)b->mu[cb * NN_BLK + k];
        inv[k] = (float)b->inv[cb * NN_BLK + k];
    }
}

/* s += sum g and sx += sum g xh, xh = (x - mu) inv, over [j0, j1) of a run, lane by lane. */
static void s_sums_gx(const float *g, const float *x, size_t j0, size_t j1, const float mu[NN_BLK],
                      const float inv[NN_BLK], double s[NN_BLK], double sx[NN_BLK])
{
    float a[NN_BLK] = {0}, ax[NN_BLK] = {0};
    for (size_t j = j0; j < j1; j += NN_BLK)
        for (int k = 0; k < NN_BLK; k++) {
            a[k] += g[j + k];
            ax[k] += g[j + k] * ((x[j + k] - mu[k]) * inv[k]);
        }
    for (int k = 0; k < NN_BLK; k++) {
        s[k] += a[k];
        sx[k] += ax[k];
    }
}

static void s_forward_blk(struct nn_bn *b, const struct nn_ctx *ctx)
{
    struct nn_layer *l = &b->base;
    const int n = ctx->n, nb = b->c / NN_BLK;
    const size_t m = (size_t)n * b->hw, run = b->hw * NN_BLK;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int cb = 0; cb < nb; cb++) {
        double s[NN_BLK] = {0}, ss[NN_BLK] = {0};
        float mu[NN_BLK];
        if (b->train) {
            for (int i = 0; i < n; i++) {
                const float *x = l->in[0]->y + s_run_off(i, cb, nb, run);
                for (size_t j0 = 0; j0 < run; j0 += NN_BN_CHUNK) {
                    float a[NN_BLK] = {0};
                    for (size_t j = j0; j < s_chunk_end(j0, run); j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++)
                            a[k] += x[j + k];
                    for (int k = 0; k < NN_BLK; k++)
                        s[k] += a[k];
                }
            }
            for (int k = 0; k < NN_BLK; k++)
                mu[k] = (float)(s[k] / (double)m);
            for (int i = 0; i < n; i++) {
                const float *x = l->in[0]->y + s_run_off(i, cb, nb, run);
                for (size_t j0 = 0; j0 < run; j0 += NN_BN_CHUNK) {
                    float a[NN_BLK] = {0};
                    for (size_t j = j0; j < s_chunk_end(j0, run); j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++) {
                            const float d = x[j + k] - mu[k];
                            a[k] += d * d;
                        }
                    for (int k = 0; k < NN_BLK; k++)
                        ss[k] += a[k];
                }
            }
        }
        float scale[NN_BLK], muf[NN_BLK], bf[NN_BLK];
        for (int k = 0; k < NN_BLK; k++) {
            s_fwd_coef(b, ctx, cb * NN_BLK + k, s[k], ss[k], m, &scale[k], &muf[k]);
            bf[k] = l->w[b->c + cb * NN_BLK + k];
        }
        for (int i = 0; i < n; i++) {
            const size_t o = s_run_off(i, cb, nb, run);
            const float *x = l->in[0]->y + o;
            float *y = l->out->y + o;
            if (l->out->relu) { /* the in-place ReLU after it, as nn_relu.c computes it */
                for (size_t j = 0; j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++) {
                        const float v = scale[k] * (x[j + k] - muf[k]) + bf[k];
                        y[j + k] = v > 0.0f ? v : 0.0f;
                    }
                continue;
            }
            for (size_t j = 0; j < run; j += NN_BLK)
                for (int k = 0; k < NN_BLK; k++)
                    y[j + k] = scale[k] * (x[j + k] - muf[k]) + bf[k];
        }
    }
}

static void s_backward_blk(struct nn_bn *b, const struct nn_ctx *ctx, int set)
{
    struct nn_layer *l = &b->base;
    const int n = ctx->n, nb = b->c / NN_BLK, need_dx = l->in[0]->need_dy;
    const size_t m = (size_t)n * b->hw, run = b->hw * NN_BLK;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int cb = 0; cb < nb; cb++) {
        float mu[NN_BLK], inv[NN_BLK];
        s_lanes(b, cb, mu, inv);
        double sdy[NN_BLK] = {0}, sdyx[NN_BLK] = {0};
        for (int i = 0; i < n; i++) {
            const size_t o = s_run_off(i, cb, nb, run);
            const float *x = l->in[0]->y + o, *dy = l->out->dy + o;
            for (size_t j0 = 0; j0 < run; j0 += NN_BN_CHUNK) {
                if (l->out->relu && !b->dy_masked)
                    s_relu_mask(l->out->dy + o, l->out->y + o, j0, s_chunk_end(j0, run));
                s_sums_gx(dy, x, j0, s_chunk_end(j0, run), mu, inv, sdy, sdyx);
            }
        }
        float c0[NN_BLK], c1[NN_BLK], c2[NN_BLK], muf[NN_BLK];
        for (int k = 0; k < NN_BLK; k++) {
            float kk[3];
            s_bwd_param(b, ctx, cb * NN_BLK + k, sdy[k], sdyx[k]);
            s_bwd_coef(b, cb * NN_BLK + k, sdy[k], sdyx[k], m, kk);
            c0[k] = kk[0], c1[k] = kk[1], c2[k] = kk[2], muf[k] = mu[k];
        }
        if (!need_dx)
            continue;
        for (int i = 0; i < n; i++) {
            const size_t o = s_run_off(i, cb, nb, run);
            const float *x = l->in[0]->y + o, *dy = l->out->dy + o;
            float *dx = l->in[0]->dy + o;
            for (size_t j = 0; j < run; j += NN_BLK)
                for (int k = 0; k < NN_BLK; k++)
                    dx[j + k] = (set ? 0.0f : dx[j + k]) + c0[k] * dy[j + k] +
                                c1[k] * (x[j + k] - muf[k]) + c2[k];
        }
    }
}

static void s_rforward_blk(struct nn_bn *b, const struct nn_ctx *ctx)
{
    struct nn_layer *l = &b->base;
    const int n = ctx->n, nb = b->c / NN_BLK, ra = l->in[0]->r_active;
    const size_t m = (size_t)n * b->hw, run = b->hw * NN_BLK;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int cb = 0; cb < nb; cb++) {
        float mu[NN_BLK], inv[NN_BLK];
        s_lanes(b, cb, mu, inv);
        double mrx[NN_BLK] = {0}, mxrx[NN_BLK] = {0};
        if (ra && b->train) {
            for (int i = 0; i < n; i++) {
                const size_t o = s_run_off(i, cb, nb, run);
                const float *x = l->in[0]->y + o, *rx = l->in[0]->ry + o;
                for (size_t j0 = 0; j0 < run; j0 += NN_BN_CHUNK)
                    s_sums_gx(rx, x, j0, s_chunk_end(j0, run), mu, inv, mrx, mxrx);
            }
            for (int k = 0; k < NN_BLK; k++) {
                mrx[k] /= (double)m;
                mxrx[k] /= (double)m;
            }
        }
        float c0[NN_BLK], c1[NN_BLK], c2[NN_BLK], muf[NN_BLK];
        for (int k = 0; k < NN_BLK; k++) {
            float kk[3];
            s_rfwd_coef(b, cb * NN_BLK + k, mrx[k], mxrx[k], kk);
            c0[k] = ra ? kk[0] : 0.0f, c1[k] = kk[1], c2[k] = kk[2], muf[k] = mu[k];
        }
        for (int i = 0; i < n; i++) {
            const size_t o = s_run_off(i, cb, nb, run);
            const float *x = l->in[0]->y + o, *rx = ra ? l->in[0]->ry + o : NULL;
            float *ry = l->out->ry + o;
            if (ra && !b->train && !l->in_block) { /* R{y} = gamma inv Rx: x is not read */
                const float *y = l->out->relu ? l->out->y + o : NULL;
                for (size_t j = 0; y && j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++)
                        ry[j + k] = y[j + k] > 0.0f ? c0[k] * rx[j + k] : 0.0f;
                for (size_t j = 0; !y && j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++)
                        ry[j + k] = c0[k] * rx[j + k];
                continue;
            }
            if (l->out->relu) { /* R{y} of the in-place ReLU: R{v} where its output y > 0 */
                const float *y = l->out->y + o;
                for (size_t j = 0; j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++) {
                        const float v =
                            c0[k] * (ra ? rx[j + k] : 0.0f) + c1[k] * (x[j + k] - muf[k]) + c2[k];
                        ry[j + k] = y[j + k] > 0.0f ? v : 0.0f;
                    }
                continue;
            }
            if (ra) {
                for (size_t j = 0; j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++)
                        ry[j + k] = c0[k] * rx[j + k] + c1[k] * (x[j + k] - muf[k]) + c2[k];
            } else {
                for (size_t j = 0; j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++)
                        ry[j + k] = c1[k] * (x[j + k] - muf[k]) + c2[k];
            }
        }
    }
}

/* The five R-backward sums of one channel block (S_DY.. per lane), in one sweep. */
static void s_rbwd_sums_blk(const struct nn_bn *b, const struct nn_ctx *ctx, int cb,
                            double sum[S_NSUMS][NN_BLK])
{
    const struct nn_layer *l = &b->base;
    const int n = ctx->n, nb = b->c / NN_BLK, ra = l->in[0]->r_active;
    const size_t run = b->hw * NN_BLK;
    float mu[NN_BLK], inv[NN_BLK], mrx[NN_BLK], mxrx[NN_BLK];
    s_lanes(b, cb, mu, inv);
    for (int k = 0; k < NN_BLK; k++) {
        mrx[k] = (float)b->mrx[cb * NN_BLK + k];
        mxrx[k] = (float)b->mxrx[cb * NN_BLK + k];
    }
    memset(sum, 0, sizeof(double) * S_NSUMS * NN_BLK);
    for (int i = 0; i < n; i++) {
        const size_t o = s_run_off(i, cb, nb, run);
        const float *x = l->in[0]->y + o, *dy = l->out->dy + o, *rdy = l->out->rdy + o;
        const float *rx = ra ? l->in[0]->ry + o : x; /* x: any readable run when not R-active */
        for (size_t j0 = 0; j0 < run; j0 += NN_BN_CHUNK) {
            float a[S_NSUMS][NN_BLK] = {{0}};
            if (l->out->relu) { /* dy too where the backward did not run (block HVP) */
                if (!b->dy_masked)
                    s_relu_mask(l->out->dy + o, l->out->y + o, j0, s_chunk_end(j0, run));
                s_relu_mask(l->out->rdy + o, l->out->y + o, j0, s_chunk_end(j0, run));
            }
            for (size_t j = j0; j < s_chunk_end(j0, run); j += NN_BLK)
                for (int k = 0; k < NN_BLK; k++) {
                    const float xh = (x[j + k] - mu[k]) * inv[k];
                    a[S_DY][k] += dy[j + k];
                    a[S_DYX][k] += dy[j + k] * xh;
                    a[S_RDY][k] += rdy[j + k];
                    a[S_RDYX][k] += rdy[j + k] * xh;
                    a[S_DYRX][k] += dy[j + k] * (inv[k] * (rx[j + k] - mrx[k] - xh * mxrx[k]));
                }
            for (int t = 0; t < S_NSUMS; t++)
                for (int k = 0; k < NN_BLK; k++)
                    sum[t][k] += a[t][k];
        }
    }
    if (!ra)
        memset(sum[S_DYRX], 0, sizeof sum[S_DYRX]);
}

static void s_rbackward_blk(struct nn_bn *b, const struct nn_ctx *ctx, int set)
{
    struct nn_layer *l = &b->base;
    const int n = ctx->n, nb = b->c / NN_BLK;
    const int ra = l->in[0]->r_active, need_dx = l->in[0]->need_dy;
    const size_t m = (size_t)n * b->hw, run = b->hw * NN_BLK;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int cb = 0; cb < nb; cb++) {
        double sum[S_NSUMS][NN_BLK];
        s_rbwd_sums_blk(b, ctx, cb, sum);
        float c[5][NN_BLK], muf[NN_BLK];
        for (int k = 0; k < NN_BLK; k++) {
            const double one[S_NSUMS] = {sum[S_DY][k], sum[S_DYX][k], sum[S_RDY][k], sum[S_RDYX][k],
                                         sum[S_DYRX][k]};
            float kk[5];
            s_rbwd_param(b, cb * NN_BLK + k, one);
            s_rbwd_coef(b, cb * NN_BLK + k, one, m, kk);
            for (int t = 0; t < 5; t++)
                c[t][k] = kk[t];
            c[3][k] = ra ? c[3][k] : 0.0f;
            muf[k] = (float)b->mu[cb * NN_BLK + k];
        }
        if (!need_dx)
            continue;
        for (int i = 0; i < n; i++) {
            const size_t o = s_run_off(i, cb, nb, run);
            const float *x = l->in[0]->y + o, *dy = l->out->dy + o, *rdy = l->out->rdy + o;
            const float *rx = ra ? l->in[0]->ry + o : NULL;
            float *rdx = l->in[0]->rdy + o;
            if (ra) {
                for (size_t j = 0; j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++)
                        rdx[j + k] = (set ? 0.0f : rdx[j + k]) + c[0][k] * dy[j + k] +
                                     c[1][k] * rdy[j + k] + c[2][k] * (x[j + k] - muf[k]) +
                                     c[3][k] * rx[j + k] + c[4][k];
            } else {
                for (size_t j = 0; j < run; j += NN_BLK)
                    for (int k = 0; k < NN_BLK; k++)
                        rdx[j + k] = (set ? 0.0f : rdx[j + k]) + c[0][k] * dy[j + k] +
                                     c[1][k] * rdy[j + k] + c[2][k] * (x[j + k] - muf[k]) + c[4][k];
            }
        }
    }
}

/* ---- channel-blocked, eval mode ---------------------------------------------------------------
 * With the running statistics mu and inv are constants: dx = inv gamma dy and R{dx} = inv (vg dy +
 * gamma R{dy}) read neither x nor Rx, and their coefficients depend on no sum. So one sweep per
 * chunk masks by the ReLU, forms only the sums that are asked for (parameter gradients; the
 * block's R-gradients) and writes dx or R{dx}: the HVPs of an eigen computation (BatchNorm in eval
 * mode by default) read each tensor once instead of twice. */

static void s_backward_blk_eval(struct nn_bn *b, const struct nn_ctx *ctx, int set)
{
    struct nn_layer *l = &b->base;
    const int n = ctx->n, nb = b->c / NN_BLK, need_dx = l->in[0]->need_dy;
    const int sums = ctx->param_grad, mask = l->out->relu && !b->dy_masked;
    const size_t m = (size_t)n * b->hw, run = b->hw * NN_BLK;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int cb = 0; cb < nb; cb++) {
        float mu[NN_BLK], inv[NN_BLK], k0[NN_BLK];
        s_lanes(b, cb, mu, inv);
        for (int k = 0; k < NN_BLK; k++) {
            float kk[3];
            s_bwd_coef(b, cb * NN_BLK + k, 0.0, 0.0, m, kk);
            k0[k] = kk[0];
        }
        double sdy[NN_BLK] = {0}, sdyx[NN_BLK] = {0};
        for (int i = 0; i < n; i++) {
            const size_t o = s_run_off(i, cb, nb, run);
            const float *x = l->in[0]->y + o, *dy = l->out->dy + o;
            float *dx = need_dx ? l->in[0]->dy + o : NULL;
            for (size_t j0 = 0; j0 < run; j0 += NN_BN_CHUNK) {
                const size_t j1 = s_chunk_end(j0, run);
                if (mask)
                    s_relu_mask(l->out->dy + o, l->out->y + o, j0, j1);
                if (sums)
                    s_sums_gx(dy, x, j0, j1, mu, inv, sdy, sdyx);
                if (dx && set) {
                    for (size_t j = j0; j < j1; j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++)
                            dx[j + k] = k0[k] * dy[j + k];
                } else if (dx) {
                    for (size_t j = j0; j < j1; j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++)
                            dx[j + k] += k0[k] * dy[j + k];
                }
            }
        }
        for (int k = 0; sums && k < NN_BLK; k++)
            s_bwd_param(b, ctx, cb * NN_BLK + k, sdy[k], sdyx[k]);
    }
}

static void s_rbackward_blk_eval(struct nn_bn *b, const struct nn_ctx *ctx, int set)
{
    struct nn_layer *l = &b->base;
    const int n = ctx->n, nb = b->c / NN_BLK, ra = l->in[0]->r_active;
    const int need_dx = l->in[0]->need_dy, ib = l->in_block, relu = l->out->relu;
    const size_t m = (size_t)n * b->hw, run = b->hw * NN_BLK;
#pragma omp parallel for schedule(static) if (m * b->c >= NN_BN_PAR_MIN)
    for (int cb = 0; cb < nb; cb++) {
        float mu[NN_BLK], inv[NN_BLK], k0[NN_BLK], k1[NN_BLK];
        s_lanes(b, cb, mu, inv);
        static const double none[S_NSUMS];
        for (int k = 0; k < NN_BLK; k++) {
            float kk[5];
            s_rbwd_coef(b, cb * NN_BLK + k, none, m, kk);
            k0[k] = kk[0], k1[k] = kk[1];
        }
        double sum[S_NSUMS][NN_BLK] = {{0}};
        float rm[NN_BN_CHUNK]; /* R{dy} of the chunk, masked by the ReLU */
        for (int i = 0; i < n; i++) {
            const size_t o = s_run_off(i, cb, nb, run);
            const float *x = l->in[0]->y + o, *y = l->out->y + o, *dy = l->out->dy + o;
            const float *rdy = l->out->rdy + o, *rx = ra ? l->in[0]->ry + o : NULL;
            float *rdx = need_dx ? l->in[0]->rdy + o : NULL;
            for (size_t j0 = 0; j0 < run; j0 += NN_BN_CHUNK) {
                const size_t j1 = s_chunk_end(j0, run), len = j1 - j0;
                if (relu && !b->dy_masked) /* the backward did not run (block HVP) */
                    s_relu_mask(l->out->dy + o, y, j0, j1);
                const float *r = rdy + j0;
                if (relu) {
#pragma omp simd
                    for (size_t j = 0; j < len; j++)
                        rm[j] = y[j0 + j] > 0.0f ? rdy[j0 + j] : 0.0f;
                    r = rm;
                }
                if (ib) {
                    float a[3][NN_BLK] = {{0}};
                    for (size_t j = 0; j < len; j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++) {
                            a[0][k] += r[j + k];
                            a[1][k] += r[j + k] * ((x[j0 + j + k] - mu[k]) * inv[k]);
                        }
                    for (size_t j = 0; ra && j < len; j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++)
                            a[2][k] += dy[j0 + j + k] * (inv[k] * rx[j0 + j + k]);
                    for (int k = 0; k < NN_BLK; k++) {
                        sum[S_RDY][k] += a[0][k];
                        sum[S_RDYX][k] += a[1][k];
                        sum[S_DYRX][k] += a[2][k];
                    }
                }
                if (rdx && set) {
                    for (size_t j = 0; j < len; j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++)
                            rdx[j0 + j + k] = k0[k] * dy[j0 + j + k] + k1[k] * r[j + k];
                } else if (rdx) {
                    for (size_t j = 0; j < len; j += NN_BLK)
                        for (int k = 0; k < NN_BLK; k++)
                            rdx[j0 + j + k] += k0[k] * dy[j0 + j + k] + k1[k] * r[j + k];
                }
            }
        }
        for (int k = 0; ib && k < NN_BLK; k++) {
            const double one[S_NSUMS] = {0.0, 0.0, sum[S_RDY][k], sum[S_RDYX][k], sum[S_DYRX][k]};
            s_rbwd_param(b, cb * NN_BLK + k, one);
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
        s_forward_blk(b, ctx);
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
            s_backward_blk(b, ctx, set);
        else
            s_backward_blk_eval(b, ctx, set);
        b->dy_masked = l->out->relu;
    } else {
        s_backward_cnhw(b, ctx, set);
    }
}

static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_bn *b = (struct nn_bn *)l;
    if (l->out->blk)
        s_rforward_blk(b, ctx);
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
            s_rbackward_blk(b, ctx, set);
        else
            s_rbackward_blk_eval(b, ctx, set);
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
