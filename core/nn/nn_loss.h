/*
 * nn_loss: mean softmax cross-entropy over a batch, with its gradient and the R-operator of the
 * gradient, on logits in the net's feature-major layout z [classes x n] (z[k*n + i] is class k of
 * sample i). Internal to core/nn; the net calls it after its last layer.
 */
#ifndef NN_LOSS_H
#define NN_LOSS_H

#include <stdint.h>

/* L = (1/n) sum_i [logsumexp(z_i) - z_i[label_i]]. Writes the softmax p [classes x n]; counts in
 * *correct (may be NULL) the samples whose arg-max is the label. Labels must be in range. */
double nn_loss_forward(const float *z, const int32_t *labels, int classes, int n, float *p,
                       int *correct);

/* dL/dz = (p - onehot(label)) / n, written (not added) into dz [classes x n]. */
void nn_loss_backward(const float *p, const int32_t *labels, int classes, int n, float *dz);

/* R{dL/dz} = (p .* Rz - p <p, Rz>) / n per sample (the softmax Jacobian applied to Rz), written
 * into rdz [classes x n]. */
void nn_loss_rbackward(const float *p, const float *rz, int classes, int n, float *rdz);

#endif
