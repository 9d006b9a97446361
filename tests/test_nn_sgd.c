/*
 * test_nn_sgd: SGD with momentum and weight decay against a hand computation of PyTorch's rule
 * (buf = mu*buf + g + wd*w; w -= lr*buf), and the vectorised/threaded path against the scalar rule.
 */
#include "eb_test.h"

#include <math.h>
#include <stdlib.h>

#include "nn_net.h"

static void test_two_steps_by_hand(void **state)
{
    (void)state;
    float w[2] = {1.0f, -2.0f}, buf[2] = {0.0f, 0.0f};
    const float g1[2] = {0.5f, 0.1f}, g2[2] = {0.2f, -0.3f};
    nn_sgd_step(w, buf, g1, 2, 0.1f, 0.9f, 0.01f);
    /* d = g + 0.01 w = (0.51, 0.08); buf = d; w = (0.949, -2.008) */
    assert_true(fabsf(buf[0] - 0.51f) < 1e-6f && fabsf(buf[1] - 0.08f) < 1e-6f);
    assert_true(fabsf(w[0] - 0.949f) < 1e-6f && fabsf(w[1] + 2.008f) < 1e-6f);
    nn_sgd_step(w, buf, g2, 2, 0.1f, 0.9f, 0.01f);
    /* d = (0.20949, -0.32008); buf = 0.9 (0.51, 0.08) + d = (0.66849, -0.24808) */
    assert_true(fabsf(buf[0] - 0.66849f) < 1e-6f && fabsf(buf[1] + 0.24808f) < 1e-6f);
    assert_true(fabsf(w[0] - 0.882151f) < 1e-6f && fabsf(w[1] + 1.983192f) < 1e-6f);
}

static void test_plain_sgd_without_momentum(void **state)
{
    (void)state;
    float w[1] = {3.0f}, buf[1] = {0.0f};
    const float g[1] = {1.0f};
    nn_sgd_step(w, buf, g, 1, 0.5f, 0.0f, 0.0f);
    nn_sgd_step(w, buf, g, 1, 0.5f, 0.0f, 0.0f);
    assert_true(fabsf(w[0] - 2.0f) < 1e-7f);
}

static void test_large_vector_matches_scalar_rule(void **state)
{
    (void)state;
    const size_t n = 1000003; /* above the threaded threshold, odd length */
    float *w = malloc(n * sizeof *w), *buf = malloc(n * sizeof *buf), *g = malloc(n * sizeof *g);
    assert_true(w && buf && g);
    struct nn_rng rng;
    nn_rng_seed(&rng, 3);
    for (size_t i = 0; i < n; i++) {
        w[i] = nn_rng_normal(&rng);
        buf[i] = nn_rng_normal(&rng);
        g[i] = nn_rng_normal(&rng);
    }
    size_t probe[3] = {0, n / 2, n - 1};
    float w0[3], b0[3];
    for (int j = 0; j < 3; j++) {
        w0[j] = w[probe[j]];
        b0[j] = buf[probe[j]];
    }
    nn_set_threads(2);
    nn_sgd_step(w, buf, g, n, 0.05f, 0.9f, 5e-4f);
    nn_set_threads(1);
    for (int j = 0; j < 3; j++) {
        size_t i = probe[j];
        double b = 0.9 * b0[j] + g[i] + 5e-4 * w0[j];
        assert_true(fabs(buf[i] - b) < 1e-5);
        assert_true(fabs(w[i] - (w0[j] - 0.05 * b)) < 1e-5);
    }
    free(w);
    free(buf);
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_steps_by_hand),
        cmocka_unit_test(test_plain_sgd_without_momentum),
        cmocka_unit_test(test_large_vector_matches_scalar_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
