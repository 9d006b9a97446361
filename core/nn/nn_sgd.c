/*
 * nn_sgd: SGD with momentum and weight decay, PyTorch semantics (dampening 0, no Nesterov):
 *   d = g + wd * w;  buf = momentum * buf + d;  w -= lr * buf
 * With buf starting at zero the first step sets buf = d, as PyTorch does.
 */
#include "nn_net.h"

#define NN_SGD_OMP_MIN 262144 /* floats below which the update stays on one thread */

void nn_sgd_step(float *w, float *buf, const float *g, size_t n, float lr, float momentum,
                 float weight_decay)
{
#pragma omp parallel for simd if (n > NN_SGD_OMP_MIN)
    for (size_t i = 0; i < n; i++) {
        float b = momentum * buf[i] + (g[i] + weight_decay * w[i]);
        buf[i] = b;
        w[i] -= lr * b;
    }
}
