/*
 * server_sgd_compat: a weak definition of nn_sgd_step (declared in core/nn/nn_net.h) so that the
 * server links before the NN core's optimiser lands. The NN core's strong definition replaces it
 * at link time; delete this file once core/nn defines nn_sgd_step.
 */
#include <stddef.h>

#include "nn_net.h"

__attribute__((weak)) void nn_sgd_step(float *w, float *buf, const float *g, size_t n, float lr,
                                       float momentum, float weight_decay)
{
    for (size_t i = 0; i < n; i++) {
        buf[i] = momentum * buf[i] + (g[i] + weight_decay * w[i]);
        w[i] -= lr * buf[i];
    }
}
