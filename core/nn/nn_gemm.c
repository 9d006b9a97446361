/*
 * nn_gemm: the CPU GEMM (OpenBLAS), shared by every CPU layer and the CPU backend's table.
 */
#include "nn_gemm.h"

#include <cblas.h>

void nn_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha, const float *a,
             int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    cblas_sgemm(CblasRowMajor, ta == NN_TRANS ? CblasTrans : CblasNoTrans,
                tb == NN_TRANS ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}
