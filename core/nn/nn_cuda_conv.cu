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
 * so the three cuDNN calls serve all four passes. Algorithms are chosen once per batch size: at
 * setup for the largest, timed by cudnnFind* (s_algo_mode), and again by cuDNN's heuristics only
 * when a pass's n differs from the last, among those whose workspace fits the one reserved at
 * setup for max_batch. One workspace per thread serves every layer (s_ws), at most
 * EB_CUDNN_WORKSPACE_MB (1 GiB) for one convolution.
 *
 * Not every cuDNN build runs every pass on strided CNHW descriptors. Each pass takes the first
 * of these that cuDNN supports: strided CNHW with FMA math; packed NCHW with FMA math (the pass's
 * tensors are transposed through the thread's pack buffer, nn_cuda_ctx.pack); then the same two
 * with cuDNN's default math, which may use TF32 on Ampere and later (reported once per layer).
 */
#include "nn_cuda.h"

#include <stdlib.h>
#include <string.h>

#define NN_CONV_ALGOS 8    /* candidates asked of cuDNN's heuristics */
#define NN_CONV_WS_MB 1024 /* workspace of one convolution at most (EB_CUDNN_WORKSPACE_MB) */

enum { S_FWD, S_BDATA, S_BFILT, S_PASSES };
static const char *const s_pass_name[S_PASSES] = {"forward", "backward-data", "backward-filter"};

/* How one pass calls cuDNN. */
struct s_conv_pass {
    int algo;   /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
    int packed; /* 1: through packed NCHW copies */
    int math;   /* 0: FMA, 1: cuDNN's default */
};

struct s_conv_dev {
    cudnnTensorDescriptor_t xd, yd;        /* input, output (strided CNHW) */
    cudnnTensorDescriptor_t pxd, pyd;      /* the same, packed NCHW */
    cudnnFilterDescriptor_t wd;            /* weights */
    cudnnConvolutionDescriptor_t cd[2];    /* padding, stride; FMA math, default math */
    int n;                                 /* batch the descriptors and algorithms are set for */
    struct s_conv_pass pass[S_PASSES];     /* forward, backward-data, backward-filter */
    struct s_conv_pass pass_max[S_PASSES]; /* the choice for max_batch (setup's, timed) */
    int n_max;                             /* max_batch */
    int reported;                          /* the fallbacks were logged */
    size_t ws_bytes;                       /* workspace its algorithms need (the thread's) */
};

static void s_desc(cudnnTensorDescriptor_t d, cudnnTensorDescriptor_t pd, int n,
                   const struct nn_shape *s)
{
    int hw = s->h * s->w;
    CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d, CUDNN_DATA_FLOAT, n, s->c, s->h, s->w, hw, n * hw,
                                             s->w, 1));
    CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(pd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, s->c, s->h, s->w));
}

/* Which candidates s_pick asks cuDNN for: EB_CUDNN_ALGOS=find (the default: timed by cudnnFind*
 * at setup, as PyTorch's cudnn.benchmark; heuristics when a later batch size re-plans), heuristic
 * (cuDNN's heuristics alone: no timing runs at setup), enum (every algorithm in enum order). */
enum { S_HEURISTIC, S_FIND, S_ENUM };
static int s_algo_mode(void)
{
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("EB_CUDNN_ALGOS");
        mode = e && !strcmp(e, "heuristic") ? S_HEURISTIC
               : e && !strcmp(e, "enum")    ? S_ENUM
                                            : S_FIND;
    }
    return mode;
}

/* Append the supported algorithms of cuDNN's perf results r[0..got) to cand. */
template <typename Perf>
static int s_collect(cudnnStatus_t st, const Perf *r, int got, int *cand, int nc)
{
    for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < got; i++)
        if (r[i].status == CUDNN_STATUS_SUCCESS)
            cand[nc++] = (int)r[i].algo;
    return nc;
}

/* Workspace one convolution may use at most: EB_CUDNN_WORKSPACE_MB, else NN_CONV_WS_MB. */
static size_t s_ws_limit(void)
{
    static size_t lim = 0;
    if (!lim) {
        const char *e = getenv("EB_CUDNN_WORKSPACE_MB");
        long mb = e ? strtol(e, NULL, 10) : 0;
        lim = (size_t)(mb > 0 ? mb : NN_CONV_WS_MB) << 20;
    }
    return lim;
}

/* The first algorithm of cuDNN's candidates (s_algo_mode; timed when `timed`) for pass p on
 * (xd, yd) with conv descriptor cd that cuDNN reports supported and whose workspace fits cap; then
 * any algorithm cuDNN can size a workspace for within cap. Returns the algorithm (and *ws) or -1.
 * Probing calls are not CHECKed: a refusal here means "try the next layout". */
static int s_pick(cudnnHandle_t h, const struct s_conv_dev *d, int p, cudnnTensorDescriptor_t xd,
                  cudnnTensorDescriptor_t yd, cudnnConvolutionDescriptor_t cd, size_t cap,
                  int timed, size_t *ws)
{
    int got = 0, cand[NN_CONV_ALGOS + 8], nc = 0, count = 0;
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    const int mode = s_algo_mode(), find = mode == S_FIND && timed;
    if (p == S_FWD) {
        cudnnConvolutionFwdAlgoPerf_t r[NN_CONV_ALGOS];
        if (find)
            st = cudnnFindConvolutionForwardAlgorithm(h, xd, d->wd, cd, yd, NN_CONV_ALGOS, &got, r);
        else if (mode != S_ENUM)
            st = cudnnGetConvolutionForwardAlgorithm_v7(h, xd, d->wd, cd, yd, NN_CONV_ALGOS, &got,
                                                        r);
        nc = s_collect(st, r, got, cand, nc);
        count = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    } else if (p == S_BDATA) {
        cudnnConvolutionBwdDataAlgoPerf_t r[NN_CONV_ALGOS];
        if (find)
            st = cudnnFindConvolutionBackwardDataAlgorithm(h, d->wd, yd, cd, xd, NN_CONV_ALGOS,
                                                           &got, r);
        else if (mode != S_ENUM)
            st = cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d->wd, yd, cd, xd, NN_CONV_ALGOS,
                                                             &got, r);
        nc = s_collect(st, r, got, cand, nc);
        count = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t r[NN_CONV_ALGOS];
        if (find)
            st = cudnnFindConvolutionBackwardFilterAlgorithm(h, xd, yd, cd, d->wd, NN_CONV_ALGOS,
                                                             &got, r);
        else if (mode != S_ENUM)
            st = cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, xd, yd, cd, d->wd, NN_CONV_ALGOS,
                                                               &got, r);
        nc = s_collect(st, r, got, cand, nc);
        count = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    }
    for (int a = 0; a < count && nc < NN_CONV_ALGOS + 8; a++)
        cand[nc++] = a; /* after the heuristics' choices, every algorithm in enum order */
    for (int i = 0; i < nc; i++) {
        size_t w = 0;
        if (p == S_FWD)
            st = cudnnGetConvolutionForwardWorkspaceSize(h, xd, d->wd, cd, yd,
                                                         (cudnnConvolutionFwdAlgo_t)cand[i], &w);
        else if (p == S_BDATA)
            st = cudnnGetConvolutionBackwardDataWorkspaceSize(
                h, d->wd, yd, cd, xd, (cudnnConvolutionBwdDataAlgo_t)cand[i], &w);
        else
            st = cudnnGetConvolutionBackwardFilterWorkspaceSize(
                h, xd, yd, cd, d->wd, (cudnnConvolutionBwdFilterAlgo_t)cand[i], &w);
        if (st == CUDNN_STATUS_SUCCESS && w <= cap) {
            *ws = w;
            return cand[i];
        }
    }
    return -1;
}

/* Set descriptors for n samples and choose each pass's layout, math and algorithm (workspace at
 * most `cap` bytes; timed: cudnnFind at setup); *need receives the largest workspace of the
 * three. Returns NN_OK, or NN_ERR_ARG (reported) when cuDNN supports a pass in no way. */
/* The input and output descriptors (strided and packed) for n samples. */
static void s_set_n(const struct nn_layer *l, struct s_conv_dev *d, int n)
{
    s_desc(d->xd, d->pxd, n, &l->in[0]->shape);
    s_desc(d->yd, d->pyd, n, &l->out->shape);
}

static int s_plan(struct nn_layer *l, struct s_conv_dev *d, int n, size_t cap, int timed,
                  size_t *need)
{
    cudnnHandle_t h = nn_cuda_ctx_get()->cudnn;
    s_set_n(l, d, n);
    size_t best = 0;
    for (int p = 0; p < (l->fwd_only ? 1 : S_PASSES); p++) { /* a forward-only net: S_FWD */
        int algo = -1;
        size_t ws = 0;
        for (int k = 0; k < 4 && algo < 0; k++) { /* strided FMA, packed FMA, then default math */
            int packed = k & 1, math = k >> 1;
            algo = s_pick(h, d, p, packed ? d->pxd : d->xd, packed ? d->pyd : d->yd, d->cd[math],
                          cap, timed, &ws);
            d->pass[p] = (struct s_conv_pass){algo, packed, math};
        }
        if (algo < 0) {
            nn_report(
                3, "conv2d %s: cuDNN supports no %s algorithm for batch %d (%dx%dx%d -> %dx%dx%d)",
                l->name, s_pass_name[p], n, l->in[0]->shape.c, l->in[0]->shape.h, l->in[0]->shape.w,
                l->out->shape.c, l->out->shape.h, l->out->shape.w);
            return NN_ERR_ARG;
        }
        if (!d->reported || d->pass[p].math)
            nn_report(d->pass[p].math ? 2 : 1,
                      "conv2d %s: cuDNN's %s runs algorithm %d on %s with %s math (batch %d)",
                      l->name, s_pass_name[p], algo,
                      d->pass[p].packed ? "packed NCHW copies" : "strided CNHW",
                      d->pass[p].math ? "its default (TF32 allowed)" : "FMA", n);
        best = ws > best ? ws : best;
    }
    d->reported = 1;
    d->n = n;
    *need = best;
    return NN_OK;
}

/* The thread's pack buffer, at least `bytes` (grows; setup reserves each layer's need). */
static float *s_pack_buf(size_t bytes)
{
    struct nn_cuda_ctx *c = nn_cuda_ctx_get();
    return (float *)nn_cuda_grow(&c->pack, &c->pack_bytes, bytes);
}

/* The thread's workspace, at least what d's algorithms need (shared by every layer: the passes
 * of one thread run one after another on its stream). */
static void *s_ws(const struct s_conv_dev *d)
{
    struct nn_cuda_ctx *c = nn_cuda_ctx_get();
    return d->ws_bytes ? nn_cuda_grow(&c->conv_ws, &c->conv_ws_bytes, d->ws_bytes) : NULL;
}

/* Floats of the packed input and output copies of n samples. */
static size_t s_in_numel(const struct nn_layer *l, int n)
{
    return (size_t)n * nn_shape_numel(&l->in[0]->shape);
}
static size_t s_outn_numel(const struct nn_layer *l, int n)
{
    return (size_t)n * nn_shape_numel(&l->out->shape);
}

/* Bytes of the packed input and output copies of n samples (the pack buffer's need). */
static size_t s_pack_bytes(const struct nn_layer *l, int n)
{
    return (s_in_numel(l, n) + s_outn_numel(l, n)) * sizeof(float);
}

static int s_any_packed(const struct s_conv_dev *d)
{
    return d->pass[S_FWD].packed || d->pass[S_BDATA].packed || d->pass[S_BFILT].packed;
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
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->pxd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&d->pyd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&d->wd));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(d->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, hp->out_c,
                                           l->in[0]->shape.c, hp->k, hp->k));
    for (int m = 0; m < 2; m++) {
        CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d->cd[m]));
        CUDNN_CHECK(cudnnSetConvolution2dDescriptor(d->cd[m], hp->pad, hp->pad, hp->stride,
                                                    hp->stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                                    CUDNN_DATA_FLOAT));
        /* fp32 first: no TF32 tensor-op math, so results compare with the CPU at 1e-4 */
        CUDNN_CHECK(cudnnSetConvolutionMathType(d->cd[m], m ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    }
    if (nn_cuda_failed())
        return NN_ERR_ARG;
    size_t need = 0;
    int rc = s_plan(l, d, max_batch, s_ws_limit(), 1, &need);
    if (rc)
        return rc;
    d->ws_bytes = need;
    memcpy(d->pass_max, d->pass, sizeof d->pass);
    d->n_max = max_batch;
    if (s_any_packed(d) && !s_pack_buf(s_pack_bytes(l, max_batch)))
        return NN_ERR_NOMEM;
    if (nn_cuda_failed() || (need && !s_ws(d)))
        return NN_ERR_NOMEM;
    return NN_OK;
}

static void s_conv_destroy(struct nn_layer *l)
{
    struct s_conv_dev *d = (struct s_conv_dev *)l->dev;
    if (!d)
        return;
    cudnnTensorDescriptor_t td[4] = {d->xd, d->yd, d->pxd, d->pyd};
    for (int i = 0; i < 4; i++)
        if (td[i])
            CUDNN_CHECK(cudnnDestroyTensorDescriptor(td[i]));
    if (d->wd)
        CUDNN_CHECK(cudnnDestroyFilterDescriptor(d->wd));
    for (int m = 0; m < 2; m++)
        if (d->cd[m])
            CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(d->cd[m]));
    free(d);
    l->dev = NULL;
}

static struct s_conv_dev *s_conv_for(struct nn_layer *l, int n)
{
    struct s_conv_dev *d = (struct s_conv_dev *)l->dev;
    size_t need = 0;
    if (d->n == n)
        return d;
    if (n == d->n_max) { /* back to the full batch: setup's choice, not the heuristics' */
        s_set_n(l, d, n);
        memcpy(d->pass, d->pass_max, sizeof d->pass);
        d->n = n;
    } else if (s_plan(l, d, n, d->ws_bytes, 0, &need) != NN_OK)
        nn_cuda_fail(__FILE__, __LINE__, "s_plan", "no cuDNN algorithm for this batch");
    return d;
}

/* Strided CNHW (c channels of n samples, hw positions) and packed NCHW: to_cnhw 0 packs
 * (dst = src transposed), 1 unpacks into dst = src transposed + beta * dst. */
__global__ void k_conv_pack(float *dst, const float *src, int n, int c, size_t hw, int to_cnhw,
                            float beta)
{
    size_t total = (size_t)n * c * hw;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
         j += (size_t)gridDim.x * blockDim.x) {
        size_t s = j % hw, ik = j / hw; /* j indexes NCHW */
        size_t i = ik / c, k = ik % c;
        size_t t = (k * n + i) * hw + s;
        if (!to_cnhw)
            dst[j] = src[t];
        else
            dst[t] = beta != 0.0f ? src[j] + beta * dst[t] : src[j];
    }
}

static void s_pack(float *dst, const float *src, int n, const struct nn_shape *s, int to_cnhw,
                   float beta)
{
    size_t hw = (size_t)s->h * s->w, total = (size_t)n * s->c * hw;
    k_conv_pack<<<nn_cuda_blocks(total), NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(
        dst, src, n, s->c, hw, to_cnhw, beta);
    CUDA_LAUNCH_CHECK("k_conv_pack");
}

/* The pack buffer's input and output regions for n samples. */
static void s_pack_regions(const struct nn_layer *l, int n, float **px, float **py)
{
    *px = s_pack_buf(s_pack_bytes(l, n));
    *py = *px ? *px + s_in_numel(l, n) : NULL;
}

/* y = x * W + beta y (on packed copies: into the output region, then y = that + beta y) */
static void s_fwd(struct nn_layer *l, struct s_conv_dev *d, const float *x, const float *w,
                  float *y, float beta)
{
    const float one = 1.0f;
    const struct s_conv_pass *p = &d->pass[S_FWD];
    cudnnTensorDescriptor_t xd = d->xd, yd = d->yd;
    float *out = y, b = beta, *px = NULL, *py = NULL;
    if (p->packed) {
        s_pack_regions(l, d->n, &px, &py);
        if (!px)
            return;
        s_pack(px, x, d->n, &l->in[0]->shape, 0, 0.0f);
        x = px, out = py, b = 0.0f, xd = d->pxd, yd = d->pyd;
    }
    CUDNN_CHECK(cudnnConvolutionForward(nn_cuda_ctx_get()->cudnn, &one, xd, x, d->wd, w,
                                        d->cd[p->math], (cudnnConvolutionFwdAlgo_t)p->algo, s_ws(d),
                                        d->ws_bytes, &b, yd, out));
    if (p->packed)
        s_pack(y, py, d->n, &l->out->shape, 1, beta);
}

/* dx += dy *^T W (on packed copies: into the input region, then added to dx) */
static void s_bdata(struct nn_layer *l, struct s_conv_dev *d, const float *w, const float *dy,
                    float *dx)
{
    const float one = 1.0f;
    const struct s_conv_pass *p = &d->pass[S_BDATA];
    cudnnTensorDescriptor_t xd = d->xd, yd = d->yd;
    float *out = dx, b = 1.0f, *px = NULL, *py = NULL;
    if (p->packed) {
        s_pack_regions(l, d->n, &px, &py);
        if (!px)
            return;
        s_pack(py, dy, d->n, &l->out->shape, 0, 0.0f);
        dy = py, out = px, b = 0.0f, xd = d->pxd, yd = d->pyd;
    }
    CUDNN_CHECK(cudnnConvolutionBackwardData(nn_cuda_ctx_get()->cudnn, &one, d->wd, w, yd, dy,
                                             d->cd[p->math], (cudnnConvolutionBwdDataAlgo_t)p->algo,
                                             s_ws(d), d->ws_bytes, &b, xd, out));
    if (p->packed)
        s_pack(dx, px, d->n, &l->in[0]->shape, 1, 1.0f);
}

/* dW += alpha * (x ⋆ dy) */
static void s_bfilt(struct nn_layer *l, struct s_conv_dev *d, const float *x, const float *dy,
                    float *dw, float alpha)
{
    const float one = 1.0f;
    const struct s_conv_pass *p = &d->pass[S_BFILT];
    cudnnHandle_t h = nn_cuda_ctx_get()->cudnn;
    cudnnTensorDescriptor_t xd = d->xd, yd = d->yd;
    if (p->packed) {
        float *px, *py;
        s_pack_regions(l, d->n, &px, &py);
        if (!px)
            return;
        s_pack(px, x, d->n, &l->in[0]->shape, 0, 0.0f);
        s_pack(py, dy, d->n, &l->out->shape, 0, 0.0f);
        x = px;
        dy = py;
        xd = d->pxd;
        yd = d->pyd;
    }
    CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &alpha, xd, x, yd, dy, d->cd[p->math],
                                               (cudnnConvolutionBwdFilterAlgo_t)p->algo, s_ws(d),
                                               d->ws_bytes, &one, d->wd, dw));
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
    s_fwd(l, d, l->in[0]->y, l->w, l->out->y, 0.0f);
    if (l->hp.bias)
        s_add_chan(l->out->y, l->w + s_wsize(l), l->hp.out_c, s_out_run(l, ctx->n));
}

static void s_conv_backward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_conv_dev *d = s_conv_for(l, ctx->n);
    if (ctx->param_grad) {
        s_bfilt(l, d, l->in[0]->y, l->out->dy, l->g, ctx->grad_scale);
        if (l->hp.bias)
            nn_cuda_add_rowsum(l->g + s_wsize(l), l->out->dy, l->hp.out_c,
                               (int)s_out_run(l, ctx->n), ctx->grad_scale);
    }
    if (l->in[0]->need_dy)
        s_bdata(l, d, l->w, l->out->dy, l->in[0]->dy);
}

static void s_conv_rforward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_conv_dev *d = s_conv_for(l, ctx->n);
    float beta = 0.0f;
    if (l->in[0]->r_active) {
        s_fwd(l, d, l->in[0]->ry, l->w, l->out->ry, beta);
        beta = 1.0f;
    }
    if (l->in_block) {
        s_fwd(l, d, l->in[0]->y, l->v, l->out->ry, beta);
        if (l->hp.bias)
            s_add_chan(l->out->ry, l->v + s_wsize(l), l->hp.out_c, s_out_run(l, ctx->n));
    }
}

static void s_conv_rbackward(struct nn_layer *l, const struct nn_ctx *ctx)
{
    struct s_conv_dev *d = s_conv_for(l, ctx->n);
    struct nn_node *x = l->in[0];
    if (x->need_dy) {
        s_bdata(l, d, l->w, l->out->rdy, x->rdy);
        if (l->in_block)
            s_bdata(l, d, l->v, l->out->dy, x->rdy);
    }
    if (l->in_block) {
        s_bfilt(l, d, x->y, l->out->rdy, l->hv, 1.0f);
        if (x->r_active)
            s_bfilt(l, d, x->ry, l->out->dy, l->hv, 1.0f);
        if (l->hp.bias)
            nn_cuda_add_rowsum(l->hv + s_wsize(l), l->out->rdy, l->hp.out_c,
                               (int)s_out_run(l, ctx->n), 1.0f);
    }
}

size_t nn_cuda_conv_scratch(const struct nn_layer *l, int max_batch, int fwd_only, size_t *ws)
{
    *ws = s_ws_limit();
    return fwd_only ? 0 : s_pack_bytes(l, max_batch);
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
