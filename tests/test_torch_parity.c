/*
 * test_torch_parity: the NN core agrees with PyTorch (Debian's python3-torch) on the same weights
 * and inputs (eb_test_parity: logits, loss, gradients, BatchNorm statistics and one HVP in eval
 * and train mode, relative error <= 1e-4 against float64 PyTorch) for the CIFAR-style zoo models
 * and wrn16_4 at small sizes; the PyTorch modules have models.md's parameter counts (torch_zoo.py,
 * every model); the top Hessian eigenvalue by power iteration from the same start vector matches
 * too. torchvision's models: test_torch_parity_imagenet.
 *
 * Skips (77) when /usr/bin/python3 cannot import torch.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_weights.h"
#include "eb_test_parity.h"
#include "eig_power.h"
#include "nn_net.h"
#include "rt_err.h"
#include "rt_safetensors.h"

/* The CIFAR-style models and wrn16_4 (torch_zoo.py's own modules); torchvision's in
 * test_torch_parity_imagenet. */
static const struct eb_parity_case s_cases[] = {
    /* model, c, h, w, classes, n, heavy, torchvision, eval_only */
    {"mlp", 1, 8, 8, 5, 6, 0, 0, 0},       {"cnn", 1, 8, 8, 5, 6, 0, 0, 0},
    {"resnet20", 3, 8, 8, 7, 6, 0, 0, 0},  {"resnet18_cifar", 1, 16, 16, 4, 6, 1, 0, 0},
    {"wrn16_4", 3, 32, 32, 5, 2, 1, 0, 0},
};

/* The PyTorch modules have models.md's parameter counts, as ours (test_nn_zoo) do. */
static void test_torch_zoo_counts(void **state)
{
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/torch_zoo.py", eb_test_source_dir());
    assert_int_equal(eb_parity_system(cmd), 0);
    /* The same counts as torch_zoo.py's EXPECTED_PARAMS, which it just checked on PyTorch (the
     * ImageNet models at 3x224x224 there; their counts do not depend on the input size, which is
     * smaller here). wrn16_4's comes from torch_zoo.py's WideResNet. */
    static const struct {
        const char *model; /* zoo name */
        int c, hw;         /* input channels and side */
        int classes;       /* class count */
        size_t params;     /* parameters */
    } counts[] = {{"mlp", 1, 28, 10, 535818},          {"cnn", 1, 28, 10, 421738},
                  {"resnet20", 1, 28, 10, 272186},     {"resnet18_cifar", 1, 28, 10, 11172810},
                  {"wrn16_4", 3, 32, 10, 2748890},     {"resnet18", 3, 64, 1000, 11689512},
                  {"resnet34", 3, 64, 1000, 21797672}, {"resnet50", 3, 64, 1000, 25557032},
                  {"alexnet", 3, 63, 1000, 61100840}};
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        nn_net_t *net = nn_zoo_new(counts[i].model, counts[i].c, counts[i].hw, counts[i].hw,
                                   counts[i].classes, 1, NULL);
        assert_non_null(net);
        assert_int_equal(nn_net_param_count(net), counts[i].params);
        nn_net_destroy(&net);
    }
}

static void test_zoo_matches_pytorch(void **state)
{
    (void)state;
    eb_parity_run(s_cases, sizeof s_cases / sizeof s_cases[0]);
}

/* Power iteration as eigensvc/eig_power runs it, from a given start: v = v0/|v0|; repeat
 * hv = H v, lambda = v.hv, v = hv/|hv| until |lambda - previous| <= tol |lambda|. Returns lambda.
 */
static double s_power_iteration(nn_net_t *net, const float *x, const int32_t *labels, int n,
                                const float *v0, int iters, double tol, int *used)
{
    size_t np = nn_net_param_count(net);
    float *v = malloc(np * sizeof *v), *hv = malloc(np * sizeof *hv);
    assert_true(v && hv);
    double norm = 0, lam = 0, prev = 0;
    for (size_t i = 0; i < np; i++)
        norm += (double)v0[i] * v0[i];
    for (size_t i = 0; i < np; i++)
        v[i] = (float)(v0[i] / sqrt(norm));
    for (int it = 1; it <= iters; it++) {
        *used = it;
        nn_net_hvp(net, x, labels, n, NN_BN_EVAL, 0, v, hv);
        lam = 0;
        norm = 0;
        for (size_t i = 0; i < np; i++) {
            lam += (double)v[i] * hv[i];
            norm += (double)hv[i] * hv[i];
        }
        for (size_t i = 0; i < np; i++)
            v[i] = (float)(hv[i] / sqrt(norm));
        if (*used > 1 && fabs(lam - prev) <= tol * fabs(lam))
            break;
        prev = lam;
    }
    free(hv);
    free(v);
    return lam;
}

/* eig_power's callback: the full HVP of the net on one batch, BatchNorm in eval mode. */
struct eig_batch {
    nn_net_t *net;         /* the net */
    const float *x;        /* inputs */
    const int32_t *labels; /* labels */
    int n;                 /* samples */
};

static int s_eig_hvp(void *user, const float *v, float *hv)
{
    struct eig_batch *b = user;
    nn_net_hvp(b->net, b->x, b->labels, b->n, NN_BN_EVAL, 0, v, hv);
    return 0;
}

/* The top Hessian eigenvalue agrees with torch_ref.py --eig: a power iteration from the same start
 * vector step for step, and eigensvc's eig_power (its own seeded start) once converged. */
static void test_top_eigenvalue_matches_pytorch(void **state)
{
    (void)state;
    const char *src = eb_test_source_dir();
    char *dir = eb_test_tmpdir();
    char wpath[4200], in[4200], out[4200], cmd[16384];
    snprintf(wpath, sizeof wpath, "%s/w.safetensors", dir);
    snprintf(in, sizeof in, "%s/in.safetensors", dir);
    snprintf(out, sizeof out, "%s/ref.safetensors", dir);
    const int n = 16, c = 1, h = 8, w = 8, k = 10, iters = 300;
    const double tol = 1e-7;
    int err = 0;
    nn_net_t *net = nn_zoo_new("cnn", c, h, w, k, n, &err);
    assert_non_null(net);
    nn_net_init(net, 5);
    if (app_weights_save(net, wpath))
        fail_msg("%s", rt_err_msg());
    size_t np = nn_net_param_count(net), nx = (size_t)n * c * h * w;
    float *x = malloc(nx * sizeof *x), *v0 = malloc(np * sizeof *v0);
    int32_t labels[16];
    struct nn_rng rng;
    nn_rng_seed(&rng, 3);
    for (size_t i = 0; i < nx; i++)
        x[i] = nn_rng_uniform(&rng);
    for (size_t i = 0; i < np; i++)
        v0[i] = nn_rng_normal(&rng);
    for (int i = 0; i < n; i++)
        labels[i] = i % k;
    struct rt_st_tensor t[4] = {
        {.name = "x", .ndim = 4, .shape = {n, c, h, w}, .data = x},
        {.name = "labels", .dtype = RT_ST_I32, .ndim = 1, .shape = {n}, .data = labels},
        {.name = "v", .ndim = 1, .shape = {(int64_t)np}, .data = v0},
        {.name = "v0", .ndim = 1, .shape = {(int64_t)np}, .data = v0},
    };
    if (rt_st_write(in, t, 4, NULL))
        fail_msg("%s", rt_err_msg());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/bench/torch_ref.py --model cnn --weights %s --input %s "
             "--bn eval --out %s --double --eig --eig-iters %d --eig-tol %g",
             src, wpath, in, out, iters, tol);
    assert_int_equal(eb_parity_system(cmd), 0);
    rt_st_t *st = NULL;
    if (rt_st_open(out, &st))
        fail_msg("%s", rt_err_msg());
    float ref = 0;
    int32_t ref_iters = 0;
    assert_int_equal(rt_st_read(st, "eig", RT_ST_F32, 0, NULL, 1, &ref), 0);
    assert_int_equal(rt_st_read(st, "eig_iters", RT_ST_I32, 0, NULL, 1, &ref_iters), 0);
    rt_st_close(&st);
    int used = 0;
    double lam = s_power_iteration(net, x, labels, n, v0, iters, tol, &used);
    print_message("  cnn top eigenvalue: ours %.6f (%d iterations), torch %.6f (%d)\n", lam, used,
                  ref, ref_iters);
    assert_true(ref > 0);
    assert_true(eb_test_reldiff(lam, ref, 1e-6) < 1e-4);

    struct eig_power_config cfg = {.max_iter = iters, .tol = tol, .seed = 1};
    eig_power_t *pi = eig_power_new(np, &cfg);
    assert_non_null(pi);
    struct eig_batch batch = {net, x, labels, n};
    struct eig_power_result res;
    assert_int_equal(eig_power_run(pi, s_eig_hvp, &batch, &res), 0);
    print_message("  cnn top eigenvalue: eig_power %.6f (%d iterations, converged %d)\n",
                  res.eigenvalue, res.iterations, res.converged);
    assert_true(eb_test_reldiff(res.eigenvalue, ref, 1e-6) < 1e-3);
    eig_power_destroy(&pi);
    free(v0);
    free(x);
    nn_net_destroy(&net);
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    if (eb_parity_system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_torch_parity: /usr/bin/python3 cannot import torch: skipped\n");
        return EB_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_zoo_counts),
        cmocka_unit_test(test_zoo_matches_pytorch),
        cmocka_unit_test(test_top_eigenvalue_matches_pytorch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
