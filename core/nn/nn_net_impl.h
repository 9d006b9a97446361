/*
 * nn_net_impl: the inside of struct nn_net, shared by nn_net.c (building, passes) and
 * nn_net_dev.c (moving a built net to a device backend). Internal to core/nn.
 *
 * On a device backend the flat vectors (params, grads, buffers), activations, R-companions,
 * work and probs are device memory; host_params/host_grads/host_buffers are host mirrors that
 * nn_net_params() & co. return and nn_net_sync() copies. On the CPU the mirrors are the vectors.
 */
#ifndef NN_NET_IMPL_H
#define NN_NET_IMPL_H

#include "nn_backend.h"
#include "nn_layer.h"
#include "nn_net.h"

struct nn_net {
    int in_c, in_h, in_w;            /* per-sample input shape (NCHW without N) */
    int classes;                     /* logits per sample */
    int max_batch;                   /* largest n a pass accepts */
    int built;                       /* nn_net_build succeeded */
    int fwd_only;                    /* forward passes only (nn_net_set_forward_only) */
    int error;                       /* first error of nn_net_add (0 if none) */
    int n_layers, cap_layers;        /* layers in execution order */
    struct nn_layer **layers;        /* owned */
    int n_nodes, cap_nodes;          /* activations; node 0 is the input */
    struct nn_node **nodes;          /* owned, individually allocated (layers point at them) */
    int *producer;                   /* layer index producing node i; -1 for the input */
    float *act;                      /* y and dy of every node (one allocation) */
    float *ract;                     /* ry and rdy of every node (allocated by the first HVP) */
    float *params;                   /* flat parameter vector */
    float *grads;                    /* gradients, same indexing */
    float *buffers;                  /* flat buffer vector (BN running statistics) */
    size_t n_params, n_buffers;      /* sizes of the flat vectors */
    float *work;                     /* shared scratch for all layers */
    size_t work_floats;              /* size of work */
    float *probs;                    /* softmax probabilities, classes x max_batch */
    int n_tensors;                   /* named tensors, state_dict order */
    struct nn_tensor_info *tensors;  /* owned, names owned */
    int n_play;                      /* parameter layers */
    int *play;                       /* layer index of each parameter layer */
    size_t *play_off;                /* first parameter of each parameter layer */
    struct nn_net_stats stats;       /* operation counters */
    unsigned long long seed;         /* dropout seed of the next train-mode pass */
    int seed_fixed;                  /* seed never advances (nn_net_set_seed) */
    int dropout_eval;                /* dropout is the identity in every pass */
    const struct nn_backend_ops *be; /* where the tensors above live (CPU until moved) */
    float *host_params;              /* host mirror of params (== params on the CPU) */
    float *host_grads;               /* host mirror of grads */
    float *host_buffers;             /* host mirror of buffers */
    float *dv, *dhv;                 /* device copies of an HVP's v and hv (device nets only) */
    float *pin_v, *pin_hv;           /* page-locked host staging of v and hv (device nets only) */
    int pinned;                      /* host mirrors are the backend's host_alloc memory */
    float *mom;                      /* momentum of nn_net_sgd_step (net's backend; lazily) */
    struct nn_hvp_cache {            /* nn_net_hvp_reuse: what the last full HVP pass was for */
        int on;                      /* reuse allowed (the caller keeps weights and batch) */
        int valid;                   /* a full pass for the key below has run since */
        const float *x;              /* its batch (by address), */
        const int32_t *labels;       /* labels, */
        int n, bn, k;                /* size, BatchNorm mode and block */
        double loss;                 /* its mean loss */
    } hvp;
};

/* Layer release for a layer whose table was swapped to a device's (nn_net_dev.c): frees the device
 * state and restores the CPU table so that its own destroy runs next. */
void nn_net_dev_layer_release(struct nn_layer *l);

/* nn_net_init on a device net: initialise the host mirrors, then upload (nn_net_dev.c). */
void nn_net_dev_init(nn_net_t *net, uint64_t seed);

/* At build, before the activations are allocated (nn_net_layout.c): marks the nodes that may be
 * channel-blocked (nn_node.blk_ok), the ReLUs that run in place (their output shares its input's
 * buffers, nn_node.share) and the BatchNorms that apply them (nn_node.relu). */
void nn_net_layout_plan(nn_net_t *net);

/* Floats of y and dy (or ry and rdy) of every node for max_batch samples, shared buffers once;
 * a forward-only net's arena (nn_net_fwd_plan). */
size_t nn_net_node_floats(const nn_net_t *net);

/* A forward-only net's activation arena: every node's y (no dy) at nn_node.arena_off, a buffer
 * reused once the last layer that reads it has run; with `cpu` in-place nodes share their input's
 * (nn_node.share). Returns its floats for max_batch samples (nn_net_layout.c). */
size_t nn_net_fwd_plan(const nn_net_t *net, int cpu);

/* Points y and dy (r = 0) or ry and rdy (r = 1) of every node into base (nn_net_node_floats);
 * a forward-only net's y alone (dy, ry and rdy NULL). */
void nn_net_bind_nodes(nn_net_t *net, float *base, int r);

/* Sets each node's layout (nn_node.blk) for a pass of n samples. */
void nn_net_layout_pass(nn_net_t *net, int n);

/* Before a backward pass: for every node but the logits that needs its gradient, dy (when dy)
 * and rdy (when rdy) of n samples are zeroed, or marked fresh where all consumers overwrite a
 * fresh gradient (nn_layer.h; CPU only) (nn_net_layout.c). */
void nn_net_clear_grads(nn_net_t *net, int n, int dy, int rdy);

/* Free the device copies of a device net (nn_net_dev.c); the host mirrors stay. */
void nn_net_dev_free(nn_net_t *net);

/* Run pass p of layer l on backend be, timed when EB_NN_PROFILE is set (nn_prof.c). */
enum nn_pass_kind { NN_PASS_FWD, NN_PASS_RFWD, NN_PASS_BWD, NN_PASS_RBWD, NN_PASS_KINDS };
void nn_prof_call(const struct nn_backend_ops *be, struct nn_layer *l, enum nn_pass_kind p,
                  const struct nn_ctx *ctx);

#endif
