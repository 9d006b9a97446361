/*
 * eig_hvp: the bridge between the power iteration (eig_power, which knows only an HVP callback)
 * and a net (nn_net_hvp): the top eigenvalue of the Hessian of the mean loss of a net on one batch,
 * full or block (last K parameter layers), BatchNorm in eval or train mode. Used by `eigenbatch
 * eig` and by the eigen service.
 */
#ifndef EIG_HVP_H
#define EIG_HVP_H

#include <stdint.h>

#include "eig_lanczos.h"
#include "eig_power.h"
#include "nn_net.h"

/* One Hessian batch of a net: what the HVP callback needs. Everything is borrowed. */
struct eig_hvp {
    nn_net_t *net;      /* the net, weights loaded */
    const float *x;     /* n inputs, NCHW */
    const int32_t *y;   /* n labels */
    int n;              /* samples (1..nn_net_max_batch) */
    enum nn_bn_mode bn; /* BatchNorm mode of the Hessian */
    int block_last_k;   /* 0: full Hessian; K: the last K parameter layers */
    int no_reuse;       /* 1: every product runs the forward and backward passes again (for
                           measuring what reuse saves); 0: nn_net_hvp_reuse within a computation */
    long calls;         /* HVPs done (counter) */
};

/* Start and end one computation on h's batch and weights (nothing may change them in between):
 * the products in between reuse the forward and backward passes (nn_net_hvp_reuse) unless
 * h->no_reuse. eig_hvp_top and eig_hvp_top_lanczos call these themselves. */
void eig_hvp_begin(struct eig_hvp *h);
void eig_hvp_end(struct eig_hvp *h);

/* eig_power_hvp_fn over struct eig_hvp (user): hv = H v by nn_net_hvp. Returns 0, or RT_ERR_ARG
 * when the net refused (bad labels, no memory for its R-pass buffers). */
int eig_hvp_fn(void *user, const float *v, float *hv);

/* Check h against its net: n in [1, max batch], block_last_k in [0, parameter layers]. 0 or
 * RT_ERR_ARG naming the value. */
int eig_hvp_check(const struct eig_hvp *h);

/* Top eigenvalue of h's Hessian by pw (sized nn_net_param_count). Fills *res and *seconds (wall
 * time, may be NULL). Returns 0 or a negative rt_err code. */
int eig_hvp_top(eig_power_t *pw, struct eig_hvp *h, struct eig_power_result *res, double *seconds);

/* The Lanczos settings that match power iteration's pc: the same tolerance and seed, at most five
 * times its products (within [top, EIG_LANCZOS_MAX_ITER]). */
struct eig_lanczos_config eig_hvp_lanczos_config(const struct eig_power_config *pc, int top);

/* Top eigenvalue of h's Hessian by Lanczos under eig_hvp_lanczos_config(pc, 1), reported as power
 * iteration's result (rel_change NaN). Returns 0 or a negative rt_err code. */
int eig_hvp_top_lanczos(const struct eig_power_config *pc, struct eig_hvp *h,
                        struct eig_power_result *res, double *seconds);

#endif
