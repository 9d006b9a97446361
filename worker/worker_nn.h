/*
 * worker_nn: the neural-network side of a worker, as a struct worker_compute. For each step it
 * loads the pulled weights and BatchNorm running statistics into the net, walks its share of the
 * global batch in micro-batches of m samples (BatchNorm statistics per micro-batch, as the
 * reference does through gradient accumulation), replaces the first ceil(gamma * m) samples of
 * each micro-batch by FGSM adversarial samples when the schedule's gamma is positive (ABSA), and
 * accumulates the gradient of the mean loss over the share:
 *     g = sum over micro-batches k of (n_k / share) * grad(mean loss of micro-batch k)
 * which the shards weight by the share's sample count, giving the gradient of the mean loss over
 * the global batch. Samples come from a struct worker_nn_source (the LMDB loader, or anything that
 * can produce the samples at given positions of an epoch's order). Every buffer is reserved once.
 */
#ifndef WORKER_NN_H
#define WORKER_NN_H

#include <stdint.h>

#include "nn_net.h"
#include "worker_loop.h"

/* Where samples come from: positions of an epoch's sample order (the same order on every worker).
 */
struct worker_nn_source {
    void *user; /* passed to read and prefetch */
    /* Fill x (n samples, C x H x W floats each, NCHW) and y (n labels) with the training samples at
     * positions [first, first + n) of epoch `epoch`'s order. Return 0 or a negative rt_err code. */
    int (*read)(void *user, uint64_t epoch, uint64_t first, uint32_t n, float *x, int32_t *y);
    /* Optional (may be NULL): announce, in order, the ranges that the next reads will ask for
     * (all micro-batches of a step, before the first read), so that they load ahead. */
    int (*prefetch)(void *user, uint64_t epoch, uint64_t first, uint32_t n);
};

/* Options of the NN compute. */
struct worker_nn_cfg {
    int micro_batch;           /* m, samples per micro-batch (<= the net's max batch) */
    double fgsm_epsilon;       /* FGSM step for ABSA (used when the step's gamma > 0) */
    uint64_t init_seed;        /* worker 0's initial weights: nn_net_init(seed) */
    nn_net_t *const *replicas; /* further replicas of the net, each on a device of its own
                                  (borrowed, must outlive the compute); NULL: one device */
    int n_replicas;            /* their number (0: one device; at most WORKER_NN_MAX_DEVICES-1) */
};

#define WORKER_NN_MAX_DEVICES NN_GROUP_MAX /* devices of one worker at most */

typedef struct worker_nn worker_nn_t;

/* An NN compute over `net` (borrowed; must outlive the result) and `src` (copied). Returns NULL and
 * sets *err (may be NULL) on bad options, no memory or a replica group that cannot be formed
 * (the reason in rt_err_msg()). Caller owns it; free with worker_nn_destroy.
 *
 * Several devices (cfg->n_replicas > 0): the net and its replicas form an nn_group; each replica
 * has a thread of its own, bound to its device for the compute's life. The share's micro-batches
 * (the same ones as on one device: samples [k*m, (k+1)*m) of the share) go round-robin to the
 * replicas, micro-batch k to replica k % D, D at a time; this thread reads their samples between
 * rounds. Each replica accumulates (n_k / share) * its micro-batches' gradients; one NCCL
 * all-reduce sums them (and averages the replicas' BatchNorm running statistics, as the shards
 * average the workers'), and the net (replica 0) hands the sum to the one push: the shards see
 * one worker. */
worker_nn_t *worker_nn_new(nn_net_t *net, const struct worker_nn_source *src,
                           const struct worker_nn_cfg *cfg, int *err);
void worker_nn_destroy(worker_nn_t **self_p);

/* The callbacks for worker_run: init (nn_net_init(init_seed)), compute (as above), and finish,
 * which leaves the final weights and buffers in the net. Valid while nn lives. */
struct worker_compute worker_nn_compute(worker_nn_t *nn);

/* Counters of the last step: samples, correctly classified samples, mean loss. */
void worker_nn_last(const worker_nn_t *nn, uint32_t *samples, uint32_t *correct, float *loss);

#endif
