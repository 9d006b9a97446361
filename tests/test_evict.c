/*
 * test_evict: a dead worker does not stall the job. Two shards and three workers (threads of this
 * process over inproc, the same code as processes): one worker dies in the middle of an epoch
 * (its compute fails and it leaves without a word, as after SIGKILL). The coordinator evicts it
 * after the heartbeat timeout, the step it blocked completes with the others, the run finishes
 * every epoch, an "evict" event lands in metrics.jsonl, the samples of the interrupted steps are
 * counted as lost (exactly the ones nobody trained on), every sample of the later epochs is seen
 * exactly once by the survivors, and the final weights equal plain SGD where each step averages
 * the gradients over the samples actually received. A live worker whose step takes several
 * timeouts is not evicted: it heartbeats while it computes.
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
#define EVICT_MS 300
#define MAX_LOG 256
#define EPOCH_STRIDE 32 /* worker_synth: sample id = epoch << 32 + position */

/* One computed share, as the worker's compute callback saw it before its push. */
struct rec {
    uint64_t step, epoch, off; /* step, epoch, first position in the epoch's order */
    uint32_t cnt;              /* samples */
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
    int id;         /* the id the coordinator gave (seen in compute) */
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
    int rc = k->inner.compute(k->inner.user, st, params, grads, buffers, samples, loss);
    if (rc)
        return rc;
    pthread_mutex_lock(&k->sh->mu);
    if (k->sh->n < MAX_LOG)
        k->sh->log[k->sh->n++] = (struct rec){st->step, st->epoch,
                                              st->epoch_offset + st->share_offset, *samples};
    pthread_mutex_unlock(&k->sh->mu);
    return RT_OK;
}

static void *s_worker_main(void *arg)
{
    struct wk *k = arg;
    struct worker_compute cb = {.user = k, .init = s_init, .compute = s_compute};
    k->rc = worker_run(&k->cfg, &cb, NULL);
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
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j)
            fail_msg("metrics line is not JSON: %s", line);
        const char *ev = json_string_value(json_object_get(j, "event"));
        if (ev && !strcmp(ev, "evict")) {
            found++;
            *worker = json_integer_value(json_object_get(j, "worker"));
            *lost = json_integer_value(json_object_get(j, "lost_samples"));
            assert_non_null(json_object_get(j, "peer"));
            assert_non_null(json_object_get(j, "name"));
        }
        json_decref(j);
    }
    fclose(f);
    assert_int_equal(found, 1);
}

static void test_dead_worker_is_evicted(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char mpath[4200];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", dir);
    rt_metrics_t *metrics = NULL;
    assert_int_equal(rt_metrics_open(mpath, 0, &metrics), 0);
    static struct shared sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    static struct wk wks[MAX_W];
    memset(wks, 0, sizeof wks);
    for (int i = 0; i < MAX_W; i++) {
        wks[i].die_step = i == 2 ? 5 : -1; /* step 5: the middle of epoch 1 */
        wks[i].slow_step = -1;
    }
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
     * death (its share of step 5, and of step 6 when a survivor asked for it before the eviction) */
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
        wks[i].slow_us = 4L * EVICT_MS * 1000L; /* one step of four eviction timeouts */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_worker_is_evicted),
        cmocka_unit_test(test_slow_worker_is_not_evicted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
