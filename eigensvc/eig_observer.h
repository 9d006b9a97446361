/*
 * eig_observer: the eigen service's client of the shards. It fetches a consistent weight
 * snapshot (every shard's copy of the same epoch start, hence the same version) while training
 * goes on, and hands ABS decisions to the coordinator, which stamps the step they apply from.
 * Workers and shards learn the new schedule from the coordinator at their next step, so nothing
 * else needs to hear about a decision.
 */
#ifndef EIG_OBSERVER_H
#define EIG_OBSERVER_H

#include <stdint.h>

#include "rt_wire.h"

typedef struct eig_observer eig_observer_t;

/* Connect to n_shards shards (endpoints[0]: the coordinator) of a model with n_params parameters
 * and n_buffers buffers. zmq_ctx may be NULL (own context). Returns 0 and *out (caller owns it;
 * free with eig_observer_destroy) or a negative rt_err code. */
int eig_observer_new(void *zmq_ctx, int n_shards, const char *const *endpoints, uint64_t n_params,
                     uint64_t n_buffers, eig_observer_t **out);
void eig_observer_destroy(eig_observer_t **self_p);

/* The latest epoch-start snapshot held by every shard: params (n_params floats) and buffers
 * (n_buffers floats), *version and *epoch. When the shards disagree (one has moved on to the next
 * epoch), asks again, up to a few times. RT_ERR_STATE when no snapshot exists yet (or the shards
 * keep none), RT_ERR_TIMEOUT after timeout_ms of silence. */
int eig_observer_snapshot(eig_observer_t *o, float *params, float *buffers, uint64_t *version,
                          uint64_t *epoch, int timeout_ms);

/* eig_observer_snapshot for a caller that already holds the snapshot of version `have` in
 * params / buffers (UINT64_MAX: none): shards whose snapshot is still that version answer with a
 * header only and their ranges are left as they are, so polling costs no weight transfer until
 * a new epoch starts. After an error the arrays may hold a mix of versions: pass UINT64_MAX next.
 */
int eig_observer_snapshot_since(eig_observer_t *o, uint64_t have, float *params, float *buffers,
                                uint64_t *version, uint64_t *epoch, int timeout_ms);

/* Send a decision to the coordinator. Returns the schedule's verdict (>= 0; 0 = accepted, then
 * *apply_step and *version say from which step and as which schedule version), or a negative
 * code (the coordinator's refusal, RT_ERR_TIMEOUT). */
int eig_observer_decide(eig_observer_t *o, const struct rt_wire_decision *d, uint64_t *apply_step,
                        uint64_t *version, int timeout_ms);

/* eig_observer_decide that also returns, when the verdict is stale or superseded, the latest
 * decision the coordinator holds in *held (apply_step and sched_version filled) and sets *has_held
 * (held / has_held may be NULL). */
int eig_observer_decide_held(eig_observer_t *o, const struct rt_wire_decision *d,
                             uint64_t *apply_step, uint64_t *version, struct rt_wire_decision *held,
                             int *has_held, int timeout_ms);

/* The ABS state the coordinator holds (restored from a checkpoint, or reported with an earlier
 * decision), for a service that starts: 0 and *out, RT_ERR_STATE when it holds none (a fresh
 * start), RT_ERR_TIMEOUT, or another negative code. */
int eig_observer_abs_state(eig_observer_t *o, struct rt_wire_abs *out, int timeout_ms);

#endif
