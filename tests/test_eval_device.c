/*
 * test_eval_device: `eigenbatch eval --device` (worker.device). On the CPU it scores the weights
 * a run wrote as that run's own test evaluation did; asked for cuda where there is none (a build
 * without CUDA, or no GPU), it exits 1 with one line naming the device and the reason, instead of
 * scoring on the CPU unasked. Where a GPU exists, the same weights score alike on it.
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_backend.h"
#include "nn_base.h"

#define N 64 /* records of the tiny dataset (classes as many) */

/* Run `eigenbatch eval` on run/weights.safetensors with extra options; its JSON line (caller
 * decrefs) or NULL, and its exit status in *status; its stderr in err (cap bytes). */
static json_t *s_eval(const char *tmp, const char *extra, int *status, char *err, size_t cap)
{
    char cmd[16384], path[4400];
    snprintf(path, sizeof path, "%s/eval-err.txt", tmp);
    snprintf(
        cmd, sizeof cmd,
        "EB_LOG=warn '%s' eval --model cnn --classes %d --weights '%s/run/weights.safetensors' "
        "--data '%s/db' %s 2>'%s'",
        eb_test_binary(), N, tmp, tmp, extra, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[4096];
    size_t len = fread(out, 1, sizeof out - 1, p);
    out[len] = '\0';
    *status = pclose(p);
    long n = 0;
    char *e = (char *)eb_test_read(path, &n);
    snprintf(err, cap, "%s", e ? e : "");
    free(e);
    return json_loads(out, 0, NULL);
}

static void test_eval_device(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), cmd[12000], err[4096];
    snprintf(cmd, sizeof cmd, "%s/db", tmp);
    eb_test_make_raw_db(cmd, N, 1, 8, 8);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' train --model cnn --classes %d --data '%s/db' --test '%s/db' "
             "--epochs 2 --batch 16 --micro-batch 16 --lr 0.05 --output-dir '%s/run' "
             ">/dev/null 2>&1",
             eb_test_binary(), N, tmp, tmp, tmp);
    assert_int_equal(eb_test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/run/metrics.jsonl", tmp);
    json_t *ev = eb_test_events(cmd, "epoch");
    json_t *last = json_array_get(ev, json_array_size(ev) - 1);
    double acc = json_number_value(json_object_get(last, "test_accuracy"));
    int st;
    json_t *cpu = s_eval(tmp, "--device cpu", &st, err, sizeof err);
    assert_int_equal(st, 0);
    assert_non_null(cpu);
    assert_true(fabs(json_number_value(json_object_get(cpu, "accuracy")) - acc) < 1e-12);
    const struct nn_backend_ops *be;
    if (nn_backend_get("cuda", &be) == NN_OK) { /* a GPU: the same scores there */
        json_t *gpu = s_eval(tmp, "--device cuda", &st, err, sizeof err);
        assert_int_equal(st, 0);
        assert_true(fabs(json_number_value(json_object_get(gpu, "accuracy")) - acc) < 1e-12);
        json_decref(gpu);
    } else { /* refused, in one line that names the device and says why */
        json_t *none = s_eval(tmp, "--device cuda", &st, err, sizeof err);
        assert_null(none);
        assert_true(st != 0);
        assert_non_null(strstr(err, "eigenbatch eval: cuda: "));
        assert_non_null(strstr(err, "CUDA"));
        assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err)); /* one line */
    }
    json_decref(cpu);
    json_decref(ev);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eval_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
