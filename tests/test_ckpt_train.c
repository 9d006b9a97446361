/*
 * test_ckpt_train: checkpoints and `--resume` through the real `eigenbatch train` binary, on a tiny
 * LMDB (tests/helpers/eb_test_ckpt.h). An ABS run with `abs.decisions: sync` (deterministic: one
 * worker, so no order of summed pushes) trained E epochs straight ends with exactly the weights
 * (bitwise) of a run stopped after E1 epochs and resumed with `--resume auto` to E, after a
 * `resume` event naming the checkpoint of epoch E1 and training only the epochs after it; the eigen
 * service's decisions after the resume (eigenvalue, lambda_ref, batch, lr) equal the straight
 * run's, so the ABS state came through the checkpoint; metrics.jsonl is appended to. `auto` skips
 * a newest checkpoint without manifest (naming it) and resumes from the one before, again to the
 * same weights (its resume event names that one). keep = 2 leaves the two newest checkpoints. A
 * corrupted shard file, a missing PATH and a checkpoint of another model or shard count are errors
 * naming the file and the field; `auto` with only a corrupted one starts fresh (no resume event).
 * A run killed after the checkpoint at an epoch's end but before that epoch's event was written
 * gets the event back when it resumes: evaluated on the checkpoint's weights, the same test
 * results, marked recovered.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "eb_test_ckpt.h"

static struct eb_ckpt_fixture s_f; /* the tiny dataset and the configuration */

/* Straight vs. interrupted and resumed, twice (the second time from an older checkpoint because
 * the newest lacks its manifest); then keep = 2. */
static void test_resume_same_weights(void **state)
{
    (void)state;
    char a[4300], b[4300], wa[4400], wb[4400], extra[4400], path[4500], err[4400];
    snprintf(a, sizeof a, "%s/straight", s_f.tmp);
    snprintf(b, sizeof b, "%s/resumed", s_f.tmp);
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d", EB_CKPT_EPOCHS);
    eb_ckpt_run_ok(&s_f, "train", a, extra);
    /* the interrupted run: the same configuration, stopped after EB_CKPT_SPLIT epochs */
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d", EB_CKPT_SPLIT);
    eb_ckpt_run_ok(&s_f, "train", b, extra);
    snprintf(path, sizeof path, "%s/checkpoints/epoch-%06d/MANIFEST.json", b, EB_CKPT_SPLIT);
    assert_true(eb_ckpt_exists(path));
    struct eb_ckpt_point from;
    eb_ckpt_newest(b, &from);
    assert_int_equal(from.epoch, EB_CKPT_SPLIT);
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d --resume auto", EB_CKPT_EPOCHS);
    eb_ckpt_run_ok(&s_f, "train", b, extra);
    eb_ckpt_assert_resumed(b, &from, EB_CKPT_EPOCHS);
    snprintf(wa, sizeof wa, "%s/weights.safetensors", a);
    snprintf(wb, sizeof wb, "%s/weights.safetensors", b);
    eb_ckpt_same_file(wa, wb);
    /* the decisions after the resume are the straight run's: the ABS state came through */
    int ea, eb, ra, rb;
    json_t *ja = eb_ckpt_eig_events(a, EB_CKPT_SPLIT - 1, &ea, &ra),
           *jb = eb_ckpt_eig_events(b, EB_CKPT_SPLIT - 1, &eb, &rb);
    assert_true(json_array_size(ja) >= 2);
    if (!json_equal(ja, jb)) {
        char *x = json_dumps(ja, 0), *y = json_dumps(jb, 0);
        fprintf(stderr, "straight %s\nresumed  %s\n", x, y);
        free(x);
        free(y);
    }
    assert_true(json_equal(ja, jb));
    json_decref(ja);
    json_decref(jb);
    /* metrics.jsonl was appended to: every epoch's event, and the resume event */
    assert_int_equal(ea, EB_CKPT_EPOCHS);
    assert_int_equal(ra, 0);
    assert_int_equal(eb, EB_CKPT_EPOCHS);
    assert_int_equal(rb, 1);
    /* keep = 2 (the default): the two newest of the EB_CKPT_EPOCHS checkpoints remain */
    for (int e = 1; e <= EB_CKPT_EPOCHS; e++) {
        snprintf(path, sizeof path, "%s/checkpoints/epoch-%06d", b, e);
        assert_int_equal(eb_ckpt_exists(path), e > EB_CKPT_EPOCHS - 2);
    }

    /* the newest checkpoint loses its manifest (a crash before it was written): auto warns,
     * names it, and resumes from the one before; the result is the same again */
    char c[4300];
    snprintf(c, sizeof c, "%s/skip", s_f.tmp);
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d", EB_CKPT_SPLIT + 1);
    eb_ckpt_run_ok(&s_f, "train", c, extra);
    snprintf(path, sizeof path, "%s/checkpoints/epoch-%06d/MANIFEST.json", c, EB_CKPT_SPLIT + 1);
    assert_int_equal(unlink(path), 0);
    eb_ckpt_newest(c, &from);
    assert_int_equal(from.epoch, EB_CKPT_SPLIT);
    snprintf(err, sizeof err, "%s/skip-err.txt", s_f.tmp);
    snprintf(extra, sizeof extra, "--set schedule.epochs=%d --resume auto", EB_CKPT_EPOCHS);
    assert_int_equal(eb_ckpt_run(&s_f, "train", c, extra, err), 0);
    char *msg = eb_ckpt_slurp(err);
    assert_non_null(msg);
    snprintf(path, sizeof path, "epoch-%06d", EB_CKPT_SPLIT + 1);
    if (!strstr(msg, path) || !strstr(msg, "skipping"))
        fprintf(stderr, "%s\n", msg);
    assert_non_null(strstr(msg, "skipping"));
    assert_non_null(strstr(msg, path));
    free(msg);
    eb_ckpt_assert_resumed(c, &from, EB_CKPT_EPOCHS);
    snprintf(path, sizeof path, "%s/weights.safetensors", c);
    eb_ckpt_same_file(wa, path);
}

/* The "epoch" event of epoch e in dir's metrics.jsonl (the last one; caller decrefs), or NULL. */
static json_t *s_epoch_event(const char *dir, int e)
{
    char path[4500];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    json_t *all = eb_test_events(path, "epoch"), *found = NULL;
    for (size_t i = 0; i < json_array_size(all); i++) {
        json_t *o = json_array_get(all, i);
        if (json_integer_value(json_object_get(o, "epoch")) == e) {
            json_decref(found);
            found = json_incref(o);
        }
    }
    json_decref(all);
    return found;
}

/* Drop the lines of dir's metrics.jsonl that hold the epoch event of epoch e (a run killed
 * between the checkpoint at e's end and that event). */
static void s_drop_epoch_event(const char *dir, int e)
{
    char path[4500], tmp[4600], key[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(key, sizeof key, "\"epoch\":%d,", e);
    FILE *in = fopen(path, "r"), *out = fopen(tmp, "w");
    assert_non_null(in);
    assert_non_null(out);
    char line[65536];
    int dropped = 0;
    while (fgets(line, sizeof line, in)) {
        if (strstr(line, "\"event\":\"epoch\"") && strstr(line, key)) {
            dropped++;
            continue;
        }
        fputs(line, out);
    }
    fclose(in);
    fclose(out);
    assert_int_equal(dropped, 1);
    assert_int_equal(rename(tmp, path), 0);
}

static void test_resume_recovers_epoch_event(void **state)
{
    (void)state;
    char d[4300], extra[8800];
    snprintf(d, sizeof d, "%s/lost-event", s_f.tmp);
    snprintf(extra, sizeof extra,
             "--set schedule.method=BL --set data.test='%s' --set schedule.epochs=%d", s_f.db,
             EB_CKPT_SPLIT);
    eb_ckpt_run_ok(&s_f, "train", d, extra);
    json_t *orig = s_epoch_event(d, EB_CKPT_SPLIT - 1);
    assert_non_null(orig);
    double acc = json_number_value(json_object_get(orig, "test_accuracy"));
    double loss = json_number_value(json_object_get(orig, "test_loss"));
    assert_true(acc >= 0 && loss > 0);
    s_drop_epoch_event(d, EB_CKPT_SPLIT - 1);
    snprintf(extra, sizeof extra,
             "--set schedule.method=BL --set data.test='%s' --set schedule.epochs=%d "
             "--resume auto",
             s_f.db, EB_CKPT_SPLIT + 1);
    eb_ckpt_run_ok(&s_f, "train", d, extra);
    json_t *back = s_epoch_event(d, EB_CKPT_SPLIT - 1);
    assert_non_null(back);
    assert_true(json_is_true(json_object_get(back, "recovered")));
    assert_true(json_number_value(json_object_get(back, "test_accuracy")) == acc);
    assert_true(json_number_value(json_object_get(back, "test_loss")) == loss);
    json_t *next = s_epoch_event(d, EB_CKPT_SPLIT); /* and the run went on */
    assert_non_null(next);
    assert_null(json_object_get(next, "recovered"));
    json_decref(orig);
    json_decref(back);
    json_decref(next);
}

/* Bad checkpoints are errors naming the file and the field. */
static void test_resume_errors(void **state)
{
    (void)state;
    char d[4300], extra[8800], path[4500], err[4400], ck[4400];
    snprintf(d, sizeof d, "%s/bad", s_f.tmp);
    snprintf(err, sizeof err, "%s/bad-err.txt", s_f.tmp);
    eb_ckpt_run_ok(&s_f, "train", d, "--set schedule.epochs=1 --set schedule.method=BL");
    snprintf(ck, sizeof ck, "%s/checkpoints/epoch-000001", d);
    /* a missing PATH */
    snprintf(extra, sizeof extra, "--set schedule.method=BL --resume '%s/nowhere'", d);
    assert_int_equal(eb_ckpt_run(&s_f, "train", d, extra, err), 1);
    char *msg = eb_ckpt_slurp(err);
    assert_non_null(strstr(msg, "nowhere"));
    free(msg);
    /* another model (a different parameter count) */
    snprintf(extra, sizeof extra, "--set schedule.method=BL --set model.name=mlp --resume '%s'",
             ck);
    assert_int_equal(eb_ckpt_run(&s_f, "train", d, extra, err), 1);
    msg = eb_ckpt_slurp(err);
    if (!strstr(msg, "n_params"))
        fprintf(stderr, "%s\n", msg);
    assert_non_null(strstr(msg, "MANIFEST.json"));
    assert_non_null(strstr(msg, "n_params"));
    free(msg);
    /* another shard count */
    snprintf(extra, sizeof extra, "--set schedule.method=BL --set cluster.shards=3 --resume '%s'",
             ck);
    assert_int_equal(eb_ckpt_run(&s_f, "train", d, extra, err), 1);
    msg = eb_ckpt_slurp(err);
    assert_non_null(strstr(msg, "n_shards"));
    free(msg);
    /* a corrupted shard file: its crc32 no longer matches */
    snprintf(path, sizeof path, "%s/shard-1.safetensors", ck);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, -3, SEEK_END);
    int ch = fgetc(f);
    fseek(f, -3, SEEK_END);
    fputc(ch ^ 0x5a, f);
    fclose(f);
    snprintf(extra, sizeof extra, "--set schedule.method=BL --resume '%s'", ck);
    assert_int_equal(eb_ckpt_run(&s_f, "train", d, extra, err), 1);
    msg = eb_ckpt_slurp(err);
    if (!strstr(msg, "shard-1.safetensors"))
        fprintf(stderr, "%s\n", msg);
    assert_non_null(strstr(msg, "shard-1.safetensors"));
    assert_non_null(strstr(msg, "crc32"));
    free(msg);
    /* and `auto` skips it: no complete checkpoint left, a fresh start */
    assert_int_equal(eb_ckpt_run(&s_f, "train", d,
                                 "--set schedule.epochs=1 --set schedule.method=BL --resume auto",
                                 err),
                     0);
    msg = eb_ckpt_slurp(err);
    assert_non_null(strstr(msg, "epoch-000001"));
    free(msg);
    int n_epoch, n_resume;
    json_t *j = eb_ckpt_eig_events(d, 0, &n_epoch, &n_resume);
    json_decref(j);
    assert_int_equal(n_resume, 0);
}

static int s_setup(void **state)
{
    (void)state;
    eb_ckpt_setup(&s_f);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    eb_ckpt_teardown(&s_f);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_same_weights),
        cmocka_unit_test(test_resume_errors),
        cmocka_unit_test(test_resume_recovers_epoch_event),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
