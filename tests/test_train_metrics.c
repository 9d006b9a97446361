/*
 * test_train_metrics: the epoch events of metrics.jsonl cover every worker's samples. With a
 * learning rate of 1e-30 (and no momentum or weight decay) the float weights never move, so an
 * epoch's train loss and accuracy are those of the initial weights over the whole training set.
 * `eigenbatch train` with one worker and with two workers of unequal shares (weights 3:1; every
 * share a whole number of micro-batches, so that BatchNorm sees the same groups) must then report
 * the same values: the two-worker run's numbers are not worker 0's three quarters of the data.
 * `launch` (the roles as processes over ipc) reports the same.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#include "rt_datum.h"
#include "rt_db.h"

#define N_REC 64 /* records of 1 x 8 x 8, two classes */
#define SIDE 8
#define EPOCHS 2

/* Two classes: label 1 for every third record; pixels from the index. */
static void s_make_db(const char *dir)
{
    rt_db_writer_t *wr = NULL;
    assert_int_equal(rt_db_writer_new(dir, 0, &wr), 0);
    uint8_t data[SIDE * SIDE], buf[SIDE * SIDE + 64];
    for (size_t i = 0; i < N_REC; i++) {
        for (size_t k = 0; k < sizeof data; k++)
            data[k] = (uint8_t)((i * 53 + k * 29 + (i % 3 == 0 ? 90 : 0)) & 0xff);
        struct rt_datum d = {.kind = RT_DATUM_RAW,
                             .channels = 1,
                             .height = SIDE,
                             .width = SIDE,
                             .label = i % 3 == 0,
                             .data = data,
                             .data_len = sizeof data};
        size_t len;
        assert_int_equal(rt_datum_pack(&d, buf, sizeof buf, &len), 0);
        char key[16];
        int kl = snprintf(key, sizeof key, "%08zu", i);
        assert_int_equal(rt_db_writer_put(wr, key, (size_t)kl, buf, len), 0);
    }
    assert_int_equal(rt_db_writer_finish(wr), 0);
    rt_db_writer_destroy(&wr);
}

/* Train (cmd_name: "train", or "launch" for processes) with `workers` workers; the epoch events'
 * loss and train accuracy into loss[], acc[]. */
static void s_train(const char *cmd_name, const char *tmp, const char *db, const char *workers,
                    const char *name, double *loss, double *acc)
{
    char cfg[4400], out[4400], cmd[16384];
    snprintf(cfg, sizeof cfg, "%s/%s.yaml", tmp, name);
    snprintf(out, sizeof out, "%s/%s", tmp, name);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f,
            "model: {name: cnn, classes: 2}\n"
            "data: {train: '%s'}\n"
            "cluster: {shards: 2, %s, transport: inproc, balance: static}\n"
            "schedule: {method: BL, batch: 16, lr: 1.0e-30, momentum: 0, weight_decay: 0, "
            "epochs: %d}\n"
            "train: {micro_batch: 4, log_every: 1000, progress_s: 1000}\n",
            db, workers, EPOCHS);
    fclose(f);
    snprintf(cmd, sizeof cmd, "EB_LOG=warn '%s' %s --config '%s' --output-dir '%s' >/dev/null",
             eb_test_binary(), cmd_name, cfg, out);
    int st = system(cmd);
    assert_true(st != -1 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    char path[4500];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        const char *ev = json_string_value(json_object_get(j, "event"));
        if (ev && !strcmp(ev, "epoch")) {
            assert_true(n < EPOCHS);
            loss[n] = json_number_value(json_object_get(j, "loss"));
            acc[n] = json_number_value(json_object_get(j, "train_accuracy"));
            n++;
        }
        json_decref(j);
    }
    fclose(f);
    assert_int_equal(n, EPOCHS);
}

static void test_epoch_metrics_cover_every_worker(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200];
    snprintf(db, sizeof db, "%s/db", tmp);
    s_make_db(db);
    double l1[EPOCHS], a1[EPOCHS], l2[EPOCHS], a2[EPOCHS], l3[EPOCHS], a3[EPOCHS];
    s_train("train", tmp, db, "workers: 1", "one", l1, a1);
    s_train("train", tmp, db, "workers: 2, weights: [3, 1]", "two", l2, a2);
    /* the same over processes (launch: shards and workers over ipc) */
    s_train("launch", tmp, db, "workers: 2, weights: [3, 1]", "procs", l3, a3);
    for (int e = 0; e < EPOCHS; e++) {
        if (fabs(a3[e] - a1[e]) > 0.5 / N_REC)
            fail_msg("epoch %d: train accuracy %g with 2 processes, %g with 1", e, a3[e], a1[e]);
        if (eb_test_reldiff(l3[e], l1[e], 1e-6) > 1e-4)
            fail_msg("epoch %d: train loss %.9g with 2 processes, %.9g with 1", e, l3[e], l1[e]);
        assert_true(isfinite(l1[e]) && l1[e] > 0 && a1[e] >= 0 && a1[e] <= 1);
        /* whole-epoch accuracy: a multiple of 1/N_REC, the same count of correct samples */
        if (fabs(a2[e] - a1[e]) > 0.5 / N_REC)
            fail_msg("epoch %d: train accuracy %g with 2 workers, %g with 1", e, a2[e], a1[e]);
        if (eb_test_reldiff(l2[e], l1[e], 1e-6) > 1e-4)
            fail_msg("epoch %d: train loss %.9g with 2 workers, %.9g with 1", e, l2[e], l1[e]);
    }
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_epoch_metrics_cover_every_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
