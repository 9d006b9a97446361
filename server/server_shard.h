/*
 * server_shard: one parameter-server shard. It owns a contiguous, balanced range of the flat
 * parameter vector (rt_wire_partition) with its momentum, and the same kind of range of the flat
 * BatchNorm buffer vector. For step t it waits for the gradient slice of every worker (in chunks),
 * averages them weighted by sample count, applies SGD with momentum and weight decay (nn_sgd_step)
 * with the step's learning rate, averages the buffer slices the same way, bumps its version to t+1
 * and answers the pulls waiting for it. Shard 0 also runs the coordinator (server_coord).
 *
 * A worker silent for cfg.evict_ms is evicted by the coordinator (shard 0): the step it blocks
 * completes with the others, and every parameter is updated with the sample-weighted average of
 * the gradients that arrived for it (a worker that died in the middle of its push counts for the
 * part that arrived, at the shards it reached). The other shards learn the members of a step from
 * the coordinator (with its schedule, and again while the step waits). From the next step whose
 * shares are not announced yet, the others split the whole batch; the evicted worker's share of
 * the steps already announced is lost for this epoch, which the coordinator logs and counts.
 *
 * A malformed or unexpected message (random bytes, truncated multipart, wrong version, wrong sizes,
 * a push for a step other than the current one, an unknown or impersonating peer) is logged with
 * its sender and the reason and dropped; the shard keeps serving the honest workers.
 */
#ifndef SERVER_SHARD_H
#define SERVER_SHARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_wire.h"
#include "server_coord.h"

#define SERVER_CHUNK_FLOATS_DEFAULT RT_WIRE_CHUNK_FLOATS_DEFAULT /* floats per payload frame */

/* Configuration of a shard. */
struct server_shard_cfg {
    int shard;                  /* this shard's index, 0 = coordinator */
    int n_shards;               /* number of shards */
    int n_workers;              /* workers that take part in every step */
    uint64_t n_params;          /* size of the flat parameter vector */
    uint64_t n_buffers;         /* size of the flat buffer vector (may be 0) */
    const char *endpoint;       /* where to bind the ROUTER (e.g. "tcp://0.0.0.0:5555") */
    const char *coord_endpoint; /* shards > 0: shard 0's endpoint, asked for each step's schedule */
    void *zmq_ctx;              /* context to use (shared in embedded mode) or NULL: own one */
    float momentum;             /* SGD momentum */
    float weight_decay;         /* SGD weight decay */
    const float *init_params;   /* full initial parameter vector, or NULL: worker 0 sends INIT */
    const float *init_buffers;  /* full initial buffer vector, or NULL (with init_params: zeros) */
    const struct server_coord_sched *sched; /* shard 0: the schedule in force (borrowed) */
    uint32_t chunk_floats;                  /* floats per weights frame sent (0: default) */
    enum rt_wire_checksum checksum;         /* checksum of the frames this shard sends */
    int io_threads;                         /* I/O threads of an own context (0: 1) */
    int snapshots; /* keep a copy of the slice at each epoch start for SNAPSHOT requests (ABS) */
    int sync;      /* shard 0: `decisions: sync`, hold epoch starts (server_coord_set_sync) */
    int sync_timeout_ms; /* shard 0: longest hold of an epoch start (0: the default, 10 min) */

    const char *ckpt_root;     /* where checkpoints go (OUTPUT/checkpoints, server_ckpt.h), or NULL:
                                  none; shard 0 writes the manifests and prunes */
    int ckpt_every;            /* checkpoint at the end of every this many epochs (0: never) */
    uint64_t ckpt_every_steps; /* ... and within epochs at every version that is a multiple of
                                  this (0: never; checkpoint.every_steps) */
    double ckpt_every_minutes; /* shard 0: ... and at a step the coordinator marks this often
                                  (0: never; checkpoint.every_minutes) */
    int ckpt_keep;      /* shard 0: complete checkpoints kept (0: SERVER_CKPT_KEEP_DEFAULT) */
    const char *resume; /* complete checkpoint directory to start from, or NULL: fresh */
    const char *model;  /* model name, recorded in and checked against checkpoints (NULL:
                           unknown, not checked) */
    int evict_ms;       /* shard 0: evict a worker silent this long (cluster.worker_timeout_ms;
                           0: never) */
    struct rt_metrics *metrics; /* shard 0: "evict" and "reject" events go here (borrowed, may
                                   be NULL) */
    float max_grad_norm;        /* reject a push whose slice here has a larger L2 norm (<= 0 or
                                   NaN: no bound; fault.max_grad_norm) */
    int max_rejects;            /* shard 0: evict a worker after this many steps in a row with a
                                   rejected push (0: SERVER_SHARD_MAX_REJECTS_DEFAULT) */
    int coord_timeout_ms;       /* shards > 0: stop, with an error, when the coordinator has been
                                   silent this long (cluster.coordinator_timeout_ms; 0: never) */
    const char *metrics_listen; /* shard 0: serve Prometheus metrics at this HOST:PORT
                                   (metrics.listen; NULL or "": none) */
};

#define SERVER_SHARD_MAX_REJECTS_DEFAULT 3

/* Counters of a shard, for logs and tests. */
struct server_shard_stats {
    uint64_t version;  /* updates applied */
    uint64_t dropped;  /* messages dropped as malformed or unexpected */
    uint64_t pushes;   /* push chunks accepted */
    uint64_t pulls;    /* weight replies sent */
    uint64_t evicted;  /* workers evicted (shard 0) or learnt to be evicted (other shards) */
    uint64_t lost;     /* shard 0: samples of interrupted steps no gradient covers */
    uint64_t rejected; /* pushes rejected here (non-finite, over the norm bound, bad count) */
};

typedef struct server_shard server_shard_t;

/* Create a shard, allocate every buffer and bind its endpoint. With cfg->resume, the shard loads
 * its range, momentum, buffers and version from that checkpoint, and shard 0 the schedule and the
 * ABS state (errors name the file and the field); shard 0 also removes the checkpoints of later
 * epochs than the one it starts from (a fresh start: all), which this run writes again. Returns 0
 * and *out, or a negative rt_err code (detail set). Caller owns *out; free with
 * server_shard_destroy. */
int server_shard_new(const struct server_shard_cfg *cfg, server_shard_t **out);

/* Serve until every worker has said BYE (returns 0), *stop becomes non-zero (returns
 * RT_ERR_INTERRUPTED), or a socket fails. stop may be NULL. With checkpoints on, each shard writes
 * its file at the end of every ckpt_every-th epoch (server_ckpt.h); shard 0 also writes the
 * coordinator's state and, once every shard's file is there, the manifest (it waits for them, a
 * while, before returning). */
int server_shard_run(server_shard_t *s, const atomic_int *stop);

/* The shard's ranges of the flat vectors. */
void server_shard_range(const server_shard_t *s, uint64_t *p_off, uint64_t *p_cnt, uint64_t *b_off,
                        uint64_t *b_cnt);

/* The endpoint actually bound (a tcp "*" port resolved), valid while the shard lives. */
const char *server_shard_endpoint(const server_shard_t *s);

/* The step the shard started from: 0, or the version of the checkpoint it resumed from. */
uint64_t server_shard_start_step(const server_shard_t *s);

/* The shard's current weights and buffers (p_cnt / b_cnt floats); valid until the shard runs again
 * or is destroyed. */
const float *server_shard_params(const server_shard_t *s);
const float *server_shard_buffers(const server_shard_t *s);

void server_shard_stats(const server_shard_t *s, struct server_shard_stats *out);

/* Destroy a shard (waits briefly for zero-copy frames still queued) and null the pointer; accepts
 * NULL, safe twice. */
void server_shard_destroy(server_shard_t **self_p);

#endif
