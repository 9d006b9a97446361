/*
 * nn_layer_check: test-only rig that runs ONE layer outside a net and checks its derivatives.
 *
 * The rig plays the net's part of the layer contract (nn_layer.h): it creates the input and output
 * nodes, calls ops->setup, allocates and binds parameters, gradients, HVP direction and result,
 * buffers and the scratch area, and drives the passes. The checks use the objective
 *     L(x, w) = sum(c .* y) + 0.5 * sum(y .^ 2)    (c fixed, random)
 * so dL/dy = c + y and R{dL/dy} = R{y}, and compare in float32:
 *   (a) dL/dx of every input and dL/dw (times grad_scale) against per-component central finite
 *       differences of L;
 *   (b) R{y} against the central difference of y along (input direction, parameter direction);
 *   (c) R{dL/dx} and R{dL/dw} (the HVP) against central differences of the gradients;
 *   (d) symmetry u.(Hv) = v.(Hu) for two random joint directions;
 * each of (b) and (c) for the three R-pass configurations a net uses: input R-active and layer in
 * the block, input only (layer above the block), layer only (bottom of the block). Unused inputs
 * (R{x} of an inactive input, v of a layer outside the block) are filled with NaN, so a layer that
 * reads them fails. It also checks the contract's "add, do not overwrite" rule (dy, rdy, g, hv are
 * pre-filled with junk), that need_dy = 0 / param_grad = 0 / in_block = 0 leave them untouched, and
 * that passes of n < max_batch samples write no output beyond n.
 *
 * Tolerances (errors are relative errors of whole vectors, |a - b| / |b| in the 2-norm): finite
 * differences of L use the exact identity L(y+) - L(y-) = (c + (y+ + y-)/2) . (y+ - y-), which
 * avoids the cancellation of two large L values; with step eps = 1e-2 on unit-scale data, float32
 * rounding contributes about 1e-7 * |y| / eps ~ 1e-5 and truncation eps^2 * (third derivative),
 * about 1e-4 for BatchNorm, 0 for piecewise-linear layers (observed: at most 3.4e-4 over the conv,
 * BN and maxpool tests). The default tolerance 2e-3 sits above that and well below the error of a
 * wrong formula (deliberately broken conv and BN R-backward terms gave 2e-2 .. 0.75, and broke
 * symmetry by 7e-4 .. 2e-2). Symmetry is checked against |u| |Hv| with tolerance 1e-4 (rounding
 * only; observed <= 3e-8). EB_CHECK_VERBOSE=1 prints every error.
 */
#ifndef NN_LAYER_CHECK_H
#define NN_LAYER_CHECK_H

#include <stddef.h>

#include "nn_layer.h"

/* Configuration of a rig and its checks. Zero fields take the defaults named. */
struct nn_check_cfg {
    int n_in;                                  /* inputs of the layer (1 or 2) */
    struct nn_shape in_shape[NN_LAYER_MAX_IN]; /* per-sample input shapes */
    int batch;                                 /* n of the passes */
    int max_batch;                             /* setup's max batch; 0: batch + 1 */
    int bn_eval;                               /* ctx->bn_eval of every pass */
    float param_scale;       /* std of the noise added to ops->init's parameters; 0: 0.3 */
    float grad_scale;        /* ctx->grad_scale of the checked backward; 0: 0.5 */
    double eps;              /* finite-difference step; 0: 1e-2 */
    double tol;              /* relative tolerance of (a)-(c); 0: 2e-3 */
    double sym_tol;          /* tolerance of (d); 0: 1e-4 */
    unsigned long long seed; /* random seed (inputs, parameters, c, directions) */
    /* Fills an input (n floats); NULL: standard normal. MaxPool needs well-separated values. */
    void (*fill_input)(float *x, size_t n, struct nn_rng *rng);
    int verbose; /* print every check's error (also when EB_CHECK_VERBOSE is set) */
};

/* A layer bound to its own buffers, as a net would bind it. Fields are public to the tests. */
struct nn_check_rig {
    struct nn_layer *l;                 /* the layer (owned by the rig) */
    struct nn_node in[NN_LAYER_MAX_IN]; /* input nodes, max_batch samples each */
    struct nn_node out;                 /* output node */
    size_t in_numel[NN_LAYER_MAX_IN];   /* floats per sample of each input */
    size_t out_numel;                   /* floats per sample of the output */
    int max_batch;                      /* batch capacity of the nodes */
    float *w, *g, *v, *hv;              /* parameters, gradient, direction, HVP (n_w each) */
    float *buf;                         /* buffers (n_buf) */
    float *work;                        /* scratch: work_per_sample * max_batch floats */
    struct nn_ctx ctx;                  /* pass context (n, modes, work) */
};

/* Set up `l` (the rig takes ownership, also on failure) for cfg's shapes; parameters from
 * ops->init plus noise, buffers uniform in [0.5, 1.5], inputs filled. Returns NULL and destroys l
 * when setup fails. Caller owns the rig; free with nn_check_rig_destroy. */
struct nn_check_rig *nn_check_rig_new(struct nn_layer *l, const struct nn_check_cfg *cfg);

/* Free the rig and its layer; accepts NULL, nulls the caller's pointer. */
void nn_check_rig_destroy(struct nn_check_rig **self_p);

/* Run the checks (a)-(d) on `l` (takes ownership). Returns the number of failed checks (0: all
 * passed); prints each failure (and every check when cfg->verbose) to stdout. */
int nn_check_layer(struct nn_layer *l, const struct nn_check_cfg *cfg);

#endif
