/*
 * worker_mem: the resident memory a worker states at start and holds. A long run's worker must not
 * grow: every buffer it uses is reserved before the first step (the net's memory plan, the
 * exchange buffers of worker_loop, the micro-batch and FGSM inputs, the loader's stated bound and,
 * for the evaluation thread, a second net and loader), so its peak resident memory stays under
 * their sum plus what the process held when the worker opened (code, libraries, configuration)
 * plus OpenBLAS's per-thread buffers. bench/bench_imagenet_resume.sh checks the peak (VmHWM) of
 * every worker process of a killed and resumed run against the stated bound.
 */
#ifndef WORKER_MEM_H
#define WORKER_MEM_H

#include <stddef.h>

#include "app_opts.h"
#include "nn_net.h"

/* Bytes of each part of the bound (total = their sum). */
struct worker_mem {
    size_t runtime; /* resident at open + OpenBLAS buffers of train.threads math threads */
    size_t net;     /* the training net's memory plan (nn_net_mem_plan) */
    size_t loop;    /* worker_loop's weights, gradients, buffers and one message of each way */
    size_t inputs;  /* the micro-batch and its FGSM gradient */
    size_t loader;  /* the training loader's stated bound */
    size_t eval;    /* the evaluation thread's net, inputs and loader (when data.test is set) */
    size_t total;   /* sum */
};

/* Resident memory of this process now (VmRSS), in bytes; 0 when /proc cannot be read. */
size_t worker_mem_resident(void);

/* Fill *m for a worker of options o whose net and training loader are built; `resident` is
 * worker_mem_resident() taken before they were. Logs the bound in one line. */
void worker_mem_bound(const struct app_opts *o, const nn_net_t *net, size_t loader_bound,
                      size_t resident, struct worker_mem *m);

#endif
