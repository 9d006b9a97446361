/*
 * worker_mem: see worker_mem.h.
 */
#include "worker_mem.h"

#include <stdio.h>
#include <string.h>

#include "nn_backend.h"
#include "rt_log.h"

#define S_MIB (1024.0 * 1024.0)
/* OpenBLAS reserves one buffer of BUFFER_SIZE (32 MiB on x86-64) per thread it runs. */
#define S_BLAS_BUFFER_BYTES ((size_t)32 << 20)
/* Parameter-sized vectors of worker_loop: weights and gradients, plus one pulled and one pushed
 * message in flight. */
#define S_LOOP_PARAM_VECTORS 4

size_t worker_mem_resident(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb > 0 ? (size_t)kb * 1024 : 0;
}

void worker_mem_bound(const struct app_opts *o, const nn_net_t *net, size_t loader_bound,
                      size_t resident, struct worker_mem *m)
{
    memset(m, 0, sizeof *m);
    struct nn_mem_plan plan;
    nn_net_mem_plan(net, &plan);
    int c, h, w;
    nn_net_input_shape(net, &c, &h, &w);
    size_t mb = (size_t)nn_net_max_batch(net);
    size_t sample = (size_t)c * (size_t)h * (size_t)w * sizeof(float);
    size_t threads = o->train.threads > 0 ? (size_t)o->train.threads : 1;

    m->runtime = resident + threads * S_BLAS_BUFFER_BYTES;
    m->net = plan.total;
    m->loop =
        (S_LOOP_PARAM_VECTORS * nn_net_param_count(net) + nn_net_buffer_count(net)) * sizeof(float);
    m->inputs = 2 * mb * sample + mb * sizeof(int32_t);
    m->loader = loader_bound;
    /* the evaluation net holds only the activations a forward pass has live at once; the
     * evaluation loader decodes on its caller: no more than the training loader's bound */
    m->eval = o->data.test ? plan.params + nn_net_forward_only_act_bytes(net) + plan.workspace +
                                 mb * sample + loader_bound
                           : 0;
    m->total = m->runtime + m->net + m->loop + m->inputs + m->loader + m->eval;
    RT_INFO("worker",
            "memory bound %.1f MiB = runtime %.1f (resident at start + OpenBLAS %zu x %.0f) + "
            "net %.1f (%s, micro-batch %zu: parameters %.1f, activations %.1f, workspace %.1f) + "
            "exchange %.1f + inputs %.1f + loader %.1f + evaluation %.1f",
            m->total / S_MIB, m->runtime / S_MIB, threads, S_BLAS_BUFFER_BYTES / S_MIB,
            m->net / S_MIB, o->model.name, mb, plan.params / S_MIB, plan.activations / S_MIB,
            plan.workspace / S_MIB, m->loop / S_MIB, m->inputs / S_MIB, m->loader / S_MIB,
            m->eval / S_MIB);
}
