/*
 * nn_layer: the internal contract between a net and its layers.
 *
 * A layer is a small common header (struct nn_layer) embedded as the first member of each kind's
 * own struct, plus a static const table of operations. The net owns every activation (struct
 * nn_node) and the flat parameter/gradient/direction/HVP vectors; a layer sees views into them,
 * bound once at build time. Passes never allocate.
 *
 * Per-pass protocol (the net drives it; n is the current batch, <= max batch):
 *   forward   reads in[i]->y, writes out->y. Train-mode BN keeps its batch statistics for the
 *             backward and R passes; NN_LAYER_UPDATE_STATS updates running statistics.
 *             Train-mode dropout draws its mask here, from ctx->seed, and keeps it: the
 *             R-forward, backward and R-backward of the same call reuse that mask.
 *   rforward  reads in[i]->ry (only when in[i]->r_active) and l->v (only when l->in_block),
 *             writes out->ry = R{y} = J_x R{x} + J_w v.
 *   backward  reads out->dy; ADDS dL/dx into in[i]->dy when in[i]->need_dy; ADDS dL/dw (times
 *             ctx->grad_scale) into l->g when ctx->param_grad.
 *   rbackward reads out->dy, out->rdy (and the forward/R-forward state); ADDS R{dL/dx} into
 *             in[i]->rdy when in[i]->need_dy, and R{dL/dw} into l->hv when l->in_block.
 * Before a backward pass the net zeroes every dy/rdy it needs, except where all the node's
 * consumers set l->dx_set: those overwrite instead of adding when they are the first writer of
 * the pass (nn_node_first_dy, nn_node_first_rdy), which saves the zeroing and a read. Activations
 * are CNHW (see nn_base.h), or channel-blocked where the net allows it (below).
 *
 * Channel-blocked layout (NN_BLK = 16; oneDNN's nChw16c): element (sample i, channel c, s = y*w+x)
 * of an activation with C channels (C a multiple of NN_BLK) and hw = h*w sits at
 *   ((i * C/NN_BLK + c/NN_BLK) * hw + s) * NN_BLK + c % NN_BLK.
 * oneDNN's convolutions read and write it without reordering. A layer states in setup which
 * layouts it takes (l->layout); the net marks at build the nodes whose producer and consumers all
 * take the blocked one (nn_node.blk_ok) and uses it in passes of max_batch samples on the CPU
 * (nn_node.blk); every companion of a node (y, dy, ry, rdy) has the node's layout. Other passes,
 * the input and the logits are CNHW.
 */
#ifndef NN_LAYER_H
#define NN_LAYER_H

#include <stddef.h>

#include "nn_base.h"

#define NN_NAME_MAX 64 /* longest layer or tensor name, with the terminator */
#define NN_LAYER_MAX_IN 2
#define NN_LAYER_MAX_TENSORS 4
#define NN_BLK 16 /* channels per block of the channel-blocked layout */

/* Whether a layer may write its output into the buffers of its first input (nn_net_layout.c). */
enum nn_in_place {
    NN_IN_PLACE_NO = 0,   /* never */
    NN_IN_PLACE_YES = 1,  /* elementwise in in[0] (add) */
    NN_IN_PLACE_RELU = 2, /* a ReLU: also one that a BatchNorm before it may apply */
};

/* Layouts a layer takes (struct nn_layer.layout); 0: CNHW only. */
enum nn_layout_flags {
    NN_LAYOUT_IN_BLK = 1 << 0,  /* reads channel-blocked inputs */
    NN_LAYOUT_OUT_BLK = 1 << 1, /* writes a channel-blocked output */
    NN_LAYOUT_SAME = 1 << 2,    /* its inputs and output share one layout (elementwise, BN) */
};

/* Per-sample shape of an activation; the batch dimension is the pass's n. */
struct nn_shape {
    int c; /* channels (features for vectors) */
    int h; /* height (1 for vectors) */
    int w; /* width (1 for vectors) */
};

/* One activation of the net and its companions, each max_batch * c * h * w floats, CNHW. */
struct nn_node {
    struct nn_shape shape; /* per-sample shape */
    float *y;              /* value */
    float *dy;             /* dL/dy */
    float *ry;             /* R{y} (forward R-pass) */
    float *rdy;            /* R{dL/dy} (backward R-pass) */
    int r_active;          /* R{y} is non-zero in the current HVP (set by the net) */
    int need_dy;           /* some layer needs dL/dy of this node in the current pass */
    int blk_ok;            /* producer and consumers all take the channel-blocked layout */
    int blk;               /* the current pass has it channel-blocked (set by the net) */
    int set_ok;            /* it has consumers and all of them set l->dx_set (fixed at build) */
    int share;             /* index of the node whose buffers it uses (in-place ReLU); -1: own */
    int relu;              /* a ReLU consumes it in place and its producer applies it when the
                            * node is blocked (the ReLU then does nothing; nn_net_layout.c) */
    int dy_fresh;          /* dy holds nothing yet in this backward pass: overwrite it */
    int rdy_fresh;         /* rdy holds nothing yet in this R-backward pass: overwrite it */
    int live_from;         /* forward-only nets: the layer that writes it (-1: the input) */
    int live_to;           /* ... the last layer that reads it (n_layers: the logits) */
    size_t arena_off;      /* ... where its y lives in the activation arena (floats) */
};

/* Context of one pass, shared by all layers. */
struct nn_ctx {
    int n;                   /* samples in this pass */
    int bn_eval;             /* BatchNorm uses running statistics */
    int update_stats;        /* train-mode BN updates running statistics */
    int param_grad;          /* backward accumulates parameter gradients */
    float grad_scale;        /* factor applied to what is added to parameter gradients */
    float *work;             /* shared scratch of net->work_floats floats (im2col etc.) */
    size_t work_floats;      /* size of work */
    int dropout;             /* dropout layers drop (train mode); else they are the identity */
    unsigned long long seed; /* seed of this pass's dropout masks (nn_dropout.c) */
};

/* A tensor a layer declares at setup: a parameter (in the flat parameter vector) or a buffer (BN
 * running statistics, in the flat buffer vector). */
struct nn_tensor_decl {
    char suffix[16]; /* "weight", "bias", "running_mean", "running_var" */
    int is_buffer;   /* 0: parameter, 1: buffer */
    int ndim;        /* 1..4 */
    int shape[4];    /* PyTorch shape */
};

struct nn_layer;

/* A device backend's table for a kind has the same shape: its setup runs after the CPU setup
 * fixed the shapes (it reserves device state in l->dev for max_batch samples) and its destroy
 * frees only that state; its passes see device pointers in every view. */
struct nn_layer_ops {
    const char *kind; /* "conv2d", "linear", "batchnorm2d", "relu", ... */
    /* Fix the output shape from the input shapes, declare tensors (l->decl, l->n_decl), state
     * the scratch floats needed per sample (l->work_per_sample) and allocate private per-sample
     * state for max_batch samples. Returns NN_OK or NN_ERR_SHAPE. */
    int (*setup)(struct nn_layer *l, int max_batch);
    void (*forward)(struct nn_layer *l, const struct nn_ctx *ctx);
    void (*backward)(struct nn_layer *l, const struct nn_ctx *ctx);
    void (*rforward)(struct nn_layer *l, const struct nn_ctx *ctx);
    void (*rbackward)(struct nn_layer *l, const struct nn_ctx *ctx);
    /* Default parameter initialisation (PyTorch's); may be NULL for layers without tensors. */
    void (*init)(struct nn_layer *l, struct nn_rng *rng);
    /* Forward FLOPs per sample (multiply-add = 2). */
    double (*flops)(const struct nn_layer *l);
    /* Free the kind's private state (not the layer struct itself: the net frees that). */
    void (*destroy)(struct nn_layer *l);
};

/* Hyperparameters of a layer as its constructor received them, for other backends' tables
 * (nn_backend.h): the CPU table reads its own struct. Unused fields are 0. */
struct nn_layer_hp {
    int out_c;  /* conv2d: output channels */
    int k;      /* conv2d, maxpool2d: window */
    int stride; /* conv2d, maxpool2d */
    int pad;    /* conv2d, maxpool2d */
    int bias;   /* conv2d: has a bias */
    int oh, ow; /* adaptive average pool: output size */
    float p;    /* dropout: drop probability */
};

/* Common header; each kind embeds it first: struct nn_conv { struct nn_layer base; ... }. */
struct nn_layer {
    const struct nn_layer_ops *ops;
    char name[NN_NAME_MAX]; /* PyTorch module name ("layers.0.c1"); "" for parameterless
                             * layers except dropout, whose name salts its masks */
    int n_in;               /* number of inputs */
    struct nn_node *in[NN_LAYER_MAX_IN];              /* input activations (owned by the net) */
    struct nn_node *out;                              /* output activation (owned by the net) */
    struct nn_tensor_decl decl[NN_LAYER_MAX_TENSORS]; /* tensors declared by setup */
    int n_decl;                                       /* number of declared tensors */
    size_t work_per_sample; /* scratch floats per sample needed by any pass */
    unsigned layout;        /* enum nn_layout_flags the layer takes (set by setup; 0: CNHW) */
    int dx_set;             /* backward and R-backward overwrite a fresh input gradient (above) */
    int in_place;           /* enum nn_in_place: may run with its output in in[0]'s buffers */
    int reads_out;  /* a pass reads its own output's y (ReLU's mask): no in place after it */
    int fuses_relu; /* applies a following in-place ReLU on blocked nodes (BatchNorm) */
    /* Views bound by the net after setup. Parameters of a layer are contiguous, in decl order. */
    float *w;                           /* parameters */
    float *g;                           /* gradient of the parameters */
    float *v;                           /* HVP direction restricted to this layer */
    float *hv;                          /* HVP result for this layer */
    float *buf;                         /* buffers (running statistics), contiguous in decl order */
    size_t n_w;                         /* parameter floats */
    size_t n_buf;                       /* buffer floats */
    int in_block;                       /* parameters take part in the current HVP */
    struct nn_layer_hp hp;              /* constructor arguments (other backends read them) */
    const struct nn_layer_ops *cpu_ops; /* the kind's own table while ops is a device's */
    void *dev;                          /* device state of a device table (its setup/destroy) */
    int fwd_only;                       /* the net runs forward passes only (set before setup) */
};

/* For constructors: a zeroed layer struct of `size` bytes whose first member is struct nn_layer,
 * with ops, name (NULL: none; the caller checked it fits NN_NAME_MAX) and n_in set; NULL when out
 * of memory. Caller owns it, as the constructor's result. */
void *nn_layer_alloc(size_t size, const struct nn_layer_ops *ops, const char *name, int n_in);

/* Constructors (each returns a heap layer owned by the caller until nn_net_add takes it). */
struct nn_layer *nn_conv_new(const char *name, int out_c, int k, int stride, int pad, int bias);
struct nn_layer *nn_linear_new(const char *name, int out_features);
struct nn_layer *nn_bn_new(const char *name);
struct nn_layer *nn_relu_new(void);
/* MaxPool2d(k, stride, pad), pad <= k/2 (implicit -infinity padding, floor output size). */
struct nn_layer *nn_maxpool_new(int k, int stride, int pad);
struct nn_layer *nn_gap_new(void); /* global average pool: c x h x w -> c x 1 x 1 */
/* AdaptiveAvgPool2d((oh, ow)): c x h x w -> c x oh x ow with PyTorch's windows. */
struct nn_layer *nn_avgpool_new(int oh, int ow);
/* Dropout(p) in train mode (identity in eval mode); name ("" allowed) salts its masks. */
struct nn_layer *nn_dropout_new(const char *name, float p);
struct nn_layer *nn_add_new(void);     /* two inputs of equal shape */
struct nn_layer *nn_flatten_new(void); /* c x h x w -> (c*h*w) x 1 x 1, PyTorch flatten order */

/* For a layer about to write the gradient of its input x: 1 when it must overwrite dy (the first
 * writer of the pass; the buffer holds garbage), 0 when it adds. Call once per pass and input. */
static inline int nn_node_first_dy(struct nn_node *x)
{
    const int first = x->dy_fresh;
    x->dy_fresh = 0;
    return first;
}

/* The same for rdy in an R-backward pass. */
static inline int nn_node_first_rdy(struct nn_node *x)
{
    const int first = x->rdy_fresh;
    x->rdy_fresh = 0;
    return first;
}

/* Numbers of elements of a per-sample shape. */
static inline size_t nn_shape_numel(const struct nn_shape *s)
{
    return (size_t)s->c * (size_t)s->h * (size_t)s->w;
}

#endif
