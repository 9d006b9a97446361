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

/* OPENBLAS_CORETYPE to ask for when OpenBLAS does not know this CPU. OpenBLAS's runtime dispatch
 * (DYNAMIC_ARCH) falls back to its generic SSE3 kernels ("Prescott") on a processor newer than
 * its release (0.3.21 on a Xeon of model 207: 17 GFLOP/s of sgemm on one core against 80 with
 * its AVX-512 kernels); this returns "SkylakeX" when the CPU has AVX-512 (F, DQ, BW, VL),
 * "Haswell" when it has AVX2 and FMA, and NULL when OpenBLAS chose a specific core itself or the
 * CPU has neither. The variable is read when OpenBLAS loads, so only a new process uses it
 * (tools/eigenbatch.c re-executes itself). */
const char *nn_gemm_better_core(void);

#endif
