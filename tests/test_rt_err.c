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
    for (int c = RT_OK; c >= RT_ERR_EVICTED; c--)
        assert_string_not_equal(rt_strerror(c), "unknown error");
    assert_string_equal(rt_strerror(-1000), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detail_names_culprit),
        cmocka_unit_test(test_every_code_described),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
