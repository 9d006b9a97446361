/*
 * test_ps_sched: the coordinator runs the real schedule mechanism (server_sched) and every
 * participant follows it. With BL (step decay) and GG (the batch grows at the decay epoch), an
 * epoch that ends in a partial step, 2 workers with unequal shares and 2 shards over inproc, the
 * final weights equal plain SGD over whole batches with the (B, lr, samples) that server_sched_at
 * gives for each step, within 1e-5 relative; the run stops when the schedule says done.
 */
#include "eb_test.h"

#include <stdlib.h>
#include <string.h>

#include "nn_net.h"
#include "rt_err.h"
#include "cluster_embed.h"
#include "server_sched.h"
#include "worker_synth.h"

#define P 501
#define NB 3
#define SEED 5
#define MOMENTUM 0.9
#define WD 1e-4

static server_sched_t *s_make(enum server_sched_method method, double rho)
{
    struct server_sched_config cfg;
    server_sched_config_default(&cfg, method, 60, 3);
    cfg.batch = 24;
    cfg.base_batch = 24;
    cfg.micro_batch = 8;
    cfg.lr = 1e-3;
    cfg.momentum = MOMENTUM;
    cfg.weight_decay = WD;
    cfg.n_decay = 1;
    cfg.decay_epochs[0] = 1;
    cfg.rho = rho;
    cfg.drop_last = 0;
    server_sched_t *s = server_sched_new(&cfg);
    if (!s)
        fail_msg("schedule: %s", rt_err_msg());
    return s;
}

/* Plain SGD following the schedule step by step; returns the number of steps. */
static int s_reference(server_sched_t *sched, float *w, float *b, int *saw_partial, double *lrs,
                       uint32_t *batches)
{
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, SEED, P, NB), 0);
    float *mom = calloc(P, sizeof(float)), *g = calloc(P, sizeof(float));
    worker_synth_initial(&m, w, b);
    int t = 0;
    for (;; t++) {
        struct server_sched_point p;
        assert_int_equal(server_sched_at(sched, t, -1, &p), 0);
        if (p.done)
            break;
        if (p.samples < p.batch)
            *saw_partial = 1;
        lrs[t] = p.lr;
        batches[t] = (uint32_t)p.batch;
        worker_synth_grad(&m, ((uint64_t)p.epoch << 32) + (uint64_t)p.offset, (uint32_t)p.samples,
                          w, g, b);
        nn_sgd_step(w, mom, g, P, (float)p.lr, (float)MOMENTUM, (float)WD);
    }
    free(mom);
    free(g);
    worker_synth_fini(&m);
    return t;
}

static void s_check(enum server_sched_method method, double rho)
{
    server_sched_t *sched = s_make(method, rho);
    float ref_w[P], ref_b[NB], w[P], b[NB];
    int partial = 0;
    double lrs[64];
    uint32_t batches[64];
    int steps = s_reference(sched, ref_w, ref_b, &partial, lrs, batches);
    assert_true(partial);
    if (method == SERVER_SCHED_BL)
        assert_true(lrs[steps - 1] < lrs[0]); /* the decay happened */
    else
        assert_true(batches[steps - 1] > batches[0]); /* the batch grew */
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);
    struct worker_synth models[2];
    struct worker_compute cbs[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(worker_synth_init(&models[i], SEED, P, NB), 0);
        cbs[i] = worker_synth_compute(&models[i]);
    }
    static const double weights[2] = {1.0, 2.0};
    struct worker_stats st[2];
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = 2,
        .transport = "inproc",
        .where = method == SERVER_SCHED_BL ? "sched-bl" : "sched-gg",
        .n_params = P,
        .n_buffers = NB,
        .momentum = (float)MOMENTUM,
        .weight_decay = (float)WD,
        .sched = &cs,
        .compute = cbs,
        .weights = weights,
        .chunk_floats = 100,
    };
    if (cluster_embed_run(&cc, w, b, st))
        fail_msg("cluster: %s", rt_err_msg());
    assert_int_equal(st[0].steps, steps);
    assert_int_equal(st[1].steps, steps);
    for (int i = 0; i < P; i++)
        if (eb_test_reldiff(w[i], ref_w[i], 1e-2) > 1e-5)
            fail_msg("%s: weight %d = %g, reference %g", server_sched_method_name(method), i,
                     (double)w[i], (double)ref_w[i]);
    for (int i = 0; i < NB; i++)
        if (eb_test_reldiff(b[i], ref_b[i], 1e-2) > 1e-5)
            fail_msg("%s: buffer %d = %g, reference %g", server_sched_method_name(method), i,
                     (double)b[i], (double)ref_b[i]);
    for (int i = 0; i < 2; i++)
        worker_synth_fini(&models[i]);
    server_sched_destroy(&sched);
}

static void test_bl_step_decay(void **state)
{
    (void)state;
    s_check(SERVER_SCHED_BL, 0.2);
}

static void test_gg_batch_growth(void **state)
{
    (void)state;
    s_check(SERVER_SCHED_GG, 0.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bl_step_decay),
        cmocka_unit_test(test_gg_batch_growth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
