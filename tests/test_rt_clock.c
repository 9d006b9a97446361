/*
 * test_rt_clock: the clock never goes back and advances with a sleep; the milliseconds left to a
 * deadline are rounded up while it is ahead and 0 once it has passed.
 */
#include "eb_test.h"

#include <time.h>

#include "rt_clock.h"

static void test_monotonic(void **state)
{
    (void)state;
    double prev = rt_clock_now();
    for (int i = 0; i < 100000; i++) {
        double t = rt_clock_now();
        assert_true(t >= prev);
        prev = t;
    }
    double t0 = rt_clock_now();
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    double dt = rt_clock_now() - t0;
    assert_true(dt >= 0.019 && dt < 5.0);
}

static void test_left_ms(void **state)
{
    (void)state;
    double now = rt_clock_now();
    int left = rt_clock_left_ms(now + 1.0);
    assert_true(left > 900 && left <= 1000);
    /* a fraction of a millisecond ahead rounds up to 1 (a poll still waits), unless the thread
     * was preempted past it: one try of many suffices */
    int ones = 0;
    for (int i = 0; i < 100; i++)
        ones += rt_clock_left_ms(rt_clock_now() + 0.0005) == 1;
    assert_true(ones > 0);
    assert_int_equal(rt_clock_left_ms(now - 1.0), 0);
    assert_int_equal(rt_clock_left_ms(now), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_left_ms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
