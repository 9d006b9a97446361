/*
 * test_nn_backend: the CPU-testable parts of device selection and planning: device strings,
 * the refusal of CUDA with a one-line reason when it cannot be had (this build or this machine),
 * splitting a worker's share over several devices, the memory plan and its error (and what the
 * CUDA backend's plan adds: cuDNN's workspace, layout copies, staging), and a net that
 * goes through the CPU backend's table giving the same numbers as before (moving it to "cpu" is a
 * no-op and nn_net_sync does nothing).
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_backend.h"
#include "nn_net.h"

static void test_parse(void **state)
{
    (void)state;
    int idx = 99;
    assert_int_equal(nn_backend_parse("cpu", &idx), NN_OK);
    assert_int_equal(idx, -1);
    assert_int_equal(nn_backend_parse("cuda", &idx), NN_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(nn_backend_parse("cuda:3", &idx), NN_OK);
    assert_int_equal(idx, 3);
    const char *bad[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "CPU", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(nn_backend_parse(bad[i], &idx), NN_ERR_ARG);
    const struct nn_backend_ops *be = NULL;
    assert_int_equal(nn_backend_get("cpu", &be), NN_OK);
    assert_ptr_equal(be, nn_backend_cpu());
    assert_int_equal(nn_backend_get("tpu", &be), NN_ERR_ARG);
    assert_non_null(strstr(nn_backend_why(), "unknown device 'tpu'"));
}

/* Without CUDA (or without a device) asking for it fails with one line saying why. */
static void test_cuda_refused(void **state)
{
    (void)state;
    const struct nn_backend_ops *be = NULL;
    int rc = nn_backend_get("cuda:1000", &be);
    assert_int_equal(rc, NN_ERR_ARG);
    const char *why = nn_backend_why();
    assert_true(strlen(why) > 10 && !strchr(why, '\n'));
#ifndef EB_HAVE_CUDA
    assert_non_null(strstr(why, "built without CUDA"));
    assert_int_equal(nn_backend_get("cuda", &be), NN_ERR_ARG);
    nn_net_t *net = nn_zoo_new("mlp", 1, 8, 8, 10, 4, NULL);
    assert_non_null(net);
    assert_int_equal(nn_net_to_backend(net, "cuda", "mlp"), NN_ERR_ARG);
    assert_string_equal(nn_net_backend_name(net), "cpu");
    nn_net_destroy(&net);
#endif
}

static void test_split(void **state)
{
    (void)state;
    long out[8];
    assert_int_equal(nn_backend_split(10, 4, out), NN_OK);
    long want[4] = {3, 3, 2, 2};
    for (int d = 0; d < 4; d++)
        assert_int_equal(out[d], want[d]);
    for (long share = 0; share < 40; share++)
        for (int dev = 1; dev <= 8; dev++) {
            assert_int_equal(nn_backend_split(share, dev, out), NN_OK);
            long sum = 0;
            for (int d = 0; d < dev; d++) {
                sum += out[d];
                assert_true(out[d] == share / dev || out[d] == share / dev + 1);
                assert_true(d == 0 || out[d] <= out[d - 1]);
            }
            assert_int_equal(sum, share);
        }
    assert_int_equal(nn_backend_split(5, 0, out), NN_ERR_ARG);
    assert_int_equal(nn_backend_split(-1, 2, out), NN_ERR_ARG);
}

static void test_mem_plan(void **state)
{
    (void)state;
    struct nn_mem_plan p;
    nn_mem_plan(1000, 10, 500, 128, 4096, &p);
    assert_int_equal(p.params, (5 * 1000 + 10) * 4);
    assert_int_equal(p.activations, 4 * 500 * 128 * 4);
    assert_int_equal(p.workspace, 4096);
    assert_int_equal(p.total, p.params + p.activations + p.workspace);
    char msg[512];
    assert_int_equal(nn_mem_plan_check(&p, p.total, "cnn", 128, msg, sizeof msg), NN_OK);
    assert_int_equal(nn_mem_plan_check(&p, p.total - 1, "resnet50", 128, msg, sizeof msg),
                     NN_ERR_NOMEM);
    assert_non_null(strstr(msg, "resnet50"));
    assert_non_null(strstr(msg, "micro-batch 128"));
    char bytes[32];
    snprintf(bytes, sizeof bytes, "%zu bytes", p.total);
    assert_non_null(strstr(msg, bytes));
}

/* What the CUDA backend's plan counts beyond the tensors, by hand for resnet20 at 3x32x32 and
 * batch 16: cuDNN's workspace cap (1 GiB), packed copies of the largest conv's input and output
 * (layers.0: 16x32x32 in and out; none for a forward-only net), BatchNorm's partial sums for 64
 * channels (64 parts x 5 sums of doubles each) and the input's staging. 0 without CUDA. */
static void test_cuda_scratch_plan(void **state)
{
    (void)state;
    const int b = 16;
    nn_net_t *net = nn_zoo_new("resnet20", 3, 32, 32, 10, b, NULL);
    nn_net_t *fwd = nn_zoo_new_flags("resnet20", 3, 32, 32, 10, b, NN_NET_FORWARD_ONLY, NULL);
    assert_non_null(net);
    assert_non_null(fwd);
    const size_t ws = (size_t)1 << 30, pack = 2 * (size_t)16 * 32 * 32 * b * sizeof(float);
    const size_t bn = 64 * 64 * 5 * sizeof(double), stage = (size_t)3 * 32 * 32 * b * sizeof(float);
#ifdef EB_HAVE_CUDA
    if (getenv("EB_CUDNN_WORKSPACE_MB"))
        skip(); /* the cap is the variable's */
    assert_int_equal(nn_net_cuda_scratch(net), ws + pack + bn + stage);
    assert_int_equal(nn_net_cuda_scratch(fwd), ws + bn + stage);
#else
    (void)ws, (void)pack, (void)bn, (void)stage;
    assert_int_equal(nn_net_cuda_scratch(net), 0);
#endif
    nn_net_destroy(&net);
    nn_net_destroy(&fwd);
}

/* The CPU backend's table drives the passes: a net "moved" to cpu computes what it did. */
static void test_cpu_backend_net(void **state)
{
    (void)state;
    const int n = 3, d = 8 * 8;
    nn_net_t *net = nn_zoo_new("cnn", 1, 8, 8, 10, n, NULL);
    assert_non_null(net);
    float x[3 * 64];
    int32_t labels[3] = {2, 5, 9};
    for (int i = 0; i < n * d; i++)
        x[i] = (float)((i * 37) % 17) / 17.0f;
    nn_net_zero_grad(net);
    float l0 =
        nn_net_train_pass(net, x, labels, n, NN_BN_TRAIN, NN_PASS_PARAM_GRAD, 1.0f, NULL, NULL);
    size_t np = nn_net_param_count(net);
    float *g0 = malloc(np * 4);
    memcpy(g0, nn_net_grads(net), np * 4);
    assert_int_equal(nn_net_to_backend(net, "cpu", "cnn"), NN_OK);
    assert_string_equal(nn_net_backend_name(net), "cpu");
    assert_int_equal(nn_net_sync(net, NN_SYNC_GRADS_TO_HOST | NN_SYNC_PARAMS_TO_DEVICE), NN_OK);
    nn_net_zero_grad(net);
    float l1 =
        nn_net_train_pass(net, x, labels, n, NN_BN_TRAIN, NN_PASS_PARAM_GRAD, 1.0f, NULL, NULL);
    assert_true(isfinite(l0) && l0 == l1);
    assert_memory_equal(g0, nn_net_grads(net), np * 4);
    assert_true(nn_net_act_floats(net) > (size_t)d);
    free(g0);
    nn_net_destroy(&net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),           cmocka_unit_test(test_cuda_refused),
        cmocka_unit_test(test_split),           cmocka_unit_test(test_mem_plan),
        cmocka_unit_test(test_cpu_backend_net), cmocka_unit_test(test_cuda_scratch_plan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
