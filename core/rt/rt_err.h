/*
 * rt_err: the runtime's error codes and the detail message of the last error.
 *
 * Everything that comes from outside the process (files, LMDB, the network, configuration, a peer's
 * message) fails with a negative code from enum rt_err. The function that detects the problem also
 * records a human-readable detail naming the culprit (file, key, field, peer) with rt_err_set();
 * the caller prints rt_err_msg(). The detail is thread-local.
 */
#ifndef RT_ERR_H
#define RT_ERR_H

#include <stdio.h>
#include <stdlib.h>

enum rt_err {
    RT_OK = 0,
    RT_ERR_NOMEM = -1,        /* allocation failed */
    RT_ERR_IO = -2,           /* read/write/open failed (errno in the detail) */
    RT_ERR_NOTFOUND = -3,     /* file, key, tensor or option does not exist */
    RT_ERR_FORMAT = -4,       /* malformed input: cannot be parsed */
    RT_ERR_VERSION = -5,      /* unsupported protocol or format version */
    RT_ERR_SIZE = -6,         /* a size field disagrees with the data or the expectation */
    RT_ERR_TOOBIG = -7,       /* exceeds a configured limit */
    RT_ERR_TRUNCATED = -8,    /* input ends early */
    RT_ERR_CHECKSUM = -9,     /* checksum mismatch */
    RT_ERR_SHAPE = -10,       /* tensor or record shape differs from what is expected */
    RT_ERR_CONFIG = -11,      /* invalid configuration value or key */
    RT_ERR_EXISTS = -12,      /* refusing to overwrite */
    RT_ERR_LMDB = -13,        /* LMDB call failed */
    RT_ERR_ZMQ = -14,         /* ZeroMQ call failed */
    RT_ERR_ARG = -15,         /* invalid argument from the command line or caller */
    RT_ERR_TIMEOUT = -16,     /* a peer did not answer in time */
    RT_ERR_STATE = -17,       /* message not valid in the current state (unknown step, ...) */
    RT_ERR_PEER = -18,        /* unknown or misbehaving peer */
    RT_ERR_INTERRUPTED = -19, /* stopped by a signal or shutdown request */
    RT_ERR_UNSUPPORTED = -20, /* valid input that this build cannot handle */
    RT_ERR_EVICTED = -21,     /* this worker was evicted by the coordinator */
    RT_ERR_NONFINITE = -22,   /* a loss, gradient or weight that must be finite is NaN or Inf */
};

/* Exit statuses of the role processes (`eigenbatch server`, `worker`): 0 success, 1 failure, 2 a
 * usage or configuration error, and RT_EXIT_NONFINITE for a stop on RT_ERR_NONFINITE (a shard's
 * summed gradient or a worker's loss that is not finite), so that a supervisor (`launch`) can tell
 * a run that diverged, which a rollback to the last checkpoint may cure, from a crash. */
#define RT_EXIT_FAILURE 1
#define RT_EXIT_NONFINITE 3

/* The exit status of a role process whose run returned rc: 0, RT_EXIT_NONFINITE or
 * RT_EXIT_FAILURE. */
int rt_err_exit_status(int rc);

/* Short fixed description of a code ("malformed input"). Never NULL. */
const char *rt_strerror(int code);

/* Record the detail of the error being returned; returns code so that callers can write
 * `return rt_err_set(RT_ERR_SHAPE, "key %s: ...", key);`. */
int rt_err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The detail recorded by the last rt_err_set() on this thread, or rt_strerror of its code when no
 * detail was given. Valid until the next rt_err_set() on this thread. */
const char *rt_err_msg(void);

/* Always-on assertion for bugs and broken invariants (never for input): prints file:line, aborts.
 */
#define RT_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
