/*
 * worker_decide: a worker's subscription to the eigen service's decision stream (PUB/SUB). A
 * decision the coordinator accepted announces the global batch B from a later step; the worker
 * hands it to its compute's `prepare` callback before that step (buffers, prefetch for the larger
 * share), so that the first step at the new B does not pay for it. The stream is advice only:
 * every step's schedule and share still come from the coordinator's answer to the worker's
 * schedule query (the one schedule, agreed by all); a decision lost or never sent costs nothing
 * but the preparation, and one that the stamped schedule never follows changes nothing.
 */
#ifndef WORKER_DECIDE_H
#define WORKER_DECIDE_H

#include <stdint.h>

#include "rt_decsub.h"
#include "worker_loop.h"

#define WORKER_DECIDE_KEEP 4 /* preparations remembered (the latest) */

/* One preparation. */
struct worker_decide_prep {
    uint32_t batch;      /* B prepared for (0: unused slot) */
    uint64_t at;         /* the step whose schedule was not yet pulled when it was prepared */
    uint64_t apply_step; /* the step the decision said B applies from */
};

/* The subscription and what it prepared. */
struct worker_decide {
    rt_decsub_t *sub; /* SUB to the decision stream, or NULL: none */
    const char *name; /* the worker's name, for logs (borrowed) */
    uint32_t batch;   /* B of the latest stamped schedule seen (0: none yet) */
    uint32_t share;   /* this worker's share of it */
    struct worker_decide_prep prep[WORKER_DECIDE_KEEP]; /* the latest preparations (a ring) */
    int next;                                           /* slot of the next one */
};

/* Subscribe to the stream at endpoint (NULL: no subscription, every call a no-op) on ctx. 0 or a
 * negative rt_err code. Close with worker_decide_close. */
int worker_decide_open(struct worker_decide *d, void *ctx, const char *endpoint, const char *name);

/* Unsubscribe; safe twice and after a failed open. */
void worker_decide_close(struct worker_decide *d);

/* Before pulling the schedule of `step`: take the decisions queued on the stream; for one that
 * announces a B other than the one in force from a later step, call cb->prepare (when set) with
 * the share it would give this worker. Counts in *st (decisions, prepared, prepared_batch). */
void worker_decide_poll(struct worker_decide *d, uint64_t step, const struct worker_compute *cb,
                        struct worker_stats *st);

/* The coordinator's schedule of a step, as the worker computes it: when its B differs from the
 * step before's, count in st->prepared_ahead whether that B was prepared before the step. */
void worker_decide_stamped(struct worker_decide *d, const struct worker_step *step,
                           struct worker_stats *st);

#endif
