/*
 * worker_app: the model-training worker (a zoo model on an LMDB dataset): its loader and feed,
 * the net and its compute; the lead worker also records metrics (metrics.jsonl), prints progress
 * and evaluates the test set on a thread of its own while training goes on.
 */
#ifndef WORKER_APP_H
#define WORKER_APP_H

#include <stdint.h>

#include "app_opts.h"
#include "nn_net.h"
#include "rt_loader.h"
#include "rt_metrics.h"
#include "worker_feed.h"
#include "worker_loop.h"
#include "worker_nn.h"

/* The zoo-model side of one worker: its loader and feed, the net and its compute; worker 0 also
 * records metrics (metrics.jsonl), prints progress and evaluates the test set. */
struct worker_app_eval;

struct worker_app {
    rt_loader_t *loader;        /* the training set */
    struct worker_feed feed;    /* micro-batches from the loader */
    nn_net_t *net;              /* the model */
    worker_nn_t *nn;            /* its compute */
    const struct app_opts *o;   /* the options (borrowed) */
    struct worker_app_eval *ev; /* worker 0 with a test set: the evaluation thread and its net */
    rt_metrics_t *metrics;      /* worker 0 with an output directory: metrics.jsonl */
    rt_progress_t *progress;    /* worker 0: the progress line */
    double t0;                  /* time of the first step */
    double epoch_t0;            /* time the current epoch started */
    int64_t epoch;              /* epoch of the last step seen (-1 before the first) */
    uint64_t done_samples;      /* global samples of every step so far */
    uint64_t skip_samples;      /* samples of the epochs before the checkpoint a run resumed from */
    uint64_t epoch_samples;     /* global samples of this epoch's steps */
    uint64_t tot_samples;       /* samples of this epoch over every worker (coordinator totals) */
    uint64_t tot_correct;       /* ... correctly classified */
    double tot_loss;            /* ... summed loss */
    struct worker_step last;    /* the last step seen */
    int worker_id;              /* id the coordinator gave this worker (-1: not known yet) */
    double eval_seconds;        /* time spent in test evaluation (on the evaluation thread) */
    double test_accuracy;       /* the last evaluation's accuracy (NaN: none yet) */
    double test_loss;           /* ... and mean loss */
    int rc;                     /* first error of a callback that cannot return one */
};

/* Open the training set and build the net; with `compute`, also the compute (worker_nn) and, for
 * worker 0 (`lead`), the test set, metrics.jsonl under o->output_dir (appended to, after a
 * "resume" event, when o->local.resume names a checkpoint) and the progress line.
 * Returns 0 or a negative rt_err code; close with worker_app_close either way. */
int worker_app_open(const struct app_opts *o, struct worker_app *n, int compute, int lead);
void worker_app_close(struct worker_app *n);

/* The worker callbacks (user = n): init, compute, step_done (metrics, progress) and finish (the
 * last epoch's event, weights.safetensors under o->output_dir, o->local.out). The final weights are
 * written once per run, by the worker with id 0 (the coordinator's numbering, not --lead): every
 * worker ends holding the same final version pulled from every shard, and the others write
 * neither file, so workers may share an output directory. At each epoch end, worker
 * 0 copies the weights into a second net that a thread of its own evaluates on the test set while
 * training goes on (every eval_every epochs, and always at the end); the epoch's event is written
 * when its evaluation is done (test_accuracy null when not evaluated). test_accuracy, test_loss
 * and eval_seconds are final once worker_app_close or finish has run. */
struct worker_compute worker_app_compute(struct worker_app *n);

#endif
