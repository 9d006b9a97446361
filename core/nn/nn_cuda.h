/*
 * nn_cuda: what the CUDA backend's files share (nn_cuda.cu: the table, memory, GEMM, loss, SGD;
 * nn_cuda_blas.cu: cuBLAS, opened on first use;
 * nn_cuda_conv.cu: Conv2d via cuDNN and Linear via cuBLAS; nn_cuda_bn.cu: BatchNorm;
 * nn_cuda_layers.cu: the elementwise and pooling layers). Internal to core/nn; CUDA sources only.
 *
 * Errors: every CUDA, cuBLAS and cuDNN call goes through one of the CHECK macros, which report the
 * failed expression with file:line and the library's message, and latch the backend's error
 * flag: a layer pass has no return value, so the net learns of it at the next sync or copy
 * (nn_backend_ops.sync, upload, download return NN_ERR_ARG once a call failed).
 */
#ifndef NN_CUDA_H
#define NN_CUDA_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "nn_backend.h"
#include "nn_base.h"
#include "nn_layer.h"
}

#define NN_CUDA_THREADS 256 /* threads per block of the elementwise kernels */
#define NN_CUDA_MAX_DEVICES 16
#define NN_CUDA_WHY_MAX 256 /* bytes of a one-line failure reason */

/* Per thread and device: handles, stream and grow-only staging buffers. */
struct nn_cuda_ctx {
    int ready;             /* handles created */
    int device;            /* CUDA device index */
    cudaStream_t stream;   /* every kernel and library call of this thread runs here */
    cublasHandle_t cublas; /* bound to stream */
    cudnnHandle_t cudnn;   /* bound to stream */
    void *stage;           /* device staging buffer (input, logits, labels) */
    size_t stage_bytes;    /* its capacity */
    void *pack;            /* packed-NCHW copies for cuDNN passes that refuse strided CNHW */
    size_t pack_bytes;     /* its capacity */
    void *conv_ws;         /* cuDNN's workspace, shared by the conv layers (nn_cuda_conv.cu) */
    size_t conv_ws_bytes;  /* its capacity */
    void *bn_part;         /* BatchNorm's partial sums (nn_cuda_bn.cu) */
    size_t bn_part_bytes;  /* its capacity */
    double *loss_part;     /* per-sample loss of the last loss_forward (device) */
    int *label_dev;        /* labels of the last loss_forward (device) */
    int *correct_part;     /* per-sample hit of the last loss_forward (device) */
    int loss_cap;          /* capacity of the three above, in samples */
};

/* The calling thread's context for the device it bound last (nn_cuda_backend); a thread that
 * never bound one gets its own for the device bound last by any thread. */
struct nn_cuda_ctx *nn_cuda_ctx_get(void);
/* Report a failed call and latch the error flag. */
void nn_cuda_fail(const char *file, int line, const char *expr, const char *msg);
/* The error flag (non-zero once any call failed). */
int nn_cuda_failed(void);

#define CUDA_CHECK(expr)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (expr);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            nn_cuda_fail(__FILE__, __LINE__, #expr, cudaGetErrorString(e_));                       \
    } while (0)
#define CUBLAS_CHECK(expr)                                                                         \
    do {                                                                                           \
        cublasStatus_t s_ = (expr);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            nn_cuda_fail(__FILE__, __LINE__, #expr, nn_cublas_status(s_));                         \
    } while (0)
#define CUDNN_CHECK(expr)                                                                          \
    do {                                                                                           \
        cudnnStatus_t s_ = (expr);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                            \
            nn_cuda_fail(__FILE__, __LINE__, #expr, cudnnGetErrorString(s_));                      \
    } while (0)
/* After a kernel launch: the launch error, if any. */
#define CUDA_LAUNCH_CHECK(name) CUDA_CHECK(cudaPeekAtLastError())

/* cuBLAS's entry points, opened on first use (nn_cuda_blas.cu); the types are cublas_v2.h's. */
struct nn_cublas {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSgemm_v2) sgemm;
    decltype(&cublasGetStatusString) status_string;
};
/* The table, opening libcublas.so.<major> on the first call (from any thread); NULL with a
 * one-line reason in why (may be NULL) when it cannot be opened. Valid for the process's life. */
const struct nn_cublas *nn_cublas_open(char *why, size_t why_len);
/* cuBLAS's message for s. */
const char *nn_cublas_status(cublasStatus_t s);

/* Blocks for n elements. */
static inline unsigned nn_cuda_blocks(size_t n)
{
    size_t b = (n + NN_CUDA_THREADS - 1) / NN_CUDA_THREADS;
    return (unsigned)(b ? (b < 65535u * 32u ? b : 65535u * 32u) : 1);
}

/* Device GEMM (row-major, as nn_gemm) on the thread's stream. */
void nn_cuda_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* acc[o] += scale * sum_i m[o*n + i] for o < rows (row sums, bias gradients). */
void nn_cuda_add_rowsum(float *acc, const float *m, int rows, int n, float scale);
/* y[o*n + i] = b ? b[o] : 0 (bias broadcast). */
void nn_cuda_fill_rows(float *y, const float *b, int rows, int n);
/* Device memory (zeroed), reported and latched on failure; free accepts NULL. */
void *nn_cuda_alloc(size_t bytes);
void nn_cuda_free(void *p);
/* A grow-only device buffer (*buf of *cap bytes; the ctx's staging and scratch buffers): at least
 * `bytes`, reallocated (contents lost) when smaller. NULL when out of memory. */
void *nn_cuda_grow(void **buf, size_t *cap, size_t bytes);

/* Bytes of BatchNorm's partial-sum scratch for c channels (nn_cuda_bn.cu). */
size_t nn_cuda_bn_scratch(int c);
/* A conv layer's scratch for max_batch samples: returns the bytes of its packed copies (0 for a
 * forward-only net) and sets *ws to the workspace one convolution may use (nn_cuda_conv.cu). */
size_t nn_cuda_conv_scratch(const struct nn_layer *l, int max_batch, int fwd_only, size_t *ws);

/* Tables per layer kind (NULL-terminated lookup in nn_cuda.cu). */
extern const struct nn_layer_ops nn_cuda_conv_ops, nn_cuda_linear_ops, nn_cuda_bn_ops;
extern const struct nn_layer_ops nn_cuda_relu_ops, nn_cuda_add_ops, nn_cuda_flatten_ops;
extern const struct nn_layer_ops nn_cuda_maxpool_ops, nn_cuda_gap_ops, nn_cuda_avgpool_ops;
extern const struct nn_layer_ops nn_cuda_dropout_ops;

#endif
