/*
 * test_balance: measured share balancing (cluster.balance: measured) on unequal workers.
 *
 * The coordinator alone: shares follow the reported speeds once every worker has reported (3:1
 * speeds give 3:1 shares of the same batch), small moves stay inside the dead band, a change of
 * speed is followed through the smoothing, and a worker measured as very slow keeps exactly the
 * minimum share (5% of an equal share). In process (2 shards, 2 worker threads, the synthetic
 * model): worker 1 spends three times as long per sample as worker 0, the shares converge toward
 * 3:1, the coordinator announces each re-split ("balance" events), and every sample of every
 * epoch is computed exactly once. `eigenbatch bench hetero` runs and reports its shares.
 */
#include "eb_test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_embed.h"
#include "rt_err.h"
#include "rt_metrics.h"
#include "server_coord.h"
#include "server_fixsched.h"
#include "worker_synth.h"

#define BATCH 256
#define N_SAMPLES 2048 /* 8 steps per epoch */
#define EPOCHS 5
#define P 64
#define US_PER_SAMPLE 40 /* worker 0's cost of a sample; worker 1's is SLOWDOWN times it */
#define SLOWDOWN 3

/* Worker ids 0 and 1 registered with weight 1 on a constant schedule of `batch`. */
static server_coord_t *s_coord(uint32_t batch, struct server_coord_sched *sched)
{
    struct server_fixsched_cfg fc = {
        .batch = batch, .lr = 0.1f, .n_samples = 100 * batch, .steps = 1000};
    assert_int_equal(server_fixsched_new(&fc, sched), 0);
    server_coord_t *c = server_coord_new(2, sched);
    assert_non_null(c);
    assert_int_equal(server_coord_register(c, "fast", 1.0), 0);
    assert_int_equal(server_coord_register(c, "slow", 1.0), 1);
    return c;
}

/* Worker id's share of `step`. */
static uint32_t s_share(server_coord_t *c, int id, uint64_t step)
{
    struct server_coord_point pt;
    uint32_t off, cnt;
    assert_int_equal(server_coord_step(c, id, step, &pt, &off, &cnt), 0);
    return cnt;
}

static void test_shares_follow_speed(void **state)
{
    (void)state;
    struct server_coord_sched sched;
    server_coord_t *c = s_coord(400, &sched);
    uint64_t from = 99;
    /* one report is not enough: the other worker has not been measured */
    assert_int_equal(server_coord_report_speed(c, 0, 300, &from), 0);
    assert_int_equal(s_share(c, 0, 0), 200);
    assert_int_equal(server_coord_report_speed(c, 1, 0, &from), RT_ERR_ARG);
    /* both measured, 3:1: from the first step nobody asked about, 300 / 100 of the 400 */
    assert_int_equal(server_coord_report_speed(c, 1, 100, &from), 1);
    assert_int_equal(from, 1);
    assert_int_equal(s_share(c, 1, 0), 200); /* step 0's table was frozen */
    assert_int_equal(s_share(c, 0, 1), 300);
    assert_int_equal(s_share(c, 1, 1), 100);
    /* 2% faster: inside the dead band, no re-split */
    assert_int_equal(server_coord_report_speed(c, 0, 312, &from), 0);
    assert_int_equal(s_share(c, 0, 2), 300);
    /* worker 1 becomes as fast as worker 0: the smoothed speeds follow within a few reports */
    int moves = 0;
    for (uint64_t t = 3; t < 12; t++) {
        moves += server_coord_report_speed(c, 0, 300, &from) == 1;
        moves += server_coord_report_speed(c, 1, 300, &from) == 1;
        assert_int_equal(s_share(c, 0, t) + s_share(c, 1, t), 400);
    }
    assert_true(moves >= 1);
    uint32_t s0 = s_share(c, 0, 12);
    if (s0 < 180 || s0 > 220)
        fail_msg("equal speeds: worker 0's share %u of 400 is not near 200", s0);
    server_coord_destroy(&c);
    server_fixsched_destroy(&sched);
    /* a worker measured as 1000 times slower keeps 5% of an equal share: 10 of 400 */
    c = s_coord(400, &sched);
    assert_int_equal(server_coord_report_speed(c, 0, 1000, &from), 0);
    assert_int_equal(server_coord_report_speed(c, 1, 1, &from), 1);
    assert_int_equal(s_share(c, 1, 0), (uint32_t)llround(SERVER_COORD_MIN_SHARE * 200));
    assert_int_equal(s_share(c, 0, 0), 400 - (uint32_t)llround(SERVER_COORD_MIN_SHARE * 200));
    server_coord_destroy(&c);
    server_fixsched_destroy(&sched);
}

/* A worker whose samples each take a fixed time; it records which samples it computed. */
struct s_timed {
    struct worker_synth model; /* the gradient */
    int us_per_sample;         /* sleep per sample of the share */
    uint8_t *seen;             /* EPOCHS x N_SAMPLES counters, shared by the workers */
    uint32_t last_share;       /* share of the last step */
};

static int s_timed_compute(void *user, const struct worker_step *st, const float *params,
                           float *grads, float *buffers, uint32_t *samples, float *loss)
{
    struct s_timed *w = user;
    long ns = (long)st->share_count * w->us_per_sample * 1000L;
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
    /* different workers write different samples: the shares never overlap */
    for (uint32_t k = 0; k < st->share_count; k++) {
        uint64_t i = st->epoch_offset + st->share_offset + k;
        if (st->epoch < EPOCHS && i < N_SAMPLES)
            w->seen[st->epoch * N_SAMPLES + i]++;
    }
    w->last_share = st->share_count;
    struct worker_compute c = worker_synth_compute(&w->model);
    return c.compute(&w->model, st, params, grads, buffers, samples, loss);
}

static int s_timed_init(void *user, float *params, float *buffers)
{
    worker_synth_initial(&((struct s_timed *)user)->model, params, buffers);
    return RT_OK;
}

static void test_unequal_workers_every_sample_once(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", tmp);
    rt_metrics_t *m = NULL;
    assert_int_equal(rt_metrics_open(path, 0, &m), 0);
    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = 0.01f, .n_samples = N_SAMPLES, .steps = EPOCHS * N_SAMPLES / BATCH};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    uint8_t *seen = calloc(EPOCHS * N_SAMPLES, 1);
    assert_non_null(seen);
    struct s_timed w[2];
    struct worker_compute cbs[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(worker_synth_init(&w[i].model, 3, P, 0), 0);
        w[i].us_per_sample = US_PER_SAMPLE * (i ? SLOWDOWN : 1);
        w[i].seen = seen;
        cbs[i] = (struct worker_compute){
            .user = &w[i], .init = s_timed_init, .compute = s_timed_compute};
    }
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = 2,
        .transport = "inproc",
        .where = "balance",
        .n_params = P,
        .momentum = 0.9f,
        .sched = &sched,
        .compute = cbs,
        .rebalance = 1,
        .metrics = m,
    };
    if (cluster_embed_run(&cc, NULL, NULL, NULL))
        fail_msg("cluster: %s", rt_err_msg());
    rt_metrics_close(&m);
    for (int e = 0; e < EPOCHS; e++)
        for (int i = 0; i < N_SAMPLES; i++)
            if (seen[e * N_SAMPLES + i] != 1)
                fail_msg("epoch %d: sample %d computed %d times", e, i, seen[e * N_SAMPLES + i]);
    /* the slow worker's share converged toward 1 / (1 + SLOWDOWN) of the batch (64 of 256) */
    double slow = (double)w[1].last_share / BATCH;
    if (slow < 0.15 || slow > 0.35)
        fail_msg("slow worker's final share %.3f, expected near %.3f", slow, 1.0 / (1 + SLOWDOWN));
    assert_int_equal(w[0].last_share + w[1].last_share, BATCH);
    /* each re-split was announced with the step it applies from, and shares that sum to 1 */
    json_t *ev = eb_test_events(path, "balance");
    assert_true(json_array_size(ev) >= 1);
    json_t *sh = json_object_get(json_array_get(ev, 0), "shares");
    assert_int_equal(json_array_size(sh), 2);
    double sum = json_real_value(json_array_get(sh, 0)) + json_real_value(json_array_get(sh, 1));
    assert_true(fabs(sum - 1) < 1e-9);
    assert_true(json_is_integer(json_object_get(json_array_get(ev, 0), "step")));
    json_decref(ev);
    for (int i = 0; i < 2; i++)
        worker_synth_fini(&w[i].model);
    free(seen);
    server_fixsched_destroy(&sched);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_bench_hetero_reports(void **state)
{
    (void)state;
    char cmd[4200], out[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' bench hetero --slowdown 3 --steps 12 --batch 128 --params 4000 --repeat 1 "
             "2>/dev/null",
             eb_test_binary());
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    json_error_t err;
    json_t *j = json_loads(out, 0, &err);
    if (!j)
        fail_msg("bench hetero printed no JSON: %s (%s)", out, err.text);
    assert_true(json_number_value(json_object_get(j, "equal_steps_per_s")) > 0);
    assert_true(json_number_value(json_object_get(j, "measured_steps_per_s")) > 0);
    json_t *sh = json_object_get(j, "measured_shares");
    assert_int_equal(json_array_size(sh), 2);
    /* the slowed-down worker ends with the smaller share */
    assert_true(json_real_value(json_array_get(sh, 1)) < 0.45);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shares_follow_speed),
        cmocka_unit_test(test_unequal_workers_every_sample_once),
        cmocka_unit_test(test_bench_hetero_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
