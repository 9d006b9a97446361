/*
 * nn_gemm: the one cblas-shaped matrix multiply every CPU layer goes through (OpenBLAS). Device
 * backends have their own (struct nn_backend_ops's gemm, nn_backend.h) on device memory.
 *
 *   C[m x n] = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X or X^T.
 *   A is m x k (lda >= k) or, transposed, k x m (lda >= m); likewise B.
 */
#ifndef NN_GEMM_H
#define NN_GEMM_H

enum nn_trans { NN_NO_TRANS = 0, NN_TRANS = 1 };

void nn_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha, const float *a,
             int lda, const float *b, int ldb, float beta, float *c, int ldc);

#endif
