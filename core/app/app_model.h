/*
 * app_model: what the worker, the eigen service, `eval`, `eig` and the servers' sizing share: a
 * dataset opened for reading, the zoo net built for its input shape, and the test-set evaluation.
 */
#ifndef APP_MODEL_H
#define APP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "app_opts.h"
#include "nn_net.h"
#include "rt_loader.h"

/* Build the zoo net `model` for the inputs of loader ld (their shape), with classes outputs and
 * room for max_batch samples (flags: nn_zoo_new_flags', e.g. NN_NET_FORWARD_ONLY for evaluation).
 * *out receives it (caller owns it; free with nn_net_destroy). Returns 0 or a negative rt_err code
 * naming the model and the shape. */
int app_model_net(const char *model, const rt_loader_t *ld, int classes, int max_batch,
                  unsigned flags, nn_net_t **out);

/* Loader options from the data section of o (data.size, train_crop, flip, eval_resize, mean/std,
 * threads, prefetch, ...) and train.seed, with max_batch samples per request. Returns 0, or
 * RT_ERR_CONFIG naming the key of a list of the wrong length. */
int app_model_loader_opts(const struct app_opts *o, size_t max_batch, struct rt_loader_opts *lo);

/* Open the dataset at path without augmentation or prefetch threads (evaluation in key order,
 * the Hessian batches through the permutation of seed, sizing), for reads of at most max_batch
 * records. Caller owns *out (free with rt_loader_destroy). Returns 0 or a negative rt_err code
 * naming the path. */
int app_model_open_plain(const char *path, uint64_t seed, size_t max_batch, rt_loader_t **out);

/* The sizes a zoo model has on the training set of o (with its data options: the output size):
 * parameter floats, buffer floats and records. Returns 0 or a negative rt_err code. */
int app_model_sizes(const struct app_opts *o, uint64_t *params, uint64_t *buffers,
                    uint64_t *samples);

/* A zoo model (model.name other than synth) sizes the run from its net and dataset: sets
 * model.params, model.buffers and data.samples in *o (the configuration keeps 0: "the net's").
 * Sizes given by hand must agree. synth: model.params 0 becomes APP_SYNTH_PARAMS. Returns 0 or
 * a negative rt_err code naming the mismatch. */
int app_model_fill_sizes(struct app_opts *o);

/* Move net to `device` ("cpu": nothing to do, "cuda", "cuda:N") with its current parameters and
 * buffers (the host's, uploaded). Returns 0, or RT_ERR_ARG with the one-line reason (built
 * without CUDA, no device, no room: naming `label`); the net then stays on the CPU. */
int app_model_to_device(nn_net_t *net, const char *device, const char *label);

/* Mean loss and accuracy of net (BatchNorm in eval mode) over every record of test in key order,
 * micro-batches of nn_net_max_batch(net) into x (that many samples) and y, or, when the loader
 * has prefetch threads (rt_loader_can_prefetch), in its own buffers decoded ahead (the same sums:
 * the batches are scored in order). A label outside the net's classes is an error naming the
 * record. A device net runs on its device (the calling
 * thread is bound to it here; its parameters and buffers must be there: app_model_to_device).
 * Returns 0 or a negative rt_err code. */
int app_model_evaluate(nn_net_t *net, rt_loader_t *test, float *x, int32_t *y, double *accuracy,
                       double *loss, uint64_t *n);

#endif
