/*
 * eb_test_parity: see eb_test_parity.h.
 */
#include "eb_test_parity.h"

#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "app_weights.h"
#include "nn_net.h"
#include "rt_err.h"
#include "rt_safetensors.h"

/* Pass seed of the dropout masks on both sides. */
#define PARITY_DROPOUT_SEED 5

int eb_parity_system(const char *cmd)
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

static void s_check(const char *what, const struct eb_parity_case *pc, const char *bn,
                    const float *ours, const float *ref, size_t n)
{
    double e = s_relerr(ours, ref, n);
    print_message("  %-8s bn %-5s %-8s rel.err %.2e (%zu values)\n", pc->model, bn, what, e, n);
    if (!(e <= EB_PARITY_TOL)) {
        print_error("%s, bn %s: %s differs from PyTorch: relative error %.3e > %.0e\n", pc->model,
                    bn, what, e, EB_PARITY_TOL);
        s_failures++;
    }
}

static void s_run_case(const struct eb_parity_case *pc, const char *dir)
{
    const char *src = eb_test_source_dir();
    char torch_w[4200], our_w[4200], in[4200], out[4200], cmd[16384];
    snprintf(torch_w, sizeof torch_w, "%s/%s.torch.safetensors", dir, pc->model);
    snprintf(our_w, sizeof our_w, "%s/%s.ours.safetensors", dir, pc->model);
    snprintf(in, sizeof in, "%s/%s.input.safetensors", dir, pc->model);

    /* PyTorch's weights into our net, then ours out again for PyTorch. */
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/torch_zoo.py export %s %d %d %d %d 7 %s",
             src, pc->model, pc->c, pc->h, pc->w, pc->classes, torch_w);
    assert_int_equal(eb_parity_system(cmd), 0);
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
    int32_t labels[EB_PARITY_N];
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
        assert_int_equal(eb_parity_system(cmd), 0);

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
        if (!(s_relerr(grad, r_grad, np) <= EB_PARITY_TOL))
            s_worst_tensor(net, "grad", grad, r_grad, np);
        if (!(s_relerr(hv, r_hv, np) <= EB_PARITY_TOL))
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

void eb_parity_run(const struct eb_parity_case *cases, size_t n)
{
    const char *san = getenv("EB_SANITIZED");
    int sanitized = san && *san && strcmp(san, "0");
    char *dir = eb_test_tmpdir();
    nn_set_threads(1);
    const int torchvision =
        eb_parity_system("/usr/bin/python3 -c 'import torchvision' >/dev/null 2>&1") == 0;
    const char *only = getenv("EB_PARITY_MODEL"); /* one model only, e.g. "alexnet" */
    for (size_t i = 0; i < n; i++) {
        if (only && *only && strcmp(only, cases[i].model))
            continue;
        if (cases[i].heavy && sanitized) {
            print_message("  %s skipped under the sanitizer\n", cases[i].model);
            continue;
        }
        if (cases[i].torchvision && !torchvision) {
            print_message("  %s skipped: python3 cannot import torchvision\n", cases[i].model);
            continue;
        }
        s_run_case(&cases[i], dir);
    }
    assert_int_equal(s_failures, 0);
    eb_test_rmtree(dir);
    free(dir);
}
