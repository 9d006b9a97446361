/*
 * server_fixsched: a constant schedule (fixed B, lr, gamma) over a fixed number of steps, as a
 * struct server_coord_sched. The stand-in until the BL/FB/GG/ABS schedule mechanism (server_sched)
 * is wired in, and what the transport tests and `eigenbatch bench ps` use.
 */
#ifndef SERVER_FIXSCHED_H
#define SERVER_FIXSCHED_H

#include <stdint.h>

#include "server_coord.h"

/* Parameters of a constant schedule. */
struct server_fixsched_cfg {
    uint32_t batch;     /* global batch B */
    float lr;           /* learning rate */
    float gamma;        /* adversarial fraction */
    uint64_t n_samples; /* training-set size: an epoch is n_samples / B steps (at least 1) */
    uint64_t steps;     /* total steps; step >= steps is "done" */
};

/* Fill *out with a constant schedule; returns 0 or RT_ERR_ARG. The state is copied. Caller owns
 * the schedule; free with server_fixsched_destroy. */
int server_fixsched_new(const struct server_fixsched_cfg *cfg, struct server_coord_sched *out);
void server_fixsched_destroy(struct server_coord_sched *s);

#endif
