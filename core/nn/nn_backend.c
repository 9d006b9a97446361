/*
 * nn_backend: the CPU backend's table (the reference: host memory, OpenBLAS, the layers' own
 * code, nn_loss, nn_sgd_step), device-string parsing and selection, and the arithmetic a device
 * needs planned before the first step (splitting a worker's share over its devices, the memory
 * plan). The CUDA table lives in nn_cuda.cu; this is the one file that knows whether it was built.
 */
#include "nn_backend.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_base.h"
#include "nn_loss.h"
#include "nn_nccl.h"
#include "nn_net.h"

#define NN_BACKEND_WHY_MAX 256 /* bytes of a failure reason */

static _Thread_local char s_why[NN_BACKEND_WHY_MAX]; /* reason of the last failed get */

#ifdef EB_HAVE_CUDA
/* The CUDA backend bound to device `index`, or NULL with a one-line reason in why (nn_cuda.cu). */
const struct nn_backend_ops *nn_cuda_backend(int index, char *why, size_t why_len);
/* Open the libraries loaded on first use; 0, or -1 with why filled (nn_cuda_blas.cu). */
int nn_cuda_libs_open(char *why, size_t why_len);
#else
size_t nn_cuda_scratch_bytes(struct nn_layer *const *layers, int n_layers, int max_batch,
                             size_t in_floats, int fwd_only)
{
    (void)layers, (void)n_layers, (void)max_batch, (void)in_floats, (void)fwd_only;
    return 0;
}

static int nn_cuda_libs_open(char *why, size_t why_len)
{
    snprintf(why, why_len, "this eigenbatch was built without CUDA (configure with -DEB_CUDA=ON)");
    return -1;
}

static const struct nn_backend_ops *nn_cuda_backend(int index, char *why, size_t why_len)
{
    (void)index;
    snprintf(why, why_len,
             "CUDA was asked for but this eigenbatch was built without CUDA "
             "(configure with -DEB_CUDA=ON)");
    return NULL;
}
#endif

#ifndef EB_HAVE_NCCL
/* Without NCCL one worker drives one device (nn_nccl.h's stubs). */
struct nn_nccl *nn_nccl_new(const int *devices, int n, char *why, size_t why_len)
{
    (void)devices;
    snprintf(why, why_len,
             "%d devices in one worker need NCCL, and this eigenbatch was built without it "
             "(CUDA with NCCL: -DEB_CUDA=ON, NCCL found or -DEB_NCCL_ROOT)",
             n);
    return NULL;
}

int nn_nccl_allreduce(struct nn_nccl *c, float *const *bufs, size_t count, int average)
{
    (void)c;
    (void)bufs;
    (void)count;
    (void)average;
    return -1;
}

void nn_nccl_destroy(struct nn_nccl **self_p)
{
    if (self_p)
        *self_p = NULL;
}
#endif

int nn_backend_have_nccl(void)
{
#ifdef EB_HAVE_NCCL
    return 1;
#else
    return 0;
#endif
}

/* ---- the CPU table ------------------------------------------------------------------------ */

static void *s_cpu_alloc(size_t bytes)
{
    void *p = nn_alloc(bytes ? bytes : 1);
    if (!p)
        nn_report(3, "cpu backend: out of memory allocating %zu bytes", bytes);
    return p;
}

static int s_cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes)
        memcpy(dst, src, bytes);
    return NN_OK;
}

static void s_cpu_zero(float *p, size_t n)
{
    memset(p, 0, n * sizeof(float));
}

static const struct nn_layer_ops *s_cpu_layer_ops(const char *kind)
{
    (void)kind;
    return NULL; /* every layer's own table is the CPU implementation */
}

/* NCHW -> CNHW: sample i's channel k goes to row k*n + i. */
static int s_cpu_load_input(float *dst, const float *x, int n, int c, size_t hw)
{
    if (c == 1) {
        memcpy(dst, x, (size_t)n * hw * sizeof(float));
        return NN_OK;
    }
#pragma omp parallel for collapse(2) if ((size_t)n * c * hw > 65536)
    for (int k = 0; k < c; k++)
        for (int i = 0; i < n; i++)
            memcpy(dst + ((size_t)k * n + i) * hw, x + ((size_t)i * c + k) * hw,
                   hw * sizeof(float));
    return NN_OK;
}

static int s_cpu_store_input_grad(float *dx, const float *src, int n, int c, size_t hw)
{
    for (int k = 0; k < c; k++)
        for (int i = 0; i < n; i++)
            memcpy(dx + ((size_t)i * c + k) * hw, src + ((size_t)k * n + i) * hw,
                   hw * sizeof(float));
    return NN_OK;
}

static int s_cpu_store_logits(float *logits, const float *z, int classes, int n)
{
    for (int i = 0; i < n; i++)
        for (int k = 0; k < classes; k++)
            logits[(size_t)i * classes + k] = z[(size_t)k * n + i];
    return NN_OK;
}

static _Thread_local const int32_t *s_cpu_labels; /* labels of the last loss_forward */

static double s_cpu_loss_forward(const float *z, const int32_t *labels, int classes, int n,
                                 float *probs, int *correct)
{
    s_cpu_labels = labels;
    return nn_loss_forward(z, labels, classes, n, probs, correct);
}

static void s_cpu_loss_backward(const float *probs, int classes, int n, float *dz)
{
    nn_loss_backward(probs, s_cpu_labels, classes, n, dz);
}

static void s_cpu_sign_step(float *x, const float *g, size_t n, float eps, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        float s = g[i] > 0.0f ? 1.0f : (g[i] < 0.0f ? -1.0f : 0.0f);
        x[i] = fminf(fmaxf(x[i] + eps * s, lo), hi);
    }
}

static int s_cpu_sync(void)
{
    return NN_OK;
}

static size_t s_cpu_mem_free(void)
{
    return SIZE_MAX;
}

static const struct nn_backend_ops s_cpu = {
    .name = "cpu",
    .device = 0,
    .alloc = s_cpu_alloc,
    .free = nn_free,
    .upload = s_cpu_copy,
    .download = s_cpu_copy,
    .zero = s_cpu_zero,
    .gemm = nn_gemm,
    .layer_ops = s_cpu_layer_ops,
    .load_input = s_cpu_load_input,
    .store_input_grad = s_cpu_store_input_grad,
    .store_logits = s_cpu_store_logits,
    .loss_forward = s_cpu_loss_forward,
    .loss_backward = s_cpu_loss_backward,
    .loss_rbackward = nn_loss_rbackward,
    .sgd = nn_sgd_step,
    .sign_step = s_cpu_sign_step,
    .sync = s_cpu_sync,
    .mem_free = s_cpu_mem_free,
    .host_alloc = s_cpu_alloc,
    .host_free = nn_free,
};

const struct nn_backend_ops *nn_backend_cpu(void)
{
    return &s_cpu;
}

/* ---- selection ------------------------------------------------------------------------------ */

int nn_backend_parse(const char *device, int *index)
{
    if (!device || !index)
        return NN_ERR_ARG;
    if (!strcmp(device, "cpu")) {
        *index = -1;
        return NN_OK;
    }
    if (!strcmp(device, "cuda")) {
        *index = 0;
        return NN_OK;
    }
    if (strncmp(device, "cuda:", 5) || !device[5])
        return NN_ERR_ARG;
    char *end = NULL;
    errno = 0;
    long v = strtol(device + 5, &end, 10);
    if (errno || *end || v < 0 || v > 1023)
        return NN_ERR_ARG;
    *index = (int)v;
    return NN_OK;
}

int nn_backend_get(const char *device, const struct nn_backend_ops **out)
{
    int index = 0;
    s_why[0] = '\0';
    if (nn_backend_parse(device, &index) != NN_OK) {
        snprintf(s_why, sizeof s_why, "unknown device '%s' (expected cpu, cuda or cuda:N)",
                 device ? device : "(null)");
        return NN_ERR_ARG;
    }
    if (index < 0) {
        *out = &s_cpu;
        return NN_OK;
    }
    const struct nn_backend_ops *be = nn_cuda_backend(index, s_why, sizeof s_why);
    if (!be)
        return NN_ERR_ARG;
    *out = be;
    return NN_OK;
}

const char *nn_backend_why(void)
{
    return s_why;
}

void nn_backend_set_why(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_why, sizeof s_why, fmt, ap);
    va_end(ap);
}

/* ---- planning ------------------------------------------------------------------------------- */

int nn_backend_split(long share, int devices, long *out)
{
    if (devices < 1 || share < 0 || !out)
        return NN_ERR_ARG;
    for (int d = 0; d < devices; d++)
        out[d] = share / devices + (d < share % devices ? 1 : 0);
    return NN_OK;
}

/* Parameter-sized vectors on a device: weights, gradients, momentum, HVP direction and result. */
#define NN_PLAN_PARAM_VECTORS 5
/* Activation companions: y, dy, ry, rdy. */
#define NN_PLAN_ACT_VECTORS 4

void nn_mem_plan(size_t n_params, size_t n_buffers, size_t act_floats, int max_batch,
                 size_t work_bytes, struct nn_mem_plan *plan)
{
    plan->params = (NN_PLAN_PARAM_VECTORS * n_params + n_buffers) * sizeof(float);
    plan->activations = NN_PLAN_ACT_VECTORS * act_floats * (size_t)max_batch * sizeof(float);
    plan->workspace = work_bytes;
    plan->total = plan->params + plan->activations + plan->workspace;
}

int nn_mem_plan_check(const struct nn_mem_plan *plan, size_t free_bytes, const char *model,
                      int max_batch, char *msg, size_t msg_len)
{
    if (plan->total <= free_bytes)
        return NN_OK;
    snprintf(msg, msg_len,
             "model %s with micro-batch %d needs %zu bytes of device memory (parameters %zu, "
             "activations %zu, workspace %zu) but %zu are free; lower train.micro_batch",
             model ? model : "?", max_batch, plan->total, plan->params, plan->activations,
             plan->workspace, free_bytes);
    return NN_ERR_NOMEM;
}

int nn_backend_cuda_libs(void)
{
    return nn_cuda_libs_open(s_why, sizeof s_why) ? NN_ERR_ARG : NN_OK;
}
