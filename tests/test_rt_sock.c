/*
 * test_rt_sock: the receive helpers. rt_sock_recv_msg decodes a valid message (routing id, header,
 * payload) and drops, counts and skips malformed ones (bytes that are no header, too many frames)
 * before it; without ZMQ_DONTWAIT's wait it reports an empty queue. rt_sock_request skips replies
 * its match refuses and malformed ones and returns the one that answers; rt_sock_recv_until gives
 * up at its deadline. Zero-copy ownership: buffers handed to rt_sock_zc_release are freed at once
 * when no frame is in flight, and with the last frame when a peer never read it (its context's
 * end), once each.
 */
#include "eb_test.h"

#include <string.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_sock.h"

#define S_EP "inproc://test-rt-sock"
#define S_N 8 /* floats of the flat parameter vector */

static const struct rt_wire_limits s_lim = {.n_params = S_N, .n_buffers = 0, .max_floats = S_N};

/* A ROUTER and a DEALER connected to it, in ctx. */
static void s_pair(void **ctx, void **router, void **dealer)
{
    assert_non_null(*ctx = rt_sock_ctx_new(1));
    assert_int_equal(rt_sock_router(*ctx, S_EP, 0, router), 0);
    assert_int_equal(rt_sock_dealer(*ctx, S_EP, dealer), 0);
}

static void s_unpair(void **ctx, void **router, void **dealer)
{
    rt_sock_close(dealer, 0);
    rt_sock_close(router, 0);
    rt_sock_ctx_destroy(ctx);
}

/* Send raw frames (the last without SNDMORE). */
static void s_send_raw(void *sock, int n, const char *text)
{
    for (int i = 0; i < n; i++)
        assert_true(zmq_send(sock, text, strlen(text), i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

static void test_recv_drops_malformed(void **state)
{
    (void)state;
    void *ctx, *router, *dealer;
    s_pair(&ctx, &router, &dealer);
    s_send_raw(dealer, 1, "not a header");
    s_send_raw(dealer, RT_SOCK_MAX_PARTS + 2, "x");
    float g[S_N];
    for (int i = 0; i < S_N; i++)
        g[i] = (float)i + 0.5f;
    struct rt_wire_msg m;
    rt_wire_msg_init(&m, RT_WIRE_PUSH, 3, "w3");
    m.step = 7;
    m.checksum = RT_WIRE_CK_CRC32;
    m.has_params = 1;
    m.params.offset = 0;
    m.params.count = S_N;
    assert_int_equal(rt_sock_send(dealer, NULL, 0, &m, g, NULL, NULL), 0);

    struct rt_sock_in in;
    rt_sock_in_init(&in, "test", 1, &s_lim);
    assert_int_equal(rt_sock_recv_msg(router, &in, 0, NULL), 0);
    assert_int_equal(in.dropped, 2);
    assert_int_equal(in.m.type, RT_WIRE_PUSH);
    assert_int_equal(in.m.sender, 3);
    assert_int_equal(in.m.step, 7);
    assert_true(in.route != NULL && in.route_len > 0);
    assert_non_null(in.params);
    assert_null(in.buffers);
    float got[S_N];
    memcpy(got, in.params, sizeof got);
    assert_memory_equal(got, g, sizeof g);
    /* the routing id answers the sender */
    struct rt_wire_msg r;
    rt_wire_msg_init(&r, RT_WIRE_ACK, 0, "shard-0");
    assert_int_equal(rt_sock_send(router, in.route, in.route_len, &r, NULL, NULL, NULL), 0);
    rt_sock_in_release(&in);
    assert_null(in.route);
    assert_null(in.params);
    assert_int_equal(rt_sock_recv_msg(router, &in, ZMQ_DONTWAIT, NULL), RT_ERR_TIMEOUT);
    /* a slice past the limits is dropped like any malformed message: nothing valid comes */
    m.params.offset = 1;
    assert_int_equal(rt_sock_send(dealer, NULL, 0, &m, g, NULL, NULL), 0);
    assert_int_equal(rt_sock_recv_until(router, &in, rt_clock_now() + 0.3, NULL), RT_ERR_TIMEOUT);
    assert_int_equal(in.dropped, 3);
    rt_sock_in_close(&in);

    struct rt_sock_in din;
    rt_sock_in_init(&din, "test", 0, NULL);
    assert_int_equal(rt_sock_recv_until(dealer, &din, rt_clock_now() + 5.0, "shard 0"), 0);
    assert_int_equal(din.m.type, RT_WIRE_ACK);
    assert_null(din.route);
    rt_sock_in_close(&din);
    s_unpair(&ctx, &router, &dealer);
}

/* Does the reply answer the request about step *arg? */
static int s_answers(const struct rt_wire_msg *r, void *arg)
{
    return r->step == *(const uint64_t *)arg;
}

static void test_request(void **state)
{
    (void)state;
    void *ctx, *router, *dealer;
    s_pair(&ctx, &router, &dealer);
    /* the router learns the dealer's routing id, then queues a late answer to an earlier question,
     * garbage and the answer */
    struct rt_wire_msg m;
    rt_wire_msg_init(&m, RT_WIRE_HELLO, 0, "w0");
    assert_int_equal(rt_sock_send(dealer, NULL, 0, &m, NULL, NULL, NULL), 0);
    struct rt_sock_in rin;
    rt_sock_in_init(&rin, "test", 1, NULL);
    assert_int_equal(rt_sock_recv_msg(router, &rin, 0, NULL), 0);
    uint8_t route[RT_SOCK_ROUTE_MAX];
    size_t rlen = rin.route_len;
    memcpy(route, rin.route, rlen);
    rt_sock_in_close(&rin);
    rt_wire_msg_init(&m, RT_WIRE_SCHED, 0, "shard-0");
    m.step = 4;
    assert_int_equal(rt_sock_send(router, route, rlen, &m, NULL, NULL, NULL), 0);
    assert_true(zmq_send(router, route, rlen, ZMQ_SNDMORE) >= 0);
    s_send_raw(router, 1, "garbage");
    m.step = 5;
    assert_int_equal(rt_sock_send(router, route, rlen, &m, NULL, NULL, NULL), 0);

    struct rt_sock_in in;
    rt_sock_in_init(&in, "test", 0, NULL);
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_SCHED_QUERY, -1, "test");
    uint64_t step = 5;
    q.step = step;
    assert_int_equal(
        rt_sock_request(dealer, &q, &in, rt_clock_now() + 5.0, s_answers, &step, "the coordinator"),
        0);
    assert_int_equal(in.m.type, RT_WIRE_SCHED);
    assert_int_equal(in.m.step, 5);
    assert_int_equal(in.dropped, 1);
    /* the request went out */
    rt_sock_in_init(&rin, "test", 1, NULL);
    assert_int_equal(rt_sock_recv_until(router, &rin, rt_clock_now() + 5.0, NULL), 0);
    assert_int_equal(rin.m.type, RT_WIRE_SCHED_QUERY);
    assert_int_equal(rin.m.step, 5);
    rt_sock_in_close(&rin);
    /* nobody answers this one: the deadline ends the wait */
    q.step = step = 6;
    double t0 = rt_clock_now();
    assert_int_equal(
        rt_sock_request(dealer, &q, &in, t0 + 0.2, s_answers, &step, "the coordinator"),
        RT_ERR_TIMEOUT);
    double dt = rt_clock_now() - t0;
    assert_true(dt >= 0.19 && dt < 5.0);
    rt_sock_in_close(&in);
    s_unpair(&ctx, &router, &dealer);
}

/* free_fn of the zero-copy tests: counts and frees. */
static int s_freed;
static void s_count_free(void *p)
{
    s_freed++;
    free(p);
}

static void test_zc_release_without_frames(void **state)
{
    (void)state;
    struct rt_sock_zc *zc = rt_sock_zc_new();
    assert_non_null(zc);
    assert_int_equal(rt_sock_zc_in_flight(zc), 0);
    void *const bufs[] = {malloc(16), NULL, malloc(8)};
    s_freed = 0;
    assert_int_equal(rt_sock_zc_release(zc, s_count_free, bufs, 3), 0);
    assert_int_equal(s_freed, 2); /* at once; NULL skipped */
    void *const more[] = {malloc(4)};
    assert_int_equal(rt_sock_zc_release(NULL, s_count_free, more, 1), 0);
    assert_int_equal(s_freed, 3);
}

/* A peer that never reads: the frames hold the buffer past the owner's release, until the
 * context ends; nothing is freed early and nothing leaks (ASan's leak check runs this too). */
static void test_zc_release_with_unread_frames(void **state)
{
    (void)state;
    void *ctx, *router, *dealer;
    s_pair(&ctx, &router, &dealer);
    const size_t n = RT_SOCK_ZC_MIN_BYTES / sizeof(float) * 2;
    float *g = malloc(n * sizeof(float));
    assert_non_null(g);
    for (size_t i = 0; i < n; i++)
        g[i] = (float)i;
    struct rt_sock_zc *zc = rt_sock_zc_new();
    assert_non_null(zc);
    struct rt_wire_msg m;
    rt_wire_msg_init(&m, RT_WIRE_PUSH, 1, "w1");
    m.has_params = 1;
    m.params.offset = 0;
    m.params.count = (uint32_t)n;
    assert_int_equal(rt_sock_send(dealer, NULL, 0, &m, g, NULL, zc), 0);
    assert_int_equal(rt_sock_send(dealer, NULL, 0, &m, g, NULL, zc), 0);
    /* inproc: the frames sit in the router's queue, unread */
    assert_int_equal(rt_sock_zc_in_flight(zc), 2);
    s_freed = 0;
    void *const bufs[] = {g};
    assert_int_equal(rt_sock_zc_release(zc, s_count_free, bufs, 1), 2);
    assert_int_equal(s_freed, 0);     /* still ZeroMQ's */
    s_unpair(&ctx, &router, &dealer); /* the context's end drops the queued frames */
    assert_int_equal(s_freed, 1);
}

static void test_route_hex(void **state)
{
    (void)state;
    uint8_t r[40];
    for (int i = 0; i < 40; i++)
        r[i] = (uint8_t)(0xa0 + i);
    char hex[RT_SOCK_ROUTE_HEX];
    assert_string_equal(rt_sock_route_hex(r, 3, hex, sizeof hex), "a0a1a2");
    assert_int_equal(strlen(rt_sock_route_hex(r, 40, hex, sizeof hex)), RT_SOCK_ROUTE_HEX - 4);
    char small[5];
    assert_string_equal(rt_sock_route_hex(r, 40, small, sizeof small), "a0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recv_drops_malformed),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_route_hex),
        cmocka_unit_test(test_zc_release_without_frames),
        cmocka_unit_test(test_zc_release_with_unread_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
