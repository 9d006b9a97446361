/*
 * test_ps_totals: train metrics cover every worker. Two workers with unequal shares (weights 3:1)
 * over 2 shards: worker 0 classifies all of its samples correctly, worker 1 only those at epoch
 * positions divisible by 3. The per-step totals the coordinator sends back (worker_totals) must
 * add up, per epoch, to every sample of the epoch and to the sum of both workers' own counts and
 * losses, and both workers must receive the same totals. The epoch accuracy they give differs
 * from worker 0's own share (1.0), which is what the epoch event used to report.
 */
#include "eb_test.h"

#include <string.h>

#include "rt_err.h"
#include "cluster_embed.h"
#include "server_fixsched.h"
#include "worker_synth.h"

#define P 101
#define NB 2
#define SEED 5
#define N_SAMPLES 40
#define BATCH 8
#define EPOCHS 3
#define STEPS (EPOCHS * N_SAMPLES / BATCH)

/* One worker: its model and what it saw. */
struct rec {
    struct worker_synth model;    /* the synthetic model */
    uint32_t last_correct;        /* correct samples of the last compute */
    uint64_t own_samples[EPOCHS]; /* per epoch: samples this worker computed */
    uint64_t own_correct[EPOCHS]; /* ... of them correct */
    double own_loss[EPOCHS];      /* ... sum of samples * mean loss */
    uint64_t tot_samples[EPOCHS]; /* per epoch: the coordinator's totals received, summed */
    uint64_t tot_correct[EPOCHS]; /* ... correct */
    double tot_loss[EPOCHS];      /* ... summed loss */
    uint64_t n_totals;            /* totals callbacks */
    uint64_t next_step;           /* step the next totals must name */
    int out_of_order;             /* a totals callback named an unexpected step or epoch */
};

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct rec *r = user;
    struct worker_compute c = worker_synth_compute(&r->model);
    int rc = c.compute(&r->model, st, params, grads, buffers, samples, loss);
    uint32_t ok = 0;
    for (uint32_t j = 0; j < st->share_count; j++) {
        uint64_t pos = st->epoch_offset + st->share_offset + j;
        ok += st->worker == 0 || pos % 3 == 0;
    }
    r->last_correct = ok;
    assert_true(st->epoch < EPOCHS);
    r->own_samples[st->epoch] += *samples;
    r->own_correct[st->epoch] += ok;
    r->own_loss[st->epoch] += (double)*loss * *samples;
    return rc;
}

static uint32_t s_correct(void *user)
{
    return ((struct rec *)user)->last_correct;
}

static void s_totals(void *user, const struct worker_totals *t)
{
    struct rec *r = user;
    if (t->step != r->next_step || t->epoch != t->step * BATCH / N_SAMPLES || t->epoch >= EPOCHS) {
        r->out_of_order = 1;
        return;
    }
    r->next_step++;
    r->n_totals++;
    r->tot_samples[t->epoch] += t->samples;
    r->tot_correct[t->epoch] += t->correct;
    r->tot_loss[t->epoch] += t->loss_sum;
}

static int s_init(void *user, float *params, float *buffers)
{
    struct rec *r = user;
    worker_synth_initial(&r->model, params, buffers);
    return 0;
}

static void test_totals_cover_every_worker(void **state)
{
    (void)state;
    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = 1e-3f, .n_samples = N_SAMPLES, .steps = STEPS};
    struct server_coord_sched cs;
    assert_int_equal(server_fixsched_new(&fc, &cs), 0);
    static struct rec recs[2];
    memset(recs, 0, sizeof recs);
    struct worker_compute cbs[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(worker_synth_init(&recs[i].model, SEED, P, NB), 0);
        cbs[i] = (struct worker_compute){.user = &recs[i],
                                         .init = s_init,
                                         .compute = s_compute,
                                         .correct = s_correct,
                                         .totals = s_totals};
    }
    static const double weights[2] = {3.0, 1.0};
    struct worker_stats st[2];
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = 2,
        .transport = "inproc",
        .where = "totals",
        .n_params = P,
        .n_buffers = NB,
        .momentum = 0.9f,
        .sched = &cs,
        .compute = cbs,
        .weights = weights,
        .chunk_floats = 40,
    };
    if (cluster_embed_run(&cc, NULL, NULL, st))
        fail_msg("cluster: %s", rt_err_msg());
    for (int i = 0; i < 2; i++) {
        assert_false(recs[i].out_of_order);
        assert_int_equal(recs[i].n_totals, STEPS);
    }
    for (int e = 0; e < EPOCHS; e++) {
        uint64_t own_s = recs[0].own_samples[e] + recs[1].own_samples[e];
        uint64_t own_c = recs[0].own_correct[e] + recs[1].own_correct[e];
        double own_l = recs[0].own_loss[e] + recs[1].own_loss[e];
        assert_int_equal(own_s, N_SAMPLES);
        /* the shares differ: 3:1 */
        assert_true(recs[0].own_samples[e] != recs[1].own_samples[e]);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(recs[i].tot_samples[e], N_SAMPLES);
            assert_int_equal(recs[i].tot_correct[e], own_c);
            if (eb_test_reldiff(recs[i].tot_loss[e], own_l, 1e-6) > 1e-5)
                fail_msg("epoch %d: totals' loss %g, the workers' own %g", e, recs[i].tot_loss[e],
                         own_l);
        }
        /* the epoch's accuracy over every worker is not worker 0's share's (all correct) */
        double acc = (double)recs[0].tot_correct[e] / (double)recs[0].tot_samples[e];
        assert_true(acc < 1.0);
        assert_true(own_c > recs[0].own_correct[e] && own_c > recs[1].own_correct[e]);
    }
    for (int i = 0; i < 2; i++)
        worker_synth_fini(&recs[i].model);
    server_fixsched_destroy(&cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_totals_cover_every_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
