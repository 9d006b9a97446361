/*
 * nn_net_check: test-only derivative checks of a whole net (nn_net.h) against central finite
 * differences, plus the Hessian's symmetry and the block-HVP rule. Each check returns a relative
 * error of a whole vector, ||a - b|| / ||b|| in the 2-norm (symmetry: |u.Hv - v.Hu| / (|u| |Hv|)),
 * so a test compares it with a tolerance.
 *
 * Finite differences run in float32 through the net's own forward pass: with steps of 1e-3 .. 1e-2
 * on unit-scale data the rounding error is ~1e-4 relative and the truncation error smaller still,
 * while a missing or wrong term gives an error of order 1e-1 .. 1.
 */
#ifndef NN_NET_CHECK_H
#define NN_NET_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "nn_net.h"

/* Random batch for `net`: inputs standard normal (NCHW), labels uniform. Caller frees both. */
void nn_net_check_data(const nn_net_t *net, int n, unsigned long long seed, float **x,
                       int32_t **labels);

/* Give BatchNorm running statistics non-trivial values (mean N(0, 0.1^2), var U[0.5, 1.5]) so that
 * eval-mode checks exercise them, and perturb parameters by N(0, scale^2) (scale 0: none). */
void nn_net_check_perturb(nn_net_t *net, unsigned long long seed, float scale);

/* Parameter gradient against central differences of the loss: (a) on up to `per_layer` single
 * coordinates of every parameter layer (all of them when a layer is smaller; 0: none), as one
 * relative error of the vector, step eps; (b) for every parameter tensor t, the derivative along
 * d = g_t/|g_t| + r_t/|r_t| (r random, zero outside t), best of steps eps, eps/4, eps/16, relative
 * to max(|g.d|, 1e-2 max_t |g.d|): a tensor's gradient norm is resolvable in float32 where single
 * small coordinates are not. Returns the worst of all. NN_CHECK_VERBOSE=1 in the environment
 * prints the details of every check. */
double nn_net_check_param_grad(nn_net_t *net, const float *x, const int32_t *labels, int n,
                               enum nn_bn_mode bn, double eps, int per_layer);

/* Input gradient (NN_PASS_INPUT_GRAD) against central differences of the loss on up to `coords`
 * input elements and along one direction dx/|dx| + r/|r|, each the best of steps eps, eps/4,
 * eps/16. Returns the worse relative error. */
double nn_net_check_input_grad(nn_net_t *net, const float *x, const int32_t *labels, int n,
                               enum nn_bn_mode bn, double eps, int coords);

/* H v by nn_net_hvp (block of the last k layers; 0: full) against differences of gradients along
 * a random unit direction v supported on the block: central (g(w+eps v) - g(w-eps v)) / (2 eps),
 * forward and backward, for steps eps, eps/4, eps/16; the best agreement counts (a ReLU input
 * within a step of its kink makes the gradient jump on one side only; a wrong HVP disagrees with
 * every difference). Errors are the largest relative error over the block's parameter tensors,
 * each after dropping its 1% most discrepant entries (tensors under 100 entries are not trimmed).
 */
double nn_net_check_hvp(nn_net_t *net, const float *x, const int32_t *labels, int n,
                        enum nn_bn_mode bn, int k, double eps);

/* |u.(Hv) - v.(Hu)| / (|u| |Hv|) for random u, v. */
double nn_net_check_hvp_symmetry(nn_net_t *net, const float *x, const int32_t *labels, int n,
                                 enum nn_bn_mode bn);

/* The block HVP of the last k layers against the same block of the full HVP (direction zero
 * outside the block); also fails (returns 1) when the block result is not exactly zero outside
 * the block. Returns the relative error. */
double nn_net_check_block(nn_net_t *net, const float *x, const int32_t *labels, int n,
                          enum nn_bn_mode bn, int k);

#endif
