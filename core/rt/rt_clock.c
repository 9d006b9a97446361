/*
 * rt_clock: the runtime's monotonic clock (see rt_clock.h).
 */
#include "rt_clock.h"

#include <limits.h>
#include <math.h>
#include <time.h>

double rt_clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int rt_clock_left_ms(double deadline)
{
    double left = (deadline - rt_clock_now()) * 1000.0;
    if (!(left > 0))
        return 0;
    return left >= (double)INT_MAX ? INT_MAX : (int)ceil(left);
}
