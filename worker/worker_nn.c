/*
 * worker_nn: micro-batched gradient computation of a zoo net for the worker loop (see
 * worker_nn.h), on one device inline, or on several devices with one thread per replica.
 */
#include "worker_nn.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn_backend.h"
#include "rt_err.h"
#include "worker_fgsm.h"

#define S_WHY_MAX 256 /* bytes of a replica group's refusal */

struct worker_nn;

/* One replica: its net, micro-batch buffers and the counters of the current step. */
struct wn_rep {
    struct worker_nn *nn; /* owner */
    nn_net_t *net;        /* the net (borrowed) */
    float *x;             /* m samples */
    int32_t *y;           /* m labels */
    worker_fgsm_t *fgsm;  /* adversarial samples (ABSA) */
    uint32_t n;           /* samples of this round's micro-batch (0: none) */
    uint64_t first;       /* its first position in the epoch's order */
    double loss_sum;      /* sum of n * mean loss over the step's micro-batches */
    uint32_t correct;     /* correctly classified samples of the step */
    int rc;               /* first error of its thread (0: none) */
    pthread_t thread;     /* its thread (several devices only) */
    int started;          /* thread was created */
};

/* What the replicas' threads are told to do. */
enum wn_job {
    WN_JOB_LOAD,   /* take the step's weights, zero the gradients and counters */
    WN_JOB_MICRO,  /* run this round's micro-batch, if any */
    WN_JOB_FINISH, /* wait for the device's queued work */
    WN_JOB_PUSH    /* replica 0: the reduced gradients and buffers to the host */
};

struct worker_nn {
    nn_net_t *net;               /* the model, replica 0 (borrowed) */
    struct worker_nn_source src; /* samples */
    struct worker_nn_cfg cfg;    /* options */
    size_t sample_len;           /* C * H * W */
    int n_reps;                  /* devices (1: inline, no threads) */
    struct wn_rep rep[WORKER_NN_MAX_DEVICES];
    nn_group_t *group;            /* the replicas' reduction (several devices) */
    pthread_mutex_t lock;         /* guards the job fields below */
    pthread_cond_t go, done;      /* a new job; the last replica finished it */
    unsigned gen;                 /* job generation (bumped per job) */
    int job;                      /* enum wn_job */
    int pending;                  /* replicas still on the job */
    int quit;                     /* threads end */
    const struct worker_step *st; /* the step being computed */
    const float *params;          /* its weights and buffers (host) */
    const float *buffers;
    uint32_t share;        /* its share */
    uint32_t last_samples; /* counters of the last step */
    uint32_t last_correct;
    float last_loss;
};

/* A 64-bit mix of three values (splitmix64's finaliser over their combination). */
static unsigned long long s_mix(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t z =
        a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull ^ c;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* FGSM callback: dL/dx of the first `count` samples, BatchNorm in eval mode, no parameter
 * gradient. */
static int s_input_grad(void *user, const float *x, int32_t count, float *grad)
{
    struct wn_rep *r = user;
    nn_net_train_pass(r->net, x, r->y, count, NN_BN_EVAL, NN_PASS_INPUT_GRAD, 0.0f, grad, NULL);
    return RT_OK;
}

/* The micro-batch in r->x, r->y (r->n samples from r->first) of a share of `share` samples:
 * FGSM when the step's gamma > 0, then its gradient, scaled by n / share, added to the net's. */
static int s_micro(struct wn_rep *r, const struct worker_step *st, uint32_t share)
{
    worker_nn_t *nn = r->nn;
    /* dropout's masks follow the samples, not the worker or the device: distinct for every
     * micro-batch, the same whatever the split across workers and devices */
    unsigned long long seed = s_mix(nn->cfg.init_seed, st->epoch, r->first);
    nn_net_set_seed(r->net, seed, 0);
    if (st->gamma > 0) {
        int rc = worker_fgsm_apply(r->fgsm, r->x, (int32_t)r->n, st->gamma, nn->cfg.fgsm_epsilon,
                                   WORKER_FGSM_RANGE_BATCH, s_input_grad, r, NULL);
        if (rc)
            return rc;
    }
    int ok = 0;
    nn_net_set_seed(r->net, seed, 0); /* the FGSM pass's mask again */
    float l = nn_net_train_pass(r->net, r->x, r->y, (int)r->n, NN_BN_TRAIN,
                                NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS,
                                (float)r->n / (float)share, NULL, &ok);
    r->loss_sum += (double)l * r->n;
    r->correct += (uint32_t)ok;
    return RT_OK;
}

/* The step's weights and buffers into the replica's net (one upload on a device). */
static int s_load(struct wn_rep *r, const float *params, const float *buffers)
{
    size_t np = nn_net_param_count(r->net), nb = nn_net_buffer_count(r->net);
    memcpy(nn_net_params(r->net), params, np * sizeof(float));
    if (nb)
        memcpy(nn_net_buffers(r->net), buffers, nb * sizeof(float));
    /* the weight pull is the one copy to the device per step (a no-op on the CPU) */
    if (nn_net_sync(r->net, NN_SYNC_PARAMS_TO_DEVICE | NN_SYNC_BUFFERS_TO_DEVICE) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "NN worker: uploading the weights to %s %d failed",
                          nn_net_backend_name(r->net), nn_net_device(r->net));
    nn_net_zero_grad(r->net);
    r->loss_sum = 0;
    r->correct = 0;
    return RT_OK;
}

static int s_job(struct wn_rep *r, int job)
{
    worker_nn_t *nn = r->nn;
    switch (job) {
    case WN_JOB_LOAD:
        return s_load(r, nn->params, nn->buffers);
    case WN_JOB_MICRO:
        return r->n ? s_micro(r, nn->st, nn->share) : RT_OK;
    case WN_JOB_FINISH:
        return nn_net_finish(r->net) == NN_OK
                   ? RT_OK
                   : rt_err_set(RT_ERR_ARG, "NN worker: device %d failed", nn_net_device(r->net));
    case WN_JOB_PUSH:
        if (r != &nn->rep[0])
            return RT_OK;
        /* ... and the gradient push the one copy back */
        return nn_net_sync(r->net, NN_SYNC_GRADS_TO_HOST | NN_SYNC_BUFFERS_TO_HOST) == NN_OK
                   ? RT_OK
                   : rt_err_set(RT_ERR_ARG, "NN worker: downloading the gradient failed");
    }
    return RT_ERR_ARG;
}

/* A replica's thread: bound to its device, it runs each job it is given. */
static void *s_rep_main(void *arg)
{
    struct wn_rep *r = arg;
    worker_nn_t *nn = r->nn;
    if (nn_net_bind_thread(r->net) != NN_OK)
        r->rc = rt_err_set(RT_ERR_ARG, "NN worker: %s", nn_backend_why());
    pthread_mutex_lock(&nn->lock);
    unsigned seen = 0; /* jobs start at generation 1: one posted before this runs is not missed */
    for (;;) {
        while (nn->gen == seen && !nn->quit)
            pthread_cond_wait(&nn->go, &nn->lock);
        if (nn->quit)
            break;
        seen = nn->gen;
        int job = nn->job;
        pthread_mutex_unlock(&nn->lock);
        int rc = r->rc ? r->rc : s_job(r, job);
        pthread_mutex_lock(&nn->lock);
        if (rc && !r->rc)
            r->rc = rc;
        if (--nn->pending == 0)
            pthread_cond_signal(&nn->done);
    }
    pthread_mutex_unlock(&nn->lock);
    return NULL;
}

/* Every replica runs `job`; returns when all have, with the first replica's error (0: none). */
static int s_run_all(worker_nn_t *nn, int job)
{
    pthread_mutex_lock(&nn->lock);
    nn->job = job;
    nn->pending = nn->n_reps;
    nn->gen++;
    pthread_cond_broadcast(&nn->go);
    while (nn->pending > 0)
        pthread_cond_wait(&nn->done, &nn->lock);
    pthread_mutex_unlock(&nn->lock);
    for (int d = 0; d < nn->n_reps; d++)
        if (nn->rep[d].rc)
            return nn->rep[d].rc;
    return RT_OK;
}

/* Buffers of one replica; NN_OK or RT_ERR_NOMEM. */
static int s_rep_init(worker_nn_t *nn, struct wn_rep *r, nn_net_t *net)
{
    int m = nn->cfg.micro_batch;
    r->nn = nn;
    r->net = net;
    r->x = nn_alloc((size_t)m * nn->sample_len * sizeof(float));
    r->y = nn_alloc((size_t)m * sizeof(int32_t));
    r->fgsm = worker_fgsm_new(m, nn->sample_len);
    return r->x && r->y && r->fgsm ? RT_OK : rt_err_set(RT_ERR_NOMEM, "NN worker: buffers");
}

/* Several devices: the group and one thread per replica. */
static int s_devices_start(worker_nn_t *nn)
{
    nn_net_t *nets[WORKER_NN_MAX_DEVICES];
    char why[S_WHY_MAX];
    for (int d = 0; d < nn->n_reps; d++)
        nets[d] = nn->rep[d].net;
    int rc = nn_group_new(nets, nn->n_reps, why, sizeof why, &nn->group);
    if (rc)
        return rt_err_set(rc == NN_ERR_NOMEM ? RT_ERR_NOMEM : RT_ERR_ARG, "worker.devices: %s",
                          rc == NN_ERR_NOMEM ? "out of memory" : why);
    for (int d = 0; d < nn->n_reps; d++) {
        if (pthread_create(&nn->rep[d].thread, NULL, s_rep_main, &nn->rep[d]))
            return rt_err_set(RT_ERR_NOMEM, "NN worker: thread of device %d", d);
        nn->rep[d].started = 1;
    }
    return RT_OK;
}

worker_nn_t *worker_nn_new(nn_net_t *net, const struct worker_nn_source *src,
                           const struct worker_nn_cfg *cfg, int *err)
{
    int rc = RT_ERR_NOMEM;
    if (!net || !src || !src->read || !cfg || cfg->micro_batch < 1 ||
        cfg->micro_batch > nn_net_max_batch(net) || !(cfg->fgsm_epsilon >= 0) ||
        cfg->n_replicas < 0 || cfg->n_replicas >= WORKER_NN_MAX_DEVICES ||
        (cfg->n_replicas && !cfg->replicas)) {
        rc = rt_err_set(RT_ERR_ARG, "NN worker: micro-batch %d must be in 1..%d",
                        cfg ? cfg->micro_batch : 0, net ? nn_net_max_batch(net) : 0);
        goto out_err;
    }
    for (int d = 0; d < cfg->n_replicas; d++)
        if (!cfg->replicas[d] || cfg->micro_batch > nn_net_max_batch(cfg->replicas[d])) {
            rc = rt_err_set(RT_ERR_ARG, "NN worker: replica %d cannot take micro-batch %d", d + 1,
                            cfg->micro_batch);
            goto out_err;
        }
    worker_nn_t *nn = calloc(1, sizeof *nn);
    if (!nn) {
        rt_err_set(rc, "NN worker");
        goto out_err;
    }
    nn->net = net;
    nn->src = *src;
    nn->cfg = *cfg;
    nn->n_reps = 1 + cfg->n_replicas;
    pthread_mutex_init(&nn->lock, NULL);
    pthread_cond_init(&nn->go, NULL);
    pthread_cond_init(&nn->done, NULL);
    int c, h, w;
    nn_net_input_shape(net, &c, &h, &w);
    nn->sample_len = (size_t)c * (size_t)h * (size_t)w;
    rc = RT_OK;
    for (int d = 0; d < nn->n_reps && !rc; d++)
        rc = s_rep_init(nn, &nn->rep[d], d ? cfg->replicas[d - 1] : net);
    if (!rc && nn->n_reps > 1)
        rc = s_devices_start(nn);
    if (rc) {
        worker_nn_destroy(&nn);
        goto out_err;
    }
    return nn;
out_err:
    if (err)
        *err = rc;
    return NULL;
}

void worker_nn_destroy(worker_nn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_nn_t *nn = *self_p;
    pthread_mutex_lock(&nn->lock);
    nn->quit = 1;
    pthread_cond_broadcast(&nn->go);
    pthread_mutex_unlock(&nn->lock);
    for (int d = 0; d < nn->n_reps; d++) {
        struct wn_rep *r = &nn->rep[d];
        if (r->started)
            pthread_join(r->thread, NULL);
        nn_free(r->x);
        nn_free(r->y);
        worker_fgsm_destroy(&r->fgsm);
    }
    nn_group_destroy(&nn->group);
    pthread_cond_destroy(&nn->done);
    pthread_cond_destroy(&nn->go);
    pthread_mutex_destroy(&nn->lock);
    free(nn);
    *self_p = NULL;
}

static int s_init(void *user, float *params, float *buffers)
{
    worker_nn_t *nn = user;
    if (nn_net_bind_thread(nn->net) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "NN worker: %s", nn_backend_why());
    nn_net_init(nn->net, nn->cfg.init_seed);
    memcpy(params, nn_net_params(nn->net), nn_net_param_count(nn->net) * sizeof(float));
    size_t nb = nn_net_buffer_count(nn->net);
    if (nb)
        memcpy(buffers, nn_net_buffers(nn->net), nb * sizeof(float));
    return RT_OK;
}

/* Announce the step's reads, in the order they come (micro-batch k of the share, k = 0, 1, ...:
 * the same order on one device and on several). */
static int s_prefetch(worker_nn_t *nn, const struct worker_step *st)
{
    uint32_t share = st->share_count, m = (uint32_t)nn->cfg.micro_batch;
    for (uint32_t k = 0; nn->src.prefetch && k < share; k += m) {
        int rc = nn->src.prefetch(nn->src.user, st->epoch, st->epoch_offset + st->share_offset + k,
                                  share - k < m ? share - k : m);
        if (rc)
            return rc;
    }
    return RT_OK;
}

/* Read micro-batch starting at share position k into replica r. */
static int s_read(worker_nn_t *nn, struct wn_rep *r, const struct worker_step *st, uint32_t k)
{
    uint32_t share = st->share_count, m = (uint32_t)nn->cfg.micro_batch;
    r->n = share - k < m ? share - k : m;
    r->first = st->epoch_offset + st->share_offset + k;
    return nn->src.read(nn->src.user, st->epoch, r->first, r->n, r->x, r->y);
}

/* One device: every micro-batch in turn, in this thread. */
static int s_compute_one(worker_nn_t *nn, const struct worker_step *st)
{
    struct wn_rep *r = &nn->rep[0];
    uint32_t m = (uint32_t)nn->cfg.micro_batch;
    int rc;
    if (nn_net_bind_thread(r->net) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "NN worker: %s", nn_backend_why());
    if ((rc = s_load(r, nn->params, nn->buffers)) || (rc = s_prefetch(nn, st)))
        return rc;
    for (uint32_t k = 0; k < st->share_count; k += m)
        if ((rc = s_read(nn, r, st, k)) || (rc = s_micro(r, st, st->share_count)))
            return rc;
    return s_job(r, WN_JOB_PUSH);
}

/* Several devices: rounds of one micro-batch per replica, then one all-reduce. */
static int s_compute_many(worker_nn_t *nn, const struct worker_step *st)
{
    uint32_t m = (uint32_t)nn->cfg.micro_batch, share = st->share_count;
    uint32_t round = m * (uint32_t)nn->n_reps;
    int rc;
    if ((rc = s_run_all(nn, WN_JOB_LOAD)) || (rc = s_prefetch(nn, st)))
        return rc;
    for (uint32_t k0 = 0; k0 < share; k0 += round) {
        for (int d = 0; d < nn->n_reps; d++) {
            uint32_t k = k0 + (uint32_t)d * m;
            nn->rep[d].n = 0;
            if (k < share && (rc = s_read(nn, &nn->rep[d], st, k)))
                return rc;
        }
        if ((rc = s_run_all(nn, WN_JOB_MICRO)))
            return rc;
    }
    if ((rc = s_run_all(nn, WN_JOB_FINISH)))
        return rc;
    if (nn_group_allreduce(nn->group, NN_REDUCE_GRADS | NN_REDUCE_BUFFERS) != NN_OK)
        return rt_err_set(RT_ERR_ARG, "NN worker: the all-reduce across devices failed");
    return s_run_all(nn, WN_JOB_PUSH);
}

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    worker_nn_t *nn = user;
    nn_net_t *net = nn->net;
    size_t np = nn_net_param_count(net), nb = nn_net_buffer_count(net);
    uint32_t share = st->share_count;
    nn->st = st;
    nn->params = params;
    nn->buffers = buffers;
    nn->share = share;
    int rc = nn->n_reps > 1 ? s_compute_many(nn, st) : s_compute_one(nn, st);
    if (rc)
        return rc;
    double loss_sum = 0;
    uint32_t correct = 0;
    for (int d = 0; d < nn->n_reps; d++) {
        loss_sum += nn->rep[d].loss_sum;
        correct += nn->rep[d].correct;
    }
    if (share == 0)
        memset(grads, 0, np * sizeof(float));
    else
        memcpy(grads, nn_net_grads(net), np * sizeof(float));
    if (nb)
        memcpy(buffers, nn_net_buffers(net), nb * sizeof(float));
    *samples = share;
    *loss = share ? (float)(loss_sum / share) : 0.0f;
    nn->last_samples = share;
    nn->last_correct = correct;
    nn->last_loss = *loss;
    return RT_OK;
}

static void s_finish(void *user, uint64_t steps, const float *params, const float *buffers)
{
    (void)steps;
    worker_nn_t *nn = user;
    memcpy(nn_net_params(nn->net), params, nn_net_param_count(nn->net) * sizeof(float));
    size_t nb = nn_net_buffer_count(nn->net);
    if (nb)
        memcpy(nn_net_buffers(nn->net), buffers, nb * sizeof(float));
}

struct worker_compute worker_nn_compute(worker_nn_t *nn)
{
    struct worker_compute c = {
        .user = nn, .init = s_init, .compute = s_compute, .finish = s_finish};
    return c;
}

void worker_nn_last(const worker_nn_t *nn, uint32_t *samples, uint32_t *correct, float *loss)
{
    *samples = nn->last_samples;
    *correct = nn->last_correct;
    *loss = nn->last_loss;
}
