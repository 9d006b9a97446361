/*
 * test_nn_cuda: the cuBLAS backend of nn_gemm against the CPU backend (every transpose combination,
 * padded leading dimensions, alpha and beta), and a Conv2d forward/backward computed on both
 * backends. Skipped (exit 77) when the build has no CUDA or no device is present.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_gemm.h"
#include "nn_layer.h"
#include "nn_layer_check.h"

#ifdef EB_HAVE_CUDA

static double s_relerr(const float *a, const float *b, size_t n)
{
    double d = 0.0, nb = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        nb += (double)b[i] * b[i];
    }
    return sqrt(d) / (nb > 0.0 ? sqrt(nb) : 1.0);
}

static void test_cuda_gemm_parity(void **state)
{
    (void)state;
    const int m = 37, n = 53, k = 29, pad = 3;
    struct nn_rng rng;
    nn_rng_seed(&rng, 7);
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
            const size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
            const size_t nc = (size_t)m * ldc;
            float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
            float *c_cpu = malloc(nc * sizeof *c_cpu), *c_gpu = malloc(nc * sizeof *c_gpu);
            assert_true(a && b && c_cpu && c_gpu);
            for (size_t i = 0; i < na; i++)
                a[i] = nn_rng_normal(&rng);
            for (size_t i = 0; i < nb; i++)
                b[i] = nn_rng_normal(&rng);
            for (size_t i = 0; i < nc; i++)
                c_cpu[i] = c_gpu[i] = nn_rng_normal(&rng);
            assert_int_equal(nn_backend_select("cpu"), NN_OK);
            nn_gemm(ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c_cpu, ldc);
            assert_int_equal(nn_backend_select("cuda"), NN_OK);
            assert_string_equal(nn_backend_current()->name, "cuda");
            nn_gemm(ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c_gpu, ldc);
            assert_true(s_relerr(c_gpu, c_cpu, nc) < 1e-5);
            /* beta = 0: C's old contents are ignored (NaN must not leak). */
            for (size_t i = 0; i < nc; i++)
                c_gpu[i] = NAN;
            nn_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c_gpu, ldc);
            assert_int_equal(nn_backend_select("cpu"), NN_OK);
            nn_gemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c_cpu, ldc);
            for (int i = 0; i < m; i++)
                assert_true(s_relerr(c_gpu + (size_t)i * ldc, c_cpu + (size_t)i * ldc, n) < 1e-5);
            free(a);
            free(b);
            free(c_cpu);
            free(c_gpu);
        }
    }
}

/* One conv layer: forward output and both gradients on the CPU and on the CUDA backend. */
static void test_cuda_conv_parity(void **state)
{
    (void)state;
    struct nn_check_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_in = 1;
    cfg.in_shape[0] = (struct nn_shape){3, 9, 9};
    cfg.batch = 4;
    cfg.seed = 3;
    struct nn_check_rig *r = nn_check_rig_new(nn_conv_new("c", 8, 3, 2, 1, 1), &cfg);
    assert_non_null(r);
    const size_t ny = nn_shape_numel(&r->out.shape) * cfg.batch;
    const size_t nx = r->in_numel[0] * cfg.batch, nw = r->l->n_w;
    float *y[2], *dx[2], *g[2];
    for (int be = 0; be < 2; be++) {
        assert_int_equal(nn_backend_select(be ? "cuda" : "cpu"), NN_OK);
        r->l->ops->forward(r->l, &r->ctx);
        for (size_t j = 0; j < ny; j++)
            r->out.dy[j] = r->out.y[j] * 0.5f + 1.0f;
        memset(r->in[0].dy, 0, nx * sizeof(float));
        memset(r->g, 0, nw * sizeof(float));
        r->l->ops->backward(r->l, &r->ctx);
        y[be] = malloc(ny * sizeof(float));
        dx[be] = malloc(nx * sizeof(float));
        g[be] = malloc(nw * sizeof(float));
        memcpy(y[be], r->out.y, ny * sizeof(float));
        memcpy(dx[be], r->in[0].dy, nx * sizeof(float));
        memcpy(g[be], r->g, nw * sizeof(float));
    }
    assert_int_equal(nn_backend_select("cpu"), NN_OK);
    assert_true(s_relerr(y[1], y[0], ny) < 1e-5);
    assert_true(s_relerr(dx[1], dx[0], nx) < 1e-5);
    assert_true(s_relerr(g[1], g[0], nw) < 1e-5);
    for (int be = 0; be < 2; be++) {
        free(y[be]);
        free(dx[be]);
        free(g[be]);
    }
    nn_check_rig_destroy(&r);
}

int main(void)
{
    if (nn_backend_select("cuda") != NN_OK) {
        printf("test_nn_cuda: no usable CUDA device; skipped\n");
        return EB_TEST_SKIP;
    }
    nn_backend_select("cpu");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_gemm_parity),
        cmocka_unit_test(test_cuda_conv_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

int main(void)
{
    /* Without CUDA the backend must be refused cleanly. */
    if (nn_backend_select("cuda") != NN_ERR_ARG || strcmp(nn_backend_current()->name, "cpu")) {
        printf("test_nn_cuda: nn_backend_select(\"cuda\") did not fail cleanly without CUDA\n");
        return 1;
    }
    printf("test_nn_cuda: built without CUDA; skipped\n");
    return EB_TEST_SKIP;
}

#endif
