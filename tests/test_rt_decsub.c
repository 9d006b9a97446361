/*
 * test_rt_decsub: a subscriber never acts on a decision the coordinator did not accept. On the
 * decision channel, refused, stale, superseded and no-change decisions (and one that claims to be
 * accepted without an apply step) are dropped by rt_decsub_recv, which returns the next decision in
 * force; with only refused ones it times out. A late joiner whose query is answered with a stale
 * decision gets RT_ERR_STATE from rt_decsub_current, and the decision when it is in force.
 */
#include "eb_test.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "rt_decsub.h"
#include "rt_err.h"
#include "rt_sock.h"
#include "server_sched.h"

#define PUB_EP "inproc://eig-sub-test-pub"
#define QUERY_EP "inproc://eig-sub-test-query"
#define SETTLE_US 200000 /* the subscription reaches the PUB socket */

static struct rt_wire_decision s_decision(uint64_t seq, int verdict, uint64_t apply, uint32_t sv)
{
    struct rt_wire_decision d;
    memset(&d, 0, sizeof d);
    d.seq = seq;
    d.epoch = (int32_t)seq - 1;
    d.batch = 256;
    d.lr_base = 0.2;
    d.verdict = verdict;
    d.apply_step = apply;
    d.sched_version = sv;
    snprintf(d.reason, sizeof d.reason, "test %llu", (unsigned long long)seq);
    return d;
}

static void s_publish(void *pub, const struct rt_wire_decision *d)
{
    struct rt_wire_msg m;
    rt_wire_msg_init(&m, RT_WIRE_PUBLISH, -1, "test");
    m.decision = *d;
    m.epoch = (uint64_t)d->epoch;
    m.sched_version = d->sched_version;
    assert_int_equal(rt_sock_send(pub, NULL, 0, &m, NULL, NULL, NULL), 0);
}

static void test_in_force(void **state)
{
    (void)state;
    struct rt_wire_decision ok = s_decision(3, SERVER_SCHED_ACCEPTED, 30, 1);
    assert_true(rt_decsub_in_force(&ok));
    struct rt_wire_decision no[] = {
        s_decision(3, SERVER_SCHED_STALE, 0, 0),     s_decision(3, SERVER_SCHED_SUPERSEDED, 0, 0),
        s_decision(3, SERVER_SCHED_NOCHANGE, 0, 0),  s_decision(3, SERVER_SCHED_DUPLICATE, 0, 0),
        s_decision(3, RT_ERR_STATE, 0, 0),           s_decision(3, SERVER_SCHED_ACCEPTED, 0, 1),
        s_decision(3, SERVER_SCHED_ACCEPTED, 30, 0),
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        if (rt_decsub_in_force(&no[i]))
            fail_msg("decision %zu (verdict %d) counted as in force", i, (int)no[i].verdict);
}

static void test_recv_drops_refused(void **state)
{
    (void)state;
    void *ctx = rt_sock_ctx_new(1);
    assert_non_null(ctx);
    void *pub = zmq_socket(ctx, ZMQ_PUB);
    assert_non_null(pub);
    assert_int_equal(zmq_bind(pub, PUB_EP), 0);
    rt_decsub_t *sub = NULL;
    assert_int_equal(rt_decsub_new(ctx, PUB_EP, &sub), 0);
    usleep(SETTLE_US);
    struct rt_wire_decision refused[] = {
        s_decision(1, RT_ERR_STATE, 0, 0),
        s_decision(2, SERVER_SCHED_STALE, 0, 0),
        s_decision(3, SERVER_SCHED_SUPERSEDED, 0, 0),
        s_decision(4, SERVER_SCHED_NOCHANGE, 0, 0),
        s_decision(5, SERVER_SCHED_ACCEPTED, 0, 0),
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        s_publish(pub, &refused[i]);
    struct rt_wire_decision good = s_decision(6, SERVER_SCHED_ACCEPTED, 48, 2), got;
    s_publish(pub, &good);
    assert_int_equal(rt_decsub_recv(sub, &got, 3000), 0);
    assert_int_equal(got.seq, 6);
    assert_int_equal(got.apply_step, 48);
    assert_string_equal(got.reason, "test 6");
    /* nothing in force: nothing delivered */
    s_publish(pub, &refused[1]);
    assert_int_equal(rt_decsub_recv(sub, &got, 300), RT_ERR_TIMEOUT);
    rt_decsub_destroy(&sub);
    rt_sock_close(&pub, 0);
    rt_sock_ctx_destroy(&ctx);
}

/* A query endpoint that answers its queries with the given decisions, in order. */
struct answers {
    void *router;
    const struct rt_wire_decision *d;
    int n;
};

static void *s_answer(void *arg)
{
    struct answers *a = arg;
    struct rt_sock_parts p;
    rt_sock_parts_init(&p);
    for (int i = 0; i < a->n; i++) {
        if (rt_sock_recv(a->router, &p, 0))
            break;
        uint8_t route[RT_SOCK_ROUTE_MAX];
        size_t rlen = rt_sock_part_size(&p, 0);
        memcpy(route, rt_sock_part_data(&p, 0), rlen);
        rt_sock_parts_release(&p);
        struct rt_wire_msg r;
        rt_wire_msg_init(&r, RT_WIRE_PUBLISH, -1, "test");
        r.decision = a->d[i];
        rt_sock_send(a->router, route, rlen, &r, NULL, NULL, NULL);
    }
    rt_sock_parts_close(&p);
    return NULL;
}

static void test_current_refuses_stale(void **state)
{
    (void)state;
    void *ctx = rt_sock_ctx_new(1);
    assert_non_null(ctx);
    struct rt_wire_decision ds[2] = {s_decision(8, SERVER_SCHED_STALE, 0, 0),
                                     s_decision(9, SERVER_SCHED_ACCEPTED, 72, 3)};
    struct answers a = {NULL, ds, 2};
    assert_int_equal(rt_sock_router(ctx, QUERY_EP, 0, &a.router), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_answer, &a), 0);
    struct rt_wire_decision got;
    assert_int_equal(rt_decsub_current(ctx, QUERY_EP, &got, 3000), RT_ERR_STATE);
    assert_int_equal(rt_decsub_current(ctx, QUERY_EP, &got, 3000), 0);
    assert_int_equal(got.seq, 9);
    assert_int_equal(got.sched_version, 3);
    pthread_join(th, NULL);
    rt_sock_close(&a.router, 0);
    rt_sock_ctx_destroy(&ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_force),
        cmocka_unit_test(test_recv_drops_refused),
        cmocka_unit_test(test_current_refuses_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
