/*
 * nn_gemm: GEMM dispatch and the CPU (OpenBLAS) backend.
 */
#include "nn_gemm.h"

#include <cblas.h>
#include <string.h>

#include "nn_base.h"

static void s_cpu_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc)
{
    cblas_sgemm(CblasRowMajor, ta == NN_TRANS ? CblasTrans : CblasNoTrans,
                tb == NN_TRANS ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

static const struct nn_backend_ops s_cpu = {"cpu", s_cpu_gemm};

#ifdef EB_HAVE_CUDA
/* The cuBLAS backend (nn_gemm_cuda.cu), or NULL when no CUDA device is usable. */
extern const struct nn_backend_ops *nn_cuda_backend(void);
#else
static const struct nn_backend_ops *nn_cuda_backend(void)
{
    return NULL; /* built without CUDA */
}
#endif

static const struct nn_backend_ops *s_current = &s_cpu;

void nn_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha, const float *a,
             int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    s_current->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int nn_backend_select(const char *name)
{
    if (!strcmp(name, "cpu")) {
        s_current = &s_cpu;
        return NN_OK;
    }
    if (!strcmp(name, "cuda")) {
        const struct nn_backend_ops *ops = nn_cuda_backend();
        if (!ops)
            return NN_ERR_ARG;
        s_current = ops;
        return NN_OK;
    }
    return NN_ERR_ARG;
}

const struct nn_backend_ops *nn_backend_current(void)
{
    return s_current;
}
