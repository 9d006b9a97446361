/*
 * server_sched: the one training schedule, agreed by every shard and worker.
 *
 * Given the configuration (method BL | FB | GG | ABS | ABSA, batch sizes, learning rate, decay
 * epochs, ...) and the list of accepted decisions of the eigen service, it answers
 * deterministically "which (B, lr, gamma, schedule version) is in force at step t, in which epoch,
 * at which sample offset". No sockets, no clocks: a pure function of the configuration and the
 * decision list, so that two participants holding the same accepted list always agree.
 *
 * Conventions (all 0-based):
 *  - step t is the t-th SGD update; parameter version v = number of updates applied, so the weights
 *    after step t have version t + 1. A snapshot "at version v" was taken before step v.
 *  - an epoch is one pass over dataset_size samples in the epoch's permutation. Steps consume B
 *    samples each. When B does not divide what is left, the epoch's LAST STEP IS PARTIAL (it takes
 *    the remainder, so every sample is seen once per epoch; the loader supports this) unless
 *    drop_last is set, in which case the remainder is skipped and every step has exactly B samples.
 *    A batch change in the middle of an epoch takes effect at its step; the epoch still ends after
 *    dataset_size samples.
 *  - decay epochs d: epochs e >= d train with the learning rate multiplied by rho once more
 *    (PyTorch MultiStepLR with milestones d; HessianFlow's lr_decay_epoch with the same values;
 *    the rule and its checks are rt_decay's, which eig_abs shares).
 *
 * Learning rate: lr is given at base_batch; the initial learning rate is lr * batch / base_batch
 * (linear scaling rule; base_batch = batch makes it lr). lr_cap bounds the learning rate BEFORE the
 * step decay (the "base" learning rate); the decay multiplies the capped value.
 *  - BL   B = batch; lr(e) = min(cap, lr0) * rho^k(e), k(e) = number of decay epochs <= e.
 *  - FB   B = batch; target lr1 = lr * batch / base_batch; during the first warmup_epochs
 *         epochs the base lr grows linearly (per step, by fractional epoch progress) from lr to
 *         lr1 (Goyal et al.); then lr(e) = min(cap, lr1) * rho^k(e).
 *  - GG   at each decay epoch the batch grows by 1/rho instead of the lr decaying (Smith et al.):
 *         B <- round(B / rho). When that would pass batch_max, B <- batch_max and the lr takes the
 *         rest of the factor: lr *= rho * batch_max / B_old (so lr/B always shrinks by rho;
 *         once B is at batch_max this is the plain decay lr *= rho).
 *  - ABS  B and the base lr come from the last decision in force (initially batch and the initial
 *         lr, which is also eig_abs's lr0); lr(t) = min(cap, lr_base) * rho^k(e); gamma = 0.
 *  - ABSA as ABS; gamma = the decision's gamma (initially gamma0), but 0 from epoch tau on and
 *         whenever B >= batch_max.
 *
 * Decisions. The eigen service publishes decisions {seq, snapshot version, epoch, B, base lr,
 * base gamma}. The coordinator (shard 0) calls server_sched_accept(), which validates the decision,
 * ignores duplicates, older sequence numbers (superseded), decisions computed on a snapshot older
 * than the last batch increase (stale) and decisions that change nothing; otherwise it stamps the
 * step from which the decision applies (never before the next step to be announced, plus
 * apply_lead steps, at an epoch start if so configured, never before an earlier decision's) and
 * the next schedule version, and appends it. Every other participant receives stamped decisions (in
 * any order, duplicated, late) and inserts them with server_sched_insert(): idempotent,
 * out-of-order versions wait until the gap is filled. The step protocol carries the version in
 * force for each step; server_sched_at() with that version refuses (RT_ERR_STATE) when this
 * participant lacks a decision up to it, and the participant catches up with the coordinator's
 * state (server_sched_get_state / server_sched_set_state). A decision applies to steps >= its apply
 * step.
 */
#ifndef SERVER_SCHED_H
#define SERVER_SCHED_H

#include <stddef.h>
#include <stdint.h>

#include "rt_decay.h"
#include "rt_wire.h"

#define SERVER_SCHED_MAX_DECAY RT_DECAY_MAX /* most decay epochs in a configuration */
#define SERVER_SCHED_MAX_DECISIONS 64       /* most accepted decisions in one run */
#define SERVER_SCHED_MICRO_BATCH 128        /* default micro-batch m */
#define SERVER_SCHED_STATE_FORMAT 1         /* version of struct server_sched_state */

typedef struct server_sched server_sched_t;

enum server_sched_method {
    SERVER_SCHED_BL = 0, /* fixed batch, step decay */
    SERVER_SCHED_FB,     /* linear scaling + gradual warm-up */
    SERVER_SCHED_GG,     /* grow the batch at decay epochs */
    SERVER_SCHED_ABS,    /* adaptive batch size from the eigen service */
    SERVER_SCHED_ABSA,   /* ABS + adversarial training */
};

/* Where the coordinator stamps an accepted decision. */
enum server_sched_apply {
    SERVER_SCHED_APPLY_NEXT_STEP = 0, /* step next_step + apply_lead (as soon as possible) */
    SERVER_SCHED_APPLY_NEXT_EPOCH,    /* the first epoch start at or after next_step + apply_lead */
};

/* Outcome of server_sched_accept() / server_sched_insert() (>= 0; errors are negative rt_err):
 * the verdicts the wire carries to the eigen service (enum rt_wire_verdict), under this module's
 * names. */
enum server_sched_verdict {
    SERVER_SCHED_ACCEPTED = RT_WIRE_VERDICT_ACCEPTED,     /* appended as a new version */
    SERVER_SCHED_DUPLICATE = RT_WIRE_VERDICT_DUPLICATE,   /* already held: nothing changes */
    SERVER_SCHED_SUPERSEDED = RT_WIRE_VERDICT_SUPERSEDED, /* older sequence number than seen */
    SERVER_SCHED_STALE = RT_WIRE_VERDICT_STALE,       /* snapshot older than the last increase */
    SERVER_SCHED_NOCHANGE = RT_WIRE_VERDICT_NOCHANGE, /* same (B, lr, gamma) as in force */
    SERVER_SCHED_PENDING = RT_WIRE_VERDICT_PENDING,   /* (insert) waits for earlier versions */
};

struct server_sched_config {
    enum server_sched_method method; /* schedule kind */
    int64_t dataset_size;            /* N: samples per epoch (> 0) */
    int32_t epochs;                  /* epochs of the run (> 0) */
    int64_t batch;                   /* initial global batch B (> 0) */
    int64_t base_batch;              /* batch at which lr is given (> 0; usually = batch or m) */
    int64_t batch_max;               /* B_max (>= batch) */
    int32_t micro_batch;             /* m, samples per micro-batch (> 0) */
    int32_t drop_last;               /* 1: skip an epoch's incomplete last batch; 0: partial step */
    double lr;                       /* learning rate at base_batch (> 0) */
    double lr_cap;                   /* bound on the base (pre-decay) lr; 0 = none */
    double momentum;                 /* SGD momentum (PyTorch semantics), in [0, 1) */
    double weight_decay;             /* L2 weight decay (>= 0) */
    int32_t warmup_epochs;           /* FB: epochs of gradual warm-up (>= 0) */
    int32_t n_decay;                 /* number of entries in decay_epochs */
    int32_t decay_epochs[SERVER_SCHED_MAX_DECAY]; /* strictly increasing, each in [1, epochs) */
    double rho;                                   /* decay factor in (0, 1] (0.1, 0.2, ...) */
    double gamma0;                 /* ABSA: initial adversarial fraction, in [0, 1] */
    double epsilon;                /* ABSA: FGSM step (carried for the workers, >= 0) */
    int32_t tau;                   /* ABSA: gamma = 0 from this epoch on (>= 0) */
    enum server_sched_apply apply; /* where the coordinator stamps decisions */
    int32_t apply_lead;            /* steps from the next announced step to the earliest apply
                                      step (>= 0): time for the stamped decision to reach every
                                      participant before it is needed */
};

/* A decision of the eigen service, as held in the schedule (stamped by the coordinator). */
struct server_sched_decision {
    uint64_t seq;              /* eigen service's sequence number (increasing) */
    uint64_t snapshot_version; /* parameter version of the snapshot it was computed on */
    int32_t epoch;             /* the epoch whose end produced it */
    int64_t batch;      /* B from apply_step on, in [1, batch_max], never below the B in force */
    double lr_base;     /* learning rate before step decay (> 0) */
    double gamma_base;  /* adversarial fraction before the tau / B_max rules, in [0, 1] */
    double lambda;      /* measured eigenvalue (informational; NaN: none) */
    int64_t apply_step; /* stamped: first step it applies to */
    uint32_t version;   /* stamped: schedule version, 1-based position in the accepted list */
};

/* What is in force at one step. */
struct server_sched_point {
    int64_t step;          /* the step asked about */
    int32_t epoch;         /* its epoch (== epochs when the run is over) */
    int32_t done;          /* 1: step is past the last epoch; the fields below are zero */
    int64_t step_in_epoch; /* steps taken earlier in the same epoch */
    int64_t offset;        /* index of the step's first sample in the epoch's permutation */
    int64_t samples;       /* samples in this step: B, or the remainder for a partial last step */
    int64_t batch;         /* nominal global batch B */
    double lr;             /* learning rate of this step's update */
    double gamma;          /* adversarial fraction (ABSA), else 0 */
    double momentum;       /* SGD momentum */
    double weight_decay;   /* weight decay */
    uint32_t version;      /* schedule version in force (0 = no decision yet) */
};

/* Plain, fixed-size copy of the schedule (for checkpoints and late joiners). */
struct server_sched_state {
    uint32_t format;                   /* SERVER_SCHED_STATE_FORMAT */
    uint32_t n_decisions;              /* accepted decisions held, versions 1..n_decisions */
    uint64_t last_seq;                 /* highest sequence number seen (accepted or no-change) */
    uint64_t has_seq;                  /* 1 when last_seq is meaningful */
    struct server_sched_config config; /* the configuration */
    struct server_sched_decision decisions[SERVER_SCHED_MAX_DECISIONS]; /* versions 1.. */
};

/* Fill cfg with the paper's defaults for method (m = 128, B_max = 16384, rho = 0.2, gamma0 = 0.2,
 * epsilon = 0.005, tau = epochs / 2, momentum 0.9, weight decay 5e-4, no cap, no decay epochs) for
 * a dataset of dataset_size samples trained for epochs epochs, initial batch 128 and lr 0.1. */
void server_sched_config_default(struct server_sched_config *cfg, enum server_sched_method method,
                                 int64_t dataset_size, int32_t epochs);

/* 0 when cfg is usable, else RT_ERR_CONFIG with a detail naming the field (rt_err_msg()). */
int server_sched_config_check(const struct server_sched_config *cfg);

/* Method name ("BL", "FB", "GG", "ABS", "ABSA") and back; parse returns 0 or RT_ERR_CONFIG. */
const char *server_sched_method_name(enum server_sched_method m);
int server_sched_method_parse(const char *name, enum server_sched_method *out);

/* Short description of a verdict ("stale: snapshot older than the last batch increase"):
 * rt_wire_verdict_str. */
const char *server_sched_verdict_str(int verdict);

/* New schedule with no decisions. Returns NULL on an invalid configuration (detail in
 * rt_err_msg()) or no memory. Caller owns the result; free with server_sched_destroy. The
 * configuration is copied. */
server_sched_t *server_sched_new(const struct server_sched_config *cfg);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void server_sched_destroy(server_sched_t **self_p);

/* The configuration in force; valid until the schedule is destroyed or its state is set. */
const struct server_sched_config *server_sched_config(const server_sched_t *self);

/* Number of accepted decisions held contiguously (= the highest version this participant can use).
 */
uint32_t server_sched_version(const server_sched_t *self);

/* Accepted decision of version v (1-based), or NULL. Valid until the schedule changes. */
const struct server_sched_decision *server_sched_decision(const server_sched_t *self, uint32_t v);

/*
 * What is in force at step t. known_version is the schedule version the step protocol announced
 * for step t, or -1 when the caller is the coordinator (use everything accepted). Only decisions of
 * version <= known_version with apply_step <= t count. Returns 0, RT_ERR_ARG (t < 0), or
 * RT_ERR_STATE when this participant lacks a decision up to known_version or its list disagrees
 * with the announcement (catch up with server_sched_set_state, then ask again).
 */
int server_sched_at(const server_sched_t *self, int64_t t, int64_t known_version,
                    struct server_sched_point *out);

/*
 * The point at the first step of epoch `epoch` in [0, epochs], with every decision held now
 * (decisions accepted later may move it). For epoch = epochs the point is `done` and its step is
 * the number of steps of the whole run. Returns 0 or RT_ERR_ARG.
 */
int server_sched_epoch_start(const server_sched_t *self, int32_t epoch,
                             struct server_sched_point *out);

/*
 * Coordinator: consider decision d (its apply_step and version are ignored) while next_step is the
 * first step not yet announced. Returns a verdict >= 0; on SERVER_SCHED_ACCEPTED, *stamped (if not
 * NULL) receives the stamped decision to publish. Negative on a malformed decision (RT_ERR_FORMAT:
 * value out of range, named), on a method that takes no decisions, when a decision would shrink the
 * batch, or when the list is full (RT_ERR_TOOBIG), or when next_step goes backwards (RT_ERR_STATE).
 * Accepting the same decision twice returns SERVER_SCHED_DUPLICATE the second time.
 */
int server_sched_accept(server_sched_t *self, const struct server_sched_decision *d,
                        int64_t next_step, struct server_sched_decision *stamped);

/*
 * Participant: insert a decision stamped by the coordinator. Returns SERVER_SCHED_ACCEPTED (now
 * usable), SERVER_SCHED_PENDING (waits for earlier versions), SERVER_SCHED_DUPLICATE (identical one
 * already held), or a negative code: RT_ERR_FORMAT (malformed), RT_ERR_STATE (contradicts a held
 * decision: same version with other contents, or apply steps out of order).
 */
int server_sched_insert(server_sched_t *self, const struct server_sched_decision *d);

/* Copy the schedule (config, accepted decisions) into *out. */
void server_sched_get_state(const server_sched_t *self, struct server_sched_state *out);

/* Replace this schedule by *in (validated: format, config, each decision, order). Pending
 * out-of-order decisions of this participant that agree with *in are kept. 0 or a negative code;
 * on error the schedule is unchanged. */
/* Check a state's ranges and consistency (as set_state and decode do). 0 or an rt_err code
 * naming the field. */
int server_sched_state_check(const struct server_sched_state *st);

int server_sched_set_state(server_sched_t *self, const struct server_sched_state *in);

/* Little-endian byte form of a state, for checkpoint files and the wire:
 * encode writes at most cap bytes, sets *len; RT_ERR_SIZE when cap is too small.
 * decode checks magic, format, sizes and values; RT_ERR_FORMAT / RT_ERR_TRUNCATED / RT_ERR_VERSION.
 */
size_t server_sched_state_encoded_size(const struct server_sched_state *st);
int server_sched_state_encode(const struct server_sched_state *st, uint8_t *buf, size_t cap,
                              size_t *len);
int server_sched_state_decode(const uint8_t *buf, size_t len, struct server_sched_state *out);

/* Steps in a whole epoch of n samples at batch b: ceil(n / b), or floor(n / b) with drop_last.
 * Returns 0 for n <= 0 or b <= 0. */
int64_t server_sched_steps_per_epoch(int64_t n, int64_t b, int drop_last);

#endif
