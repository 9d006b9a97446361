/*
 * test_nn_cuda: the CUDA backend's GEMM on device memory against OpenBLAS (every transpose
 * combination, padded leading dimensions, alpha and beta), and a zoo net moved to the device
 * giving the CPU's loss, gradient and Hessian-vector product. Skipped (exit 77) when the build has
 * no CUDA or no device is present; the full per-layer comparison is tests/gpu/gpu_check.c.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_backend.h"
#include "nn_net.h"

static double s_relerr(const float *a, const float *b, size_t n)
{
    double d = 0.0, nb = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        nb += (double)b[i] * b[i];
    }
    return sqrt(d) / (nb > 0.0 ? sqrt(nb) : 1.0);
}

static const struct nn_backend_ops *s_cuda;

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
            float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4);
            float *c_gpu = malloc(nc * 4);
            float *da = s_cuda->alloc(na * 4), *db = s_cuda->alloc(nb * 4);
            float *dc = s_cuda->alloc(nc * 4);
            assert_true(a && b && c && c_gpu && da && db && dc);
            for (size_t i = 0; i < na; i++)
                a[i] = nn_rng_normal(&rng);
            for (size_t i = 0; i < nb; i++)
                b[i] = nn_rng_normal(&rng);
            for (size_t i = 0; i < nc; i++)
                c[i] = nn_rng_normal(&rng);
            assert_int_equal(s_cuda->upload(da, a, na * 4), NN_OK);
            assert_int_equal(s_cuda->upload(db, b, nb * 4), NN_OK);
            assert_int_equal(s_cuda->upload(dc, c, nc * 4), NN_OK);
            s_cuda->gemm(ta, tb, m, n, k, 0.7f, da, lda, db, ldb, 0.3f, dc, ldc);
            nn_gemm(ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.3f, c, ldc);
            assert_int_equal(s_cuda->download(c_gpu, dc, nc * 4), NN_OK);
            for (int i = 0; i < m; i++)
                assert_true(s_relerr(c_gpu + (size_t)i * ldc, c + (size_t)i * ldc, n) < 1e-5);
            s_cuda->free(da);
            s_cuda->free(db);
            s_cuda->free(dc);
            free(a);
            free(b);
            free(c);
            free(c_gpu);
        }
    }
}

/* cnn on 4 samples of 1x28x28: loss, gradient and HVP on the CPU and on the device. */
static void test_cuda_net_parity(void **state)
{
    (void)state;
    const int n = 4, d = 28 * 28;
    nn_net_t *net[2];
    for (int b = 0; b < 2; b++) {
        net[b] = nn_zoo_new("cnn", 1, 28, 28, 10, n, NULL);
        assert_non_null(net[b]);
    }
    assert_int_equal(nn_net_to_backend(net[1], "cuda", "cnn"), NN_OK);
    size_t np = nn_net_param_count(net[0]);
    float *x = malloc((size_t)n * d * 4), *v = malloc(np * 4), *hv[2];
    int32_t labels[4] = {1, 7, 3, 0};
    struct nn_rng rng;
    nn_rng_seed(&rng, 5);
    for (int i = 0; i < n * d; i++)
        x[i] = nn_rng_uniform(&rng);
    for (size_t i = 0; i < np; i++)
        v[i] = nn_rng_normal(&rng);
    float loss[2];
    for (int b = 0; b < 2; b++) {
        nn_net_zero_grad(net[b]);
        loss[b] = nn_net_train_pass(net[b], x, labels, n, NN_BN_TRAIN, NN_PASS_PARAM_GRAD, 1.0f,
                                    NULL, NULL);
        assert_int_equal(nn_net_sync(net[b], NN_SYNC_GRADS_TO_HOST), NN_OK);
        hv[b] = malloc(np * 4);
        nn_net_hvp(net[b], x, labels, n, NN_BN_EVAL, 0, v, hv[b]);
    }
    assert_true(fabsf(loss[1] - loss[0]) <= 1e-4f * fabsf(loss[0]));
    assert_true(s_relerr(nn_net_grads(net[1]), nn_net_grads(net[0]), np) < 1e-4);
    assert_true(s_relerr(hv[1], hv[0], np) < 1e-4);
    for (int b = 0; b < 2; b++) {
        free(hv[b]);
        nn_net_destroy(&net[b]);
    }
    free(x);
    free(v);
}

int main(void)
{
    if (nn_backend_get("cuda", &s_cuda) != NN_OK) {
        printf("test_nn_cuda: %s; skipped\n", nn_backend_why());
        return EB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_gemm_parity),
        cmocka_unit_test(test_cuda_net_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
