/*
 * test_worker_nn: the NN compute of a worker. W workers (own nets) and S shards over inproc train
 * a zoo net (mlp; cnn with BatchNorm; mlp with FGSM adversarial samples) on deterministic random
 * data to the same weights, within 1e-5 relative, as one net that walks the same micro-batches of
 * every step in order, accumulating (n_k / B) * gradient, and applies the same SGD. The
 * micro-batches are those of each worker's share (shares recorded as the run goes), so unequal
 * shares are covered. BatchNorm running statistics are not compared: averaging the workers'
 * running statistics is not the same as one sequential pass (by design, as in the reference).
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn_net.h"
#include "rt_err.h"
#include "cluster_embed.h"
#include "server_fixsched.h"
#include "worker_fgsm.h"
#include "worker_nn.h"

#define C 1
#define H 8
#define W_ 8
#define CLASSES 4
enum { S_SAMPLE = C * H * W_ }; /* floats of one sample */
_Static_assert(S_SAMPLE == EB_TEST_SAMPLE_FLOATS && CLASSES == EB_TEST_SAMPLE_CLASSES,
               "the samples of eb_test_sample_read");
#define STEPS 3
#define LR 0.05f
#define MOMENTUM 0.9f
#define WD 5e-4f
#define EPS 0.01
#define MAXW 4

/* Shares seen by the workers: [step][worker] = (offset, count). */
struct shares {
    pthread_mutex_t mu;
    uint32_t off[STEPS][MAXW], cnt[STEPS][MAXW];
    int n[STEPS];
};

struct rec {
    worker_nn_t *nn;
    struct worker_compute inner;
    struct shares *sh;
};

static int s_rec_compute(void *user, const struct worker_step *st, const float *params,
                         float *grads, float *buffers, uint32_t *samples, float *loss)
{
    struct rec *r = user;
    if (st->step < STEPS) {
        pthread_mutex_lock(&r->sh->mu);
        int i = r->sh->n[st->step]++;
        r->sh->off[st->step][i] = st->share_offset;
        r->sh->cnt[st->step][i] = st->share_count;
        pthread_mutex_unlock(&r->sh->mu);
    }
    return r->inner.compute(r->inner.user, st, params, grads, buffers, samples, loss);
}

static int s_rec_init(void *user, float *params, float *buffers)
{
    struct rec *r = user;
    return r->inner.init(r->inner.user, params, buffers);
}

/* FGSM input gradient for the reference net. */
struct ref_ctx {
    nn_net_t *net;
    int32_t *y;
};

static int s_ref_input_grad(void *user, const float *x, int32_t count, float *grad)
{
    struct ref_ctx *c = user;
    nn_net_train_pass(c->net, x, c->y, count, NN_BN_EVAL, NN_PASS_INPUT_GRAD, 0.0f, grad, NULL);
    return 0;
}

static void s_case(const char *model, int nw, int ns, const double *weights, uint32_t batch, int m,
                   float gamma)
{
    struct server_fixsched_cfg fc = {
        .batch = batch, .lr = LR, .gamma = gamma, .n_samples = 1u << 20, .steps = STEPS};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    nn_net_t *nets[MAXW];
    worker_nn_t *nns[MAXW];
    struct rec recs[MAXW];
    struct worker_compute cbs[MAXW];
    struct shares sh;
    memset(&sh, 0, sizeof sh);
    pthread_mutex_init(&sh.mu, NULL);
    struct worker_nn_source src = {.user = NULL, .read = eb_test_sample_read};
    struct worker_nn_cfg ncfg = {.micro_batch = m, .fgsm_epsilon = EPS, .init_seed = 3};
    for (int i = 0; i < nw; i++) {
        nets[i] = nn_zoo_new(model, C, H, W_, CLASSES, m, NULL);
        assert_non_null(nets[i]);
        nns[i] = worker_nn_new(nets[i], &src, &ncfg, NULL);
        assert_non_null(nns[i]);
        recs[i] = (struct rec){nns[i], worker_nn_compute(nns[i]), &sh};
        cbs[i] =
            (struct worker_compute){.user = &recs[i], .init = s_rec_init, .compute = s_rec_compute};
    }
    size_t np = nn_net_param_count(nets[0]), nb = nn_net_buffer_count(nets[0]);
    float *w = malloc(np * sizeof(float)), *b = malloc((nb + 1) * sizeof(float));
    struct cluster_embed_cfg cc = {
        .n_shards = ns,
        .n_workers = nw,
        .transport = "inproc",
        .where = model,
        .n_params = np,
        .n_buffers = nb,
        .momentum = MOMENTUM,
        .weight_decay = WD,
        .sched = &sched,
        .compute = cbs,
        .weights = weights,
        .checksum = RT_WIRE_CK_FLETCHER64,
    };
    if (cluster_embed_run(&cc, w, b, NULL))
        fail_msg("%s cluster: %s", model, rt_err_msg());

    /* the reference: one net, the same micro-batches in order */
    nn_net_t *ref = nn_zoo_new(model, C, H, W_, CLASSES, m, NULL);
    nn_net_init(ref, 3);
    float *mom = calloc(np, sizeof(float));
    float *x = malloc((size_t)m * C * H * W_ * sizeof(float));
    int32_t *y = malloc((size_t)m * sizeof(int32_t));
    worker_fgsm_t *fg = worker_fgsm_new(m, C * H * W_);
    struct ref_ctx rc = {ref, y};
    for (int t = 0; t < STEPS; t++) {
        assert_int_equal(sh.n[t], nw);
        uint32_t total = 0;
        for (int i = 0; i < nw; i++)
            total += sh.cnt[t][i];
        assert_int_equal(total, batch);
        nn_net_zero_grad(ref);
        for (uint32_t pos = 0; pos < batch;) {
            int i = 0;
            while (i < nw && !(sh.off[t][i] == pos && sh.cnt[t][i] > 0))
                i++;
            assert_true(i < nw);
            for (uint32_t k = 0; k < sh.cnt[t][i]; k += (uint32_t)m) {
                uint32_t n = sh.cnt[t][i] - k < (uint32_t)m ? sh.cnt[t][i] - k : (uint32_t)m;
                eb_test_sample_read(NULL, 0, (uint64_t)t * batch + pos + k, n, x, y);
                if (gamma > 0)
                    assert_int_equal(worker_fgsm_apply(fg, x, (int32_t)n, gamma, EPS,
                                                       WORKER_FGSM_RANGE_BATCH, s_ref_input_grad,
                                                       &rc, NULL),
                                     0);
                nn_net_train_pass(ref, x, y, (int)n, NN_BN_TRAIN,
                                  NN_PASS_PARAM_GRAD | NN_PASS_UPDATE_STATS,
                                  (float)n / (float)batch, NULL, NULL);
            }
            pos += sh.cnt[t][i];
        }
        nn_sgd_step(nn_net_params(ref), mom, nn_net_grads(ref), np, LR, MOMENTUM, WD);
    }
    const float *rw = nn_net_params(ref);
    double worst = 0;
    for (size_t j = 0; j < np; j++) {
        double r = eb_test_reldiff(w[j], rw[j], 1e-2);
        if (r > worst)
            worst = r;
    }
    if (worst > 1e-5)
        fail_msg("%s W=%d S=%d gamma=%g: worst relative weight difference %g", model, nw, ns,
                 (double)gamma, worst);
    /* the weights moved: the comparison is not between two untouched initialisations */
    nn_net_init(ref, 3);
    double moved = 0;
    for (size_t j = 0; j < np; j++)
        moved = fmax(moved, fabs((double)w[j] - nn_net_params(ref)[j]));
    assert_true(moved > 1e-4);
    worker_fgsm_destroy(&fg);
    free(x);
    free(y);
    free(mom);
    nn_net_destroy(&ref);
    for (int i = 0; i < nw; i++) {
        worker_nn_destroy(&nns[i]);
        nn_net_destroy(&nets[i]);
    }
    free(w);
    free(b);
    pthread_mutex_destroy(&sh.mu);
    server_fixsched_destroy(&sched);
}

static void test_mlp_equal_shares(void **state)
{
    (void)state;
    s_case("mlp", 2, 2, NULL, 20, 4, 0.0f);
}

static void test_cnn_unequal_shares(void **state)
{
    (void)state;
    static const double w[3] = {1, 2, 3};
    s_case("cnn", 3, 2, w, 24, 5, 0.0f);
}

static void test_mlp_fgsm(void **state)
{
    (void)state;
    static const double w[2] = {3, 1};
    s_case("mlp", 2, 3, w, 16, 4, 0.25f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_equal_shares),
        cmocka_unit_test(test_cnn_unequal_shares),
        cmocka_unit_test(test_mlp_fgsm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
