/*
 * gpu_check: the CUDA backend against the CPU backend on whole nets: loss, gradient (train-mode
 * BN) and one full Hessian-vector product (relative error <= 1e-4), and the top eigenvalue by 20
 * power iterations (<= 1e-3), for the models named on the command line (default: cnn resnet20).
 * Exit 0 when all agree, 1 otherwise, 77 without a device.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_backend.h"
#include "nn_net.h"

#define GPU_CHECK_BATCH 16
#define GPU_CHECK_POWER_ITERS 20

static double s_relerr(const float *a, const float *b, size_t n)
{
    double d = 0.0, nb = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        nb += (double)b[i] * b[i];
    }
    return sqrt(d) / (nb > 0.0 ? sqrt(nb) : 1.0);
}

/* Top eigenvalue by power iteration from a fixed start. */
static double s_top_eig(nn_net_t *net, const float *x, const int32_t *y, float *v, float *hv)
{
    size_t np = nn_net_param_count(net);
    double lam = 0.0;
    for (int it = 0; it < GPU_CHECK_POWER_ITERS; it++) {
        double nv = 0.0;
        for (size_t i = 0; i < np; i++)
            nv += (double)v[i] * v[i];
        for (size_t i = 0; i < np; i++)
            v[i] = (float)(v[i] / sqrt(nv));
        nn_net_hvp(net, x, y, GPU_CHECK_BATCH, NN_BN_EVAL, 0, v, hv);
        lam = 0.0;
        for (size_t i = 0; i < np; i++)
            lam += (double)v[i] * hv[i];
        memcpy(v, hv, np * sizeof(float));
    }
    return lam;
}

static int s_check(const char *model, int c, int h, int w)
{
    nn_net_t *net[2];
    for (int b = 0; b < 2; b++)
        if (!(net[b] = nn_zoo_new(model, c, h, w, 10, GPU_CHECK_BATCH, NULL)))
            return 1;
    if (nn_net_to_backend(net[1], "cuda", model) != NN_OK)
        return 1;
    size_t np = nn_net_param_count(net[0]), nx = (size_t)GPU_CHECK_BATCH * c * h * w;
    float *x = malloc(nx * 4), *v0 = malloc(np * 4), *v[2], *hv[2];
    int32_t y[GPU_CHECK_BATCH];
    struct nn_rng rng;
    nn_rng_seed(&rng, 11);
    for (size_t i = 0; i < nx; i++)
        x[i] = nn_rng_normal(&rng);
    for (int i = 0; i < GPU_CHECK_BATCH; i++)
        y[i] = i % 10;
    for (size_t i = 0; i < np; i++)
        v0[i] = nn_rng_normal(&rng);
    double loss[2], lam[2];
    float *g[2];
    for (int b = 0; b < 2; b++) {
        nn_net_zero_grad(net[b]);
        loss[b] = nn_net_train_pass(net[b], x, y, GPU_CHECK_BATCH, NN_BN_TRAIN, NN_PASS_PARAM_GRAD,
                                    1.0f, NULL, NULL);
        nn_net_sync(net[b], NN_SYNC_GRADS_TO_HOST);
        g[b] = nn_net_grads(net[b]);
        hv[b] = malloc(np * 4);
        v[b] = malloc(np * 4);
        nn_net_hvp(net[b], x, y, GPU_CHECK_BATCH, NN_BN_EVAL, 0, v0, hv[b]);
    }
    double eg = s_relerr(g[1], g[0], np), eh = s_relerr(hv[1], hv[0], np);
    for (int b = 0; b < 2; b++) {
        memcpy(v[b], v0, np * 4);
        lam[b] = s_top_eig(net[b], x, y, v[b], hv[b]);
    }
    double el = fabs(lam[1] - lam[0]) / fmax(fabs(lam[0]), 1e-30);
    int ok =
        fabs(loss[1] - loss[0]) <= 1e-4 * fabs(loss[0]) && eg <= 1e-4 && eh <= 1e-4 && el <= 1e-3;
    printf("{\"check\":\"%s\",\"loss_cpu\":%.6g,\"loss_cuda\":%.6g,\"grad_relerr\":%.3g,"
           "\"hvp_relerr\":%.3g,\"lambda_cpu\":%.6g,\"lambda_cuda\":%.6g,\"ok\":%s}\n",
           model, loss[0], loss[1], eg, eh, lam[0], lam[1], ok ? "true" : "false");
    for (int b = 0; b < 2; b++) {
        free(hv[b]);
        free(v[b]);
        nn_net_destroy(&net[b]);
    }
    free(x);
    free(v0);
    return !ok;
}

int main(int argc, char **argv)
{
    const struct nn_backend_ops *be;
    if (nn_backend_get("cuda", &be) != NN_OK) {
        printf("gpu_check: %s; skipped\n", nn_backend_why());
        return 77;
    }
    int bad = 0;
    if (argc < 2) {
        bad |= s_check("cnn", 1, 28, 28);
        bad |= s_check("resnet20", 3, 32, 32);
    }
    for (int i = 1; i < argc; i++)
        bad |= s_check(argv[i], 3, 32, 32);
    return bad;
}
