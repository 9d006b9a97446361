/*
 * cluster_fault: rolling a run back to its newest complete checkpoint after a non-finite stop
 * (fault.rollback). A shard whose summed gradient of a step is not finite, or a worker whose loss
 * is not finite, stops with RT_ERR_NONFINITE (a role process with exit status RT_EXIT_NONFINITE);
 * `train` and `launch` then restart every role from the newest complete checkpoint (as --resume
 * auto would), at most fault.max_rollbacks times per run, each time with a "rollback" event in
 * metrics.jsonl (from_step, checkpoint, epoch, reason, rollbacks_left) and a warning in the log.
 * A diverging run that diverges again after its rollbacks fails as it would without them.
 */
#ifndef CLUSTER_FAULT_H
#define CLUSTER_FAULT_H

#include <limits.h>

#include "app_opts.h"

/* A run's rollbacks so far. */
struct cluster_fault {
    int rollbacks;         /* rollbacks done */
    char resume[PATH_MAX]; /* the checkpoint the next attempt starts from (after a rollback) */
};

/*
 * A run failed on something not finite, described by `why` (from_step: the step it names, -1 when
 * unknown). With fault.rollback, a rollback left and a complete checkpoint under the output
 * directory: record the "rollback" event, log it, set f->resume to that checkpoint and return 1
 * (restart every role with --resume f->resume). Otherwise return 0 with the rt_err detail `why`
 * plus why there is no rollback ("no checkpoint to roll back to", "rollback limit reached"; with
 * fault.rollback off, `why` alone); the code is RT_ERR_NONFINITE.
 */
int cluster_fault_rollback(const struct app_opts *o, struct cluster_fault *f, const char *why,
                           long long from_step);

/* The step a non-finite stop's detail names ("the loss of step N", a shard's "the step from
 * version N"), or -1. */
long long cluster_fault_step(const char *why);

#endif
