/*
 * nn_cuda: the CUDA backend's table (nn_backend.h): device memory, copies, the cuBLAS GEMM on
 * device operands, the net's edges (NCHW input in, logits and dL/dx out, through a staging
 * buffer), softmax cross-entropy with its gradient and R-operator, SGD and FGSM's sign step, and
 * the lookup of the layer tables of the other nn_cuda_*.cu files.
 *
 * Each thread that asks for device N gets its own context (handles, stream, staging buffers):
 * the worker, the eigen service and the tests may run in threads of one process, and cuBLAS and
 * cuDNN handles are not to be shared between threads.
 */
#include "nn_cuda.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

extern "C" {
const struct nn_backend_ops *nn_cuda_backend(int index, char *why, size_t why_len);
}

static thread_local struct nn_cuda_ctx t_ctx[NN_CUDA_MAX_DEVICES]; /* this thread's contexts */
static thread_local struct nn_cuda_ctx *t_cur;                     /* the bound one */
/* The device bound last by any thread: a thread that runs a net another thread moved there (a
 * role's setup and its compute thread) without binding first (nn_net_bind_thread) gets handles
 * of its own for that device: handles and streams are never shared between threads, and a
 * thread's contexts die with it. */
static volatile int s_last_device = -1;
static volatile int s_failed; /* latched error flag */

static int s_ctx_init(struct nn_cuda_ctx *c, int index, char *why, size_t why_len);

struct nn_cuda_ctx *nn_cuda_ctx_get(void)
{
    if (!t_cur) {
        int dev = s_last_device;
        char why[NN_CUDA_WHY_MAX] = "";
        NN_ASSERT(dev >= 0); /* a device net exists, so some thread bound a device */
        if (s_ctx_init(&t_ctx[dev], dev, why, sizeof why)) {
            nn_cuda_fail(__FILE__, __LINE__, "s_ctx_init(this thread's handles)", why);
            NN_ASSERT(!"a thread cannot get handles for a device that worked before");
        }
        t_cur = &t_ctx[dev];
    }
    return t_cur;
}

void nn_cuda_fail(const char *file, int line, const char *expr, const char *msg)
{
    s_failed = 1;
    nn_report(3, "%s:%d: %s failed: %s", file, line, expr, msg ? msg : "?");
}

int nn_cuda_failed(void)
{
    return s_failed;
}

void *nn_cuda_alloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        nn_report(3, "cudaMalloc(%zu bytes) failed: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes ? bytes : 1, nn_cuda_ctx_get()->stream));
    return p;
}

void nn_cuda_free(void *p)
{
    if (p)
        CUDA_CHECK(cudaFree(p));
}

static int s_upload(void *dst, const void *src, size_t bytes)
{
    cudaStream_t st = nn_cuda_ctx_get()->stream;
    if (bytes) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st));
        CUDA_CHECK(cudaStreamSynchronize(st));
    }
    return s_failed ? NN_ERR_ARG : NN_OK;
}

static int s_download(void *dst, const void *src, size_t bytes)
{
    cudaStream_t st = nn_cuda_ctx_get()->stream;
    if (bytes) {
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st));
        CUDA_CHECK(cudaStreamSynchronize(st));
    }
    return s_failed ? NN_ERR_ARG : NN_OK;
}

static void s_zero(float *p, size_t n)
{
    if (n)
        CUDA_CHECK(cudaMemsetAsync(p, 0, n * sizeof(float), nn_cuda_ctx_get()->stream));
}

static int s_sync(void)
{
    CUDA_CHECK(cudaStreamSynchronize(nn_cuda_ctx_get()->stream));
    return s_failed ? NN_ERR_ARG : NN_OK;
}

static size_t s_mem_free(void)
{
    size_t free_b = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
    return free_b;
}

/* Page-locked host memory: copies from and to it are DMA transfers that need no staging. */
static void *s_host_alloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        nn_report(3, "cudaMallocHost(%zu bytes) failed: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    memset(p, 0, bytes ? bytes : 1);
    return p;
}

static void s_host_free(void *p)
{
    if (p)
        CUDA_CHECK(cudaFreeHost(p));
}

/* cuBLAS is column-major: row-major C[m x n] is column-major C^T[n x m] = op(B)^T op(A)^T, so the
 * call swaps the operands and m, n and keeps the leading dimensions. */
void nn_cuda_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    /* the context that owns the handle opened cuBLAS (s_ctx_init) */
    CUBLAS_CHECK(nn_cublas_open(NULL, 0)->sgemm(nn_cuda_ctx_get()->cublas,
                                                tb == NN_TRANS ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                ta == NN_TRANS ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                                                &alpha, b, ldb, a, lda, &beta, c, ldc));
}

/* One block per row: acc[o] += scale * sum(row o). */
__global__ void k_rowsum(float *acc, const float *m, int n, float scale)
{
    __shared__ float part[NN_CUDA_THREADS];
    const float *row = m + (size_t)blockIdx.x * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += row[i];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if ((int)threadIdx.x < w)
            part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        acc[blockIdx.x] += scale * part[0];
}

void nn_cuda_add_rowsum(float *acc, const float *m, int rows, int n, float scale)
{
    if (rows < 1)
        return;
    k_rowsum<<<rows, NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(acc, m, n, scale);
    CUDA_LAUNCH_CHECK("k_rowsum");
}

__global__ void k_fill_rows(float *y, const float *b, int rows, int n)
{
    size_t total = (size_t)rows * n;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
         j += (size_t)gridDim.x * blockDim.x)
        y[j] = b ? b[j / n] : 0.0f;
}

void nn_cuda_fill_rows(float *y, const float *b, int rows, int n)
{
    size_t total = (size_t)rows * n;
    k_fill_rows<<<nn_cuda_blocks(total), NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(y, b,
                                                                                          rows, n);
    CUDA_LAUNCH_CHECK("k_fill_rows");
}

void *nn_cuda_grow(void **buf, size_t *cap, size_t bytes)
{
    if (*cap < bytes) {
        nn_cuda_free(*buf);
        *buf = nn_cuda_alloc(bytes);
        *cap = *buf ? bytes : 0;
    }
    return *buf;
}

/* Staging buffer of at least `bytes` (grows; the first pass of each size allocates). */
static void *s_stage(size_t bytes)
{
    struct nn_cuda_ctx *c = nn_cuda_ctx_get();
    return nn_cuda_grow(&c->stage, &c->stage_bytes, bytes);
}

/* NCHW (src) <-> CNHW (dst): element (i, k, s) of n samples, c channels, hw positions. */
__global__ void k_nchw_to_cnhw(float *dst, const float *src, int n, int c, size_t hw, int back)
{
    size_t total = (size_t)n * c * hw;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
         j += (size_t)gridDim.x * blockDim.x) {
        size_t s = j % hw, ik = j / hw;
        int i = (int)(ik / c), k = (int)(ik % c); /* j indexes NCHW */
        size_t t = ((size_t)k * n + i) * hw + s;
        if (back)
            dst[j] = src[t];
        else
            dst[t] = src[j];
    }
}

static int s_load_input(float *dst, const float *x, int n, int c, size_t hw)
{
    size_t bytes = (size_t)n * c * hw * sizeof(float);
    float *st = (float *)s_stage(bytes);
    if (!st || s_upload(st, x, bytes) != NN_OK)
        return NN_ERR_NOMEM;
    k_nchw_to_cnhw<<<nn_cuda_blocks((size_t)n * c * hw), NN_CUDA_THREADS, 0,
                     nn_cuda_ctx_get()->stream>>>(dst, st, n, c, hw, 0);
    CUDA_LAUNCH_CHECK("k_nchw_to_cnhw");
    return s_failed ? NN_ERR_ARG : NN_OK;
}

static int s_store_input_grad(float *dx, const float *src, int n, int c, size_t hw)
{
    size_t bytes = (size_t)n * c * hw * sizeof(float);
    float *st = (float *)s_stage(bytes);
    if (!st)
        return NN_ERR_NOMEM;
    k_nchw_to_cnhw<<<nn_cuda_blocks((size_t)n * c * hw), NN_CUDA_THREADS, 0,
                     nn_cuda_ctx_get()->stream>>>(st, src, n, c, hw, 1);
    CUDA_LAUNCH_CHECK("k_nchw_to_cnhw");
    return s_download(dx, st, bytes);
}

/* Logits [classes x n] are CNHW with hw = 1: the same transpose. */
static int s_store_logits(float *logits, const float *z, int classes, int n)
{
    return s_store_input_grad(logits, z, n, classes, 1);
}

/* Per sample i: softmax of column i of z [classes x n], its loss and whether argmax == label. */
__global__ void k_softmax_ce(const float *z, const int *labels, int classes, int n, float *p,
                             double *loss, int *hit)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float mx = z[i];
    int arg = 0;
    for (int k = 1; k < classes; k++)
        if (z[(size_t)k * n + i] > mx) {
            mx = z[(size_t)k * n + i];
            arg = k;
        }
    double s = 0.0;
    for (int k = 0; k < classes; k++)
        s += exp((double)z[(size_t)k * n + i] - mx);
    for (int k = 0; k < classes; k++)
        p[(size_t)k * n + i] = (float)(exp((double)z[(size_t)k * n + i] - mx) / s);
    loss[i] = log(s) + mx - z[(size_t)labels[i] * n + i];
    hit[i] = arg == labels[i];
}

static int s_loss_reserve(struct nn_cuda_ctx *c, int n)
{
    if (c->loss_cap >= n)
        return NN_OK;
    nn_cuda_free(c->loss_part);
    nn_cuda_free(c->label_dev);
    nn_cuda_free(c->correct_part);
    c->loss_part = (double *)nn_cuda_alloc((size_t)n * sizeof(double));
    c->label_dev = (int *)nn_cuda_alloc((size_t)n * sizeof(int));
    c->correct_part = (int *)nn_cuda_alloc((size_t)n * sizeof(int));
    c->loss_cap = c->loss_part && c->label_dev && c->correct_part ? n : 0;
    return c->loss_cap ? NN_OK : NN_ERR_NOMEM;
}

static double s_loss_forward(const float *z, const int32_t *labels, int classes, int n,
                             float *probs, int *correct)
{
    struct nn_cuda_ctx *c = nn_cuda_ctx_get();
    if (s_loss_reserve(c, n) != NN_OK || s_upload(c->label_dev, labels, n * sizeof(int)))
        return NAN;
    k_softmax_ce<<<(n + NN_CUDA_THREADS - 1) / NN_CUDA_THREADS, NN_CUDA_THREADS, 0, c->stream>>>(
        z, c->label_dev, classes, n, probs, c->loss_part, c->correct_part);
    CUDA_LAUNCH_CHECK("k_softmax_ce");
    double *loss = (double *)malloc((size_t)n * sizeof(double));
    int *hit = (int *)malloc((size_t)n * sizeof(int));
    double sum = NAN;
    if (loss && hit && !s_download(loss, c->loss_part, n * sizeof(double)) &&
        !s_download(hit, c->correct_part, n * sizeof(int))) {
        int right = 0;
        sum = 0.0;
        for (int i = 0; i < n; i++) {
            sum += loss[i];
            right += hit[i];
        }
        sum /= n;
        if (correct)
            *correct = right;
    }
    free(loss);
    free(hit);
    return sum;
}

/* dz = (p - onehot(label)) / n */
__global__ void k_ce_backward(const float *p, const int *labels, int classes, int n, float *dz)
{
    size_t total = (size_t)classes * n;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
         j += (size_t)gridDim.x * blockDim.x) {
        int k = (int)(j / n), i = (int)(j % n);
        dz[j] = (p[j] - (labels[i] == k ? 1.0f : 0.0f)) / n;
    }
}

static void s_loss_backward(const float *probs, int classes, int n, float *dz)
{
    struct nn_cuda_ctx *c = nn_cuda_ctx_get();
    k_ce_backward<<<nn_cuda_blocks((size_t)classes * n), NN_CUDA_THREADS, 0, c->stream>>>(
        probs, c->label_dev, classes, n, dz);
    CUDA_LAUNCH_CHECK("k_ce_backward");
}

/* rdz = (p .* rz - p <p, rz>) / n per sample */
__global__ void k_ce_rbackward(const float *p, const float *rz, int classes, int n, float *rdz)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    double dot = 0.0;
    for (int k = 0; k < classes; k++)
        dot += (double)p[(size_t)k * n + i] * rz[(size_t)k * n + i];
    for (int k = 0; k < classes; k++) {
        size_t j = (size_t)k * n + i;
        rdz[j] = (float)((p[j] * rz[j] - p[j] * dot) / n);
    }
}

static void s_loss_rbackward(const float *probs, const float *rz, int classes, int n, float *rdz)
{
    k_ce_rbackward<<<(n + NN_CUDA_THREADS - 1) / NN_CUDA_THREADS, NN_CUDA_THREADS, 0,
                     nn_cuda_ctx_get()->stream>>>(probs, rz, classes, n, rdz);
    CUDA_LAUNCH_CHECK("k_ce_rbackward");
}

__global__ void k_sgd(float *w, float *buf, const float *g, size_t n, float lr, float mom, float wd)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float b = mom * buf[i] + (g[i] + wd * w[i]);
        buf[i] = b;
        w[i] -= lr * b;
    }
}

static void s_sgd(float *w, float *buf, const float *g, size_t n, float lr, float mom, float wd)
{
    k_sgd<<<nn_cuda_blocks(n), NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(w, buf, g, n, lr,
                                                                                mom, wd);
    CUDA_LAUNCH_CHECK("k_sgd");
}

__global__ void k_sign_step(float *x, const float *g, size_t n, float eps, float lo, float hi)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = g[i] > 0.0f ? 1.0f : (g[i] < 0.0f ? -1.0f : 0.0f);
        x[i] = fminf(fmaxf(x[i] + eps * s, lo), hi);
    }
}

static void s_sign_step(float *x, const float *g, size_t n, float eps, float lo, float hi)
{
    k_sign_step<<<nn_cuda_blocks(n), NN_CUDA_THREADS, 0, nn_cuda_ctx_get()->stream>>>(x, g, n, eps,
                                                                                      lo, hi);
    CUDA_LAUNCH_CHECK("k_sign_step");
}

static const struct nn_layer_ops *s_layer_ops(const char *kind)
{
    static const struct nn_layer_ops *const tables[] = {
        &nn_cuda_conv_ops,    &nn_cuda_linear_ops,  &nn_cuda_bn_ops,      &nn_cuda_relu_ops,
        &nn_cuda_add_ops,     &nn_cuda_flatten_ops, &nn_cuda_maxpool_ops, &nn_cuda_gap_ops,
        &nn_cuda_avgpool_ops, &nn_cuda_dropout_ops};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        if (!strcmp(tables[i]->kind, kind))
            return tables[i];
    return NULL;
}

static struct nn_backend_ops s_table[NN_CUDA_MAX_DEVICES];       /* one per device (name, index) */
static pthread_mutex_t s_table_lock = PTHREAD_MUTEX_INITIALIZER; /* first fill of s_table[i] */

/* Create the thread's handles for device `index`; returns 0 or -1 with why filled. */
static int s_ctx_init(struct nn_cuda_ctx *c, int index, char *why, size_t why_len)
{
    cudaError_t e = cudaSetDevice(index);
    if (e != cudaSuccess) {
        snprintf(why, why_len, "CUDA device %d cannot be used: cudaSetDevice: %s", index,
                 cudaGetErrorString(e));
        return -1;
    }
    if (c->ready)
        return 0;
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(why, why_len, "CUDA device %d: cudaStreamCreate: %s", index,
                 cudaGetErrorString(e));
        return -1;
    }
    const struct nn_cublas *blas = nn_cublas_open(why, why_len);
    if (!blas)
        return -1;
    cublasStatus_t bs = blas->create(&c->cublas);
    if (bs == CUBLAS_STATUS_SUCCESS)
        bs = blas->set_stream(c->cublas, c->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, why_len, "CUDA device %d: cublasCreate: %s", index, blas->status_string(bs));
        return -1;
    }
    cudnnStatus_t ds = cudnnCreate(&c->cudnn);
    if (ds != CUDNN_STATUS_SUCCESS || cudnnSetStream(c->cudnn, c->stream)) {
        snprintf(why, why_len, "CUDA device %d: cudnnCreate: %s", index, cudnnGetErrorString(ds));
        return -1;
    }
    c->device = index;
    c->ready = 1;
    return 0;
}

size_t nn_cuda_scratch_bytes(struct nn_layer *const *layers, int n_layers, int max_batch,
                             size_t in_floats, int fwd_only)
{
    size_t pack = 0, bn = 0, ws = 0; /* each the largest one layer needs: the buffers are shared */
    for (int i = 0; i < n_layers; i++) {
        const struct nn_layer *l = layers[i];
        const char *kind = (l->cpu_ops ? l->cpu_ops : l->ops)->kind;
        size_t b = 0, w = 0, p = 0;
        if (!strcmp(kind, "conv2d"))
            b = nn_cuda_conv_scratch(l, max_batch, fwd_only, &w);
        else if (!strcmp(kind, "batchnorm2d"))
            p = nn_cuda_bn_scratch(l->in[0]->shape.c);
        pack = b > pack ? b : pack;
        ws = w > ws ? w : ws;
        bn = p > bn ? p : bn;
    }
    return pack + ws + bn + in_floats * (size_t)max_batch * sizeof(float); /* + input staging */
}

const struct nn_backend_ops *nn_cuda_backend(int index, char *why, size_t why_len)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        snprintf(why, why_len, "CUDA was asked for but no CUDA driver or device is usable (%s)",
                 cudaGetErrorString(e));
        return NULL;
    }
    if (index >= count || index >= NN_CUDA_MAX_DEVICES) {
        snprintf(why, why_len, "CUDA device %d was asked for but this machine has %d", index,
                 count);
        return NULL;
    }
    if (s_ctx_init(&t_ctx[index], index, why, why_len))
        return NULL;
    t_cur = &t_ctx[index];
    s_last_device = index;
    struct nn_backend_ops *t = &s_table[index];
    pthread_mutex_lock(&s_table_lock);
    if (t->name) { /* filled by an earlier call (any thread): the same table */
        pthread_mutex_unlock(&s_table_lock);
        return t;
    }
    *t = (struct nn_backend_ops){
        .name = "cuda",
        .device = index,
        .alloc = nn_cuda_alloc,
        .free = nn_cuda_free,
        .upload = s_upload,
        .download = s_download,
        .zero = s_zero,
        .gemm = nn_cuda_gemm,
        .layer_ops = s_layer_ops,
        .load_input = s_load_input,
        .store_input_grad = s_store_input_grad,
        .store_logits = s_store_logits,
        .loss_forward = s_loss_forward,
        .loss_backward = s_loss_backward,
        .loss_rbackward = s_loss_rbackward,
        .sgd = s_sgd,
        .sign_step = s_sign_step,
        .sync = s_sync,
        .mem_free = s_mem_free,
        .host_alloc = s_host_alloc,
        .host_free = s_host_free,
        .scratch_bytes = nn_cuda_scratch_bytes,
    };
    pthread_mutex_unlock(&s_table_lock);
    return t;
}
