/*
 * test_rt_decay: the step decay's factor counts the decay epochs at or before an epoch (epoch d
 * is the first to train with the decayed rate), decay epochs are recognised, and the checks name
 * each fault with the caller's prefix (an upper bound only when the run's length is given).
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "rt_decay.h"
#include "rt_err.h"

static void test_factor(void **state)
{
    (void)state;
    const int32_t ep[] = {2, 3, 5};
    assert_true(rt_decay_factor(ep, 3, 0.5, 0) == 1.0);
    assert_true(rt_decay_factor(ep, 3, 0.5, 1) == 1.0);
    assert_true(rt_decay_factor(ep, 3, 0.5, 2) == 0.5);
    assert_true(rt_decay_factor(ep, 3, 0.5, 4) == 0.25);
    assert_true(rt_decay_factor(ep, 3, 0.5, 5) == 0.125);
    assert_true(rt_decay_factor(ep, 3, 0.5, 100) == 0.125);
    /* the factor is rho multiplied k times, as both owners computed it: bit for bit */
    assert_true(rt_decay_factor(ep, 3, 0.1, 3) == 0.1 * 0.1);
    assert_true(rt_decay_factor(ep, 0, 0.1, 3) == 1.0);
    assert_true(rt_decay_is_epoch(ep, 3, 3));
    assert_false(rt_decay_is_epoch(ep, 3, 4));
    assert_false(rt_decay_is_epoch(ep, 0, 3));
}

static void test_check(void **state)
{
    (void)state;
    int32_t ep[RT_DECAY_MAX + 1] = {2, 3, 5};
    assert_int_equal(rt_decay_check(ep, 3, 0.2, 10, "schedule"), RT_OK);
    assert_int_equal(rt_decay_check(ep, 3, 0.2, 0, "abs"), RT_OK);
    assert_int_equal(rt_decay_check(ep, 0, 1.0, 1, "schedule"), RT_OK);
    /* past the run: refused only when its length is known */
    assert_int_equal(rt_decay_check(ep, 3, 0.2, 5, "schedule"), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "schedule: decay epoch 5 not in [1, epochs 5)"));
    ep[0] = 0;
    assert_int_equal(rt_decay_check(ep, 3, 0.2, 0, "abs"), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "abs: decay epoch 0 must be >= 1"));
    ep[0] = 3;
    assert_int_equal(rt_decay_check(ep, 3, 0.2, 0, "abs"), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "decay epochs must increase (3 after 3)"));
    ep[0] = 2;
    assert_int_equal(rt_decay_check(ep, RT_DECAY_MAX + 1, 0.2, 0, "abs"), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "decay epochs (at most"));
    assert_int_equal(rt_decay_check(ep, -1, 0.2, 0, "abs"), RT_ERR_CONFIG);
    const double bad_rho[] = {0.0, -0.5, 1.5, NAN, INFINITY};
    for (size_t i = 0; i < sizeof bad_rho / sizeof bad_rho[0]; i++) {
        assert_int_equal(rt_decay_check(ep, 3, bad_rho[i], 0, "abs"), RT_ERR_CONFIG);
        assert_non_null(strstr(rt_err_msg(), "rho"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_factor),
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
