/*
 * test_eig_observer: the eigen service's path. While 2 workers and 2 shards train (tcp loopback)
 * under the ABS schedule of server_sched, an observer fetches a consistent epoch-start snapshot
 * (equal to the weights a plain replay has at that version) and sends a decision that doubles the
 * batch; the coordinator stamps the step it applies from, everyone follows, and the final weights
 * equal a replay of the schedule with that stamped decision, within 1e-5 relative. Polling with
 * the version already held transfers no weights while the snapshot is unchanged. A decision to a
 * schedule that takes none is refused.
 */
#include "eb_test.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_net.h"
#include "rt_err.h"
#include "cluster_embed.h"
#include "server_fixsched.h"
#include "eig_observer.h"
#include "server_sched.h"
#include "worker_synth.h"

#define P 301
#define NB 3
#define SEED 13
#define LR 1e-3
#define MOMENTUM 0.9
#define WD 1e-4
#define N_SAMPLES 48
#define EPOCHS 8
#define BATCH 8
#define DELAY_US 15000

static void s_config(struct server_sched_config *c)
{
    server_sched_config_default(c, SERVER_SCHED_ABS, N_SAMPLES, EPOCHS);
    c->batch = BATCH;
    c->base_batch = BATCH;
    c->batch_max = 4 * BATCH;
    c->micro_batch = BATCH;
    c->lr = LR;
    c->momentum = MOMENTUM;
    c->weight_decay = WD;
    c->n_decay = 0;
}

/* Replay the schedule with plain SGD: weights after `upto` steps (or all, upto < 0). */
static int64_t s_replay(server_sched_t *sched, int64_t upto, float *w, float *b)
{
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, SEED, P, NB), 0);
    float *mom = calloc(P, sizeof(float)), *g = calloc(P, sizeof(float));
    worker_synth_initial(&m, w, b);
    int64_t t = 0;
    for (; upto < 0 || t < upto; t++) {
        struct server_sched_point p;
        assert_int_equal(server_sched_at(sched, t, -1, &p), 0);
        if (p.done)
            break;
        worker_synth_grad(&m, ((uint64_t)p.epoch << 32) + (uint64_t)p.offset, (uint32_t)p.samples,
                          w, g, b);
        nn_sgd_step(w, mom, g, P, (float)p.lr, (float)MOMENTUM, (float)WD);
    }
    free(mom);
    free(g);
    worker_synth_fini(&m);
    return t;
}

struct slow {
    struct worker_synth model;
};

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct slow *s = user;
    usleep(DELAY_US);
    struct worker_compute c = worker_synth_compute(&s->model);
    return c.compute(&s->model, st, params, grads, buffers, samples, loss);
}

static int s_init(void *user, float *params, float *buffers)
{
    struct slow *s = user;
    worker_synth_initial(&s->model, params, buffers);
    return 0;
}

struct run {
    struct cluster_embed_cfg cc;
    float w[P], b[NB];
    int rc;
    char err[256];
};

static void *s_run(void *arg)
{
    struct run *r = arg;
    r->rc = cluster_embed_run(&r->cc, r->w, r->b, NULL);
    if (r->rc)
        snprintf(r->err, sizeof r->err, "%s", rt_err_msg());
    return NULL;
}

static void s_check(const float *a, const float *ref, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (eb_test_reldiff(a[i], ref[i], 1e-2) > 1e-5)
            fail_msg("%s %d: %g, reference %g", what, i, (double)a[i], (double)ref[i]);
}

static void test_snapshot_and_decision(void **state)
{
    (void)state;
    struct server_sched_config cfg;
    s_config(&cfg);
    server_sched_t *sched = server_sched_new(&cfg);
    assert_non_null(sched);
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);
    struct slow sl[2];
    struct worker_compute cbs[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(worker_synth_init(&sl[i].model, SEED, P, NB), 0);
        cbs[i] = (struct worker_compute){.user = &sl[i], .init = s_init, .compute = s_compute};
    }
    struct run *r = calloc(1, sizeof *r);
    int port = eb_test_free_port();
    r->cc = (struct cluster_embed_cfg){
        .n_shards = 2,
        .n_workers = 2,
        .transport = "tcp",
        .where = "127.0.0.1",
        .port = port,
        .n_params = P,
        .n_buffers = NB,
        .momentum = (float)MOMENTUM,
        .weight_decay = (float)WD,
        .sched = &cs,
        .compute = cbs,
        .snapshots = 1,
        .checksum = RT_WIRE_CK_FLETCHER64,
    };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_run, r), 0);

    char ep0[64], ep1[64];
    snprintf(ep0, sizeof ep0, "tcp://127.0.0.1:%d", port);
    snprintf(ep1, sizeof ep1, "tcp://127.0.0.1:%d", port + 1);
    const char *eps[2] = {ep0, ep1};
    eig_observer_t *obs = NULL;
    assert_int_equal(eig_observer_new(NULL, 2, eps, P, NB, &obs), 0);
    float sw[P], sb[NB];
    uint64_t version = 0, epoch = 0;
    int rc;
    for (int tries = 0;; tries++) {
        rc = eig_observer_snapshot(obs, sw, sb, &version, &epoch, 5000);
        if (rc == 0 && epoch >= 1)
            break;
        if (rc && rc != RT_ERR_STATE)
            fail_msg("snapshot: %s", rt_err_msg());
        assert_true(tries < 2000);
        usleep(2000);
    }
    /* the snapshot is the replay's weights at the epoch's first step */
    struct server_sched_point start;
    assert_int_equal(server_sched_epoch_start(sched, (int32_t)epoch, &start), 0);
    assert_int_equal((int64_t)version, start.step);
    float rw[P], rb[NB];
    s_replay(sched, (int64_t)version, rw, rb);
    s_check(sw, rw, P, "snapshot weight");
    s_check(sb, rb, NB, "snapshot buffer");
    /* polling with the version held: nothing is transferred while the snapshot is unchanged;
     * once a new epoch started, the new snapshot arrives in full */
    float pw[P], pb[NB];
    memset(pw, 0, sizeof pw);
    memset(pb, 0, sizeof pb);
    uint64_t v2 = 0, e2 = 0;
    assert_int_equal(eig_observer_snapshot_since(obs, version, pw, pb, &v2, &e2, 5000), 0);
    if (v2 == version) {
        for (int i = 0; i < P; i++)
            assert_true(pw[i] == 0.0f);
    } else {
        float r2[P], rb2[NB];
        s_replay(sched, (int64_t)v2, r2, rb2);
        s_check(pw, r2, P, "new snapshot weight");
    }

    struct rt_wire_decision d = {.seq = 1,
                                 .snapshot_version = version,
                                 .epoch = (int32_t)epoch - 1,
                                 .batch = 2 * BATCH,
                                 .lr_base = 2 * LR,
                                 .gamma_base = 0,
                                 .lambda = 1.5};
    uint64_t apply = 0, sv = 0;
    rc = eig_observer_decide(obs, &d, &apply, &sv, 5000);
    if (rc != 0)
        fail_msg("decision: verdict %d (%s)", rc, rc < 0 ? rt_err_msg() : "not accepted");
    assert_true(apply >= version);
    assert_int_equal(sv, 1);
    /* the same decision again: a duplicate, nothing changes */
    uint64_t apply2 = 0, sv2 = 0;
    rc = eig_observer_decide(obs, &d, &apply2, &sv2, 5000);
    assert_int_equal(rc, SERVER_SCHED_DUPLICATE);
    eig_observer_destroy(&obs);
    pthread_join(th, NULL);
    if (r->rc)
        fail_msg("cluster: %s", r->err);

    /* replay with the decision stamped at the same step */
    server_sched_t *ref = server_sched_new(&cfg);
    struct server_sched_decision in = {.seq = 1,
                                       .snapshot_version = version,
                                       .epoch = (int32_t)epoch - 1,
                                       .batch = 2 * BATCH,
                                       .lr_base = 2 * LR,
                                       .gamma_base = 0,
                                       .lambda = 1.5},
                                 stamped;
    assert_int_equal(server_sched_accept(ref, &in, (int64_t)apply, &stamped), 0);
    assert_int_equal(stamped.apply_step, (int64_t)apply);
    float fw[P], fb[NB];
    s_replay(ref, -1, fw, fb);
    s_check(r->w, fw, P, "final weight");
    s_check(r->b, fb, NB, "final buffer");
    /* and the decision mattered: without it the weights differ */
    float nw[P], nb[NB];
    server_sched_t *plain = server_sched_new(&cfg);
    s_replay(plain, -1, nw, nb);
    server_sched_destroy(&plain);
    double diff = 0;
    for (int i = 0; i < P; i++)
        diff += (double)(nw[i] - fw[i]) * (nw[i] - fw[i]);
    assert_true(diff > 0);
    server_sched_destroy(&ref);
    server_sched_destroy(&sched);
    for (int i = 0; i < 2; i++)
        worker_synth_fini(&sl[i].model);
    free(r);
}

static void test_fixed_schedule_refuses_decisions(void **state)
{
    (void)state;
    struct server_fixsched_cfg fc = {.batch = 8, .lr = 0.1f, .n_samples = 64, .steps = 2};
    struct server_coord_sched cs;
    assert_int_equal(server_fixsched_new(&fc, &cs), 0);
    server_coord_t *c = server_coord_new(1, &cs);
    struct rt_wire_decision d = {.seq = 1, .batch = 16, .lr_base = 0.2};
    uint64_t apply, version;
    assert_int_equal(server_coord_decide(c, &d, &apply, &version), RT_ERR_UNSUPPORTED);
    server_coord_destroy(&c);
    server_fixsched_destroy(&cs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_and_decision),
        cmocka_unit_test(test_fixed_schedule_refuses_decisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
