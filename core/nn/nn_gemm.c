/*
 * nn_gemm: the CPU GEMM (OpenBLAS), shared by every CPU layer and the CPU backend's table.
 */
#include "nn_gemm.h"

#include <cblas.h>
#include <string.h>

/* OpenBLAS's name of the kernels it chose (not in cblas.h). */
char *openblas_get_corename(void);

/* Cores OpenBLAS picks when it does not recognise the processor. */
static const char *const s_fallback_cores[] = {"Prescott", "Core2", "Katmai", "Nehalem"};

void nn_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha, const float *a,
             int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    cblas_sgemm(CblasRowMajor, ta == NN_TRANS ? CblasTrans : CblasNoTrans,
                tb == NN_TRANS ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

const char *nn_gemm_better_core(void)
{
    const char *core = openblas_get_corename();
    int fallback = 0;
    for (size_t i = 0; core && i < sizeof s_fallback_cores / sizeof s_fallback_cores[0]; i++)
        fallback |= !strcmp(core, s_fallback_cores[i]);
    if (!fallback)
        return NULL;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return NULL;
}
