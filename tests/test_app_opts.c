/*
 * test_app_opts: the option table is the one place an option's default lives. For every option,
 * the default `--help` prints, the value used with no configuration file and the value used with
 * an empty configuration file agree, for every role's command. Sources keep their priority
 * (file < environment < command line), a flag and its key are one option, and a bad value names
 * where it came from.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "app_opts.h"
#include "rt_err.h"

/* The value text of row o after parsing argv (argc words) with the table alone (no cross-option
 * checks: the defaults of a zoo model without data would not pass them). */
static void s_value(const struct rt_opt *o, int argc, char **argv, char *buf, size_t cap)
{
    struct app_opts opts;
    memset(&opts, 0, sizeof opts);
    rt_config_t *cfg = NULL;
    if (rt_opt_parse(app_opts_table, app_opts_count, &opts, argc, argv, &cfg))
        fail_msg("parse failed: %s", rt_err_msg());
    rt_opt_value_text(o, &opts, buf, cap);
    rt_config_destroy(&cfg);
}

/* The default `eigenbatch CMD --help` prints for --flag ("unset" when none). */
static void s_help_default(const char *help, const char *flag, char *buf, size_t cap)
{
    char needle[128];
    snprintf(needle, sizeof needle, "\n  --%s ", flag);
    const char *p = strstr(help, needle);
    if (!p)
        fail_msg("--help does not list --%s", flag);
    const char *d = strstr(p, "default: ");
    const char *nl = strchr(p + 1, '\n');
    if (!d || (nl && d > nl))
        fail_msg("--help gives no default for --%s", flag);
    d += strlen("default: ");
    size_t n = strcspn(d, ")");
    snprintf(buf, cap, "%.*s", (int)n, d);
}

/* Two value texts of row o are the same value. */
static int s_equal(const struct rt_opt *o, const char *a, const char *b)
{
    if (!strcmp(a, "unset"))
        a = "";
    if (!strcmp(b, "unset"))
        b = "";
    if (o->type == RT_OPT_INT || o->type == RT_OPT_FLOAT)
        return *a && *b && strtod(a, NULL) == strtod(b, NULL);
    return !strcmp(a, b);
}

static char *s_capture(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    n = fread(buf, 1, cap - 1, p);
    buf[n] = '\0';
    assert_int_equal(pclose(p), 0);
    return buf;
}

static void test_help_no_config_and_empty_config_agree(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), empty[4200];
    snprintf(empty, sizeof empty, "%s/empty.yaml", tmp);
    FILE *f = fopen(empty, "w");
    assert_non_null(f);
    fclose(f);
    static const char *const roles[] = {"train", "launch", "server", "worker", "eigensvc"};
    for (size_t r = 0; r < sizeof roles / sizeof roles[0]; r++) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' %s --help", eb_test_binary(), roles[r]);
        char *help = s_capture(cmd);
        for (int i = 0; i < app_opts_count; i++) {
            const struct rt_opt *o = &app_opts_table[i];
            char h[256], none[256], emp[256];
            char *argv0[] = {(char *)roles[r], NULL};
            char *argv1[] = {(char *)roles[r], "--config", empty, NULL};
            s_help_default(help, o->flag, h, sizeof h);
            s_value(o, 1, argv0, none, sizeof none);
            s_value(o, 3, argv1, emp, sizeof emp);
            if (!s_equal(o, h, none) || !s_equal(o, none, emp))
                fail_msg("%s --%s: --help says '%s', no config gives '%s', an empty config "
                         "'%s'",
                         roles[r], o->flag, h, none, emp);
        }
        free(help);
    }
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_priority_and_errors(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/run.yaml", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("schedule:\n  lr: 0.5\n  batch: 64\ncluster: {workers: 3}\n", f);
    fclose(f);
    struct app_opts o;
    rt_config_t *cfg = NULL;
    /* file < environment < command line; --set and the flag are the same option */
    setenv("EB_BATCH", "32", 1);
    char *argv[] = {"worker", "--config", path, "--lr", "0.25", "--set", "cluster.workers=4",
                    "--model", "synth", NULL};
    assert_int_equal(app_opts_parse(9, argv, "", &o, &cfg), 0);
    assert_true(o.schedule.lr == 0.25);
    assert_int_equal(o.schedule.batch, 32);
    assert_int_equal(o.cluster.workers, 4);
    const char *v = NULL;
    assert_int_equal(rt_config_get_str(cfg, "schedule.lr", NULL, &v), 0);
    assert_string_equal(v, "0.25"); /* the resolved configuration holds what ran */
    rt_config_destroy(&cfg);
    unsetenv("EB_BATCH");
    /* a bad value names its source */
    char *bad1[] = {"server", "--config", path, "--momentum", "2", NULL};
    assert_int_equal(app_opts_parse(5, bad1, "", &o, &cfg), 2);
    assert_non_null(strstr(rt_err_msg(), "--momentum"));
    setenv("EB_BN", "sideways", 1);
    char *bad2[] = {"eigensvc", NULL};
    assert_int_equal(app_opts_parse(1, bad2, "", &o, &cfg), 2);
    assert_non_null(strstr(rt_err_msg(), "EB_BN"));
    unsetenv("EB_BN");
    f = fopen(path, "w");
    fputs("model: {name: synth}\nabs:\n  preset: fast\n", f);
    fclose(f);
    char *bad3[] = {"train", "--config", path, NULL};
    assert_int_equal(app_opts_parse(3, bad3, "", &o, &cfg), 2);
    assert_non_null(strstr(rt_err_msg(), ":3: abs.preset"));
    char *bad4[] = {"launch", "--no-such-flag", "1", NULL};
    assert_int_equal(app_opts_parse(3, bad4, "", &o, &cfg), 2);
    assert_non_null(strstr(rt_err_msg(), "--no-such-flag"));
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_no_config_and_empty_config_agree),
        cmocka_unit_test(test_priority_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
