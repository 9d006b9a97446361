/*
 * test_eig_abs: the ABS / ABSA rule on scripted eigenvalue sequences: the trigger against the value
 * at the last increase, the kappa timer, B_max stopping measurement and adversarial training, gamma
 * decay, learning-rate scaling with the cap, decay epochs, tau, state restore, bad input.
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "eig_abs.h"
#include "rt_err.h"

#define NO_LAMBDA NAN

/* alpha = beta = omega = 2, kappa 3, B 128 .. 1024, lr 0.1 linear, gamma 0.2, tau 8, decay at 6. */
static struct eig_abs_config s_config(void)
{
    struct eig_abs_config c;
    eig_abs_config_default(&c, 16, 1);
    c.kappa = 3;
    c.batch_max = 1024;
    c.tau = 8;
    c.n_decay = 1;
    c.decay_epochs[0] = 6;
    c.rho = 0.1;
    return c;
}

/* Feed epoch e (lambda NaN = no measurement). */
static struct eig_abs_decision s_feed(eig_abs_t *a, int32_t e, double lambda)
{
    struct eig_abs_decision d;
    assert_int_equal(eig_abs_epoch_end(a, e, !isnan(lambda), lambda, &d), RT_OK);
    assert_int_equal(d.epoch, e);
    return d;
}

static void s_expect(const struct eig_abs_decision *d, int64_t b, double lr_base, double lr,
                     double gamma, int changed)
{
    if (d->batch != b || fabs(d->lr_base - lr_base) > 1e-12 || fabs(d->lr - lr) > 1e-12 ||
        fabs(d->gamma - gamma) > 1e-12 || d->changed != changed) {
        print_error("epoch %d: got B %lld lr_base %g lr %g gamma %g changed %d (%s); want B %lld "
                    "lr_base %g lr %g gamma %g changed %d\n",
                    d->epoch, (long long)d->batch, d->lr_base, d->lr, d->gamma, d->changed,
                    d->reason, (long long)b, lr_base, lr, gamma, changed);
        fail();
    }
}

static void test_script_full_run(void **state)
{
    (void)state;
    struct eig_abs_config c = s_config();
    eig_abs_t *a = eig_abs_new(&c);
    assert_non_null(a);
    assert_int_equal(eig_abs_wants_measurement(a), 1);

    struct eig_abs_decision d = s_feed(a, 0, 10.0); /* first measurement sets lambda_ref */
    s_expect(&d, 128, 0.1, 0.1, 0.2, 0);
    assert_true(d.lambda_ref == 10.0);
    assert_int_equal(d.duration, 1);
    assert_non_null(strstr(d.reason, "first measurement"));

    d = s_feed(a, 1, 6.0); /* 6 > 10 / 2 */
    s_expect(&d, 128, 0.1, 0.1, 0.2, 0);
    assert_int_equal(d.duration, 2);
    assert_non_null(strstr(d.reason, "lambda 6 > lambda_ref 10 / alpha 2"));

    d = s_feed(a, 2, 4.9); /* 4.9 <= 5: grow */
    s_expect(&d, 256, 0.2, 0.2, 0.1, 1);
    assert_true(d.lambda_ref == 4.9);
    assert_int_equal(d.duration, 0);
    assert_int_equal(d.batch_prev, 128);
    assert_non_null(strstr(d.reason, "lambda 4.9 <= lambda_ref 10 / alpha 2"));
    assert_non_null(strstr(d.reason, "B 128 -> 256"));

    /* 3 <= 10 / 2 (the first reference) but 3 > 4.9 / 2 (the value at the LAST increase) */
    d = s_feed(a, 3, 3.0);
    s_expect(&d, 256, 0.2, 0.2, 0.1, 0);
    assert_int_equal(d.duration, 1);

    d = s_feed(a, 4, 2.4); /* 2.4 <= 2.45 */
    s_expect(&d, 512, 0.4, 0.4, 0.05, 1);
    assert_true(d.lambda_ref == 2.4);

    d = s_feed(a, 5, NO_LAMBDA); /* no measurement: the timer still counts; decay epoch 6 next */
    s_expect(&d, 512, 0.4, 0.04, 0.05, 0);
    assert_int_equal(d.duration, 1);
    assert_int_equal(d.has_lambda, 0);
    assert_non_null(strstr(d.reason, "no measurement"));
    assert_non_null(strstr(d.reason, "decay epoch 6"));

    d = s_feed(a, 6, 2.0); /* 2.0 > 1.2 */
    s_expect(&d, 512, 0.4, 0.04, 0.05, 0);
    assert_int_equal(d.duration, 2);

    d = s_feed(a, 7, 1.5); /* 1.5 > 1.2 but duration reaches kappa = 3: grow to B_max */
    s_expect(&d, 1024, 0.8, 0.08, 0.0, 1);
    assert_non_null(strstr(d.reason, "kappa timer 3 epochs"));
    assert_non_null(strstr(d.reason, "B_max reached: measurement stopped"));
    assert_true(d.gamma_base == 0.0);
    assert_int_equal(d.measure_next, 0);
    assert_int_equal(eig_abs_wants_measurement(a), 0);
    assert_true(d.lambda_ref == 1.5); /* timer_sets_ref = 1 */

    d = s_feed(a, 8, 0.1); /* measurement stopped: ignored, nothing moves */
    s_expect(&d, 1024, 0.8, 0.08, 0.0, 0);
    assert_int_equal(d.has_lambda, 0);
    assert_non_null(strstr(d.reason, "measurement ignored"));
    d = s_feed(a, 30, NO_LAMBDA); /* and no timer after B_max */
    s_expect(&d, 1024, 0.8, 0.08, 0.0, 0);

    struct rt_wire_abs st;
    eig_abs_get_state(a, &st);
    assert_int_equal(st.increases, 3);
    assert_int_equal(st.last_epoch, 30);
    eig_abs_destroy(&a);
    assert_null(a);
    eig_abs_destroy(&a);
}

/* The kappa timer alone: constant eigenvalue, growth every kappa epochs, first epoch counted. */
static void test_kappa_timer(void **state)
{
    (void)state;
    struct eig_abs_config c;
    eig_abs_config_default(&c, 100, 0);
    eig_abs_t *a = eig_abs_new(&c);
    assert_non_null(a);
    int grew_at[4], n = 0;
    for (int32_t e = 0; e < 35 && n < 4; e++) {
        struct eig_abs_decision d = s_feed(a, e, 5.0);
        if (d.changed) {
            assert_non_null(strstr(d.reason, "kappa timer 10 epochs"));
            grew_at[n++] = e;
        }
        assert_true(d.gamma == 0.0); /* ABS: no adversarial training */
    }
    assert_int_equal(n, 3);
    assert_int_equal(grew_at[0], 9);
    assert_int_equal(grew_at[1], 19);
    assert_int_equal(grew_at[2], 29);
    eig_abs_destroy(&a);

    /* kappa = 0: never grows on time */
    c.kappa = 0;
    a = eig_abs_new(&c);
    assert_non_null(a);
    for (int32_t e = 0; e < 40; e++)
        assert_int_equal(s_feed(a, e, 5.0).changed, 0);
    eig_abs_destroy(&a);
}

/* HessianFlow's variant: a timer increase keeps lambda_ref. */
static void test_timer_keeps_ref_option(void **state)
{
    (void)state;
    struct eig_abs_config c = s_config();
    c.timer_sets_ref = 0;
    c.batch_max = 16384;
    eig_abs_t *a = eig_abs_new(&c);
    assert_non_null(a);
    s_feed(a, 0, 10.0);
    s_feed(a, 1, 9.0);
    struct eig_abs_decision d = s_feed(a, 2, 8.0); /* timer */
    assert_int_equal(d.changed, 1);
    assert_true(d.lambda_ref == 10.0);
    d = s_feed(a, 3, 5.0); /* against 10: grows */
    assert_int_equal(d.changed, 1);
    assert_non_null(strstr(d.reason, "lambda_ref 10"));
    eig_abs_destroy(&a);

    c.timer_sets_ref = 1;
    a = eig_abs_new(&c);
    assert_non_null(a);
    s_feed(a, 0, 10.0);
    s_feed(a, 1, 9.0);
    d = s_feed(a, 2, 8.0);
    assert_true(d.lambda_ref == 8.0);
    d = s_feed(a, 3, 5.0); /* against 8: 5 > 4 */
    assert_int_equal(d.changed, 0);
    eig_abs_destroy(&a);
}

static void test_lr_cap_and_rules(void **state)
{
    (void)state;
    struct eig_abs_config c = s_config();
    c.lr_cap = 0.3;
    c.kappa = 1; /* grow every epoch */
    eig_abs_t *a = eig_abs_new(&c);
    assert_non_null(a);
    struct eig_abs_decision d = s_feed(a, 0, 1.0);
    s_expect(&d, 256, 0.2, 0.2, 0.1, 1);
    d = s_feed(a, 1, 1.0);
    s_expect(&d, 512, 0.3, 0.3, 0.05, 1);
    assert_non_null(strstr(d.reason, "capped at 0.3"));
    d = s_feed(a, 5, 1.0); /* next epoch 6 decays the capped value */
    s_expect(&d, 1024, 0.3, 0.03, 0.0, 1);
    eig_abs_destroy(&a);

    c.lr_cap = 0.0;
    c.lr_rule = EIG_ABS_LR_SQRT;
    a = eig_abs_new(&c);
    assert_non_null(a);
    d = s_feed(a, 0, 1.0);
    s_expect(&d, 256, 0.1 * sqrt(2.0), 0.1 * sqrt(2.0), 0.1, 1);
    eig_abs_destroy(&a);

    c.lr_rule = EIG_ABS_LR_NONE;
    c.beta = 3.0;
    a = eig_abs_new(&c);
    assert_non_null(a);
    d = s_feed(a, 0, 1.0);
    s_expect(&d, 384, 0.1, 0.1, 0.1, 1);
    d = s_feed(a, 1, 1.0); /* 1152 > B_max: clamped, lr scaled by the real ratio (none here) */
    s_expect(&d, 1024, 0.1, 0.1, 0.0, 1);
    eig_abs_destroy(&a);

    /* linear scaling uses the real ratio when clamped at B_max: 768 -> 1024 is x 4/3 */
    c.lr_rule = EIG_ABS_LR_LINEAR;
    a = eig_abs_new(&c);
    assert_non_null(a);
    s_feed(a, 0, 1.0);
    d = s_feed(a, 1, 1.0);
    assert_int_equal(d.batch, 1024);
    assert_true(fabs(d.lr_base - 0.1 * 3.0 * 1024.0 / 384.0) < 1e-12);

    enum eig_abs_lr_rule r;
    assert_int_equal(eig_abs_lr_rule_parse("sqrt", &r), RT_OK);
    assert_int_equal(r, EIG_ABS_LR_SQRT);
    assert_int_equal(eig_abs_lr_rule_parse("cubic", &r), RT_ERR_CONFIG);
    assert_string_equal(eig_abs_lr_rule_name(EIG_ABS_LR_NONE), "none");
    eig_abs_destroy(&a);
}

/* ABSA: gamma halves at each increase and is 0 from tau on. */
static void test_gamma_decay_and_tau(void **state)
{
    (void)state;
    struct eig_abs_config c = s_config();
    c.batch_max = 1 << 20;
    c.kappa = 0;
    c.n_decay = 0;
    eig_abs_t *a = eig_abs_new(&c);
    assert_non_null(a);
    double lam = 100.0, want = 0.2;
    for (int32_t e = 0; e < 7; e++) {
        struct eig_abs_decision d = s_feed(a, e, lam);
        if (e > 0)
            want /= 2.0;
        assert_true(fabs(d.gamma - want) < 1e-15);
        assert_true(fabs(d.gamma_base - want) < 1e-15);
        lam /= 2.5; /* each new value is below half the last: an increase every epoch after 0 */
    }
    struct eig_abs_decision d = s_feed(a, 7, lam); /* next epoch 8 = tau */
    assert_true(d.gamma == 0.0);
    assert_true(d.gamma_base > 0.0);
    assert_non_null(strstr(d.reason, "tau 8: adversarial training off"));
    d = s_feed(a, 8, lam);
    assert_true(d.gamma == 0.0);
    assert_null(strstr(d.reason, "tau"));
    eig_abs_destroy(&a);

    /* starting at B_max: never measures, no adversarial training */
    c.batch0 = c.batch_max;
    a = eig_abs_new(&c);
    assert_non_null(a);
    assert_int_equal(eig_abs_wants_measurement(a), 0);
    d = s_feed(a, 0, NO_LAMBDA);
    assert_true(d.gamma == 0.0);
    eig_abs_destroy(&a);
}

/* Several decay epochs passed at once are all reported and applied. */
static void test_decay_epochs(void **state)
{
    (void)state;
    struct eig_abs_config c = s_config();
    c.n_decay = 3;
    c.decay_epochs[0] = 2;
    c.decay_epochs[1] = 3;
    c.decay_epochs[2] = 5;
    c.rho = 0.5;
    c.kappa = 0;
    eig_abs_t *a = eig_abs_new(&c);
    assert_non_null(a);
    struct eig_abs_decision d = s_feed(a, 0, 1.0);
    assert_true(d.lr == 0.1);
    d = s_feed(a, 1, 1.0);
    assert_true(fabs(d.lr - 0.05) < 1e-15);
    assert_non_null(strstr(d.reason, "decay epoch 2: lr x 0.5"));
    d = s_feed(a, 4, 1.0); /* epochs 2..4 skipped: decays at 3 and 5 */
    assert_true(fabs(d.lr - 0.0125) < 1e-15);
    assert_non_null(strstr(d.reason, "decay epoch 3"));
    assert_non_null(strstr(d.reason, "decay epoch 5"));
    assert_true(d.lr_base == 0.1);
    eig_abs_destroy(&a);
}

static void test_bad_input_and_state(void **state)
{
    (void)state;
    struct eig_abs_config c = s_config();
    eig_abs_t *a = eig_abs_new(&c), *b = eig_abs_new(&c);
    assert_non_null(a);
    assert_non_null(b);
    struct eig_abs_decision d;
    s_feed(a, 0, 10.0);
    s_feed(a, 1, 4.0);
    assert_int_equal(eig_abs_epoch_end(a, 1, 1, 1.0, &d), RT_ERR_STATE);
    assert_non_null(strstr(rt_err_msg(), "epoch 1 already handled"));
    assert_int_equal(eig_abs_epoch_end(a, 2, 1, NAN, &d), RT_ERR_ARG);
    assert_int_equal(eig_abs_epoch_end(a, 2, 1, INFINITY, &d), RT_ERR_ARG);

    /* restore the state into another instance: both continue identically */
    struct rt_wire_abs st;
    eig_abs_get_state(a, &st);
    assert_int_equal(eig_abs_set_state(b, &st), RT_OK);
    const double script[] = {3.0, 1.9, NAN, 1.0, 0.9, 0.2, 0.1};
    for (int i = 0; i < 7; i++) {
        struct eig_abs_decision x = s_feed(a, 2 + i, script[i]);
        struct eig_abs_decision y = s_feed(b, 2 + i, script[i]);
        assert_int_equal(x.batch, y.batch);
        assert_true(x.lr == y.lr && x.gamma == y.gamma && x.duration == y.duration);
        assert_string_equal(x.reason, y.reason);
    }
    struct rt_wire_abs bad = st;
    bad.batch = 100000;
    assert_int_equal(eig_abs_set_state(b, &bad), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "batch 100000"));
    bad = st;
    bad.measuring = 0; /* batch below B_max but not measuring */
    assert_int_equal(eig_abs_set_state(b, &bad), RT_ERR_FORMAT);
    bad = st;
    bad.lr_base = -1.0;
    assert_int_equal(eig_abs_set_state(b, &bad), RT_ERR_FORMAT);
    eig_abs_destroy(&a);
    eig_abs_destroy(&b);

    struct eig_abs_config e = s_config();
    e.beta = 1.0;
    assert_null(eig_abs_new(&e));
    assert_non_null(strstr(rt_err_msg(), "beta"));
    e = s_config();
    e.omega = 0.5;
    assert_int_equal(eig_abs_config_check(&e), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "omega"));
    e = s_config();
    e.batch_max = 64;
    assert_int_equal(eig_abs_config_check(&e), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "batch_max"));
    e = s_config();
    e.alpha = NAN;
    assert_int_equal(eig_abs_config_check(&e), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "alpha"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_script_full_run),        cmocka_unit_test(test_kappa_timer),
        cmocka_unit_test(test_timer_keeps_ref_option), cmocka_unit_test(test_lr_cap_and_rules),
        cmocka_unit_test(test_gamma_decay_and_tau),    cmocka_unit_test(test_decay_epochs),
        cmocka_unit_test(test_bad_input_and_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
