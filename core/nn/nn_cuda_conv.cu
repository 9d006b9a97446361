/*
 * nn_cuda_conv: Conv2d through cuDNN and Linear through cuBLAS, on the net's CNHW activations
 * (cuDNN takes them as strided NCHW descriptors: n-stride h*w, c-stride n*h*w). The weights are
 * PyTorch's [out, in, k, k] (cuDNN's KCRS) followed by the bias.
 *
 * Conv2d, with * the convolution, *^T its adjoint (backward-data) and (x ⋆ dy) the filter gradient
 * (backward-filter); V, vb the direction of W, b:
 *   forward    y = x * W + b
 *   backward   dW += s (x ⋆ dy),  db += s sum(dy),  dx += dy *^T W
 *   rforward   Ry = Rx * W + x * V + vb
 *   rbackward  R{dx} += Rdy *^T W + dy *^T V,  R{dW} += x ⋆ Rdy + Rx ⋆ dy,  R{db} += sum(Rdy)
 * so the three cuDNN calls serve all four passes. Algorithms are chosen by cuDNN's heuristics once
 * per batch size (at setup for the largest, again only when a pass's n differs from the last),
 * among those whose workspace fits the one reserved at setup for max_batch.
 */
#include "nn_cuda.h"

#define NN_CONV_ALGOS 8 /* candidates asked of cuDNN's heuristics */

struct s_conv_dev {
    cudnnTensorDescriptor_t xd, yd;        /* input, output (strided CNHW) */
    cudnnFilterDescriptor_t wd;            /* weights */
    cudnnConvolutionDescriptor_t cd;       /* padding, stride */
    int n;                                 /* batch the descriptors and algorithms are set for */
    cudnnConvolutionFwdAlgo_t fwd;         /* forward */
    cudnnConvolutionBwdDataAlgo_t bdata;   /* backward-data */
    cudnnConvolutionBwdFilterAlgo_t bfilt; /* backward-filter */
    void *ws;                              /* workspace */
    size_t ws_bytes;                       /* its size */
};

static void s_desc(cudnnTensorDescriptor_t d, int n, const struct nn_shape *s)
{
    int hw = s->h * s->w;
    CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, CUDNN_DATA_FLOAT, n, s->c, s->h, s->w, hw, n * hw,
                                             s->w, 1));
}

/* Set descriptors for n samples and pick algorithms whose workspace is at most `cap` bytes
 * (cap 0 at setup: no limit); *need receives the largest workspace of the three. */
static void s_plan(struct nn_layer *l, struct s_conv_dev *d, int n, size_t cap, size_t *need)
{
    cudnnHandle_t h = nn_cuda_ctx_get()->cudnn;
    s_desc(d->xd, n, &l->in[0]->shape);
    s_desc(d->yd, n, &l->out->shape);
    int got = 0;
    size_t ws = 0, best = 0;
    cudnnConvolutionFwdAlgoPerf_t fp[NN_CONV_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d->xd, d->wd, d->cd, d->yd, NN_CONV_ALGOS,
                                                       &got, fp));
    d->fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    for (int i = 0; i < got; i++)
        if (fp[i].status == CUDNN_STATUS_SUCCESS && (!cap || fp[i].memory <= cap)) {
            d->fwd = fp[i].algo;
            break;
        }
    CUDNN_CHECK(
        cudnnGetConvolutionForwardWorkspaceSize(h, d->xd, d->wd, d->cd, d->yd, d->fwd, &ws));
    best = ws;
    cudnnConvolutionBwdDataAlgoPerf_t dp[NN_CONV_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d->wd, d->yd, d->cd, d->xd,
                                                            NN_CONV_ALGOS, &got, dp));
    d->bdata = CUDNN_CONVOLUTION_BWD_DATA_ALGO_0;
    for (int i = 0; i < got; i++)
        if (dp[i].status == CUDNN_STATUS_SUCCESS && (!cap || dp[i].memory <= cap)) {
            d->bdata = dp[i].algo;
            break;
        }
    CUDNN_CHECK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(h, d->wd, d->yd, d->cd, d->xd, d->bdata, &ws));
    best = ws > best ? ws : best;
    cudnnConvolutionBwdFilterAlgoPerf_t bp[NN_CONV_ALGOS];
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d->xd, d->yd, d->cd, d->wd,
                                                              NN_CONV_ALGOS, &got, bp));
    d->bfilt = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0;
    for (int i = 0; i < got; i++)
        if (bp[i].status == CUDNN_STATUS_SUCCESS && (!cap || bp[i].memory <= cap)) {
            d->bfilt = bp[i].algo;
            break;
        }
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, d->xd, d->yd, d->cd, d->wd,
                                                               d->bfilt, &ws));
    best = ws > best ? ws : best;
    d->n = n;
    *need = best;
}

static int s_conv_setup(struct nn_layer *l, int max_batch)
{
    struct s_conv_dev *d = (struct s_conv_dev *)calloc(1, sizeof *d);
    if (!d)
        return NN_ERR_NOMEM;
    l->dev = d;
    const struct nn_layer_hp *hp = &l->hp;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->yd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&d->wd));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d->cd));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(d->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, hp->out_c,
                                           l->in[0]->shape.c, hp->k, hp->k));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d->cd, hp->pad, hp->pad, hp->stride, hp->stride, 1,
                                                1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    /* fp32 throughout: no TF32 tensor-op math, so results compare with the CPU at 1e-4 */
    CUDNN_CHECK(cudnnSetConvolutionMathType(d->cd, CUDNN_FMA_MATH));
    size_t need = 0;
    s_plan(l, d, max_batch, 0, &need);
    d->ws_bytes = need;
    d->ws = need ? nn_cuda_alloc(need) : NULL;
    if (nn_cuda_failed() || (need && !d->ws))
        return NN_ERR_NOMEM;
    return NN_OK;
}

static void s_conv_destroy(struct nn_layer *l)
{
    struct s_conv_dev *d = (struct s_conv_dev *)l->dev;
    if (!d)
        return;
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(d->xd));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(d->yd));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(d->wd));
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(d->cd));
    nn_cuda_free(d->ws);
    free(d);
    l->dev = NULL;
}

static struct s_conv_dev *s_conv_for(struct nn_layer *l, int n)
{
    struct s_conv_dev *d = (struct s_conv_dev *)l->dev;
    size_t need = 0;
    if (d->n != n)
        s_plan(l, d, n, d->ws_bytes ? d->ws_bytes : 1, &need);
    return d;
}

/* y (+)= alpha * x * W */
static void s_fwd(struct s_conv_dev *d, const float *x, const float *w, float *y, float beta)
{
    const float one = 1.0f;
    CUDNN_CHECK(cudnnConvolutionForward(nn_cuda_ctx_get()->cudnn, &one, d->xd, x, d->wd, w, d->cd,
                                        d->fwd, d->ws, d->ws_bytes, &beta, d->yd, y));
}

/* dx += dy *^T W */
static void s_bdata(struct s_conv_dev *d, const float *w, const float *dy, float *dx)
{
    const float one = 1.0f;
    CUDNN_CHECK(cudnnConvolutionBackwardData(nn_cuda_ctx_get()->cudnn, &one, d->wd, w, d->yd, dy,
                                             d->cd, d->bdata, d->ws, d->ws_bytes, &one, d->xd, dx));
}

/* dW += alpha * (x ⋆ dy) */
static void s_bfilt(struct s_conv_dev *d, const float *x, const float *dy, float *dw, float alpha)
{
    const float one = 1.0f;
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(nn_cuda_ctx_get()->cudnn, &alpha, d->xd, x, d->yd,
                                               dy, d->cd, d->bfilt, d->ws, d->ws_bytes, &one, d->wd,
                                               dw));
}

/* y[c*m + j] += b[c] for c < channels, j < m (bias over a CNHW channel run). */
__global__ void k_add_chan(float *y, const float *b, int channels, size_t m)
{
    size_t total = (size_t)channels * m;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
         j += (size_t)gridDim.x * blockDim.x)
        y[j] += b[j / m];
}

static void s_add_chan(float *y, const float *b, int channels, size_t m)
{
    k_add_chan<<<nn_cuda_blocks(channels * m), NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(
        y, b, channels, m);
    CUDA_LAUNCH_CHECK("k_add_chan");
}

static size_t s_wsize(const struct nn_layer *l)
{
    return (size_t)l->hp.out_c * l->in[0]->shape.c * l->hp.k * l->hp.k;
}

static size_t s_out_run(const struct nn_layer *l, int n)
{
    return (size_t)n * l->out->shape.h * l->out->shape.w;
}

static void s_conv_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_conv_dev *d = s_conv_for(l, ctx->n);
    s_fwd(d, l->in[0]->y, l->w, l->out->y, 0.0f);
    if (l->hp.bias)
        s_add_chan(l->out->y, l->w + s_wsize(l), l->hp.out_c, s_out_run(l, ctx->n));
}

static void s_conv_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_conv_dev *d = s_conv_for(l, ctx->n);
    if (ctx->param_grad) {
        s_bfilt(d, l->in[0]->y, l->out->dy, l->g, ctx->grad_scale);
        if (l->hp.bias)
            nn_cuda_add_rowsum(l->g + s_wsize(l), l->out->dy, l->hp.out_c,
                               (int)s_out_run(l, ctx->n), ctx->grad_scale);
    }
    if (l->in[0]->need_dy)
        s_bdata(d, l->w, l->out->dy, l->in[0]->dy);
}

static void s_conv_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_conv_dev *d = s_conv_for(l, ctx->n);
    float beta = 0.0f;
    if (l->in[0]->r_active) {
        s_fwd(d, l->in[0]->ry, l->w, l->out->ry, beta);
        beta = 1.0f;
    }
    if (l->in_block) {
        s_fwd(d, l->in[0]->y, l->v, l->out->ry, beta);
        if (l->hp.bias)
            s_add_chan(l->out->ry, l->v + s_wsize(l), l->hp.out_c, s_out_run(l, ctx->n));
    }
}

static void s_conv_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_conv_dev *d = s_conv_for(l, ctx->n);
    struct nn_node *x = l->in[0];
    if (x->need_dy) {
        s_bdata(d, l->w, l->out->rdy, x->rdy);
        if (l->in_block)
            s_bdata(d, l->v, l->out->dy, x->rdy);
    }
    if (l->in_block) {
        s_bfilt(d, x->y, l->out->rdy, l->hv, 1.0f);
        if (x->r_active)
            s_bfilt(d, x->ry, l->out->dy, l->hv, 1.0f);
        if (l->hp.bias)
            nn_cuda_add_rowsum(l->hv + s_wsize(l), l->out->rdy, l->hp.out_c,
                               (int)s_out_run(l, ctx->n), 1.0f);
    }
}

const struct nn_layer_ops nn_cuda_conv_ops = {
    "conv2d",         s_conv_setup, s_conv_forward, s_conv_backward, s_conv_rforward,
    s_conv_rbackward, NULL,         NULL,           s_conv_destroy,
};

/* ---- Linear: W [out x in] times X [in x n], as nn_linear.c, on cuBLAS ------------------------ */

static int s_in_f(const struct nn_layer *l)
{
    return (int)nn_shape_numel(&l->in[0]->shape);
}

static void s_lin_forward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    int n = ctx->n, in = s_in_f(l), out = l->out->shape.c;
    nn_cuda_fill_rows(l->out->y, l->w + (size_t)out * in, out, n);
    nn_cuda_gemm(NN_NO_TRANS, NN_NO_TRANS, out, n, in, 1.0f, l->w, in, l->in[0]->y, n, 1.0f,
                 l->out->y, n);
}

static void s_lin_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    int n = ctx->n, in = s_in_f(l), out = l->out->shape.c;
    const float *dy = l->out->dy;
    if (ctx->param_grad) {
        nn_cuda_gemm(NN_NO_TRANS, NN_TRANS, out, in, n, ctx->grad_scale, dy, n, l->in[0]->y, n,
                     1.0f, l->g, in);
        nn_cuda_add_rowsum(l->g + (size_t)out * in, dy, out, n, ctx->grad_scale);
    }
    if (l->in[0]->need_dy)
        nn_cuda_gemm(NN_TRANS, NN_NO_TRANS, in, n, out, 1.0f, l->w, in, dy, n, 1.0f, l->in[0]->dy,
                     n);
}

/* Ry = W Rx + V x + vb */
static void s_lin_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    int n = ctx->n, in = s_in_f(l), out = l->out->shape.c;
    float *ry = l->out->ry;
    nn_cuda_fill_rows(ry, l->in_block ? l->v + (size_t)out * in : NULL, out, n);
    if (l->in[0]->r_active)
        nn_cuda_gemm(NN_NO_TRANS, NN_NO_TRANS, out, n, in, 1.0f, l->w, in, l->in[0]->ry, n, 1.0f,
                     ry, n);
    if (l->in_block)
        nn_cuda_gemm(NN_NO_TRANS, NN_NO_TRANS, out, n, in, 1.0f, l->v, in, l->in[0]->y, n, 1.0f, ry,
                     n);
}

/* R{dx} += W^T Rdy + V^T dy;  R{dW} += Rdy x^T + dy Rx^T;  R{db} += sum(Rdy) */
static void s_lin_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    int n = ctx->n, in = s_in_f(l), out = l->out->shape.c;
    const float *dy = l->out->dy, *rdy = l->out->rdy;
    struct nn_node *x = l->in[0];
    if (x->need_dy) {
        nn_cuda_gemm(NN_TRANS, NN_NO_TRANS, in, n, out, 1.0f, l->w, in, rdy, n, 1.0f, x->rdy, n);
        if (l->in_block)
            nn_cuda_gemm(NN_TRANS, NN_NO_TRANS, in, n, out, 1.0f, l->v, in, dy, n, 1.0f, x->rdy, n);
    }
    if (l->in_block) {
        nn_cuda_gemm(NN_NO_TRANS, NN_TRANS, out, in, n, 1.0f, rdy, n, x->y, n, 1.0f, l->hv, in);
        if (x->r_active)
            nn_cuda_gemm(NN_NO_TRANS, NN_TRANS, out, in, n, 1.0f, dy, n, x->ry, n, 1.0f, l->hv, in);
        nn_cuda_add_rowsum(l->hv + (size_t)out * in, rdy, out, n, 1.0f);
    }
}

static int s_lin_setup(struct nn_layer *l, int max_batch)
{
    (void)l;
    (void)max_batch;
    return NN_OK; /* no device state: the net's views are all it needs */
}

const struct nn_layer_ops nn_cuda_linear_ops = {
    "linear",        s_lin_setup, s_lin_forward, s_lin_backward, s_lin_rforward,
    s_lin_rbackward, NULL,        NULL,          NULL,
};
