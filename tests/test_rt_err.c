/*
 * test_rt_err: error codes carry a description and the detail names the culprit.
 */
#include "eb_test.h"

#include <string.h>

#include "rt_err.h"

static void test_detail_names_culprit(void **state)
{
    (void)state;
    int rc = rt_err_set(RT_ERR_SHAPE, "key %s: expected 1x28x28, got 3x32x32", "00000042");
    assert_int_equal(rc, RT_ERR_SHAPE);
    assert_non_null(strstr(rt_err_msg(), "00000042"));
    assert_string_equal(rt_strerror(RT_ERR_SHAPE), "shape mismatch");
}

static void test_every_code_described(void **state)
{
    (void)state;
    for (int c = RT_OK; c >= RT_ERR_NONFINITE; c--)
        assert_string_not_equal(rt_strerror(c), "unknown error");
    assert_string_equal(rt_strerror(-1000), "unknown error");
}

/* A role process's exit status tells a non-finite stop from any other failure (launch reads it). */
static void test_exit_status(void **state)
{
    (void)state;
    assert_int_equal(rt_err_exit_status(RT_OK), 0);
    assert_int_equal(rt_err_exit_status(RT_ERR_NONFINITE), RT_EXIT_NONFINITE);
    assert_int_equal(rt_err_exit_status(RT_ERR_TIMEOUT), RT_EXIT_FAILURE);
    assert_true(RT_EXIT_NONFINITE != RT_EXIT_FAILURE && RT_EXIT_NONFINITE != 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detail_names_culprit),
        cmocka_unit_test(test_every_code_described),
        cmocka_unit_test(test_exit_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
