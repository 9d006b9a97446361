/*
 * bench_conv: Conv2d forward and backward times at the cnn / resnet20 / resnet18_cifar layer
 * shapes (batch 128 unless given, 28 x 28 input) against one whole-batch sgemm of the same shapes
 * (the GEMM lower bound of an im2col convolution), plus the machine's single-thread sgemm peak on
 * 1024^3.
 *
 * Build (after the main build in ./build; add -L/usr/local/cuda/lib64 -lcudart -lcublas when the
 * build has CUDA):
 *   cc -O2 -march=native -fopenmp -Icore/nn -Itests/helpers bench/bench_conv.c \
 *      build/libeb_testutil.a build/libeb_roles.a build/libeb_nn.a -lopenblas -lcmocka -lm \
 *      -o build/bench_conv
 * (the build also makes it: build/eb_bench_conv)
 * Run: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 build/bench_conv [batch]
 * With oneDNN built in, the layer's passes are oneDNN's; EB_CONV_IM2COL=1 times im2col instead.
 * Times are process CPU time (single-threaded runs only), so that other jobs on a shared machine
 * inflate them less than wall-clock time; best of 3.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn_gemm.h"
#include "nn_layer.h"
#include "nn_layer_check.h"

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Best of `reps` timings of one sgemm, seconds. */
static double s_time_gemm(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, int reps)
{
    float *a = calloc((size_t)m * k, sizeof(float)), *b = calloc((size_t)k * n, sizeof(float));
    float *c = calloc((size_t)m * n, sizeof(float));
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)k * n; i++)
        b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = s_now();
        nn_gemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.0f, c, n);
        double t = s_now() - t0;
        if (t < best)
            best = t;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

struct s_shape {
    const char *name;
    int in_c, h, out_c, k, stride, pad;
};

int main(int argc, char **argv)
{
    const int batch = argc > 1 ? atoi(argv[1]) : 128;
    const int reps = 3;
    double tp = s_time_gemm(NN_NO_TRANS, NN_NO_TRANS, 1024, 1024, 1024, reps);
    const double peak = 2.0 * 1024 * 1024 * 1024 / tp / 1e9;
    printf("sgemm 1024^3: %.1f GFLOP/s\n", peak);
    const struct s_shape shapes[] = {
        {"cnn.c1 1->32 28", 1, 28, 32, 3, 1, 1},
        {"cnn.c2 32->64 14", 32, 14, 64, 3, 1, 1},
        {"r20.stem 1->16 28", 1, 28, 16, 3, 1, 1},
        {"r20 16->16 28", 16, 28, 16, 3, 1, 1},
        {"r20 16->32 s2", 16, 28, 32, 3, 2, 1},
        {"r20 32->32 14", 32, 14, 32, 3, 1, 1},
        {"r20 32->64 s2", 32, 14, 64, 3, 2, 1},
        {"r20 64->64 7", 64, 7, 64, 3, 1, 1},
        {"r20.sc 16->32 1x1 s2", 16, 28, 32, 1, 2, 0},
        {"r18 64->64 28", 64, 28, 64, 3, 1, 1},
        {"r18 64->128 s2", 64, 28, 128, 3, 2, 1},
        {"r18 128->128 14", 128, 14, 128, 3, 1, 1},
        {"r18 128->256 s2", 128, 14, 256, 3, 2, 1},
        {"r18 256->256 7", 256, 7, 256, 3, 1, 1},
        {"r18 256->512 s2", 256, 7, 512, 3, 2, 1},
        {"r18 512->512 4", 512, 4, 512, 3, 1, 1},
        {"r18.sc 256->512 1x1 s2", 256, 7, 512, 1, 2, 0},
    };
    printf("%-22s %9s %9s %9s %9s %7s %7s %9s\n", "layer", "fwd ms", "gemm ms", "bwd ms", "gemm ms",
           "fwd%", "bwd%", "R-pass ms");
    double tot_l = 0, tot_g = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const struct s_shape *sh = &shapes[s];
        struct nn_check_cfg cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.n_in = 1;
        cfg.in_shape[0] = (struct nn_shape){sh->in_c, sh->h, sh->h};
        cfg.batch = batch;
        cfg.max_batch = batch;
        struct nn_check_rig *r =
            nn_check_rig_new(nn_conv_new("c", sh->out_c, sh->k, sh->stride, sh->pad, 0), &cfg);
        if (!r)
            return 1;
        r->in[0].need_dy = sh->in_c > 1; /* the first layer needs no input gradient */
        const int rows = sh->in_c * sh->k * sh->k, cols = batch * r->out.shape.h * r->out.shape.w;
        double tf = 1e30, tb = 1e30, tr = 1e30;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = s_now();
            r->l->ops->forward(r->l, &r->ctx);
            double t1 = s_now();
            r->l->ops->backward(r->l, &r->ctx);
            double t2 = s_now();
            if (t1 - t0 < tf)
                tf = t1 - t0;
            if (t2 - t1 < tb)
                tb = t2 - t1;
            r->l->ops->rforward(r->l, &r->ctx);
            r->l->ops->rbackward(r->l, &r->ctx);
            double t3 = s_now();
            if (t3 - t2 < tr)
                tr = t3 - t2;
        }
        double gf = s_time_gemm(NN_NO_TRANS, NN_NO_TRANS, sh->out_c, cols, rows, reps);
        double gb = s_time_gemm(NN_NO_TRANS, NN_TRANS, sh->out_c, rows, cols, reps);
        if (r->in[0].need_dy)
            gb += s_time_gemm(NN_TRANS, NN_NO_TRANS, rows, cols, sh->out_c, reps);
        const double flops = 2.0 * sh->out_c * (double)rows * cols;
        printf("%-22s %9.2f %9.2f %9.2f %9.2f %6.0f%% %6.0f%% %9.2f  (fwd %.1f GFLOP/s, %.0f%% of "
               "peak; R-passes %.1fx fwd+bwd)\n",
               sh->name, tf * 1e3, gf * 1e3, tb * 1e3, gb * 1e3, 100 * gf / tf, 100 * gb / tb,
               tr * 1e3, flops / tf / 1e9, 100 * flops / tf / 1e9 / peak, tr / (tf + tb));
        tot_l += tf + tb;
        tot_g += gf + gb;
        nn_check_rig_destroy(&r);
    }
    printf("total fwd+bwd: layers %.1f ms, sgemm of the same shapes %.1f ms (%.0f%%)\n",
           tot_l * 1e3, tot_g * 1e3, 100 * tot_g / tot_l);
    return 0;
}
