/*
 * nn_bn_impl: the inside of nn_bn (BatchNorm2d), shared by nn_bn.c (set-up, per-channel
 * coefficients, the CNHW passes, the layer's operations) and nn_bn_blk.c (the channel-blocked
 * passes). Internal to core/nn; the formulas are in nn_bn.c's banner.
 */
#ifndef NN_BN_IMPL_H
#define NN_BN_IMPL_H

#include "nn_layer.h"

/* Smallest activation (floats) worth a parallel region. */
#define NN_BN_PAR_MIN (16 * 1024)

struct nn_bn {
    struct nn_layer base; /* common header (first) */
    int c;                /* channels */
    size_t hw;            /* h * w per sample */
    int train;            /* mode of the last forward (1: batch statistics) */
    double *mu;           /* per channel: mean used by the last forward */
    double *inv;          /* per channel: 1/sqrt(var + eps) used by the last forward */
    double *mrx;          /* per channel: mean(Rx) of the last R-forward (train mode) */
    double *mxrx;         /* per channel: mean(xh * Rx) of the last R-forward (train mode) */
    int dy_masked;        /* out->dy holds the in-place ReLU's masked gradient already (blocked
                           * nodes, nn_node.relu): it changes only after a forward, which clears
                           * this */
};

/* Sums of channel ch for the R-backward (over its m values): dy, dy xh, R{dy}, R{dy} xh, dy R{xh}.
 */
enum { S_DY, S_DYX, S_RDY, S_RDYX, S_DYRX, S_NSUMS };

/* Per-channel coefficients (nn_bn.c), shared by both layouts. */
void nn_bn_fwd_coef(struct nn_bn *b, const struct nn_ctx *ctx, int ch, double s, double ss,
                    size_t m, float *scale, float *muf);
void nn_bn_bwd_param(struct nn_bn *b, const struct nn_ctx *ctx, int ch, double sdy, double sdyx);
void nn_bn_bwd_coef(struct nn_bn *b, int ch, double sdy, double sdyx, size_t m, float k[3]);
void nn_bn_rfwd_coef(struct nn_bn *b, int ch, double mrx, double mxrx, float k[3]);
void nn_bn_rbwd_param(struct nn_bn *b, int ch, const double sum[S_NSUMS]);
void nn_bn_rbwd_coef(struct nn_bn *b, int ch, const double sum[S_NSUMS], size_t m, float k[5]);

/* The passes on channel-blocked nodes (nn_bn_blk.c); set: dx (R{dx}) is fresh, overwrite it. */
void nn_bn_forward_blk(struct nn_bn *b, const struct nn_ctx *ctx);
void nn_bn_backward_blk(struct nn_bn *b, const struct nn_ctx *ctx, int set);
void nn_bn_rforward_blk(struct nn_bn *b, const struct nn_ctx *ctx);
void nn_bn_rbackward_blk(struct nn_bn *b, const struct nn_ctx *ctx, int set);
/* Eval mode (running statistics): one sweep each (nn_bn_blk.c). */
void nn_bn_backward_blk_eval(struct nn_bn *b, const struct nn_ctx *ctx, int set);
void nn_bn_rbackward_blk_eval(struct nn_bn *b, const struct nn_ctx *ctx, int set);

#endif
