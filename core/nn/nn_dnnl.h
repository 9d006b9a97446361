/*
 * nn_dnnl: Conv2d on the CPU through oneDNN, for one fixed shape (nn_conv.c's fast path).
 *
 * A handle holds oneDNN's forward, backward-data and backward-weights primitives of one
 * convolution of exactly n samples, created once (nn_dnnl_conv_new); passes only execute them. The
 * caller's tensors keep the net's layouts: activations CNHW, weights (out, in, k, k) row-major.
 * oneDNN's fast kernels want blocked layouts (channels in blocks of 16), so each call reorders its
 * operands in and its result out through caller-provided scratch (nn_dnnl_conv_work_floats); a
 * reorder out can add into the destination instead of overwriting it, which gives the
 * accumulating semantics of the layer contract (nn_layer.h) at no extra pass.
 *
 *   forward       y  (=|+=) conv(W, x)
 *   backward      dW +=     scale * sum over the batch of dY (*) x   (the filter gradient)
 *                 dx +=     convT(W, dY)                              (the transposed convolution)
 *
 * The activations of a call may instead be in oneDNN's own channel-blocked layout (nChw16c, the
 * net's NN_BLK layout, nn_layer.h) where the handle's primitives chose it: such operands are used
 * as they are, with no reorder (`blk` arguments below).
 *
 * Built without oneDNN (EB_DNNL off), nn_dnnl_conv_new returns NULL and callers keep their own
 * implementation; nothing else in the tree knows whether oneDNN is there.
 */
#ifndef NN_DNNL_H
#define NN_DNNL_H

#include <stddef.h>

typedef struct nn_dnnl_conv nn_dnnl_conv_t;

/* Which activations of a call are channel-blocked (nChw16c) rather than CNHW, and whether the
 * backward overwrites dx. */
enum nn_dnnl_blk {
    NN_DNNL_BLK_X = 1 << 0,  /* the input side: x, dx */
    NN_DNNL_BLK_Y = 1 << 1,  /* the output side: y, dy */
    NN_DNNL_SET_DX = 1 << 2, /* backward: dx = convT(w, dy), overwriting instead of adding */
};

/* Shape of one convolution: n samples of in_c x ih x iw -> out_c x oh x ow, square kernel k,
 * stride and zero padding on both sides; oh, ow as the caller computed them (floor). */
struct nn_dnnl_conv_shape {
    int n, in_c, ih, iw; /* input */
    int out_c, oh, ow;   /* output */
    int k, stride, pad;  /* window */
};

/* Primitives for one shape; NULL when oneDNN is not built in or has no implementation for it
 * (the reason goes to nn_report at level 2). Caller owns the handle; free with
 * nn_dnnl_conv_destroy. */
nn_dnnl_conv_t *nn_dnnl_conv_new(const struct nn_dnnl_conv_shape *shape);

/* Frees the handle; accepts NULL and NULLs the caller's pointer. */
void nn_dnnl_conv_destroy(nn_dnnl_conv_t **self_p);

/* Scratch floats every call below needs in `work` (blocked operands, weights and weight gradient,
 * oneDNN's scratchpad); the handle keeps no buffer of its own. */
size_t nn_dnnl_conv_work_floats(const nn_dnnl_conv_t *self);

/* The enum nn_dnnl_blk sides whose channel-blocked layout every primitive of the handle reads and
 * writes directly (0 when none, or without oneDNN). */
unsigned nn_dnnl_conv_blocked(const nn_dnnl_conv_t *self);

/* y = conv(w, x) when add is 0, y += conv(w, x) when add is 1. x [in_c x n*ih*iw] and
 * y [out_c x n*oh*ow] CNHW, or channel-blocked as blk says (only sides nn_dnnl_conv_blocked
 * allows); w (out_c, in_c, k, k). */
void nn_dnnl_conv_forward(nn_dnnl_conv_t *self, const float *x, const float *w, float *y, int add,
                          unsigned blk, float *work);

/* The backward pass of one output gradient dy (output-shaped), which is reordered once for both
 * products: dw += scale * filter gradient of (x, dy) when dw is non-NULL (dw (out_c, in_c, k, k),
 * x input-shaped), then dx += convT(w, dy) when dx is non-NULL (dx input-shaped). Activations are
 * CNHW or channel-blocked as blk says (x and dx on the input side, dy on the output side). */
void nn_dnnl_conv_backward(nn_dnnl_conv_t *self, const float *dy, const float *x, float scale,
                           float *dw, const float *w, float *dx, unsigned blk, float *work);

#endif
