/*
 * worker_fgsm: FGSM perturbation of the first ceil(gamma * m) samples of a micro-batch.
 */
#include "worker_fgsm.h"

#include <math.h>
#include <stdlib.h>

#include "rt_err.h"

struct worker_fgsm {
    int32_t max_samples; /* largest micro-batch */
    size_t sample_len;   /* floats per sample */
    float *grad;         /* dL/dx of the perturbed samples (max_samples * sample_len) */
};

int32_t worker_fgsm_count(double gamma, int32_t m)
{
    if (!(gamma > 0.0) || m <= 0)
        return 0;
    double n = ceil(gamma * (double)m * (1.0 - 1e-9));
    if (n > (double)m)
        return m;
    return (int32_t)n;
}

worker_fgsm_t *worker_fgsm_new(int32_t max_samples, size_t sample_len)
{
    if (max_samples <= 0 || sample_len == 0) {
        rt_err_set(RT_ERR_ARG, "fgsm: micro-batch of %d samples of %zu floats", max_samples,
                   sample_len);
        return NULL;
    }
    worker_fgsm_t *self = calloc(1, sizeof *self);
    if (!self)
        goto out_nomem;
    self->grad = malloc((size_t)max_samples * sample_len * sizeof *self->grad);
    if (!self->grad)
        goto out_free_self;
    self->max_samples = max_samples;
    self->sample_len = sample_len;
    return self;

out_free_self:
    free(self);
out_nomem:
    rt_err_set(RT_ERR_NOMEM, "fgsm: no memory for %d x %zu floats", max_samples, sample_len);
    return NULL;
}

void worker_fgsm_destroy(worker_fgsm_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->grad);
    free(*self_p);
    *self_p = NULL;
}

/* Min and max of x[0..n). */
static void s_range(const float *x, size_t n, float *lo, float *hi)
{
    float a = x[0], b = x[0];
    for (size_t i = 1; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

int worker_fgsm_apply(worker_fgsm_t *self, float *x, int32_t m, double gamma, double eps,
                      enum worker_fgsm_range range, worker_fgsm_grad_fn grad, void *user,
                      int32_t *n_adv)
{
    if (m < 0 || m > self->max_samples)
        return rt_err_set(RT_ERR_ARG, "fgsm: micro-batch of %d samples (at most %d)", m,
                          self->max_samples);
    if (!isfinite(eps) || eps < 0.0)
        return rt_err_set(RT_ERR_ARG, "fgsm: epsilon %g must be finite and >= 0", eps);
    if (!isfinite(gamma))
        return rt_err_set(RT_ERR_ARG, "fgsm: gamma %g is not finite", gamma);
    int32_t n = worker_fgsm_count(gamma, m);
    if (n_adv)
        *n_adv = n;
    if (n == 0)
        return RT_OK;

    const size_t len = (size_t)n * self->sample_len;
    float lo, hi;
    s_range(x, range == WORKER_FGSM_RANGE_ADV ? len : (size_t)m * self->sample_len, &lo, &hi);
    int rc = grad(user, x, n, self->grad);
    if (rc != 0)
        return rc;
    const float e = (float)eps;
    for (size_t i = 0; i < len; i++) {
        float g = self->grad[i];
        float s = g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f);
        float v = x[i] + e * s;
        x[i] = v < lo ? lo : (v > hi ? hi : v);
    }
    return RT_OK;
}
