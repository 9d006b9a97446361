/*
 * worker_loop: the data-parallel worker. It registers with the coordinator (shard 0), binds its
 * connection at every other shard, and then for each step t: asks the coordinator for the schedule
 * of t and its share of the global batch, pulls the weights of version t from every shard, lets a
 * compute callback produce the gradient of the mean loss over its share (plus updated BatchNorm
 * running statistics), and pushes its slices to every shard, in chunks, zero-copy. Every buffer is
 * allocated once. The model and the data loader plug in through struct worker_compute.
 */
#ifndef WORKER_LOOP_H
#define WORKER_LOOP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_wire.h"

/* What the coordinator decided for one step, as the compute callback sees it. */
struct worker_step {
    uint64_t step;          /* global step t (weights are at version t) */
    uint64_t epoch;         /* epoch of the step */
    uint64_t epoch_offset;  /* position in the epoch's sample order of the batch's first sample */
    uint64_t sched_version; /* schedule version */
    uint32_t batch;         /* nominal global batch B */
    uint32_t samples;       /* samples of the step (B, fewer for an epoch's partial last step) */
    float lr;               /* learning rate of the step */
    float gamma;            /* adversarial fraction */
    uint32_t share_offset;  /* this worker's first sample within the batch */
    uint32_t share_count;   /* this worker's number of samples (may be 0) */
    int worker;             /* this worker's id */
    int n_workers;          /* workers in the step */
};

/* The coordinator's totals of one step over every worker, for train metrics: each worker pushes
 * its share's sample count, mean loss and correctly classified samples with its gradient; shard 0
 * sums them and sends them with the weights of the next version. */
struct worker_totals {
    uint64_t step;    /* the step */
    uint64_t epoch;   /* its epoch */
    uint32_t samples; /* samples of the step over every worker */
    uint32_t correct; /* ... classified correctly */
    double loss_sum;  /* sum of their losses */
};

/* The model + data side of a worker. Only `compute` is required. */
struct worker_compute {
    void *user; /* passed to every callback */
    /* Worker 0 only, before the first step: fill the initial parameters and buffers (sizes as in
     * struct worker_cfg). Return 0, or a negative rt_err code. NULL: the shards were initialised.
     */
    int (*init)(void *user, float *params, float *buffers);
    /* Gradient of the mean loss over the samples [epoch_offset + share_offset, +share_count) of
     * the epoch's order, at `params` (n_params floats, read-only). Write grads (n_params floats,
     * overwrite), update `buffers` in place (n_buffers floats: the averaged running statistics on
     * entry) and set *samples (normally share_count) and *loss (mean over them). Return 0 or a
     * negative rt_err code (the worker stops). */
    int (*compute)(void *user, const struct worker_step *st, const float *params, float *grads,
                   float *buffers, uint32_t *samples, float *loss);
    /* After compute (may be NULL: 0): samples of the share just computed that were classified
     * correctly; pushed with the gradient for the totals. */
    uint32_t (*correct)(void *user);
    /* When the totals of a step over every worker arrive (may be NULL): with the weights of the
     * next step, so before that step's compute, and before finish for the last step. */
    void (*totals)(void *user, const struct worker_totals *t);
    /* After each step's push (may be NULL): for metrics and progress. */
    void (*step_done)(void *user, const struct worker_step *st, uint32_t samples, float loss);
    /* After each schedule answer, before the step's totals and compute, or before finish for the
     * answer that ends training (may be NULL): 1 when the coordinator names this worker the lead
     * of that step (server_coord_lead: the one that writes the run's metrics and final weights),
     * else 0. */
    void (*lead)(void *user, int is_lead);
    /* A decision on the decision stream (worker_cfg.decisions) announces global batch `batch`
     * from a later step: get ready for it before that step (buffers, prefetch) for a share of
     * about `share` samples (may be NULL). Advice only: each step's schedule and share still come
     * from the coordinator (worker_decide.h). */
    void (*prepare)(void *user, uint32_t batch, uint32_t share);
    /* After the last step, with the final weights (may be NULL). */
    void (*finish)(void *user, uint64_t steps, const float *params, const float *buffers);
    /* The latest test-set evaluation, to report to the coordinator (may be NULL): fill *e and
     * return 1, or return 0 when there is none. Called with each schedule query and heartbeat,
     * and once after finish, possibly from the worker's heartbeat thread. */
    int (*evaluation)(void *user, struct rt_wire_eval *e);
    /* Undecodable records this worker's loaders have skipped since it started
     * (data.skip_bad_records), reported to the coordinator with each schedule query and
     * heartbeat (may be NULL: 0). Called from the worker's heartbeat thread too. */
    uint64_t (*bad_records)(void *user);
};

/* Configuration of a worker. */
struct worker_cfg {
    const char *name;               /* for logs ("worker-1", "host:pid") */
    int n_shards;                   /* number of shards */
    const char *const *endpoints;   /* n_shards endpoints; [0] is the coordinator */
    void *zmq_ctx;                  /* context (shared in embedded mode) or NULL: own one */
    uint64_t n_params;              /* the model's flat parameter count */
    uint64_t n_buffers;             /* the model's flat buffer count */
    double weight;                  /* initial share weight (relative throughput); 0: 1 */
    int rebalance;                  /* cluster.balance measured: report the measured samples per
                                       compute second with each schedule query, so that the
                                       coordinator's shares follow speed */
    uint32_t chunk_floats;          /* floats per pushed frame; 0: RT_WIRE_CHUNK_FLOATS_DEFAULT */
    enum rt_wire_checksum checksum; /* checksum of the frames this worker sends */
    int timeout_ms;                 /* give up when the shards, the coordinator's answers to
                                       heartbeats included, are silent this long (0: 60000) */
    int coord_timeout_ms;           /* give up when the coordinator (shard 0) has been silent
                                       this long while the worker waits (0: never) */
    const atomic_int *stop;         /* stop when non-zero (may be NULL) */
    const char *decisions;          /* the eigen service's PUB endpoint: subscribe to the
                                       decision stream and prepare for announced batch sizes
                                       (NULL: none) */
};

/* Counters of a finished run. */
struct worker_stats {
    uint64_t steps;          /* steps completed */
    double seconds;          /* wall time from the first pull to the last */
    double comm_seconds;     /* time spent outside compute */
    uint64_t bytes_pushed;   /* payload bytes pushed (gradients and buffers) */
    uint64_t bytes_pulled;   /* payload bytes pulled */
    int worker;              /* id given by the coordinator */
    uint64_t decisions;      /* decisions in force received on the decision stream */
    uint64_t prepared;       /* of them, prepared for (a new B from a later step) */
    uint64_t prepared_ahead; /* changes of B in the coordinator's schedule prepared before their
                                step */
    uint32_t prepared_batch; /* the latest B prepared for (0: none) */
};

/* Run one worker to the end of training (the coordinator says "done"), from the step the
 * coordinator names when it welcomes the worker (0, or where the shards resumed from a checkpoint;
 * then `init` is not called and stats->steps counts from that step). Returns 0 and fills *stats
 * (may be NULL), or a negative rt_err code (detail set: the shard, the step, the reason). */
int worker_run(const struct worker_cfg *cfg, const struct worker_compute *cb,
               struct worker_stats *stats);

#endif
