/*
 * worker_app: the model-training worker: its loader and feed, the zoo net and its compute, and for
 * the lead worker the metrics, the progress line and the test evaluation (see worker_app.h).
 */
#include "worker_app.h"

#include "nn_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "app_model.h"
#include "app_weights.h"
#include "rt_ckpt.h"
#include "rt_err.h"
#include "rt_log.h"

#define S_MAX_PATH 4096 /* bytes of a path under the output directory */

static int s_eval_new(const struct app_opts *o, struct worker_app *n, int c, int h, int w);
static int s_eval_setup(const struct app_opts *o, struct worker_app_eval *ev, int c, int h, int w);
static void s_eval_destroy(struct worker_app *n);

/* The epoch and step of the checkpoint in dir (its coordinator manifest). */
static int s_ckpt_point(const char *dir, uint64_t *epoch, uint64_t *step)
{
    json_t *m = NULL;
    int rc = rt_ckpt_verify(dir, RT_CKPT_COORD, &m);
    if (!rc && !(rc = rt_ckpt_manifest_u64(m, dir, "epoch", epoch)))
        rc = rt_ckpt_manifest_u64(m, dir, "step", step);
    json_decref(m);
    return rc;
}

/* A resumed run appends to metrics.jsonl: first an event saying from where. Events of the
 * interrupted run after that checkpoint (a partial epoch) stay above it; readers that want one
 * history drop the events with step >= this event's step that precede it. */
static int s_resume_event(struct worker_app *n, const char *dir)
{
    uint64_t epoch = 0, step = 0;
    int rc = s_ckpt_point(dir, &epoch, &step);
    if (rc)
        return rc;
    rt_metrics_begin(n->metrics, "resume");
    rt_metrics_str(n->metrics, "checkpoint", dir);
    rt_metrics_int(n->metrics, "epoch", (long long)epoch);
    rt_metrics_int(n->metrics, "step", (long long)step);
    return rt_metrics_end(n->metrics);
}

/* Open metrics.jsonl under the output directory (none: nothing to do): truncated when `truncate`,
 * else appended to; with `resume`, after a "resume" event. */
static int s_metrics_open(struct worker_app *n, int truncate, int resume)
{
    const struct app_opts *o = n->o;
    if (!o->output_dir || n->metrics)
        return RT_OK;
    char path[S_MAX_PATH];
    int rc = app_mkdirs(o->output_dir);
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->output_dir);
    if ((rc = rt_metrics_open(path, !truncate, &n->metrics)))
        return rc;
    return resume ? s_resume_event(n, o->local.resume) : RT_OK;
}

static void s_epoch_end(struct worker_app *n, const float *params, const float *buffers, int final);

/* The net on the worker's device (worker.device), or on the first of worker.devices with one
 * replica on each further one (their memory planned before the first step: a one-line error
 * naming the model, the micro-batch and the bytes when one does not fit). */
static int s_devices_open(const struct app_opts *o, struct worker_app *n)
{
    char dev[WORKER_NN_MAX_DEVICES][APP_DEVICE_NAME_MAX];
    int nd = 0, rc = app_opts_worker_devices(o, dev, WORKER_NN_MAX_DEVICES, &nd);
    if (rc)
        return rc;
    for (int d = 0; d < nd; d++) {
        nn_net_t **net = d ? &n->replicas[d - 1] : &n->net;
        if (d && (rc = app_model_net(o->model.name, n->loader, (int)o->model.classes,
                                     (int)o->train.micro_batch, 0, net)))
            return rc;
        n->n_replicas = d;
        if (strcmp(dev[d], "cpu") && nn_net_to_backend(*net, dev[d], o->model.name) != NN_OK)
            return rt_err_set(RT_ERR_ARG, "%s%s%s", nd > 1 ? dev[d] : "", nd > 1 ? ": " : "",
                              *nn_backend_why() ? nn_backend_why()
                                                : "the model does not fit the device");
    }
    return RT_OK;
}

int worker_app_open(const struct app_opts *o, struct worker_app *n, int compute, int lead)
{
    memset(n, 0, sizeof *n);
    n->o = o;
    n->epoch = -1;
    n->worker_id = -1;
    n->test_accuracy = NAN;
    n->test_loss = NAN;
    size_t resident = worker_mem_resident();
    struct rt_loader_opts lo;
    int rc = app_model_loader_opts(o, (size_t)o->train.micro_batch, &lo);
    if (rc)
        return rc;
    rc = rt_loader_new(o->data.train, &lo, &n->loader);
    if (rc)
        return rc;
    int c, h, w;
    rt_loader_shape(n->loader, &c, &h, &w);
    if ((rc = app_model_net(o->model.name, n->loader, (int)o->model.classes,
                            (int)o->train.micro_batch, 0, &n->net)))
        return rc;
    if ((rc = s_devices_open(o, n)))
        return rc;
    if (!compute)
        return RT_OK;
    worker_mem_bound(o, n->net, rt_loader_memory_bound(n->loader), resident, &n->mem);
    worker_feed_init(&n->feed, n->loader, lo.queue_depth);
    struct worker_nn_source src = worker_feed_source(&n->feed);
    struct worker_nn_cfg nc = {.micro_batch = (int)o->train.micro_batch,
                               .fgsm_epsilon = o->abs.epsilon,
                               .init_seed = (uint64_t)o->train.seed,
                               .replicas = n->replicas,
                               .n_replicas = n->n_replicas};
    n->nn = worker_nn_new(n->net, &src, &nc, &rc);
    if (!n->nn)
        return rc;
    uint64_t epoch;
    if (o->local.resume && (rc = s_ckpt_point(o->local.resume, &epoch, &n->resume_step)))
        return rc;
    return lead ? s_metrics_open(n, o->local.resume == NULL, o->local.resume != NULL) : RT_OK;
}

void worker_app_borrow_metrics(struct worker_app *n, rt_metrics_t *m)
{
    n->metrics = m;
    n->borrowed_metrics = m != NULL;
}

void worker_app_close(struct worker_app *n)
{
    worker_nn_destroy(&n->nn);
    nn_net_destroy(&n->net);
    for (int d = 0; d < n->n_replicas; d++)
        nn_net_destroy(&n->replicas[d]);
    n->n_replicas = 0;
    rt_loader_destroy(&n->loader);
    s_eval_destroy(n);
    if (n->borrowed_metrics)
        n->metrics = NULL;
    rt_metrics_close(&n->metrics);
    rt_progress_destroy(&n->progress);
}

static int s_nn_init(void *user, float *params, float *buffers)
{
    struct worker_app *n = user;
    n->worker_id = 0; /* only worker 0 initialises the shards */
    struct worker_compute c = worker_nn_compute(n->nn);
    return c.init(c.user, params, buffers);
}

static int s_lead_begin(struct worker_app *n, uint64_t step);
static void s_recover_epoch(struct worker_app *n, const struct worker_step *st, const float *params,
                            const float *buffers);

/* The test hook EB_TEST_NAN_LOSS=W:N (worker_app.h): 1 when it fires for worker st->worker at
 * st->step. */
static int s_test_nan_loss(const struct worker_app *n, const struct worker_step *st)
{
    const char *spec = getenv("EB_TEST_NAN_LOSS");
    int worker;
    unsigned long long step;
    if (!spec || sscanf(spec, "%d:%llu", &worker, &step) != 2 || worker != st->worker ||
        step != st->step)
        return 0;
    if (!n->o->output_dir)
        return 1;
    char path[S_MAX_PATH];
    snprintf(path, sizeof path, "%s/.eb-test-nan-loss", n->o->output_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return 0; /* fired once already (or cannot tell): the run goes on */
    close(fd);
    RT_WARN("train", "test hook EB_TEST_NAN_LOSS: worker %d's loss of step %llu is NaN", worker,
            step);
    return 1;
}

static int s_nn_step(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct worker_app *n = user;
    n->worker_id = st->worker;
    int rc = n->is_lead && !n->was_lead ? s_lead_begin(n, st->step) : RT_OK;
    if (rc)
        return rc;
    if (n->is_lead)
        s_recover_epoch(n, st, params, buffers);
    if (n->epoch >= 0 && (int64_t)st->epoch != n->epoch) {
        /* the weights and running statistics of this step are the last epoch's final ones */
        s_epoch_end(n, params, buffers, 0);
        n->epoch = (int64_t)st->epoch;
    }
    struct worker_compute c = worker_nn_compute(n->nn);
    rc = c.compute(c.user, st, params, grads, buffers, samples, loss);
    if (!rc && *samples > 0 && s_test_nan_loss(n, st))
        *loss = NAN;
    /* a non-finite loss is never pushed: worker_loop stops with the reason */
    return rc;
}

/* The evaluation thread of the lead: a second net, the test set, one pending epoch. */
struct worker_app_eval {
    struct worker_app *owner;   /* the worker state (metrics, results) */
    nn_net_t *net;              /* the evaluated weights (a copy) */
    rt_loader_t *test;          /* the test set */
    float *x;                   /* one evaluation micro-batch of inputs */
    int32_t *y;                 /* its labels */
    pthread_t thread;           /* the thread */
    int started;                /* 1 once the thread runs */
    pthread_mutex_t mu;         /* guards the fields below and owner's results */
    pthread_cond_t cv;          /* signals a new job, a finished job and quit */
    int pending;                /* 1: ep holds a job not yet done */
    int quit;                   /* 1: the thread ends once nothing is pending */
    struct worker_app_epoch ep; /* the job */
};

/* Undecodable records this worker's loaders (training and test sets) skipped since it started
 * (worker_compute.bad_records): the heartbeat thread asks too, so the test set's count is the one
 * the evaluation thread published after its latest evaluation. */
static uint64_t s_nn_bad_records(void *user)
{
    struct worker_app *n = user;
    uint64_t bad = n->loader ? rt_loader_bad_records(n->loader) : 0;
    return bad + __atomic_load_n(&n->bad_test, __ATOMIC_ACQUIRE);
}

/* Write the epoch event; acc/tl NaN when not evaluated. */
static void s_epoch_write(struct worker_app *n, const struct worker_app_epoch *ep, double acc,
                          double tl, double eval_s)
{
    if (!n->metrics)
        return;
    rt_metrics_begin(n->metrics, "epoch");
    rt_metrics_int(n->metrics, "epoch", ep->epoch);
    rt_metrics_int(n->metrics, "step", (long long)ep->steps);
    rt_metrics_num(n->metrics, "loss", ep->loss);
    rt_metrics_num(n->metrics, "train_accuracy", ep->train_accuracy);
    rt_metrics_int(n->metrics, "samples", (long long)ep->samples);
    rt_metrics_num(n->metrics, "test_accuracy", acc);
    rt_metrics_num(n->metrics, "test_loss", tl);
    rt_metrics_int(n->metrics, "batch_size", ep->batch);
    rt_metrics_num(n->metrics, "lr", ep->lr);
    rt_metrics_num(n->metrics, "gamma", ep->gamma);
    rt_metrics_num(n->metrics, "images_per_s", ep->images_per_s);
    rt_metrics_num(n->metrics, "elapsed", ep->elapsed);
    rt_metrics_num(n->metrics, "eval_seconds", eval_s);
    /* undecodable records skipped so far by this worker's loaders (data.skip_bad_records); the
     * coordinator keeps every worker's (`eigenbatch status`, Prometheus) */
    rt_metrics_int(n->metrics, "bad_records", (long long)s_nn_bad_records(n));
    if (ep->recovered)
        rt_metrics_bool(n->metrics, "recovered", 1);
    if (rt_metrics_end(n->metrics) && !n->rc)
        n->rc = RT_ERR_IO;
}

static void *s_eval_main(void *arg)
{
    struct worker_app_eval *ev = arg;
    struct worker_app *n = ev->owner;
    pthread_mutex_lock(&ev->mu);
    for (;;) {
        while (!ev->pending && !ev->quit)
            pthread_cond_wait(&ev->cv, &ev->mu);
        if (!ev->pending)
            break;
        struct worker_app_epoch ep = ev->ep;
        pthread_mutex_unlock(&ev->mu);
        double acc = NAN, tl = NAN, t = rt_progress_now();
        uint64_t tn = 0;
        /* the weights copied into the host mirrors go to the device (nothing to do on a CPU) */
        int rc = nn_net_bind_thread(ev->net) != NN_OK ||
                         nn_net_sync(ev->net,
                                     NN_SYNC_PARAMS_TO_DEVICE | NN_SYNC_BUFFERS_TO_DEVICE) != NN_OK
                     ? rt_err_set(RT_ERR_ARG, "evaluation net: %s", nn_backend_why())
                     : app_model_evaluate(ev->net, ev->test, ev->x, ev->y, &acc, &tl, &tn);
        double dt = rt_progress_now() - t;
        if (rc)
            RT_ERROR("train", "epoch %lld: test evaluation: %s", (long long)ep.epoch, rt_err_msg());
        else
            RT_INFO("train", "epoch %lld: test accuracy %.4f, loss %.4f (%llu samples, %.2f s)",
                    (long long)ep.epoch, acc, tl, (unsigned long long)tn, dt);
        pthread_mutex_lock(&ev->mu);
        if (rc && !n->rc)
            n->rc = rc;
        n->test_accuracy = acc;
        n->test_loss = tl;
        if (!rc && tn > 0)
            n->eval = (struct rt_wire_eval){1, (uint64_t)ep.epoch, tn,
                                            (uint64_t)llround(acc * (double)tn), (float)tl};
        n->eval_seconds += dt;
        __atomic_store_n(&n->bad_test, (uint64_t)rt_loader_bad_records(ev->test), __ATOMIC_RELEASE);
        s_epoch_write(n, &ep, acc, tl, dt);
        ev->pending = 0;
        pthread_cond_broadcast(&ev->cv);
    }
    pthread_mutex_unlock(&ev->mu);
    return NULL;
}

/* Wait until the evaluation thread has nothing pending. */
static void s_eval_wait(struct worker_app_eval *ev)
{
    pthread_mutex_lock(&ev->mu);
    while (ev->pending)
        pthread_cond_wait(&ev->cv, &ev->mu);
    pthread_mutex_unlock(&ev->mu);
}

static int s_eval_new(const struct app_opts *o, struct worker_app *n, int c, int h, int w)
{
    struct worker_app_eval *ev = calloc(1, sizeof *ev);
    if (!ev)
        return rt_err_set(RT_ERR_NOMEM, "evaluation");
    ev->owner = n;
    pthread_mutex_init(&ev->mu, NULL);
    pthread_cond_init(&ev->cv, NULL);
    /* published once whole (the heartbeat thread reads n->ev for the latest evaluation); a
     * failure publishes it too, for s_eval_destroy */
    int rc = s_eval_setup(o, ev, c, h, w);
    __atomic_store_n(&n->ev, ev, __ATOMIC_RELEASE);
    return rc;
}

/* The test loader, the forward-only net and the evaluation thread of ev. */
static int s_eval_setup(const struct app_opts *o, struct worker_app_eval *ev, int c, int h, int w)
{
    /* a GPU worker evaluates on its (first) GPU, beside training on a stream of its own, and its
     * test set decodes with data.loader_threads; a CPU worker's on the evaluation thread alone */
    char dev[APP_MAX_DEVICES][APP_DEVICE_NAME_MAX];
    int nd = 0;
    bool gpu = !app_opts_worker_devices(o, dev, APP_MAX_DEVICES, &nd) && strcmp(dev[0], "cpu");
    struct rt_loader_opts to;
    int rc = app_model_loader_opts(o, (size_t)o->train.micro_batch, &to);
    if (rc)
        return rc;
    if (!gpu)
        to.threads = 0;
    to.out_height = h;
    to.out_width = w;
    to.channels = c;
    rc = rt_loader_new(o->data.test, &to, &ev->test);
    if (rc)
        return rt_err_set(rc, "test set: %s", rt_err_msg());
    int tc, th, tw;
    rt_loader_shape(ev->test, &tc, &th, &tw);
    if (tc != c || th != h || tw != w)
        return rt_err_set(RT_ERR_SHAPE, "test set %s has %dx%dx%d samples, training set %dx%dx%d",
                          o->data.test, tc, th, tw, c, h, w);
    ev->net = nn_zoo_new_flags(o->model.name, c, h, w, (int)o->model.classes,
                               (int)o->train.micro_batch, NN_NET_FORWARD_ONLY, &rc);
    ev->x = malloc((size_t)o->train.micro_batch * (size_t)(c * h * w) * sizeof(float));
    ev->y = malloc((size_t)o->train.micro_batch * sizeof(int32_t));
    if (!ev->net || !ev->x || !ev->y)
        return rt_err_set(RT_ERR_NOMEM, "evaluation net");
    /* where the GPU has no room for a second net, on the CPU, said once */
    if (gpu && app_model_to_device(ev->net, dev[0], "the evaluation net"))
        RT_WARN("train", "test evaluation on the CPU: %s", rt_err_msg());
    if (pthread_create(&ev->thread, NULL, s_eval_main, ev))
        return rt_err_set(RT_ERR_NOMEM, "cannot start the evaluation thread");
    ev->started = 1;
    return RT_OK;
}

static void s_eval_destroy(struct worker_app *n)
{
    struct worker_app_eval *ev = n->ev;
    if (!ev)
        return;
    if (ev->started) {
        pthread_mutex_lock(&ev->mu);
        ev->quit = 1;
        pthread_cond_broadcast(&ev->cv);
        pthread_mutex_unlock(&ev->mu);
        pthread_join(ev->thread, NULL);
    }
    nn_net_destroy(&ev->net);
    rt_loader_destroy(&ev->test);
    free(ev->x);
    free(ev->y);
    pthread_mutex_destroy(&ev->mu);
    pthread_cond_destroy(&ev->cv);
    free(ev);
    n->ev = NULL;
}

/* Hand epoch *ep's evaluation, of these weights, to the evaluation thread (after the one in
 * flight: the copy must not change under the thread). */
static void s_eval_submit(struct worker_app_eval *ev, const struct worker_app_epoch *ep,
                          const float *params, const float *buffers)
{
    s_eval_wait(ev);
    memcpy(nn_net_params(ev->net), params, nn_net_param_count(ev->net) * sizeof(float));
    if (nn_net_buffer_count(ev->net))
        memcpy(nn_net_buffers(ev->net), buffers, nn_net_buffer_count(ev->net) * sizeof(float));
    pthread_mutex_lock(&ev->mu);
    ev->ep = *ep;
    ev->pending = 1;
    pthread_cond_broadcast(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
}

/* The event of epoch *ep, whose final weights are params and buffers: its evaluation handed to
 * the evaluation thread when due (which writes the event), else the event written now, after the
 * evaluation in flight (events stay in epoch order). */
static void s_epoch_emit(struct worker_app *n, const struct worker_app_epoch *ep,
                         const float *params, const float *buffers)
{
    struct worker_app_eval *ev = n->ev;
    if (ev && ep->evaluate) {
        s_eval_submit(ev, ep, params, buffers);
    } else if (ev) {
        s_eval_wait(ev);
        pthread_mutex_lock(&ev->mu);
        s_epoch_write(n, ep, NAN, NAN, 0);
        pthread_mutex_unlock(&ev->mu);
    } else {
        s_epoch_write(n, ep, NAN, NAN, 0);
    }
}

/* The lead at the end of epoch n->epoch, with its final weights: hand the evaluation (when due)
 * and the event to the evaluation thread, or write the event now. Another worker keeps the
 * summary in case the lead dies before writing it (s_lead_begin). Resets the epoch's counters. */
static void s_epoch_end(struct worker_app *n, const float *params, const float *buffers, int final)
{
    const struct app_opts *o = n->o;
    double now = rt_progress_now(), secs = now - n->epoch_t0;
    struct worker_app_epoch ep = {
        .epoch = n->epoch,
        .steps = n->last.step + 1,
        .loss = n->tot_samples ? n->tot_loss / (double)n->tot_samples : NAN,
        .train_accuracy = n->tot_samples ? (double)n->tot_correct / (double)n->tot_samples : NAN,
        .samples = n->tot_samples,
        .batch = n->last.batch,
        .lr = n->last.lr,
        .gamma = n->last.gamma,
        .images_per_s = secs > 0 ? (double)n->epoch_samples / secs : NAN,
        .elapsed = now - n->t0,
        .evaluate = final || (o->train.eval_every > 0 && (n->epoch + 1) % o->train.eval_every == 0),
    };
    n->epoch_t0 = now;
    n->epoch_samples = n->tot_samples = n->tot_correct = 0;
    n->tot_loss = 0;
    if (!n->is_lead) {
        n->pending = ep;
        n->has_pending = 1;
        return;
    }
    RT_INFO("train", "epoch %lld done: loss %.4f, train accuracy %.4f, %.0f images/s",
            (long long)ep.epoch, ep.loss, ep.train_accuracy, secs > 0 ? ep.images_per_s : 0.0);
    s_epoch_emit(n, &ep, params, buffers);
    if (final && n->ev)
        s_eval_wait(n->ev);
}

/* 1 when metrics.jsonl holds the "epoch" event of `epoch`: after its last "resume" event only
 * (the events above a resume belong to the interrupted run) when `since_resume`. */
static int s_epoch_logged(const struct worker_app *n, int64_t epoch, int since_resume)
{
    char path[S_MAX_PATH];
    snprintf(path, sizeof path, "%s/metrics.jsonl", n->o->output_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    while (getline(&line, &cap, f) > 0) {
        if (since_resume && strstr(line, "\"event\":\"resume\""))
            found = 0;
        if (!strstr(line, "\"event\":\"epoch\""))
            continue;
        json_t *j = json_loads(line, 0, NULL);
        json_t *e = j ? json_object_get(j, "epoch") : NULL;
        found |= json_is_integer(e) && json_integer_value(e) == epoch;
        json_decref(j);
    }
    free(line);
    fclose(f);
    return found;
}

/*
 * This worker has just become the lead, at `step`: its outputs. metrics.jsonl is truncated only by
 * the lead of step 0 of a fresh run and gets the "resume" event only from the lead of a resumed
 * run's first step (a restarted worker appends and writes neither); the progress line (--lead)
 * and the test set's evaluation start; and the event of the last epoch that ended under the
 * previous lead is written when metrics.jsonl lacks it (that lead died before writing it).
 */
static int s_lead_begin(struct worker_app *n, uint64_t step)
{
    const struct app_opts *o = n->o;
    int resumed = o->local.resume != NULL, rc;
    n->was_lead = 1;
    if ((rc = s_metrics_open(n, step == 0 && !resumed, resumed && step == n->resume_step)))
        return rc;
    if (step > 0 && !(resumed && step == n->resume_step))
        RT_WARN("train",
                "worker %d is the lead from step %llu: it writes the metrics and the "
                "final weights",
                n->worker_id, (unsigned long long)step);
    if (!n->progress && o->local.lead) {
        long long total = o->schedule.steps > 0 ? (long long)o->schedule.steps * o->schedule.batch
                                                : (long long)o->schedule.epochs *
                                                      (long long)rt_loader_count(n->loader);
        if (!(n->progress = rt_progress_new("train", total, o->train.progress_s, NULL)))
            return rt_err_set(RT_ERR_NOMEM, "progress");
    }
    if (!n->ev && o->data.test) {
        int c, h, w;
        rt_loader_shape(n->loader, &c, &h, &w);
        if ((rc = s_eval_new(o, n, c, h, w)))
            return rc;
    }
    if (n->has_pending && n->metrics && !s_epoch_logged(n, n->pending.epoch, 1)) {
        RT_WARN("train",
                "the event of epoch %lld is missing (its lead is gone): written without "
                "test results",
                (long long)n->pending.epoch);
        s_epoch_write(n, &n->pending, NAN, NAN, 0);
    }
    n->has_pending = 0;
    return RT_OK;
}

/* A run resumed from the checkpoint at the start of epoch E, whose lead died after writing it but
 * before the event of epoch E-1 (its evaluation still running): the weights of the first step
 * are E-1's final ones, so the event is written now from them (test results as due, training
 * totals, which died with the process, NaN), marked "recovered". The events above a resume are
 * the interrupted run's, and the one of E-1 among them counts: it precedes the checkpoint. */
static void s_recover_epoch(struct worker_app *n, const struct worker_step *st, const float *params,
                            const float *buffers)
{
    const struct app_opts *o = n->o;
    if (n->resume_checked)
        return;
    n->resume_checked = 1;
    if (!o->local.resume || st->step != n->resume_step || st->epoch == 0 || st->epoch_offset ||
        !n->metrics || s_epoch_logged(n, (int64_t)st->epoch - 1, 0))
        return;
    int64_t e = (int64_t)st->epoch - 1;
    RT_WARN("train",
            "the event of epoch %lld died with the interrupted run: written again from the "
            "checkpoint's weights",
            (long long)e);
    struct worker_app_epoch ep = {
        .epoch = e,
        .steps = st->step,
        .loss = NAN,
        .train_accuracy = NAN,
        .lr = NAN,
        .gamma = NAN,
        .images_per_s = NAN,
        .elapsed = NAN,
        .evaluate = o->train.eval_every > 0 && (e + 1) % o->train.eval_every == 0,
        .recovered = 1,
    };
    s_epoch_emit(n, &ep, params, buffers);
}

static void s_nn_lead(void *user, int is_lead)
{
    struct worker_app *n = user;
    n->is_lead = is_lead;
}

/* Every worker keeps the run's counters (another may take over as the lead); the lead prints the
 * progress line and writes the step events. */
static void s_nn_step_done(void *user, const struct worker_step *st, uint32_t samples, float loss)
{
    struct worker_app *n = user;
    double now = rt_progress_now();
    if (n->epoch < 0) {
        n->t0 = now;
        n->epoch_t0 = now;
        n->epoch = (int64_t)st->epoch;
        /* a resumed run: the epochs before count as done for the progress line */
        n->skip_samples = st->epoch * rt_loader_count(n->loader) + st->epoch_offset;
    }
    uint32_t s, correct;
    float l;
    worker_nn_last(n->nn, &s, &correct, &l);
    uint32_t global = st->samples ? st->samples : st->batch;
    n->done_samples += global;
    n->epoch_samples += global;
    n->last = *st;
    if (!n->is_lead)
        return;
    double el = now - n->t0;
    char extra[160];
    snprintf(extra, sizeof extra, "epoch %llu loss %.4f acc %.3f B %u lr %.4g",
             (unsigned long long)st->epoch, (double)loss, samples ? (double)correct / samples : 0.0,
             st->batch, (double)st->lr);
    if (n->progress)
        rt_progress_update(n->progress, (long long)(n->skip_samples + n->done_samples), "%s",
                           extra);
    if (st->step % (uint64_t)n->o->train.log_every)
        return;
    RT_DEBUG("train", "step %llu %s", (unsigned long long)st->step, extra);
    if (n->metrics) {
        rt_metrics_begin(n->metrics, "step");
        rt_metrics_int(n->metrics, "epoch", (long long)st->epoch);
        rt_metrics_int(n->metrics, "step", (long long)st->step);
        rt_metrics_num(n->metrics, "loss", loss);
        rt_metrics_num(n->metrics, "train_accuracy", samples ? (double)correct / samples : NAN);
        rt_metrics_int(n->metrics, "batch_size", st->batch);
        rt_metrics_num(n->metrics, "lr", st->lr);
        rt_metrics_num(n->metrics, "gamma", st->gamma);
        rt_metrics_num(n->metrics, "images_per_s", el > 0 ? n->done_samples / el : NAN);
        rt_metrics_num(n->metrics, "elapsed", el);
        if (rt_metrics_end(n->metrics) && !n->rc)
            n->rc = RT_ERR_IO;
    }
}

static uint32_t s_nn_correct(void *user)
{
    struct worker_app *n = user;
    uint32_t s, correct;
    float l;
    worker_nn_last(n->nn, &s, &correct, &l);
    return correct;
}

/* Every worker: the coordinator's totals of a step join its epoch's (they arrive before the
 * epoch's end is noticed: with the weights of the next step). */
static void s_nn_totals(void *user, const struct worker_totals *t)
{
    struct worker_app *n = user;
    n->tot_samples += t->samples;
    n->tot_correct += t->correct;
    n->tot_loss += t->loss_sum;
}

static void s_nn_finish(void *user, uint64_t steps, const float *params, const float *buffers)
{
    struct worker_app *n = user;
    const struct app_opts *o = n->o;
    struct worker_compute c = worker_nn_compute(n->nn);
    if (c.finish)
        c.finish(c.user, steps, params, buffers); /* the final weights into the net */
    int rc = n->is_lead && !n->was_lead ? s_lead_begin(n, steps) : RT_OK;
    if (rc && !n->rc)
        n->rc = rc;
    if (n->epoch >= 0)
        s_epoch_end(n, params, buffers, 1);
    if (!n->is_lead) {
        if (o->output_dir || o->local.out)
            RT_DEBUG("train", "worker %d: the final weights are the lead's to write", n->worker_id);
        return;
    }
    if (n->progress) {
        char extra[64];
        snprintf(extra, sizeof extra, "%llu steps", (unsigned long long)steps);
        rt_progress_finish(n->progress, extra);
    }
    if (o->output_dir) {
        char path[S_MAX_PATH], a_steps[32], a_seed[32];
        snprintf(path, sizeof path, "%s/weights.safetensors", o->output_dir);
        snprintf(a_steps, sizeof a_steps, "%llu", (unsigned long long)steps);
        snprintf(a_seed, sizeof a_seed, "%ld", o->train.seed);
        const char *meta[] = {"model", o->model.name, "steps", a_steps, "seed", a_seed, NULL};
        rc = app_mkdirs(o->output_dir);
        if (!rc)
            rc = app_weights_save_meta(n->net, path, meta);
        if (rc && !n->rc)
            n->rc = rc;
        if (!rc)
            RT_INFO("train", "weights written to %s", path);
    }
    if (o->local.out) {
        size_t np = nn_net_param_count(n->net), nb = nn_net_buffer_count(n->net);
        FILE *fp = fopen(o->local.out, "wb");
        if (!fp || fwrite(params, sizeof(float), np, fp) != np ||
            (nb && fwrite(buffers, sizeof(float), nb, fp) != nb))
            n->rc = rt_err_set(RT_ERR_IO, "%s: %s", o->local.out, strerror(errno));
        if (fp && fclose(fp) && !n->rc)
            n->rc = rt_err_set(RT_ERR_IO, "%s: %s", o->local.out, strerror(errno));
    }
}

/* A decision announces B from a later step. Every buffer of the compute is per micro-batch,
 * reserved at setup, so a larger share needs only room for its micro-batches in the feed's list
 * of announced ranges: said now, steps ahead, when it will not fit (that step would fail). */
static void s_nn_prepare(void *user, uint32_t batch, uint32_t share)
{
    struct worker_app *n = user;
    uint64_t m = (uint64_t)n->o->train.micro_batch, k = (share + m - 1) / m;
    if (k > WORKER_FEED_MAX_PENDING)
        RT_WARN("train",
                "B %u ahead: a share of %u samples is %llu micro-batches of %llu, more than the "
                "%d a step loads; raise train.micro_batch",
                batch, share, (unsigned long long)k, (unsigned long long)m,
                WORKER_FEED_MAX_PENDING);
    else
        RT_DEBUG("train", "B %u ahead: %llu micro-batches of %llu per step, buffers in place",
                 batch, (unsigned long long)k, (unsigned long long)m);
}

/* The last evaluation, for the coordinator (worker_compute.evaluation). */
static int s_nn_evaluation(void *user, struct rt_wire_eval *e)
{
    struct worker_app *n = user;
    struct worker_app_eval *ev = __atomic_load_n(&n->ev, __ATOMIC_ACQUIRE);
    if (!ev)
        return 0;
    pthread_mutex_lock(&ev->mu);
    *e = n->eval;
    pthread_mutex_unlock(&ev->mu);
    return e->present;
}

struct worker_compute worker_app_compute(struct worker_app *n)
{
    return (struct worker_compute){.user = n,
                                   .init = s_nn_init,
                                   .compute = s_nn_step,
                                   .lead = s_nn_lead,
                                   .correct = s_nn_correct,
                                   .totals = s_nn_totals,
                                   .bad_records = s_nn_bad_records,
                                   .step_done = s_nn_step_done,
                                   .prepare = s_nn_prepare,
                                   .finish = s_nn_finish,
                                   .evaluation = s_nn_evaluation};
}
