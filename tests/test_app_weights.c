/*
 * test_app_weights: a net's weights survive a safetensors round trip bit for bit (parameters and
 * BatchNorm running statistics), and loading names the missing, mis-shaped or unexpected tensor.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_weights.h"
#include "nn_net.h"
#include "rt_err.h"
#include "rt_safetensors.h"

/* Fill parameters and buffers with seeded values (running_var kept positive). */
static void s_randomise(nn_net_t *net, unsigned long long seed)
{
    struct nn_rng r;
    nn_rng_seed(&r, seed);
    float *p = nn_net_params(net), *b = nn_net_buffers(net);
    for (size_t i = 0; i < nn_net_param_count(net); i++)
        p[i] = nn_rng_normal(&r);
    for (size_t i = 0; i < nn_net_buffer_count(net); i++)
        b[i] = 0.5f + nn_rng_uniform(&r);
}

/* Write net's tensors to path, leaving out `skip` (may be NULL) and adding `extra` (may be NULL,
 * an I32 scalar). */
static void s_write_variant(nn_net_t *net, const char *path, const char *skip, const char *extra)
{
    int n = nn_net_tensor_count(net);
    struct rt_st_tensor *d = calloc((size_t)n + 1, sizeof *d);
    int k = 0;
    static const int32_t one = 1;
    for (int i = 0; i < n; i++) {
        const struct nn_tensor_info *t = nn_net_tensor(net, i);
        if (skip && !strcmp(t->name, skip))
            continue;
        d[k].name = t->name;
        d[k].ndim = t->ndim;
        for (int j = 0; j < t->ndim; j++)
            d[k].shape[j] = t->shape[j];
        d[k].data =
            (t->kind == NN_TENSOR_PARAM ? nn_net_params(net) : nn_net_buffers(net)) + t->offset;
        k++;
    }
    if (extra) {
        d[k].name = extra;
        d[k].dtype = RT_ST_I32;
        d[k].ndim = 0;
        d[k].data = &one;
        k++;
    }
    if (rt_st_write(path, d, k, NULL))
        fail_msg("%s", rt_err_msg());
    free(d);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    int err = 0;
    nn_net_t *a = nn_zoo_new("resnet20", 3, 8, 8, 7, 2, &err);
    nn_net_t *b = nn_zoo_new("resnet20", 3, 8, 8, 7, 2, &err);
    assert_true(a && b);
    s_randomise(a, 1);
    s_randomise(b, 2);
    const char *meta[] = {"model", "resnet20", NULL};
    assert_int_equal(app_weights_save_meta(a, path, meta), 0);
    assert_int_equal(app_weights_load(b, path), 0);
    assert_memory_equal(nn_net_params(a), nn_net_params(b), nn_net_param_count(a) * sizeof(float));
    assert_memory_equal(nn_net_buffers(a), nn_net_buffers(b),
                        nn_net_buffer_count(a) * sizeof(float));

    /* Every named tensor is in the file with the net's name and shape, and the metadata. */
    rt_st_t *st = NULL;
    assert_int_equal(rt_st_open(path, &st), 0);
    assert_int_equal(rt_st_count(st), nn_net_tensor_count(a));
    assert_string_equal(rt_st_meta(st, "format"), "pt");
    assert_string_equal(rt_st_meta(st, "model"), "resnet20");
    const struct rt_st_info *fc = rt_st_find(st, "fc.weight");
    assert_non_null(fc);
    assert_int_equal(fc->ndim, 2);
    assert_int_equal(fc->shape[0], 7);
    assert_int_equal(fc->shape[1], 64);
    assert_non_null(rt_st_find(st, "layers.3.sc.1.running_var"));
    rt_st_close(&st);
    nn_net_destroy(&a);
    nn_net_destroy(&b);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_errors_name_the_tensor(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    int err = 0;
    nn_net_t *cnn8 = nn_zoo_new("cnn", 1, 8, 8, 10, 2, &err);
    nn_net_t *cnn12 = nn_zoo_new("cnn", 1, 12, 12, 10, 2, &err);
    nn_net_t *mlp = nn_zoo_new("mlp", 1, 8, 8, 10, 2, &err);
    assert_true(cnn8 && cnn12 && mlp);

    /* Same model, other input size: f1's input width differs. */
    assert_int_equal(app_weights_save(cnn8, path), 0);
    assert_int_equal(app_weights_load(cnn12, path), RT_ERR_SHAPE);
    assert_non_null(strstr(rt_err_msg(), "'f1.weight'"));
    assert_non_null(strstr(rt_err_msg(), path));

    /* A missing tensor. */
    s_write_variant(cnn8, path, "b2.running_var", NULL);
    assert_int_equal(app_weights_load(cnn8, path), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), "'b2.running_var' is missing"));

    /* PyTorch's step counters are ignored; any other stranger is an error. */
    s_write_variant(cnn8, path, NULL, "b1.num_batches_tracked");
    assert_int_equal(app_weights_load(cnn8, path), 0);
    s_write_variant(cnn8, path, NULL, "head.weight");
    assert_int_equal(app_weights_load(cnn8, path), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "unexpected tensor 'head.weight'"));

    /* Another model's weights. */
    assert_int_equal(app_weights_save(mlp, path), 0);
    assert_true(app_weights_load(cnn8, path) < 0);
    nn_net_destroy(&cnn8);
    nn_net_destroy(&cnn12);
    nn_net_destroy(&mlp);
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_errors_name_the_tensor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
