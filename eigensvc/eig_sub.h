/*
 * eig_sub: the subscriber side of the eigen service's decisions. A subscriber connects a SUB
 * socket to the service's PUB endpoint and receives every decision published from then on (PUB
 * drops messages past its high-water mark, and a late subscriber misses the history); a late
 * joiner asks the service's query endpoint (ROUTER) for the current decision.
 */
#ifndef EIG_SUB_H
#define EIG_SUB_H

#include "rt_wire.h"

typedef struct eig_sub eig_sub_t;

/* Subscribe to every decision published at pub_endpoint. zmq_ctx may be NULL (own context).
 * Returns 0 and *out (caller owns it; free with eig_sub_destroy) or a negative rt_err code. */
int eig_sub_new(void *zmq_ctx, const char *pub_endpoint, eig_sub_t **out);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void eig_sub_destroy(eig_sub_t **self_p);

/* 1 when the coordinator accepted decision d (verdict RT_WIRE_VERDICT_ACCEPTED, with the step it
 * applies from and the schedule version it became): the only kind a subscriber may act on. */
int eig_sub_in_force(const struct rt_wire_decision *d);

/* Next published decision in force into *d (a PUBLISH message). Returns 0, RT_ERR_TIMEOUT after
 * timeout_ms without one, or another negative code; malformed messages, and decisions the
 * coordinator did not accept (the service publishes none; an older one might), are logged and
 * dropped. */
int eig_sub_recv(eig_sub_t *s, struct rt_wire_decision *d, int timeout_ms);

/* Ask the service at query_endpoint for its current decision (the last one published). Returns
 * 0 and *d, RT_ERR_STATE when it has published none yet (or answers with one not in force),
 * RT_ERR_TIMEOUT without an answer. */
int eig_sub_current(void *zmq_ctx, const char *query_endpoint, struct rt_wire_decision *d,
                    int timeout_ms);

#endif
