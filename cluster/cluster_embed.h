/*
 * cluster_embed: S shards and W workers as threads of this process, over one transport (inproc,
 * ipc or tcp): the embedded mode of `eigenbatch train`, `eigenbatch bench ps` and the tests. The
 * roles are the same code as in separate processes (server_shard_run, worker_run).
 */
#ifndef CLUSTER_EMBED_H
#define CLUSTER_EMBED_H

#include <stdint.h>

#include "rt_wire.h"
#include "server_coord.h"
#include "worker_loop.h"

/* Configuration of an in-process cluster. */
struct cluster_embed_cfg {
    int n_shards;          /* shards, >= 1 */
    int n_workers;         /* workers, >= 1 */
    const char *transport; /* "inproc", "ipc" or "tcp" */
    const char *where;     /* inproc name, ipc directory or tcp host (127.0.0.1) */
    int port;              /* tcp: first port (shard i binds port + i); 0: any free */
    uint64_t n_params;     /* flat parameter count */
    uint64_t n_buffers;    /* flat buffer count */
    float momentum;        /* SGD momentum */
    float weight_decay;    /* SGD weight decay */
    const struct server_coord_sched *sched; /* schedule in force (borrowed) */
    const float *init_params;               /* initial weights, or NULL: worker 0's init callback */
    const float *init_buffers;              /* initial buffers (with init_params), or NULL: zeros */
    const struct worker_compute *compute;   /* n_workers entries, one per worker thread */
    const double *weights;                  /* n_workers share weights, or NULL: equal */
    int rebalance;                          /* workers report throughput; shares follow it */
    int snapshots;                          /* shards keep epoch-start snapshots (eigen service) */
    int sync; /* `decisions: sync`: the coordinator holds each epoch start for its decision */
    int sync_timeout_ms;        /* ... at most this long (0: SERVER_COORD_SYNC_TIMEOUT_MS) */
    int worker_timeout_ms;      /* workers give up after this much silence (0: default) */
    int evict_ms;               /* the coordinator evicts a worker silent this long (0: never) */
    float max_grad_norm;        /* shards reject a push whose slice has a larger norm (0: none) */
    int max_rejects;            /* rejected pushes in a row that evict a worker (0: default) */
    struct rt_metrics *metrics; /* the coordinator's "evict" events (borrowed, may be NULL) */
    uint32_t chunk_floats;      /* floats per frame (0: default) */
    enum rt_wire_checksum checksum; /* frame checksum */
    int io_threads;                 /* ZeroMQ I/O threads of the shared context (0: 1) */
    void *zmq_ctx; /* context to use (borrowed; e.g. shared with an eigen service over inproc),
                      or NULL: a context of the run's own */
    const char *ckpt_root;     /* checkpoints under this directory (server_ckpt.h), or NULL: none */
    int ckpt_every;            /* at the end of every this many epochs (0: never) */
    uint64_t ckpt_every_steps; /* ... and within epochs, every this many steps (0: never) */
    double ckpt_every_minutes; /* ... and within epochs, this often (0: never) */
    int ckpt_keep;             /* complete checkpoints kept (0: the default) */
    const char *resume;        /* complete checkpoint to start from (rt_ckpt_resolve), or NULL */
    const char *model;         /* model name recorded in checkpoints, or NULL */
    const char *metrics_listen; /* shard 0 serves Prometheus metrics here (HOST:PORT), or NULL */
    const char *decisions;      /* the decision stream (the eigen service's PUB endpoint) the
                                   workers subscribe to, or NULL: none */
};

/* Run the cluster to the end of the schedule. On success copies the final weights into
 * final_params (n_params floats) and final_buffers (n_buffers floats) when not NULL, and each
 * worker's counters into stats[n_workers] when not NULL. Returns 0 or a negative rt_err code. */
int cluster_embed_run(const struct cluster_embed_cfg *cfg, float *final_params,
                      float *final_buffers, struct worker_stats *stats);

#endif
