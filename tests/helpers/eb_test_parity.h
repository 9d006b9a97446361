/*
 * eb_test_parity: the NN core against PyTorch (Debian's python3-torch, python3-torchvision for
 * torchvision's models) on the same weights and inputs, one zoo model at a time: logits, loss,
 * parameter gradient, input gradient, BatchNorm running statistics after one train-mode pass, and
 * one Hessian-vector product, with BatchNorm (and dropout) in eval and in train mode. Agreement is
 * norm-wise relative error of whole vectors, ||ours - torch|| / ||torch|| <= EB_PARITY_TOL;
 * PyTorch computes in float64 (--double), so the bound measures the float32 error of our side
 * alone.
 *
 * Weights go both ways: bench/torch_zoo.py exports a seeded PyTorch model (num_batches_tracked
 * included, BN state perturbed), app_weights_load reads it, app_weights_save writes it back and
 * bench/torch_ref.py loads our file with PyTorch's strict load_state_dict. Dropout uses the same
 * masks on both sides: our pass seed is fixed (nn_net_set_seed) and torch_ref.py rebuilds them.
 * Shared by test_torch_parity (the CIFAR-style models) and test_torch_parity_imagenet.
 * EB_PARITY_MODEL=name runs one case; EB_PARITY_TENSORS=1 prints, for a failing gradient or HVP,
 * the error of every parameter tensor.
 */
#ifndef EB_TEST_PARITY_H
#define EB_TEST_PARITY_H

#include <stddef.h>

/* Norm-wise relative tolerance of every compared vector. */
#define EB_PARITY_TOL 1e-4
/* Largest batch of a case. */
#define EB_PARITY_N 6

/* One parity case: a model at a small input size. */
struct eb_parity_case {
    const char *model; /* zoo name */
    int c, h, w;       /* input shape */
    int classes;       /* class count */
    int n;             /* samples, <= EB_PARITY_N */
    int heavy;         /* skipped under the sanitizer (EB_SANITIZED) */
    int torchvision;   /* PyTorch's side is torchvision's module (skipped without it) */
    int eval_only;     /* compared in eval mode only */
};

/* system(cmd)'s exit status, -1 when it did not exit normally. */
int eb_parity_system(const char *cmd);

/* Run every case (EB_PARITY_MODEL=name: that one only), printing every comparison, and fail the
 * current cmocka test when any differs. */
void eb_parity_run(const struct eb_parity_case *cases, size_t n);

#endif
