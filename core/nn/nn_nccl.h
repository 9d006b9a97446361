/*
 * nn_nccl: NCCL all-reduce across the CUDA devices of one process (ncclCommInitAll: one
 * communicator per device, all driven by the calling thread), for nn_group.c. Internal to
 * core/nn. Implemented in nn_cuda_nccl.cu when NCCL was found (EB_HAVE_NCCL); otherwise
 * nn_backend.c's stubs refuse with the reason.
 */
#ifndef NN_NCCL_H
#define NN_NCCL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nn_nccl;

/* Communicators for devices[0..n) (distinct indices) and one stream per device. Returns the
 * object (caller owns it; free with nn_nccl_destroy) or NULL with a one-line reason in why. */
struct nn_nccl *nn_nccl_new(const int *devices, int n, char *why, size_t why_len);

/* In place, bufs[i] on devices[i], count floats each: every bufs[i] becomes the sum over i
 * (average: the mean). Every device's earlier work on bufs must be finished. Returns when the
 * result is on every device: 0, or -1 (the failed call reported through nn_report). The calling
 * thread's current device is left as it was. */
int nn_nccl_allreduce(struct nn_nccl *c, float *const *bufs, size_t count, int average);

/* Free the communicators and streams and null the pointer; accepts NULL. */
void nn_nccl_destroy(struct nn_nccl **self_p);

#ifdef __cplusplus
}
#endif

#endif
