/*
 * server_sched: the one training schedule (BL, FB, GG, ABS, ABSA) and its decision list.
 *
 * Everything is recomputed from the configuration and the accepted decisions by walking the run
 * from step 0 in segments of constant batch (one per epoch or per decision), so that the answer for
 * a step depends on nothing but that list: O(epochs + decisions) per question, no hidden cache.
 */
#include "server_sched.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rt_decay.h"
#include "rt_err.h"

struct server_sched {
    struct server_sched_config cfg; /* configuration (copied) */
    uint32_t n;                     /* contiguous versions 1..n held */
    struct server_sched_decision dec[SERVER_SCHED_MAX_DECISIONS]; /* slot v-1 holds version v */
    uint8_t present[SERVER_SCHED_MAX_DECISIONS]; /* slot filled (held or pending) */
    uint64_t last_seq;                           /* highest sequence number seen */
    int has_seq;                                 /* last_seq is meaningful */
    int64_t announced;                           /* highest next_step seen (accept) */
};

/* ---- configuration --------------------------------------------------------------------------- */

void server_sched_config_default(struct server_sched_config *cfg, enum server_sched_method method,
                                 int64_t dataset_size, int32_t epochs)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->method = method;
    cfg->dataset_size = dataset_size;
    cfg->epochs = epochs;
    cfg->batch = SERVER_SCHED_MICRO_BATCH;
    cfg->base_batch = SERVER_SCHED_MICRO_BATCH;
    cfg->batch_max = 16384;
    cfg->micro_batch = SERVER_SCHED_MICRO_BATCH;
    cfg->drop_last = 0;
    cfg->lr = 0.1;
    cfg->lr_cap = 0.0;
    cfg->momentum = 0.9;
    cfg->weight_decay = 5e-4;
    cfg->warmup_epochs = 0;
    cfg->n_decay = 0;
    cfg->rho = 0.2;
    cfg->gamma0 = method == SERVER_SCHED_ABSA ? 0.2 : 0.0;
    cfg->epsilon = 0.005;
    cfg->tau = epochs / 2;
    cfg->apply = SERVER_SCHED_APPLY_NEXT_STEP;
    cfg->apply_lead = 0;
}

static int s_finite_ge(double x, double lo)
{
    return isfinite(x) && x >= lo;
}

int server_sched_config_check(const struct server_sched_config *c)
{
    if (!c)
        return rt_err_set(RT_ERR_CONFIG, "schedule: no configuration");
    if ((int)c->method < SERVER_SCHED_BL || (int)c->method > SERVER_SCHED_ABSA)
        return rt_err_set(RT_ERR_CONFIG, "schedule: unknown method %d", (int)c->method);
    if (c->dataset_size <= 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: dataset_size %lld must be > 0",
                          (long long)c->dataset_size);
    if (c->epochs <= 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: epochs %d must be > 0", c->epochs);
    if (c->batch <= 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: batch %lld must be > 0", (long long)c->batch);
    if (c->base_batch <= 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: base_batch %lld must be > 0",
                          (long long)c->base_batch);
    if (c->batch_max < c->batch)
        return rt_err_set(RT_ERR_CONFIG, "schedule: batch_max %lld is below batch %lld",
                          (long long)c->batch_max, (long long)c->batch);
    if (c->micro_batch <= 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: micro_batch %d must be > 0", c->micro_batch);
    if (c->drop_last != 0 && c->drop_last != 1)
        return rt_err_set(RT_ERR_CONFIG, "schedule: drop_last %d must be 0 or 1", c->drop_last);
    if (c->drop_last && c->batch_max > c->dataset_size)
        return rt_err_set(RT_ERR_CONFIG,
                          "schedule: drop_last with batch_max %lld above dataset_size %lld would "
                          "leave epochs without a step",
                          (long long)c->batch_max, (long long)c->dataset_size);
    if (!s_finite_ge(c->lr, 0.0) || c->lr == 0.0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: lr %g must be finite and > 0", c->lr);
    if (!s_finite_ge(c->lr_cap, 0.0))
        return rt_err_set(RT_ERR_CONFIG, "schedule: lr_cap %g must be >= 0 (0 = none)", c->lr_cap);
    if (!s_finite_ge(c->momentum, 0.0) || c->momentum >= 1.0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: momentum %g must be in [0, 1)", c->momentum);
    if (!s_finite_ge(c->weight_decay, 0.0))
        return rt_err_set(RT_ERR_CONFIG, "schedule: weight_decay %g must be >= 0", c->weight_decay);
    if (c->warmup_epochs < 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: warmup_epochs %d must be >= 0",
                          c->warmup_epochs);
    int rc = rt_decay_check(c->decay_epochs, c->n_decay, c->rho, c->epochs, "schedule");
    if (rc)
        return rc;
    if (!s_finite_ge(c->gamma0, 0.0) || c->gamma0 > 1.0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: gamma0 %g must be in [0, 1]", c->gamma0);
    if (!s_finite_ge(c->epsilon, 0.0))
        return rt_err_set(RT_ERR_CONFIG, "schedule: epsilon %g must be >= 0", c->epsilon);
    if (c->tau < 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: tau %d must be >= 0", c->tau);
    if ((int)c->apply != SERVER_SCHED_APPLY_NEXT_STEP &&
        (int)c->apply != SERVER_SCHED_APPLY_NEXT_EPOCH)
        return rt_err_set(RT_ERR_CONFIG, "schedule: unknown apply mode %d", (int)c->apply);
    if (c->apply_lead < 0)
        return rt_err_set(RT_ERR_CONFIG, "schedule: apply_lead %d must be >= 0", c->apply_lead);
    return RT_OK;
}

static const char *const s_method_names[] = {"BL", "FB", "GG", "ABS", "ABSA"};

const char *server_sched_method_name(enum server_sched_method m)
{
    if ((int)m < SERVER_SCHED_BL || (int)m > SERVER_SCHED_ABSA)
        return "?";
    return s_method_names[m];
}

int server_sched_method_parse(const char *name, enum server_sched_method *out)
{
    for (int i = SERVER_SCHED_BL; i <= SERVER_SCHED_ABSA; i++) {
        if (name && strcasecmp(name, s_method_names[i]) == 0) {
            *out = (enum server_sched_method)i;
            return RT_OK;
        }
    }
    return rt_err_set(RT_ERR_CONFIG, "schedule: unknown method '%s' (BL, FB, GG, ABS, ABSA)",
                      name ? name : "(null)");
}

const char *server_sched_verdict_str(int verdict)
{
    return rt_wire_verdict_str(verdict);
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

server_sched_t *server_sched_new(const struct server_sched_config *cfg)
{
    if (server_sched_config_check(cfg) != RT_OK)
        return NULL;
    server_sched_t *self = calloc(1, sizeof *self);
    if (!self) {
        rt_err_set(RT_ERR_NOMEM, "schedule: out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    return self;
}

void server_sched_destroy(server_sched_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

const struct server_sched_config *server_sched_config(const server_sched_t *self)
{
    return &self->cfg;
}

uint32_t server_sched_version(const server_sched_t *self)
{
    return self->n;
}

const struct server_sched_decision *server_sched_decision(const server_sched_t *self, uint32_t v)
{
    if (v < 1 || v > self->n)
        return NULL;
    return &self->dec[v - 1];
}

int64_t server_sched_steps_per_epoch(int64_t n, int64_t b, int drop_last)
{
    if (n <= 0 || b <= 0)
        return 0;
    return drop_last ? n / b : (n + b - 1) / b;
}

/* ---- the schedule as a function of (epoch, decision in force) -------------------------------- */

static int s_is_abs(const struct server_sched_config *c)
{
    return c->method == SERVER_SCHED_ABS || c->method == SERVER_SCHED_ABSA;
}

static double s_initial_lr(const struct server_sched_config *c)
{
    return c->lr * (double)c->batch / (double)c->base_batch;
}

/* GG: batch and lr factor in epoch e (growth by 1/rho at each decay epoch <= e, see header). */
static void s_gg(const struct server_sched_config *c, int32_t e, int64_t *batch, double *lrf)
{
    int64_t b = c->batch;
    double f = 1.0;
    for (int i = 0; i < c->n_decay && c->decay_epochs[i] <= e; i++) {
        double grown = (double)b / c->rho;
        if (grown <= (double)c->batch_max) {
            b = llround(grown);
        } else {
            f *= c->rho * (double)c->batch_max / (double)b;
            b = c->batch_max;
        }
    }
    *batch = b;
    *lrf = f;
}

/* Batch in epoch e when the first `applied` decisions are in force. */
static int64_t s_batch(const server_sched_t *s, int32_t e, uint32_t applied)
{
    const struct server_sched_config *c = &s->cfg;
    if (c->method == SERVER_SCHED_GG) {
        int64_t b;
        double f;
        s_gg(c, e, &b, &f);
        return b;
    }
    if (s_is_abs(c) && applied > 0)
        return s->dec[applied - 1].batch;
    return c->batch;
}

/* Fill lr and gamma of point p (epoch, offset, batch already set). */
static void s_rates(const server_sched_t *s, uint32_t applied, struct server_sched_point *p)
{
    const struct server_sched_config *c = &s->cfg;
    double base = s_initial_lr(c), factor;
    if (c->method == SERVER_SCHED_FB && c->warmup_epochs > 0) {
        double progress = (double)p->epoch + (double)p->offset / (double)c->dataset_size;
        if (progress < (double)c->warmup_epochs)
            base = c->lr + (base - c->lr) * progress / (double)c->warmup_epochs;
    }
    if (s_is_abs(c) && applied > 0)
        base = s->dec[applied - 1].lr_base;
    if (c->lr_cap > 0.0 && base > c->lr_cap)
        base = c->lr_cap;
    if (c->method == SERVER_SCHED_GG) {
        int64_t b;
        s_gg(c, p->epoch, &b, &factor);
    } else {
        factor = rt_decay_factor(c->decay_epochs, c->n_decay, c->rho, p->epoch);
    }
    p->lr = base * factor;
    p->gamma = 0.0;
    if (c->method == SERVER_SCHED_ABSA && p->epoch < c->tau && p->batch < c->batch_max)
        p->gamma = applied > 0 ? s->dec[applied - 1].gamma_base : c->gamma0;
}

/*
 * Walk from step 0 to step t using the first kmax decisions (those with apply_step <= t take
 * effect). Segments have a constant batch: they end at an epoch's end or at a decision's step.
 * With stop_epoch >= 0 the walk stops instead at the first step of that epoch (t is then only an
 * upper bound; for stop_epoch = epochs the done point's step is the run's step count).
 */
static void s_walk(const server_sched_t *s, int64_t t, uint32_t kmax, int32_t stop_epoch,
                   struct server_sched_point *p)
{
    const struct server_sched_config *c = &s->cfg;
    const int64_t n = c->dataset_size;
    int64_t step = 0, off = 0, sie = 0;
    int32_t e = 0;
    uint32_t applied = 0;

    memset(p, 0, sizeof *p);
    p->step = t;
    for (;;) {
        while (applied < kmax && s->dec[applied].apply_step <= step)
            applied++;
        if (stop_epoch >= 0 && e >= stop_epoch)
            p->step = t = step;
        if (e >= c->epochs) {
            p->epoch = c->epochs;
            p->done = 1;
            p->version = applied;
            return;
        }
        int64_t b = s_batch(s, e, applied);
        int64_t nsteps = server_sched_steps_per_epoch(n - off, b, c->drop_last);
        if (nsteps == 0) { /* drop_last: the remainder of this epoch is skipped */
            e++;
            off = 0;
            sie = 0;
            continue;
        }
        int64_t end = step + nsteps;
        if (applied < kmax && s->dec[applied].apply_step <= t && s->dec[applied].apply_step < end)
            end = s->dec[applied].apply_step;
        if (t < end) {
            p->epoch = e;
            p->step_in_epoch = sie + (t - step);
            p->offset = off + (t - step) * b;
            p->batch = b;
            p->samples = n - p->offset < b ? n - p->offset : b;
            p->momentum = c->momentum;
            p->weight_decay = c->weight_decay;
            p->version = applied;
            s_rates(s, applied, p);
            return;
        }
        off += (end - step) * b;
        sie += end - step;
        step = end;
        if (off >= n) {
            e++;
            off = 0;
            sie = 0;
        }
    }
}

int server_sched_at(const server_sched_t *self, int64_t t, int64_t known_version,
                    struct server_sched_point *out)
{
    if (t < 0)
        return rt_err_set(RT_ERR_ARG, "schedule: step %lld is negative", (long long)t);
    uint32_t kmax = self->n;
    if (known_version >= 0) {
        if (known_version > (int64_t)self->n)
            return rt_err_set(RT_ERR_STATE,
                              "schedule: step %lld announced with version %lld, only %u held",
                              (long long)t, (long long)known_version, self->n);
        kmax = (uint32_t)known_version;
        if (kmax > 0 && self->dec[kmax - 1].apply_step > t)
            return rt_err_set(RT_ERR_STATE,
                              "schedule: step %lld announced with version %u, which applies only "
                              "from step %lld",
                              (long long)t, kmax, (long long)self->dec[kmax - 1].apply_step);
        if (kmax < self->n && self->dec[kmax].apply_step <= t)
            return rt_err_set(RT_ERR_STATE,
                              "schedule: step %lld announced with version %u, but version %u "
                              "applies from step %lld",
                              (long long)t, kmax, kmax + 1, (long long)self->dec[kmax].apply_step);
    }
    s_walk(self, t, kmax, -1, out);
    return RT_OK;
}

int server_sched_epoch_start(const server_sched_t *self, int32_t epoch,
                             struct server_sched_point *out)
{
    if (epoch < 0 || epoch > self->cfg.epochs)
        return rt_err_set(RT_ERR_ARG, "schedule: epoch %d not in [0, %d]", epoch, self->cfg.epochs);
    s_walk(self, INT64_MAX, self->n, epoch, out);
    return RT_OK;
}

#define S_DECISION_REL_TOL 1e-6 /* rounding allowed on a decision's lr and gamma bounds */

/* ---- decisions ------------------------------------------------------------------------------- */

/* Range checks shared by accept, insert and state decoding. */
static int s_check_decision(const struct server_sched_config *c,
                            const struct server_sched_decision *d, int stamped)
{
    if (!s_is_abs(c))
        return rt_err_set(RT_ERR_STATE, "schedule: method %s takes no decisions (seq %llu)",
                          server_sched_method_name(c->method), (unsigned long long)d->seq);
    if (d->batch < 1 || d->batch > c->batch_max)
        return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: batch %lld not in [1, %lld]",
                          (unsigned long long)d->seq, (long long)d->batch, (long long)c->batch_max);
    if (!isfinite(d->lr_base) || d->lr_base <= 0.0)
        return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: lr %g must be finite and > 0",
                          (unsigned long long)d->seq, d->lr_base);
    if (!isfinite(d->gamma_base) || d->gamma_base < 0.0 || d->gamma_base > 1.0)
        return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: gamma %g not in [0, 1]",
                          (unsigned long long)d->seq, d->gamma_base);
    /* bounds from the configuration: the ABS rule scales the lr with B (at most to lr_cap) and
     * only divides gamma; anything beyond is not a decision of this run's eigen service (a rogue
     * or broken peer), whatever its sequence number (B below the one in force: s_fits, accept) */
    double lr_b0 = c->lr * (double)c->batch / (double)c->base_batch;
    double lr_max = lr_b0 * (double)d->batch / (double)c->batch;
    if (c->lr_cap > 0 && lr_max > c->lr_cap)
        lr_max = c->lr_cap;
    if (d->lr_base > lr_max * (1.0 + S_DECISION_REL_TOL))
        return rt_err_set(RT_ERR_FORMAT,
                          "decision seq %llu: lr %g above %g (the configured lr scaled with the "
                          "batch %lld)",
                          (unsigned long long)d->seq, d->lr_base, lr_max, (long long)d->batch);
    if (d->gamma_base > c->gamma0 * (1.0 + S_DECISION_REL_TOL))
        return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: gamma %g above the configured %g",
                          (unsigned long long)d->seq, d->gamma_base, c->gamma0);
    if (c->method == SERVER_SCHED_ABS && d->gamma_base != 0.0)
        return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: gamma %g under ABS (must be 0)",
                          (unsigned long long)d->seq, d->gamma_base);
    if (d->epoch < 0)
        return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: epoch %d is negative",
                          (unsigned long long)d->seq, d->epoch);
    if (stamped) {
        if (d->version < 1 || d->version > SERVER_SCHED_MAX_DECISIONS)
            return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: version %u not in [1, %d]",
                              (unsigned long long)d->seq, d->version, SERVER_SCHED_MAX_DECISIONS);
        if (d->apply_step < 0)
            return rt_err_set(RT_ERR_FORMAT, "decision seq %llu: apply step %lld is negative",
                              (unsigned long long)d->seq, (long long)d->apply_step);
    }
    return RT_OK;
}

static int s_same(const struct server_sched_decision *a, const struct server_sched_decision *b)
{
    int lam = (isnan(a->lambda) && isnan(b->lambda)) || a->lambda == b->lambda;
    return lam && a->seq == b->seq && a->snapshot_version == b->snapshot_version &&
           a->epoch == b->epoch && a->batch == b->batch && a->lr_base == b->lr_base &&
           a->gamma_base == b->gamma_base && a->apply_step == b->apply_step &&
           a->version == b->version;
}

/* Step from which the last batch increase applies (0 when none). */
static int64_t s_last_increase(const server_sched_t *s)
{
    int64_t prev = s->cfg.batch;
    int64_t at = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->dec[i].batch > prev)
            at = s->dec[i].apply_step;
        prev = s->dec[i].batch;
    }
    return at;
}

int server_sched_accept(server_sched_t *self, const struct server_sched_decision *d,
                        int64_t next_step, struct server_sched_decision *stamped)
{
    const struct server_sched_config *c = &self->cfg;
    int rc = s_check_decision(c, d, 0);
    if (rc != RT_OK)
        return rc;
    if (next_step < 0 || next_step < self->announced)
        return rt_err_set(RT_ERR_STATE, "schedule: next step %lld before %lld already announced",
                          (long long)next_step, (long long)self->announced);
    self->announced = next_step;

    if (self->has_seq && d->seq <= self->last_seq) {
        if (d->seq == self->last_seq)
            return SERVER_SCHED_DUPLICATE;
        for (uint32_t i = 0; i < self->n; i++)
            if (self->dec[i].seq == d->seq)
                return SERVER_SCHED_DUPLICATE;
        return SERVER_SCHED_SUPERSEDED;
    }

    int64_t cur_b = self->n ? self->dec[self->n - 1].batch : c->batch;
    double cur_lr = self->n ? self->dec[self->n - 1].lr_base : s_initial_lr(c);
    double cur_g = self->n ? self->dec[self->n - 1].gamma_base : c->gamma0;
    if (c->method == SERVER_SCHED_ABS)
        cur_g = 0.0;
    if (d->batch < cur_b)
        return rt_err_set(RT_ERR_FORMAT,
                          "decision seq %llu: batch %lld below the batch %lld in force",
                          (unsigned long long)d->seq, (long long)d->batch, (long long)cur_b);
    if (d->snapshot_version < (uint64_t)s_last_increase(self))
        return SERVER_SCHED_STALE;
    if (d->batch == cur_b && d->lr_base == cur_lr && d->gamma_base == cur_g) {
        self->last_seq = d->seq;
        self->has_seq = 1;
        return SERVER_SCHED_NOCHANGE;
    }
    if (self->n >= SERVER_SCHED_MAX_DECISIONS)
        return rt_err_set(RT_ERR_TOOBIG, "schedule: more than %d decisions",
                          SERVER_SCHED_MAX_DECISIONS);

    int64_t at = next_step + c->apply_lead;
    if (c->apply == SERVER_SCHED_APPLY_NEXT_EPOCH) {
        struct server_sched_point p;
        s_walk(self, at, self->n, -1, &p);
        if (!p.done && p.step_in_epoch > 0)
            at += server_sched_steps_per_epoch(c->dataset_size - p.offset, p.batch, c->drop_last);
    }
    if (self->n > 0 && at < self->dec[self->n - 1].apply_step)
        at = self->dec[self->n - 1].apply_step;

    struct server_sched_decision *slot = &self->dec[self->n];
    *slot = *d;
    slot->apply_step = at;
    slot->version = self->n + 1;
    self->present[self->n] = 1;
    self->n++;
    /* a pending entry that sat in later slots (mixed roles) no longer fits: drop them */
    for (uint32_t i = self->n; i < SERVER_SCHED_MAX_DECISIONS; i++)
        self->present[i] = 0;
    self->last_seq = d->seq;
    self->has_seq = 1;
    if (stamped)
        *stamped = *slot;
    return SERVER_SCHED_ACCEPTED;
}

/* Check that decision d fits between its present neighbours (order of steps and batches). */
static int s_fits(const server_sched_t *s, const struct server_sched_decision *d)
{
    uint32_t i = d->version - 1;
    int64_t prev_b = s->cfg.batch;
    if (i > 0 && s->present[i - 1]) {
        const struct server_sched_decision *p = &s->dec[i - 1];
        if (p->apply_step > d->apply_step || p->batch > d->batch)
            return rt_err_set(RT_ERR_STATE,
                              "decision version %u (step %lld, batch %lld) goes back from "
                              "version %u (step %lld, batch %lld)",
                              d->version, (long long)d->apply_step, (long long)d->batch, p->version,
                              (long long)p->apply_step, (long long)p->batch);
    }
    if (i == 0 && d->batch < prev_b)
        return rt_err_set(RT_ERR_STATE, "decision version 1: batch %lld below the initial %lld",
                          (long long)d->batch, (long long)prev_b);
    if (i + 1 < SERVER_SCHED_MAX_DECISIONS && s->present[i + 1]) {
        const struct server_sched_decision *q = &s->dec[i + 1];
        if (q->apply_step < d->apply_step || q->batch < d->batch)
            return rt_err_set(RT_ERR_STATE,
                              "decision version %u (step %lld, batch %lld) goes past version %u "
                              "(step %lld, batch %lld)",
                              d->version, (long long)d->apply_step, (long long)d->batch, q->version,
                              (long long)q->apply_step, (long long)q->batch);
    }
    return RT_OK;
}

int server_sched_insert(server_sched_t *self, const struct server_sched_decision *d)
{
    int rc = s_check_decision(&self->cfg, d, 1);
    if (rc != RT_OK)
        return rc;
    uint32_t i = d->version - 1;
    if (self->present[i]) {
        if (s_same(&self->dec[i], d))
            return SERVER_SCHED_DUPLICATE;
        return rt_err_set(RT_ERR_STATE,
                          "decision version %u (seq %llu) differs from the one held "
                          "(seq %llu)",
                          d->version, (unsigned long long)d->seq,
                          (unsigned long long)self->dec[i].seq);
    }
    rc = s_fits(self, d);
    if (rc != RT_OK)
        return rc;
    self->dec[i] = *d;
    self->present[i] = 1;
    while (self->n < SERVER_SCHED_MAX_DECISIONS && self->present[self->n])
        self->n++;
    if (!self->has_seq || d->seq > self->last_seq) {
        self->last_seq = d->seq;
        self->has_seq = 1;
    }
    return i < self->n ? SERVER_SCHED_ACCEPTED : SERVER_SCHED_PENDING;
}

/* ---- state ----------------------------------------------------------------------------------- */

void server_sched_get_state(const server_sched_t *self, struct server_sched_state *out)
{
    memset(out, 0, sizeof *out);
    out->format = SERVER_SCHED_STATE_FORMAT;
    out->n_decisions = self->n;
    out->last_seq = self->last_seq;
    out->has_seq = (uint64_t)self->has_seq;
    out->config = self->cfg;
    memcpy(out->decisions, self->dec, self->n * sizeof self->dec[0]);
}

/* Validate a whole state: format, config, each decision in order. */
int server_sched_state_check(const struct server_sched_state *st)
{
    if (st->format != SERVER_SCHED_STATE_FORMAT)
        return rt_err_set(RT_ERR_VERSION, "schedule state: format %u, expected %u", st->format,
                          SERVER_SCHED_STATE_FORMAT);
    int rc = server_sched_config_check(&st->config);
    if (rc != RT_OK)
        return rc;
    if (st->n_decisions > SERVER_SCHED_MAX_DECISIONS)
        return rt_err_set(RT_ERR_FORMAT, "schedule state: %u decisions (at most %d)",
                          st->n_decisions, SERVER_SCHED_MAX_DECISIONS);
    if (st->has_seq > 1)
        return rt_err_set(RT_ERR_FORMAT, "schedule state: has_seq %llu must be 0 or 1",
                          (unsigned long long)st->has_seq);
    int64_t prev_b = st->config.batch, prev_at = 0;
    for (uint32_t i = 0; i < st->n_decisions; i++) {
        const struct server_sched_decision *d = &st->decisions[i];
        rc = s_check_decision(&st->config, d, 1);
        if (rc != RT_OK)
            return rc;
        if (d->version != i + 1 || d->batch < prev_b || d->apply_step < prev_at)
            return rt_err_set(RT_ERR_FORMAT,
                              "schedule state: decision %u out of order (version %u, step %lld, "
                              "batch %lld)",
                              i + 1, d->version, (long long)d->apply_step, (long long)d->batch);
        prev_b = d->batch;
        prev_at = d->apply_step;
    }
    return RT_OK;
}

int server_sched_set_state(server_sched_t *self, const struct server_sched_state *in)
{
    int rc = server_sched_state_check(in);
    if (rc != RT_OK)
        return rc;
    server_sched_t old = *self;
    self->cfg = in->config;
    memset(self->present, 0, sizeof self->present);
    memcpy(self->dec, in->decisions, in->n_decisions * sizeof self->dec[0]);
    for (uint32_t i = 0; i < in->n_decisions; i++)
        self->present[i] = 1;
    self->n = in->n_decisions;
    self->last_seq = in->last_seq;
    self->has_seq = (int)in->has_seq;
    /* keep later pending decisions that still fit after the new list */
    for (uint32_t i = in->n_decisions; i < SERVER_SCHED_MAX_DECISIONS; i++) {
        if (!old.present[i])
            continue;
        if (s_check_decision(&self->cfg, &old.dec[i], 1) == RT_OK &&
            s_fits(self, &old.dec[i]) == RT_OK) {
            self->dec[i] = old.dec[i];
            self->present[i] = 1;
        }
    }
    while (self->n < SERVER_SCHED_MAX_DECISIONS && self->present[self->n])
        self->n++;
    return RT_OK;
}
