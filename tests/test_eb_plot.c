/*
 * test_eb_plot: `eigenbatch plot RUN_DIR` draws the schedule of a metrics.jsonl (eig and epoch
 * events) into RUN_DIR/schedule.png, and --out elsewhere; a PNG signature is checked. A run
 * directory without metrics is an error. Skipped (77) when gnuplot is not installed.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int s_sh(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void s_check_png(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s was not written", path);
    unsigned char b[8] = {0};
    size_t n = fread(b, 1, sizeof b, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(n, 8);
    assert_memory_equal(b, sig, 8);
    assert_true(size > 1000);
}

static void test_plot(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), path[4200], cmd[9000];
    snprintf(path, sizeof path, "%s/metrics.jsonl", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"event\": \"epoch\", \"time\": 1, \"epoch\": 0, \"B\": 128, \"lr\": 0.1}\n");
    double lam[5] = {40, 18, 15, 7, 6};
    long b = 128;
    double lr = 0.1;
    for (int e = 0; e < 5; e++) {
        if (e == 1 || e == 3) {
            b *= 2;
            lr *= 2;
        }
        fprintf(f,
                "{\"event\": \"eig\", \"time\": %d, \"epoch\": %d, \"eigenvalue\": %g, "
                "\"batch_size\": %ld, \"lr\": %g, \"gamma\": 0, \"reason\": \"r\"}\n",
                e + 2, e, lam[e], b, lr);
    }
    fprintf(f, "not json\n"); /* a damaged line is skipped */
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' plot '%s' >/dev/null 2>&1", eb_test_binary(), tmp);
    assert_int_equal(s_sh(cmd), 0);
    snprintf(path, sizeof path, "%s/schedule.png", tmp);
    s_check_png(path);
    snprintf(path, sizeof path, "%s/other.png", tmp);
    snprintf(cmd, sizeof cmd, "'%s' plot '%s' --out '%s' >/dev/null 2>&1", eb_test_binary(), tmp,
             path);
    assert_int_equal(s_sh(cmd), 0);
    s_check_png(path);
    /* no metrics: an error */
    snprintf(cmd, sizeof cmd, "'%s' plot '%s/nowhere' >/dev/null 2>&1", eb_test_binary(), tmp);
    assert_int_equal(s_sh(cmd), 1);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    if (s_sh("command -v gnuplot >/dev/null 2>&1") != 0)
        return EB_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
