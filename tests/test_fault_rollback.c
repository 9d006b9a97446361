/*
 * test_fault_rollback: a run that stops on a non-finite loss rolls back to its newest complete
 * checkpoint under fault.rollback. The test hook EB_TEST_NAN_LOSS=1:20 (worker_app.h) makes worker
 * 1's loss of step 20 (epoch 2 of 8-step epochs, checkpoints every epoch) NaN once per output
 * directory. With fault.rollback, `train` (roles as threads) and `launch` (roles as processes,
 * which tells the stop by the worker's exit status) restart every role from epoch-000002, write a
 * "rollback" event (from_step, checkpoint, epoch, reason, rollbacks_left), finish every epoch and
 * exit 0. Without it, or with fault.max_rollbacks 0, the run exits non-zero with the original
 * error ("not finite"), plus "rollback limit reached" for the latter.
 */
#include "eb_test.h"
#include "eb_test_fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define W 2
#define EPOCHS 4
#define NAN_STEP 20 /* epoch 2: the newest complete checkpoint is epoch-000002 */

static struct eb_fault_fixture s_f;

/* `eigenbatch CMD` with the hook on and extra flags; its exit status; stderr into err. */
static int s_run(const char *cmd, const char *extra, char *err, size_t cap)
{
    char line[4 * EB_FAULT_PATH];
    snprintf(err, cap, "%s/err.txt", s_f.tmp);
    snprintf(line, sizeof line,
             "EB_LOG=warn EB_TEST_NAN_LOSS=1:%d '%s' %s --config '%s' --output-dir '%s' %s "
             ">/dev/null 2>'%s'",
             NAN_STEP, eb_test_binary(), cmd, s_f.cfg, s_f.out, extra, err);
    return eb_test_run(line);
}

/* The run rolled back once, from NAN_STEP (when the reporter knows it) to epoch 2, and finished. */
static void s_assert_rolled_back(int from_known)
{
    char path[EB_FAULT_PATH + 64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", s_f.out);
    json_t *ev = eb_test_events(path, "rollback");
    assert_int_equal(json_array_size(ev), 1);
    json_t *r = json_array_get(ev, 0);
    assert_int_equal(json_integer_value(json_object_get(r, "epoch")), 2);
    assert_non_null(strstr(json_string_value(json_object_get(r, "checkpoint")), "epoch-000002"));
    assert_int_equal(json_integer_value(json_object_get(r, "rollbacks_left")), 2);
    const char *why = json_string_value(json_object_get(r, "reason"));
    assert_non_null(why);
    if (from_known)
        assert_int_equal(json_integer_value(json_object_get(r, "from_step")), NAN_STEP);
    else
        assert_true(json_is_null(json_object_get(r, "from_step")));
    json_decref(ev);
    eb_fault_assert_epochs(&s_f, EPOCHS); /* after the resume: epochs 2 and 3, once each */
    snprintf(path, sizeof path, "%s/weights.safetensors", s_f.out);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
}

static void test_train_rolls_back(void **state)
{
    (void)state;
    char err[EB_FAULT_PATH + 64];
    int rc = s_run("train", "--set cluster.transport=inproc --rollback true", err, sizeof err);
    if (rc != 0)
        fail_msg("train: %d:\n%s", rc, (char *)eb_test_read(err, NULL));
    char *log = (char *)eb_test_read(err, NULL);
    if (!strstr(log, "rolling every role back"))
        fail_msg("no rollback in the log:\n%s", log);
    free(log);
    s_assert_rolled_back(1);
}

static void test_launch_rolls_back(void **state)
{
    (void)state;
    char err[EB_FAULT_PATH + 64];
    int rc = s_run("launch", "--rollback true", err, sizeof err);
    if (rc != 0)
        fail_msg("launch: %d:\n%s", rc, (char *)eb_test_read(err, NULL));
    s_assert_rolled_back(0);
}

static void test_without_rollback_the_run_fails(void **state)
{
    (void)state;
    char err[EB_FAULT_PATH + 64];
    const char *cases[][2] = {
        {"--set cluster.transport=inproc", NULL},
        {"--set cluster.transport=inproc --rollback true --max-rollbacks 0",
         "rollback limit reached"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(s_run("train", cases[i][0], err, sizeof err), 1);
        char *log = (char *)eb_test_read(err, NULL);
        if (!strstr(log, "loss of step 20") || !strstr(log, "not finite") ||
            (cases[i][1] && !strstr(log, cases[i][1])))
            fail_msg("train's error (%s):\n%s", cases[i][0], log);
        free(log);
        /* the hook fires once per output directory: a fresh one for the next case */
        eb_test_rmtree(s_f.out);
    }
}

static int s_setup(void **state)
{
    (void)state;
    eb_fault_setup(&s_f, W, EPOCHS, NULL);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    eb_fault_teardown(&s_f);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_train_rolls_back, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_launch_rolls_back, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_without_rollback_the_run_fails, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
