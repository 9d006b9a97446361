/*
 * nn_conv: Conv2d over a whole CNHW batch as GEMMs, with backward and both R-operator passes.
 *
 * Shapes (per pass of n samples; K = in*k*k rows of the im2col matrix, P = oh*ow):
 *   x  [in  x n*ih*iw]  (CNHW)        W, V [out x K]  (PyTorch's (out, in, kh, kw), row-major)
 *   y  [out x n*P]      (CNHW)        col(x) [K x n*P]
 *   y = W col(x) (+ b)                    dW += dY col(x)^T,   dx += col2im(W^T dY)
 *   Ry = W col(Rx) + V col(x) (+ vb)      R{dx} += col2im(W^T R{dY} + V^T dY)
 *                                          R{dW} += R{dY} col(x)^T + dY col(Rx)^T
 * The batch is processed in chunks of images whose im2col block fits in cache: the column matrix of
 * a whole batch is k*k times the activation (hundreds of MiB for a ResNet at batch 128), so it is
 * neither stored between passes nor built whole; each pass rebuilds the chunk it needs in ctx->work
 * (the net reserves work_per_sample * max_batch floats; the conv asks for one chunk's worth). The
 * GEMM of a chunk writes its output columns in place, since the columns of images i0..i1 of each
 * CNHW output row are contiguous.
 * A 1x1 stride-1 unpadded convolution needs no im2col: col(x) is x itself.
 * Where oneDNN is built in (nn_dnnl.h), passes of max_batch samples (every training step and HVP
 * of a net) run its convolutions instead, with the same formulas: R-forward is two forward
 * convolutions, the R-backward input term two transposed ones, the weight R-gradient two filter
 * gradients. Other batch sizes, and every pass when EB_CONV_IM2COL is set in the environment at
 * setup, use im2col. oneDNN passes take the channel-blocked activations of nn_layer.h where the
 * net lays them out so (only passes of max_batch samples: im2col always sees CNHW).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn_dnnl.h"
#include "nn_gemm.h"
#include "nn_layer.h"

/* Target size of one chunk's im2col block, in floats (1 MiB: stays in L2/L3 between im2col and
 * the GEMM that reads it). */
#ifndef NN_CONV_CHUNK_FLOATS
#define NN_CONV_CHUNK_FLOATS (256 * 1024)
#endif
/* Smallest im2col block (floats) worth a parallel region; below it threads cost more than they
 * save. */
#define NN_CONV_PAR_MIN (32 * 1024)

struct nn_conv {
    struct nn_layer base; /* common header (first) */
    int out_c;            /* output channels */
    int k;                /* kernel size (square) */
    int stride;           /* stride (both directions) */
    int pad;              /* zero padding (both sides, both directions) */
    int has_bias;         /* 1: a bias tensor follows the weight */
    int in_c;             /* input channels (fixed at setup) */
    int ih, iw;           /* input height and width */
    int oh, ow;           /* output height and width */
    int rows;             /* im2col rows: in_c * k * k */
    int direct;           /* 1x1, stride 1, pad 0: col(x) is x itself */
    nn_dnnl_conv_t *dnnl; /* oneDNN primitives for passes of max_batch samples, or NULL */
    int dnnl_n;           /* the batch those primitives were made for */
};

/* ---- im2col / col2im over a chunk of images ------------------------------------------------ */

/* Range [*lo, *hi) of output columns ox whose input column ox*s - p + kj lies in [0, iw). */
static void s_valid_range(int kj, int s, int p, int iw, int ow, int *lo, int *hi)
{
    int a = p - kj; /* need ox*s >= a */
    int l = a <= 0 ? 0 : (a + s - 1) / s;
    int b = iw - 1 + p - kj; /* need ox*s <= b */
    int h = b < 0 ? 0 : b / s + 1;
    if (h > ow)
        h = ow;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

/* The geometry shared by s_im2col_same and s_col2im_same for kernel offset (ki, kj): the output
 * rows [*oy0, *oy1) whose input row oy - p + ki exists (*oy1 >= *oy0), and the offset from an
 * output element to the input element it reads. */
static ptrdiff_t s_same_rows(int ih, int iw, int oh, int p, int ki, int kj, int *oy0, int *oy1)
{
    int a = p - ki, b = ih + p - ki; /* rows with 0 <= oy - p + ki < ih */
    if (a < 0)
        a = 0;
    if (b > oh)
        b = oh;
    if (b < a)
        b = a;
    *oy0 = a;
    *oy1 = b;
    return (ptrdiff_t)(ki - p) * iw + (kj - p);
}

/* Zero the columns outside [lo, hi) of rows [oy0, oy1) of a plane iw wide. */
static void s_zero_outside(float *plane, int iw, int oy0, int oy1, int lo, int hi)
{
    for (int oy = oy0; oy < oy1; oy++) {
        float *row = plane + (size_t)oy * iw;
        for (int ox = 0; ox < lo; ox++)
            row[ox] = 0.0f;
        for (int ox = hi; ox < iw; ox++)
            row[ox] = 0.0f;
    }
}

/* One im2col row (kernel offset ki, kj; valid output columns [lo, hi)) of nb images for a stride-1
 * convolution whose output is as wide as its input (ow == iw, e.g. 3x3 with padding 1). Then output
 * element d = oy*ow + ox reads input element d + (ki - p)*iw + (kj - p) of the same plane, so the
 * valid rows of an image are one contiguous copy instead of one short copy per output row; the
 * columns outside [lo, hi) that the copy filled from neighbouring input rows are zeroed after it.
 * Writes exactly the values of the row-by-row loop. */
static void s_im2col_same(float *dst, const float *src, int nb, int ih, int iw, int oh, int p,
                          int ki, int kj, int lo, int hi)
{
    const size_t plane = (size_t)ih * iw, oplane = (size_t)oh * iw;
    int oy0, oy1;
    const ptrdiff_t shift = s_same_rows(ih, iw, oh, p, ki, kj, &oy0, &oy1);
    for (int i = 0; i < nb; i++, src += plane, dst += oplane) {
        if (oy1 == oy0 || hi <= lo) { /* nothing of the input under this kernel offset */
            memset(dst, 0, sizeof(float) * oplane);
            continue;
        }
        memset(dst, 0, sizeof(float) * (size_t)oy0 * iw);
        memset(dst + (size_t)oy1 * iw, 0, sizeof(float) * (size_t)(oh - oy1) * iw);
        const size_t d0 = (size_t)oy0 * iw + lo, d1 = (size_t)(oy1 - 1) * iw + hi;
        memcpy(dst + d0, src + d0 + shift, sizeof(float) * (d1 - d0));
        s_zero_outside(dst, iw, oy0, oy1, lo, hi);
    }
}

/* col [rows x nb*P] (row stride nb*P) <- im2col of images i0..i0+nb-1 of the CNHW batch x of n. */
static void s_im2col(const struct nn_conv *c, const float *x, int n, int i0, int nb, float *col)
{
    const int k = c->k, s = c->stride, p = c->pad, ih = c->ih, iw = c->iw, oh = c->oh, ow = c->ow;
    const size_t ncols = (size_t)nb * oh * ow;
    const size_t plane = (size_t)ih * iw;
#pragma omp parallel for schedule(static) if (ncols * c->rows >= NN_CONV_PAR_MIN)
    for (int r = 0; r < c->rows; r++) {
        const int ch = r / (k * k), ki = (r / k) % k, kj = r % k;
        int lo, hi;
        s_valid_range(kj, s, p, iw, ow, &lo, &hi);
        float *dst = col + (size_t)r * ncols;
        const float *src = x + ((size_t)ch * n + i0) * plane;
        if (s == 1 && ow == iw) {
            s_im2col_same(dst, src, nb, ih, iw, oh, p, ki, kj, lo, hi);
            continue;
        }
        for (int i = 0; i < nb; i++, src += plane) {
            for (int oy = 0; oy < oh; oy++, dst += ow) {
                const int iy = oy * s - p + ki;
                if (iy < 0 || iy >= ih) {
                    memset(dst, 0, sizeof(float) * ow);
                    continue;
                }
                const float *row = src + (size_t)iy * iw - p + kj;
                for (int ox = 0; ox < lo; ox++)
                    dst[ox] = 0.0f;
                if (s == 1) {
                    memcpy(dst + lo, row + lo, sizeof(float) * (hi - lo));
                } else {
                    for (int ox = lo; ox < hi; ox++)
                        dst[ox] = row[ox * s];
                }
                for (int ox = hi; ox < ow; ox++)
                    dst[ox] = 0.0f;
            }
        }
    }
}

/* One im2col row's contribution to dx for a stride-1 convolution with ow == iw (the layout of
 * s_im2col_same): input element d + shift of an image plane receives col element d. The columns
 * outside [lo, hi) of col are first set to zero in place, so the valid rows are one contiguous
 * add; a neighbouring input element then receives +0, which leaves its value unchanged. */
static void s_col2im_same(float *src, float *img, int nb, int ih, int iw, int oh, int p, int ki,
                          int kj, int lo, int hi)
{
    const size_t plane = (size_t)ih * iw, oplane = (size_t)oh * iw;
    int oy0, oy1;
    const ptrdiff_t shift = s_same_rows(ih, iw, oh, p, ki, kj, &oy0, &oy1);
    if (oy1 <= oy0 || hi <= lo)
        return;
    const size_t d0 = (size_t)oy0 * iw + lo, d1 = (size_t)(oy1 - 1) * iw + hi;
    for (int i = 0; i < nb; i++, src += oplane, img += plane) {
        s_zero_outside(src, iw, oy0, oy1, lo, hi);
        float *dst = img + shift;
        for (size_t d = d0; d < d1; d++)
            dst[d] += src[d];
    }
}

/* dx (CNHW batch of n) += col2im of col [rows x nb*P] for images i0..i0+nb-1. One thread per input
 * channel, so no two threads add into the same element. col is scratch: it may be overwritten. */
static void s_col2im(const struct nn_conv *c, float *col, int n, int i0, int nb, float *dx)
{
    const int k = c->k, s = c->stride, p = c->pad, ih = c->ih, iw = c->iw, oh = c->oh, ow = c->ow;
    const size_t ncols = (size_t)nb * oh * ow;
    const size_t plane = (size_t)ih * iw;
#pragma omp parallel for schedule(static) if (ncols * c->rows >= NN_CONV_PAR_MIN)
    for (int ch = 0; ch < c->in_c; ch++) {
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                int lo, hi;
                s_valid_range(kj, s, p, iw, ow, &lo, &hi);
                float *src = col + ((size_t)(ch * k + ki) * k + kj) * ncols;
                float *img = dx + ((size_t)ch * n + i0) * plane;
                if (s == 1 && ow == iw) {
                    s_col2im_same(src, img, nb, ih, iw, oh, p, ki, kj, lo, hi);
                    continue;
                }
                for (int i = 0; i < nb; i++, img += plane) {
                    for (int oy = 0; oy < oh; oy++, src += ow) {
                        const int iy = oy * s - p + ki;
                        if (iy < 0 || iy >= ih)
                            continue;
                        float *row = img + (size_t)iy * iw - p + kj;
                        if (s == 1) {
                            for (int ox = lo; ox < hi; ox++)
                                row[ox] += src[ox];
                        } else {
                            for (int ox = lo; ox < hi; ox++)
                                row[ox * s] += src[ox];
                        }
                    }
                }
            }
        }
    }
}

/* ---- chunk helpers --------------------------------------------------------------------------- */

/* Images per chunk for a pass of n samples. */
static int s_chunk(const struct nn_conv *c, int n)
{
    if (c->direct)
        return n;
    size_t per = (size_t)c->rows * c->oh * c->ow;
    size_t nb = NN_CONV_CHUNK_FLOATS / (per ? per : 1);
    if (nb < 1)
        nb = 1;
    return nb < (size_t)n ? (int)nb : n;
}

/* The im2col block of images i0..i0+nb-1 of src: src itself (direct) or built in work.
 * *ld receives its row stride. */
static const float *s_col(const struct nn_conv *c, const float *src, int n, int i0, int nb,
                          float *work, int *ld)
{
    const int pp = c->oh * c->ow;
    if (c->direct) {
        *ld = n * pp;
        return src + (size_t)i0 * pp;
    }
    s_im2col(c, src, n, i0, nb, work);
    *ld = nb * pp;
    return work;
}

/* dx (images i0..i0+nb-1) += col2im(W^T dY [+ V^T dY2]) for one chunk. dy, dy2 point at the chunk's
 * first column; their row stride is n*P. */
static void s_input_grad(const struct nn_conv *c, const float *wt, const float *dy, const float *vt,
                         const float *dy2, int n, int i0, int nb, float *work, float *dx)
{
    const int pp = c->oh * c->ow, ldy = n * pp;
    if (c->direct) {
        float *dst = dx + (size_t)i0 * pp;
        nn_gemm(NN_TRANS, NN_NO_TRANS, c->rows, nb * pp, c->out_c, 1.0f, wt, c->rows, dy, ldy, 1.0f,
                dst, ldy);
        if (vt)
            nn_gemm(NN_TRANS, NN_NO_TRANS, c->rows, nb * pp, c->out_c, 1.0f, vt, c->rows, dy2, ldy,
                    1.0f, dst, ldy);
        return;
    }
    nn_gemm(NN_TRANS, NN_NO_TRANS, c->rows, nb * pp, c->out_c, 1.0f, wt, c->rows, dy, ldy, 0.0f,
            work, nb * pp);
    if (vt)
        nn_gemm(NN_TRANS, NN_NO_TRANS, c->rows, nb * pp, c->out_c, 1.0f, vt, c->rows, dy2, ldy,
                1.0f, work, nb * pp);
    s_col2im(c, work, n, i0, nb, dx);
}

/* gb[o] += scale * sum of row o of d [out x cols]. */
static void s_bias_grad(const float *d, int out_c, size_t cols, float scale, float *gb)
{
#pragma omp parallel for schedule(static) if (cols * out_c >= NN_CONV_PAR_MIN)
    for (int o = 0; o < out_c; o++) {
        const float *row = d + (size_t)o * cols;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (size_t j = 0; j < cols; j++)
            acc += row[j];
        gb[o] += scale * (float)acc;
    }
}

/* y[o, :] += b[o] over [out x cols]. */
static void s_bias_add(float *y, const float *b, int out_c, size_t cols)
{
#pragma omp parallel for schedule(static) if (cols * out_c >= NN_CONV_PAR_MIN)
    for (int o = 0; o < out_c; o++) {
        float *row = y + (size_t)o * cols;
        const float bo = b[o];
        for (size_t j = 0; j < cols; j++)
            row[j] += bo;
    }
}

static float *s_work(const struct nn_conv *c, const struct nn_ctx *ctx, int nb)
{
    if (c->direct)
        return NULL;
    NN_ASSERT(ctx->work && ctx->work_floats >= (size_t)nb * c->rows * c->oh * c->ow);
    return ctx->work;
}

/* ---- passes through oneDNN (n == dnnl_n) -------------------------------------------------- */

/* The channel-blocked sides of this pass (enum nn_dnnl_blk), as the net laid out its nodes. */
static unsigned s_blk(const struct nn_conv *c)
{
    return (c->base.in[0]->blk ? NN_DNNL_BLK_X : 0) | (c->base.out->blk ? NN_DNNL_BLK_Y : 0);
}

/* oneDNN runs passes of the batch its primitives were made for; the net lays out nodes
 * channel-blocked only in those passes, so the im2col passes always see CNHW. */
static int s_use_dnnl(const struct nn_conv *c, const struct nn_ctx *ctx)
{
    const int on = c->dnnl && ctx->n == c->dnnl_n;
    NN_ASSERT(on || !s_blk(c));
    return on;
}

static float *s_dnnl_work(const struct nn_conv *c, const struct nn_ctx *ctx)
{
    NN_ASSERT(ctx->work && ctx->work_floats >= nn_dnnl_conv_work_floats(c->dnnl));
    return ctx->work;
}

/* y = conv(W, x) (+ b). */
static void s_dnnl_forward(struct nn_conv *c, const struct nn_ctx *ctx)
{
    struct nn_layer *l = &c->base;
    nn_dnnl_conv_forward(c->dnnl, l->in[0]->y, l->w, l->out->y, 0, s_blk(c), s_dnnl_work(c, ctx));
    if (c->has_bias)
        s_bias_add(l->out->y, l->w + (size_t)c->out_c * c->rows, c->out_c,
                   (size_t)ctx->n * c->oh * c->ow);
}

/* dW += scale * fgrad(dY, x);  db += scale * rowsum(dY);  dx += convT(W, dY). */
static void s_dnnl_backward(struct nn_conv *c, const struct nn_ctx *ctx, int need_dx, int need_dw,
                            int set)
{
    struct nn_layer *l = &c->base;
    const unsigned blk = s_blk(c) | (set ? NN_DNNL_SET_DX : 0);
    nn_dnnl_conv_backward(c->dnnl, l->out->dy, l->in[0]->y, ctx->grad_scale, need_dw ? l->g : NULL,
                          l->w, need_dx ? l->in[0]->dy : NULL, blk, s_dnnl_work(c, ctx));
    if (need_dw && c->has_bias)
        s_bias_grad(l->out->dy, c->out_c, (size_t)ctx->n * c->oh * c->ow, ctx->grad_scale,
                    l->g + (size_t)c->out_c * c->rows);
}

/* Ry = conv(W, Rx) [input R-active] + conv(V, x) (+ vb) [layer in the block]; one of them holds.
 */
static void s_dnnl_rforward(struct nn_conv *c, const struct nn_ctx *ctx, int ra, int ib)
{
    struct nn_layer *l = &c->base;
    float *work = s_dnnl_work(c, ctx);
    const unsigned blk = s_blk(c);
    if (ra)
        nn_dnnl_conv_forward(c->dnnl, l->in[0]->ry, l->w, l->out->ry, 0, blk, work);
    if (ib) {
        nn_dnnl_conv_forward(c->dnnl, l->in[0]->y, l->v, l->out->ry, ra, blk, work);
        if (c->has_bias)
            s_bias_add(l->out->ry, l->v + (size_t)c->out_c * c->rows, c->out_c,
                       (size_t)ctx->n * c->oh * c->ow);
    }
}

/* R{dx} += convT(W, R{dY}) + convT(V, dY);  R{dW} += fgrad(R{dY}, x) + fgrad(dY, Rx);
 * R{db} += rowsum(R{dY}). V and R{dW} only in the block; fgrad(dY, Rx) only when R-active. */
static void s_dnnl_rbackward(struct nn_conv *c, const struct nn_ctx *ctx, int ra, int ib,
                             int need_dx, int set)
{
    struct nn_layer *l = &c->base;
    float *work = s_dnnl_work(c, ctx);
    const float *dy = l->out->dy, *rdy = l->out->rdy;
    float *rdx = need_dx ? l->in[0]->rdy : NULL;
    const unsigned blk = s_blk(c);
    /* the terms of R{dY}: fgrad(R{dY}, x) and convT(W, R{dY}) */
    nn_dnnl_conv_backward(c->dnnl, rdy, l->in[0]->y, 1.0f, ib ? l->hv : NULL, l->w, rdx,
                          blk | (set ? NN_DNNL_SET_DX : 0), work);
    /* the terms of dY: fgrad(dY, Rx) and convT(V, dY) */
    if (ib && (ra || rdx))
        nn_dnnl_conv_backward(c->dnnl, dy, l->in[0]->ry, 1.0f, ra ? l->hv : NULL, l->v, rdx, blk,
                              work);
    if (ib && c->has_bias)
        s_bias_grad(rdy, c->out_c, (size_t)ctx->n * c->oh * c->ow, 1.0f,
                    l->hv + (size_t)c->out_c * c->rows);
}

/* ---- operations ------------------------------------------------------------------------------ */

static int s_setup(struct nn_layer *l, int max_batch)
{
    struct nn_conv *c = (struct nn_conv *)l;
    if (l->n_in != 1 || !l->in[0] || !l->out || max_batch < 1) {
        nn_report(3, "conv2d %s: needs exactly one input and a positive max batch", l->name);
        return NN_ERR_SHAPE;
    }
    const struct nn_shape *is = &l->in[0]->shape;
    const int oh = (is->h + 2 * c->pad - c->k) / c->stride + 1;
    const int ow = (is->w + 2 * c->pad - c->k) / c->stride + 1;
    if (is->c < 1 || is->h + 2 * c->pad < c->k || is->w + 2 * c->pad < c->k || oh < 1 || ow < 1) {
        nn_report(3, "conv2d %s: input %dx%dx%d too small for kernel %d pad %d", l->name, is->c,
                  is->h, is->w, c->k, c->pad);
        return NN_ERR_SHAPE;
    }
    c->in_c = is->c;
    c->ih = is->h;
    c->iw = is->w;
    c->oh = oh;
    c->ow = ow;
    c->rows = c->in_c * c->k * c->k;
    c->direct = c->k == 1 && c->stride == 1 && c->pad == 0;
    l->out->shape.c = c->out_c;
    l->out->shape.h = oh;
    l->out->shape.w = ow;

    memset(l->decl, 0, sizeof l->decl);
    strcpy(l->decl[0].suffix, "weight");
    l->decl[0].ndim = 4;
    l->decl[0].shape[0] = c->out_c;
    l->decl[0].shape[1] = c->in_c;
    l->decl[0].shape[2] = c->k;
    l->decl[0].shape[3] = c->k;
    l->n_decl = 1;
    if (c->has_bias) {
        strcpy(l->decl[1].suffix, "bias");
        l->decl[1].ndim = 1;
        l->decl[1].shape[0] = c->out_c;
        l->n_decl = 2;
    }
    /* Scratch for the largest chunk (passes of fewer samples use smaller chunks), expressed per
     * sample as the contract wants: the net reserves work_per_sample * max_batch floats. */
    const size_t chunk_floats = (size_t)s_chunk(c, max_batch) * c->rows * oh * ow;
    l->work_per_sample = c->direct ? 0 : (chunk_floats + max_batch - 1) / max_batch;
    nn_dnnl_conv_destroy(&c->dnnl);
    if (!getenv("EB_CONV_IM2COL")) {
        const struct nn_dnnl_conv_shape ds = {max_batch, c->in_c, c->ih, c->iw,     c->out_c,
                                              oh,        ow,      c->k,  c->stride, c->pad};
        c->dnnl = nn_dnnl_conv_new(&ds);
        c->dnnl_n = max_batch;
    }
    l->layout = 0;
    l->dx_set = 1; /* oneDNN overwrites a fresh dx; im2col zeroes it first */
    if (c->dnnl) {
        size_t per = (nn_dnnl_conv_work_floats(c->dnnl) + max_batch - 1) / max_batch;
        if (per > l->work_per_sample)
            l->work_per_sample = per;
        /* the bias loops (s_bias_add, s_bias_grad) read CNHW rows */
        const unsigned blk = nn_dnnl_conv_blocked(c->dnnl);
        if (blk & NN_DNNL_BLK_X)
            l->layout |= NN_LAYOUT_IN_BLK;
        if ((blk & NN_DNNL_BLK_Y) && !c->has_bias)
            l->layout |= NN_LAYOUT_OUT_BLK;
    }
    return NN_OK;
}

/* y = W col(x) (+ b), chunk by chunk. */
static void s_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_conv *c = (struct nn_conv *)l;
    if (s_use_dnnl(c, ctx)) {
        s_dnnl_forward(c, ctx);
        return;
    }
    const int n = ctx->n, pp = c->oh * c->ow, nbmax = s_chunk(c, n);
    float *work = s_work(c, ctx, nbmax);
    const float *x = l->in[0]->y;
    float *y = l->out->y;
    for (int i0 = 0; i0 < n; i0 += nbmax) {
        const int nb = n - i0 < nbmax ? n - i0 : nbmax;
        int ld;
        const float *col = s_col(c, x, n, i0, nb, work, &ld);
        nn_gemm(NN_NO_TRANS, NN_NO_TRANS, c->out_c, nb * pp, c->rows, 1.0f, l->w, c->rows, col, ld,
                0.0f, y + (size_t)i0 * pp, n * pp);
    }
    if (c->has_bias)
        s_bias_add(y, l->w + (size_t)c->out_c * c->rows, c->out_c, (size_t)n * pp);
}

/* dW += scale * dY col(x)^T;  db += scale * rowsum(dY);  dx += col2im(W^T dY). */
static void s_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_conv *c = (struct nn_conv *)l;
    const int n = ctx->n, pp = c->oh * c->ow, nbmax = s_chunk(c, n);
    const int need_dx = l->in[0]->need_dy, need_dw = ctx->param_grad;
    if (!need_dx && !need_dw)
        return;
    const int set = need_dx && nn_node_first_dy(l->in[0]);
    if (s_use_dnnl(c, ctx)) {
        s_dnnl_backward(c, ctx, need_dx, need_dw, set);
        return;
    }
    if (set)
        memset(l->in[0]->dy, 0, sizeof(float) * (size_t)c->in_c * n * c->ih * c->iw);
    float *work = s_work(c, ctx, nbmax);
    const float *dy = l->out->dy;
    for (int i0 = 0; i0 < n; i0 += nbmax) {
        const int nb = n - i0 < nbmax ? n - i0 : nbmax;
        const float *dyc = dy + (size_t)i0 * pp;
        if (need_dw) {
            int ld;
            const float *col = s_col(c, l->in[0]->y, n, i0, nb, work, &ld);
            nn_gemm(NN_NO_TRANS, NN_TRANS, c->out_c, c->rows, nb * pp, ctx->grad_scale, dyc, n * pp,
                    col, ld, 1.0f, l->g, c->rows);
        }
        if (need_dx)
            s_input_grad(c, l->w, dyc, NULL, NULL, n, i0, nb, work, l->in[0]->dy);
    }
    if (need_dw && c->has_bias)
        s_bias_grad(dy, c->out_c, (size_t)n * pp, ctx->grad_scale,
                    l->g + (size_t)c->out_c * c->rows);
}

/* Ry = W col(Rx) [if the input is R-active] + V col(x) (+ vb) [if the layer is in the block]. */
static void s_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_conv *c = (struct nn_conv *)l;
    const int n = ctx->n, pp = c->oh * c->ow, nbmax = s_chunk(c, n);
    const int ra = l->in[0]->r_active, ib = l->in_block;
    float *ry = l->out->ry;
    if (!ra && !ib) {
        memset(ry, 0, sizeof(float) * (size_t)c->out_c * n * pp);
        return;
    }
    if (s_use_dnnl(c, ctx)) {
        s_dnnl_rforward(c, ctx, ra, ib);
        return;
    }
    float *work = s_work(c, ctx, nbmax);
    for (int i0 = 0; i0 < n; i0 += nbmax) {
        const int nb = n - i0 < nbmax ? n - i0 : nbmax;
        float *dst = ry + (size_t)i0 * pp;
        int ld;
        if (ra) {
            const float *col = s_col(c, l->in[0]->ry, n, i0, nb, work, &ld);
            nn_gemm(NN_NO_TRANS, NN_NO_TRANS, c->out_c, nb * pp, c->rows, 1.0f, l->w, c->rows, col,
                    ld, 0.0f, dst, n * pp);
        }
        if (ib) {
            const float *col = s_col(c, l->in[0]->y, n, i0, nb, work, &ld);
            nn_gemm(NN_NO_TRANS, NN_NO_TRANS, c->out_c, nb * pp, c->rows, 1.0f, l->v, c->rows, col,
                    ld, ra ? 1.0f : 0.0f, dst, n * pp);
        }
    }
    if (ib && c->has_bias)
        s_bias_add(ry, l->v + (size_t)c->out_c * c->rows, c->out_c, (size_t)n * pp);
}

/* R{dx} += col2im(W^T R{dY} + V^T dY);  R{dW} += R{dY} col(x)^T + dY col(Rx)^T;
 * R{db} += rowsum(R{dY}). V and R{dW} only in the block; col(Rx) only when the input is R-active.
 */
static void s_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct nn_conv *c = (struct nn_conv *)l;
    const int n = ctx->n, pp = c->oh * c->ow, nbmax = s_chunk(c, n);
    const int ra = l->in[0]->r_active, ib = l->in_block, need_dx = l->in[0]->need_dy;
    if (!ib && !need_dx)
        return;
    const int set = need_dx && nn_node_first_rdy(l->in[0]);
    if (s_use_dnnl(c, ctx)) {
        s_dnnl_rbackward(c, ctx, ra, ib, need_dx, set);
        return;
    }
    if (set)
        memset(l->in[0]->rdy, 0, sizeof(float) * (size_t)c->in_c * n * c->ih * c->iw);
    float *work = s_work(c, ctx, nbmax);
    const float *dy = l->out->dy, *rdy = l->out->rdy;
    for (int i0 = 0; i0 < n; i0 += nbmax) {
        const int nb = n - i0 < nbmax ? n - i0 : nbmax;
        const size_t off = (size_t)i0 * pp;
        int ld;
        if (ib) {
            const float *col = s_col(c, l->in[0]->y, n, i0, nb, work, &ld);
            nn_gemm(NN_NO_TRANS, NN_TRANS, c->out_c, c->rows, nb * pp, 1.0f, rdy + off, n * pp, col,
                    ld, 1.0f, l->hv, c->rows);
            if (ra) {
                col = s_col(c, l->in[0]->ry, n, i0, nb, work, &ld);
                nn_gemm(NN_NO_TRANS, NN_TRANS, c->out_c, c->rows, nb * pp, 1.0f, dy + off, n * pp,
                        col, ld, 1.0f, l->hv, c->rows);
            }
        }
        if (need_dx)
            s_input_grad(c, l->w, rdy + off, ib ? l->v : NULL, dy + off, n, i0, nb, work,
                         l->in[0]->rdy);
    }
    if (ib && c->has_bias)
        s_bias_grad(rdy, c->out_c, (size_t)n * pp, 1.0f, l->hv + (size_t)c->out_c * c->rows);
}

/* PyTorch's default: kaiming_uniform(a = sqrt(5)) for the weight, i.e. U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)), and the same bound for the bias. */
static void s_init(struct nn_layer *l, struct nn_rng *rng)
{
    struct nn_conv *c = (struct nn_conv *)l;
    const float bound = 1.0f / sqrtf((float)c->rows);
    const size_t nw = (size_t)c->out_c * c->rows + (c->has_bias ? (size_t)c->out_c : 0);
    for (size_t i = 0; i < nw; i++)
        l->w[i] = (2.0f * nn_rng_uniform(rng) - 1.0f) * bound;
}

static double s_flops(const struct nn_layer *l)
{
    const struct nn_conv *c = (const struct nn_conv *)l;
    return 2.0 * c->out_c * (double)c->rows * c->oh * c->ow;
}

static void s_destroy(struct nn_layer *l)
{
    nn_dnnl_conv_destroy(&((struct nn_conv *)l)->dnnl);
}

static const struct nn_layer_ops s_conv_ops = {
    .kind = "conv2d",
    .setup = s_setup,
    .forward = s_forward,
    .backward = s_backward,
    .rforward = s_rforward,
    .rbackward = s_rbackward,
    .init = s_init,
    .flops = s_flops,
    .destroy = s_destroy,
};

struct nn_layer *nn_conv_new(const char *name, int out_c, int k, int stride, int pad, int bias)
{
    if (!name || !*name || strlen(name) >= NN_NAME_MAX || out_c < 1 || k < 1 || stride < 1 ||
        pad < 0) {
        nn_report(3, "conv2d %s: invalid arguments (out %d, k %d, stride %d, pad %d)",
                  name ? name : "(null)", out_c, k, stride, pad);
        return NULL;
    }
    struct nn_conv *c = nn_layer_alloc(sizeof *c, &s_conv_ops, name, 1);
    if (!c)
        return NULL;
    c->out_c = out_c;
    c->k = k;
    c->stride = stride;
    c->pad = pad;
    c->has_bias = bias ? 1 : 0;
    c->base.hp = (struct nn_layer_hp){
        .out_c = out_c, .k = k, .stride = stride, .pad = pad, .bias = c->has_bias};
    return &c->base;
}
