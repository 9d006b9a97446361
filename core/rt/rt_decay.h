/*
 * rt_decay: the step decay of the learning rate, shared by the training schedule (server_sched)
 * and the eigen service's ABS rule (eig_abs), which must agree on it to the last bit.
 *
 * A decay is a strictly increasing list of n decay epochs d_1 < ... < d_n (each >= 1) and a factor
 * rho in (0, 1]: epoch e trains with the learning rate multiplied by rho^k(e), k(e) the number of
 * decay epochs <= e (PyTorch's MultiStepLR with milestones d_i; epoch d_i is the first to train
 * with the i-th decayed rate). The lists stay in their owners' configurations; these functions read
 * them.
 */
#ifndef RT_DECAY_H
#define RT_DECAY_H

#include <stdint.h>

#define RT_DECAY_MAX 16 /* most decay epochs in a configuration */

/* 0 when the decay is usable, else RT_ERR_CONFIG with a detail prefixed by who ("schedule") naming
 * the fault: more than RT_DECAY_MAX epochs, an epoch below 1 (or, with run_epochs > 0, not below
 * run_epochs), epochs not strictly increasing, rho outside (0, 1]. */
int rt_decay_check(const int32_t *epochs, int32_t n, double rho, int32_t run_epochs,
                   const char *who);

/* rho^k(e): the factor of the learning rate in epoch e. */
double rt_decay_factor(const int32_t *epochs, int32_t n, double rho, int32_t e);

/* 1 when epoch e is a decay epoch (the first to train with a further decayed rate). */
int rt_decay_is_epoch(const int32_t *epochs, int32_t n, int32_t e);

#endif
