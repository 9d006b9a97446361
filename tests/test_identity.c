/*
 * test_identity: a worker id belongs to the connection that registered it, and a slot belongs to a
 * worker that works.
 *
 * In process (two shards, one worker slot, inproc): a squatter registers first and takes the only
 * slot, binds at both shards and then only heartbeats. A rogue that never registered sends HELLO
 * (with a guessed token), BYE, heartbeats and a push for worker 0 to both shards: each is dropped
 * (a heartbeat only gets an answer, as any status probe does) and changes nothing. The real
 * worker is refused while the slot is held and keeps asking; the squatter, which never pulled or
 * pushed, is evicted by the worker timeout (its heartbeats do not count), with no sample counted
 * as trained; the real worker then takes the slot and trains to
 * the end: the final weights are bitwise those of the same run without squatter and rogue. A
 * DECISION from a connection that did not register as the eigen service is refused; from the one
 * that did, it reaches the schedule.
 *
 * As processes (two `eigenbatch server`, two `eigenbatch worker`, ipc): SIGKILL of shard 0 makes
 * shard 1 and both workers exit non-zero, naming the coordinator, within
 * cluster.coordinator_timeout_ms (plus a margin).
 */
#include "eb_test.h"
#include "eb_test_fault.h"

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_metrics.h"
#include "rt_sock.h"
#include "server_fixsched.h"
#include "server_shard.h"
#include "worker_loop.h"
#include "worker_synth.h"

#define P 200
#define NB 3
#define STEPS 12
#define S 2
#define EVICT_MS 1000
#define WAIT_S 60

struct shard_job {
    server_shard_t *shard;
    int rc;
    pthread_t th;
};

struct worker_job {
    struct worker_cfg cfg;
    struct worker_synth m;
    int rc;
    atomic_int done;
    pthread_t th;
};

static void *s_shard_main(void *arg)
{
    struct shard_job *j = arg;
    j->rc = server_shard_run(j->shard, NULL);
    return NULL;
}

static void *s_worker_main(void *arg)
{
    struct worker_job *j = arg;
    struct worker_compute cb = worker_synth_compute(&j->m);
    j->rc = worker_run(&j->cfg, &cb, NULL);
    atomic_store(&j->done, 1);
    return NULL;
}

/* Send m on sock. */
static void s_send(void *sock, struct rt_wire_msg *m, const float *p)
{
    assert_int_equal(rt_sock_send(sock, NULL, 0, m, p, NULL, NULL), 0);
}

/* The next message on sock within 10 s. */
static const struct rt_wire_msg *s_recv(void *sock, struct rt_sock_in *in)
{
    if (rt_sock_recv_until(sock, in, rt_clock_now() + 10.0, "shard"))
        fail_msg("no reply: %s", rt_err_msg());
    return &in->m;
}

/* The rogue: every message for worker 0 from a connection that did not register it. */
static void s_rogue(void *const *socks, uint64_t token_guess)
{
    float g[P];
    memset(g, 0, sizeof g);
    for (int i = 0; i < S; i++) {
        struct rt_wire_msg m;
        rt_wire_msg_init(&m, RT_WIRE_HELLO, 0, "rogue");
        m.token = token_guess;
        s_send(socks[i], &m, NULL);
        rt_wire_msg_init(&m, RT_WIRE_HEARTBEAT, 0, "rogue");
        s_send(socks[i], &m, NULL);
        rt_wire_msg_init(&m, RT_WIRE_PUSH, 0, "rogue");
        m.samples = 1;
        m.has_params = 1;
        m.params.offset = i == 0 ? 0 : P / 2;
        m.params.count = 10;
        s_send(socks[i], &m, g);
        rt_wire_msg_init(&m, RT_WIRE_BYE, 0, "rogue");
        s_send(socks[i], &m, NULL);
    }
}

/* Two shards for one worker; with `hostile`, the squatter, the rogue and the decision checks run
 * before the real worker joins. Final weights into w, b. */
static void s_run(int hostile, const char *where, const char *mpath, float *w, float *b)
{
    struct server_fixsched_cfg fc = {.batch = 8, .lr = 1e-3f, .n_samples = 32, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    rt_metrics_t *metrics = NULL;
    if (mpath)
        assert_int_equal(rt_metrics_open(mpath, 0, &metrics), 0);
    void *ctx = rt_sock_ctx_new(1);
    assert_non_null(ctx);
    struct shard_job sj[S];
    char eps[S][64];
    const char *ep_ptrs[S];
    memset(sj, 0, sizeof sj);
    for (int i = 0; i < S; i++) {
        snprintf(eps[i], sizeof eps[i], "inproc://%s-%d", where, i);
        ep_ptrs[i] = eps[i];
        struct server_shard_cfg sc = {.shard = i,
                                      .n_shards = S,
                                      .n_workers = 1,
                                      .n_params = P,
                                      .n_buffers = NB,
                                      .endpoint = eps[i],
                                      .coord_endpoint = i ? eps[0] : NULL,
                                      .zmq_ctx = ctx,
                                      .momentum = 0.9f,
                                      .sched = &sched,
                                      .evict_ms = EVICT_MS,
                                      .metrics = i == 0 ? metrics : NULL,
                                      .coord_timeout_ms = 30000};
        if (server_shard_new(&sc, &sj[i].shard))
            fail_msg("shard %d: %s", i, rt_err_msg());
        assert_int_equal(pthread_create(&sj[i].th, NULL, s_shard_main, &sj[i]), 0);
    }
    void *sq[S], *rogue[S], *eig;
    struct rt_sock_in in;
    rt_sock_in_init(&in, "test", 0, NULL);
    in.lim = (struct rt_wire_limits){P, NB, P};
    if (hostile) {
        for (int i = 0; i < S; i++) {
            assert_int_equal(rt_sock_dealer(ctx, eps[i], &sq[i]), 0);
            assert_int_equal(rt_sock_dealer(ctx, eps[i], &rogue[i]), 0);
        }
        /* the squatter takes the only slot and binds everywhere */
        struct rt_wire_msg m;
        rt_wire_msg_init(&m, RT_WIRE_REGISTER, -1, "squatter");
        m.weight = 1;
        s_send(sq[0], &m, NULL);
        const struct rt_wire_msg *r = s_recv(sq[0], &in);
        assert_int_equal(r->type, RT_WIRE_WELCOME);
        assert_int_equal(r->sender, 0);
        uint64_t token = r->token;
        for (int i = 0; i < S; i++) {
            rt_wire_msg_init(&m, RT_WIRE_HELLO, 0, "squatter");
            m.token = token;
            s_send(sq[i], &m, NULL);
            assert_int_equal(s_recv(sq[i], &in)->type, RT_WIRE_ACK);
        }
        /* the rogue: a HELLO with a wrong token is refused with an ERROR at both shards */
        s_rogue(rogue, token + 1);
        for (int i = 0; i < S; i++) {
            r = s_recv(rogue[i], &in);
            assert_int_equal(r->type, RT_WIRE_ERROR);
            assert_int_equal(r->err_code, RT_ERR_PEER);
        }
        /* a decision from a connection that did not register as the eigen service */
        rt_wire_msg_init(&m, RT_WIRE_DECISION, -1, "rogue");
        m.decision.seq = 1;
        s_send(rogue[0], &m, NULL);
        do
            r = s_recv(rogue[0], &in);
        while (r->type == RT_WIRE_HEARTBEAT);
        assert_int_equal(r->type, RT_WIRE_ERROR);
        assert_int_equal(r->err_code, RT_ERR_PEER);
        assert_non_null(strstr(r->text, "eigen service"));
        /* ... and from one that did: it reaches the schedule (which takes no decisions) */
        assert_int_equal(rt_sock_dealer(ctx, eps[0], &eig), 0);
        rt_wire_msg_init(&m, RT_WIRE_REGISTER, -1, "eigensvc");
        m.role = RT_WIRE_ROLE_EIGENSVC;
        s_send(eig, &m, NULL);
        assert_int_equal(s_recv(eig, &in)->type, RT_WIRE_WELCOME);
        rt_wire_msg_init(&m, RT_WIRE_DECISION, -1, "eigensvc");
        m.decision.seq = 1;
        s_send(eig, &m, NULL);
        r = s_recv(eig, &in);
        assert_int_equal(r->type, RT_WIRE_ERROR);
        assert_int_equal(r->err_code, RT_ERR_UNSUPPORTED);
    }
    /* the real worker: refused while the squatter holds the slot, it keeps asking */
    struct worker_job wj;
    memset(&wj, 0, sizeof wj);
    atomic_init(&wj.done, 0);
    assert_int_equal(worker_synth_init(&wj.m, 5, P, NB), 0);
    wj.cfg = (struct worker_cfg){.name = "real",
                                 .n_shards = S,
                                 .endpoints = ep_ptrs,
                                 .zmq_ctx = ctx,
                                 .n_params = P,
                                 .n_buffers = NB,
                                 .timeout_ms = 20000};
    assert_int_equal(pthread_create(&wj.th, NULL, s_worker_main, &wj), 0);
    if (hostile) {
        /* the squatter only heartbeats until the real worker has trained */
        double end = rt_clock_now() + WAIT_S;
        while (!atomic_load(&wj.done) && rt_clock_now() < end) {
            struct rt_wire_msg m;
            rt_wire_msg_init(&m, RT_WIRE_HEARTBEAT, 0, "squatter");
            s_send(sq[0], &m, NULL);
            usleep(100000);
        }
    }
    pthread_join(wj.th, NULL);
    for (int i = 0; i < S; i++)
        pthread_join(sj[i].th, NULL);
    if (wj.rc)
        fail_msg("the real worker: %d", wj.rc);
    for (int i = 0; i < S; i++) {
        if (sj[i].rc)
            fail_msg("shard %d ended with %d", i, sj[i].rc);
        uint64_t po, pc, bo, bc;
        server_shard_range(sj[i].shard, &po, &pc, &bo, &bc);
        memcpy(w + po, server_shard_params(sj[i].shard), pc * sizeof(float));
        memcpy(b + bo, server_shard_buffers(sj[i].shard), bc * sizeof(float));
        struct server_shard_stats st;
        server_shard_stats(sj[i].shard, &st);
        assert_int_equal(st.version, STEPS);
        if (hostile)
            assert_true(st.dropped >= 3); /* the rogue's HELLO, PUSH and BYE (a heartbeat is
                                              answered: anyone may probe a shard) */
        server_shard_destroy(&sj[i].shard);
    }
    if (hostile) {
        for (int i = 0; i < S; i++) {
            rt_sock_close(&sq[i], 0);
            rt_sock_close(&rogue[i], 0);
        }
        rt_sock_close(&eig, 0);
    }
    rt_sock_in_close(&in);
    worker_synth_fini(&wj.m);
    rt_metrics_close(&metrics);
    rt_sock_ctx_destroy(&ctx);
    server_fixsched_destroy(&sched);
}

static void test_squatter_and_rogue_change_nothing(void **state)
{
    (void)state;
    float ref_w[P], ref_b[NB], w[P], b[NB];
    s_run(0, "identity-ref", NULL, ref_w, ref_b);
    char *dir = eb_test_tmpdir(), mpath[4200];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", dir);
    s_run(1, "identity", mpath, w, b);
    assert_memory_equal(w, ref_w, sizeof w);
    assert_memory_equal(b, ref_b, sizeof b);
    /* the squatter was evicted for its silence, having trained on nothing */
    json_t *ev = eb_test_events(mpath, "evict");
    assert_int_equal(json_array_size(ev), 1);
    json_t *e = json_array_get(ev, 0);
    assert_string_equal(json_string_value(json_object_get(e, "name")), "squatter");
    assert_string_equal(json_string_value(json_object_get(e, "reason")), "silent");
    assert_int_equal(json_integer_value(json_object_get(e, "step")), 0);
    assert_int_equal(json_integer_value(json_object_get(e, "lost_samples")), 0);
    json_decref(ev);
    ev = eb_test_events(mpath, "rejoin");
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_dead_coordinator_stops_the_others(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char ep[S][4200], connect[9000], err[4][4300], a_shard[S][8];
    for (int i = 0; i < S; i++)
        snprintf(ep[i], sizeof ep[i], "ipc://%s/s%d", dir, i);
    snprintf(connect, sizeof connect, "%s,%s", ep[0], ep[1]);
    for (int i = 0; i < 4; i++)
        snprintf(err[i], sizeof err[i], "%s/err%d", dir, i);
    const int timeout_ms = 2000;
    pid_t pids[4];
    for (int i = 0; i < S; i++) {
        snprintf(a_shard[i], sizeof a_shard[i], "%d", i);
        char *argv[] = {"server",   "--model", "synth",     "--shard",
                        a_shard[i], "--bind",  ep[i],       "--coord",
                        ep[0],      "--steps", "100000000", "--batch",
                        "8",        "--lr",    "0.001",     "--coordinator-timeout-ms",
                        "2000",     NULL};
        pids[i] = eb_fault_spawn(argv, err[i]);
    }
    for (int i = 0; i < 2; i++) {
        char *argv[] = {"worker", "--model",
                        "synth",  "--connect",
                        connect,  "--timeout-ms",
                        "600000", "--coordinator-timeout-ms",
                        "2000",   NULL};
        pids[S + i] = eb_fault_spawn(argv, err[S + i]);
    }
    sleep(2); /* training */
    for (int i = 0; i < 4; i++)
        assert_int_equal(waitpid(pids[i], NULL, WNOHANG), 0); /* all running */
    assert_int_equal(kill(pids[0], SIGKILL), 0);
    waitpid(pids[0], NULL, 0);
    double t0 = rt_clock_now();
    for (int i = 1; i < 4; i++) {
        int ws = eb_fault_wait(pids[i], (long)time(NULL) + WAIT_S);
        double took = rt_clock_now() - t0;
        if (ws == -1)
            fail_msg("process %d still running %.0f s after shard 0 died", i, took);
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) == 0)
            fail_msg("process %d ended with status %d after shard 0 died", i, ws);
        /* within the timeout, and a margin for a loaded machine */
        assert_true(took < timeout_ms / 1000.0 + 10.0);
        char *text = (char *)eb_test_read(err[i], NULL);
        if (!strstr(text, "coordinator"))
            fail_msg("process %d does not say why: %s", i, text);
        free(text);
    }
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_squatter_and_rogue_change_nothing),
        cmocka_unit_test_teardown(test_dead_coordinator_stops_the_others, eb_fault_kill_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
