/*
 * eigensvc_main: `eigenbatch eigensvc`, and the eigen service's settings from the run's options.
 */
#ifndef EIGENSVC_MAIN_H
#define EIGENSVC_MAIN_H

#include "app_opts.h"
#include "eigensvc.h"

/* `eigenbatch eigensvc [--config FILE] [--set k=v]... [flags]`; returns the exit status. */
int eigensvc_main(int argc, char **argv);

/* `eigenbatch eig`: the top Hessian eigenvalue of a weights file on a dataset (eigensvc_eig.c). */
int eigensvc_eig_main(int argc, char **argv);

/* The eigen service's settings from the run's options (every abs.* key, the schedule it must
 * agree with, the model and the training set): the one place both the embedded service (a
 * thread of `train`) and the process take them from. Fills ec's model, classes, train_db,
 * hessian_batch, seed, block_last_k, bn, power, abs, sync and epochs and zeroes the rest
 * (endpoints, context, metrics, timeouts: the caller's). Strings borrow from o. Returns 0 or a
 * negative rt_err code naming the option. */
int eigensvc_main_cfg(const struct app_opts *o, struct eigensvc_cfg *ec);

#endif
