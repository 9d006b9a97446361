/*
 * test_evict: a dead worker does not stall the job. Two shards and three workers (threads of this
 * process over inproc, the same code as processes): one worker dies in the middle of an epoch
 * (its compute fails and it leaves without a word, as after SIGKILL). The coordinator evicts it
 * after the heartbeat timeout, the step it blocked completes with the others, the run finishes
 * every epoch, an "evict" event lands in metrics.jsonl, the samples of the interrupted steps are
 * counted as lost (exactly the ones nobody trained on), every sample of the later epochs is seen
 * exactly once by the survivors, and the final weights equal plain SGD where each step averages
 * the gradients over the samples actually received. A live worker whose step takes several
 * timeouts is not evicted: it heartbeats while it computes. A worker that dies in the middle of
 * its push (driven by hand: the first chunk of its slice, then silence) counts for the parameters
 * it reached: those average over both workers' samples, the rest over the survivor's alone.
 * A worker that restarts after its eviction rejoins: it takes its slot back from the next step
 * nobody has asked about, and the last epochs are again split three ways, each sample once.
 */
#include "eb_test.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn_net.h"
#include "rt_err.h"
#include "rt_metrics.h"
#include "rt_sock.h"
#include "server_fixsched.h"
#include "server_shard.h"
#include "worker_loop.h"
#include "worker_synth.h"

#define P 999
#define NB 5
#define BATCH 12
#define N_SAMPLES 48 /* 4 steps per epoch */
#define EPOCHS 4
#define STEPS (EPOCHS * N_SAMPLES / BATCH)
#define LR 1e-3f
#define MOMENTUM 0.9f
#define WD 1e-4f
#define SEED 11
#define S 2
#define MAX_W 3
#define EVICT_MS 2000 /* generous: a loaded machine must not make a live worker look dead */
#define MAX_LOG 256
#define EPOCH_STRIDE 32 /* worker_synth: sample id = epoch << 32 + position */

/* One computed share, as the worker's compute callback saw it before its push. */
struct rec {
    uint64_t step, epoch, off; /* step, epoch, first position in the epoch's order */
    uint32_t cnt;              /* samples */
    int worker;                /* worker id */
};

/* What every worker thread records. */
struct shared {
    pthread_mutex_t mu;
    struct rec log[MAX_LOG];
    int n;
};

/* One worker thread. */
struct wk {
    struct worker_synth model;
    struct worker_compute inner; /* the synthetic model */
    struct shared *sh;
    long die_step;  /* step whose compute fails and ends the worker (-1: never) */
    long slow_step; /* step that takes slow_us (-1: none) */
    long slow_us;
    long every_us;   /* every step takes this long (0: as fast as it goes) */
    long restart_us; /* after dying, run again after this pause (0: stay dead) */
    int runs;        /* worker_run calls */
    int id;          /* the id the coordinator gave (seen in compute) */
    atomic_int stop;
    struct worker_cfg cfg;
    const char *eps[S];
    char name[32];
    int rc;
    pthread_t th;
};

struct shard_job {
    server_shard_t *shard;
    int rc;
    pthread_t th;
};

static int s_init(void *user, float *params, float *buffers)
{
    struct wk *k = user;
    return k->inner.init(k->inner.user, params, buffers);
}

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct wk *k = user;
    k->id = st->worker;
    if ((long)st->step == k->die_step) {
        /* gone without a goodbye: no push, no heartbeat, sockets closed */
        atomic_store(&k->stop, 1);
        return rt_err_set(RT_ERR_INTERRUPTED, "worker %d dies at step %llu", st->worker,
                          (unsigned long long)st->step);
    }
    if ((long)st->step == k->slow_step)
        usleep((useconds_t)k->slow_us);
    if (k->every_us)
        usleep((useconds_t)k->every_us);
    int rc = k->inner.compute(k->inner.user, st, params, grads, buffers, samples, loss);
    if (rc)
        return rc;
    pthread_mutex_lock(&k->sh->mu);
    if (k->sh->n < MAX_LOG)
        k->sh->log[k->sh->n++] = (struct rec){
            st->step, st->epoch, st->epoch_offset + st->share_offset, *samples, st->worker};
    pthread_mutex_unlock(&k->sh->mu);
    return RT_OK;
}

static void *s_worker_main(void *arg)
{
    struct wk *k = arg;
    struct worker_compute cb = {.user = k, .init = s_init, .compute = s_compute};
    k->rc = worker_run(&k->cfg, &cb, NULL);
    k->runs = 1;
    if (k->rc && k->restart_us) {
        /* a restart policy: again, until the coordinator takes it back (it refuses while the
         * dead process is not evicted yet) */
        usleep((useconds_t)k->restart_us);
        k->die_step = -1;
        for (int i = 0; i < 100 && k->rc; i++) {
            atomic_store(&k->stop, 0);
            k->rc = worker_run(&k->cfg, &cb, NULL);
            k->runs++;
            if (k->rc)
                usleep(50000);
        }
    }
    return NULL;
}

static void *s_shard_main(void *arg)
{
    struct shard_job *j = arg;
    j->rc = server_shard_run(j->shard, NULL);
    return NULL;
}

/* Plain SGD where step t averages the gradients of the shares recorded for it. */
static void s_reference(const struct shared *sh, float *w, float *b)
{
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, SEED, P, NB), 0);
    float *mom = calloc(P, sizeof(float)), *g = calloc(P, sizeof(float));
    double *acc = calloc(P, sizeof(double));
    double bacc[NB];
    float bk[NB];
    assert_non_null(mom);
    assert_non_null(g);
    assert_non_null(acc);
    worker_synth_initial(&m, w, b);
    for (uint64_t t = 0; t < STEPS; t++) {
        uint64_t tot = 0;
        memset(acc, 0, P * sizeof(double));
        memset(bacc, 0, sizeof bacc);
        for (int i = 0; i < sh->n; i++) {
            const struct rec *r = &sh->log[i];
            if (r->step != t)
                continue;
            memcpy(bk, b, sizeof bk);
            worker_synth_grad(&m, (r->epoch << EPOCH_STRIDE) + r->off, r->cnt, w, g, bk);
            for (int j = 0; j < P; j++)
                acc[j] += (double)r->cnt * g[j];
            for (int j = 0; j < NB; j++)
                bacc[j] += (double)r->cnt * bk[j];
            tot += r->cnt;
        }
        assert_true(tot > 0);
        for (int j = 0; j < P; j++)
            g[j] = (float)(acc[j] / (double)tot);
        for (int j = 0; j < NB; j++)
            b[j] = (float)(bacc[j] / (double)tot);
        nn_sgd_step(w, mom, g, P, LR, MOMENTUM, WD);
    }
    free(mom);
    free(g);
    free(acc);
    worker_synth_fini(&m);
}

static void s_check_close(const float *a, const float *ref, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (!(fabsf(a[i] - ref[i]) <= 1e-5f * (1.0f + fabsf(ref[i]))))
            fail_msg("%s[%d]: %.9g, expected %.9g", what, i, (double)a[i], (double)ref[i]);
}

/* How often each position of each epoch was trained on. */
static void s_counts(const struct shared *sh, int counts[EPOCHS][N_SAMPLES])
{
    memset(counts, 0, sizeof(int) * EPOCHS * N_SAMPLES);
    for (int i = 0; i < sh->n; i++) {
        const struct rec *r = &sh->log[i];
        assert_true(r->epoch < EPOCHS);
        for (uint32_t k = 0; k < r->cnt; k++) {
            assert_true(r->off + k < N_SAMPLES);
            counts[r->epoch][r->off + k]++;
        }
    }
}

/* Run S shards and nw workers to the end; final weights into w, b, shard counters into st. */
static void s_run(struct wk *wks, int nw, const char *where, rt_metrics_t *metrics,
                  struct shared *sh, float *w, float *b, struct server_shard_stats *st)
{
    struct server_fixsched_cfg fc = {
        .batch = BATCH, .lr = LR, .n_samples = N_SAMPLES, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    void *ctx = rt_sock_ctx_new(1);
    assert_non_null(ctx);
    struct shard_job sj[S];
    char eps[S][64];
    memset(sj, 0, sizeof sj);
    for (int i = 0; i < S; i++) {
        snprintf(eps[i], sizeof eps[i], "inproc://%s-%d", where, i);
        struct server_shard_cfg sc = {
            .shard = i,
            .n_shards = S,
            .n_workers = nw,
            .n_params = P,
            .n_buffers = NB,
            .endpoint = eps[i],
            .coord_endpoint = i ? eps[0] : NULL,
            .zmq_ctx = ctx,
            .momentum = MOMENTUM,
            .weight_decay = WD,
            .sched = &sched,
            .evict_ms = EVICT_MS,
            .metrics = i == 0 ? metrics : NULL,
        };
        if (server_shard_new(&sc, &sj[i].shard))
            fail_msg("shard %d: %s", i, rt_err_msg());
    }
    for (int i = 0; i < S; i++)
        assert_int_equal(pthread_create(&sj[i].th, NULL, s_shard_main, &sj[i]), 0);
    for (int i = 0; i < nw; i++) {
        struct wk *k = &wks[i];
        assert_int_equal(worker_synth_init(&k->model, SEED, P, NB), 0);
        k->inner = worker_synth_compute(&k->model);
        k->sh = sh;
        atomic_init(&k->stop, 0);
        snprintf(k->name, sizeof k->name, "evict-worker-%d", i);
        for (int s = 0; s < S; s++)
            k->eps[s] = eps[s];
        k->cfg = (struct worker_cfg){.name = k->name,
                                     .n_shards = S,
                                     .endpoints = k->eps,
                                     .zmq_ctx = ctx,
                                     .n_params = P,
                                     .n_buffers = NB,
                                     .timeout_ms = 20000,
                                     .stop = &k->stop};
        assert_int_equal(pthread_create(&k->th, NULL, s_worker_main, k), 0);
    }
    for (int i = 0; i < nw; i++)
        pthread_join(wks[i].th, NULL);
    for (int i = 0; i < S; i++)
        pthread_join(sj[i].th, NULL);
    for (int i = 0; i < S; i++) {
        if (sj[i].rc)
            fail_msg("shard %d ended with %d", i, sj[i].rc);
        uint64_t po, pc, bo, bc;
        server_shard_range(sj[i].shard, &po, &pc, &bo, &bc);
        memcpy(w + po, server_shard_params(sj[i].shard), pc * sizeof(float));
        memcpy(b + bo, server_shard_buffers(sj[i].shard), bc * sizeof(float));
        server_shard_stats(sj[i].shard, &st[i]);
        server_shard_destroy(&sj[i].shard);
    }
    for (int i = 0; i < nw; i++)
        worker_synth_fini(&wks[i].model);
    rt_sock_ctx_destroy(&ctx);
    server_fixsched_destroy(&sched);
}

/* The "evict" event of metrics.jsonl (exactly one); returns its fields. */
static void s_evict_event(const char *path, long long *worker, long long *lost)
{
    json_t *ev = eb_test_events(path, "evict");
    assert_int_equal(json_array_size(ev), 1);
    json_t *j = json_array_get(ev, 0);
    *worker = json_integer_value(json_object_get(j, "worker"));
    *lost = json_integer_value(json_object_get(j, "lost_samples"));
    assert_non_null(json_object_get(j, "peer"));
    assert_non_null(json_object_get(j, "name"));
    json_decref(ev);
}

/* Events named `name` in metrics.jsonl. */
static int s_count_events(const char *path, const char *name)
{
    json_t *ev = eb_test_events(path, name);
    int n = (int)json_array_size(ev);
    json_decref(ev);
    return n;
}

/* The rig of the dead-worker tests: metrics.jsonl opened in dir (its path into mpath), the shared
 * record reset, and MAX_W workers of which worker 2 dies at step 5 (the middle of epoch 1). */
static rt_metrics_t *s_dead_worker_rig(const char *dir, char *mpath, size_t cap, struct shared *sh,
                                       struct wk *wks)
{
    snprintf(mpath, cap, "%s/metrics.jsonl", dir);
    rt_metrics_t *metrics = NULL;
    assert_int_equal(rt_metrics_open(mpath, 0, &metrics), 0);
    memset(sh, 0, sizeof *sh);
    pthread_mutex_init(&sh->mu, NULL);
    memset(wks, 0, MAX_W * sizeof *wks);
    for (int i = 0; i < MAX_W; i++) {
        wks[i].die_step = i == 2 ? 5 : -1;
        wks[i].slow_step = -1;
    }
    return metrics;
}

static void test_dead_worker_is_evicted(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char mpath[4200];
    static struct shared sh;
    static struct wk wks[MAX_W];
    rt_metrics_t *metrics = s_dead_worker_rig(dir, mpath, sizeof mpath, &sh, wks);
    float w[P], b[NB], ref_w[P], ref_b[NB];
    struct server_shard_stats st[S];
    s_run(wks, MAX_W, "evict-dead", metrics, &sh, w, b, st);
    rt_metrics_close(&metrics);

    /* the survivors finished every step, the dead one failed */
    assert_int_equal(wks[0].rc, 0);
    assert_int_equal(wks[1].rc, 0);
    assert_int_not_equal(wks[2].rc, 0);
    assert_int_equal(st[0].version, STEPS);
    assert_int_equal(st[1].version, STEPS);
    assert_int_equal(st[0].evicted, 1);
    assert_int_equal(st[1].evicted, 1);

    /* no sample twice; the lost ones are exactly the untrained ones, all in the epoch of the
     * death (its share of step 5, and of step 6 when a survivor asked for it before the eviction)
     */
    int counts[EPOCHS][N_SAMPLES];
    s_counts(&sh, counts);
    uint64_t missing = 0;
    for (int e = 0; e < EPOCHS; e++)
        for (int i = 0; i < N_SAMPLES; i++) {
            assert_true(counts[e][i] <= 1);
            if (!counts[e][i]) {
                assert_int_equal(e, 1);
                missing++;
            }
        }
    assert_true(missing >= BATCH / MAX_W && missing <= 2 * (BATCH / MAX_W));
    assert_int_equal(st[0].lost, missing);

    long long ev_worker = -1, ev_lost = -1;
    s_evict_event(mpath, &ev_worker, &ev_lost);
    assert_int_equal(ev_worker, wks[2].id);
    assert_int_equal(ev_lost, (long long)missing);

    /* each update averaged what arrived: SGD over the recorded shares */
    s_reference(&sh, ref_w, ref_b);
    s_check_close(w, ref_w, P, "weights");
    s_check_close(b, ref_b, NB, "buffers");
    eb_test_rmtree(dir);
    free(dir);
}

static void test_slow_worker_is_not_evicted(void **state)
{
    (void)state;
    static struct shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    static struct wk wks[2];
    memset(wks, 0, sizeof wks);
    for (int i = 0; i < 2; i++) {
        wks[i].die_step = -1;
        wks[i].slow_step = i == 1 ? 3 : -1;
        wks[i].slow_us = 3L * EVICT_MS * 1000L; /* one step of three eviction timeouts */
    }
    float w[P], b[NB], ref_w[P], ref_b[NB];
    struct server_shard_stats st[S];
    s_run(wks, 2, "evict-slow", NULL, &sh, w, b, st);
    assert_int_equal(wks[0].rc, 0);
    assert_int_equal(wks[1].rc, 0);
    assert_int_equal(st[0].evicted, 0);
    assert_int_equal(st[1].evicted, 0);
    assert_int_equal(st[0].lost, 0);
    int counts[EPOCHS][N_SAMPLES];
    s_counts(&sh, counts);
    for (int e = 0; e < EPOCHS; e++)
        for (int i = 0; i < N_SAMPLES; i++)
            assert_int_equal(counts[e][i], 1);
    s_reference(&sh, ref_w, ref_b);
    s_check_close(w, ref_w, P, "weights");
    s_check_close(b, ref_b, NB, "buffers");
}

/* Receive and decode one message within 10 s. */
static void s_recv(void *sock, struct rt_sock_parts *parts, struct rt_wire_msg *m, const void **pp)
{
    zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
    assert_int_equal(zmq_poll(&it, 1, 10000), 1);
    assert_int_equal(rt_sock_recv(sock, parts, 0), 0);
    const void *f[RT_SOCK_MAX_PARTS];
    size_t sz[RT_SOCK_MAX_PARTS];
    for (int i = 0; i < parts->n; i++) {
        f[i] = rt_sock_part_data(parts, i);
        sz[i] = rt_sock_part_size(parts, i);
    }
    struct rt_wire_limits lim = {P, NB, P};
    const void *bp;
    if (rt_wire_decode(f, sz, parts->n, &lim, m, pp, &bp))
        fail_msg("reply: %s", rt_err_msg());
}

#define CUT 400 /* parameters of the dying worker's only chunk of step 1 */

static void test_death_in_the_middle_of_a_push(void **state)
{
    (void)state;
    static struct shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    struct server_fixsched_cfg fc = {.batch = BATCH, .lr = LR, .n_samples = N_SAMPLES, .steps = 3};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    struct worker_synth mb;
    assert_int_equal(worker_synth_init(&mb, SEED, P, NB), 0);
    float w0[P], b0[NB];
    worker_synth_initial(&mb, w0, b0);
    void *ctx = rt_sock_ctx_new(1);
    assert_non_null(ctx);
    struct shard_job sj;
    memset(&sj, 0, sizeof sj);
    const char *ep = "inproc://evict-partial";
    struct server_shard_cfg sc = {.shard = 0,
                                  .n_shards = 1,
                                  .n_workers = 2,
                                  .n_params = P,
                                  .n_buffers = NB,
                                  .endpoint = ep,
                                  .zmq_ctx = ctx,
                                  .momentum = MOMENTUM,
                                  .weight_decay = WD,
                                  .init_params = w0,
                                  .init_buffers = b0,
                                  .sched = &sched,
                                  .evict_ms = EVICT_MS};
    assert_int_equal(server_shard_new(&sc, &sj.shard), 0);
    assert_int_equal(pthread_create(&sj.th, NULL, s_shard_main, &sj), 0);

    /* worker A: the ordinary loop, recording its shares */
    static struct wk a;
    memset(&a, 0, sizeof a);
    a.die_step = -1;
    a.slow_step = -1;
    assert_int_equal(worker_synth_init(&a.model, SEED, P, NB), 0);
    a.inner = worker_synth_compute(&a.model);
    a.sh = &sh;
    atomic_init(&a.stop, 0);
    a.eps[0] = ep;
    a.cfg = (struct worker_cfg){.name = "survivor",
                                .n_shards = 1,
                                .endpoints = a.eps,
                                .zmq_ctx = ctx,
                                .n_params = P,
                                .n_buffers = NB,
                                .timeout_ms = 20000,
                                .stop = &a.stop};
    assert_int_equal(pthread_create(&a.th, NULL, s_worker_main, &a), 0);

    /* worker B by hand: step 0 whole, step 1 the first chunk only, then silence */
    void *bs;
    struct rt_sock_parts parts;
    rt_sock_parts_init(&parts);
    assert_int_equal(rt_sock_dealer(ctx, ep, &bs), 0);
    struct rt_wire_msg m;
    const void *pp;
    rt_wire_msg_init(&m, RT_WIRE_REGISTER, -1, "dies-mid-push");
    m.weight = 1.0;
    assert_int_equal(rt_sock_send(bs, NULL, 0, &m, NULL, NULL, NULL), 0);
    s_recv(bs, &parts, &m, &pp);
    assert_int_equal(m.type, RT_WIRE_WELCOME);
    int id = m.sender;
    uint64_t token = m.token;
    rt_wire_msg_init(&m, RT_WIRE_HELLO, id, "dies-mid-push");
    m.token = token;
    assert_int_equal(rt_sock_send(bs, NULL, 0, &m, NULL, NULL, NULL), 0);
    s_recv(bs, &parts, &m, &pp);
    assert_int_equal(m.type, RT_WIRE_ACK);
    float w[P], g[P], b[NB];
    struct rec brec[2];
    for (uint64_t t = 0; t < 2; t++) {
        struct rt_wire_msg sm;
        for (;;) {
            rt_wire_msg_init(&m, RT_WIRE_SCHED_QUERY, id, "dies-mid-push");
            m.step = t;
            assert_int_equal(rt_sock_send(bs, NULL, 0, &m, NULL, NULL, NULL), 0);
            s_recv(bs, &parts, &sm, &pp);
            if (sm.type == RT_WIRE_SCHED)
                break;
            assert_int_equal(sm.type, RT_WIRE_ERROR); /* worker A not registered yet */
            usleep(2000);
        }
        rt_wire_msg_init(&m, RT_WIRE_PULL, id, "dies-mid-push");
        m.step = t;
        assert_int_equal(rt_sock_send(bs, NULL, 0, &m, NULL, NULL, NULL), 0);
        uint64_t got = 0;
        while (got < P) {
            s_recv(bs, &parts, &m, &pp);
            if (m.type == RT_WIRE_HEARTBEAT)
                continue;
            assert_int_equal(m.type, RT_WIRE_WEIGHTS);
            if (m.has_params) {
                memcpy(w + m.params.offset, pp, m.params.count * sizeof(float));
                got += m.params.count;
            }
        }
        brec[t] = (struct rec){t, sm.sched.epoch, sm.sched.epoch_offset + sm.sched.share_offset,
                               sm.sched.share_count, id};
        memcpy(b, b0, sizeof b); /* the buffers ride with the first chunk (not checked here) */
        worker_synth_grad(&mb, (sm.sched.epoch << EPOCH_STRIDE) + brec[t].off, sm.sched.share_count,
                          w, g, b);
        struct rt_wire_msg pm;
        rt_wire_msg_init(&pm, RT_WIRE_PUSH, id, "dies-mid-push");
        pm.step = t;
        pm.sched_version = sm.sched_version;
        pm.lr = sm.sched.lr;
        pm.samples = sm.sched.share_count;
        pm.has_params = 1;
        pm.params.offset = 0;
        pm.params.count = t == 0 ? P : CUT;
        pm.has_buffers = 1;
        pm.buffers.offset = 0;
        pm.buffers.count = NB;
        assert_int_equal(rt_sock_send(bs, NULL, 0, &pm, g, b, NULL), 0);
    }
    pthread_join(a.th, NULL);
    pthread_join(sj.th, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(sj.rc, 0);
    struct server_shard_stats st;
    server_shard_stats(sj.shard, &st);
    assert_int_equal(st.version, 3);
    assert_int_equal(st.evicted, 1);

    /* the reference: step 0 both shares, step 1 both below CUT and A's alone above, step 2 A */
    float rw[P], rb[NB], *mom = calloc(P, sizeof(float)), ga[P], gb[P];
    assert_non_null(mom);
    memcpy(rw, w0, sizeof rw);
    memcpy(rb, b0, sizeof rb);
    uint32_t a_step2 = 0;
    for (uint64_t t = 0; t < 3; t++) {
        const struct rec *ra = NULL;
        for (int i = 0; i < sh.n; i++)
            if (sh.log[i].step == t)
                ra = &sh.log[i];
        assert_non_null(ra);
        worker_synth_grad(&mb, (ra->epoch << EPOCH_STRIDE) + ra->off, ra->cnt, rw, ga, b);
        if (t == 2) {
            a_step2 = ra->cnt;
            memcpy(g, ga, sizeof g);
        } else {
            const struct rec *rb_ = &brec[t];
            worker_synth_grad(&mb, (rb_->epoch << EPOCH_STRIDE) + rb_->off, rb_->cnt, rw, gb, b);
            float ca = (float)ra->cnt, cb = (float)rb_->cnt;
            for (int j = 0; j < P; j++)
                g[j] = t == 0 || j < CUT ? (ca * ga[j] + cb * gb[j]) / (ca + cb) : ga[j];
        }
        nn_sgd_step(rw, mom, g, P, LR, MOMENTUM, WD);
    }
    s_check_close(server_shard_params(sj.shard), rw, P, "weights after a partial push");
    /* lost: B's share of step 1 (its push did not complete), and of step 2 when A had asked for
     * step 2 before the eviction (A then trained on its own half only) */
    assert_int_equal(st.lost, brec[1].cnt + (BATCH - a_step2));
    free(mom);
    rt_sock_close(&bs, 0);
    rt_sock_parts_close(&parts);
    server_shard_destroy(&sj.shard);
    worker_synth_fini(&a.model);
    worker_synth_fini(&mb);
    rt_sock_ctx_destroy(&ctx);
    server_fixsched_destroy(&sched);
}

static void test_restarted_worker_rejoins(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char mpath[4200];
    static struct shared sh;
    static struct wk wks[MAX_W];
    rt_metrics_t *metrics = s_dead_worker_rig(dir, mpath, sizeof mpath, &sh, wks);
    for (int i = 0; i < MAX_W; i++) {
        wks[i].every_us = 100000; /* the run outlasts the death, the eviction and the restart */
        wks[i].restart_us = i == 2 ? 100000 : 0; /* refused until the eviction */
    }
    float w[P], b[NB], ref_w[P], ref_b[NB];
    struct server_shard_stats st[S];
    s_run(wks, MAX_W, "evict-rejoin", metrics, &sh, w, b, st);
    rt_metrics_close(&metrics);
    for (int i = 0; i < MAX_W; i++)
        if (wks[i].rc)
            fail_msg("worker thread %d ended with %d", i, wks[i].rc);
    assert_true(wks[2].runs >= 2);
    assert_int_equal(st[0].version, STEPS);
    assert_int_equal(st[0].evicted, 1);
    assert_int_equal(st[1].evicted, 1);

    /* the restarted worker trains again, under its old id, and to the end */
    uint64_t first_back = STEPS;
    int last_step_members = 0;
    for (int i = 0; i < sh.n; i++) {
        const struct rec *r = &sh.log[i];
        if (r->worker == wks[2].id && r->step > 5 && r->step < first_back)
            first_back = r->step;
        if (r->step == STEPS - 1)
            last_step_members++;
    }
    assert_true(first_back < STEPS - 1);
    assert_int_equal(last_step_members, MAX_W);

    /* no sample twice; the untrained ones are the lost ones; the epochs after the rejoin whole */
    int counts[EPOCHS][N_SAMPLES];
    s_counts(&sh, counts);
    uint64_t missing = 0;
    for (int e = 0; e < EPOCHS; e++)
        for (int i = 0; i < N_SAMPLES; i++) {
            assert_true(counts[e][i] <= 1);
            missing += !counts[e][i];
        }
    assert_true(missing > 0);
    assert_int_equal(st[0].lost, missing);
    for (int i = 0; i < N_SAMPLES; i++)
        assert_int_equal(counts[EPOCHS - 1][i], 1);

    /* the events: one eviction, one rejoin */
    long long ev_worker = -1, ev_lost = -1;
    s_evict_event(mpath, &ev_worker, &ev_lost);
    assert_int_equal(ev_worker, wks[2].id);
    assert_int_equal(s_count_events(mpath, "rejoin"), 1);

    s_reference(&sh, ref_w, ref_b);
    s_check_close(w, ref_w, P, "weights");
    s_check_close(b, ref_b, NB, "buffers");
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_worker_is_evicted),
        cmocka_unit_test(test_slow_worker_is_not_evicted),
        cmocka_unit_test(test_death_in_the_middle_of_a_push),
        cmocka_unit_test(test_restarted_worker_rejoins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
