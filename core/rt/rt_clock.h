/*
 * rt_clock: the one monotonic clock of the runtime. Every timeout, deadline, heartbeat and
 * duration measured by the roles reads it, so that times taken in one module compare with times
 * taken in another. Not wall time: it never jumps with NTP or the administrator, and its origin is
 * unspecified (differences only).
 */
#ifndef RT_CLOCK_H
#define RT_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (nanosecond resolution). */
double rt_clock_now(void);

/* Milliseconds left until `deadline` (seconds on rt_clock_now's clock), rounded up; 0 once it has
 * passed. Suits zmq_poll's timeout. */
int rt_clock_left_ms(double deadline);

#endif
