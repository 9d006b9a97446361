/*
 * nn_bn_blk: BatchNorm2d's passes on channel-blocked nodes (nn_layer.h: per sample and block of
 * NN_BLK channels one run of h*w*NN_BLK values, vectorised across the channels), in train and eval
 * mode, with the in-place ReLU after it (nn_node.relu) applied here. The formulas and the
 * per-channel coefficients are nn_bn.c's.
 */
#include <string.h>

#include "nn_bn_impl.h"

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

void nn_bn_forward_blk(struct nn_bn *b, const struct nn_ctx *ctx)
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
            nn_bn_fwd_coef(b, ctx, cb * NN_BLK + k, s[k], ss[k], m, &scale[k], &muf[k]);
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

void nn_bn_backward_blk(struct nn_bn *b, const struct nn_ctx *ctx, int set)
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
            nn_bn_bwd_param(b, ctx, cb * NN_BLK + k, sdy[k], sdyx[k]);
            nn_bn_bwd_coef(b, cb * NN_BLK + k, sdy[k], sdyx[k], m, kk);
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

void nn_bn_rforward_blk(struct nn_bn *b, const struct nn_ctx *ctx)
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
            nn_bn_rfwd_coef(b, cb * NN_BLK + k, mrx[k], mxrx[k], kk);
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

void nn_bn_rbackward_blk(struct nn_bn *b, const struct nn_ctx *ctx, int set)
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
            nn_bn_rbwd_param(b, cb * NN_BLK + k, one);
            nn_bn_rbwd_coef(b, cb * NN_BLK + k, one, m, kk);
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

void nn_bn_backward_blk_eval(struct nn_bn *b, const struct nn_ctx *ctx, int set)
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
            nn_bn_bwd_coef(b, cb * NN_BLK + k, 0.0, 0.0, m, kk);
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
            nn_bn_bwd_param(b, ctx, cb * NN_BLK + k, sdy[k], sdyx[k]);
    }
}

void nn_bn_rbackward_blk_eval(struct nn_bn *b, const struct nn_ctx *ctx, int set)
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
            nn_bn_rbwd_coef(b, cb * NN_BLK + k, none, m, kk);
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
            nn_bn_rbwd_param(b, cb * NN_BLK + k, one);
        }
    }
}
