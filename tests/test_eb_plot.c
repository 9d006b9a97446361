/*
 * test_eb_plot: `eigenbatch plot RUN_DIR` draws the schedule of a metrics.jsonl (eig and epoch
 * events) into RUN_DIR/schedule.png, and --out elsewhere; a PNG signature is checked. A run
 * directory without metrics is an error. The rows drawn (--data) are ordered in x for every
 * series, whatever order the events arrived in (drawn `with steps` in file order, unsorted rows
 * were rectangles). Skipped (77) when gnuplot is not installed.
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

/* Each series of the data file drawn (x = column 1; lr, batch size, eigenvalue in columns 2-4,
 * NaN where a row has no value) is non-decreasing in x. Returns the rows read. */
static int s_check_series_sorted(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s was not written", path);
    double last[4] = {-1e300, -1e300, -1e300, -1e300}, v[4];
    int rows = 0, counts[4] = {0};
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *p = line, *end;
        for (int c = 0; c < 4; c++, p = end) {
            v[c] = strtod(p, &end);
            if (end == p)
                fail_msg("%s: row %d: column %d is not a number", path, rows + 1, c + 1);
        }
        for (int c = 1; c < 4; c++) {
            if (v[c] != v[c]) /* NaN: not part of this series */
                continue;
            if (v[0] < last[c])
                fail_msg("%s: series %d goes back in x at row %d (%g after %g)", path, c, rows + 1,
                         v[0], last[c]);
            last[c] = v[0];
            counts[c]++;
        }
        rows++;
    }
    fclose(f);
    for (int c = 1; c < 4; c++)
        assert_true(counts[c] >= 3);
    return rows;
}

/* An ABS run's metrics as they land in the file: the eigen service's decisions (eig events) in
 * one burst after the workers' epoch events, so x goes 0..4 then 1..5. */
static void test_plot_sorted(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), path[4200], data[4200], cmd[13000];
    snprintf(path, sizeof path, "%s/metrics.jsonl", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    static const long batch[6] = {128, 256, 256, 512, 512, 512};
    for (int e = 0; e < 5; e++)
        fprintf(f, "{\"event\": \"epoch\", \"epoch\": %d, \"B\": %ld, \"lr\": %g}\n", e, batch[e],
                0.1 * (double)batch[e] / 128);
    for (int e = 0; e < 5; e++)
        fprintf(f,
                "{\"event\": \"eig\", \"epoch\": %d, \"eigenvalue\": %g, \"batch_size\": %ld, "
                "\"lr\": %g}\n",
                e, 40.0 / (e + 1), batch[e + 1], 0.1 * (double)batch[e + 1] / 128);
    fclose(f);
    snprintf(data, sizeof data, "%s/drawn.dat", tmp);
    snprintf(cmd, sizeof cmd, "'%s' plot '%s' --data '%s' >/dev/null 2>&1", eb_test_binary(), tmp,
             data);
    assert_int_equal(s_sh(cmd), 0);
    assert_int_equal(s_check_series_sorted(data), 10);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    if (s_sh("command -v gnuplot >/dev/null 2>&1") != 0)
        return EB_TEST_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plot),
        cmocka_unit_test(test_plot_sorted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
