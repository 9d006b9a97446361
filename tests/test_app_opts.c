/*
 * test_app_opts: the option table is the one place an option's default lives. For every option,
 * the default `--help` prints, the value used with no configuration file and the value used with
 * an empty configuration file agree, for every role's command. Sources keep their priority
 * (file < environment < command line), a flag and its key are one option, and a bad value names
 * where it came from. The mechanism itself, on a table of its own: a switch (a flag without a
 * value), a number without a default (NaN, printed as unset), rt_opt_given (the command line
 * only), and ranges that read as words (> 0, >= 0).
 */
#include "eb_test.h"

#include <math.h>
#include <stddef.h>
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
        return *a && *b ? strtod(a, NULL) == strtod(b, NULL) : !*a && !*b;
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
    char *argv[] = {"worker", "--config",          path,      "--lr",  "0.25",
                    "--set",  "cluster.workers=4", "--model", "synth", NULL};
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

/* A table of its own for the mechanism's cases. */
struct s_demo {
    int verbose;  /* --verbose: a per-process switch */
    int json;     /* --json, demo.json: a keyed switch */
    double rate;  /* --rate, demo.rate: no default, > 0 */
    double scale; /* --scale: >= 0 */
    long n;       /* --n */
};

#define S_DEMO(key, flag, type, field, def, min, max)                                              \
    {                                                                                              \
        key, flag, RT_OPT_##type, offsetof(struct s_demo, field), def, min, max, NULL, flag        \
    }

static const struct rt_opt s_demo_table[] = {
    S_DEMO(NULL, "verbose", SWITCH, verbose, NULL, 0, 0),
    S_DEMO("demo.json", "json", SWITCH, json, NULL, 0, 0),
    S_DEMO("demo.rate", "rate", FLOAT, rate, NULL, RT_OPT_POSITIVE, RT_OPT_UNBOUNDED),
    S_DEMO(NULL, "scale", FLOAT, scale, "1.5", 0, RT_OPT_UNBOUNDED),
    S_DEMO(NULL, "n", INT, n, "3", 0, 0),
};
#define S_DEMO_N ((int)(sizeof s_demo_table / sizeof s_demo_table[0]))

/* Parse argv (NULL-terminated) with the demo table; rt_opt_parse's code. */
static int s_demo_parse(char **argv, struct s_demo *d)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    memset(d, 0x5a, sizeof *d); /* poison: every field must be set */
    rt_config_t *cfg = NULL;
    int rc = rt_opt_parse(s_demo_table, S_DEMO_N, d, argc, argv, &cfg);
    rt_config_destroy(&cfg);
    return rc;
}

static int s_given(const char *flag, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    const struct rt_opt *o = rt_opt_find(s_demo_table, S_DEMO_N, NULL, flag);
    assert_non_null(o);
    return rt_opt_given(s_demo_table, S_DEMO_N, o, argc, argv);
}

static void test_switch_unset_given(void **state)
{
    (void)state;
    struct s_demo d;
    char buf[64];
    /* nothing given: a switch is off, a number without a default is NaN and prints as unset */
    char *none[] = {"demo", NULL};
    assert_int_equal(s_demo_parse(none, &d), 0);
    assert_int_equal(d.verbose, 0);
    assert_int_equal(d.json, 0);
    assert_true(isnan(d.rate));
    assert_true(d.scale == 1.5);
    assert_string_equal(rt_opt_value_text(&s_demo_table[2], &d, buf, sizeof buf), "");
    assert_int_equal(s_given("verbose", none), 0);

    /* a bare switch takes no value: "--n" after it is the next option */
    char *some[] = {"demo", "--verbose", "--n", "5", "--rate=2", "--set", "demo.json=true", NULL};
    assert_int_equal(s_demo_parse(some, &d), 0);
    assert_int_equal(d.verbose, 1);
    assert_int_equal(d.n, 5);
    assert_true(d.rate == 2);
    assert_int_equal(d.json, 1);
    assert_int_equal(s_given("verbose", some), 1);
    assert_int_equal(s_given("rate", some), 1);
    assert_int_equal(s_given("json", some), 1); /* through --set demo.json= */
    assert_int_equal(s_given("scale", some), 0);
    assert_int_equal(s_given("n", (char *[]){"demo", "--scale", "--n", NULL}), 0); /* a value */

    /* --flag=BOOL, a keyed switch as a bare flag, and a bad word named by its flag */
    char *off[] = {"demo", "--verbose=false", "--json", NULL};
    assert_int_equal(s_demo_parse(off, &d), 0);
    assert_int_equal(d.verbose, 0);
    assert_int_equal(d.json, 1);
    char *bad[] = {"demo", "--verbose=maybe", NULL};
    assert_int_equal(s_demo_parse(bad, &d), RT_ERR_ARG);
    assert_non_null(strstr(rt_err_msg(), "--verbose"));

    /* the environment sets a value but is not "given" on the command line */
    setenv("EB_VERBOSE", "true", 1);
    assert_int_equal(s_demo_parse(none, &d), 0);
    assert_int_equal(d.verbose, 1);
    assert_int_equal(s_given("verbose", none), 0);
    unsetenv("EB_VERBOSE");

    /* ranges in words */
    char *zero[] = {"demo", "--rate", "0", NULL};
    assert_int_equal(s_demo_parse(zero, &d), RT_ERR_ARG);
    assert_non_null(strstr(rt_err_msg(), "--rate: must be > 0"));
    char *neg[] = {"demo", "--scale", "-1", NULL};
    assert_int_equal(s_demo_parse(neg, &d), RT_ERR_ARG);
    assert_non_null(strstr(rt_err_msg(), "--scale: must be >= 0"));
    char *inf[] = {"demo", "--scale", "inf", NULL};
    assert_int_equal(s_demo_parse(inf, &d), RT_ERR_ARG);

    /* --help: a switch shows no value and defaults to false; an unset number says so */
    char *help = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&help, &len);
    assert_non_null(f);
    rt_opt_help(s_demo_table, S_DEMO_N, f);
    fclose(f);
    assert_non_null(strstr(help, "  --verbose  (EB_VERBOSE; default: false)\n"));
    assert_non_null(strstr(help, "  --rate NUM  (demo.rate, EB_RATE; default: unset)\n"));
    assert_non_null(strstr(help, "rate; > 0\n"));
    assert_non_null(strstr(help, "scale; >= 0\n"));
    free(help);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_no_config_and_empty_config_agree),
        cmocka_unit_test(test_priority_and_errors),
        cmocka_unit_test(test_switch_unset_given),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
