/*
 * test_ckpt_workers: resuming with three workers. The shards sum the workers' gradients in the
 * order they arrive; a float sum of two terms does not depend on it, of three it does, so with
 * three workers even two straight runs differ in the last bits (which training amplifies a
 * little), and bitwise equality cannot be asked of a resumed run. It must stay within a tight
 * tolerance of a straight one, after a `resume` event naming the checkpoint of epoch E1 and
 * training only the epochs after it. (One or two workers: bitwise, see test_ckpt_train.)
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_test_ckpt.h"
#include "rt_safetensors.h"

#define THREE_TOL 1e-3 /* relative difference (floor 1e-3) allowed with three workers */

static struct eb_ckpt_fixture s_f; /* the tiny dataset and the configuration */

/* Largest relative difference (floor 1e-3) between the float tensors of two weights files. */
static double s_max_reldiff(const char *pa, const char *pb)
{
    rt_st_t *a = NULL, *b = NULL;
    assert_int_equal(rt_st_open(pa, &a), 0);
    assert_int_equal(rt_st_open(pb, &b), 0);
    assert_int_equal(rt_st_count(a), rt_st_count(b));
    double worst = 0;
    for (int i = 0; i < rt_st_count(a); i++) {
        const struct rt_st_info *x = rt_st_at(a, i), *y = rt_st_find(b, x->name);
        assert_non_null(y);
        assert_int_equal(x->numel, y->numel);
        if (x->dtype != RT_ST_F32)
            continue;
        for (size_t k = 0; k < x->numel; k++) {
            float u, v;
            memcpy(&u, (const char *)x->data + k * sizeof u, sizeof u);
            memcpy(&v, (const char *)y->data + k * sizeof v, sizeof v);
            double d = eb_test_reldiff(u, v, 1e-3);
            worst = d > worst ? d : worst;
        }
    }
    rt_st_close(&a);
    rt_st_close(&b);
    return worst;
}

/* Straight vs. stopped after EB_CKPT_SPLIT epochs and resumed, three workers. */
static void test_three_workers(void **state)
{
    (void)state;
    char a[4300], b[4300], wa[4400], wb[4400], extra[4400];
    snprintf(a, sizeof a, "%s/three-straight", s_f.tmp);
    snprintf(b, sizeof b, "%s/three-resumed", s_f.tmp);
    eb_ckpt_run_ok(&s_f, "train", a, "--set cluster.workers=3");
    snprintf(extra, sizeof extra, "--set cluster.workers=3 --set schedule.epochs=%d",
             EB_CKPT_SPLIT);
    eb_ckpt_run_ok(&s_f, "train", b, extra);
    struct eb_ckpt_point from;
    eb_ckpt_newest(b, &from);
    assert_int_equal(from.epoch, EB_CKPT_SPLIT);
    eb_ckpt_run_ok(&s_f, "train", b, "--set cluster.workers=3 --resume auto");
    /* it did resume (a fresh start would end near the same weights too) */
    eb_ckpt_assert_resumed(b, &from, EB_CKPT_EPOCHS);
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    snprintf(wb, sizeof wb, "%s/weights.safetensors", b);
    double d = s_max_reldiff(wa, wb);
    if (d > THREE_TOL)
        fprintf(stderr, "three workers: resumed and straight differ by %g\n", d);
    assert_true(d <= THREE_TOL);
}

static int s_setup(void **state)
{
    (void)state;
    eb_ckpt_setup(&s_f);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    eb_ckpt_teardown(&s_f);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_three_workers),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
