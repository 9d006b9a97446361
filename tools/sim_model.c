/*
 * sim_model: schedules (phases of updates at one batch size) and their wall-clock time under the
 * paper's ring all-reduce model and this system's sharded-server model. See sim_model.h for the
 * formulas; this file holds the schedule rules, the paper's Table 3 setting and the back-out of
 * the ABS/ABSA schedules from the paper's totals.
 *
 * Table 3 of Yao et al. gives, for ResNet-18 on ImageNet with 512 processes, per update 2.2e-2 s
 * of compute (ABSA 3.6e-2 s) and 1.5e-2 s of communication, 1.15 s per Hessian computation, and
 * the totals BL 16666 s, GG 6150 s, ABS 2666 s, ABSA 3467 s. What is read into it here:
 *   - BL: 90 epochs of ceil(1,281,167 / 256) = 5005 updates: 450,450 x 3.7e-2 s = 16666.7 s.
 *   - GG: x10 at epochs 30, 60 and 80 with no cap: 30 x 5005 + 30 x 501 + 20 x 51 + 10 x 6 =
 *     166,260 updates; 6151.6 s at a flat 3.7e-2 s, 6183.5 s with this model's compute, where a
 *     process's share above 32 samples costs more (+0.55%).
 *   - ABS/ABSA: the paper gives no update counts. Assumed: the batch doubles from 256 to B_max
 *     16384 (32 samples on each of 512 processes) every D epochs, one Hessian per epoch end
 *     while B < B_max, ABSA's gamma 0.2 halved at each doubling and 0 from epoch 45; D is solved
 *     so that the paper's model gives the paper's total (ABS D = 6.79: 70,788 updates and 40.7
 *     Hessians; ABSA D = 6.40: 67,115 and 38.4).
 *   - The ring: 46,758,048 bytes (11,689,512 fp32 parameters) over an assumed 10 GB/s link; the
 *     latency (5.5 us) is solved so that 2 (p - 1) / p * bytes / bw + 2 (p - 1) * latency is the
 *     paper's 1.5e-2 s at p = 512.
 */
#include "sim_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"

#define S_FGSM_COST (2.0 / 3.0) /* forward + input gradient: 2 of a training step's 3 passes */
#define S_PAPER_DECAY1 30.0     /* GG's growth epochs in the paper's ImageNet schedule */
#define S_PAPER_DECAY2 60.0
#define S_PAPER_DECAY3 80.0
#define S_PAPER_GG_FACTOR 10.0
#define S_PAPER_BETA 2.0  /* ABS/ABSA: batch doubles at each growth */
#define S_PAPER_GAMMA 0.2 /* ABSA's initial adversarial share */
#define S_PAPER_OMEGA 2.0 /* ABSA: gamma halves at each growth */
/* Forward FLOPs of the stems: ImageNet's 7x7 stride-2 conv to 64x112x112, and the zoo's 3x3
 * conv to 64x56x56 at a 3x56x56 input (2 FLOPs per multiply-add). */
#define S_STEM7_FLOPS (2.0 * 64 * 112 * 112 * 3 * 7 * 7)
#define S_STEM3_FLOPS (2.0 * 64 * 56 * 56 * 3 * 3 * 3)
#define S_BACKOUT_ITERS 200
#define S_BACKOUT_LO 1e-6 /* smallest epochs per level tried */

static const char *const s_method_names[SIM_METHODS] = {"BL", "GG", "ABS", "ABSA"};

/* Table 3 of Yao et al.: total time, s, for BL, GG, ABS, ABSA. */
static const double s_paper_totals[SIM_METHODS] = {16666.0, 6150.0, 2666.0, 3467.0};

const char *sim_method_name(enum sim_method m)
{
    RT_ASSERT((int)m >= 0 && (int)m < SIM_METHODS);
    return s_method_names[m];
}

int sim_method_parse(const char *name)
{
    for (int m = 0; name && m < SIM_METHODS; m++)
        if (!strcmp(name, s_method_names[m]))
            return m;
    return -1;
}

/* ---- schedules ---------------------------------------------------------------------------- */

void sim_sched_clear(struct sim_sched *s)
{
    if (!s)
        return;
    free(s->phase);
    memset(s, 0, sizeof *s);
}

int sim_sched_add(struct sim_sched *s, const struct sim_phase *ph)
{
    if (!(ph->updates > 0))
        return 0;
    if (s->n > 0) {
        struct sim_phase *last = &s->phase[s->n - 1];
        if (last->batch == ph->batch && last->gamma == ph->gamma) {
            last->updates += ph->updates;
            last->hessians += ph->hessians;
            last->epochs += ph->epochs;
            return 0;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        struct sim_phase *p = realloc(s->phase, cap * sizeof *p);
        if (!p)
            return rt_err_set(RT_ERR_NOMEM, "simulate: no memory for %zu phases", cap);
        s->phase = p;
        s->cap = cap;
    }
    s->phase[s->n++] = *ph;
    return 0;
}

double sim_sched_updates(const struct sim_sched *s)
{
    double u = 0;
    for (size_t i = 0; i < s->n; i++)
        u += s->phase[i].updates;
    return u;
}

double sim_sched_hessians(const struct sim_sched *s)
{
    double h = 0;
    for (size_t i = 0; i < s->n; i++)
        h += s->phase[i].hessians;
    return h;
}

/* Add epochs [from, to) at batch b: ceil(N / b) updates per epoch. */
static int s_span(struct sim_sched *s, const struct sim_plan *pl, double from, double to, double b,
                  double gamma, int measured)
{
    double e = to - from;
    if (!(e > 0))
        return 0;
    struct sim_phase ph = {e * ceil(pl->samples / b), b, gamma, measured ? e : 0, e};
    return sim_sched_add(s, &ph);
}

/* GG: the batch grows by gg_factor at each decay epoch, capped by batch_max. */
static int s_plan_gg(const struct sim_plan *pl, struct sim_sched *s)
{
    double t = 0, b = pl->batch;
    for (int i = 0; i < pl->n_decay; i++) {
        double d = pl->decay[i];
        if (!(d > t))
            return rt_err_set(RT_ERR_ARG, "simulate: decay epochs must increase and be > 0 (%g)",
                              d);
        if (d >= pl->epochs)
            break;
        int rc = s_span(s, pl, t, d, b, 0, 0);
        if (rc)
            return rc;
        t = d;
        b *= pl->gg_factor;
        if (pl->batch_max > 0 && b > pl->batch_max)
            b = pl->batch_max;
    }
    return s_span(s, pl, t, pl->epochs, b, 0, 0);
}

/* ABS/ABSA: levels of grow_every epochs, the batch times beta at each, until batch_max; one
 * eigenvalue computation per epoch end below batch_max. */
static int s_plan_abs(const struct sim_plan *pl, struct sim_sched *s)
{
    if (!(pl->batch_max >= pl->batch) || !(pl->beta > 1) || !(pl->grow_every > 0))
        return rt_err_set(RT_ERR_ARG,
                          "simulate: ABS needs batch-max >= batch (%g, %g), beta > 1 (%g) and "
                          "grow-every > 0 (%g)",
                          pl->batch_max, pl->batch, pl->beta, pl->grow_every);
    int adv = pl->method == SIM_ABSA;
    double t = 0, b = pl->batch, gamma = adv ? pl->gamma : 0;
    while (t < pl->epochs) {
        int at_max = b >= pl->batch_max;
        double end = at_max ? pl->epochs : fmin(t + pl->grow_every, pl->epochs);
        double g = at_max ? 0 : gamma;
        int rc = 0;
        if (g > 0 && pl->tau > t && pl->tau < end) {
            rc = s_span(s, pl, t, pl->tau, b, g, !at_max);
            if (!rc)
                rc = s_span(s, pl, pl->tau, end, b, 0, !at_max);
        } else {
            rc = s_span(s, pl, t, end, b, t >= pl->tau ? 0 : g, !at_max);
        }
        if (rc)
            return rc;
        t = end;
        b = fmin(b * pl->beta, pl->batch_max);
        gamma /= pl->omega;
    }
    return 0;
}

int sim_plan_sched(const struct sim_plan *pl, struct sim_sched *out)
{
    sim_sched_clear(out);
    if ((int)pl->method < 0 || (int)pl->method >= SIM_METHODS)
        return rt_err_set(RT_ERR_ARG, "simulate: unknown method %d", (int)pl->method);
    if (!(pl->samples >= 1) || !(pl->epochs > 0) || !(pl->batch >= 1))
        return rt_err_set(RT_ERR_ARG,
                          "simulate: need samples >= 1 (%g), epochs > 0 (%g), batch >= 1 (%g)",
                          pl->samples, pl->epochs, pl->batch);
    snprintf(out->name, sizeof out->name, "%s", sim_method_name(pl->method));
    out->adversarial = pl->method == SIM_ABSA && pl->gamma > 0;
    int rc = 0;
    switch (pl->method) {
    case SIM_BL:
        rc = s_span(out, pl, 0, pl->epochs, pl->batch, 0, 0);
        break;
    case SIM_GG:
        if (!(pl->gg_factor >= 1))
            return rt_err_set(RT_ERR_ARG, "simulate: GG's factor must be >= 1 (%g)", pl->gg_factor);
        rc = s_plan_gg(pl, out);
        break;
    default:
        rc = s_plan_abs(pl, out);
        break;
    }
    if (rc)
        sim_sched_clear(out);
    return rc;
}

/* ---- costs -------------------------------------------------------------------------------- */

double sim_update_compute(const struct sim_design *d, double batch, double gamma, int adversarial)
{
    RT_ASSERT(d->procs >= 1);
    double t = fmax(d->hw.floor_s, ceil(batch / d->procs) * d->hw.sample_s);
    if (d->kind == SIM_MODEL_RING)
        return adversarial ? t * d->hw.adv_factor : t;
    return t * (1 + gamma * d->hw.fgsm_cost);
}

double sim_update_comm(const struct sim_design *d)
{
    double p = d->procs, m = d->bytes, bw = d->hw.bw;
    RT_ASSERT(p >= 1 && bw > 0);
    if (d->kind == SIM_MODEL_RING)
        return 2 * (p - 1) / p * m / bw + 2 * (p - 1) * d->hw.latency_s;
    double s = d->shards > 0 ? d->shards : p;
    return 2 * (fmax(m, m * p / s) / bw + d->hw.latency_s + fmax(p, s) * d->hw.msg_s);
}

double sim_hessian_path(const struct sim_design *d)
{
    if (d->kind == SIM_MODEL_RING)
        return d->hw.hessian_s;
    return d->sync ? d->hw.hessian_s + d->bytes / d->hw.bw + d->hw.latency_s : 0;
}

void sim_cost(const struct sim_design *d, const struct sim_sched *s, struct sim_cost *out)
{
    memset(out, 0, sizeof *out);
    double comm = sim_update_comm(d), hess = sim_hessian_path(d);
    for (size_t i = 0; i < s->n; i++) {
        const struct sim_phase *ph = &s->phase[i];
        out->updates += ph->updates;
        out->hessians += ph->hessians;
        out->compute_s += ph->updates * sim_update_compute(d, ph->batch, ph->gamma, s->adversarial);
        out->comm_s += ph->updates * comm;
        out->hessian_s += ph->hessians * hess;
    }
    out->total_s = out->compute_s + out->comm_s + out->hessian_s;
}

/* ---- the paper's Table 3 ------------------------------------------------------------------ */

void sim_paper_hw(struct sim_hw *hw)
{
    double p = SIM_PAPER_PROCS, m = 4 * SIM_RESNET18_PARAMS;
    memset(hw, 0, sizeof *hw);
    hw->floor_s = SIM_PAPER_COMPUTE_S;
    hw->sample_s = SIM_PAPER_COMPUTE_S / (SIM_PAPER_BATCH_MAX / p);
    hw->adv_factor = SIM_PAPER_COMPUTE_ADV_S / SIM_PAPER_COMPUTE_S;
    hw->fgsm_cost = (hw->adv_factor - 1) / S_PAPER_GAMMA;
    hw->hessian_s = SIM_PAPER_HESSIAN_S;
    hw->bw = SIM_PAPER_LINK_BW;
    /* 2 (p - 1) / p * m / bw + 2 (p - 1) * latency = SIM_PAPER_COMM_S */
    hw->latency_s = (SIM_PAPER_COMM_S - 2 * (p - 1) / p * m / hw->bw) / (2 * (p - 1));
}

void sim_here_hw(struct sim_hw *hw)
{
    double to_224 = (SIM_HERE_FLOPS_56 - S_STEM3_FLOPS + S_STEM7_FLOPS) / SIM_HERE_FLOPS_56;
    double m = 4 * SIM_RESNET18_PARAMS;
    memset(hw, 0, sizeof *hw);
    hw->sample_s = SIM_HERE_STEP_S / SIM_HERE_BENCH_BATCH * to_224;
    hw->adv_factor = 1 + S_PAPER_GAMMA * S_FGSM_COST;
    hw->fgsm_cost = S_FGSM_COST;
    hw->hessian_s = SIM_HERE_HVP_ITERS * SIM_HERE_HESSIAN_BATCH * SIM_HERE_HVP_S /
                    SIM_HERE_BENCH_BATCH * to_224;
    hw->msg_s = SIM_HERE_MSG_S;
    /* tiny round = 2 (latency + msg); ResNet-18 round = 2 (m / bw + latency + msg) */
    hw->latency_s = SIM_HERE_ROUND_TINY_S / 2 - hw->msg_s;
    hw->bw = 2 * m / (SIM_HERE_ROUND_RESNET_S - SIM_HERE_ROUND_TINY_S);
}

double sim_paper_total(enum sim_method m)
{
    RT_ASSERT((int)m >= 0 && (int)m < SIM_METHODS);
    return s_paper_totals[m];
}

void sim_paper_design(struct sim_design *d, double procs)
{
    memset(d, 0, sizeof *d);
    d->kind = SIM_MODEL_RING;
    d->procs = procs;
    d->bytes = 4 * SIM_RESNET18_PARAMS;
    sim_paper_hw(&d->hw);
}

/* Total of the plan's schedule under d; -1 on error. */
static double s_plan_total(const struct sim_design *d, const struct sim_plan *pl)
{
    struct sim_sched s = {0};
    struct sim_cost c;
    if (sim_plan_sched(pl, &s))
        return -1;
    sim_cost(d, &s, &c);
    sim_sched_clear(&s);
    return c.total_s;
}

int sim_backout_grow_every(const struct sim_design *d, struct sim_plan *pl, double target_s)
{
    if (pl->method != SIM_ABS && pl->method != SIM_ABSA)
        return rt_err_set(RT_ERR_ARG, "simulate: only ABS and ABSA have a growth period");
    /* More epochs per level: more updates at small batches and more Hessian computations, so
     * the total rises with grow_every; bisect. */
    double lo = S_BACKOUT_LO, hi = pl->epochs;
    pl->grow_every = lo;
    double f_lo = s_plan_total(d, pl);
    pl->grow_every = hi;
    double f_hi = s_plan_total(d, pl);
    if (f_lo < 0 || f_hi < 0)
        return RT_ERR_ARG;
    if (!(f_lo <= target_s && target_s <= f_hi))
        return rt_err_set(RT_ERR_ARG,
                          "simulate: %s total %g s is outside what its schedules give (%g to %g s)",
                          sim_method_name(pl->method), target_s, f_lo, f_hi);
    for (int i = 0; i < S_BACKOUT_ITERS && hi - lo > 1e-12 * hi; i++) {
        pl->grow_every = 0.5 * (lo + hi);
        if (s_plan_total(d, pl) < target_s)
            lo = pl->grow_every;
        else
            hi = pl->grow_every;
    }
    pl->grow_every = 0.5 * (lo + hi);
    return 0;
}

int sim_paper_plan(enum sim_method m, struct sim_plan *plan)
{
    RT_ASSERT((int)m >= 0 && (int)m < SIM_METHODS);
    memset(plan, 0, sizeof *plan);
    plan->method = m;
    plan->samples = SIM_IMAGENET_SAMPLES;
    plan->epochs = SIM_PAPER_EPOCHS;
    plan->batch = SIM_PAPER_BATCH;
    plan->gg_factor = S_PAPER_GG_FACTOR;
    plan->beta = S_PAPER_BETA;
    plan->omega = S_PAPER_OMEGA;
    plan->tau = SIM_PAPER_EPOCHS / 2;
    if (m == SIM_GG) {
        plan->decay[0] = S_PAPER_DECAY1;
        plan->decay[1] = S_PAPER_DECAY2;
        plan->decay[2] = S_PAPER_DECAY3;
        plan->n_decay = 3;
    }
    if (m != SIM_ABS && m != SIM_ABSA)
        return 0;
    plan->batch_max = SIM_PAPER_BATCH_MAX;
    plan->gamma = m == SIM_ABSA ? S_PAPER_GAMMA : 0;
    struct sim_design d;
    sim_paper_design(&d, SIM_PAPER_PROCS);
    return sim_backout_grow_every(&d, plan, s_paper_totals[m]);
}
