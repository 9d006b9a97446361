/*
 * test_worker_feed: the loader as a worker's sample source. The feed returns exactly what the
 * loader gives for the same (epoch, range) requests, with read-ahead across micro-batches; a read
 * out of the announced order is an error, not a wrong batch; and two workers fed by their own
 * loaders, with two shards, train an mlp on an LMDB dataset to the same weights as one net reading
 * the same micro-batches.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_test_data.h"
#include "nn_net.h"
#include "rt_err.h"
#include "rt_loader.h"
#include "cluster_embed.h"
#include "server_fixsched.h"
#include "worker_feed.h"
#include "worker_nn.h"

#define N 40
#define C 1
#define H 8
#define W_ 8
#define M 4
#define BATCH 12
#define STEPS 4

static rt_loader_t *s_open(const char *dir)
{
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.seed = 11;
    o.threads = 1;
    o.queue_depth = 4;
    o.max_batch = M;
    o.flip = true; /* augmentation drawn from (seed, epoch, record): the same in both loaders */
    rt_loader_t *l = NULL;
    if (rt_loader_new(dir, &o, &l))
        fail_msg("loader: %s", rt_err_msg());
    return l;
}

static void test_feed_matches_loader(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), dir[4200];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    eb_test_make_raw_db(dir, N, C, H, W_);
    rt_loader_t *a = s_open(dir), *b = s_open(dir);
    struct worker_feed feed;
    worker_feed_init(&feed, a, 3);
    struct worker_nn_source src = worker_feed_source(&feed);
    float x[M * C * H * W_], xr[M * C * H * W_];
    int32_t y[M], yr[M];
    /* a step of 5 micro-batches in epoch 1, announced first, read in order */
    uint64_t firsts[5] = {0, 4, 8, 12, 16};
    for (int i = 0; i < 5; i++)
        assert_int_equal(src.prefetch(src.user, 1, firsts[i], i == 4 ? 3 : M), 0);
    for (int i = 0; i < 5; i++) {
        uint32_t n = i == 4 ? 3 : M;
        assert_int_equal(src.read(src.user, 1, firsts[i], n, x, y), 0);
        struct rt_loader_req req = {.epoch = 1, .start = firsts[i], .count = n, .augment = true};
        struct rt_loader_batch bt;
        assert_int_equal(rt_loader_submit(b, &req), 0);
        assert_int_equal(rt_loader_wait(b, &bt), 0);
        memcpy(xr, bt.x, n * C * H * W_ * sizeof(float));
        memcpy(yr, bt.y, n * sizeof(int32_t));
        rt_loader_release(b, &bt);
        assert_memory_equal(x, xr, n * C * H * W_ * sizeof(float));
        assert_memory_equal(y, yr, n * sizeof(int32_t));
    }
    /* unannounced reads work too */
    assert_int_equal(src.read(src.user, 2, 20, M, x, y), 0);
    /* out of order: an error */
    assert_int_equal(src.prefetch(src.user, 0, 0, M), 0);
    assert_int_equal(src.prefetch(src.user, 0, 4, M), 0);
    assert_int_equal(src.read(src.user, 0, 4, M, x, y), RT_ERR_STATE);
    /* and the feed recovers */
    assert_int_equal(src.read(src.user, 0, 8, M, x, y), 0);
    rt_loader_destroy(&a);
    rt_loader_destroy(&b);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_two_workers_on_lmdb(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), dir[4200];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    eb_test_make_raw_db(dir, N, C, H, W_);
    int classes = N; /* the synthetic records' labels are their indices */
    struct server_fixsched_cfg fc = {.batch = BATCH, .lr = 0.05f, .n_samples = N, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    rt_loader_t *loaders[2];
    struct worker_feed feeds[2];
    nn_net_t *nets[2];
    worker_nn_t *nns[2];
    struct worker_compute cbs[2];
    struct worker_nn_cfg ncfg = {.micro_batch = M, .init_seed = 9};
    for (int i = 0; i < 2; i++) {
        loaders[i] = s_open(dir);
        worker_feed_init(&feeds[i], loaders[i], 4);
        struct worker_nn_source src = worker_feed_source(&feeds[i]);
        nets[i] = nn_zoo_new("mlp", C, H, W_, classes, M, NULL);
        assert_non_null(nets[i]);
        nns[i] = worker_nn_new(nets[i], &src, &ncfg, NULL);
        assert_non_null(nns[i]);
        cbs[i] = worker_nn_compute(nns[i]);
    }
    size_t np = nn_net_param_count(nets[0]);
    float *w = malloc(np * sizeof(float));
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = 2,
        .transport = "inproc",
        .where = "feed",
        .n_params = np,
        .n_buffers = 0,
        .momentum = 0.9f,
        .weight_decay = 5e-4f,
        .sched = &sched,
        .compute = cbs,
        .checksum = RT_WIRE_CK_CRC32,
    };
    if (cluster_embed_run(&cc, w, NULL, NULL))
        fail_msg("cluster: %s", rt_err_msg());
    /* reference: equal shares of 6 = micro-batches 4 + 2 per worker, in position order */
    rt_loader_t *rl = s_open(dir);
    nn_net_t *ref = nn_zoo_new("mlp", C, H, W_, classes, M, NULL);
    nn_net_init(ref, 9);
    float *mom = calloc(np, sizeof(float));
    float x[M * C * H * W_];
    int32_t y[M];
    for (int t = 0; t < STEPS; t++) {
        uint64_t epoch = (uint64_t)t * BATCH / (N / BATCH * BATCH);
        uint64_t base = ((uint64_t)t % (N / BATCH)) * BATCH;
        nn_net_zero_grad(ref);
        for (uint32_t pos = 0; pos < BATCH;) {
            uint32_t in_share = pos % (BATCH / 2);
            uint32_t n = BATCH / 2 - in_share < M ? BATCH / 2 - in_share : M;
            struct rt_loader_req req = {
                .epoch = epoch, .start = base + pos, .count = n, .augment = true};
            struct rt_loader_batch bt;
            assert_int_equal(rt_loader_submit(rl, &req), 0);
            assert_int_equal(rt_loader_wait(rl, &bt), 0);
            memcpy(x, bt.x, n * C * H * W_ * sizeof(float));
            memcpy(y, bt.y, n * sizeof(int32_t));
            rt_loader_release(rl, &bt);
            nn_net_train_pass(ref, x, y, (int)n, NN_BN_TRAIN,
                              NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS, (float)n / (float)BATCH,
                              NULL, NULL);
            pos += n;
        }
        nn_sgd_step(nn_net_params(ref), mom, nn_net_grads(ref), np, 0.05f, 0.9f, 5e-4f);
    }
    for (size_t j = 0; j < np; j++)
        if (eb_test_reldiff(w[j], nn_net_params(ref)[j], 1e-2) > 1e-5)
            fail_msg("weight %zu: %g, reference %g", j, (double)w[j],
                     (double)nn_net_params(ref)[j]);
    free(mom);
    free(w);
    nn_net_destroy(&ref);
    rt_loader_destroy(&rl);
    for (int i = 0; i < 2; i++) {
        worker_nn_destroy(&nns[i]);
        nn_net_destroy(&nets[i]);
        rt_loader_destroy(&loaders[i]);
    }
    server_fixsched_destroy(&sched);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_feed_matches_loader),
        cmocka_unit_test(test_two_workers_on_lmdb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
