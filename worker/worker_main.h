/*
 * worker_main: `eigenbatch worker`, one worker as a process.
 */
#ifndef WORKER_MAIN_H
#define WORKER_MAIN_H

#include <stdint.h>

/* `eigenbatch worker [--config FILE] [--set k=v]... [flags]`; returns the exit status. */
int worker_main(int argc, char **argv);

/* Write params then buffers as raw little-endian float32 to path (the --out format). Returns 0
 * or RT_ERR_IO naming the path. */
int worker_main_write_raw(const char *path, const float *params, uint64_t n_params,
                          const float *buffers, uint64_t n_buffers);

#endif
