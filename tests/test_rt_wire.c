/*
 * test_rt_wire: the protocol codec. Headers of every type survive a round trip; random bytes,
 * truncated multipart messages, wrong versions, wrong slice sizes, oversize frames and bad
 * checksums are rejected with the right error code, never a crash. Also the balanced partition
 * and the proportional shares.
 */
#include "eb_test.h"

#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_wire.h"
#include "server_coord.h"

#define N_PARAMS 1000
#define N_BUFFERS 10
#define FUZZ_ROUNDS 20000

static const struct rt_wire_limits s_lim = {N_PARAMS, N_BUFFERS, 500};

/* Encode m with payloads p (pc floats) and b (bc floats) into parts; returns the part count. */
static int s_pack(struct rt_wire_msg *m, const float *p, const float *b, uint8_t *hdr, size_t cap,
                  const void **parts, size_t *sizes)
{
    size_t len = 0;
    rt_wire_seal(m, p, b);
    assert_int_equal(rt_wire_encode(m, hdr, cap, &len), 0);
    int n = 0;
    parts[n] = hdr;
    sizes[n++] = len;
    if (m->has_params) {
        parts[n] = p;
        sizes[n++] = m->params.count * sizeof(float);
    }
    if (m->has_buffers) {
        parts[n] = b;
        sizes[n++] = m->buffers.count * sizeof(float);
    }
    return n;
}

static void s_push_msg(struct rt_wire_msg *m)
{
    rt_wire_msg_init(m, RT_WIRE_PUSH, 3, "worker-3");
    m->step = 17;
    m->sched_version = 4;
    m->checksum = RT_WIRE_CK_CRC32;
    m->has_params = 1;
    m->params.offset = 100;
    m->params.count = 200;
    m->has_buffers = 1;
    m->buffers.offset = 2;
    m->buffers.count = 5;
    m->samples = 64;
    m->loss = 2.5f;
    m->lr = 0.125f;
}

static void test_round_trip_all_types(void **state)
{
    (void)state;
    float p[200], b[5];
    for (int i = 0; i < 200; i++)
        p[i] = (float)i * 0.5f;
    for (int i = 0; i < 5; i++)
        b[i] = -(float)i;
    for (int type = RT_WIRE_REGISTER; type <= RT_WIRE_TYPE_MAX; type++) {
        struct rt_wire_msg m, d;
        rt_wire_msg_init(&m, (enum rt_wire_type)type, 2, "peer");
        m.step = 123456789012ull;
        m.sched_version = 7;
        m.weight = 1.5;
        m.n_workers = 4;
        m.n_shards = 3;
        m.n_params = N_PARAMS;
        m.n_buffers = N_BUFFERS;
        m.err_code = RT_ERR_STATE;
        snprintf(m.text, sizeof m.text, "some detail");
        m.token = 0x1234567890abcdefull;
        m.worker = 5;
        m.role = RT_WIRE_ROLE_EIGENSVC;
        if (type == RT_WIRE_SCHED) {
            /* the lead worker travels too */
            m.sched =
                (struct rt_wire_sched){3, 96, 128, 100, 0.1f, 0.2f, 32, 64, 1, 1, 1, 1, {0x5}, 2};
        }
        if (type == RT_WIRE_DECISION || type == RT_WIRE_ACK || type == RT_WIRE_PUBLISH)
            m.decision = (struct rt_wire_decision){.seq = 9,
                                                   .snapshot_version = 1234,
                                                   .epoch = 3,
                                                   .batch = 256,
                                                   .lr_base = 0.4,
                                                   .gamma_base = 0.1,
                                                   .lambda = 17.5};
        if (type == RT_WIRE_PUBLISH) {
            m.decision.lr = 0.08;
            m.decision.gamma = 0.05;
            snprintf(m.decision.reason, sizeof m.decision.reason, "lambda 3 <= 7 / 2");
            m.decision.apply_step = 77;
            m.decision.sched_version = 2;
            m.decision.verdict = 3;
            m.decision.iterations = 10;
            m.decision.seconds = 0.25;
        }
        m.epoch = 41;
        if (type == RT_WIRE_ACK) {
            m.has_held = 1;
            m.held.seq = 1000;
            m.held.batch = 512;
            m.held.apply_step = 90;
            m.held.sched_version = 4;
            m.held.lambda = 2.5;
            m.params_range = (struct rt_wire_span){10, 20, 0};
            m.buffers_range = (struct rt_wire_span){1, 2, 0};
        }
        int carries = type == RT_WIRE_PUSH || type == RT_WIRE_INIT || type == RT_WIRE_WEIGHTS;
        if (carries) {
            m.checksum = RT_WIRE_CK_FLETCHER64;
            m.has_params = 1;
            m.params.offset = 800;
            m.params.count = 200;
            m.has_buffers = 1;
            m.buffers.offset = 5;
            m.buffers.count = 5;
            m.samples = 9;
            m.loss = 0.75f;
            m.lr = 0.01f;
        }
        uint8_t hdr[RT_WIRE_MAX_HEADER];
        const void *parts[3];
        size_t sizes[3];
        int n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
        const void *pp = NULL, *bp = NULL;
        assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, &pp, &bp), 0);
        assert_int_equal(d.type, type);
        assert_int_equal(d.version, RT_WIRE_VERSION);
        assert_int_equal(d.sender, 2);
        assert_string_equal(d.name, "peer");
        assert_true(d.step == m.step);
        assert_true(d.sched_version == 7);
        assert_true(d.weight == 1.5);
        assert_int_equal(d.n_workers, 4);
        assert_int_equal(d.n_shards, 3);
        assert_true(d.n_params == N_PARAMS && d.n_buffers == N_BUFFERS);
        assert_int_equal(d.err_code, RT_ERR_STATE);
        assert_string_equal(d.text, "some detail");
        assert_true(d.token == 0x1234567890abcdefull && d.worker == 5);
        assert_int_equal(d.role, RT_WIRE_ROLE_EIGENSVC);
        if (type == RT_WIRE_SCHED) {
            assert_memory_equal(&d.sched, &m.sched, sizeof m.sched);
        }
        if (type == RT_WIRE_PUBLISH) {
            assert_true(d.decision.lr == 0.08 && d.decision.gamma == 0.05);
            assert_string_equal(d.decision.reason, "lambda 3 <= 7 / 2");
            assert_true(d.decision.apply_step == 77 && d.decision.sched_version == 2);
            assert_true(d.decision.verdict == 3 && d.decision.iterations == 10);
            assert_true(d.decision.seconds == 0.25);
        }
        if (type == RT_WIRE_DECISION || type == RT_WIRE_ACK || type == RT_WIRE_PUBLISH) {
            assert_true(d.decision.seq == 9 && d.decision.snapshot_version == 1234);
            assert_true(d.decision.epoch == 3 && d.decision.batch == 256);
            assert_true(d.decision.lr_base == 0.4 && d.decision.gamma_base == 0.1);
            assert_true(d.decision.lambda == 17.5);
        }
        assert_true(d.epoch == 41);
        assert_int_equal(d.has_held, type == RT_WIRE_ACK);
        if (type == RT_WIRE_ACK) {
            assert_true(d.held.seq == 1000 && d.held.batch == 512 && d.held.lambda == 2.5);
            assert_true(d.held.apply_step == 90 && d.held.sched_version == 4);
            assert_true(d.params_range.offset == 10 && d.params_range.count == 20);
            assert_true(d.buffers_range.offset == 1 && d.buffers_range.count == 2);
        }
        if (carries) {
            assert_true(d.has_params && d.has_buffers);
            assert_true(d.params.offset == 800 && d.params.count == 200);
            assert_true(d.buffers.offset == 5 && d.buffers.count == 5);
            assert_int_equal(d.samples, 9);
            assert_true(d.loss == 0.75f && d.lr == 0.01f);
            assert_ptr_equal(pp, p);
            assert_ptr_equal(bp, b);
        } else {
            assert_false(d.has_params || d.has_buffers);
        }
    }
}

static void test_random_bytes_rejected(void **state)
{
    (void)state;
    srand(1234);
    uint8_t buf[600];
    int accepted = 0;
    for (int r = 0; r < FUZZ_ROUNDS; r++) {
        size_t n = 1 + (size_t)rand() % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rand();
        const void *parts[3] = {buf, buf, buf};
        size_t sizes[3] = {n, n / 2, n / 3};
        int nparts = 1 + rand() % 3;
        struct rt_wire_msg m;
        int rc = rt_wire_decode(parts, sizes, nparts, &s_lim, &m, NULL, NULL);
        if (rc == 0) {
            /* whatever got through is a coherent message of this protocol */
            assert_int_equal(m.version, RT_WIRE_VERSION);
            assert_true(m.type >= RT_WIRE_REGISTER && m.type <= RT_WIRE_TYPE_MAX);
            accepted++;
        } else {
            assert_true(rc < 0);
        }
    }
    assert_true(accepted < FUZZ_ROUNDS / 1000);
    /* valid protobuf, wrong content: a header of garbage after a valid prefix */
    struct rt_wire_msg m;
    const void *parts[1] = {buf};
    size_t sizes[1] = {0};
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &m, NULL, NULL), RT_ERR_TRUNCATED);
    assert_int_equal(rt_wire_decode(parts, sizes, 0, &s_lim, &m, NULL, NULL), RT_ERR_TRUNCATED);
}

static void test_truncated(void **state)
{
    (void)state;
    float p[200] = {0}, b[5] = {0};
    struct rt_wire_msg m, d;
    s_push_msg(&m);
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    const void *parts[3];
    size_t sizes[3];
    int n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(n, 3);
    /* payload frames missing */
    assert_int_equal(rt_wire_decode(parts, sizes, 2, &s_lim, &d, NULL, NULL), RT_ERR_TRUNCATED);
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), RT_ERR_TRUNCATED);
    assert_non_null(strstr(rt_err_msg(), "payload"));
    /* header cut short */
    size_t full = sizes[0];
    int failed = 0;
    for (size_t cut = 1; cut < full; cut++) {
        sizes[0] = cut;
        failed += rt_wire_decode(parts, sizes, 3, &s_lim, &d, NULL, NULL) != 0;
    }
    assert_int_equal(failed, (int)full - 1);
    sizes[0] = full;
    /* payload frame cut short */
    sizes[1] -= 3;
    assert_int_equal(rt_wire_decode(parts, sizes, 3, &s_lim, &d, NULL, NULL), RT_ERR_SIZE);
}

static void test_wrong_version(void **state)
{
    (void)state;
    struct rt_wire_msg m, d;
    rt_wire_msg_init(&m, RT_WIRE_PULL, 1, "old-worker");
    m.version = RT_WIRE_VERSION + 1;
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    size_t len;
    assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
    const void *parts[1] = {hdr};
    size_t sizes[1] = {len};
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), RT_ERR_VERSION);
    assert_non_null(strstr(rt_err_msg(), "old-worker"));
    /* an unknown type at the right version */
    rt_wire_msg_init(&m, (enum rt_wire_type)99, 1, "w");
    assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
    sizes[0] = len;
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), RT_ERR_FORMAT);
}

/* A worker's count of undecodable records rides on its schedule queries and heartbeats (the
 * largest count too); other types neither send nor decode it. */
static uint64_t s_bad_records_round_trip(enum rt_wire_type type, uint64_t count)
{
    struct rt_wire_msg m, d;
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    size_t len;
    rt_wire_msg_init(&m, type, 3, "worker-3");
    m.bad_records = count;
    assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
    assert_int_equal(len, rt_wire_header_size(&m));
    const void *parts[1] = {hdr};
    size_t sizes[1] = {len};
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), 0);
    return d.bad_records;
}

static void test_bad_records(void **state)
{
    (void)state;
    const uint64_t counts[3] = {0, 17, UINT64_MAX};
    for (int k = 0; k < 3; k++) {
        assert_true(s_bad_records_round_trip(RT_WIRE_SCHED_QUERY, counts[k]) == counts[k]);
        assert_true(s_bad_records_round_trip(RT_WIRE_HEARTBEAT, counts[k]) == counts[k]);
    }
    assert_true(s_bad_records_round_trip(RT_WIRE_PULL, 5) == 0);
}

/* A worker's test-set evaluation rides on its schedule queries and heartbeats; one that scores
 * more correct samples than it scored, or none, is malformed and names its sender. */
static void test_eval(void **state)
{
    (void)state;
    struct rt_wire_msg m, d;
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    size_t len;
    const void *parts[1] = {hdr};
    size_t sizes[1];
    enum rt_wire_type types[2] = {RT_WIRE_SCHED_QUERY, RT_WIRE_HEARTBEAT};
    for (int i = 0; i < 2; i++) {
        rt_wire_msg_init(&m, types[i], 0, "lead");
        m.eval = (struct rt_wire_eval){1, 7, 10000, 9213, 0.25f};
        assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
        sizes[0] = len;
        assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), 0);
        assert_int_equal(d.eval.present, 1);
        assert_int_equal(d.eval.epoch, 7);
        assert_int_equal(d.eval.samples, 10000);
        assert_int_equal(d.eval.correct, 9213);
        assert_true(d.eval.loss == 0.25f);
    }
    /* other types do not carry it; without one, none is decoded */
    rt_wire_msg_init(&m, RT_WIRE_PULL, 0, "lead");
    m.eval = (struct rt_wire_eval){1, 7, 10, 9, 0.25f};
    assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
    sizes[0] = len;
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), 0);
    assert_int_equal(d.eval.present, 0);
    struct rt_wire_eval bad[2] = {{1, 3, 10, 11, 0.5f}, {1, 3, 0, 0, 0.5f}};
    for (int i = 0; i < 2; i++) {
        rt_wire_msg_init(&m, RT_WIRE_HEARTBEAT, 0, "liar");
        m.eval = bad[i];
        assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
        sizes[0] = len;
        assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), RT_ERR_FORMAT);
        assert_non_null(strstr(rt_err_msg(), "liar"));
    }
}

static void test_wrong_sizes(void **state)
{
    (void)state;
    float p[600] = {0}, b[20] = {0};
    struct rt_wire_msg m, d;
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    const void *parts[3];
    size_t sizes[3];
    /* frame bytes disagree with the declared count */
    s_push_msg(&m);
    int n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    sizes[1] += 4;
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_SIZE);
    /* slice outside the parameter vector */
    s_push_msg(&m);
    m.params.offset = N_PARAMS - 100;
    n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_SIZE);
    assert_non_null(strstr(rt_err_msg(), "outside"));
    /* offset overflow does not wrap */
    s_push_msg(&m);
    m.params.offset = UINT64_MAX - 10;
    n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_SIZE);
    /* buffer slice outside the buffer vector */
    s_push_msg(&m);
    m.buffers.offset = 8;
    n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_SIZE);
    /* empty slice */
    s_push_msg(&m);
    m.params.count = 0;
    n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_SIZE);
    /* payload frames on a type that carries none */
    rt_wire_msg_init(&m, RT_WIRE_PULL, 0, "w");
    m.has_params = 1;
    m.params.count = 10;
    n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_FORMAT);
    /* a push without payload */
    rt_wire_msg_init(&m, RT_WIRE_PUSH, 0, "w");
    n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_FORMAT);
    /* an extra frame the header does not declare */
    rt_wire_msg_init(&m, RT_WIRE_PULL, 0, "w");
    n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    parts[1] = p;
    sizes[1] = 40;
    assert_int_equal(rt_wire_decode(parts, sizes, 2, &s_lim, &d, NULL, NULL), RT_ERR_FORMAT);
}

static void test_oversize(void **state)
{
    (void)state;
    float p[600] = {0}, b[5] = {0};
    struct rt_wire_msg m, d;
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    const void *parts[3];
    size_t sizes[3];
    s_push_msg(&m);
    m.params.offset = 0;
    m.params.count = 501; /* limit is 500 floats per frame */
    int n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
    assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_TOOBIG);
    /* oversize header frame */
    static uint8_t big[RT_WIRE_MAX_HEADER + 1];
    parts[0] = big;
    sizes[0] = sizeof big;
    assert_int_equal(rt_wire_decode(parts, sizes, 1, &s_lim, &d, NULL, NULL), RT_ERR_TOOBIG);
    /* too many frames */
    parts[0] = hdr;
    const void *many[5] = {hdr, p, b, b, b};
    size_t msz[5] = {10, 4, 4, 4, 4};
    assert_int_equal(rt_wire_decode(many, msz, 5, &s_lim, &d, NULL, NULL), RT_ERR_FORMAT);
    /* encoding into too small a buffer */
    size_t len;
    s_push_msg(&m);
    assert_int_equal(rt_wire_encode(&m, hdr, 8, &len), RT_ERR_TOOBIG);
}

static void test_checksum(void **state)
{
    (void)state;
    float p[200], b[5] = {1, 2, 3, 4, 5};
    for (int i = 0; i < 200; i++)
        p[i] = (float)i;
    for (int kind = RT_WIRE_CK_CRC32; kind <= RT_WIRE_CK_FLETCHER64; kind++) {
        struct rt_wire_msg m, d;
        uint8_t hdr[RT_WIRE_MAX_HEADER];
        const void *parts[3];
        size_t sizes[3];
        s_push_msg(&m);
        m.checksum = (enum rt_wire_checksum)kind;
        int n = s_pack(&m, p, b, hdr, sizeof hdr, parts, sizes);
        assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), 0);
        p[7] += 1.0f; /* corrupt after sealing */
        assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_CHECKSUM);
        p[7] -= 1.0f;
        /* swapped words change a Fletcher sum too (order-sensitive) */
        float t = p[3];
        p[3] = p[4];
        p[4] = t;
        assert_int_equal(rt_wire_decode(parts, sizes, n, &s_lim, &d, NULL, NULL), RT_ERR_CHECKSUM);
        p[4] = p[3];
        p[3] = t;
    }
}

static void test_unaligned_axpy(void **state)
{
    (void)state;
    uint8_t raw[4 * 3000 + 1];
    float y[3000] = {0}, x[3000];
    for (int i = 0; i < 3000; i++)
        x[i] = (float)i;
    memcpy(raw + 1, x, sizeof x);
    rt_wire_axpy(y, 2.0f, raw + 1, 3000, 1);
    rt_wire_axpy(y, 1.0f, raw + 1, 3000, 1);
    for (int i = 0; i < 3000; i++)
        assert_true(y[i] == 3.0f * (float)i);
    rt_wire_axpy(y, 0.5f, x, 3000, 0);
    for (int i = 0; i < 3000; i++)
        assert_true(y[i] == 0.5f * (float)i);
}

static void test_partition_and_shares(void **state)
{
    (void)state;
    /* contiguous, covering, balanced to one float */
    for (int parts = 1; parts <= 7; parts++) {
        uint64_t next = 0, lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < parts; i++) {
            uint64_t off, cnt;
            rt_wire_partition(11173962, parts, i, &off, &cnt);
            assert_true(off == next);
            next = off + cnt;
            lo = cnt < lo ? cnt : lo;
            hi = cnt > hi ? cnt : hi;
        }
        assert_true(next == 11173962);
        assert_true(hi - lo <= 1);
    }
    /* shares proportional to the weights, summing to B */
    double w[3] = {1, 2, 5};
    uint32_t off, cnt, next = 0;
    uint32_t want[3] = {16, 32, 80};
    for (int i = 0; i < 3; i++) {
        server_coord_share(128, w, 3, i, &off, &cnt);
        assert_int_equal(off, next);
        assert_int_equal(cnt, want[i]);
        next = off + cnt;
    }
    assert_int_equal(next, 128);
    double eq[4] = {1, 1, 1, 1};
    next = 0;
    for (int i = 0; i < 4; i++) {
        server_coord_share(3, eq, 4, i, &off, &cnt);
        assert_int_equal(off, next);
        next += cnt;
    }
    assert_int_equal(next, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_types),
        cmocka_unit_test(test_random_bytes_rejected),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_wrong_sizes),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_checksum),
        cmocka_unit_test(test_unaligned_axpy),
        cmocka_unit_test(test_partition_and_shares),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
