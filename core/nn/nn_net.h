/*
 * nn_net: the public face of the neural-network core. A net is a DAG of layers built by the zoo
 * (nn_zoo_new), with every buffer reserved at build time for a maximum batch size; forward,
 * backward and the R-operator passes never allocate.
 *
 * All parameters live in one flat float vector, in models.md's order (PyTorch registration order);
 * gradients, directions and Hessian-vector products use the same indexing. BatchNorm running
 * statistics live in a second flat vector ("buffers"). Tensors are named with PyTorch state_dict
 * names (nn_net_tensor) so that weights files can be exchanged with PyTorch.
 *
 * Inputs are NCHW float32; labels int32 in [0, classes). The loss is the mean softmax cross-entropy
 * over the n samples of the call.
 */
#ifndef NN_NET_H
#define NN_NET_H

#include <stddef.h>
#include <stdint.h>

#include "nn_base.h"

typedef struct nn_net nn_net_t;

/* Mode of a pass, PyTorch's model.train() / model.eval(): BatchNorm statistics and dropout. */
enum nn_bn_mode {
    NN_BN_TRAIN = 0, /* batch statistics (and running-stat update when NN_PASS_UPDATE_STATS);
                      * dropout drops (unless nn_net_set_dropout_eval) */
    NN_BN_EVAL = 1   /* running statistics; dropout is the identity */
};

/* Flags for nn_net_train_pass. */
enum nn_pass_flags {
    NN_PASS_PARAM_GRAD = 1u << 0,  /* accumulate dL/dw into nn_net_grads() */
    NN_PASS_INPUT_GRAD = 1u << 1,  /* write dL/dx (NCHW) into the dx argument */
    NN_PASS_UPDATE_STATS = 1u << 2 /* train-mode BN: update running statistics */
};

/* A named tensor of the net (parameter or buffer), as in a PyTorch state_dict. */
enum nn_tensor_kind { NN_TENSOR_PARAM = 0, NN_TENSOR_BUFFER = 1 };
struct nn_tensor_info {
    const char *name;         /* PyTorch name, e.g. "layers.0.c1.weight"; owned by the net */
    enum nn_tensor_kind kind; /* parameter (in params()) or buffer (in buffers()) */
    int ndim;                 /* number of dimensions, 1..4 */
    int shape[4];             /* PyTorch shape (Conv2d weight: out, in, kh, kw) */
    size_t offset;            /* first float in the flat params() or buffers() vector */
    size_t numel;             /* number of floats */
    int layer;                /* index of its parameter layer (see nn_net_param_layers) */
};

/* Build a zoo model (models.md: "mlp", "cnn", "resnet20", "resnet18_cifar", "wrn16_4", and the
 * ImageNet models "resnet18", "resnet34", "resnet50", "alexnet"; nn_zoo_models lists them) for
 * inputs c x h x w and `classes` classes, able to run batches of up to max_batch samples.
 * Parameters are initialised as PyTorch does by default (nn_net_init with seed 0). Returns NULL
 * and sets *err (may be NULL) on an unknown model or shapes that do not fit (e.g. cnn needs h, w
 * divisible by 4, alexnet at least 63x63). Caller owns the result; free with nn_net_destroy. */
nn_net_t *nn_zoo_new(const char *model, int c, int h, int w, int classes, int max_batch, int *err);

/* nn_zoo_new with flags: NN_NET_FORWARD_ONLY builds a net for nn_net_forward alone (evaluation):
 * no gradient buffers, and an activation is overwritten once the last layer that reads it has
 * run, so the net holds a few activations instead of all of them twice. Its training passes and
 * HVPs fail with NN_ERR_ARG. */
#define NN_NET_FORWARD_ONLY 1u
nn_net_t *nn_zoo_new_flags(const char *model, int c, int h, int w, int classes, int max_batch,
                           unsigned flags, int *err);

/* Bytes of activations the forward-only twin (NN_NET_FORWARD_ONLY) of a built net holds on a
 * device backend (an upper bound of the CPU's, where in-place ReLUs share buffers). */
size_t nn_net_forward_only_act_bytes(const nn_net_t *net);

/* Names of the zoo models, NULL-terminated. */
const char *const *nn_zoo_models(void);

/* Destroy a net and null the caller's pointer; accepts NULL, safe twice. */
void nn_net_destroy(nn_net_t **self_p);

/* Re-initialise parameters (PyTorch default init: kaiming-uniform weights, BN gamma 1 beta 0,
 * running mean 0 var 1) from a seed. */
void nn_net_init(nn_net_t *net, uint64_t seed);

/* Sizes and flat vectors. The pointers are owned by the net and valid until it is destroyed. */
size_t nn_net_param_count(const nn_net_t *net);
size_t nn_net_buffer_count(const nn_net_t *net);
float *nn_net_params(nn_net_t *net);
float *nn_net_grads(nn_net_t *net);
float *nn_net_buffers(nn_net_t *net);
int nn_net_classes(const nn_net_t *net);
int nn_net_max_batch(const nn_net_t *net);
void nn_net_input_shape(const nn_net_t *net, int *c, int *h, int *w);

/* Named tensors, in state_dict order (parameters and buffers interleaved as PyTorch lists them). */
int nn_net_tensor_count(const nn_net_t *net);
const struct nn_tensor_info *nn_net_tensor(const nn_net_t *net, int i);
const struct nn_tensor_info *nn_net_tensor_find(const nn_net_t *net, const char *name);

/* Parameter layers (Conv2d, Linear, BatchNorm2d with their own parameters) in parameter order;
 * layer i owns params [nn_net_param_layer_offset(i), +nn_net_param_layer_size(i)). The block of the
 * last K layers starts at nn_net_param_layer_offset(count - K). */
int nn_net_param_layers(const nn_net_t *net);
size_t nn_net_param_layer_offset(const nn_net_t *net, int layer);
size_t nn_net_param_layer_size(const nn_net_t *net, int layer);

/* Dropout (alexnet). A train-mode pass zeroes each dropout input element with probability p and
 * scales the others by 1/(1-p); an eval-mode pass leaves them. The mask of a pass is a function of
 * the pass seed, the layer and the element (nn_dropout.c), drawn by the pass's forward and reused
 * by its R-forward, backward and R-backward: an HVP differentiates exactly the forward pass it
 * runs, with that forward's mask. The seed starts at 0 and advances by one after every train-mode
 * nn_net_forward and nn_net_train_pass; nn_net_hvp uses the current seed and does not advance it,
 * so repeated HVPs on one batch (power iteration) apply one Hessian. nn_net_set_seed sets it;
 * with `fixed` it never advances (every pass draws the same masks: finite-difference checks, or
 * replaying a pass). nn_net_seed returns the seed of the next pass.
 * nn_net_set_dropout_eval(net, 1) keeps dropout in eval mode in every pass, whatever the pass's
 * BatchNorm mode: the eigen service's Hessian and evaluation run so (its bn setting concerns
 * BatchNorm only; with the default bn eval, dropout is off anyway). */
void nn_net_set_seed(nn_net_t *net, unsigned long long seed, int fixed);
unsigned long long nn_net_seed(const nn_net_t *net);
void nn_net_set_dropout_eval(nn_net_t *net, int on);

/* Set all parameter gradients to zero. */
void nn_net_zero_grad(nn_net_t *net);

/* The passes below report bad input (n outside [1, max_batch], a label outside [0, classes),
 * missing buffers) through the report callback and return NaN without touching the net. */

/* Forward pass only. x: n x c x h x w (NCHW). logits (may be NULL): n x classes row-major. labels
 * may be NULL (then the loss is not computed and 0 is returned); otherwise returns the mean loss
 * and, if correct != NULL, the number of samples whose argmax equals the label. */
float nn_net_forward(nn_net_t *net, const float *x, const int32_t *labels, int n,
                     enum nn_bn_mode bn, float *logits, int *correct);

/* Forward and backward. Returns the mean loss. With NN_PASS_PARAM_GRAD the gradient of the mean
 * loss is ADDED to nn_net_grads() (call nn_net_zero_grad first; accumulation across micro-batches
 * is the caller's choice of scaling via `grad_scale`, which multiplies what is added). With
 * NN_PASS_INPUT_GRAD, dx (n x c x h x w) receives dL/dx of the mean loss (not scaled). correct as
 * above (may be NULL). */
float nn_net_train_pass(nn_net_t *net, const float *x, const int32_t *labels, int n,
                        enum nn_bn_mode bn, unsigned flags, float grad_scale, float *dx,
                        int *correct);

/* Exact Hessian-vector product of the mean loss on (x, labels) w.r.t. the parameters, by the
 * R-operator (Pearlmutter): hv = H v. v and hv have nn_net_param_count() floats. With block_last_k
 * > 0 only the last K parameter layers are involved: entries of v outside the block are ignored,
 * entries of hv outside it are set to zero, and no work is done below the block. block_last_k = 0
 * means the full Hessian (so does K >= nn_net_param_layers). BatchNorm in eval mode uses running
 * statistics; in train mode the R-pass goes through the batch statistics (running statistics are
 * not updated). Returns the mean loss. The first call reserves the R-pass buffers (as large as the
 * activations and their gradients); on bad input (batch, labels, K < 0) or when that reservation
 * fails it reports through the callback and returns NaN. */
/* Reuse within one eigen computation (on, until off): the weights and the batch stay as they are,
 * so the forward pass, the loss and the gradient's backward pass are the same for every v. With
 * reuse on, an nn_net_hvp call for the same x, labels, n, bn and block as the previous one runs
 * only the R-forward and R-backward passes on the activations and gradients that call left in the
 * net's own buffers (no memory beyond them). Turning it on (again) forgets the previous call; any
 * other pass (forward, train, a different batch) in between is the caller's to avoid while on. */
void nn_net_hvp_reuse(nn_net_t *net, int on);

float nn_net_hvp(nn_net_t *net, const float *x, const int32_t *labels, int n, enum nn_bn_mode bn,
                 int block_last_k, const float *v, float *hv);

/* Devices (nn_backend.h). nn_net_to_backend moves a built net to a backend ("cpu", "cuda",
 * "cuda:N"): every layer gets the backend's table for its kind, and parameters, gradients,
 * buffers, activations, R-companions and workspaces are reserved on the device before the first
 * step, after checking the memory plan (a one-line error naming `label`, the micro-batch and the
 * bytes when it does not fit). Afterwards nn_net_params/grads/buffers return host mirrors in
 * page-locked memory (new pointers: those returned before the move are invalid): the
 * passes read and write the device copies, and nn_net_sync copies between the two (the weight
 * pull uploads, the gradient push downloads). On the CPU nn_net_sync does nothing. Returns NN_OK
 * or a negative nn_err with the reason reported (and, for a device that cannot be had, in
 * nn_backend_why()); on failure the net stays on the CPU. */
enum nn_sync {
    NN_SYNC_PARAMS_TO_DEVICE = 1u << 0,  /* host mirror of the parameters -> device */
    NN_SYNC_BUFFERS_TO_DEVICE = 1u << 1, /* host mirror of the buffers -> device */
    NN_SYNC_GRADS_TO_HOST = 1u << 2,     /* device gradients -> host mirror */
    NN_SYNC_BUFFERS_TO_HOST = 1u << 3,   /* device buffers (running statistics) -> host */
    NN_SYNC_PARAMS_TO_HOST = 1u << 4,    /* device parameters -> host mirror */
    NN_SYNC_GRADS_TO_DEVICE = 1u << 5    /* host mirror of the gradients -> device */
};
int nn_net_to_backend(nn_net_t *net, const char *device, const char *label);
int nn_net_sync(nn_net_t *net, unsigned what);
/* Bind the calling thread to the net's device: its device calls go to that device through this
 * thread's own handles and stream (created at the thread's first call for the device, then kept).
 * A thread that runs passes of a device net it did not move there calls this once before the
 * first (each of several threads driving one GPU each does); calling it again is cheap. NN_OK
 * (always on the CPU) or NN_ERR_ARG with the reason in nn_backend_why(). */
int nn_net_bind_thread(nn_net_t *net);
/* CUDA device index of the net's backend, -1 on the CPU. */
int nn_net_device(const nn_net_t *net);
/* Wait until the net's queued device work (of the calling thread's stream) is done: NN_OK or a
 * negative nn_err when a device call failed. Nothing to wait for on the CPU. */
int nn_net_finish(nn_net_t *net);

/* Replica groups: one model replicated on several devices of one process (a worker driving the
 * GPUs of its node). Each replica is its own net, moved to its own device with nn_net_to_backend
 * and run by its own thread (nn_net_bind_thread); the group sums their gradients and averages
 * their buffers in place, on every replica, with one NCCL all-reduce per vector (ncclCommInitAll
 * over the devices, the calls between ncclGroupStart and ncclGroupEnd, driven by the calling
 * thread). Replicas on the CPU are reduced on the host (tests). */
#define NN_GROUP_MAX 16 /* replicas of a group at most */
typedef struct nn_group nn_group_t;
enum nn_reduce {
    NN_REDUCE_GRADS = 1u << 0,  /* gradients: sum over replicas */
    NN_REDUCE_BUFFERS = 1u << 1 /* buffers (BN running statistics): mean over replicas */
};
/* A group over nets[0..n) (borrowed: they must outlive it), all on distinct CUDA devices or all
 * on the CPU, all of one model. Returns NN_OK and *out (caller owns it; free with
 * nn_group_destroy), or NN_ERR_ARG with a one-line reason in why (n outside 2..NN_GROUP_MAX,
 * different models, a shared or mixed device, a build without NCCL, NCCL's own failure), or
 * NN_ERR_NOMEM. */
int nn_group_new(nn_net_t *const *nets, int n, char *why, size_t why_len, nn_group_t **out);
/* Reduce `what` (enum nn_reduce flags) across the replicas, in place. Every replica's work must be
 * finished (nn_net_finish in its thread). Returns when the results are on every replica: NN_OK
 * or a negative nn_err (the failed call reported). */
int nn_group_allreduce(nn_group_t *g, unsigned what);
/* Free the group (not the nets) and null the caller's pointer; accepts NULL, safe twice. */
void nn_group_destroy(nn_group_t **self_p);

/* One SGD step with momentum and weight decay (nn_sgd_step's semantics) on the net's own
 * parameters with its gradients, where they live (on a device: on the device, with a momentum
 * buffer there). The momentum buffer is the net's, zero at the first call (reserved then) and
 * again after nn_net_to_backend. Returns when the update is done: NN_OK, or a negative nn_err
 * (no memory for the momentum, a failed device call). */
int nn_net_sgd_step(nn_net_t *net, float lr, float momentum, float weight_decay);
/* Name of the net's backend ("cpu", "cuda"). */
const char *nn_net_backend_name(const nn_net_t *net);
/* Activation floats per sample over all nodes and the scratch floats of the largest layer, for
 * the memory plan (nn_mem_plan). */
size_t nn_net_act_floats(const nn_net_t *net);
/* The memory plan (nn_mem_plan) of a built net: what it needs on its backend for max_batch
 * samples, parameters, activations and their R-companions, and the largest workspace included. */
struct nn_mem_plan;
void nn_net_mem_plan(const nn_net_t *net, struct nn_mem_plan *plan);
/* The scratch the CUDA backend's memory plan counts for this net (nn_cuda_scratch_bytes), which
 * replaces the plan's workspace there; needs no device; 0 in a build without CUDA. */
size_t nn_net_cuda_scratch(const nn_net_t *net);

/* Building a net from layers (the zoo does this; tests build small nets the same way).
 *
 * nn_net_new makes an empty net for NCHW inputs c x h x w and batches of up to max_batch samples;
 * node 0 is the input. nn_net_add appends a layer (in execution order, which must put parameter
 * layers in parameter order) reading nodes in0 and, for two-input layers, in1 (-1 otherwise); it
 * runs the layer's setup and returns the index of the layer's output node, or a negative nn_err
 * (the reason goes to the report callback). It takes ownership of `layer` in every case (a NULL
 * layer records NN_ERR_NOMEM). nn_net_build finishes the net: the last layer's output must be
 * [classes x 1 x 1] (logits); it checks every layer's operations, reserves every buffer, binds the
 * flat parameter/gradient/buffer views and initialises parameters with seed 0. After the first
 * error of nn_net_add, nn_net_build returns that error. Caller owns the result of nn_net_new; free
 * with nn_net_destroy (also when nn_net_build failed). */
struct nn_layer;
nn_net_t *nn_net_new(int c, int h, int w, int max_batch);
int nn_net_add(nn_net_t *net, struct nn_layer *layer, int in0, int in1);
int nn_net_build(nn_net_t *net);
/* Before nn_net_build: build for forward passes only (NN_NET_FORWARD_ONLY of nn_zoo_new_flags). */
void nn_net_set_forward_only(nn_net_t *net);

/* Counters of layer operations run since the last reset (for tests and profiling: a block HVP
 * must not touch the layers below its block). */
struct nn_net_stats {
    long forward;   /* layer forward calls */
    long backward;  /* layer backward calls */
    long rforward;  /* layer R-forward calls */
    long rbackward; /* layer R-backward calls */
};
void nn_net_stats(const nn_net_t *net, struct nn_net_stats *out);
void nn_net_stats_reset(nn_net_t *net);

/* Floating-point operations of one forward pass per sample (multiply-add = 2), for benchmarks. */
double nn_net_forward_flops(const nn_net_t *net);

/* SGD with momentum and weight decay, PyTorch semantics, over n floats:
 *   buf = momentum * buf + (g + wd * w);   w -= lr * buf
 * (buf starts at zero; PyTorch's first step sets buf = g + wd*w, which is the same from zero.) */
void nn_sgd_step(float *w, float *buf, const float *g, size_t n, float lr, float momentum,
                 float weight_decay);

#endif
