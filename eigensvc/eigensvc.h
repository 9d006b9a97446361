/*
 * eigensvc: the eigen service. At each epoch end it takes a consistent weight snapshot from the
 * shards (eig_observer), draws its Hessian batch from its own LMDB reader, runs power iteration
 * on exact Hessian-vector products (full or block Hessian), feeds the ABS rule (eig_abs) and
 * publishes the decision: to the coordinator, which stamps the step it applies from, and, once
 * the coordinator accepted it, over PUB/SUB to every subscriber (refused, stale, superseded and
 * no-change decisions are not published: workers and shards follow the coordinator's schedule,
 * and subscribers only ever see decisions in force). Optionally it evaluates the snapshot's test
 * accuracy, so that evaluation is off the training path too. The same code runs as a thread of
 * `eigenbatch train`, a process of `eigenbatch launch`, and alone as `eigenbatch eigensvc`.
 *
 * Published decisions are PUBLISH messages (rt_wire: struct rt_wire_decision with the effective
 * lr and gamma, the reason and the coordinator's verdict); rt_decsub.h is the subscriber side and
 * the "current decision" query of late joiners. Metrics: one event "eig" per handled epoch end
 * (epoch, eigenvalue, iterations, seconds, batch_size, lr, gamma, reason, snapshot_version,
 * verdict, ...) and "eval" per evaluated snapshot (accuracy, loss). With cfg->sync the shards must
 * run with `decisions: sync` (server_shard_cfg.sync), and training then stops at each epoch start
 * until the service's decision arrived: no decision, no progress.
 */
#ifndef EIGENSVC_H
#define EIGENSVC_H

#include <stdatomic.h>
#include <stdint.h>

#include "eig_abs.h"
#include "eig_power.h"
#include "rt_loader.h"
#include "nn_net.h"
#include "rt_metrics.h"

/* Configuration of an eigen service. Strings and arrays are borrowed for the service's life. */
struct eigensvc_cfg {
    void *zmq_ctx;                 /* ZeroMQ context (shared in embedded mode) or NULL: own one */
    int n_shards;                  /* number of shards */
    const char *const *endpoints;  /* n_shards shard endpoints; [0] is the coordinator */
    const char *pub_endpoint;      /* where decisions are published (PUB bind), or NULL: none */
    const char *model;             /* zoo model name */
    int classes;                   /* number of classes */
    const char *train_db;          /* LMDB of the training set (Hessian batches) */
    int use_loader;                /* 1: records become samples as `loader` says (the run's
                                      data.* options: output size, evaluation resize and crop,
                                      normalisation); 0: as stored */
    struct rt_loader_opts loader;  /* with use_loader */
    const char *test_db;           /* LMDB of the test set for snapshot evaluation, or NULL */
    int hessian_batch;             /* samples per Hessian batch (default 128) */
    uint64_t seed;                 /* seed of the Hessian batches and of the power iteration */
    int block_last_k;              /* 0: full Hessian; K: block of the last K parameter layers */
    enum nn_bn_mode bn;            /* BatchNorm mode of the Hessian (default NN_BN_EVAL) */
    struct eig_power_config power; /* power iteration settings (preset paper or accurate) */
    int lanczos;                   /* 1: measure by Lanczos (top 1) to power's tolerance, in at
                                      most 5x its products (abs.method lanczos) */
    struct eig_abs_config abs;     /* the ABS rule */
    int threads;                   /* > 0: nn_set_threads(threads), which is process-wide: leave
                                      0 in embedded mode (the trainer sets the threads) */
    int sync;                      /* 1: `decisions: sync`, training waits for each decision
                                      (the shards must run with server_shard_cfg.sync) */
    rt_metrics_t *metrics;         /* epoch events go here (may be NULL) */
    int timeout_ms;                /* give up when the shards are silent this long */
    const char *query_endpoint;    /* ROUTER bind answering "current decision" (late joiners;
                                      client: rt_decsub_current), or NULL: none */
    int epochs;                    /* epochs of the run: the service ends after the snapshot of
                                      the last epoch's start; 0: until stop or silence */
    int poll_ms;                   /* interval between snapshot polls (0: 20 ms) */
    const char *device;            /* where the net, its HVPs and evaluations run: cpu, cuda,
                                      cuda:N (NULL: cpu); a spare GPU in a deployment */
};

typedef struct eigensvc eigensvc_t;

/* Validate cfg, open the data and build the model on cfg->device (weights, activations and the
 * HVP's vectors reserved there; each snapshot is uploaded once, and each product copies its
 * direction in and its result out once, through page-locked buffers). Returns 0 and *out (caller
 * owns it; free with eigensvc_destroy), or a negative rt_err code with a detail naming the
 * culprit (RT_ERR_ARG with nn_backend's one-line reason when the device cannot be had). */
int eigensvc_new(const struct eigensvc_cfg *cfg, eigensvc_t **out);

/* Serve until training ends (the calling thread is bound to the service's device first) or *stop
 * becomes non-zero (stop may be NULL). Training ends for the service when it has handled the
 * snapshot of the start of the last epoch (cfg->epochs), when B_max is reached and no test set is
 * evaluated, or when the shards have been silent for timeout_ms after the first snapshot (they stop
 * when the workers leave). Returns 0, RT_ERR_INTERRUPTED on stop, or a negative rt_err code
 * (RT_ERR_TIMEOUT when no shard ever answered). */
int eigensvc_run(eigensvc_t *svc, const atomic_int *stop);

/* Destroy and null the caller's pointer; accepts NULL, safe twice. */
void eigensvc_destroy(eigensvc_t **self_p);

#endif
