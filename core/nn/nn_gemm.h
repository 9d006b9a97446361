/*
 * nn_gemm: the one cblas-shaped matrix multiply every layer goes through, dispatched to the active
 * backend (CPU: OpenBLAS; CUDA: cuBLAS when built with EB_CUDA and selected).
 *
 *   C[m x n] = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X or X^T.
 *   A is m x k (lda >= k) or, transposed, k x m (lda >= m); likewise B.
 */
#ifndef NN_GEMM_H
#define NN_GEMM_H

enum nn_trans { NN_NO_TRANS = 0, NN_TRANS = 1 };

void nn_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha, const float *a,
             int lda, const float *b, int ldb, float beta, float *c, int ldc);

/* Backend operations table; the device choice lives here and nowhere else. */
struct nn_backend_ops {
    const char *name; /* "cpu", "cuda" */
    void (*gemm)(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
};

/* Select a backend by name; returns 0, or NN_ERR_ARG when it is unknown or not built. */
int nn_backend_select(const char *name);
const struct nn_backend_ops *nn_backend_current(void);

#endif
