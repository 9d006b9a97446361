/*
 * eig_abs: the ABS / ABSA rule (adaptive batch size from the top Hessian eigenvalue) as a small
 * state machine, after Yao et al. and the authors' HessianFlow code.
 *
 * Fed once per finished epoch e (0-based) with the measured top eigenvalue lambda, or with "no
 * measurement", it decides the batch, learning rate and adversarial fraction for epoch e + 1:
 *  - the first measurement sets lambda_ref;
 *  - while measuring, every epoch adds one to `duration` (the epochs since the last increase,
 *    the first measured epoch included, as HessianFlow counts it; an epoch with no measurement
 *    still counts);
 *  - if lambda <= lambda_ref / alpha: grow; else when duration reaches kappa (kappa > 0): grow;
 *  - grow: B <- min(max(floor(beta * B), B + 1), B_max); lr_base <- min(lr_cap, lr_base * s) with
 *    s = B_new / B_old (linear, default), sqrt(B_new / B_old) or 1; gamma <- gamma / omega;
 *    duration <- 0; lambda_ref <- lambda (for an eigenvalue increase always; for a timer increase
 *    only when timer_sets_ref is 1, the default; HessianFlow keeps lambda_ref there: set 0);
 *  - once B = B_max: measurement stops (measure_next = 0, later measurements are ignored) and the
 *    adversarial fraction is 0 from then on;
 *  - on top: the step decay, lr = lr_base * rho^k, k = number of decay epochs <= e + 1 (epoch d is
 *    the first to train with the decayed rate); and ABSA's gamma = 0 from epoch tau on.
 * lr_cap bounds the base (pre-decay) learning rate, as in server_sched. The decision carries both
 * the base values (what the coordinator's schedule takes) and the effective ones for epoch e + 1.
 * The sign of lambda is used as given (the power iteration's Rayleigh quotient, which is negative
 * when the dominant eigenvalue is), exactly as HessianFlow compares it.
 */
#ifndef EIG_ABS_H
#define EIG_ABS_H

#include <stdint.h>

#include "rt_decay.h"
#include "rt_wire.h"

#define EIG_ABS_MAX_DECAY RT_DECAY_MAX /* most decay epochs */
#define EIG_ABS_REASON_MAX 256         /* bytes of a decision's reason, NUL included */

typedef struct eig_abs eig_abs_t;

/* How the learning rate follows a batch increase. */
enum eig_abs_lr_rule {
    EIG_ABS_LR_LINEAR = 0, /* lr *= B_new / B_old (HessianFlow) */
    EIG_ABS_LR_SQRT,       /* lr *= sqrt(B_new / B_old) */
    EIG_ABS_LR_NONE,       /* lr unchanged */
};

struct eig_abs_config {
    double alpha;                 /* trigger: lambda <= lambda_ref / alpha (> 0; default 2) */
    double beta;                  /* batch growth factor (> 1; default 2) */
    int32_t kappa;                /* grow after kappa epochs without an increase (0 = never; 10) */
    int64_t batch0;               /* initial batch (> 0; default 128) */
    int64_t batch_max;            /* B_max (>= batch0; default 16384) */
    double lr0;                   /* initial learning rate at batch0 (> 0) */
    enum eig_abs_lr_rule lr_rule; /* scaling with the batch (default linear) */
    double lr_cap;                /* bound on the base lr (0 = none) */
    int32_t adversarial;          /* 1: ABSA (gamma, omega, tau used); 0: ABS */
    double gamma0;                /* ABSA: initial adversarial fraction in [0, 1] (default 0.2) */
    double omega;                 /* ABSA: gamma /= omega at every increase (>= 1; default 2) */
    int32_t tau;     /* ABSA: gamma = 0 from this epoch on (>= 0; default epochs / 2) */
    int32_t n_decay; /* entries in decay_epochs */
    int32_t decay_epochs[EIG_ABS_MAX_DECAY]; /* strictly increasing, >= 1 */
    double rho;                              /* step-decay factor in (0, 1] */
    int32_t timer_sets_ref; /* 1: a kappa-timer increase also sets lambda_ref (see above) */
};

/* Output for one finished epoch. */
struct eig_abs_decision {
    int32_t epoch;        /* the epoch that ended */
    int32_t has_lambda;   /* a measurement was given (and used) */
    double lambda;        /* the measurement (NaN when none) */
    double lambda_ref;    /* lambda_ref after this epoch (NaN when none yet) */
    int32_t duration;     /* duration after this epoch */
    int32_t changed;      /* 1: the batch grew */
    int64_t batch_prev;   /* batch before this decision */
    int64_t batch;        /* batch for epoch + 1 */
    double lr_base;       /* base learning rate for epoch + 1 (before step decay) */
    double lr;            /* effective learning rate for epoch + 1 (step decay applied) */
    double gamma_base;    /* adversarial fraction before the tau rule */
    double gamma;         /* effective adversarial fraction for epoch + 1 */
    int32_t measure_next; /* 1: measure at the end of the next epoch */
    char reason[EIG_ABS_REASON_MAX]; /* why, e.g. "lambda 3.1 <= lambda_ref 7 / alpha 2: ..." */
};

/* Paper defaults (alpha = beta = omega = 2, kappa = 10, batch0 = 128, B_max = 16384, lr0 = 0.1,
 * linear scaling, no cap, gamma0 = 0.2 and tau = epochs / 2 when adversarial, rho = 0.2, no decay
 * epochs, timer_sets_ref = 1). */
void eig_abs_config_default(struct eig_abs_config *cfg, int32_t epochs, int adversarial);

/* 0 when cfg is usable, else RT_ERR_CONFIG naming the field (rt_err_msg()). */
int eig_abs_config_check(const struct eig_abs_config *cfg);

/* New rule in its initial state. NULL on an invalid configuration (detail in rt_err_msg()) or no
 * memory. Caller owns the result; free with eig_abs_destroy. */
eig_abs_t *eig_abs_new(const struct eig_abs_config *cfg);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void eig_abs_destroy(eig_abs_t **self_p);

/* 1 when the end of the next epoch should be measured (0 once B_max is reached). */
int eig_abs_wants_measurement(const eig_abs_t *self);

/*
 * Feed the end of epoch `epoch` (must be greater than the last one fed). has_lambda = 0 means no
 * measurement (lambda is ignored). Fills *out. Returns 0, RT_ERR_STATE (epoch not increasing) or
 * RT_ERR_ARG (lambda not finite); on error the state is unchanged.
 */
int eig_abs_epoch_end(eig_abs_t *self, int32_t epoch, int has_lambda, double lambda,
                      struct eig_abs_decision *out);

/* Copy the rule's whole state out / replace it (validated against the configuration: RT_ERR_FORMAT
 * naming the field). The state is struct rt_wire_abs as it is: it travels with every decision to
 * the coordinator, which keeps it in checkpoints and hands it to a restarted service. */
void eig_abs_get_state(const eig_abs_t *self, struct rt_wire_abs *out);
int eig_abs_set_state(eig_abs_t *self, const struct rt_wire_abs *in);

/* Learning-rate rule name ("linear", "sqrt", "none") and back (0 or RT_ERR_CONFIG). */
const char *eig_abs_lr_rule_name(enum eig_abs_lr_rule r);
int eig_abs_lr_rule_parse(const char *name, enum eig_abs_lr_rule *out);

#endif
