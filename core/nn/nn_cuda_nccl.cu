/*
 * nn_cuda_nccl: nn_nccl.h on NCCL (built only when NCCL was found: EB_HAVE_NCCL). One thread
 * drives every device: the all-reduce of each device is issued between ncclGroupStart and
 * ncclGroupEnd on that device's own stream, then each stream is waited for.
 */
#ifdef EB_HAVE_NCCL

#include "nn_cuda.h"
#include "nn_nccl.h"

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>

struct nn_nccl {
    int n;                                     /* devices */
    int devices[NN_CUDA_MAX_DEVICES];          /* their CUDA indices */
    ncclComm_t comms[NN_CUDA_MAX_DEVICES];     /* one communicator per device */
    cudaStream_t streams[NN_CUDA_MAX_DEVICES]; /* the all-reduce's stream per device */
    int have_comms;                            /* comms were created */
    int n_streams;                             /* streams created */
};

/* Report a failed NCCL or CUDA call (the expression and the library's message): -1; else 0. */
static int s_nccl(ncclResult_t r, const char *expr, const char *file, int line)
{
    if (r == ncclSuccess)
        return 0;
    nn_cuda_fail(file, line, expr, ncclGetErrorString(r));
    return -1;
}
static int s_cuda(cudaError_t e, const char *expr, const char *file, int line)
{
    if (e == cudaSuccess)
        return 0;
    nn_cuda_fail(file, line, expr, cudaGetErrorString(e));
    return -1;
}
#define NCCL_OK(expr) s_nccl((expr), #expr, __FILE__, __LINE__)
#define CUDA_OK(expr) s_cuda((expr), #expr, __FILE__, __LINE__)

struct nn_nccl *nn_nccl_new(const int *devices, int n, char *why, size_t why_len)
{
    if (n < 2 || n > NN_CUDA_MAX_DEVICES) {
        snprintf(why, why_len, "NCCL group of %d devices (2..%d)", n, NN_CUDA_MAX_DEVICES);
        return NULL;
    }
    struct nn_nccl *c = (struct nn_nccl *)calloc(1, sizeof *c);
    int prev = 0;
    if (!c || CUDA_OK(cudaGetDevice(&prev))) {
        snprintf(why, why_len, "NCCL group: out of memory or no CUDA device");
        free(c);
        return NULL;
    }
    c->n = n;
    for (int i = 0; i < n; i++)
        c->devices[i] = devices[i];
    ncclResult_t r = ncclCommInitAll(c->comms, n, c->devices);
    if (r != ncclSuccess) {
        snprintf(why, why_len, "ncclCommInitAll over %d devices failed: %s", n,
                 ncclGetErrorString(r));
        nn_nccl_destroy(&c);
        return NULL;
    }
    c->have_comms = 1;
    for (int i = 0; i < n; i++) {
        if (CUDA_OK(cudaSetDevice(c->devices[i])) ||
            CUDA_OK(cudaStreamCreateWithFlags(&c->streams[i], cudaStreamNonBlocking))) {
            snprintf(why, why_len, "NCCL group: cannot create a stream on CUDA device %d",
                     c->devices[i]);
            nn_nccl_destroy(&c);
            CUDA_OK(cudaSetDevice(prev));
            return NULL;
        }
        c->n_streams++;
    }
    CUDA_OK(cudaSetDevice(prev));
    return c;
}

int nn_nccl_allreduce(struct nn_nccl *c, float *const *bufs, size_t count, int average)
{
    int prev = 0, rc = 0;
    if (!count)
        return 0;
    if (CUDA_OK(cudaGetDevice(&prev)) || NCCL_OK(ncclGroupStart()))
        return -1;
    for (int i = 0; i < c->n; i++)
        rc |= NCCL_OK(ncclAllReduce(bufs[i], bufs[i], count, ncclFloat, average ? ncclAvg : ncclSum,
                                    c->comms[i], c->streams[i]));
    rc |= NCCL_OK(ncclGroupEnd());
    for (int i = 0; i < c->n; i++)
        rc |= CUDA_OK(cudaSetDevice(c->devices[i])) | CUDA_OK(cudaStreamSynchronize(c->streams[i]));
    rc |= CUDA_OK(cudaSetDevice(prev));
    return rc ? -1 : 0;
}

void nn_nccl_destroy(struct nn_nccl **self_p)
{
    if (!self_p || !*self_p)
        return;
    struct nn_nccl *c = *self_p;
    for (int i = 0; c->have_comms && i < c->n; i++)
        NCCL_OK(ncclCommDestroy(c->comms[i]));
    for (int i = 0; i < c->n_streams; i++)
        if (!CUDA_OK(cudaSetDevice(c->devices[i])))
            CUDA_OK(cudaStreamDestroy(c->streams[i]));
    free(c);
    *self_p = NULL;
}

#endif
