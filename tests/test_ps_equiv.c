/*
 * test_ps_equiv: data-parallel equivalence. With the synthetic least-squares model, W workers and
 * S shards (several combinations, unequal shares among them) give the same weights and buffers
 * after k steps as one process doing plain SGD over the whole batch, within 1e-5 relative; the
 * inproc, ipc and tcp transports agree with each other.
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_net.h"
#include "rt_err.h"
#include "cluster_embed.h"
#include "server_fixsched.h"
#include "worker_synth.h"

#define P 1001   /* parameters: odd, so shard ranges differ in size */
#define NB 7     /* fake running statistics */
#define BATCH 24 /* global batch */
#define STEPS 6  /* k */
#define LR 1e-3f
#define MOMENTUM 0.9f
#define WD 1e-4f
#define SEED 42
#define N_SAMPLES 48 /* two steps per epoch: epochs change during the run */
#define TOL 1e-5

/* The reference: one process, plain SGD over the whole batch from the same samples. */
static void s_reference(float *w, float *b)
{
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, SEED, P, NB), 0);
    float *mom = calloc(P, sizeof(float)), *g = calloc(P, sizeof(float));
    assert_non_null(mom);
    assert_non_null(g);
    worker_synth_initial(&m, w, b);
    for (uint64_t t = 0; t < STEPS; t++) {
        uint64_t per_epoch = N_SAMPLES / BATCH;
        uint64_t first = ((t / per_epoch) << 32) + (t % per_epoch) * BATCH;
        worker_synth_grad(&m, first, BATCH, w, g, b);
        nn_sgd_step(w, mom, g, P, LR, MOMENTUM, WD);
    }
    free(mom);
    free(g);
    worker_synth_fini(&m);
}

static void s_check_close(const float *a, const float *ref, size_t n, const char *what)
{
    double num = 0, den = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
        double r = eb_test_reldiff(a[i], ref[i], 1e-2);
        if (r > worst)
            worst = r;
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    if (rel > TOL || worst > TOL)
        fail_msg("%s: relative difference %g (worst element %g) > %g", what, rel, worst, TOL);
}

/* Run one cluster configuration and return its final weights/buffers. */
static void s_run(int W, int S, const double *weights, const char *transport, const char *where,
                  int init_at_shards, uint32_t chunk, float *w, float *b)
{
    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = LR, .n_samples = N_SAMPLES, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    struct worker_synth *models = calloc((size_t)W, sizeof *models);
    struct worker_compute *cbs = calloc((size_t)W, sizeof *cbs);
    float *w0 = calloc(P, sizeof(float)), *b0 = calloc(NB, sizeof(float));
    assert_non_null(models);
    assert_non_null(cbs);
    for (int i = 0; i < W; i++) {
        assert_int_equal(worker_synth_init(&models[i], SEED, P, NB), 0);
        cbs[i] = worker_synth_compute(&models[i]);
    }
    worker_synth_initial(&models[0], w0, b0);
    struct cluster_embed_cfg cc = {
        .n_shards = S,
        .n_workers = W,
        .transport = transport,
        .where = where,
        .n_params = P,
        .n_buffers = NB,
        .momentum = MOMENTUM,
        .weight_decay = WD,
        .sched = &sched,
        .init_params = init_at_shards ? w0 : NULL,
        .init_buffers = init_at_shards ? b0 : NULL,
        .compute = cbs,
        .weights = weights,
        .chunk_floats = chunk,
        .checksum = RT_WIRE_CK_CRC32,
    };
    struct worker_stats *st = calloc((size_t)W, sizeof *st);
    int rc = cluster_embed_run(&cc, w, b, st);
    if (rc)
        fail_msg("cluster W=%d S=%d over %s: %s", W, S, transport, rt_err_msg());
    for (int i = 0; i < W; i++)
        assert_int_equal(st[i].steps, STEPS);
    for (int i = 0; i < W; i++)
        worker_synth_fini(&models[i]);
    server_fixsched_destroy(&sched);
    free(models);
    free(cbs);
    free(w0);
    free(b0);
    free(st);
}

static void test_inproc_combinations(void **state)
{
    (void)state;
    float ref_w[P], ref_b[NB], w[P], b[NB];
    s_reference(ref_w, ref_b);
    static const double uneq2[] = {1.0, 3.0};
    static const double uneq3[] = {1.0, 2.0, 5.0};
    struct {
        int W, S;
        const double *weights;
        int init_at_shards;
        uint32_t chunk;
    } cases[] = {
        {1, 1, NULL, 1, 0},     {2, 2, NULL, 0, 100}, {2, 3, uneq2, 0, 64},
        {3, 2, uneq3, 1, 1000}, {4, 1, NULL, 0, 333}, {3, 4, uneq3, 0, 50},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[64], what[128];
        snprintf(name, sizeof name, "equiv-%zu", i);
        s_run(cases[i].W, cases[i].S, cases[i].weights, "inproc", name, cases[i].init_at_shards,
              cases[i].chunk, w, b);
        snprintf(what, sizeof what, "W=%d S=%d weights", cases[i].W, cases[i].S);
        s_check_close(w, ref_w, P, what);
        snprintf(what, sizeof what, "W=%d S=%d buffers", cases[i].W, cases[i].S);
        s_check_close(b, ref_b, NB, what);
    }
}

/* A synthetic worker slowed down by `delay_us` per step, remembering its last share. */
struct slow {
    struct worker_synth model; /* the model */
    int delay_us;              /* extra compute time per step */
    uint32_t first_share;      /* share of step 0 */
    uint32_t last_share;       /* share of the last step */
    int only_step;             /* > 0: delay only this step */
};

static int s_slow_compute(void *user, const struct worker_step *st, const float *params,
                          float *grads, float *buffers, uint32_t *samples, float *loss)
{
    struct slow *sl = user;
    if (sl->delay_us && (sl->only_step == 0 || (uint64_t)sl->only_step == st->step))
        usleep((useconds_t)sl->delay_us);
    if (st->step == 0)
        sl->first_share = st->share_count;
    sl->last_share = st->share_count;
    struct worker_compute c = worker_synth_compute(&sl->model);
    return c.compute(&sl->model, st, params, grads, buffers, samples, loss);
}

static int s_slow_init(void *user, float *params, float *buffers)
{
    struct slow *sl = user;
    worker_synth_initial(&sl->model, params, buffers);
    return 0;
}

static void test_rebalanced_shares(void **state)
{
    (void)state;
    /* worker 0 is slow: with re-balancing its share shrinks, and the weights still match */
    enum { NW = 3 };
    float ref_w[P], ref_b[NB], w[P], b[NB];
    s_reference(ref_w, ref_b);
    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = LR, .n_samples = N_SAMPLES, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    struct slow sl[NW];
    struct worker_compute cbs[NW];
    memset(sl, 0, sizeof sl);
    for (int i = 0; i < NW; i++) {
        assert_int_equal(worker_synth_init(&sl[i].model, SEED, P, NB), 0);
        sl[i].delay_us = i == 0 ? 20000 : 0;
        cbs[i] =
            (struct worker_compute){.user = &sl[i], .init = s_slow_init, .compute = s_slow_compute};
    }
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = NW,
        .transport = "inproc",
        .where = "rebalance",
        .n_params = P,
        .n_buffers = NB,
        .momentum = MOMENTUM,
        .weight_decay = WD,
        .sched = &sched,
        .compute = cbs,
        .rebalance = 1,
        .checksum = RT_WIRE_CK_FLETCHER64,
    };
    int rc = cluster_embed_run(&cc, w, b, NULL);
    if (rc)
        fail_msg("rebalanced cluster: %s", rt_err_msg());
    s_check_close(w, ref_w, P, "rebalanced weights");
    s_check_close(b, ref_b, NB, "rebalanced buffers");
    assert_int_equal(sl[0].first_share, BATCH / NW);
    if (sl[0].last_share >= BATCH / NW)
        fail_msg("slow worker's share stayed %u of %d", sl[0].last_share, BATCH);
    for (int i = 0; i < NW; i++)
        worker_synth_fini(&sl[i].model);
    server_fixsched_destroy(&sched);
}

static void test_slow_step_is_not_a_timeout(void **state)
{
    (void)state;
    /* one worker needs 2 s for a step, the others time out after 1 s of silence: the
     * coordinator's heartbeat answers keep them waiting */
    enum { NW = 2 };
    float ref_w[P], ref_b[NB], w[P], b[NB];
    s_reference(ref_w, ref_b);
    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = LR, .n_samples = N_SAMPLES, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    struct slow sl[NW];
    struct worker_compute cbs[NW];
    memset(sl, 0, sizeof sl);
    for (int i = 0; i < NW; i++) {
        assert_int_equal(worker_synth_init(&sl[i].model, SEED, P, NB), 0);
        sl[i].delay_us = i == 1 ? 2000000 : 0;
        sl[i].only_step = 2;
        cbs[i] =
            (struct worker_compute){.user = &sl[i], .init = s_slow_init, .compute = s_slow_compute};
    }
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = NW,
        .transport = "inproc",
        .where = "slow-step",
        .n_params = P,
        .n_buffers = NB,
        .momentum = MOMENTUM,
        .weight_decay = WD,
        .sched = &sched,
        .compute = cbs,
        .worker_timeout_ms = 1000,
    };
    int rc = cluster_embed_run(&cc, w, b, NULL);
    if (rc)
        fail_msg("slow cluster: %s", rt_err_msg());
    s_check_close(w, ref_w, P, "slow-step weights");
    for (int i = 0; i < NW; i++)
        worker_synth_fini(&sl[i].model);
    server_fixsched_destroy(&sched);
}

static void test_transports_agree(void **state)
{
    (void)state;
    static const double uneq[] = {2.0, 1.0};
    float wi[P], bi[NB], wp[P], bp[NB], wt[P], bt[NB], ref_w[P], ref_b[NB];
    s_reference(ref_w, ref_b);
    s_run(2, 3, uneq, "inproc", "transports", 0, 128, wi, bi);
    char *dir = eb_test_tmpdir();
    s_run(2, 3, uneq, "ipc", dir, 0, 128, wp, bp);
    eb_test_rmtree(dir);
    free(dir);
    s_run(2, 3, uneq, "tcp", "127.0.0.1", 0, 128, wt, bt);
    s_check_close(wp, wi, P, "ipc vs inproc weights");
    s_check_close(wt, wi, P, "tcp vs inproc weights");
    s_check_close(bp, bi, NB, "ipc vs inproc buffers");
    s_check_close(bt, bi, NB, "tcp vs inproc buffers");
    s_check_close(wt, ref_w, P, "tcp vs reference weights");
}

static void test_tcp_fixed_ports(void **state)
{
    (void)state;
    /* shards bound on consecutive ports from a free one, as `eigenbatch launch` does */
    float w[P], b[NB], ref_w[P], ref_b[NB];
    s_reference(ref_w, ref_b);
    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = LR, .n_samples = N_SAMPLES, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    struct worker_synth model;
    assert_int_equal(worker_synth_init(&model, SEED, P, NB), 0);
    struct worker_compute cb = worker_synth_compute(&model);
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = 1,
        .transport = "tcp",
        .where = "127.0.0.1",
        .port = eb_test_free_port(),
        .n_params = P,
        .n_buffers = NB,
        .momentum = MOMENTUM,
        .weight_decay = WD,
        .sched = &sched,
        .compute = &cb,
        .checksum = RT_WIRE_CK_FLETCHER64,
    };
    int rc = cluster_embed_run(&cc, w, b, NULL);
    if (rc)
        fail_msg("tcp on port %d: %s", cc.port, rt_err_msg());
    s_check_close(w, ref_w, P, "tcp 1x2 weights");
    s_check_close(b, ref_b, NB, "tcp 1x2 buffers");
    worker_synth_fini(&model);
    server_fixsched_destroy(&sched);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inproc_combinations),
        cmocka_unit_test(test_rebalanced_shares),
        cmocka_unit_test(test_slow_step_is_not_a_timeout),
        cmocka_unit_test(test_transports_agree),
        cmocka_unit_test(test_tcp_fixed_ports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
