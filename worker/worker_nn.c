/*
 * worker_nn: micro-batched gradient computation of a zoo net for the worker loop (see
 * worker_nn.h).
 */
#include "worker_nn.h"

#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "worker_fgsm.h"

struct worker_nn {
    nn_net_t *net;               /* the model (borrowed) */
    struct worker_nn_source src; /* samples */
    struct worker_nn_cfg cfg;    /* options */
    size_t sample_len;           /* C * H * W */
    float *x;                    /* m samples */
    int32_t *y;                  /* m labels */
    worker_fgsm_t *fgsm;         /* adversarial samples (ABSA) */
    uint32_t last_samples;       /* counters of the last step */
    uint32_t last_correct;
    float last_loss;
};

worker_nn_t *worker_nn_new(nn_net_t *net, const struct worker_nn_source *src,
                           const struct worker_nn_cfg *cfg, int *err)
{
    int rc = RT_ERR_NOMEM;
    if (!net || !src || !src->read || !cfg || cfg->micro_batch < 1 ||
        cfg->micro_batch > nn_net_max_batch(net) || !(cfg->fgsm_epsilon >= 0)) {
        rc = rt_err_set(RT_ERR_ARG, "NN worker: micro-batch %d must be in 1..%d",
                        cfg ? cfg->micro_batch : 0, net ? nn_net_max_batch(net) : 0);
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
    int c, h, w;
    nn_net_input_shape(net, &c, &h, &w);
    nn->sample_len = (size_t)c * (size_t)h * (size_t)w;
    nn->x = nn_alloc((size_t)cfg->micro_batch * nn->sample_len * sizeof(float));
    nn->y = nn_alloc((size_t)cfg->micro_batch * sizeof(int32_t));
    nn->fgsm = worker_fgsm_new(cfg->micro_batch, nn->sample_len);
    if (!nn->x || !nn->y || !nn->fgsm) {
        rt_err_set(rc, "NN worker: micro-batch buffers");
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
    nn_free(nn->x);
    nn_free(nn->y);
    worker_fgsm_destroy(&nn->fgsm);
    free(nn);
    *self_p = NULL;
}

/* FGSM callback: dL/dx of the first `count` samples, BatchNorm in eval mode, no parameter
 * gradient. */
static int s_input_grad(void *user, const float *x, int32_t count, float *grad)
{
    worker_nn_t *nn = user;
    nn_net_train_pass(nn->net, x, nn->y, count, NN_BN_EVAL, NN_PASS_INPUT_GRAD, 0.0f, grad, NULL);
    return RT_OK;
}

static int s_init(void *user, float *params, float *buffers)
{
    worker_nn_t *nn = user;
    nn_net_init(nn->net, nn->cfg.init_seed);
    memcpy(params, nn_net_params(nn->net), nn_net_param_count(nn->net) * sizeof(float));
    size_t nb = nn_net_buffer_count(nn->net);
    if (nb)
        memcpy(buffers, nn_net_buffers(nn->net), nb * sizeof(float));
    return RT_OK;
}

/* A 64-bit mix of three values (splitmix64's finaliser over their combination). */
static unsigned long long s_mix(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t z =
        a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull) * 0xbf58476d1ce4e5b9ull ^ c;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    worker_nn_t *nn = user;
    nn_net_t *net = nn->net;
    size_t np = nn_net_param_count(net), nb = nn_net_buffer_count(net);
    memcpy(nn_net_params(net), params, np * sizeof(float));
    if (nb)
        memcpy(nn_net_buffers(net), buffers, nb * sizeof(float));
    /* the weight pull is the one copy to the device per step (a no-op on the CPU) */
    if (nn_net_sync(net, NN_SYNC_PARAMS_TO_DEVICE | NN_SYNC_BUFFERS_TO_DEVICE) != NN_OK)
        return RT_ERR_ARG;
    nn_net_zero_grad(net);
    uint32_t share = st->share_count, m = (uint32_t)nn->cfg.micro_batch, correct = 0;
    double loss_sum = 0;
    for (uint32_t k = 0; nn->src.prefetch && k < share; k += m) {
        int rc = nn->src.prefetch(nn->src.user, st->epoch, st->epoch_offset + st->share_offset + k,
                                  share - k < m ? share - k : m);
        if (rc)
            return rc;
    }
    for (uint32_t k = 0; k < share; k += m) {
        uint32_t n = share - k < m ? share - k : m;
        uint64_t first = st->epoch_offset + st->share_offset + k;
        int rc = nn->src.read(nn->src.user, st->epoch, first, n, nn->x, nn->y);
        if (rc)
            return rc;
        /* dropout's masks follow the samples, not the worker: distinct for every micro-batch,
         * the same whatever the split across workers */
        unsigned long long seed = s_mix(nn->cfg.init_seed, st->epoch, first);
        nn_net_set_seed(net, seed, 0);
        if (st->gamma > 0) {
            rc = worker_fgsm_apply(nn->fgsm, nn->x, (int32_t)n, st->gamma, nn->cfg.fgsm_epsilon,
                                   WORKER_FGSM_RANGE_BATCH, s_input_grad, nn, NULL);
            if (rc)
                return rc;
        }
        int ok = 0;
        nn_net_set_seed(net, seed, 0); /* the FGSM pass's mask again */
        float l = nn_net_train_pass(net, nn->x, nn->y, (int)n, NN_BN_TRAIN,
                                    NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS,
                                    (float)n / (float)share, NULL, &ok);
        loss_sum += (double)l * n;
        correct += (uint32_t)ok;
    }
    /* ... and the gradient push the one copy back */
    if (nn_net_sync(net, NN_SYNC_GRADS_TO_HOST | NN_SYNC_BUFFERS_TO_HOST) != NN_OK)
        return RT_ERR_ARG;
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
