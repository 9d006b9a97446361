/*
 * test_torch_parity: the NN core agrees with PyTorch (Debian's python3-torch) on the same weights
 * and inputs: logits, loss, parameter gradient, input gradient, BatchNorm running statistics after
 * one train-mode pass, and one Hessian-vector product, for every zoo model at small sizes with
 * BatchNorm in eval and in train mode. Agreement is norm-wise relative error of whole vectors,
 * ||ours - torch|| / ||torch|| <= 1e-4; PyTorch computes in float64 (--double), so the bound
 * measures the float32 error of our side alone.
 *
 * Weights go both ways: bench/torch_zoo.py exports a seeded PyTorch model (num_batches_tracked
 * included, BN state perturbed), app_weights_load reads it, app_weights_save writes it back and
 * bench/torch_ref.py loads our file with PyTorch's strict load_state_dict.
 *
 * The ImageNet models are torchvision's own modules (torchvision.models.resnet18(num_classes=nc)
 * etc.), loaded from our file with strict=True; they run at small inputs (batch 2, 3x64x64, alexnet
 * at its smallest input 3x63x63) and are skipped when python3-torchvision is missing. Dropout
 * (alexnet, train mode) uses the same masks on both sides: our pass seed is fixed
 * (nn_net_set_seed) and torch_ref.py rebuilds those masks for it.
 *
 * The top Hessian eigenvalue by power iteration from the same start vector matches too.
 *
 * Skips (77) when /usr/bin/python3 cannot import torch.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "app_weights.h"
#include "eig_power.h"
#include "nn_net.h"
#include "rt_err.h"
#include "rt_safetensors.h"

/* Norm-wise relative tolerance of every compared vector. */
#define PARITY_TOL 1e-4
/* Largest batch of a case. */
#define PARITY_N 6
/* Pass seed of the dropout masks on both sides. */
#define PARITY_DROPOUT_SEED 5

/* One parity case: a model at a small input size. */
struct parity_case {
    const char *model; /* zoo name */
    int c, h, w;       /* input shape */
    int classes;       /* class count */
    int n;             /* samples, <= PARITY_N */
    int heavy;         /* skipped under the sanitizer (EB_SANITIZED) */
    int torchvision;   /* PyTorch's side is torchvision's module */
    int eval_only;     /* compared in eval mode only (see s_cases) */
};

/* resnet50 is compared in eval mode only: with train-mode BatchNorm over a batch of 2 at small
 * inputs its gradient is ill-conditioned in float32 (PyTorch's own float32 gradient differs from
 * its float64 one by 1e-2 .. 3e-2 at 3x64x64 and 3x96x96); the train-mode R-passes of the same
 * layers are compared through resnet18 and resnet34. */
static const struct parity_case s_cases[] = {
    /* model, c, h, w, classes, n, heavy, torchvision, eval_only */
    {"mlp", 1, 8, 8, 5, 6, 0, 0, 0},        {"cnn", 1, 8, 8, 5, 6, 0, 0, 0},
    {"resnet20", 3, 8, 8, 7, 6, 0, 0, 0},   {"resnet18_cifar", 1, 16, 16, 4, 6, 1, 0, 0},
    {"wrn16_4", 3, 32, 32, 5, 2, 1, 0, 0},  {"resnet18", 3, 64, 64, 5, 2, 1, 1, 0},
    {"resnet34", 3, 64, 64, 5, 2, 1, 1, 0}, {"resnet50", 3, 32, 32, 5, 2, 1, 1, 1},
    {"alexnet", 3, 63, 63, 5, 2, 1, 1, 0},
};

static int s_system(const char *cmd)
{
    int st = system(cmd);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

/* ||a - b|| / ||b|| in double precision. */
static double s_relerr(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Read reference tensor `name` (count floats) from st into a new buffer. */
static float *s_ref(rt_st_t *st, const char *name, size_t count)
{
    float *out = malloc((count ? count : 1) * sizeof *out);
    assert_non_null(out);
    if (rt_st_read(st, name, RT_ST_F32, 0, NULL, count, out))
        fail_msg("%s", rt_err_msg());
    return out;
}

/* Before a failing whole-vector check of parameters: the parameter tensor that differs most. */
static void s_worst_tensor(nn_net_t *net, const char *what, const float *ours, const float *ref,
                           size_t np)
{
    double worst = -1;
    const char *name = "";
    for (int i = 0; i < nn_net_tensor_count(net); i++) {
        const struct nn_tensor_info *t = nn_net_tensor(net, i);
        if (t->kind != NN_TENSOR_PARAM || t->offset + t->numel > np)
            continue;
        double e = s_relerr(ours + t->offset, ref + t->offset, t->numel);
        if (getenv("EB_PARITY_TENSORS"))
            print_message("    %s %s %.2e\n", what, t->name, e);
        if (e > worst) {
            worst = e;
            name = t->name;
        }
    }
    print_message("  %s: largest relative error in %s: %.2e\n", what, name, worst);
}

/* Failed comparisons so far: every comparison of a case is printed before the test fails. */
static int s_failures;

static void s_check(const char *what, const struct parity_case *pc, const char *bn,
                    const float *ours, const float *ref, size_t n)
{
    double e = s_relerr(ours, ref, n);
    print_message("  %-8s bn %-5s %-8s rel.err %.2e (%zu values)\n", pc->model, bn, what, e, n);
    if (!(e <= PARITY_TOL)) {
        print_error("%s, bn %s: %s differs from PyTorch: relative error %.3e > %.0e\n", pc->model,
                    bn, what, e, PARITY_TOL);
        s_failures++;
    }
}

static void s_run_case(const struct parity_case *pc, const char *dir)
{
    const char *src = eb_test_source_dir();
    char torch_w[4200], our_w[4200], in[4200], out[4200], cmd[16384];
    snprintf(torch_w, sizeof torch_w, "%s/%s.torch.safetensors", dir, pc->model);
    snprintf(our_w, sizeof our_w, "%s/%s.ours.safetensors", dir, pc->model);
    snprintf(in, sizeof in, "%s/%s.input.safetensors", dir, pc->model);

    /* PyTorch's weights into our net, then ours out again for PyTorch. */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/torch_zoo.py export %s %d %d %d %d 7 %s",
             src, pc->model, pc->c, pc->h, pc->w, pc->classes, torch_w);
    assert_int_equal(s_system(cmd), 0);
    int err = 0;
    nn_net_t *net = nn_zoo_new(pc->model, pc->c, pc->h, pc->w, pc->classes, pc->n, &err);
    assert_non_null(net);
    nn_net_set_seed(net, PARITY_DROPOUT_SEED, 1);
    if (app_weights_load(net, torch_w))
        fail_msg("loading PyTorch's weights: %s", rt_err_msg());
    if (app_weights_save(net, our_w))
        fail_msg("saving weights: %s", rt_err_msg());

    /* Inputs, labels and a direction. */
    const int n = pc->n, c = pc->c, h = pc->h, w = pc->w, k = pc->classes;
    const size_t nx = (size_t)n * c * h * w, np = nn_net_param_count(net);
    const size_t nb = nn_net_buffer_count(net);
    float *x = malloc(nx * sizeof *x), *v = malloc(np * sizeof *v);
    int32_t labels[PARITY_N];
    assert_true(x && v);
    struct nn_rng rng;
    nn_rng_seed(&rng, 11);
    for (size_t i = 0; i < nx; i++)
        x[i] = nn_rng_normal(&rng);
    for (size_t i = 0; i < np; i++)
        v[i] = nn_rng_normal(&rng);
    for (int i = 0; i < n; i++)
        labels[i] = (int32_t)((i * 3 + 1) % k);
    struct rt_st_tensor t[3] = {
        {.name = "x", .ndim = 4, .shape = {n, c, h, w}, .data = x},
        {.name = "labels", .dtype = RT_ST_I32, .ndim = 1, .shape = {n}, .data = labels},
        {.name = "v", .ndim = 1, .shape = {(int64_t)np}, .data = v},
    };
    if (rt_st_write(in, t, 3, NULL))
        fail_msg("%s", rt_err_msg());

    float *logits = malloc((size_t)n * k * sizeof *logits), *dx = malloc(nx * sizeof *dx);
    float *hv = malloc(np * sizeof *hv), *grad = malloc(np * sizeof *grad);
    float *buf0 = malloc((nb ? nb : 1) * sizeof *buf0);
    assert_true(logits && dx && hv && grad && buf0);
    memcpy(buf0, nn_net_buffers(net), nb * sizeof *buf0);

    for (int mode = 0; mode < (pc->eval_only ? 1 : 2); mode++) {
        const char *bn = mode == 0 ? "eval" : "train";
        enum nn_bn_mode bm = mode == 0 ? NN_BN_EVAL : NN_BN_TRAIN;
        snprintf(out, sizeof out, "%s/%s.%s.ref.safetensors", dir, pc->model, bn);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s/bench/torch_ref.py --model %s --weights %s --input %s "
                 "--bn %s --out %s --double --dropout-seed %d",
                 src, pc->model, our_w, in, bn, out, PARITY_DROPOUT_SEED);
        assert_int_equal(s_system(cmd), 0);

        /* Ours: the running statistics start from the loaded file in both modes. */
        memcpy(nn_net_buffers(net), buf0, nb * sizeof *buf0);
        float loss = nn_net_forward(net, x, labels, n, bm, logits, NULL);
        nn_net_zero_grad(net);
        float loss2 = nn_net_train_pass(
            net, x, labels, n, bm, NN_PASS_PARAM_GRAD | NN_PASS_INPUT_GRAD | NN_PASS_UPDATE_STATS,
            1.0f, dx, NULL);
        memcpy(grad, nn_net_grads(net), np * sizeof *grad);
        nn_net_hvp(net, x, labels, n, bm, 0, v, hv);

        rt_st_t *st = NULL;
        if (rt_st_open(out, &st))
            fail_msg("%s", rt_err_msg());
        float *r_logits = s_ref(st, "logits", (size_t)n * k);
        float *r_loss = s_ref(st, "loss", 1);
        float *r_grad = s_ref(st, "grad", np);
        float *r_dx = s_ref(st, "dx", nx);
        float *r_hv = s_ref(st, "hv", np);
        float *r_buf = s_ref(st, "buffers", nb);
        rt_st_close(&st);

        s_check("logits", pc, bn, logits, r_logits, (size_t)n * k);
        s_check("loss", pc, bn, &loss, r_loss, 1);
        s_check("loss*", pc, bn, &loss2, r_loss, 1);
        if (!(s_relerr(grad, r_grad, np) <= PARITY_TOL))
            s_worst_tensor(net, "grad", grad, r_grad, np);
        if (!(s_relerr(hv, r_hv, np) <= PARITY_TOL))
            s_worst_tensor(net, "hvp", hv, r_hv, np);
        s_check("grad", pc, bn, grad, r_grad, np);
        s_check("dx", pc, bn, dx, r_dx, nx);
        s_check("hvp", pc, bn, hv, r_hv, np);
        if (nb)
            s_check("buffers", pc, bn, nn_net_buffers(net), r_buf, nb);
        free(r_logits);
        free(r_loss);
        free(r_grad);
        free(r_dx);
        free(r_hv);
        free(r_buf);
    }
    free(buf0);
    free(grad);
    free(hv);
    free(dx);
    free(logits);
    free(v);
    free(x);
    nn_net_destroy(&net);
}

/* The PyTorch modules have models.md's parameter counts, as ours (test_nn_zoo) do. */
static void test_torch_zoo_counts(void **state)
{
    (void)state;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/torch_zoo.py", eb_test_source_dir());
    assert_int_equal(s_system(cmd), 0);
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
    const char *san = getenv("EB_SANITIZED");
    int sanitized = san && *san && strcmp(san, "0");
    char *dir = eb_test_tmpdir();
    nn_set_threads(1);
    const int torchvision =
        s_system("/usr/bin/python3 -c 'import torchvision' >/dev/null 2>&1") == 0;
    const char *only = getenv("EB_PARITY_MODEL"); /* one model only, e.g. "alexnet" */
    for (size_t i = 0; i < sizeof s_cases / sizeof s_cases[0]; i++) {
        if (only && *only && strcmp(only, s_cases[i].model))
            continue;
        if (s_cases[i].heavy && sanitized) {
            print_message("  %s skipped under the sanitizer\n", s_cases[i].model);
            continue;
        }
        if (s_cases[i].torchvision && !torchvision) {
            print_message("  %s skipped: python3 cannot import torchvision\n", s_cases[i].model);
            continue;
        }
        s_run_case(&s_cases[i], dir);
    }
    assert_int_equal(s_failures, 0);
    eb_test_rmtree(dir);
    free(dir);
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
    assert_int_equal(s_system(cmd), 0);
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
    if (s_system("/usr/bin/python3 -c 'import torch, numpy' >/dev/null 2>&1") != 0) {
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
