/*
 * test_worker_devices: one worker on several devices (worker.devices). What needs no GPU:
 *   - the option: worker.devices [2] is "cuda:2" alone; [1, 1] is refused (a repeated device);
 *     several devices in a build without NCCL are refused with one line naming NCCL; unset, the
 *     worker's one device is worker.device;
 *   - the split and the reduction: the NN compute over D = 3 replicas (on the CPU: the same
 *     threads, rounds, reads and nn_group reduction as on GPUs, with a host sum in place of
 *     NCCL's) gives, for shares that are not multiples of D micro-batches, the gradient (within
 *     1e-5 relative: only the summation order differs), the mean loss (1e-6) and the number of
 *     correctly classified samples of one net walking the same micro-batches, with and without
 *     FGSM samples; the replicas' BatchNorm running statistics come back as their mean, which
 *     moved from the pulled values;
 *   - a replica group refuses fewer than two nets and two nets of different models.
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app_opts.h"
#include "nn_backend.h"
#include "nn_net.h"
#include "rt_err.h"
#include "worker_nn.h"

#define C 1
#define H 8
#define W_ 8
#define CLASSES 4
enum { S_SAMPLE = C * H * W_ }; /* floats of one sample */
_Static_assert(S_SAMPLE == EB_TEST_SAMPLE_FLOATS && CLASSES == EB_TEST_SAMPLE_CLASSES,
               "the samples of eb_test_sample_read");
#define M 8 /* micro-batch */
#define D 3 /* replicas */
#define EPS 0.01
#define WHY_MAX 256

/* Prefetch records the ranges announced, to check the order matches the reads. */
struct announced {
    uint64_t first[64];
    int n;
};

static int s_prefetch(void *user, uint64_t epoch, uint64_t first, uint32_t n)
{
    (void)epoch;
    (void)n;
    struct announced *a = user;
    if (a->n < 64)
        a->first[a->n++] = first;
    return 0;
}

struct result {
    float *grads, *buffers;
    uint32_t samples, correct;
    float loss;
};

/* One step of `share` samples with `reps` nets of `model` (1: the plain path). */
static void s_step(const char *model, int reps, uint32_t share, float gamma, struct result *res)
{
    nn_net_t *nets[D];
    for (int d = 0; d < reps; d++) {
        nets[d] = nn_zoo_new(model, C, H, W_, CLASSES, M, NULL);
        assert_non_null(nets[d]);
    }
    struct announced ann = {.n = 0};
    struct worker_nn_source src = {
        .user = &ann, .read = eb_test_sample_read, .prefetch = s_prefetch};
    struct worker_nn_cfg cfg = {.micro_batch = M,
                                .fgsm_epsilon = EPS,
                                .init_seed = 3,
                                .replicas = nets + 1,
                                .n_replicas = reps - 1};
    int err = 0;
    worker_nn_t *nn = worker_nn_new(nets[0], &src, &cfg, &err);
    if (!nn)
        fail_msg("worker_nn_new: %s", rt_err_msg());
    size_t np = nn_net_param_count(nets[0]), nb = nn_net_buffer_count(nets[0]);
    float *params = malloc(np * sizeof(float)), *buf0 = malloc((nb + 1) * sizeof(float));
    res->grads = malloc(np * sizeof(float));
    res->buffers = malloc((nb + 1) * sizeof(float));
    struct worker_compute wc = worker_nn_compute(nn);
    assert_int_equal(wc.init(wc.user, params, res->buffers), 0);
    memcpy(buf0, res->buffers, nb * sizeof(float));
    struct worker_step st = {.step = 5,
                             .epoch = 2,
                             .epoch_offset = 1000,
                             .batch = share + 7,
                             .samples = share + 7,
                             .lr = 0.1f,
                             .gamma = gamma,
                             .share_offset = 7,
                             .share_count = share,
                             .worker = 0,
                             .n_workers = 2};
    assert_int_equal(
        wc.compute(wc.user, &st, params, res->grads, res->buffers, &res->samples, &res->loss), 0);
    worker_nn_last(nn, &res->samples, &res->correct, &res->loss);
    /* the reads were announced in order: micro-batch k at share position k * M */
    assert_int_equal(ann.n, (int)((share + M - 1) / M));
    for (int k = 0; k < ann.n; k++)
        assert_int_equal(ann.first[k], 1000 + 7 + (uint64_t)k * M);
    if (nb) { /* the running statistics moved */
        double moved = 0;
        for (size_t j = 0; j < nb; j++)
            moved = fmax(moved, fabs((double)res->buffers[j] - buf0[j]));
        assert_true(moved > 1e-4);
    }
    worker_nn_destroy(&nn);
    for (int d = 0; d < reps; d++)
        nn_net_destroy(&nets[d]);
    free(params);
    free(buf0);
}

static void s_compare(const char *model, uint32_t share, float gamma)
{
    struct result one, many;
    s_step(model, 1, share, gamma, &one);
    s_step(model, D, share, gamma, &many);
    nn_net_t *probe = nn_zoo_new(model, C, H, W_, CLASSES, M, NULL);
    size_t np = nn_net_param_count(probe);
    nn_net_destroy(&probe);
    double d = 0, nr = 0;
    for (size_t j = 0; j < np; j++) {
        d += ((double)many.grads[j] - one.grads[j]) * ((double)many.grads[j] - one.grads[j]);
        nr += (double)one.grads[j] * one.grads[j];
    }
    assert_true(nr > 0);
    if (sqrt(d / nr) > 1e-5)
        fail_msg("%s share %u gamma %g: gradient differs by %g", model, share, (double)gamma,
                 sqrt(d / nr));
    assert_int_equal(many.samples, one.samples);
    assert_int_equal(many.correct, one.correct);
    assert_true(fabs((double)many.loss - one.loss) <= 1e-6 * fabs((double)one.loss));
    free(one.grads);
    free(one.buffers);
    free(many.grads);
    free(many.buffers);
}

static void test_split_and_sum(void **state)
{
    (void)state;
    s_compare("mlp", 50, 0.0f);  /* 7 micro-batches over 3 replicas, the last partial */
    s_compare("mlp", 8, 0.0f);   /* one micro-batch: two replicas idle */
    s_compare("cnn", 41, 0.0f);  /* BatchNorm */
    s_compare("mlp", 33, 0.25f); /* FGSM samples in each micro-batch */
}

static void test_empty_share(void **state)
{
    (void)state;
    struct result many;
    s_step("mlp", D, 0, 0.0f, &many);
    assert_int_equal(many.samples, 0);
    free(many.grads);
    free(many.buffers);
}

static void test_group_refusals(void **state)
{
    (void)state;
    char why[WHY_MAX];
    nn_group_t *g = NULL;
    nn_net_t *a = nn_zoo_new("mlp", C, H, W_, CLASSES, M, NULL);
    nn_net_t *b = nn_zoo_new("cnn", C, H, W_, CLASSES, M, NULL);
    nn_net_t *pair[2] = {a, b};
    assert_int_equal(nn_group_new(pair, 1, why, sizeof why, &g), NN_ERR_ARG);
    assert_null(g);
    assert_int_equal(nn_group_new(pair, 2, why, sizeof why, &g), NN_ERR_ARG);
    assert_non_null(strstr(why, "not the same model"));
    assert_null(g);
    nn_net_destroy(&a);
    nn_net_destroy(&b);
}

/* Parse argv with the option table alone and resolve the worker's devices. */
static int s_devices(int argc, char **argv, char (*names)[APP_DEVICE_NAME_MAX], int *n)
{
    struct app_opts o;
    memset(&o, 0, sizeof o);
    rt_config_t *cfg = NULL;
    if (rt_opt_parse(app_opts_table, app_opts_count, &o, argc, argv, &cfg))
        fail_msg("parse failed: %s", rt_err_msg());
    int rc = app_opts_worker_devices(&o, names, APP_MAX_DEVICES, n);
    rt_config_destroy(&cfg);
    return rc;
}

static void test_option(void **state)
{
    (void)state;
    char names[APP_MAX_DEVICES][APP_DEVICE_NAME_MAX];
    int n = 0;
    char *one[] = {"worker", "--devices", "2", NULL};
    assert_int_equal(s_devices(3, one, names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "cuda:2");
    char *twice[] = {"worker", "--devices", "1,1", NULL};
    assert_int_equal(s_devices(3, twice, names, &n), RT_ERR_CONFIG);
    assert_non_null(strstr(rt_err_msg(), "listed twice"));
    char *none[] = {"worker", "--device", "cuda:1", NULL};
    assert_int_equal(s_devices(3, none, names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "cuda:1");
    char *four[] = {"worker", "--set", "worker.devices=[0, 1, 2, 3]", NULL};
    int rc = s_devices(3, four, names, &n);
    if (nn_backend_have_nccl()) {
        assert_int_equal(rc, 0);
        assert_int_equal(n, 4);
        assert_string_equal(names[3], "cuda:3");
    } else {
        assert_int_equal(rc, RT_ERR_CONFIG);
        assert_non_null(strstr(rt_err_msg(), "NCCL"));
        assert_null(strchr(rt_err_msg(), '\n'));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_and_sum),
        cmocka_unit_test(test_empty_share),
        cmocka_unit_test(test_group_refusals),
        cmocka_unit_test(test_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
