/*
 * test_rt_config: YAML loading into dotted keys, typed getters and their errors (file:line, key,
 * expected type, value), --set overrides, schema validation (unknown keys, types, defaults), and
 * the YAML dump reloading to the same configuration.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_config.h"
#include "rt_err.h"

/* Write text to dir/name; returns the path (caller frees). */
static char *s_write(const char *dir, const char *name, const char *text)
{
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Assert rc is an error whose detail contains want. */
#define ASSERT_ERR(rc, code, want)                                                                 \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        if (rc_ != (code) || !strstr(rt_err_msg(), (want)))                                        \
            fail_msg("got %d '%s', want %d '%s'", rc_, rc_ ? rt_err_msg() : "", (code), (want));   \
    } while (0)

static const char *s_yaml = "# a run\n"                         /* 1 */
                            "model:\n"                          /* 2 */
                            "  name: cnn\n"                     /* 3 */
                            "  classes: 10\n"                   /* 4 */
                            "train:\n"                          /* 5 */
                            "  lr: 0.1\n"                       /* 6 */
                            "  nesterov: yes\n"                 /* 7 */
                            "  tag: '007'\n"                    /* 8 */
                            "schedule.decay_epochs: [15, 25]\n" /* 9 */
                            "schedule.method: abs\n"            /* 10 */
                            "data: {dir: /tmp/x, workers: ~}\n" /* 11 */
                            "train.epochs: ten\n"               /* 12 */
                            "servers:\n"                        /* 13 */
                            "  - tcp://a:5555\n"                /* 14 */
                            "  - \"tcp://b:5555\"\n";           /* 15 */

static void test_load_and_get(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char *path = s_write(dir, "config.yaml", s_yaml);
    rt_config_t *cfg = rt_config_new();
    assert_int_equal(rt_config_load(cfg, path), 0);

    const char *s = NULL;
    long l = 0;
    double d = 0;
    int b = 0, n = 0;
    assert_int_equal(rt_config_get_str(cfg, "model.name", "x", &s), 0);
    assert_string_equal(s, "cnn");
    assert_int_equal(rt_config_get_int(cfg, "model.classes", 0, &l), 0);
    assert_int_equal(l, 10);
    assert_int_equal(rt_config_get_double(cfg, "train.lr", 0, &d), 0);
    assert_true(d == 0.1);
    assert_int_equal(rt_config_get_bool(cfg, "train.nesterov", 0, &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(rt_config_get_str(cfg, "train.tag", NULL, &s), 0);
    assert_string_equal(s, "007");
    long ep[4];
    assert_int_equal(rt_config_get_ints(cfg, "schedule.decay_epochs", ep, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ep[0], 15);
    assert_int_equal(ep[1], 25);
    assert_int_equal(rt_config_get_str(cfg, "data.dir", NULL, &s), 0);
    assert_string_equal(s, "/tmp/x");
    const char *srv[4];
    assert_int_equal(rt_config_get_strs(cfg, "servers", srv, 4, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(srv[1], "tcp://b:5555");

    /* Unset and null keys give the default. */
    assert_int_equal(rt_config_get_int(cfg, "data.workers", 4, &l), 0);
    assert_int_equal(l, 4);
    assert_false(rt_config_has(cfg, "data.workers"));
    assert_true(rt_config_has(cfg, "data.dir"));
    assert_int_equal(rt_config_get_double(cfg, "train.momentum", 0.9, &d), 0);
    assert_true(d == 0.9);
    assert_int_equal(rt_config_get_ints(cfg, "nope", ep, 4, &n), 0);
    assert_int_equal(n, 0);

    /* Type errors name file:line, the key, the expected type and the value. */
    char want[4200];
    snprintf(want, sizeof want, "%s:12: train.epochs: expected an integer, got 'ten'", path);
    ASSERT_ERR(rt_config_get_int(cfg, "train.epochs", 0, &l), RT_ERR_CONFIG, want);
    assert_int_equal(l, 0);
    ASSERT_ERR(rt_config_get_bool(cfg, "model.name", 0, &b), RT_ERR_CONFIG,
               ":3: model.name: expected a boolean");
    ASSERT_ERR(rt_config_get_double(cfg, "model.name", 0, &d), RT_ERR_CONFIG, "expected a number");
    ASSERT_ERR(rt_config_get_int(cfg, "train.lr", 0, &l), RT_ERR_CONFIG, "got '0.1'");
    ASSERT_ERR(rt_config_get_str(cfg, "servers", NULL, &s), RT_ERR_CONFIG,
               ":13: servers: expected a string, got a list");
    ASSERT_ERR(rt_config_get_ints(cfg, "schedule.decay_epochs", ep, 1, &n), RT_ERR_CONFIG,
               "at most 1 values, got 2");
    ASSERT_ERR(rt_config_get_ints(cfg, "servers", ep, 4, &n), RT_ERR_CONFIG,
               "expected a list of integers, got 'tcp://a:5555'");
    ASSERT_ERR(rt_config_error(cfg, "model.classes", "must be at least %d", 2), RT_ERR_CONFIG,
               ":4: model.classes: must be at least 2");

    rt_config_destroy(&cfg);
    assert_null(cfg);
    rt_config_destroy(&cfg);
    free(path);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_scalar_parsing(void **state)
{
    (void)state;
    rt_config_t *cfg = rt_config_new();
    assert_int_equal(rt_config_load_string(cfg,
                                           "a: -42\nb: 1e-3\nc: .inf\nd: Off\ne: 0x10\nf: 1.5.2\n"
                                           "g: 99999999999999999999999\nh: nan\ni: +7\nj: TRUE\n",
                                           "<t>"),
                     0);
    long l;
    double d;
    int b;
    assert_int_equal(rt_config_get_int(cfg, "a", 0, &l), 0);
    assert_int_equal(l, -42);
    assert_int_equal(rt_config_get_double(cfg, "a", 0, &d), 0);
    assert_true(d == -42.0);
    assert_int_equal(rt_config_get_double(cfg, "b", 0, &d), 0);
    assert_true(d == 1e-3);
    assert_int_equal(rt_config_get_double(cfg, "c", 0, &d), 0);
    assert_true(isinf(d) && d > 0);
    assert_int_equal(rt_config_get_bool(cfg, "d", 1, &b), 0);
    assert_int_equal(b, 0);
    assert_int_equal(rt_config_get_bool(cfg, "j", 0, &b), 0);
    assert_int_equal(b, 1);
    assert_int_equal(rt_config_get_int(cfg, "i", 0, &l), 0);
    assert_int_equal(l, 7);
    ASSERT_ERR(rt_config_get_int(cfg, "e", 0, &l), RT_ERR_CONFIG, "<t>:5: e:");
    ASSERT_ERR(rt_config_get_double(cfg, "f", 0, &d), RT_ERR_CONFIG, "got '1.5.2'");
    ASSERT_ERR(rt_config_get_int(cfg, "g", 0, &l), RT_ERR_CONFIG, "expected an integer");
    ASSERT_ERR(rt_config_get_double(cfg, "h", 0, &d), RT_ERR_CONFIG, "got 'nan'");
    ASSERT_ERR(rt_config_get_bool(cfg, "a", 0, &b), RT_ERR_CONFIG, "got '-42'");
    rt_config_destroy(&cfg);
}

static void test_overrides(void **state)
{
    (void)state;
    rt_config_t *cfg = rt_config_new();
    assert_int_equal(rt_config_load_string(cfg, "train:\n  epochs: 3\n  lr: 0.1\n", "c.yaml"), 0);
    assert_int_equal(rt_config_set(cfg, "train.epochs=30"), 0);
    assert_int_equal(rt_config_set(cfg, "schedule.decay_epochs=[10, 20, 25]"), 0);
    assert_int_equal(rt_config_set(cfg, "model.name='123'"), 0);
    assert_int_equal(rt_config_set(cfg, "data.dir=/data/fmnist:v1"), 0);
    assert_int_equal(rt_config_set(cfg, "note=@odd {"), 0); /* not YAML: taken verbatim */
    assert_int_equal(rt_config_set(cfg, "train.lr="), 0);   /* null: back to the default */
    long l, ep[4];
    double d;
    int n;
    const char *s;
    assert_int_equal(rt_config_get_int(cfg, "train.epochs", 0, &l), 0);
    assert_int_equal(l, 30);
    assert_int_equal(rt_config_get_ints(cfg, "schedule.decay_epochs", ep, 4, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ep[2], 25);
    assert_int_equal(rt_config_get_str(cfg, "model.name", NULL, &s), 0);
    assert_string_equal(s, "123");
    assert_int_equal(rt_config_get_str(cfg, "data.dir", NULL, &s), 0);
    assert_string_equal(s, "/data/fmnist:v1");
    assert_int_equal(rt_config_get_str(cfg, "note", NULL, &s), 0);
    assert_string_equal(s, "@odd {");
    assert_int_equal(rt_config_get_double(cfg, "train.lr", 0.5, &d), 0);
    assert_true(d == 0.5);

    ASSERT_ERR(rt_config_set(cfg, "train.epochs"), RT_ERR_CONFIG, "expected key=value");
    ASSERT_ERR(rt_config_set(cfg, "=3"), RT_ERR_CONFIG, "expected key=value");
    ASSERT_ERR(rt_config_set(cfg, "a..b=3"), RT_ERR_CONFIG, "invalid key 'a..b'");
    assert_int_equal(rt_config_set(cfg, "train.epochs=ten"), 0);
    ASSERT_ERR(rt_config_get_int(cfg, "train.epochs", 0, &l), RT_ERR_CONFIG,
               "--set: train.epochs: expected an integer, got 'ten'");
    /* A value where a section is, and the other way round. */
    ASSERT_ERR(rt_config_set(cfg, "train=5"), RT_ERR_CONFIG, "is a section");
    ASSERT_ERR(rt_config_set(cfg, "train.epochs.x=5"), RT_ERR_CONFIG, "not a section");
    /* A mapping value sets the keys below. */
    assert_int_equal(rt_config_set(cfg, "eig={iters: 50, tol: 1e-3}"), 0);
    assert_int_equal(rt_config_get_int(cfg, "eig.iters", 0, &l), 0);
    assert_int_equal(l, 50);
    /* Null on a section clears it. */
    assert_int_equal(rt_config_set(cfg, "eig=~"), 0);
    assert_false(rt_config_has(cfg, "eig.iters"));
    rt_config_destroy(&cfg);
}

static void test_file_errors(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    rt_config_t *cfg = rt_config_new();
    char *p = s_write(dir, "syntax.yaml", "a: 1\nb: [1, 2\nc: 3\n");
    ASSERT_ERR(rt_config_load(cfg, p), RT_ERR_CONFIG, "syntax.yaml:");
    free(p);
    p = s_write(dir, "dup.yaml", "train:\n  epochs: 3\ntrain.epochs: 4\n");
    ASSERT_ERR(rt_config_load(cfg, p), RT_ERR_CONFIG,
               "dup.yaml:3: train.epochs: duplicate key (first set at");
    free(p);
    p = s_write(dir, "lmap.yaml", "workers:\n  - host: a\n");
    ASSERT_ERR(rt_config_load(cfg, p), RT_ERR_CONFIG, "lmap.yaml:2: workers: list items");
    free(p);
    p = s_write(dir, "top.yaml", "- 1\n- 2\n");
    ASSERT_ERR(rt_config_load(cfg, p), RT_ERR_CONFIG, "must be a mapping");
    free(p);
    p = s_write(dir, "two.yaml", "a: 1\n---\nb: 2\n");
    ASSERT_ERR(rt_config_load(cfg, p), RT_ERR_CONFIG, "only one YAML document");
    free(p);
    p = s_write(dir, "key.yaml", "a b: 1\n");
    ASSERT_ERR(rt_config_load(cfg, p), RT_ERR_CONFIG, "key.yaml:1: invalid key 'a b'");
    free(p);
    p = s_write(dir, "loop.yaml", "a: &x\n  b: *x\n");
    assert_true(rt_config_load(cfg, p) <= 0); /* an alias loop must not hang or crash */
    free(p);
    p = s_write(dir, "empty.yaml", "# nothing\n");
    rt_config_t *e = rt_config_new();
    assert_int_equal(rt_config_load(e, p), 0);
    assert_int_equal(rt_config_count(e), 0);
    rt_config_destroy(&e);
    free(p);
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/missing.yaml", dir);
    ASSERT_ERR(rt_config_load(cfg, missing), RT_ERR_NOTFOUND, "missing.yaml");
    rt_config_destroy(&cfg);
    eb_test_rmtree(dir);
    free(dir);
}

static const struct rt_config_key s_schema[] = {
    {"model.name", RT_CFG_STR, "cnn", "zoo model"},
    {"train.epochs", RT_CFG_INT, "30", "epochs"},
    {"train.lr", RT_CFG_FLOAT, "0.1", "base learning rate"},
    {"train.nesterov", RT_CFG_BOOL, "false", NULL},
    {"schedule.decay_epochs", RT_CFG_LIST_INT, "[15, 25]", NULL},
    {"schedule.method", RT_CFG_STR, "abs", NULL},
    {"servers", RT_CFG_LIST_STR, NULL, NULL},
    {"shards.*.port", RT_CFG_INT, NULL, NULL},
};
#define SCHEMA_N ((int)(sizeof s_schema / sizeof s_schema[0]))

static void test_schema(void **state)
{
    (void)state;
    rt_config_t *cfg = rt_config_new();
    assert_int_equal(rt_config_load_string(cfg, "trian:\n  epochs: 3\n", "c.yaml"), 0);
    ASSERT_ERR(rt_config_validate(cfg, s_schema, SCHEMA_N), RT_ERR_CONFIG,
               "c.yaml:2: trian.epochs: unknown key (did you mean 'train.epochs'?)");
    rt_config_destroy(&cfg);

    cfg = rt_config_new();
    assert_int_equal(rt_config_load_string(cfg, "completely.different: 1\n", "c.yaml"), 0);
    ASSERT_ERR(rt_config_validate(cfg, s_schema, SCHEMA_N), RT_ERR_CONFIG,
               "completely.different: unknown key");
    assert_null(strstr(rt_err_msg(), "did you mean"));
    rt_config_destroy(&cfg);

    cfg = rt_config_new();
    assert_int_equal(rt_config_load_string(cfg, "train: {epochs: 3, lr: fast}\n", "c.yaml"), 0);
    ASSERT_ERR(rt_config_validate(cfg, s_schema, SCHEMA_N), RT_ERR_CONFIG,
               "c.yaml:1: train.lr: expected a number, got 'fast'");
    rt_config_destroy(&cfg);

    cfg = rt_config_new();
    assert_int_equal(rt_config_load_string(cfg,
                                           "train.epochs: 3\nshards.0.port: 5555\n"
                                           "shards.1.port: 5556\n",
                                           "c.yaml"),
                     0);
    assert_int_equal(rt_config_set(cfg, "schedule.decay_epochs=40"), 0);
    assert_int_equal(rt_config_set(cfg, "model.name=~"), 0);
    assert_int_equal(rt_config_validate(cfg, s_schema, SCHEMA_N), 0);
    long l, ep[4];
    int n;
    double d;
    const char *s;
    assert_int_equal(rt_config_get_int(cfg, "train.epochs", 0, &l), 0);
    assert_int_equal(l, 3);
    assert_int_equal(rt_config_get_int(cfg, "shards.1.port", 0, &l), 0);
    assert_int_equal(l, 5556);
    /* Defaults filled in from the schema; a scalar override of a list is a list of one. */
    assert_int_equal(rt_config_get_double(cfg, "train.lr", 0, &d), 0);
    assert_true(d == 0.1);
    assert_int_equal(rt_config_get_str(cfg, "model.name", NULL, &s), 0);
    assert_string_equal(s, "cnn");
    assert_int_equal(rt_config_get_ints(cfg, "schedule.decay_epochs", ep, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ep[0], 40);
    assert_false(rt_config_has(cfg, "servers"));
    rt_config_destroy(&cfg);

    cfg = rt_config_new();
    assert_int_equal(rt_config_set(cfg, "servers=tcp://a:1"), 0);
    assert_int_equal(rt_config_set(cfg, "shards.x.y.port=1"), 0);
    ASSERT_ERR(rt_config_validate(cfg, s_schema, SCHEMA_N), RT_ERR_CONFIG,
               "--set: shards.x.y.port: unknown key");
    rt_config_destroy(&cfg);
}

static void test_dump_round_trip(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char *path = s_write(dir, "config.yaml", s_yaml);
    rt_config_t *cfg = rt_config_new();
    assert_int_equal(rt_config_load(cfg, path), 0);
    assert_int_equal(rt_config_set(cfg, "train.epochs=12"), 0);
    assert_int_equal(rt_config_set(cfg, "model.note='yes: really'"), 0);
    char out[4200];
    snprintf(out, sizeof out, "%s/resolved.yaml", dir);
    assert_int_equal(rt_config_dump(cfg, out), 0);

    char *text = rt_config_dump_string(cfg);
    assert_non_null(text);
    /* Nested, in first-set order, quoted where the source quoted. */
    assert_non_null(strstr(text, "model:\n  name: cnn\n  classes: 10\n"));
    assert_non_null(strstr(text, "tag: \"007\""));
    assert_non_null(strstr(text, "decay_epochs: [15, 25]"));
    free(text);

    rt_config_t *back = rt_config_new();
    assert_int_equal(rt_config_load(back, out), 0);
    assert_int_equal(rt_config_count(back), rt_config_count(cfg));
    for (int i = 0; i < rt_config_count(cfg); i++) {
        const char *key = rt_config_key_at(cfg, i);
        const char *a[8], *b[8];
        int na = 0, nb = 0;
        assert_int_equal(rt_config_has(back, key), rt_config_has(cfg, key));
        if (!rt_config_has(cfg, key))
            continue;
        assert_int_equal(rt_config_get_strs(cfg, key, a, 8, &na), 0);
        assert_int_equal(rt_config_get_strs(back, key, b, 8, &nb), 0);
        assert_int_equal(na, nb);
        for (int k = 0; k < na; k++)
            assert_string_equal(a[k], b[k]);
    }
    long l;
    assert_int_equal(rt_config_get_int(back, "train.epochs", 0, &l), 0);
    assert_int_equal(l, 12);
    rt_config_destroy(&back);
    rt_config_destroy(&cfg);

    snprintf(out, sizeof out, "%s/no/dir/resolved.yaml", dir);
    cfg = rt_config_new();
    ASSERT_ERR(rt_config_dump(cfg, out), RT_ERR_IO, "no/dir");
    rt_config_destroy(&cfg);
    free(path);
    eb_test_rmtree(dir);
    free(dir);
}

/* Dotted keys nest in the dump, so the loader bounds their levels as it bounds nesting: a key of
 * 32 levels dumps and loads again; one of 33 (dotted, mixed with nesting, or --set) is an error
 * naming it (the fuzzer's regression input tests/fuzz/corpus/config/regress-deep-dotted-key). */
static void test_deep_keys(void **state)
{
    (void)state;
    char key[128] = "k0", yaml[256];
    for (int i = 1; i < 32; i++)
        snprintf(key + strlen(key), sizeof key - strlen(key), ".k%d", i % 10);
    snprintf(yaml, sizeof yaml, "%s: 1\n", key);
    rt_config_t *cfg = rt_config_new();
    assert_int_equal(rt_config_load_string(cfg, yaml, "deep.yaml"), 0);
    char *text = rt_config_dump_string(cfg);
    assert_non_null(text);
    rt_config_t *back = rt_config_new();
    assert_int_equal(rt_config_load_string(back, text, "dump.yaml"), 0);
    assert_true(rt_config_has(back, key));
    free(text);
    rt_config_destroy(&back);
    rt_config_destroy(&cfg);
    snprintf(yaml, sizeof yaml, "%s.x: 1\n", key);
    cfg = rt_config_new();
    ASSERT_ERR(rt_config_load_string(cfg, yaml, "deep.yaml"), RT_ERR_CONFIG, "at most 32 levels");
    snprintf(yaml, sizeof yaml, "top:\n  %s: 1\n", key);
    ASSERT_ERR(rt_config_load_string(cfg, yaml, "deep.yaml"), RT_ERR_CONFIG, "deep.yaml:2");
    snprintf(yaml, sizeof yaml, "%s.x=1", key);
    ASSERT_ERR(rt_config_set(cfg, yaml), RT_ERR_CONFIG, "invalid key");
    rt_config_destroy(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_get), cmocka_unit_test(test_scalar_parsing),
        cmocka_unit_test(test_overrides),    cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_schema),       cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_deep_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
