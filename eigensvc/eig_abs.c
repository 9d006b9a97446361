/*
 * eig_abs: the ABS / ABSA batch-size rule (see eig_abs.h for the exact rule).
 */
#include "eig_abs.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rt_decay.h"
#include "rt_err.h"

struct eig_abs {
    struct eig_abs_config cfg; /* configuration (copied) */
    struct rt_wire_abs st;     /* current state */
};

/* Why the batch grows in an epoch. */
enum s_grow { S_GROW_NONE = 0, S_GROW_EIGEN, S_GROW_TIMER };

void eig_abs_config_default(struct eig_abs_config *cfg, int32_t epochs, int adversarial)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->alpha = 2.0;
    cfg->beta = 2.0;
    cfg->kappa = 10;
    cfg->batch0 = 128;
    cfg->batch_max = 16384;
    cfg->lr0 = 0.1;
    cfg->lr_rule = EIG_ABS_LR_LINEAR;
    cfg->lr_cap = 0.0;
    cfg->adversarial = adversarial ? 1 : 0;
    cfg->gamma0 = adversarial ? 0.2 : 0.0;
    cfg->omega = 2.0;
    cfg->tau = epochs / 2;
    cfg->n_decay = 0;
    cfg->rho = 0.2;
    cfg->timer_sets_ref = 1;
}

int eig_abs_config_check(const struct eig_abs_config *c)
{
    if (!c)
        return rt_err_set(RT_ERR_CONFIG, "abs: no configuration");
    if (!isfinite(c->alpha) || c->alpha <= 0.0)
        return rt_err_set(RT_ERR_CONFIG, "abs: alpha %g must be finite and > 0", c->alpha);
    if (!isfinite(c->beta) || c->beta <= 1.0)
        return rt_err_set(RT_ERR_CONFIG, "abs: beta %g must be finite and > 1", c->beta);
    if (c->kappa < 0)
        return rt_err_set(RT_ERR_CONFIG, "abs: kappa %d must be >= 0 (0 = no timer)", c->kappa);
    if (c->batch0 <= 0)
        return rt_err_set(RT_ERR_CONFIG, "abs: batch0 %lld must be > 0", (long long)c->batch0);
    if (c->batch_max < c->batch0)
        return rt_err_set(RT_ERR_CONFIG, "abs: batch_max %lld is below batch0 %lld",
                          (long long)c->batch_max, (long long)c->batch0);
    if (!isfinite(c->lr0) || c->lr0 <= 0.0)
        return rt_err_set(RT_ERR_CONFIG, "abs: lr0 %g must be finite and > 0", c->lr0);
    if ((int)c->lr_rule < EIG_ABS_LR_LINEAR || (int)c->lr_rule > EIG_ABS_LR_NONE)
        return rt_err_set(RT_ERR_CONFIG, "abs: unknown lr rule %d", (int)c->lr_rule);
    if (!isfinite(c->lr_cap) || c->lr_cap < 0.0)
        return rt_err_set(RT_ERR_CONFIG, "abs: lr_cap %g must be >= 0 (0 = none)", c->lr_cap);
    if (c->adversarial != 0 && c->adversarial != 1)
        return rt_err_set(RT_ERR_CONFIG, "abs: adversarial %d must be 0 or 1", c->adversarial);
    if (!isfinite(c->gamma0) || c->gamma0 < 0.0 || c->gamma0 > 1.0)
        return rt_err_set(RT_ERR_CONFIG, "abs: gamma0 %g must be in [0, 1]", c->gamma0);
    if (!isfinite(c->omega) || c->omega < 1.0)
        return rt_err_set(RT_ERR_CONFIG, "abs: omega %g must be >= 1", c->omega);
    if (c->tau < 0)
        return rt_err_set(RT_ERR_CONFIG, "abs: tau %d must be >= 0", c->tau);
    int rc = rt_decay_check(c->decay_epochs, c->n_decay, c->rho, 0, "abs");
    if (rc)
        return rc;
    if (c->timer_sets_ref != 0 && c->timer_sets_ref != 1)
        return rt_err_set(RT_ERR_CONFIG, "abs: timer_sets_ref %d must be 0 or 1",
                          c->timer_sets_ref);
    return RT_OK;
}

static double s_capped(const struct eig_abs_config *c, double lr)
{
    return c->lr_cap > 0.0 && lr > c->lr_cap ? c->lr_cap : lr;
}

eig_abs_t *eig_abs_new(const struct eig_abs_config *cfg)
{
    if (eig_abs_config_check(cfg) != RT_OK)
        return NULL;
    eig_abs_t *self = calloc(1, sizeof *self);
    if (!self) {
        rt_err_set(RT_ERR_NOMEM, "abs: out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    self->st.batch = cfg->batch0;
    self->st.lr_base = s_capped(cfg, cfg->lr0);
    self->st.gamma_base = cfg->adversarial ? cfg->gamma0 : 0.0;
    self->st.lambda_ref = NAN;
    self->st.measuring = cfg->batch0 < cfg->batch_max;
    if (!self->st.measuring)
        self->st.gamma_base = 0.0;
    self->st.last_epoch = -1;
    return self;
}

void eig_abs_destroy(eig_abs_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

int eig_abs_wants_measurement(const eig_abs_t *self)
{
    return self->st.measuring;
}

/* Append to a decision's reason, "; " between parts; truncates silently at the buffer's end. */
__attribute__((format(printf, 2, 3))) static void s_why(struct eig_abs_decision *d, const char *fmt,
                                                        ...)
{
    size_t used = strlen(d->reason);
    if (used + 1 >= sizeof d->reason)
        return;
    if (used > 0) {
        snprintf(d->reason + used, sizeof d->reason - used, "; ");
        used = strlen(d->reason);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason + used, sizeof d->reason - used, fmt, ap);
    va_end(ap);
}

/* Grow the batch in state st (see the header's rule); writes the reason's tail. */
static void s_grow(const struct eig_abs_config *c, struct rt_wire_abs *st,
                   struct eig_abs_decision *d)
{
    int64_t old_b = st->batch;
    double grown = floor(c->beta * (double)old_b);
    int64_t new_b = grown > (double)c->batch_max ? c->batch_max : (int64_t)grown;
    if (new_b <= old_b)
        new_b = old_b + 1 <= c->batch_max ? old_b + 1 : c->batch_max;
    double ratio = (double)new_b / (double)old_b, scale = 1.0;
    if (c->lr_rule == EIG_ABS_LR_LINEAR)
        scale = ratio;
    else if (c->lr_rule == EIG_ABS_LR_SQRT)
        scale = sqrt(ratio);
    double lr = st->lr_base * scale;
    st->lr_base = s_capped(c, lr);
    st->batch = new_b;
    st->duration = 0;
    st->increases++;
    if (c->adversarial)
        st->gamma_base /= c->omega;
    if (st->lr_base < lr)
        s_why(d, "B %lld -> %lld, lr x %g capped at %g", (long long)old_b, (long long)new_b, scale,
              c->lr_cap);
    else
        s_why(d, "B %lld -> %lld, lr x %g -> %g", (long long)old_b, (long long)new_b, scale,
              st->lr_base);
    if (new_b >= c->batch_max) {
        st->measuring = 0;
        st->gamma_base = 0.0;
        s_why(d, "B_max reached: measurement stopped%s",
              c->adversarial ? ", adversarial training off" : "");
    } else if (c->adversarial) {
        s_why(d, "gamma / %g -> %g", c->omega, st->gamma_base);
    }
}

int eig_abs_epoch_end(eig_abs_t *self, int32_t epoch, int has_lambda, double lambda,
                      struct eig_abs_decision *out)
{
    const struct eig_abs_config *c = &self->cfg;
    if (epoch <= self->st.last_epoch)
        return rt_err_set(RT_ERR_STATE, "abs: epoch %d already handled (last was %d)", epoch,
                          self->st.last_epoch);
    if (has_lambda && !isfinite(lambda))
        return rt_err_set(RT_ERR_ARG, "abs: epoch %d: eigenvalue %g is not finite", epoch, lambda);

    struct rt_wire_abs st = self->st;
    memset(out, 0, sizeof *out);
    out->epoch = epoch;
    out->batch_prev = st.batch;
    out->lambda = has_lambda ? lambda : NAN;

    if (!st.measuring) {
        if (has_lambda)
            s_why(out, "measurement ignored: B_max reached");
        has_lambda = 0;
    } else {
        enum s_grow grow = S_GROW_NONE;
        st.duration += epoch - st.last_epoch;
        if (has_lambda && !st.has_ref) {
            st.lambda_ref = lambda;
            st.has_ref = 1;
            s_why(out, "first measurement: lambda_ref = %.6g", lambda);
        } else if (has_lambda && lambda <= st.lambda_ref / c->alpha) {
            grow = S_GROW_EIGEN;
            s_why(out, "lambda %.6g <= lambda_ref %.6g / alpha %g", lambda, st.lambda_ref,
                  c->alpha);
        }
        if (grow == S_GROW_NONE && c->kappa > 0 && st.duration >= c->kappa) {
            grow = S_GROW_TIMER;
            s_why(out, "kappa timer %d epochs", c->kappa);
        }
        if (grow != S_GROW_NONE) {
            if (has_lambda && (grow == S_GROW_EIGEN || c->timer_sets_ref)) {
                st.lambda_ref = lambda;
                st.has_ref = 1;
            }
            s_grow(c, &st, out);
            out->changed = 1;
        } else if (has_lambda && out->reason[0] == '\0') {
            s_why(out, "lambda %.6g > lambda_ref %.6g / alpha %g: duration %d/%d", lambda,
                  st.lambda_ref, c->alpha, st.duration, c->kappa);
        } else if (!has_lambda) {
            s_why(out, "no measurement: duration %d/%d", st.duration, c->kappa);
        }
    }

    int32_t next = epoch + 1;
    for (int32_t e = self->st.last_epoch + 2; e <= next; e++)
        if (rt_decay_is_epoch(c->decay_epochs, c->n_decay, e))
            s_why(out, "decay epoch %d: lr x %g", e, c->rho);
    if (c->adversarial && st.gamma_base > 0.0 && self->st.last_epoch + 1 < c->tau && next >= c->tau)
        s_why(out, "epoch %d >= tau %d: adversarial training off", next, c->tau);

    st.last_epoch = epoch;
    self->st = st;

    out->has_lambda = has_lambda;
    out->lambda_ref = st.has_ref ? st.lambda_ref : NAN;
    out->duration = st.duration;
    out->batch = st.batch;
    out->lr_base = st.lr_base;
    out->lr = st.lr_base * rt_decay_factor(c->decay_epochs, c->n_decay, c->rho, next);
    out->gamma_base = st.gamma_base;
    out->gamma = (c->adversarial && next < c->tau && st.batch < c->batch_max) ? st.gamma_base : 0.0;
    out->measure_next = st.measuring;
    return RT_OK;
}

void eig_abs_get_state(const eig_abs_t *self, struct rt_wire_abs *out)
{
    *out = self->st;
}

int eig_abs_set_state(eig_abs_t *self, const struct rt_wire_abs *in)
{
    const struct eig_abs_config *c = &self->cfg;
    if (in->batch < c->batch0 || in->batch > c->batch_max)
        return rt_err_set(RT_ERR_FORMAT, "abs state: batch %lld not in [%lld, %lld]",
                          (long long)in->batch, (long long)c->batch0, (long long)c->batch_max);
    if (!isfinite(in->lr_base) || in->lr_base <= 0.0)
        return rt_err_set(RT_ERR_FORMAT, "abs state: lr_base %g must be finite and > 0",
                          in->lr_base);
    if (!isfinite(in->gamma_base) || in->gamma_base < 0.0 || in->gamma_base > 1.0)
        return rt_err_set(RT_ERR_FORMAT, "abs state: gamma_base %g not in [0, 1]", in->gamma_base);
    if (in->has_ref != 0 && in->has_ref != 1)
        return rt_err_set(RT_ERR_FORMAT, "abs state: has_ref %d must be 0 or 1", in->has_ref);
    if (in->has_ref && !isfinite(in->lambda_ref))
        return rt_err_set(RT_ERR_FORMAT, "abs state: lambda_ref %g is not finite", in->lambda_ref);
    if (in->duration < 0 || in->increases < 0 || in->last_epoch < -1)
        return rt_err_set(RT_ERR_FORMAT,
                          "abs state: duration %d, increases %d, last_epoch %d out of range",
                          in->duration, in->increases, in->last_epoch);
    if (in->measuring != (in->batch < c->batch_max))
        return rt_err_set(RT_ERR_FORMAT, "abs state: measuring %d disagrees with batch %lld",
                          in->measuring, (long long)in->batch);
    self->st = *in;
    if (!self->st.has_ref)
        self->st.lambda_ref = NAN;
    return RT_OK;
}

static const char *const s_rule_names[] = {"linear", "sqrt", "none"};

const char *eig_abs_lr_rule_name(enum eig_abs_lr_rule r)
{
    if ((int)r < EIG_ABS_LR_LINEAR || (int)r > EIG_ABS_LR_NONE)
        return "?";
    return s_rule_names[r];
}

int eig_abs_lr_rule_parse(const char *name, enum eig_abs_lr_rule *out)
{
    for (int i = EIG_ABS_LR_LINEAR; i <= EIG_ABS_LR_NONE; i++) {
        if (name && strcasecmp(name, s_rule_names[i]) == 0) {
            *out = (enum eig_abs_lr_rule)i;
            return RT_OK;
        }
    }
    return rt_err_set(RT_ERR_CONFIG, "abs: unknown lr rule '%s' (linear, sqrt, none)",
                      name ? name : "(null)");
}
