/*
 * test_worker_decide: workers subscribe to the decision stream (PUB/SUB) and prepare for the
 * batch it announces before the step the coordinator stamps for it, while the coordinator's
 * schedule stays the one authority. An embedded cluster (2 shards, 2 synthetic workers over
 * inproc, the ABS schedule with decisions applied at the next epoch start) runs with a scripted
 * eigen service: it registers with the coordinator, sends one decision (B 32 -> 64), publishes
 * it with the step the coordinator stamped, and then publishes a rogue decision (B 128) that the
 * coordinator never saw. Every worker prepares for B 64 before the stamped step and counts the
 * change as prepared ahead; it may prepare for the rogue B too, but every step it computes has
 * the coordinator's B: 32 before the stamped step, 64 from it, never 128.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "cluster_embed.h"
#include "eb_test.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_sock.h"
#include "server_sched.h"
#include "worker_synth.h"

#define P 2000       /* synthetic parameters */
#define N 640        /* samples per epoch */
#define BATCH 32     /* 20 steps per epoch at first */
#define EPOCHS 3     /* epoch 0 at B 32, the others at 64: 20 + 10 + 10 steps */
#define MAX_STEPS 64 /* steps recorded */
#define STEP_US 5000 /* each step computes at least this long: the decision arrives in time */
#define DECIDE_AT 2  /* the decision is sent once worker 0 computed this step */
#define PUB_EP "inproc://worker-decide-pub"
#define WHERE "worker-decide"

/* A synthetic worker that records the batch of every step it computes and what it prepared. */
struct s_rec {
    struct worker_synth model;  /* the gradient */
    uint32_t batch[MAX_STEPS];  /* B of each step computed (0: not computed) */
    int prepared;               /* prepare calls */
    uint32_t prepared_batch[4]; /* their batches, in order */
    atomic_int computed;        /* steps computed */
};

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct s_rec *r = user;
    if (st->step < MAX_STEPS)
        r->batch[st->step] = st->batch;
    atomic_fetch_add(&r->computed, 1);
    struct timespec ts = {0, STEP_US * 1000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
    struct worker_compute c = worker_synth_compute(&r->model);
    return c.compute(&r->model, st, params, grads, buffers, samples, loss);
}

static int s_init(void *user, float *params, float *buffers)
{
    worker_synth_initial(&((struct s_rec *)user)->model, params, buffers);
    return RT_OK;
}

static void s_prepare(void *user, uint32_t batch, uint32_t share)
{
    struct s_rec *r = user;
    assert_true(share > 0 && share <= batch);
    if (r->prepared < 4)
        r->prepared_batch[r->prepared] = batch;
    r->prepared++;
}

/* The scripted eigen service. */
struct s_eig {
    void *ctx;            /* the cluster's context (inproc) */
    void *pub;            /* PUB bound at PUB_EP */
    atomic_int *computed; /* worker 0's steps computed: the decision comes during epoch 0 */
    uint64_t apply_step;  /* the coordinator's stamp of the decision (0: none) */
    uint32_t version;     /* the schedule version it became */
    int rc;               /* outcome */
};

/* Publish d as the service does (PUBLISH, verdict accepted). */
static int s_publish(struct s_eig *e, const struct rt_wire_decision *d)
{
    struct rt_wire_msg m;
    rt_wire_msg_init(&m, RT_WIRE_PUBLISH, -1, "eigensvc");
    m.decision = *d;
    m.decision.verdict = RT_WIRE_VERDICT_ACCEPTED;
    return rt_sock_send(e->pub, NULL, 0, &m, NULL, NULL, NULL);
}

static void *s_eig_main(void *arg)
{
    struct s_eig *e = arg;
    char ep[RT_SOCK_ENDPOINT_MAX];
    void *sock = NULL;
    struct rt_sock_in in;
    rt_sock_in_init(&in, "eig-test", 0, NULL);
    e->rc = rt_sock_endpoint(ep, sizeof ep, "inproc", WHERE, 0, 0);
    if (!e->rc)
        e->rc = rt_sock_dealer(e->ctx, ep, &sock);
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_REGISTER, -1, "eigensvc");
    q.role = RT_WIRE_ROLE_EIGENSVC;
    if (!e->rc)
        e->rc = rt_sock_request(sock, &q, &in, rt_clock_now() + 20, NULL, NULL, "shard 0");
    if (!e->rc && in.m.type != RT_WIRE_WELCOME)
        e->rc = RT_ERR_PEER;
    while (!e->rc && atomic_load(e->computed) < DECIDE_AT) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    struct rt_wire_decision d = {.seq = 1,
                                 .snapshot_version = 0,
                                 .epoch = 0,
                                 .batch = 2 * BATCH,
                                 .lr_base = 0.02,
                                 .gamma_base = 0,
                                 .lambda = 2.5};
    rt_wire_msg_init(&q, RT_WIRE_DECISION, -1, "eigensvc");
    q.decision = d;
    if (!e->rc)
        e->rc = rt_sock_request(sock, &q, &in, rt_clock_now() + 20, NULL, NULL, "shard 0");
    if (!e->rc && (in.m.type != RT_WIRE_ACK || in.m.err_code != RT_WIRE_VERDICT_ACCEPTED))
        e->rc = RT_ERR_PEER;
    if (!e->rc) {
        e->apply_step = in.m.step;
        e->version = (uint32_t)in.m.sched_version;
        d.apply_step = e->apply_step;
        d.sched_version = e->version;
        d.lr = d.lr_base;
        e->rc = s_publish(e, &d);
    }
    /* a decision nobody accepted, published as if it had been: advice that must change nothing */
    struct rt_wire_decision rogue = {.seq = 9,
                                     .epoch = 1,
                                     .batch = 4 * BATCH,
                                     .lr_base = 0.04,
                                     .apply_step = e->apply_step + 5,
                                     .sched_version = 7};
    if (!e->rc)
        e->rc = s_publish(e, &rogue);
    rt_sock_in_close(&in);
    rt_sock_close(&sock, 0);
    return NULL;
}

static void test_prepared_before_stamped_step(void **state)
{
    (void)state;
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_ABS, N, EPOCHS);
    c.batch = BATCH;
    c.base_batch = BATCH;
    c.batch_max = 4 * BATCH;
    c.micro_batch = BATCH;
    c.lr = 0.01;
    c.apply = SERVER_SCHED_APPLY_NEXT_EPOCH;
    server_sched_t *sched = server_sched_new(&c);
    assert_non_null(sched);
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);

    struct s_eig e = {.ctx = rt_sock_ctx_new(1)};
    assert_non_null(e.ctx);
    e.pub = zmq_socket(e.ctx, ZMQ_PUB);
    assert_non_null(e.pub);
    assert_int_equal(rt_sock_bind(e.ctx, e.pub, PUB_EP), 0);
    struct s_rec *w = calloc(2, sizeof *w);
    assert_non_null(w);
    struct worker_compute cbs[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(worker_synth_init(&w[i].model, 5, P, 0), 0);
        cbs[i] = (struct worker_compute){
            .user = &w[i], .init = s_init, .compute = s_compute, .prepare = s_prepare};
    }
    struct worker_stats stats[2];
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = 2,
        .transport = "inproc",
        .where = WHERE,
        .n_params = P,
        .momentum = 0.9f,
        .sched = &cs,
        .compute = cbs,
        .zmq_ctx = e.ctx,
        .decisions = PUB_EP,
    };
    e.computed = &w[0].computed;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_eig_main, &e), 0);
    int rc = cluster_embed_run(&cc, NULL, NULL, stats);
    pthread_join(th, NULL);
    if (rc)
        fail_msg("cluster: %s", rt_err_msg());
    if (e.rc)
        fail_msg("scripted eigen service: %s", rt_strerror(e.rc));
    /* the decision applies from the first epoch start the coordinator had not announced */
    if (e.apply_step != N / BATCH && e.apply_step != 2 * N / BATCH)
        fail_msg("decision stamped at step %llu, not an epoch start",
                 (unsigned long long)e.apply_step);
    uint64_t total =
        e.apply_step + (uint64_t)(EPOCHS - e.apply_step / (N / BATCH)) * N / (2 * BATCH);
    for (int i = 0; i < 2; i++) {
        /* the schedule computed is the coordinator's, step by step: the rogue B never */
        for (uint64_t t = 0; t < total; t++) {
            uint32_t want = t < e.apply_step ? BATCH : 2 * BATCH;
            if (w[i].batch[t] != want)
                fail_msg("worker %d, step %llu: B %u, the coordinator's is %u", i,
                         (unsigned long long)t, w[i].batch[t], want);
        }
        assert_int_equal(w[i].batch[total], 0);
        assert_int_equal(stats[i].steps, total);
        /* it prepared for B 64 (first) before the stamped step, and counted it */
        assert_true(w[i].prepared >= 1);
        assert_int_equal(w[i].prepared_batch[0], 2 * BATCH);
        assert_int_equal(stats[i].prepared, (uint64_t)w[i].prepared);
        assert_int_equal(stats[i].decisions, 2);
        assert_int_equal(stats[i].prepared_ahead, 1);
    }
    for (int i = 0; i < 2; i++)
        worker_synth_fini(&w[i].model);
    free(w);
    rt_sock_close(&e.pub, 0);
    rt_sock_ctx_destroy(&e.ctx);
    server_sched_destroy(&sched);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepared_before_stamped_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
