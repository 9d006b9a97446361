/*
 * test_nn_bench: `eigenbatch bench train` runs a small model and prints, as its last stdout line,
 * one JSON object with the documented fields; bad options fail with exit status 2.
 */
#include "eb_test.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

/* Run the binary with `args`; returns the exit status and the last stdout line in `last`. */
static int s_run(const char *args, char *last, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>/dev/null", eb_test_binary(), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[4096];
    last[0] = '\0';
    while (fgets(line, sizeof line, p))
        snprintf(last, cap, "%s", line);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_json_last_line(void **state)
{
    (void)state;
    char last[4096];
    int rc = s_run("bench train --model mlp --batch 4 --threads 1 --steps 2 --input 1x8x8 "
                   "--classes 5",
                   last, sizeof last);
    assert_int_equal(rc, 0);
    json_error_t jerr;
    json_t *js = json_loads(last, 0, &jerr);
    if (!js)
        fail_msg("last line is not JSON: %s (%s)", last, jerr.text);
    assert_string_equal(json_string_value(json_object_get(js, "model")), "mlp");
    assert_int_equal(json_integer_value(json_object_get(js, "batch")), 4);
    assert_int_equal(json_integer_value(json_object_get(js, "threads")), 1);
    /* 64*512+512 + 512*256+256 + 256*5+5 */
    assert_int_equal(json_integer_value(json_object_get(js, "params")), 33280 + 131328 + 1285);
    static const char *const positive[] = {
        "images_per_s", "step_s",          "hvp_s",      "flops_per_image",        "gflops",
        "hvp_reuse_s",  "hvp_reuse_cpu_s", "step_cpu_s", "hvp_reuse_over_step_cpu"};
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++) {
        json_t *v = json_object_get(js, positive[i]);
        if (!json_is_number(v) || json_number_value(v) <= 0)
            fail_msg("field %s missing or not positive", positive[i]);
    }
    json_decref(js);
}

static void test_bad_options(void **state)
{
    (void)state;
    char last[4096];
    assert_int_equal(s_run("bench train --model vgg --batch 4 --threads 1", last, sizeof last), 2);
    assert_int_equal(s_run("bench train --model mlp --batch -1 --threads 1", last, sizeof last), 2);
    assert_int_equal(s_run("bench train --model mlp --batch 4 --input 1x8", last, sizeof last), 2);
    assert_int_equal(s_run("bench nosuchkind", last, sizeof last), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_last_line),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
