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
#include "worker_mem.h"
#include "worker_nn.h"

/* The zoo-model side of one worker: its loader and feed, the net and its compute. The worker the
 * coordinator names the lead (server_coord_lead: the lowest-id live worker, until it is evicted)
 * also records metrics (metrics.jsonl), prints progress, evaluates the test set and writes the
 * final weights; every worker keeps the epoch's totals, so that another can take over. */
struct worker_app_eval;

/* What an epoch event says besides the test results. */
struct worker_app_epoch {
    int64_t epoch;         /* the epoch that ended */
    uint64_t steps;        /* steps done by its end */
    double loss;           /* mean training loss over the epoch's samples, every worker's */
    double train_accuracy; /* ... and accuracy */
    uint64_t samples;      /* training samples of its steps over every worker (after a mid-epoch
                              resume: of the steps since) */
    uint32_t batch;        /* B, lr and gamma of its last step */
    float lr;
    float gamma;
    double images_per_s; /* global samples of the epoch per second */
    double elapsed;      /* seconds since the first step */
    int evaluate;        /* 1: evaluate the test set */
    int recovered;       /* 1: written after a resume, for an epoch whose event died with the
                            process (training totals unknown: NaN) */
};

struct worker_app {
    rt_loader_t *loader;                           /* the training set */
    struct worker_feed feed;                       /* micro-batches from the loader */
    nn_net_t *net;                                 /* the model (on the first of worker.devices) */
    nn_net_t *replicas[WORKER_NN_MAX_DEVICES - 1]; /* on the further devices (worker.devices) */
    int n_replicas;                                /* their number */
    worker_nn_t *nn;                               /* its compute */
    const struct app_opts *o;                      /* the options (borrowed) */
    struct worker_app_eval *ev; /* the lead with a test set: the evaluation thread and its net */
    rt_metrics_t *metrics;      /* the lead with an output directory: metrics.jsonl */
    int borrowed_metrics;       /* metrics belongs to another worker of this process (train) */
    rt_progress_t *progress;    /* the lead with --lead: the progress line */
    int is_lead;                /* the coordinator names this worker the lead of the current step */
    int was_lead;               /* the lead's outputs are set up (s_lead_begin ran) */
    uint64_t resume_step;       /* the step of the checkpoint o->local.resume names */
    struct worker_app_epoch pending; /* the last epoch ended under another lead (s_lead_begin) */
    int has_pending;                 /* pending holds one */
    double t0;                       /* time of the first step */
    double epoch_t0;                 /* time the current epoch started */
    int64_t epoch;                   /* epoch of the last step seen (-1 before the first) */
    uint64_t done_samples;           /* global samples of every step so far */
    uint64_t skip_samples;    /* samples of the epochs before the checkpoint a run resumed from */
    uint64_t epoch_samples;   /* global samples of this epoch's steps */
    uint64_t tot_samples;     /* samples of this epoch over every worker (coordinator totals) */
    uint64_t tot_correct;     /* ... correctly classified */
    double tot_loss;          /* ... summed loss */
    struct worker_step last;  /* the last step seen */
    int worker_id;            /* id the coordinator gave this worker (-1: not known yet) */
    double eval_seconds;      /* time spent in test evaluation (on the evaluation thread) */
    double test_accuracy;     /* the last evaluation's accuracy (NaN: none yet) */
    double test_loss;         /* ... and mean loss */
    struct rt_wire_eval eval; /* the last evaluation as reported to the coordinator (guarded by
                                 the evaluation thread's mutex) */
    uint64_t bad_test;        /* undecodable test-set records skipped, as of the evaluation
                                 thread's latest evaluation (atomic) */
    int resume_checked;       /* the first step after a resume has been looked at */
    int rc;                   /* first error of a callback that cannot return one */
    struct worker_mem mem;    /* the memory bound stated at open (compute only) */
};

/* Open the training set and build the net; with `compute`, also the compute (worker_nn). With
 * `lead` (train's first worker thread), metrics.jsonl under o->output_dir is opened now (appended
 * to, after a "resume" event, when o->local.resume names a checkpoint; else truncated), so that
 * the process's other writers (the shard threads, the eigen service, the other workers through
 * worker_app_borrow_metrics) share it. Otherwise a worker opens it when the coordinator first
 * names it the lead: truncated only at step 0 of a fresh run, else appended to, and with the
 * "resume" event only at the first step of a resumed run (a restarted worker that rejoins later
 * writes neither). Returns 0 or a negative rt_err code; close with worker_app_close either way
 * (train: in the reverse order of opening, the owner of shared metrics last). */
int worker_app_open(const struct app_opts *o, struct worker_app *n, int compute, int lead);
void worker_app_close(struct worker_app *n);

/* Write events to m (owned by another worker_app of this process, which outlives n) instead of
 * opening metrics.jsonl when n becomes the lead. */
void worker_app_borrow_metrics(struct worker_app *n, rt_metrics_t *m);

/* The worker callbacks (user = n): init, compute, lead, step_done (metrics, progress) and finish
 * (the last epoch's event, weights.safetensors under o->output_dir, o->local.out). Only the lead
 * writes: the epoch and step events, and the final weights once per run, by the lead of the
 * schedule answer that ends training (every worker ends holding the same final version pulled
 * from every shard, so workers may share an output directory). The event of epoch e is written by
 * the lead of the first step of epoch e + 1 (or of the end); a worker that becomes the lead also
 * writes the event of the last epoch that ended under the previous lead when metrics.jsonl lacks
 * it (that lead died first; the event has no test results then). At each epoch end the lead copies
 * the weights into a second net that a thread of its own evaluates on the test set while training
 * goes on (every eval_every epochs, and always at the end); the epoch's event is written when its
 * evaluation is done (test_accuracy null when not evaluated). test_accuracy, test_loss and
 * eval_seconds are final once worker_app_close or finish has run.
 *
 * Test hook: EB_TEST_NAN_LOSS=W:N in the environment makes worker W's loss of step N NaN, once per
 * output directory (the first to fire creates OUTPUT/.eb-test-nan-loss; without an output
 * directory, every time): the fault tests' way to a non-finite loss that a rollback then cures. */
struct worker_compute worker_app_compute(struct worker_app *n);

#endif
