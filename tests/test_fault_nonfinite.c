/*
 * test_fault_nonfinite: nothing non-finite is applied silently. A NaN or infinite push is
 * rejected by the shards (test_fault_reject); finite pushes whose weighted sum overflows (worker 1
 * writes +-3e38 into its gradient at one step) stop the shards with an error naming the step,
 * before that step becomes a version anyone can pull: the run ends non-zero instead of finishing
 * with infinite weights. A zoo worker whose loss is not finite stops without pushing, with an
 * error naming the step; `train` exits non-zero.
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cluster_embed.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "server_fixsched.h"
#include "worker_synth.h"

#define P 64       /* parameters of the synthetic model */
#define BAD_STEP 2 /* the step whose gradient worker 1 spoils */
#define STEPS 6    /* steps of the run */

struct s_bad {
    struct worker_synth m; /* the honest computation */
    float value;           /* what worker 1 writes into its gradient at BAD_STEP (finite) */
};

static int s_compute(void *user, const struct worker_step *st, const float *params, float *grads,
                     float *buffers, uint32_t *samples, float *loss)
{
    struct s_bad *b = user;
    struct worker_compute c = worker_synth_compute(&b->m);
    int rc = c.compute(c.user, st, params, grads, buffers, samples, loss);
    if (!rc && st->worker == 1 && st->step == BAD_STEP)
        grads[P / 2] = b->value;
    return rc;
}

static int s_init(void *user, float *params, float *buffers)
{
    struct s_bad *b = user;
    worker_synth_initial(&b->m, params, buffers);
    return 0;
}

/* Two shards and two workers as threads; worker 1 writes value into its gradient at BAD_STEP. */
static int s_run(float value, uint64_t *steps)
{
    struct s_bad b[2];
    memset(b, 0, sizeof b);
    struct worker_compute cb[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(worker_synth_init(&b[i].m, 5, P, 0), 0);
        b[i].value = value;
        cb[i] = (struct worker_compute){.user = &b[i], .init = s_init, .compute = s_compute};
    }
    struct server_fixsched_cfg fc = {.batch = 8, .lr = 0.01f, .n_samples = 32, .steps = STEPS};
    struct server_coord_sched cs;
    assert_int_equal(server_fixsched_new(&fc, &cs), 0);
    struct worker_stats st[2];
    memset(st, 0, sizeof st);
    struct cluster_embed_cfg cc = {
        .n_shards = 2,
        .n_workers = 2,
        .transport = "inproc",
        .where = "nonfinite",
        .n_params = P,
        .sched = &cs,
        .compute = cb,
        .worker_timeout_ms = 20000,
    };
    int rc = cluster_embed_run(&cc, NULL, NULL, st); /* stats per worker */
    *steps = st[0].steps;
    server_fixsched_destroy(&cs);
    for (int i = 0; i < 2; i++)
        worker_synth_fini(&b[i].m);
    return rc;
}

static void test_overflowing_gradient_stops_the_run(void **state)
{
    (void)state;
    uint64_t steps = 0;
    /* control: a finite value changes nothing about the run's end */
    assert_int_equal(s_run(0.5f, &steps), 0);
    assert_int_equal(steps, STEPS);
    const float bad[] = {3e38f, -3e38f};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double t0 = rt_clock_now();
        int rc = s_run(bad[i], &steps);
        if (rc == 0)
            fail_msg("a %g gradient was applied and the run finished", (double)bad[i]);
        if (!strstr(rt_err_msg(), "not finite"))
            fail_msg("the error does not say what: %s", rt_err_msg());
        assert_true(steps <= BAD_STEP + 1); /* no step after the bad one completed */
        assert_true(rt_clock_now() - t0 < 60);
    }
}

static void test_nonfinite_loss_stops_train(void **state)
{
    (void)state;
    /* labels = record index, beyond model.classes: the loss is not finite from the first step */
    char *tmp = eb_test_tmpdir(), db[4200], cmd[16384], err[4300];
    snprintf(db, sizeof db, "%s/db", tmp);
    eb_test_make_raw_db(db, 64, 1, 8, 8);
    snprintf(err, sizeof err, "%s/err", tmp);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn timeout 120 '%s' train --model cnn --classes 10 --data '%s' --batch 16 "
             "--micro-batch 8 --epochs 2 --progress-s 0 --worker-timeout-ms 2000 "
             ">/dev/null 2>'%s'",
             eb_test_binary(), db, err);
    assert_int_equal(eb_test_run(cmd), 1);
    char *text = (char *)eb_test_read(err, NULL);
    if (!strstr(text, "loss of step 0") || !strstr(text, "not finite"))
        fail_msg("train's error does not name the step and the loss: %s", text);
    free(text);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflowing_gradient_stops_the_run),
        cmocka_unit_test(test_nonfinite_loss_stops_train),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
