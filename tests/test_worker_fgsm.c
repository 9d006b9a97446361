/*
 * test_worker_fgsm: FGSM on a micro-batch with a loss whose input gradient is known (a linear
 * loss w . x per sample): the count ceil(gamma * m), the sign step, clamping to the micro-batch's
 * (or the perturbed samples') range, untouched clean samples, callback errors, bad arguments.
 */
#include "eb_test.h"

#include <math.h>
#include <string.h>

#include "rt_err.h"
#include "worker_fgsm.h"

#define LEN 5 /* floats per sample */
#define M 8   /* samples per micro-batch */

/* The linear loss and what the callback saw. */
struct lin {
    float w[LEN];   /* dL/dx of every sample */
    int calls;      /* callback calls */
    int32_t count;  /* count passed */
    const float *x; /* x passed */
    int fail;       /* return this code when non-zero */
};

static int s_grad(void *user, const float *x, int32_t count, float *grad)
{
    struct lin *l = user;
    l->calls++;
    l->count = count;
    l->x = x;
    if (l->fail)
        return l->fail;
    for (int32_t i = 0; i < count; i++)
        memcpy(grad + (size_t)i * LEN, l->w, sizeof l->w);
    return 0;
}

static void s_batch(float *x)
{
    for (int i = 0; i < M * LEN; i++)
        x[i] = (float)((i * 7) % 11) / 10.0f; /* values in [0, 1] */
    x[LEN * 6 + 2] = -1.0f;                   /* extremes in clean samples */
    x[LEN * 7 + 4] = 2.0f;
}

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(worker_fgsm_count(0.2, 128), 26);
    assert_int_equal(worker_fgsm_count(0.1, 128), 13);
    assert_int_equal(worker_fgsm_count(0.3, 10), 3);
    assert_int_equal(worker_fgsm_count(0.25, 128), 32);
    assert_int_equal(worker_fgsm_count(1e-6, 128), 1);
    assert_int_equal(worker_fgsm_count(1.0, 128), 128);
    assert_int_equal(worker_fgsm_count(3.0, 128), 128);
    assert_int_equal(worker_fgsm_count(0.0, 128), 0);
    assert_int_equal(worker_fgsm_count(-0.5, 128), 0);
    assert_int_equal(worker_fgsm_count(NAN, 128), 0);
    assert_int_equal(worker_fgsm_count(0.5, 0), 0);
}

static void test_sign_step_and_clamp(void **state)
{
    (void)state;
    worker_fgsm_t *f = worker_fgsm_new(M, LEN);
    assert_non_null(f);
    struct lin l = {.w = {1.0f, -2.0f, 0.0f, 0.5f, -0.1f}};
    float x[M * LEN], x0[M * LEN];
    s_batch(x);
    memcpy(x0, x, sizeof x);
    int32_t n = -1;
    const double eps = 1.5; /* large enough to hit both ends of the range */
    assert_int_equal(worker_fgsm_apply(f, x, M, 0.3, eps, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
                     RT_OK);
    assert_int_equal(n, 3);
    assert_int_equal(l.calls, 1);
    assert_int_equal(l.count, 3);
    assert_ptr_equal(l.x, x);
    for (int s = 0; s < M; s++)
        for (int j = 0; j < LEN; j++) {
            float v = x0[s * LEN + j], want = v;
            if (s < 3) {
                float sg = l.w[j] > 0 ? 1.0f : (l.w[j] < 0 ? -1.0f : 0.0f);
                want = fminf(fmaxf(v + (float)eps * sg, -1.0f), 2.0f);
            }
            assert_true(x[s * LEN + j] == want);
        }
    /* the clamps were reached: +1.5 on a value >= 0.5 hits 2, -1.5 on a value <= 0.5 hits -1 */
    int at_hi = 0, at_lo = 0;
    for (int i = 0; i < 3 * LEN; i++) {
        at_hi += x[i] == 2.0f;
        at_lo += x[i] == -1.0f;
    }
    assert_true(at_hi > 0 && at_lo > 0);
    worker_fgsm_destroy(&f);
    assert_null(f);
    worker_fgsm_destroy(&f);
}

/* RANGE_ADV clamps to the perturbed samples' own range (here [0, 1]), not the batch's [-1, 2]. */
static void test_range_of_adversarial_samples(void **state)
{
    (void)state;
    worker_fgsm_t *f = worker_fgsm_new(M, LEN);
    assert_non_null(f);
    struct lin l = {.w = {1.0f, -1.0f, 1.0f, -1.0f, 1.0f}};
    float x[M * LEN], x0[M * LEN];
    s_batch(x);
    memcpy(x0, x, sizeof x);
    float lo = x0[0], hi = x0[0];
    for (int i = 0; i < 2 * LEN; i++) {
        lo = fminf(lo, x0[i]);
        hi = fmaxf(hi, x0[i]);
    }
    assert_int_equal(
        worker_fgsm_apply(f, x, M, 0.25, 0.75, WORKER_FGSM_RANGE_ADV, s_grad, &l, NULL), RT_OK);
    for (int i = 0; i < 2 * LEN; i++) {
        float want = fminf(fmaxf(x0[i] + 0.75f * (l.w[i % LEN] > 0 ? 1.0f : -1.0f), lo), hi);
        assert_true(x[i] == want);
        assert_true(x[i] >= lo && x[i] <= hi);
    }
    assert_memory_equal(x + 2 * LEN, x0 + 2 * LEN, (M - 2) * LEN * sizeof(float));
    worker_fgsm_destroy(&f);
}

static void test_errors_and_no_op(void **state)
{
    (void)state;
    worker_fgsm_t *f = worker_fgsm_new(M, LEN);
    assert_non_null(f);
    struct lin l = {.w = {1, 1, 1, 1, 1}};
    float x[M * LEN], x0[M * LEN];
    s_batch(x);
    memcpy(x0, x, sizeof x);
    int32_t n = -1;
    /* gamma 0: nothing to do, the net is not run */
    assert_int_equal(worker_fgsm_apply(f, x, M, 0.0, 0.01, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
                     RT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(l.calls, 0);
    /* the callback's error comes back and x is unchanged */
    l.fail = RT_ERR_SHAPE;
    assert_int_equal(worker_fgsm_apply(f, x, M, 0.5, 0.01, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
                     RT_ERR_SHAPE);
    assert_memory_equal(x, x0, sizeof x);
    l.fail = 0;
    /* bad arguments */
    assert_int_equal(
        worker_fgsm_apply(f, x, M + 1, 0.5, 0.01, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
        RT_ERR_ARG);
    assert_non_null(strstr(rt_err_msg(), "9 samples"));
    assert_int_equal(worker_fgsm_apply(f, x, M, 0.5, NAN, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
                     RT_ERR_ARG);
    assert_int_equal(worker_fgsm_apply(f, x, M, 0.5, -0.1, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
                     RT_ERR_ARG);
    assert_int_equal(
        worker_fgsm_apply(f, x, M, INFINITY, 0.1, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
        RT_ERR_ARG);
    assert_memory_equal(x, x0, sizeof x);
    /* a partial micro-batch: ceil(0.5 * 3) = 2 */
    assert_int_equal(worker_fgsm_apply(f, x, 3, 0.5, 0.01, WORKER_FGSM_RANGE_BATCH, s_grad, &l, &n),
                     RT_OK);
    assert_int_equal(n, 2);
    assert_null(worker_fgsm_new(0, LEN));
    assert_null(worker_fgsm_new(M, 0));
    worker_fgsm_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_sign_step_and_clamp),
        cmocka_unit_test(test_range_of_adversarial_samples),
        cmocka_unit_test(test_errors_and_no_op),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
