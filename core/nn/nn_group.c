/*
 * nn_group: replicas of one model on several devices of one process, whose gradients are summed
 * and whose buffers (BatchNorm running statistics) are averaged in place across the replicas
 * (see nn_net.h, "Replica groups"). On CUDA devices the reduction is one NCCL all-reduce per
 * vector (nn_nccl.h); replicas on the CPU (tests of the splitting and threading around it) are
 * reduced on the host in double precision.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_nccl.h"
#include "nn_net_impl.h"

struct nn_group {
    int n;                        /* replicas */
    nn_net_t *nets[NN_GROUP_MAX]; /* borrowed */
    struct nn_nccl *nccl;         /* device replicas: the communicators; NULL on the CPU */
    double *acc;                  /* CPU replicas: the host accumulator (largest vector) */
};

int nn_net_device(const nn_net_t *net)
{
    return net->be && net->be != nn_backend_cpu() ? net->be->device : -1;
}

int nn_net_finish(nn_net_t *net)
{
    return net->be->sync();
}

/* Refuse with a one-line reason, as nn_backend_get does. */
static int s_refuse(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_refuse(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    nn_report(3, "nn_group_new: %s", why);
    return NN_ERR_ARG;
}

int nn_group_new(nn_net_t *const *nets, int n, char *why, size_t why_len, nn_group_t **out)
{
    *out = NULL;
    if (n < 2 || n > NN_GROUP_MAX)
        return s_refuse(why, why_len, "a replica group has 2..%d nets, not %d", NN_GROUP_MAX, n);
    int devs[NN_GROUP_MAX], on_cpu = nn_net_device(nets[0]) < 0;
    for (int i = 0; i < n; i++) {
        devs[i] = nn_net_device(nets[i]);
        if (nets[i]->n_params != nets[0]->n_params || nets[i]->n_buffers != nets[0]->n_buffers)
            return s_refuse(why, why_len, "replicas %d and %d are not the same model", 0, i);
        if ((devs[i] < 0) != on_cpu)
            return s_refuse(why, why_len, "replica %d is on %s, replica 0 is not", i,
                            devs[i] < 0 ? "the CPU" : "a device");
        for (int j = 0; !on_cpu && j < i; j++)
            if (devs[j] == devs[i])
                return s_refuse(why, why_len, "replicas %d and %d share one device", j, i);
    }
    nn_group_t *g = calloc(1, sizeof *g);
    if (!g)
        return NN_ERR_NOMEM;
    g->n = n;
    memcpy(g->nets, nets, (size_t)n * sizeof *nets);
    size_t big = nets[0]->n_params > nets[0]->n_buffers ? nets[0]->n_params : nets[0]->n_buffers;
    if (on_cpu ? !(g->acc = malloc((big + 1) * sizeof(double)))
               : !(g->nccl = nn_nccl_new(devs, n, why, why_len))) {
        if (!on_cpu)
            nn_report(3, "nn_group_new: %s", why);
        nn_group_destroy(&g);
        return on_cpu ? NN_ERR_NOMEM : NN_ERR_ARG;
    }
    *out = g;
    return NN_OK;
}

/* CPU replicas: v_i = sum (or mean) over i, in place. */
static void s_host_reduce(nn_group_t *g, float **v, size_t count, int average)
{
    for (size_t k = 0; k < count; k++)
        g->acc[k] = 0.0;
    for (int i = 0; i < g->n; i++)
        for (size_t k = 0; k < count; k++)
            g->acc[k] += v[i][k];
    double scale = average ? 1.0 / g->n : 1.0;
    for (int i = 0; i < g->n; i++)
        for (size_t k = 0; k < count; k++)
            v[i][k] = (float)(g->acc[k] * scale);
}

int nn_group_allreduce(nn_group_t *g, unsigned what)
{
    float *grads[NN_GROUP_MAX], *bufs[NN_GROUP_MAX];
    for (int i = 0; i < g->n; i++) {
        grads[i] = g->nets[i]->grads;
        bufs[i] = g->nets[i]->buffers;
    }
    size_t np = g->nets[0]->n_params, nb = g->nets[0]->n_buffers;
    if (!g->nccl) {
        if (what & NN_REDUCE_GRADS)
            s_host_reduce(g, grads, np, 0);
        if ((what & NN_REDUCE_BUFFERS) && nb)
            s_host_reduce(g, bufs, nb, 1);
        return NN_OK;
    }
    if ((what & NN_REDUCE_GRADS) && nn_nccl_allreduce(g->nccl, grads, np, 0))
        return NN_ERR_ARG;
    if ((what & NN_REDUCE_BUFFERS) && nb && nn_nccl_allreduce(g->nccl, bufs, nb, 1))
        return NN_ERR_ARG;
    return NN_OK;
}

void nn_group_destroy(nn_group_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nn_group_t *g = *self_p;
    nn_nccl_destroy(&g->nccl);
    free(g->acc);
    free(g);
    *self_p = NULL;
}
