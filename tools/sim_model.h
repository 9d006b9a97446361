/*
 * sim_model: the wall-clock time of a training schedule on p processes, under two cost models. Pure
 * arithmetic: no I/O, no clocks; `eigenbatch simulate` (cmd_simulate.c) reads the inputs and
 * prints the results.
 *
 * A schedule is a list of phases, each a number of SGD updates at one global batch size B (with
 * the share gamma of adversarial samples under ABSA) and the number of top-eigenvalue (Hessian)
 * computations at the epoch ends it covers. For one update on p processes:
 *
 *   compute = max(floor_s, ceil(B / p) * sample_s) * a
 *       every process computes its share of B; floor_s is the least time of a step on one device
 *       (a GPU's small-batch plateau; 0 on a CPU). a = SIM_MODEL_RING: adv_factor for an
 *       adversarial run, 1 otherwise (the paper charges every ABSA update the same); SIM_MODEL_PS:
 *       1 + gamma * fgsm_cost (FGSM costs a forward and an input-gradient backward of the first
 *       ceil(gamma m) samples of each micro-batch, worker_nn.c).
 *
 *   SIM_MODEL_RING (the paper's model, Yao et al. Table 3): ring all-reduce over all p processes,
 *       alpha-beta model, and every Hessian computation on the critical path:
 *         comm = 2 (p - 1) / p * bytes / bw + 2 (p - 1) * latency_s
 *         per Hessian computation: hessian_s
 *
 *   SIM_MODEL_PS (this system): W = p workers push their gradient to S shards and pull the new
 *       weights (two phases). A worker sends its whole gradient (bytes, split over the shards), a
 *       shard receives W slices of bytes / S; every message costs msg_s at its endpoint and a
 *       shard handles W of them, a worker S:
 *         comm = 2 * (max(bytes, bytes * W / S) / bw + latency_s + max(W, S) * msg_s)
 *       The eigen service runs on its own device: under async decisions no Hessian time is on the
 *       critical path; under sync each measured epoch end waits for a snapshot pull and the
 *       computation: hessian_s + bytes / bw + latency_s.
 *
 * Both models run compute and communication one after the other (no overlap), as the paper does.
 */
#ifndef SIM_MODEL_H
#define SIM_MODEL_H

#include <stddef.h>

#define SIM_NAME_MAX 32   /* schedule names: "BL", "ABSA", a run's label */
#define SIM_DECAYS_MAX 16 /* GG growth epochs */

/* The paper's setting (Yao et al., Table 3: ResNet-18 on ImageNet, 512 processes). */
#define SIM_PAPER_PROCS 512
#define SIM_IMAGENET_SAMPLES 1281167.0 /* ILSVRC-2012 training images */
#define SIM_RESNET18_PARAMS 11689512.0 /* torchvision resnet18, fp32 */
#define SIM_PAPER_EPOCHS 90.0
#define SIM_PAPER_BATCH 256.0          /* BL's batch, and where GG and ABS start */
#define SIM_PAPER_BATCH_MAX 16384.0    /* ABS/ABSA's B_max: 32 samples on each of 512 processes */
#define SIM_PAPER_COMPUTE_S 2.2e-2     /* compute per update */
#define SIM_PAPER_COMPUTE_ADV_S 3.6e-2 /* ABSA's compute per update */
#define SIM_PAPER_COMM_S 1.5e-2        /* communication per update, 512 processes */
#define SIM_PAPER_HESSIAN_S 1.15       /* one Hessian (top eigenvalue) computation */
#define SIM_PAPER_LINK_BW 10e9         /* assumed link, bytes/s (~100 Gb/s); latency derived */

/* Readings on the build machine (one core of a shared 2-core Intel Xeon VM with AVX-512, OpenBLAS's
 * Haswell kernels, tcp loopback; the commands and all readings are in bench/RESULTS.md, "Simulated
 * wall-clock time"). sim_here_hw derives the model's constants from them. */
#define SIM_HERE_BENCH_BATCH 8.0         /* bench train resnet18_cifar --input 3x56x56 --batch 8 */
#define SIM_HERE_STEP_S 1.675            /* its best training step, 1 thread */
#define SIM_HERE_HVP_S 4.315             /* its best Hessian-vector product */
#define SIM_HERE_FLOPS_56 3409203712.0   /* its forward FLOPs per image (flops_per_image) */
#define SIM_HERE_ROUND_TINY_S 39.1e-6    /* bench ps --floats 256: push+pull round */
#define SIM_HERE_ROUND_RESNET_S 87.97e-3 /* bench ps --floats 11689512: push+pull round */
#define SIM_HERE_FRAMES_1024 18.31e-3    /* bench ps --floats 1048576 --chunk 1024: round */
#define SIM_HERE_FRAMES_131072 6.235e-3  /* the same with --chunk 131072 (default frames) */
/* Software cost of one message (frame) at an endpoint: the extra round time of 2 x (1024 - 8)
 * more frames. */
#define SIM_HERE_MSG_S ((SIM_HERE_FRAMES_1024 - SIM_HERE_FRAMES_131072) / (2 * (1024.0 - 8.0)))
#define SIM_HERE_HVP_ITERS 10.0      /* the paper preset's most power iterations */
#define SIM_HERE_HESSIAN_BATCH 128.0 /* abs.hessian_batch */

enum sim_model_kind {
    SIM_MODEL_RING, /* the paper's: ring all-reduce, Hessian on the critical path */
    SIM_MODEL_PS,   /* this system: sharded servers, eigen service on its own device */
};

enum sim_method { SIM_BL, SIM_GG, SIM_ABS, SIM_ABSA, SIM_METHODS };

/* One process's device and link. */
struct sim_hw {
    double floor_s;    /* least compute time of an update on a process, s */
    double sample_s;   /* training compute per sample on a process (forward + backward), s */
    double adv_factor; /* RING: compute factor of every update of an adversarial run */
    double fgsm_cost;  /* PS: extra compute per adversarial sample, in training samples */
    double hessian_s;  /* one top-eigenvalue computation (power iteration), s */
    double bw;         /* link bandwidth per direction, bytes/s */
    double latency_s;  /* one message's latency on the link (alpha), s */
    double msg_s;      /* PS: software cost of one message at its endpoint, s */
};

/* Where a schedule runs. */
struct sim_design {
    enum sim_model_kind kind; /* which cost model */
    double procs;             /* p: processes (RING) or workers W (PS), >= 1 */
    double shards;            /* PS: S shards; 0 = one per worker */
    int sync;                 /* PS: decisions sync (epoch ends wait for the eigen service) */
    double bytes;             /* bytes of a gradient and of the weights (4 x parameters) */
    struct sim_hw hw;         /* device and link constants */
};

/* A run of updates at one batch size. */
struct sim_phase {
    double updates;  /* SGD updates */
    double batch;    /* global batch size B */
    double gamma;    /* share of adversarial (FGSM) samples; 0 without */
    double hessians; /* top-eigenvalue computations at the epoch ends of this phase */
    double epochs;   /* epochs covered (for reports) */
};

/* A schedule: phases in training order. Initialise with {0} (or sim_sched_init); release the
 * phases with sim_sched_clear. */
struct sim_sched {
    char name[SIM_NAME_MAX]; /* label in tables ("BL", "ABS", a run's name) */
    int adversarial;         /* the run uses FGSM (ABSA): the paper's ABSA compute applies */
    size_t n;                /* phases */
    size_t cap;              /* allocated phases */
    struct sim_phase *phase; /* n phases, owned */
};

/* A schedule described by its rules, as on the command line. */
struct sim_plan {
    enum sim_method method;       /* BL, GG, ABS, ABSA */
    double samples;               /* training set size N; an epoch is ceil(N / B) updates */
    double epochs;                /* E */
    double batch;                 /* starting batch B_0 */
    double batch_max;             /* cap of GG, ABS and ABSA; 0 = none */
    double decay[SIM_DECAYS_MAX]; /* GG: epochs at which the batch grows */
    int n_decay;                  /* entries of decay */
    double gg_factor;             /* GG: batch factor at each decay epoch */
    double beta;                  /* ABS/ABSA: batch factor at each growth */
    double grow_every;            /* ABS/ABSA: epochs per batch level (> 0; may be fractional) */
    double gamma;                 /* ABSA: initial adversarial share */
    double omega;                 /* ABSA: gamma /= omega at each growth */
    double tau;                   /* ABSA: gamma = 0 from this epoch on */
};

/* Totals of a schedule under a design. */
struct sim_cost {
    double updates;   /* SGD updates */
    double hessians;  /* eigenvalue computations (on the path or not) */
    double compute_s; /* compute on the critical path, s */
    double comm_s;    /* communication on the critical path, s */
    double hessian_s; /* Hessian time on the critical path, s */
    double total_s;   /* the sum: wall-clock time, s */
};

/* "BL", "GG", "ABS", "ABSA"; sim_method_parse returns the method or -1. */
const char *sim_method_name(enum sim_method m);
int sim_method_parse(const char *name);

/* Release a schedule's phases and zero it (safe twice). */
void sim_sched_clear(struct sim_sched *s);

/* Append a phase; a phase of the same batch and gamma as the last one is merged into it.
 * Returns 0, or RT_ERR_NOMEM (rt_err detail set). Phases with no updates are ignored. */
int sim_sched_add(struct sim_sched *s, const struct sim_phase *ph);

/* Sums over the phases. */
double sim_sched_updates(const struct sim_sched *s);
double sim_sched_hessians(const struct sim_sched *s);

/* Build the schedule a plan describes into *out (cleared first; name = the method's).
 * BL: E epochs at B_0. GG: B grows by gg_factor at each decay epoch (capped by batch_max).
 * ABS/ABSA: B grows by beta every grow_every epochs until batch_max, one eigenvalue computation
 * at each epoch end below batch_max; ABSA: gamma / omega^k at level k, 0 at batch_max and from
 * tau on. Returns 0, RT_ERR_ARG for an inconsistent plan, RT_ERR_NOMEM; rt_err detail set. */
int sim_plan_sched(const struct sim_plan *pl, struct sim_sched *out);

/* Cost of one update of batch B (adversarial share gamma; adversarial: the run uses FGSM). */
double sim_update_compute(const struct sim_design *d, double batch, double gamma, int adversarial);
double sim_update_comm(const struct sim_design *d);

/* Time on the critical path of one eigenvalue computation (0 for PS under async). */
double sim_hessian_path(const struct sim_design *d);

/* Totals of schedule s under design d. */
void sim_cost(const struct sim_design *d, const struct sim_sched *s, struct sim_cost *out);

/* ---- the paper's Table 3 ------------------------------------------------------------------- */

/* The paper's hardware: its compute, Hessian and communication times per update at 512
 * processes; the ring latency solved so that the alpha-beta ring gives SIM_PAPER_COMM_S for
 * ResNet-18 over a SIM_PAPER_LINK_BW link; floor_s and sample_s such that a process's share of
 * B_max (32 samples) costs SIM_PAPER_COMPUTE_S, as does any smaller share (the paper charges every
 * update the same compute). For SIM_MODEL_PS: fgsm_cost spreads the paper's ABSA overhead
 * (3.6e-2 / 2.2e-2 - 1) over its gamma = 0.2 share of adversarial samples (3.18 samples each), so
 * that an update at gamma 0.2 costs what the paper's does; msg_s is left 0 (the paper has none). */
void sim_paper_hw(struct sim_hw *hw);

/* The constants measured here, for ResNet-18 on ImageNet (SIM_HERE_*): a sample's training step
 * and HVP are the measured ones at 3x56x56 scaled by forward FLOPs to 3x224x224 (the zoo's
 * CIFAR-style resnet18_cifar at 56x56 has ImageNet ResNet-18's body exactly; the 7x7 stride-2 stem
 * adds 6.6% of the FLOPs); no floor (a CPU's step time is linear in the batch); FGSM 2/3 of a
 * sample; a Hessian = SIM_HERE_HVP_ITERS HVPs of SIM_HERE_HESSIAN_BATCH samples; a push+pull round
 * of m bytes = 2 (m / bw + latency + msg_s), solved from the tiny and the ResNet-18-sized rounds.
 */
void sim_here_hw(struct sim_hw *hw);

/* The paper's total for a method, s (Table 3: 16666, 6150, 2666, 3467). */
double sim_paper_total(enum sim_method m);

/* The four schedules of Table 3 (ImageNet, 90 epochs): BL at 256; GG x10 at epochs 30, 60 and 80
 * (uncapped: 256 to 256,000); ABS and ABSA doubling from 256 to B_max 16384 every D epochs with
 * one eigenvalue computation per epoch end below B_max, ABSA's gamma 0.2 halved at each growth
 * (0 from epoch 45), where D is backed out: solved so that the paper's model at 512 processes
 * gives the paper's total (the paper gives totals only, not these update counts). *plan receives
 * the rules (D included). Returns 0 or an rt_err code (detail set). */
int sim_paper_plan(enum sim_method m, struct sim_plan *plan);

/* The paper's design: SIM_MODEL_RING on sim_paper_hw, p processes, ResNet-18's bytes. */
void sim_paper_design(struct sim_design *d, double procs);

/* Solve pl->grow_every (ABS/ABSA) by bisection so that schedule costs target_s under d.
 * Returns 0, or RT_ERR_ARG when no D in (0, E] reaches it (detail set). */
int sim_backout_grow_every(const struct sim_design *d, struct sim_plan *pl, double target_s);

#endif
