/*
 * test_rt_rng: streams are reproducible from (seed, stream, epoch, item), differ when any of them
 * changes, and the uniform helpers stay in range and cover it.
 */
#include "eb_test.h"

#include "rt_rng.h"

static void test_reproducible_and_distinct(void **state)
{
    (void)state;
    uint64_t a = rt_rng_seed(5, RT_RNG_AUGMENT, 2, 17), b = rt_rng_seed(5, RT_RNG_AUGMENT, 2, 17);
    for (int i = 0; i < 100; i++)
        assert_int_equal(rt_rng_next(&a), rt_rng_next(&b));
    uint64_t base = rt_rng_seed(5, RT_RNG_AUGMENT, 2, 17);
    assert_int_not_equal(base, rt_rng_seed(6, RT_RNG_AUGMENT, 2, 17));
    assert_int_not_equal(base, rt_rng_seed(5, RT_RNG_PERMUTATION, 2, 17));
    assert_int_not_equal(base, rt_rng_seed(5, RT_RNG_AUGMENT, 3, 17));
    assert_int_not_equal(base, rt_rng_seed(5, RT_RNG_AUGMENT, 2, 18));
}

static void test_ranges(void **state)
{
    (void)state;
    uint64_t st = rt_rng_seed(1, RT_RNG_AUGMENT, 0, 0);
    int hist[7] = {0};
    double sum = 0;
    for (int i = 0; i < 70000; i++) {
        double u = rt_rng_uniform(&st);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        int k = rt_rng_int(&st, 6);
        assert_true(k >= 0 && k <= 6);
        hist[k]++;
    }
    assert_true(sum / 70000 > 0.49 && sum / 70000 < 0.51);
    for (int k = 0; k < 7; k++)
        assert_true(hist[k] > 9500 && hist[k] < 10500);
    assert_int_equal(rt_rng_int(&st, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reproducible_and_distinct),
        cmocka_unit_test(test_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
