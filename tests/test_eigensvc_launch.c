/*
 * test_eigensvc_launch: `eigenbatch launch --method ABS` with a zoo model runs the eigen service as
 * a process (`eigenbatch eigensvc`) next to the shards and workers. With --decisions sync and kappa
 * 1 the batch grows 8 -> 16 -> 32 at the first two epoch ends; the service's metrics file shows
 * each decision with its reason and the coordinator's verdict; two runs write identical final
 * weights. `eigenbatch eigensvc` refuses bad options (2) and unusable data (1).
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#define N 40 /* records of 1 x 8 x 8, label = index */

static void s_launch(const char *tmp, const char *db, int run)
{
    char cmd[16384];
    snprintf(
        cmd, sizeof cmd,
        "EB_LOG=warn '%s' launch --transport ipc --shards 2 --workers 2 --balance static --model "
        "cnn "
        "--data '%s' --classes %d --batch 8 --micro-batch 4 --lr 0.05 --method ABS "
        "--epochs 4 --batch-max 32 --kappa 1 --hessian-batch 16 --decisions sync --eig-metrics "
        "'%s/m%d.jsonl' "
        "--out '%s/w%d.bin'",
        eb_test_binary(), db, N, tmp, run, tmp, run);
    assert_int_equal(eb_test_run(cmd), 0);
}

static void test_launch_abs_sync(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], path[4200];
    snprintf(db, sizeof db, "%s/db", tmp);
    eb_test_make_raw_db(db, N, 1, 8, 8);
    s_launch(tmp, db, 0);
    s_launch(tmp, db, 1);

    snprintf(path, sizeof path, "%s/m0.jsonl", tmp);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    int n = 0;
    long want[3] = {16, 32, 32};
    while (fgets(line, sizeof line, f)) {
        json_t *o = json_loads(line, 0, NULL);
        assert_non_null(o);
        if (strcmp(json_string_value(json_object_get(o, "event")), "eig") == 0) {
            assert_true(n < 3);
            assert_int_equal(json_integer_value(json_object_get(o, "epoch")), n);
            assert_int_equal(json_integer_value(json_object_get(o, "batch_size")), want[n]);
            const char *reason = json_string_value(json_object_get(o, "reason"));
            assert_non_null(reason);
            assert_true(reason[0] != '\0');
            const char *verdict = json_string_value(json_object_get(o, "verdict"));
            assert_non_null(verdict);
            if (n < 2) {
                assert_true(json_is_number(json_object_get(o, "eigenvalue")));
                assert_true(json_integer_value(json_object_get(o, "sched_version")) == n + 1);
            }
            n++;
        }
        json_decref(o);
    }
    fclose(f);
    assert_int_equal(n, 3); /* epochs 0..2 end inside the run; epoch 3 ends it */

    unsigned char *a, *b;
    char p0[4200], p1[4200];
    snprintf(p0, sizeof p0, "%s/w0.bin", tmp);
    snprintf(p1, sizeof p1, "%s/w1.bin", tmp);
    long na, nb;
    a = eb_test_read(p0, &na);
    b = eb_test_read(p1, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na);
    free(a);
    free(b);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* The eigensvc command's errors: missing or malformed options (2), unusable data (1). */
static void test_eigensvc_command_errors(void **state)
{
    (void)state;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' eigensvc --model cnn 2>/dev/null", eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
    snprintf(
        cmd, sizeof cmd,
        "'%s' eigensvc --connect tcp://127.0.0.1:9 --model cnn --data x --method ABS --kappa ten "
        "2>/dev/null",
        eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
    snprintf(cmd, sizeof cmd,
             "'%s' eigensvc --connect tcp://127.0.0.1:9 --model cnn --data x --method SGD "
             "2>/dev/null",
             eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
    snprintf(cmd, sizeof cmd,
             "EB_CONNECT=tcp://127.0.0.1:9 EB_MODEL=cnn EB_METHOD=ABS '%s' eigensvc --data "
             "/nonexistent/db "
             "2>/dev/null",
             eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 1); /* options from the environment; the data is missing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_launch_abs_sync),
        cmocka_unit_test(test_eigensvc_command_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
