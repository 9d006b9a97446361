/*
 * test_train: the YAML path of `eigenbatch train`, `launch` and `eval`. A configuration with an
 * unknown key or a badly typed value is an error naming file:line; a short embedded run on a tiny
 * LMDB leaves a resolved configuration that reloads, metrics.jsonl events with their keys,
 * weights.safetensors that loads into the model and that `eigenbatch eval` scores; `launch` with
 * the same configuration and seed (processes over ipc) ends at the same weights as `train`. ABSA
 * grows the batch through the eigen service thread, or is a clear error in a build without it.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#include "app_opts.h"
#include "eb_test_data.h"
#include "app_weights.h"
#include "nn_net.h"
#include "rt_config.h"

#define N_REC 256 /* records of the tiny dataset (label i: N_REC classes) */
#define SIDE 8    /* 1 x 8 x 8 images */

static char *s_tmp;     /* the test's temporary directory */
static char s_db[4200]; /* the tiny LMDB */

/* Write text to DIR/name and return the path in buf. */
static const char *s_write(const char *name, const char *text, char *buf, size_t cap)
{
    if (snprintf(buf, cap, "%s/%s", s_tmp, name) >= (int)cap)
        fail();
    FILE *f = fopen(buf, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return buf;
}

/* Whole file as a string (caller frees). */
static char *s_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc((size_t)n + 1, 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

/* The configuration of the short runs. */
static const char *s_config(char *buf, size_t cap)
{
    char text[16384];
    snprintf(text, sizeof text,
             "model: {name: cnn, classes: %d}\n"
             "data:\n"
             "  train: %s\n"
             "  test: %s\n"
             "  crop_pad: 1\n"
             "  flip: true\n"
             /* static shares: the runs compared must split every batch the same way */
             "cluster: {shards: 2, workers: 2, transport: inproc, balance: static}\n"
             "schedule:\n"
             "  method: BL\n"
             "  batch: 64\n"
             "  lr: 0.05\n"
             "  epochs: 2\n"
             "  decay_epochs: [1]\n"
             "train: {micro_batch: 32, log_every: 2, eval_every: 1, seed: 7}\n",
             N_REC, s_db, s_db);
    return s_write("run.yaml", text, buf, cap);
}

static void test_config_errors(void **state)
{
    (void)state;
    char path[4300], cmd[9000], err[4300];
    snprintf(err, sizeof err, "%s/err.txt", s_tmp);
    /* a typo: the message names the file, the line and the key */
    s_write("typo.yaml", "model:\n  name: cnn\ntrian:\n  epochs: 3\n", path, sizeof path);
    snprintf(cmd, sizeof cmd, "'%s' train --config '%s' 2>'%s'", eb_test_binary(), path, err);
    assert_int_equal(eb_test_run(cmd), 2);
    char *msg = s_slurp(err);
    char want[4400];
    snprintf(want, sizeof want, "%s:4", path);
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, "trian.epochs"));
    free(msg);
    /* a value of the wrong type */
    s_write("type.yaml", "schedule:\n  batch: ten\n", path, sizeof path);
    snprintf(cmd, sizeof cmd, "'%s' train --config '%s' 2>'%s'", eb_test_binary(), path, err);
    assert_int_equal(eb_test_run(cmd), 2);
    msg = s_slurp(err);
    snprintf(want, sizeof want, "%s:2", path);
    assert_non_null(strstr(msg, want));
    assert_non_null(strstr(msg, "schedule.batch"));
    free(msg);
    /* the same checks reach launch, and --set overrides are checked too */
    snprintf(cmd, sizeof cmd, "'%s' launch --config '%s' 2>/dev/null", eb_test_binary(), path);
    assert_int_equal(eb_test_run(cmd), 2);
    s_write("ok.yaml", "model: {name: cnn}\n", path, sizeof path);
    snprintf(cmd, sizeof cmd, "'%s' train --config '%s' --set schedule.lrr=0.1 2>'%s'",
             eb_test_binary(), path, err);
    assert_int_equal(eb_test_run(cmd), 2);
    msg = s_slurp(err);
    assert_non_null(strstr(msg, "schedule.lrr"));
    free(msg);
    /* the option table itself: every default has its key's type and passes its check */
    char *argv[] = {"train", "--data", "unused", NULL};
    struct app_opts o;
    rt_config_t *cfg = NULL;
    assert_int_equal(app_opts_parse(3, argv, "", &o, &cfg), 0);
    rt_config_destroy(&cfg);
}

/* Check every line of metrics.jsonl: valid JSON, known events with their keys. */
static void s_check_metrics(const char *path, int *n_step, int *n_epoch)
{
    static const char *const step_keys[] = {
        "time",  "epoch",        "step",    "loss",           "batch_size", "lr",
        "gamma", "images_per_s", "elapsed", "train_accuracy", NULL};
    static const char *const epoch_keys[] = {
        "time",          "epoch",     "step",       "loss", "train_accuracy",
        "test_accuracy", "test_loss", "batch_size", "lr",   "gamma",
        "images_per_s",  "elapsed",   NULL};
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    *n_step = *n_epoch = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        assert_non_null(j);
        const char *ev = json_string_value(json_object_get(j, "event"));
        assert_non_null(ev);
        const char *const *keys = NULL;
        if (!strcmp(ev, "step")) {
            keys = step_keys;
            (*n_step)++;
        } else if (!strcmp(ev, "epoch")) {
            keys = epoch_keys;
            assert_int_equal(json_integer_value(json_object_get(j, "epoch")), *n_epoch);
            double acc = json_number_value(json_object_get(j, "test_accuracy"));
            assert_true(acc >= 0 && acc <= 1);
            (*n_epoch)++;
        }
        if (!keys) { /* other events (the eigen service's "eig") are not this test's */
            json_decref(j);
            continue;
        }
        for (int k = 0; keys[k]; k++)
            if (!json_object_get(j, keys[k])) {
                fprintf(stderr, "event %s lacks %s\n", ev, keys[k]);
                fail();
            }
        json_decref(j);
    }
    fclose(f);
}

/* Load DIR/weights.safetensors into a fresh cnn; caller destroys the net. */
static nn_net_t *s_load(const char *dir)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    nn_net_t *net = nn_zoo_new("cnn", 1, SIDE, SIDE, N_REC, 32, NULL);
    assert_non_null(net);
    assert_int_equal(app_weights_load(net, path), 0);
    return net;
}

static void test_train_outputs(void **state)
{
    (void)state;
    char cfgp[4300], out[4300], cmd[20000], path[4400];
    s_config(cfgp, sizeof cfgp);
    snprintf(out, sizeof out, "%s/run-train", s_tmp);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' train --config '%s' --output-dir '%s' --seed 3 "
             "--set train.progress_s=0 >/dev/null",
             eb_test_binary(), cfgp, out);
    assert_int_equal(eb_test_run(cmd), 0);
    /* the resolved configuration reloads and validates; overrides are in it */
    snprintf(path, sizeof path, "%s/config.yaml", out);
    char *argv[] = {"train", "--config", path, NULL};
    struct app_opts o;
    rt_config_t *cfg = NULL;
    assert_int_equal(app_opts_parse(3, argv, "", &o, &cfg), 0);
    long seed = 0, batch = 0;
    const char *dir = NULL;
    assert_int_equal(rt_config_get_int(cfg, "train.seed", 0, &seed), 0);
    assert_int_equal(rt_config_get_int(cfg, "schedule.batch", 0, &batch), 0);
    assert_int_equal(rt_config_get_str(cfg, "output.dir", NULL, &dir), 0);
    assert_int_equal(seed, 3);
    assert_int_equal(batch, 64);
    assert_string_equal(dir, out);
    rt_config_destroy(&cfg);
    /* metrics: 8 steps (4 per epoch) logged every 2, one event per epoch */
    int n_step, n_epoch;
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    s_check_metrics(path, &n_step, &n_epoch);
    assert_int_equal(n_step, 4);
    assert_int_equal(n_epoch, 2);
    /* the weights load; eval prints accuracy JSON as its last line */
    nn_net_t *net = s_load(out);
    nn_net_destroy(&net);
    char res[4400];
    snprintf(res, sizeof res, "%s/eval.txt", s_tmp);
    snprintf(cmd, sizeof cmd,
             "'%s' eval --model cnn --weights '%s/weights.safetensors' --data '%s' --classes %d "
             "--batch 100 >'%s'",
             eb_test_binary(), out, s_db, N_REC, res);
    assert_int_equal(eb_test_run(cmd), 0);
    char *txt = s_slurp(res);
    char *last = txt;
    for (char *p = txt; *p; p++)
        if (*p == '\n' && p[1])
            last = p + 1;
    json_error_t e;
    json_t *j = json_loads(last, JSON_DISABLE_EOF_CHECK, &e);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), N_REC);
    double acc = json_number_value(json_object_get(j, "accuracy"));
    assert_true(acc >= 0 && acc <= 1);
    assert_true(isfinite(json_number_value(json_object_get(j, "loss"))));
    json_decref(j);
    free(txt);
    /* a weights file of another model is an error */
    snprintf(cmd, sizeof cmd,
             "'%s' eval --model mlp --weights '%s/weights.safetensors' --data '%s' --classes %d "
             "2>/dev/null >/dev/null",
             eb_test_binary(), out, s_db, N_REC);
    assert_int_equal(eb_test_run(cmd), 1);
}

static void test_train_launch_same(void **state)
{
    (void)state;
    char cfgp[4300], a[4300], b[4300], cmd[12000];
    s_config(cfgp, sizeof cfgp);
    snprintf(a, sizeof a, "%s/same-train", s_tmp);
    snprintf(b, sizeof b, "%s/same-launch", s_tmp);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' train --config '%s' --output-dir '%s' --seed 11 >/dev/null",
             eb_test_binary(), cfgp, a);
    assert_int_equal(eb_test_run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' launch --config '%s' --output-dir '%s' --seed 11 >/dev/null",
             eb_test_binary(), cfgp, b);
    assert_int_equal(eb_test_run(cmd), 0);
    char path[4400];
    snprintf(path, sizeof path, "%s/config.yaml", b);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    fclose(f);
    nn_net_t *na = s_load(a), *nb = s_load(b);
    nn_net_t *init = nn_zoo_new("cnn", 1, SIDE, SIDE, N_REC, 32, NULL);
    assert_non_null(init);
    nn_net_init(init, 11);
    size_t np = nn_net_param_count(na), nbuf = nn_net_buffer_count(na);
    double worst = 0, moved = 0;
    for (size_t i = 0; i < np; i++) {
        worst = fmax(worst, eb_test_reldiff(nn_net_params(na)[i], nn_net_params(nb)[i], 1e-3));
        moved = fmax(moved, fabs((double)nn_net_params(na)[i] - nn_net_params(init)[i]));
    }
    for (size_t i = 0; i < nbuf; i++)
        worst = fmax(worst, eb_test_reldiff(nn_net_buffers(na)[i], nn_net_buffers(nb)[i], 1e-3));
    assert_true(moved > 1e-4); /* the run trained */
    assert_true(worst <= 1e-5);
    nn_net_destroy(&na);
    nn_net_destroy(&nb);
    nn_net_destroy(&init);
}

/* ABSA: the batch grows through train's eigen-service thread, and each decision reaches
 * metrics.jsonl. */
static void test_train_abs(void **state)
{
    (void)state;
    char cfgp[4300], out[4300], cmd[20000], err[4300];
    s_config(cfgp, sizeof cfgp);
    snprintf(out, sizeof out, "%s/run-abs", s_tmp);
    snprintf(err, sizeof err, "%s/abs-err.txt", s_tmp);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' train --config '%s' --output-dir '%s' --set schedule.method=ABSA "
             "--set schedule.batch=32 --set schedule.batch_max=128 --set schedule.epochs=3 "
             "--set schedule.decay_epochs=[] --set abs.kappa=1 --set abs.hessian_batch=32 "
             "--set abs.decisions=sync "
             "--set cluster.timeout_ms=20000 >/dev/null 2>'%s'",
             eb_test_binary(), cfgp, out, err);
    int rc = eb_test_run(cmd);
    char *msg = s_slurp(err);
    if (rc)
        fprintf(stderr, "%s", msg);
    free(msg);
    assert_int_equal(rc, 0);
    char path[4400], line[8192];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    int n_step, n_epoch;
    s_check_metrics(path, &n_step, &n_epoch);
    assert_int_equal(n_epoch, 3);
    /* kappa = 1: every measured epoch doubles B, so the last epoch runs at a larger batch */
    long last_b = 0;
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        if (!strcmp(json_string_value(json_object_get(j, "event")), "epoch"))
            last_b = (long)json_integer_value(json_object_get(j, "batch_size"));
        json_decref(j);
    }
    fclose(f);
    assert_true(last_b > 32);
}

/* A training set with two records that are no Datum: the run stops naming one, unless
 * data.skip_bad_records tolerates both; then it trains and its epoch events count them. */
static void test_train_bad_records(void **state)
{
    (void)state;
    char cfgp[4300], bad_db[4300], out[4300], cmd[20000], path[4400], log[4400];
    s_config(cfgp, sizeof cfgp);
    snprintf(bad_db, sizeof bad_db, "%s/bad-db", s_tmp);
    static const size_t bad[2] = {10, 100};
    eb_test_make_raw_db_bad(bad_db, N_REC, 1, SIDE, SIDE, bad, 2);
    snprintf(out, sizeof out, "%s/run-bad", s_tmp);
    snprintf(log, sizeof log, "%s/bad.log", s_tmp);
#define S_BAD_RUN                                                                                  \
    "EB_LOG=warn '%s' train --config '%s' --output-dir '%s' --set train.progress_s=0 --set "       \
    "cluster.workers=1 --set data.train='%s'"
    int k = snprintf(cmd, sizeof cmd, S_BAD_RUN, eb_test_binary(), cfgp, out, bad_db);
    snprintf(cmd + k, sizeof cmd - (size_t)k, " >/dev/null 2>'%s'", log);
    assert_int_equal(eb_test_run(cmd), 1);
    char *txt = s_slurp(log);
    assert_true(strstr(txt, "record 00000010") || strstr(txt, "record 00000100"));
    assert_non_null(strstr(txt, "data.skip_bad_records"));
    free(txt);
    k = snprintf(cmd, sizeof cmd, S_BAD_RUN, eb_test_binary(), cfgp, out, bad_db);
    snprintf(cmd + k, sizeof cmd - (size_t)k, " --set data.skip_bad_records=2 >/dev/null 2>'%s'",
             log);
    assert_int_equal(eb_test_run(cmd), 0);
    txt = s_slurp(log);
    assert_non_null(strstr(txt, "record 00000010: "));
    assert_non_null(strstr(txt, "record 00000100: "));
    free(txt);
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    json_t *ev = eb_test_events(path, "epoch");
    assert_int_equal(json_array_size(ev), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 1), "bad_records")), 2);
    json_decref(ev);
}

static int s_setup(void **state)
{
    (void)state;
    s_tmp = eb_test_tmpdir();
    snprintf(s_db, sizeof s_db, "%s/db", s_tmp);
    eb_test_make_raw_db(s_db, N_REC, 1, SIDE, SIDE);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    eb_test_rmtree(s_tmp);
    free(s_tmp);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),     cmocka_unit_test(test_train_outputs),
        cmocka_unit_test(test_train_launch_same), cmocka_unit_test(test_train_abs),
        cmocka_unit_test(test_train_bad_records),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
