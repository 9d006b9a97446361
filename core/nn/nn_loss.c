/*
 * nn_loss: mean softmax cross-entropy, its gradient and its R-operator (see nn_loss.h). Sums are
 * accumulated in double so that finite-difference checks of the loss stay meaningful.
 */
#include "nn_loss.h"

#include <math.h>
#include <stddef.h>

double nn_loss_forward(const float *z, const int32_t *labels, int classes, int n, float *p,
                       int *correct)
{
    double loss = 0.0;
    int right = 0;
    for (int i = 0; i < n; i++) {
        float zmax = z[i];
        int arg = 0;
        for (int k = 1; k < classes; k++)
            if (z[(size_t)k * n + i] > zmax) {
                zmax = z[(size_t)k * n + i];
                arg = k;
            }
        double sum = 0.0;
        for (int k = 0; k < classes; k++) {
            double e = exp((double)z[(size_t)k * n + i] - zmax);
            p[(size_t)k * n + i] = (float)e;
            sum += e;
        }
        double inv = 1.0 / sum;
        for (int k = 0; k < classes; k++)
            p[(size_t)k * n + i] = (float)(p[(size_t)k * n + i] * inv);
        loss += log(sum) + zmax - z[(size_t)labels[i] * n + i];
        right += arg == labels[i];
    }
    if (correct)
        *correct = right;
    return loss / n;
}

void nn_loss_backward(const float *p, const int32_t *labels, int classes, int n, float *dz)
{
    float inv_n = 1.0f / (float)n;
    for (int k = 0; k < classes; k++)
        for (int i = 0; i < n; i++)
            dz[(size_t)k * n + i] = p[(size_t)k * n + i] * inv_n;
    for (int i = 0; i < n; i++)
        dz[(size_t)labels[i] * n + i] -= inv_n;
}

void nn_loss_rbackward(const float *p, const float *rz, int classes, int n, float *rdz)
{
    float inv_n = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        double dot = 0.0;
        for (int k = 0; k < classes; k++)
            dot += (double)p[(size_t)k * n + i] * rz[(size_t)k * n + i];
        for (int k = 0; k < classes; k++) {
            size_t j = (size_t)k * n + i;
            rdz[j] = (float)(p[j] * (rz[j] - dot)) * inv_n;
        }
    }
}
