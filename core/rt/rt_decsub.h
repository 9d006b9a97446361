/*
 * rt_decsub: the subscriber side of the eigen service's decisions (the workers use it to prepare
 * for a larger batch, test and tools to follow a run). A subscriber connects a SUB
 * socket to the service's PUB endpoint and receives every decision published from then on (PUB
 * drops messages past its high-water mark, and a late subscriber misses the history); a late
 * joiner asks the service's query endpoint (ROUTER) for the current decision.
 */
#ifndef RT_DECSUB_H
#define RT_DECSUB_H

#include "rt_wire.h"

typedef struct rt_decsub rt_decsub_t;

/* Subscribe to every decision published at pub_endpoint. zmq_ctx may be NULL (own context).
 * Returns 0 and *out (caller owns it; free with rt_decsub_destroy) or a negative rt_err code. */
int rt_decsub_new(void *zmq_ctx, const char *pub_endpoint, rt_decsub_t **out);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void rt_decsub_destroy(rt_decsub_t **self_p);

/* 1 when the coordinator accepted decision d (verdict RT_WIRE_VERDICT_ACCEPTED, with the step it
 * applies from and the schedule version it became): the only kind a subscriber may act on. */
int rt_decsub_in_force(const struct rt_wire_decision *d);

/* Next published decision in force into *d (a PUBLISH message). Returns 0, RT_ERR_TIMEOUT after
 * timeout_ms without one, or another negative code; malformed messages, and decisions the
 * coordinator did not accept (the service publishes none; an older one might), are logged and
 * dropped. */
int rt_decsub_recv(rt_decsub_t *s, struct rt_wire_decision *d, int timeout_ms);

/* rt_decsub_recv without waiting: the next decision in force already queued into *d. Returns 0,
 * RT_ERR_TIMEOUT when none is, or another negative code. */
int rt_decsub_poll(rt_decsub_t *s, struct rt_wire_decision *d);

/* Ask the service at query_endpoint for its current decision (the last one published). Returns
 * 0 and *d, RT_ERR_STATE when it has published none yet (or answers with one not in force),
 * RT_ERR_TIMEOUT without an answer. */
int rt_decsub_current(void *zmq_ctx, const char *query_endpoint, struct rt_wire_decision *d,
                      int timeout_ms);

#endif
