/*
 * gpu_check: the CUDA backend against the CPU backend, as one table on stdout.
 *   layers   every layer kind's forward, R-forward, backward and R-backward, the softmax
 *            cross-entropy, SGD and FGSM's sign step (gpu_layers.c; relative error <= 1e-4)
 *   nets     for the models named on the command line (default: cnn on 1x28x28 and resnet20 on
 *            3x32x32), on the same weights and batch: loss and gradient of a train-mode pass
 *            (BatchNorm running statistics updated), the weights after one SGD step on each
 *            backend (nn_net_sgd_step: the device step runs on the device), the loss after that
 *            step, one full Hessian-vector product (BatchNorm eval) (all <= 1e-4), and the top
 *            eigenvalue by GC_POWER_ITERS power iterations from one start (<= 1e-3)
 * Exit 0 when every row is within its tolerance, 1 otherwise, 77 without a device.
 * `gpu_check --cpu [MODEL...]` runs the same rig with the CPU backend in the device's place (every
 * error must be 0; no net unless named): a check of the rig itself on a machine without a GPU
 * (CTest runs it with mlp).
 *
 * Whole-net tolerance 1e-4: the bound for fp32. Differences are summation order only
 * (no TF32 anywhere: cuDNN runs with CUDNN_FMA_MATH, cuBLAS in its default fp32 math), and grow
 * through the depth of resnet20 to about 1e-6 .. 1e-5 for the gradient and the HVP; a wrong pass
 * anywhere gives O(1). That holds at points where fp32 itself is well-conditioned: a ReLU input
 * within rounding of zero takes either branch, and at some points that alone moves the gradient by
 * 1e-3 (PyTorch's fp32 against its fp64, too). So the rows run at the first of GC_SEEDS points
 * (input and direction from one seed) where the CPU's two layouts, one of them on an input
 * perturbed by a few ulps, agree to 1e-5 (s_floor; each seed's floor is printed).
 * The eigenvalue's 1e-3 leaves room for the power iteration's amplification
 * of those differences along the (not yet converged) second eigen-direction.
 */
#include "gpu_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_net.h"

#define GC_BATCH 16       /* samples of the whole-net checks */
#define GC_POWER_ITERS 20 /* power iterations of the eigenvalue check */
#define GC_TOL 1e-4       /* loss, gradient, step, HVP */
#define GC_TOL_EIG 1e-3   /* top eigenvalue */
#define GC_CLASSES 10
#define GC_LR 0.1f /* SGD step of the step check */
#define GC_MOMENTUM 0.9f
#define GC_WD 5e-4f
#define GC_MAX_THREADS 16 /* CPU threads of the reference side at most */
#define GC_JITTER 1e-6f   /* relative input perturbation that measures the fp32 floor */
#define GC_SEEDS 24       /* points tried for one whose floor is under GC_TOL / 10 */

int gpu_check_row(const char *check, const char *pass, double err, double tol)
{
    int ok = err <= tol;
    printf("%-26s %-10s %10.3g %8.0e  %s\n", check, pass, err, tol, ok ? "ok" : "FAIL");
    fflush(stdout);
    return !ok;
}

static double s_relerr(const float *a, const float *b, size_t n)
{
    double d = 0.0, nb = 0.0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        nb += (double)b[i] * b[i];
    }
    return sqrt(d) / (nb > 0.0 ? sqrt(nb) : 1.0);
}

/* The tensors of a failed row, worst first (at most 8, those over tol): where the difference is. */
static void s_worst(const nn_net_t *net, const char *row, const float *a, const float *b,
                    double tol)
{
    int nt = nn_net_tensor_count(net), shown = 0, used[512] = {0};
    while (shown < 8) {
        int wi = -1;
        double we = tol;
        for (int t = 0; t < nt && t < 512; t++) {
            const struct nn_tensor_info *ti = nn_net_tensor(net, t);
            if (ti->kind != NN_TENSOR_PARAM || used[t])
                continue;
            double e = s_relerr(a + ti->offset, b + ti->offset, ti->numel);
            if (e > we) {
                we = e;
                wi = t;
            }
        }
        if (wi < 0)
            break;
        used[wi] = 1;
        printf("  %s: %s %.3g\n", row, nn_net_tensor(net, wi)->name, we);
        shown++;
    }
}

/* Top eigenvalue by power iteration from v (overwritten), hv as scratch. */
static double s_top_eig(nn_net_t *net, const float *x, const int32_t *y, float *v, float *hv)
{
    size_t np = nn_net_param_count(net);
    double lam = 0.0;
    for (int it = 0; it < GC_POWER_ITERS; it++) {
        double nv = 0.0;
        for (size_t i = 0; i < np; i++)
            nv += (double)v[i] * v[i];
        for (size_t i = 0; i < np; i++)
            v[i] = (float)(v[i] / sqrt(nv));
        nn_net_hvp(net, x, y, GC_BATCH, NN_BN_EVAL, 0, v, hv);
        lam = 0.0;
        for (size_t i = 0; i < np; i++)
            lam += (double)v[i] * hv[i];
        memcpy(v, hv, np * sizeof(float));
    }
    return lam;
}

/* Copy of n floats (NULL when out of memory). */
static float *s_dup(const float *p, size_t n)
{
    float *q = malloc(n * sizeof(float) + sizeof(float));
    if (q)
        memcpy(q, p, n * sizeof(float));
    return q;
}

/* The step rows: weights after one SGD step on each backend, and the loss after it. */
static int s_step(const char *model, nn_net_t **net, const float *x, const int32_t *y)
{
    size_t np = nn_net_param_count(net[0]);
    float *w0 = s_dup(nn_net_params(net[0]), np);
    double loss[2];
    int bad = !w0;
    for (int b = 0; !bad && b < 2; b++) {
        bad |= nn_net_sgd_step(net[b], GC_LR, GC_MOMENTUM, GC_WD) != NN_OK;
        bad |= nn_net_sync(net[b], NN_SYNC_PARAMS_TO_HOST) != NN_OK;
        loss[b] = nn_net_forward(net[b], x, y, GC_BATCH, NN_BN_TRAIN, NULL, NULL);
    }
    if (bad) {
        free(w0);
        return gpu_check_row(model, "step", NAN, GC_TOL);
    }
    double ew = 0.0, nw = 0.0;
    const float *wc = nn_net_params(net[0]), *wd = nn_net_params(net[1]);
    for (size_t i = 0; i < np; i++) { /* the update, not the weights, is what is compared */
        double dc = (double)wc[i] - w0[i], dd = (double)wd[i] - w0[i];
        ew += (dd - dc) * (dd - dc);
        nw += dc * dc;
    }
    free(w0);
    bad |= gpu_check_row(model, "sgd step", sqrt(ew) / fmax(sqrt(nw), 1e-30), GC_TOL);
    bad |= gpu_check_row(model, "loss+1", fabs(loss[1] - loss[0]) / fabs(loss[0]), GC_TOL);
    return bad;
}

static const char *s_device = "cuda"; /* the backend under test */

/* The point of the whole-net rows: input x (n floats) and direction v0 (np floats) from seed. */
static void s_point(unsigned long long seed, float *x, size_t nx, float *v0, size_t np)
{
    struct nn_rng rng;
    nn_rng_seed(&rng, seed);
    for (size_t i = 0; i < nx; i++)
        x[i] = nn_rng_normal(&rng);
    for (size_t i = 0; i < np; i++)
        v0[i] = nn_rng_normal(&rng);
}

/*
 * The CPU's own fp32 noise at a point: the gradient, and the HVP after one SGD step, as the rows
 * compute them, by two CPU implementations: the blocked layout at x, and the CNHW layout at x
 * perturbed by GC_JITTER (relative, a few ulps). A ReLU or max-pool input within rounding of its
 * kink (a channel of near-zero variance puts a whole channel there, its rounding noise scaled by
 * 1/sqrt(eps)) switches the path the gradient takes, so at some points no two fp32
 * implementations agree to 1e-4: PyTorch's fp32 and fp64 differ by up to 7e-3 on resnet20's
 * train-mode gradient at batch 16 with some seeds, by 2e-6 with others, and the CPU's two layouts
 * likewise. *fg and *fh receive the relative differences; returns 0, or 1 when a net could not be
 * built.
 */
static int s_floor(const char *model, int c, int h, int w, const float *x, const int32_t *y,
                   const float *v0, double *fg, double *fh)
{
    nn_net_t *net[2] = {NULL, NULL};
    size_t nx = (size_t)GC_BATCH * c * h * w;
    float *xj = s_dup(x, nx), *g[2] = {NULL, NULL}, *hv[2] = {NULL, NULL};
    int bad = !xj;
    struct nn_rng rng;
    nn_rng_seed(&rng, 97);
    for (size_t i = 0; xj && i < nx; i++)
        xj[i] *= 1.0f + GC_JITTER * (2.0f * nn_rng_uniform(&rng) - 1.0f);
    for (int b = 0; !bad && b < 2; b++) {
        const float *xb = b ? xj : x;
        /* max_batch GC_BATCH + 1: the CPU's CNHW path (its blocked path runs full batches) */
        if (!(net[b] = nn_zoo_new(model, c, h, w, GC_CLASSES, GC_BATCH + b, NULL))) {
            bad = 1;
            break;
        }
        size_t np = nn_net_param_count(net[b]);
        nn_net_zero_grad(net[b]);
        nn_net_train_pass(net[b], xb, y, GC_BATCH, NN_BN_TRAIN,
                          NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS, 1.0f, NULL, NULL);
        g[b] = s_dup(nn_net_grads(net[b]), np);
        hv[b] = malloc(np * sizeof(float));
        if (!g[b] || !hv[b] || nn_net_sgd_step(net[b], GC_LR, GC_MOMENTUM, GC_WD) != NN_OK) {
            bad = 1;
            break;
        }
        nn_net_hvp(net[b], xb, y, GC_BATCH, NN_BN_EVAL, 0, v0, hv[b]);
    }
    if (!bad) {
        size_t np = nn_net_param_count(net[0]);
        *fg = s_relerr(g[1], g[0], np);
        *fh = s_relerr(hv[1], hv[0], np);
    }
    for (int b = 0; b < 2; b++) {
        free(g[b]);
        free(hv[b]);
        nn_net_destroy(&net[b]);
    }
    free(xj);
    return bad;
}

/* The first of GC_SEEDS seeds whose fp32 noise floor is under GC_TOL / 10 (else the quietest),
 * with the floors of each seed tried printed; x, v0 are left at the chosen point. */
static unsigned long long s_choose_point(const char *model, int c, int h, int w, float *x,
                                         float *v0, size_t np, const int32_t *y)
{
    size_t nx = (size_t)GC_BATCH * c * h * w;
    unsigned long long best = 11;
    double best_f = INFINITY;
    for (unsigned long long seed = 11; seed < 11 + GC_SEEDS; seed++) {
        double fg = NAN, fh = NAN;
        s_point(seed, x, nx, v0, np);
        if (s_floor(model, c, h, w, x, y, v0, &fg, &fh))
            break;
        double f = fmax(fg, fh);
        printf("%-26s fp32 floor at seed %llu: gradient %.3g, hvp %.3g%s\n", model, seed, fg, fh,
               f <= GC_TOL / 10 ? " (used)" : "");
        fflush(stdout);
        if (f < best_f) {
            best_f = f;
            best = seed;
        }
        if (f <= GC_TOL / 10)
            break;
    }
    s_point(best, x, nx, v0, np);
    return best;
}

static int s_net(const char *model, int c, int h, int w)
{
    nn_net_t *net[2] = {NULL, NULL};
    size_t nx = (size_t)GC_BATCH * c * h * w;
    float *x = malloc(nx * sizeof(float)), *v0 = NULL, *v[2] = {NULL, NULL}, *hv[2] = {NULL, NULL};
    float *g0 = NULL, *b0 = NULL, *binit = NULL;
    int32_t y[GC_BATCH];
    int bad = 1;
    for (int b = 0; b < 2; b++)
        if (!(net[b] = nn_zoo_new(model, c, h, w, GC_CLASSES, GC_BATCH, NULL)))
            goto out_free;
    if (!x || nn_net_to_backend(net[1], s_device, model) != NN_OK)
        goto out_free;
    size_t np = nn_net_param_count(net[0]), nb = nn_net_buffer_count(net[0]);
    for (int i = 0; i < GC_BATCH; i++)
        y[i] = i % GC_CLASSES;
    if (!(v0 = malloc(np * sizeof(float))) || !(binit = s_dup(nn_net_buffers(net[0]), nb)))
        goto out_free;
    s_choose_point(model, c, h, w, x, v0, np, y);
    double loss[2], lam[2];
    for (int b = 0; b < 2; b++) {
        nn_net_zero_grad(net[b]);
        loss[b] = nn_net_train_pass(net[b], x, y, GC_BATCH, NN_BN_TRAIN,
                                    NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS, 1.0f, NULL, NULL);
        nn_net_sync(net[b], NN_SYNC_GRADS_TO_HOST | NN_SYNC_BUFFERS_TO_HOST);
    }
    bad = gpu_check_row(model, "loss", fabs(loss[1] - loss[0]) / fabs(loss[0]), GC_TOL);
    if (gpu_check_row(model, "gradient", s_relerr(nn_net_grads(net[1]), nn_net_grads(net[0]), np),
                      GC_TOL)) {
        s_worst(net[0], "gradient", nn_net_grads(net[1]), nn_net_grads(net[0]), GC_TOL);
        bad = 1;
    }
    if (nb) {
        /* what the pass changed in the running statistics */
        g0 = s_dup(nn_net_buffers(net[0]), nb);
        b0 = s_dup(nn_net_buffers(net[1]), nb);
        for (size_t i = 0; g0 && b0 && i < nb; i++) {
            g0[i] -= binit[i];
            b0[i] -= binit[i];
        }
        bad |= gpu_check_row(model, "bn stats", g0 && b0 ? s_relerr(b0, g0, nb) : NAN, GC_TOL);
    }
    bad |= s_step(model, net, x, y);
    for (int b = 0; b < 2; b++) {
        if (!(hv[b] = malloc(np * sizeof(float))) || !(v[b] = malloc(np * sizeof(float)))) {
            bad = 1;
            goto out_free;
        }
        nn_net_hvp(net[b], x, y, GC_BATCH, NN_BN_EVAL, 0, v0, hv[b]);
    }
    if (gpu_check_row(model, "hvp", s_relerr(hv[1], hv[0], np), GC_TOL)) {
        s_worst(net[0], "hvp", hv[1], hv[0], GC_TOL);
        bad = 1;
    }
    for (int b = 0; b < 2; b++) {
        memcpy(v[b], v0, np * sizeof(float));
        lam[b] = s_top_eig(net[b], x, y, v[b], hv[b]);
    }
    bad |= gpu_check_row(model, "lambda", fabs(lam[1] - lam[0]) / fmax(fabs(lam[0]), 1e-30),
                         GC_TOL_EIG);
    printf("%-26s lambda cpu %.6g %s %.6g, loss cpu %.6g %s %.6g\n", model, lam[0], s_device,
           lam[1], loss[0], s_device, loss[1]);
out_free:
    if (bad && !v0)
        gpu_check_row(model, "setup", NAN, GC_TOL);
    for (int b = 0; b < 2; b++) {
        free(hv[b]);
        free(v[b]);
        nn_net_destroy(&net[b]);
    }
    free(x);
    free(v0);
    free(g0);
    free(b0);
    free(binit);
    return bad;
}

/* nn's messages (device errors name the failed call) to stderr. */
static void s_report(int level, const char *msg, void *user)
{
    (void)user;
    if (level >= (getenv("GC_VERBOSE") ? 1 : 2))
        fprintf(stderr, "gpu_check: %s\n", msg);
}

int main(int argc, char **argv)
{
    const struct nn_backend_ops *be;
    nn_set_report(s_report, NULL);
    long cores = sysconf(_SC_NPROCESSORS_ONLN); /* the CPU reference's side, as fast as it goes */
    nn_set_threads(cores < 1 ? 1 : cores > GC_MAX_THREADS ? GC_MAX_THREADS : (int)cores);
    int first = 1;
    if (argc > 1 && !strcmp(argv[1], "--cpu")) {
        s_device = "cpu";
        first = 2;
    }
    if (nn_backend_get(s_device, &be) != NN_OK) {
        printf("gpu_check: %s; skipped\n", nn_backend_why());
        return 77;
    }
    printf("%-26s %-10s %10s %8s  %s\n", "check", "pass", "rel.error", "tol", "result");
    int bad = gpu_check_layers(be);
    if (argc <= first && first == 1) { /* --cpu checks the nets named only */
        bad |= s_net("cnn", 1, 28, 28);
        bad |= s_net("resnet20", 3, 32, 32);
    }
    for (int i = first; i < argc; i++)
        bad |= s_net(argv[i], 3, 32, 32);
    printf("gpu_check: %s\n", bad ? "MISMATCH" : "all rows within tolerance");
    return bad;
}
