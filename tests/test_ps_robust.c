/*
 * test_ps_robust: shards that receive random bytes, truncated multipart messages, a wrong protocol
 * version, wrong slice sizes, pushes for an unknown step, out-of-order chunks and messages from
 * impostors log the sender and the reason, drop the message, and keep serving the honest workers
 * to the end of the run: the final weights equal plain SGD over the whole batch.
 *
 * Two shards over tcp, two workers: worker A is the ordinary worker loop (a thread); worker B is
 * driven by hand from this thread, so that it can misbehave on its own (bound) connection between
 * its honest messages, while a rogue DEALER with no identity sprays garbage at both shards and
 * another sends frames over the size limit.
 */
#include "eb_test.h"

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_net.h"
#include "rt_err.h"
#include "rt_sock.h"
#include "server_fixsched.h"
#include "server_shard.h"
#include "worker_loop.h"
#include "worker_synth.h"

#define P 999
#define NB 5
#define BATCH 16
#define STEPS 5
#define LR 1e-3f
#define MOMENTUM 0.9f
#define WD 1e-4f
#define SEED 7
#define N_SAMPLES 32
#define S 2
#define W 2
#define RECV_MS 10000

struct shard_job {
    server_shard_t *shard;
    atomic_int *stop;
    int rc;
};

struct worker_job {
    struct worker_cfg cfg;
    struct worker_compute cb;
    int rc;
};

static void *s_shard_main(void *arg)
{
    struct shard_job *j = arg;
    j->rc = server_shard_run(j->shard, j->stop);
    return NULL;
}

static void *s_worker_main(void *arg)
{
    struct worker_job *j = arg;
    j->rc = worker_run(&j->cfg, &j->cb, NULL);
    return NULL;
}

static void s_send(void *sock, struct rt_wire_msg *m, const float *p, const float *b)
{
    assert_int_equal(rt_sock_send(sock, NULL, 0, m, p, b, NULL), 0);
}

/* Send raw frames (no encoding). */
static void s_send_raw(void *sock, const void *const *frames, const size_t *sizes, int n)
{
    for (int i = 0; i < n; i++)
        assert_true(zmq_send(sock, frames[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0) >= 0);
}

/* Receive and decode one message within RECV_MS. */
static void s_recv(void *sock, struct rt_sock_parts *parts, struct rt_wire_msg *m, const void **pp,
                   const void **bp)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, RECV_MS), 1);
    assert_int_equal(rt_sock_recv(sock, parts, 0), 0);
    const void *f[RT_SOCK_MAX_PARTS];
    size_t sz[RT_SOCK_MAX_PARTS];
    for (int i = 0; i < parts->n; i++) {
        f[i] = rt_sock_part_data(parts, i);
        sz[i] = rt_sock_part_size(parts, i);
    }
    struct rt_wire_limits lim = {P, NB, P};
    int rc = rt_wire_decode(f, sz, parts->n, &lim, m, pp, bp);
    if (rc)
        fail_msg("reply: %s", rt_err_msg());
}

/* An oversize frame from its own connection: the transport's size limit drops that connection
 * (ZeroMQ reconnects it for the next round), the shard never sees the bytes. */
static void s_oversize(void *rogue)
{
    static uint8_t big[3 * RT_WIRE_MAX_HEADER];
    const void *fb[1] = {big};
    size_t zb[1] = {sizeof big};
    s_send_raw(rogue, fb, zb, 1);
}

/* The rogue: garbage of every kind at one shard. */
static void s_spray(void *rogue, int step)
{
    uint8_t junk[256];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(rand() & 0xff);
    /* random bytes, one frame and three frames */
    const void *f1[1] = {junk};
    size_t z1[1] = {sizeof junk};
    s_send_raw(rogue, f1, z1, 1);
    const void *f3[3] = {junk, junk + 10, junk + 20};
    size_t z3[3] = {100, 40, 12};
    s_send_raw(rogue, f3, z3, 3);
    /* wrong protocol version */
    struct rt_wire_msg m;
    uint8_t hdr[RT_WIRE_MAX_HEADER];
    size_t len;
    rt_wire_msg_init(&m, RT_WIRE_PULL, 0, "rogue");
    m.version = RT_WIRE_VERSION + 7;
    m.step = (uint64_t)step;
    assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
    const void *fv[1] = {hdr};
    size_t zv[1] = {len};
    s_send_raw(rogue, fv, zv, 1);
    /* truncated multipart: a push header declaring a slice, no payload frame */
    float g[16] = {0};
    rt_wire_msg_init(&m, RT_WIRE_PUSH, 0, "rogue");
    m.step = (uint64_t)step;
    m.has_params = 1;
    m.params.count = 16;
    assert_int_equal(rt_wire_encode(&m, hdr, sizeof hdr, &len), 0);
    zv[0] = len;
    s_send_raw(rogue, fv, zv, 1);
    /* wrong slice size: frame bytes disagree with the header */
    const void *fs[2] = {hdr, g};
    size_t zs[2] = {len, 60};
    s_send_raw(rogue, fs, zs, 2);
    /* a well-formed push for the current step from a connection not bound to worker 0 */
    s_send(rogue, &m, g, NULL);
    /* a hello claiming a worker id that does not exist */
    rt_wire_msg_init(&m, RT_WIRE_HELLO, 99, "rogue");
    s_send(rogue, &m, NULL, NULL);
}

static void s_reference(float *w, float *b)
{
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, SEED, P, NB), 0);
    float *mom = calloc(P, sizeof(float)), *g = calloc(P, sizeof(float));
    worker_synth_initial(&m, w, b);
    for (uint64_t t = 0; t < STEPS; t++) {
        uint64_t per_epoch = N_SAMPLES / BATCH;
        worker_synth_grad(&m, ((t / per_epoch) << 32) + (t % per_epoch) * BATCH, BATCH, w, g, b);
        nn_sgd_step(w, mom, g, P, LR, MOMENTUM, WD);
    }
    free(mom);
    free(g);
    worker_synth_fini(&m);
}

static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

static void test_rogue_and_misbehaving_worker(void **state)
{
    (void)state;
    srand(99);
    char *dir = eb_test_tmpdir();
    char logpath[4200];
    snprintf(logpath, sizeof logpath, "%s/log.txt", dir);
    fflush(stderr);
    int saved = dup(2);
    int lfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(lfd >= 0);
    dup2(lfd, 2);

    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = LR, .n_samples = N_SAMPLES, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    struct worker_synth ma, mb;
    assert_int_equal(worker_synth_init(&ma, SEED, P, NB), 0);
    assert_int_equal(worker_synth_init(&mb, SEED, P, NB), 0);
    float w0[P], b0[NB];
    worker_synth_initial(&ma, w0, b0);
    void *ctx = rt_sock_ctx_new(1);
    assert_non_null(ctx);
    atomic_int stop;
    atomic_init(&stop, 0);
    struct shard_job sj[S];
    pthread_t st[S];
    const char *eps[S];
    for (int i = 0; i < S; i++) {
        struct server_shard_cfg sc = {
            .shard = i,
            .n_shards = S,
            .n_workers = W,
            .n_params = P,
            .n_buffers = NB,
            .endpoint = "tcp://127.0.0.1:*",
            .coord_endpoint = i > 0 ? eps[0] : NULL,
            .zmq_ctx = ctx,
            .momentum = MOMENTUM,
            .weight_decay = WD,
            .init_params = w0,
            .init_buffers = b0,
            .sched = &sched,
            .checksum = RT_WIRE_CK_CRC32,
        };
        assert_int_equal(server_shard_new(&sc, &sj[i].shard), 0);
        eps[i] = server_shard_endpoint(sj[i].shard);
        sj[i].stop = &stop;
        assert_int_equal(pthread_create(&st[i], NULL, s_shard_main, &sj[i]), 0);
    }
    /* the rogue sprays before anyone registers, then at every step */
    void *rogue[S], *big[S];
    for (int i = 0; i < S; i++) {
        assert_int_equal(rt_sock_dealer(ctx, eps[i], &rogue[i]), 0);
        assert_int_equal(rt_sock_dealer(ctx, eps[i], &big[i]), 0);
        s_spray(rogue[i], 0);
        s_oversize(big[i]);
    }
    /* worker A: the ordinary loop */
    struct worker_job wa = {
        .cfg = {.name = "honest-a",
                .n_shards = S,
                .endpoints = eps,
                .zmq_ctx = ctx,
                .n_params = P,
                .n_buffers = NB,
                .checksum = RT_WIRE_CK_CRC32,
                .chunk_floats = 100},
        .cb = worker_synth_compute(&ma),
    };
    pthread_t at;
    assert_int_equal(pthread_create(&at, NULL, s_worker_main, &wa), 0);

    /* worker B by hand */
    void *bs[S];
    struct rt_sock_parts parts;
    rt_sock_parts_init(&parts);
    struct rt_wire_msg m;
    const void *pp, *bp;
    for (int i = 0; i < S; i++)
        assert_int_equal(rt_sock_dealer(ctx, eps[i], &bs[i]), 0);
    rt_wire_msg_init(&m, RT_WIRE_REGISTER, -1, "hand-b");
    m.weight = 3.0; /* unequal shares */
    s_send(bs[0], &m, NULL, NULL);
    s_recv(bs[0], &parts, &m, &pp, &bp);
    assert_int_equal(m.type, RT_WIRE_WELCOME);
    int id = m.sender;
    uint64_t token = m.token, off[S], cnt[S];
    for (int i = 0; i < S; i++) {
        rt_wire_msg_init(&m, RT_WIRE_HELLO, id, "hand-b");
        m.token = token;
        s_send(bs[i], &m, NULL, NULL);
        s_recv(bs[i], &parts, &m, &pp, &bp);
        assert_int_equal(m.type, RT_WIRE_ACK);
        off[i] = m.params_range.offset;
        cnt[i] = m.params_range.count;
    }
    float w[P], g[P], b[NB];
    for (uint64_t t = 0;; t++) {
        struct rt_wire_msg sm;
        for (;;) {
            rt_wire_msg_init(&m, RT_WIRE_SCHED_QUERY, id, "hand-b");
            m.step = t;
            s_send(bs[0], &m, NULL, NULL);
            s_recv(bs[0], &parts, &sm, &pp, &bp);
            if (sm.type == RT_WIRE_SCHED)
                break;
            assert_int_equal(sm.type, RT_WIRE_ERROR); /* worker A not registered yet */
            usleep(2000);
        }
        for (int i = 0; i < S; i++) {
            rt_wire_msg_init(&m, RT_WIRE_PULL, id, "hand-b");
            m.step = t;
            s_send(bs[i], &m, NULL, NULL);
            int got_p = 0, got_b = 0;
            while (!got_p || !got_b) {
                s_recv(bs[i], &parts, &m, &pp, &bp);
                assert_int_equal(m.type, RT_WIRE_WEIGHTS);
                assert_true(m.step == t);
                if (m.has_params) {
                    memcpy(w + m.params.offset, pp, m.params.count * sizeof(float));
                    got_p = m.params.offset + m.params.count == off[i] + cnt[i];
                }
                if (m.has_buffers) {
                    memcpy(b + m.buffers.offset, bp, m.buffers.count * sizeof(float));
                    got_b = 1;
                }
            }
        }
        if (sm.sched.done)
            break;
        for (int i = 0; i < S; i++) {
            s_spray(rogue[i], (int)t);
            s_oversize(big[i]);
        }
        uint64_t first = (sm.sched.epoch << 32) + sm.sched.epoch_offset + sm.sched.share_offset;
        worker_synth_grad(&mb, first, sm.sched.share_count, w, g, b);
        for (int i = 0; i < S; i++) {
            uint64_t bo, bc;
            rt_wire_partition(NB, S, i, &bo, &bc);
            struct rt_wire_msg pm;
            rt_wire_msg_init(&pm, RT_WIRE_PUSH, id, "hand-b");
            pm.checksum = RT_WIRE_CK_CRC32;
            pm.sched_version = sm.sched_version;
            pm.lr = sm.sched.lr;
            pm.samples = sm.sched.share_count;
            pm.has_params = 1;
            pm.params.offset = off[i];
            pm.params.count = cnt[i];
            pm.has_buffers = 1;
            pm.buffers.offset = bo;
            pm.buffers.count = bc;
            /* misbehaviour on the bound connection: unknown step, wrong learning rate,
             * a chunk out of order, a buffer slice that is not the shard's */
            struct rt_wire_msg bad = pm;
            bad.step = t + 5;
            s_send(bs[i], &bad, g + off[i], b + bo);
            bad = pm;
            bad.step = t;
            bad.lr = pm.lr * 2;
            s_send(bs[i], &bad, g + off[i], b + bo);
            bad = pm;
            bad.step = t;
            bad.params.offset = off[i] + 1;
            bad.params.count = cnt[i] - 1;
            s_send(bs[i], &bad, g + off[i] + 1, b + bo);
            bad = pm;
            bad.step = t;
            bad.buffers.offset = bo ? 0 : 1;
            bad.buffers.count = 1;
            s_send(bs[i], &bad, g + off[i], b);
            /* the honest push */
            pm.step = t;
            s_send(bs[i], &pm, g + off[i], b + bo);
        }
    }
    for (int i = 0; i < S; i++) {
        rt_wire_msg_init(&m, RT_WIRE_BYE, id, "hand-b");
        s_send(bs[i], &m, NULL, NULL);
    }
    pthread_join(at, NULL);
    for (int i = 0; i < S; i++)
        pthread_join(st[i], NULL);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(lfd);
    char *log = s_slurp(logpath);

    assert_int_equal(wa.rc, 0);
    float ref_w[P], ref_b[NB];
    s_reference(ref_w, ref_b);
    float fw[P], fb[NB];
    uint64_t dropped[S];
    for (int i = 0; i < S; i++) {
        assert_int_equal(sj[i].rc, 0);
        uint64_t po, pc, bo, bc;
        server_shard_range(sj[i].shard, &po, &pc, &bo, &bc);
        memcpy(fw + po, server_shard_params(sj[i].shard), pc * sizeof(float));
        memcpy(fb + bo, server_shard_buffers(sj[i].shard), bc * sizeof(float));
        struct server_shard_stats ss;
        server_shard_stats(sj[i].shard, &ss);
        assert_true(ss.version == STEPS);
        dropped[i] = ss.dropped;
    }
    /* 4 misbehaving pushes per step on worker B's own connection (ordered before its honest
     * push, so all of them are seen) and 7 rogue messages per round; the rogue's last rounds may
     * still be queued when the shards finish, so only the first round of those is counted */
    for (int i = 0; i < S; i++)
        if (dropped[i] < 4 * STEPS + 7)
            fail_msg("shard %d dropped only %llu messages", i, (unsigned long long)dropped[i]);
    for (int j = 0; j < P; j++)
        if (eb_test_reldiff(fw[j], ref_w[j], 1e-2) > 1e-5)
            fail_msg("weight %d: %g, reference %g", j, (double)fw[j], (double)ref_w[j]);
    for (int j = 0; j < NB; j++)
        if (eb_test_reldiff(fb[j], ref_b[j], 1e-2) > 1e-5)
            fail_msg("buffer %d: %g, reference %g", j, (double)fb[j], (double)ref_b[j]);
    /* the log names the sender and the reason of each kind of drop */
    const char *reasons[] = {
        "is not a valid EbHeader",
        "protocol version 8 from 'rogue'",
        "payload frames",
        "bytes, header says",
        "not bound to that worker id",
        "worker id out of range",
        "push for step",
        "the schedule in force is",
        "out of order",
        "does not match this shard's buffer range",
        "hand-b",
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (!strstr(log, reasons[i]))
            fail_msg("log lacks '%s'", reasons[i]);

    rt_sock_parts_close(&parts);
    for (int i = 0; i < S; i++) {
        rt_sock_close(&rogue[i], 0);
        rt_sock_close(&big[i], 0);
        rt_sock_close(&bs[i], 0);
        server_shard_destroy(&sj[i].shard);
    }
    rt_sock_ctx_destroy(&ctx);
    server_fixsched_destroy(&sched);
    worker_synth_fini(&ma);
    worker_synth_fini(&mb);
    free(log);
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rogue_and_misbehaving_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
