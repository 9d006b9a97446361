/*
 * worker_synth: synthetic linear least-squares model (see worker_synth.h).
 */
#include "worker_synth.h"

#include <string.h>

#include "nn_base.h"
#include "rt_err.h"

#define S_INIT_SCALE 0.01f /* initial weights in [-S_INIT_SCALE, S_INIT_SCALE] */
#define S_EPOCH_STRIDE 32  /* sample index = epoch << S_EPOCH_STRIDE + position */

static uint64_t s_mix(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1) from a hash. */
static float s_unit(uint64_t h)
{
    return (float)((double)(h >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

int worker_synth_init(struct worker_synth *m, uint64_t seed, uint64_t n_params, uint64_t n_buffers)
{
    memset(m, 0, sizeof *m);
    if (n_params == 0 || n_buffers > n_params)
        return rt_err_set(RT_ERR_ARG, "synthetic model: %llu params, %llu buffers",
                          (unsigned long long)n_params, (unsigned long long)n_buffers);
    m->seed = seed;
    m->n_params = n_params;
    m->n_buffers = n_buffers;
    m->x = nn_alloc(n_params * sizeof(float));
    if (!m->x)
        return rt_err_set(RT_ERR_NOMEM, "synthetic model: %llu floats",
                          (unsigned long long)n_params);
    return RT_OK;
}

void worker_synth_fini(struct worker_synth *m)
{
    nn_free(m->x);
    m->x = NULL;
}

void worker_synth_initial(const struct worker_synth *m, float *params, float *buffers)
{
    for (uint64_t j = 0; j < m->n_params; j++)
        params[j] = S_INIT_SCALE * s_unit(s_mix(m->seed ^ s_mix(~j)));
    if (m->n_buffers)
        memset(buffers, 0, m->n_buffers * sizeof(float));
}

float worker_synth_grad(struct worker_synth *m, uint64_t first, uint32_t n, const float *params,
                        float *grads, float *buffers)
{
    uint64_t p = m->n_params;
    memset(grads, 0, p * sizeof(float));
    if (n == 0)
        return 0.0f;
    double loss = 0;
    float inv = 1.0f / (float)n;
    for (uint64_t j = 0; j < m->n_buffers; j++)
        buffers[j] *= 1.0f - WORKER_SYNTH_BN_MOMENTUM;
    for (uint32_t k = 0; k < n; k++) {
        uint64_t base = s_mix(m->seed + s_mix(first + k));
        double dot = 0;
        for (uint64_t j = 0; j < p; j++) {
            m->x[j] = s_unit(s_mix(base + j));
            dot += (double)m->x[j] * params[j];
        }
        float y = s_unit(s_mix(base ^ 0x5bd1e995ull));
        float r = (float)dot - y;
        loss += 0.5 * (double)r * r;
        for (uint64_t j = 0; j < p; j++)
            grads[j] += inv * r * m->x[j];
        /* fake running statistics: b = (1 - mu) b + mu * mean of x[0..nb) over the share */
        for (uint64_t j = 0; j < m->n_buffers; j++)
            buffers[j] += WORKER_SYNTH_BN_MOMENTUM * inv * m->x[j];
    }
    return (float)(loss / n);
}

static int s_init(void *user, float *params, float *buffers)
{
    worker_synth_initial(user, params, buffers);
    return RT_OK;
}

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct worker_synth *m = user;
    uint64_t first = (st->epoch << S_EPOCH_STRIDE) + st->epoch_offset + st->share_offset;
    *loss = worker_synth_grad(m, first, st->share_count, params, grads, buffers);
    *samples = st->share_count;
    return RT_OK;
}

struct worker_compute worker_synth_compute(struct worker_synth *m)
{
    struct worker_compute c = {.user = m, .init = s_init, .compute = s_compute};
    return c;
}
