/*
 * nn_backend: where a net's tensors live and what computes on them, as a table of operations per
 * backend (ggml's habit). The CPU backend (OpenBLAS, the layers' own code) is the reference; the
 * CUDA backend (cuBLAS, cuDNN, small kernels; nn_cuda*.cu) keeps every tensor of a step on one
 * device: weights, activations, gradients and HVP tangents. A net is moved to a backend once
 * (nn_net_to_backend); afterwards its passes call the backend's table and nothing else, and only
 * the explicit copies below cross between host and device.
 *
 * Device strings: "cpu", "cuda" (device 0), "cuda:N". nn_backend_get parses one and returns the
 * backend or a negative nn_err with a one-line reason (nn_backend_why): built without CUDA, no
 * driver, no device N.
 */
#ifndef NN_BACKEND_H
#define NN_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "nn_gemm.h"

struct nn_layer_ops;
struct nn_layer;

/* The operations of one backend. Every pointer argument named a tensor (x, y, w, g, ...) is memory
 * of this backend (alloc below); arguments named *_host are host memory. */
struct nn_backend_ops {
    const char *name; /* "cpu", "cuda" */
    int device;       /* device index (0 for cpu) */
    /* Memory: zero-filled allocation (NULL on failure; reported), free (accepts NULL). */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    /* Copies; return NN_OK or a negative nn_err (reported, naming the failed call). */
    int (*upload)(void *dst, const void *src_host, size_t bytes);
    int (*download)(void *dst_host, const void *src, size_t bytes);
    void (*zero)(float *p, size_t n);
    /* C = alpha op(A) op(B) + beta C, row-major, as nn_gemm. */
    void (*gemm)(enum nn_trans ta, enum nn_trans tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
    /* This backend's implementation of a layer kind ("conv2d", ...), NULL when it has none.
     * The CPU backend returns NULL too: a layer's own table is the CPU implementation. */
    const struct nn_layer_ops *(*layer_ops)(const char *kind);
    /* NCHW host input of n samples (c channels of hw) -> CNHW tensor, and back for dL/dx. */
    int (*load_input)(float *dst, const float *x_host, int n, int c, size_t hw);
    int (*store_input_grad)(float *dx_host, const float *src, int n, int c, size_t hw);
    /* Logits [classes x n] -> n x classes row-major on the host. */
    int (*store_logits)(float *logits_host, const float *z, int classes, int n);
    /* Mean softmax cross-entropy of z [classes x n]; fills probs; counts correct (may be NULL).
     * The labels stay with the backend for the following loss_backward. */
    double (*loss_forward)(const float *z, const int32_t *labels_host, int classes, int n,
                           float *probs, int *correct);
    void (*loss_backward)(const float *probs, int classes, int n, float *dz);
    void (*loss_rbackward)(const float *probs, const float *rz, int classes, int n, float *rdz);
    /* SGD with momentum and weight decay (nn_sgd_step's semantics) over n floats. */
    void (*sgd)(float *w, float *buf, const float *g, size_t n, float lr, float momentum,
                float weight_decay);
    /* FGSM: x = clamp(x + eps * sign(g), lo, hi) over n floats. */
    void (*sign_step)(float *x, const float *g, size_t n, float eps, float lo, float hi);
    /* Wait for queued work; NN_OK or a negative nn_err (reported). */
    int (*sync)(void);
    /* Free bytes of this device (SIZE_MAX for the host). */
    size_t (*mem_free)(void);
    /* Host memory that copies to and from this device can use directly (page-locked on CUDA;
     * nn_alloc on the CPU): zero-filled, NULL on failure (reported); free accepts NULL. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    /* Device scratch a net of these layers needs beyond its tensors for max_batch samples of
     * in_floats each (library workspaces, layout copies, input staging; fwd_only: a net that
     * runs forward passes only): the memory plan's workspace on this backend. NULL: the CPU's
     * (the layers' own work_per_sample). */
    size_t (*scratch_bytes)(struct nn_layer *const *layers, int n_layers, int max_batch,
                            size_t in_floats, int fwd_only);
};

/* The CUDA backend's scratch_bytes, which needs no device (0 in a build without CUDA): what
 * the memory plan counts for cuDNN's workspaces (EB_CUDNN_WORKSPACE_MB, 1 GiB by default, when
 * the net has a convolution), the packed copies of the largest convolution's input and output,
 * BatchNorm's partial sums and the input's staging buffer (the packed copies only for a net
 * that runs backward passes: cuDNN takes the forward's strided layout). */
size_t nn_cuda_scratch_bytes(struct nn_layer *const *layers, int n_layers, int max_batch,
                             size_t in_floats, int fwd_only);

/* The CPU backend (always present). */
const struct nn_backend_ops *nn_backend_cpu(void);

/* Backend for a device string; *out receives it. Returns NN_OK or NN_ERR_ARG (unknown string,
 * CUDA not built, no driver, no device N) with the reason in nn_backend_why(). The CUDA backend
 * binds the calling thread to device N. */
int nn_backend_get(const char *device, const struct nn_backend_ops **out);

/* One-line reason of the last failed nn_backend_get or nn_net_to_backend (this thread); "" if
 * none, or when a net did not fit the device's memory (the caller says that). */
const char *nn_backend_why(void);
/* Set that reason (printf format). */
void nn_backend_set_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Open the libraries the CUDA backend loads on first use (cuBLAS) without touching a device:
 * NN_OK, or NN_ERR_ARG with the reason in nn_backend_why() (also when built without CUDA).
 * nn_backend_get opens them itself; this serves checks and tests. */
int nn_backend_cuda_libs(void);

/* 1 when this build can sum gradients across several CUDA devices of one process (NCCL). */
int nn_backend_have_nccl(void);

/* Parse "cpu" (*index = -1), "cuda" (0) or "cuda:N" (N); NN_OK or NN_ERR_ARG. */
int nn_backend_parse(const char *device, int *index);

/* Split `share` samples over `devices` devices as evenly as possible (the first share % devices
 * get one more); out[d] receives device d's part. Returns NN_OK, or NN_ERR_ARG when devices < 1
 * or share < 0. */
int nn_backend_split(long share, int devices, long *out);

/* Device memory plan of one net: bytes of parameters (weights, gradients, momentum, HVP direction
 * and result), activations for the micro-batch (y, dy, ry, rdy of every node), the largest layer
 * workspace and layer state. */
struct nn_mem_plan {
    size_t params;      /* 5 parameter-sized vectors + buffers */
    size_t activations; /* 4 floats per activation element of max_batch samples */
    size_t workspace;   /* largest scratch (im2col or cuDNN workspace) */
    size_t total;       /* sum */
};
/* Fill *plan for a net of n_params parameters, n_buffers buffers, act_floats activation floats per
 * sample (all nodes), max_batch samples and work_bytes of workspace. */
void nn_mem_plan(size_t n_params, size_t n_buffers, size_t act_floats, int max_batch,
                 size_t work_bytes, struct nn_mem_plan *plan);
/* NN_OK when plan->total fits in free_bytes; else NN_ERR_NOMEM with a one-line message naming
 * the model, the micro-batch and the bytes written to msg (msg_len bytes). */
int nn_mem_plan_check(const struct nn_mem_plan *plan, size_t free_bytes, const char *model,
                      int max_batch, char *msg, size_t msg_len);

#endif
