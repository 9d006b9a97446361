/*
 * nn_gemm_cuda: the cuBLAS backend of nn_gemm (selected with nn_backend_select("cuda")).
 *
 * Layers keep their tensors in host memory, so each call copies A, B (and C when beta != 0) to
 * device buffers owned here, runs cublasSgemm and copies C back. The buffers only grow (no
 * allocation once the largest shapes have been seen). cuBLAS is column-major: a row-major
 * C[m x n] is the column-major C^T[n x m], and C^T = op(B)^T op(A)^T, so the call swaps the
 * operands and m, n ("transpose trick") and keeps the leading dimensions.
 *
 * A CUDA or cuBLAS failure inside a multiply is reported through nn_report (naming the failed
 * expression) and the multiply is done on the CPU instead, so the result is always right.
 */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <pthread.h>

#include <cblas.h>

extern "C" {
#include "nn_base.h"
#include "nn_gemm.h"

/* Defined here, declared in nn_gemm.c (the one place that knows about CUDA). */
const struct nn_backend_ops *nn_cuda_backend(void);
}

/* Report a failed CUDA runtime call, naming the expression, and jump to `fail`. */
#define CUDA_CHECK(expr)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (expr);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            nn_report(3, "%s:%d: %s failed: %s", __FILE__, __LINE__, #expr,                        \
                      cudaGetErrorString(e_));                                                     \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* Report a failed cuBLAS call, naming the expression, and jump to `fail`. */
#define CUBLAS_CHECK(expr)                                                                         \
    do {                                                                                           \
        cublasStatus_t s_ = (expr);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            nn_report(3, "%s:%d: %s failed: cuBLAS status %d", __FILE__, __LINE__, #expr,          \
                      (int)s_);                                                                    \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* A device buffer that only grows. */
struct s_dbuf {
    float *p;   /* device memory */
    size_t cap; /* capacity in floats */
};

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER; /* one multiply at a time */
static cublasHandle_t s_handle;                            /* created by nn_cuda_backend */
static int s_state;                                        /* 0 untried, 1 ready, -1 unusable */
static struct s_dbuf s_a, s_b, s_c;                        /* operand buffers */

/* Make b hold at least n floats. Returns 0 or -1 (reported). */
static int s_reserve(struct s_dbuf *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    if (b->p)
        CUDA_CHECK(cudaFree(b->p));
    b->p = NULL;
    b->cap = 0;
    CUDA_CHECK(cudaMalloc((void **)&b->p, n * sizeof(float)));
    b->cap = n;
    return 0;
fail:
    return -1;
}

/* Floats spanned by a row-major rows x cols matrix with leading dimension ld. */
static size_t s_span(int rows, int cols, int ld)
{
    return rows > 0 && cols > 0 ? (size_t)(rows - 1) * (size_t)ld + (size_t)cols : 0;
}

/* The multiply on the device; returns 0, or -1 after reporting the failed call. */
static int s_device_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha,
                         const float *a, int lda, const float *b, int ldb, float beta, float *c,
                         int ldc)
{
    const size_t na = ta == NN_TRANS ? s_span(k, m, lda) : s_span(m, k, lda);
    const size_t nb = tb == NN_TRANS ? s_span(n, k, ldb) : s_span(k, n, ldb);
    const size_t nc = s_span(m, n, ldc);
    const cublasOperation_t opa = ta == NN_TRANS ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = tb == NN_TRANS ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (s_reserve(&s_a, na ? na : 1) || s_reserve(&s_b, nb ? nb : 1) || s_reserve(&s_c, nc))
        return -1;
    if (na)
        CUDA_CHECK(cudaMemcpy(s_a.p, a, na * sizeof(float), cudaMemcpyHostToDevice));
    if (nb)
        CUDA_CHECK(cudaMemcpy(s_b.p, b, nb * sizeof(float), cudaMemcpyHostToDevice));
    if (beta != 0.0f)
        CUDA_CHECK(cudaMemcpy(s_c.p, c, nc * sizeof(float), cudaMemcpyHostToDevice));
    /* Column-major C^T[n x m] = op(B)^T[n x k] op(A)^T[k x m]. */
    CUBLAS_CHECK(cublasSgemm(s_handle, opb, opa, n, m, k, &alpha, s_b.p, ldb, s_a.p, lda, &beta,
                             s_c.p, ldc));
    CUDA_CHECK(cudaMemcpy(c, s_c.p, nc * sizeof(float), cudaMemcpyDeviceToHost));
    return 0;
fail:
    return -1;
}

static void s_cuda_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha,
                        const float *a, int lda, const float *b, int ldb, float beta, float *c,
                        int ldc)
{
    pthread_mutex_lock(&s_lock);
    int rc = s_device_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    pthread_mutex_unlock(&s_lock);
    if (rc != 0) {
        /* Already reported; C was not written (the copy back is the last step). */
        cblas_sgemm(CblasRowMajor, ta == NN_TRANS ? CblasTrans : CblasNoTrans,
                    tb == NN_TRANS ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb,
                    beta, c, ldc);
    }
}

static const struct nn_backend_ops s_cuda_ops = {"cuda", s_cuda_gemm};

/* The cuBLAS backend, or NULL (reported) when no CUDA device is usable. The first call creates the
 * cuBLAS handle; later calls return the cached answer. */
const struct nn_backend_ops *nn_cuda_backend(void)
{
    int count = 0;
    pthread_mutex_lock(&s_lock);
    if (s_state != 0)
        goto out;
    s_state = -1;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    if (count < 1) {
        nn_report(3, "cuda backend: no CUDA device");
        goto out;
    }
    CUBLAS_CHECK(cublasCreate(&s_handle));
    /* Plain FP32 multiplies (no TF32), so results match the CPU backend to float rounding. */
    CUBLAS_CHECK(cublasSetMathMode(s_handle, CUBLAS_DEFAULT_MATH));
    s_state = 1;
    goto out;
fail:
    if (s_handle) {
        cublasDestroy(s_handle);
        s_handle = NULL;
    }
out:
    pthread_mutex_unlock(&s_lock);
    return s_state == 1 ? &s_cuda_ops : NULL;
}
