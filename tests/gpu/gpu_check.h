/*
 * gpu_check: what the GPU check's files share (gpu_check.c: whole nets and main; gpu_layers.c:
 * every layer's passes, the loss, SGD and FGSM). Every comparison prints one row of the table.
 */
#ifndef GPU_CHECK_H
#define GPU_CHECK_H

#include "nn_backend.h"

/* Print one row "check | pass | error | tolerance | ok/FAIL"; returns 1 when err is not <= tol
 * (a NaN fails), else 0. */
int gpu_check_row(const char *check, const char *pass, double err, double tol);

/* Every layer kind's forward, R-forward, backward and R-backward, the softmax cross-entropy, SGD
 * and the FGSM sign step on `be` against the CPU backend. Returns 0 when all agree, else 1. */
int gpu_check_layers(const struct nn_backend_ops *be);

#endif
