/*
 * eig_hvp: power iteration over a net's exact Hessian-vector products (see eig_hvp.h).
 */
#include "eig_hvp.h"

#include <math.h>

#include "rt_clock.h"
#include "rt_err.h"

/* One HVP of the power iteration. Dropout (alexnet) is in eval mode here whatever h->bn says:
 * the eigen service measures the Hessian of the deterministic net, as HessianFlow's model.eval();
 * h->bn concerns BatchNorm only. */
int eig_hvp_fn(void *user, const float *v, float *hv)
{
    struct eig_hvp *h = user;
    nn_net_set_dropout_eval(h->net, 1);
    float loss = nn_net_hvp(h->net, h->x, h->y, h->n, h->bn, h->block_last_k, v, hv);
    nn_net_set_dropout_eval(h->net, 0);
    h->calls++;
    /* NaN: bad input (a label outside the classes) or no memory for the R-pass buffers, reported
     * by the net through its report callback; hv is then not a product */
    if (isnan(loss))
        return rt_err_set(RT_ERR_ARG,
                          "eig_hvp: the net refused the Hessian-vector product "
                          "(%d samples, bad labels or no memory; see the log)",
                          h->n);
    return RT_OK;
}

int eig_hvp_check(const struct eig_hvp *h)
{
    if (!h->net || !h->x || !h->y)
        return rt_err_set(RT_ERR_ARG, "eig_hvp: net, inputs and labels are required");
    if (h->n < 1 || h->n > nn_net_max_batch(h->net))
        return rt_err_set(RT_ERR_ARG, "eig_hvp: %d samples, the net takes 1..%d", h->n,
                          nn_net_max_batch(h->net));
    int layers = nn_net_param_layers(h->net);
    if (h->block_last_k < 0 || h->block_last_k > layers)
        return rt_err_set(RT_ERR_ARG, "eig_hvp: block of the last %d layers, the net has %d",
                          h->block_last_k, layers);
    if (h->bn != NN_BN_EVAL && h->bn != NN_BN_TRAIN)
        return rt_err_set(RT_ERR_ARG, "eig_hvp: BatchNorm mode %d", (int)h->bn);
    return RT_OK;
}

int eig_hvp_top(eig_power_t *pw, struct eig_hvp *h, struct eig_power_result *res, double *seconds)
{
    int rc = eig_hvp_check(h);
    if (rc)
        return rc;
    if (eig_power_size(pw) != nn_net_param_count(h->net))
        return rt_err_set(RT_ERR_ARG, "eig_hvp: power iteration sized %zu, net has %zu params",
                          eig_power_size(pw), nn_net_param_count(h->net));
    double t0 = rt_clock_now();
    eig_hvp_begin(h);
    rc = eig_power_run(pw, eig_hvp_fn, h, res);
    eig_hvp_end(h);
    if (seconds)
        *seconds = rt_clock_now() - t0;
    return rc;
}

struct eig_lanczos_config eig_hvp_lanczos_config(const struct eig_power_config *pc, int top)
{
    struct eig_lanczos_config lc = {
        .max_iter = 5 * pc->max_iter, .top = top, .tol = pc->tol, .seed = pc->seed};
    if (lc.max_iter < lc.top)
        lc.max_iter = lc.top;
    if (lc.max_iter > EIG_LANCZOS_MAX_ITER)
        lc.max_iter = EIG_LANCZOS_MAX_ITER;
    return lc;
}

int eig_hvp_top_lanczos(const struct eig_power_config *pc, struct eig_hvp *h,
                        struct eig_power_result *res, double *seconds)
{
    int rc = eig_hvp_check(h);
    if (rc)
        return rc;
    struct eig_lanczos_config lc = eig_hvp_lanczos_config(pc, 1);
    struct eig_lanczos_result r;
    double t0 = rt_clock_now();
    eig_hvp_begin(h);
    rc = eig_lanczos_run(nn_net_param_count(h->net), &lc, eig_hvp_fn, h, &r);
    eig_hvp_end(h);
    if (seconds)
        *seconds = rt_clock_now() - t0;
    if (rc)
        return rc;
    res->eigenvalue = r.eigenvalues[0];
    res->iterations = r.iterations;
    res->converged = r.converged;
    res->residual = r.residuals[0];
    res->rel_change = NAN;
    return RT_OK;
}

void eig_hvp_begin(struct eig_hvp *h)
{
    nn_net_hvp_reuse(h->net, !h->no_reuse);
}

void eig_hvp_end(struct eig_hvp *h)
{
    nn_net_hvp_reuse(h->net, 0);
}
