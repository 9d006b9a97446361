/*
 * test_tboard: TensorBoard event files, read back by an independent reader
 * (tests/tools/tfevents_read.py: its own TFRecord framing, Debian's CRC32C, its own protobuf
 * decoding). The CRC32C is the standard one; scalars written by rt_tboard come back with their
 * tags, steps and values; a `train` run writes, beside metrics.jsonl, every epoch's test accuracy,
 * loss, batch size and learning rate as scalars at the epoch's step, and none with
 * `output.tensorboard: false`. Skips (77) when /usr/bin/python3 cannot import crc32c.
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_tboard.h"

#define EPOCHS 2

/* Run the independent reader on dir; its JSON (caller decrefs). */
static json_t *s_read_events(const char *dir)
{
    char out[4400], cmd[9000];
    snprintf(out, sizeof out, "%s/events.json", dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/tools/tfevents_read.py' '%s' > '%s'",
             eb_test_source_dir(), dir, out);
    assert_int_equal(eb_test_run(cmd), 0);
    json_error_t err;
    json_t *j = json_load_file(out, 0, &err);
    if (!j)
        fail_msg("%s: %s", out, err.text);
    remove(out);
    return j;
}

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(rt_tboard_crc32c("123456789", 9), 0xe3069283u);
    assert_int_equal(rt_tboard_crc32c("", 0), 0);
}

static void test_scalars_round_trip(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    rt_tboard_t *t = NULL;
    assert_int_equal(rt_tboard_open(tmp, &t), 0);
    for (int s = 0; s < 5; s++) {
        assert_int_equal(rt_tboard_scalar(t, "loss", s * 10, 1.7e9 + s, 1.0f / (float)(s + 1)), 0);
        assert_int_equal(rt_tboard_scalar(t, "lr", s * 10, 1.7e9 + s, 0.1f), 0);
    }
    rt_tboard_close(&t);
    json_t *j = s_read_events(tmp);
    assert_int_equal(json_integer_value(json_object_get(j, "files")), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "version"), 0)),
                        "brain.Event:2");
    json_t *loss = json_object_get(json_object_get(j, "scalars"), "loss");
    assert_int_equal(json_array_size(loss), 5);
    for (int s = 0; s < 5; s++) {
        json_t *p = json_array_get(loss, (size_t)s);
        assert_int_equal(json_integer_value(json_array_get(p, 0)), s * 10);
        assert_true(fabs(json_number_value(json_array_get(p, 1)) - 1.0 / (s + 1)) < 1e-6);
    }
    json_decref(j);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_train_writes_scalars(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], out[4200], off[4200], cmd[24000];
    snprintf(db, sizeof db, "%s/db", tmp);
    snprintf(out, sizeof out, "%s/run", tmp);
    snprintf(off, sizeof off, "%s/off", tmp);
    eb_test_make_raw_db(db, 64, 1, 8, 8);
    const char *args = "train --model cnn --classes 64 --batch 16 --micro-batch 16 --lr 0.01 "
                       "--progress-s 0 --checkpoint-every 0";
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' %s --data '%s' --test '%s' --epochs %d --output-dir '%s' "
             ">/dev/null && EB_LOG=warn '%s' %s --data '%s' --epochs 1 --output-dir '%s' "
             "--tensorboard false >/dev/null",
             eb_test_binary(), args, db, db, EPOCHS, out, eb_test_binary(), args, db, off);
    assert_int_equal(eb_test_run(cmd), 0);
    json_t *j = s_read_events(out);
    assert_true(json_integer_value(json_object_get(j, "files")) >= 1);
    json_t *sc = json_object_get(j, "scalars");
    const char *tags[] = {"epoch/test_accuracy", "epoch/loss", "epoch/batch_size", "epoch/lr"};
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
        json_t *series = json_object_get(sc, tags[t]);
        if (json_array_size(series) != EPOCHS)
            fail_msg("%s: %zu points, expected %d", tags[t], json_array_size(series), EPOCHS);
        /* at the steps completed at each epoch end: 4 steps of 16 per epoch of 64 */
        for (int e = 0; e < EPOCHS; e++)
            assert_int_equal(json_integer_value(json_array_get(json_array_get(series, e), 0)),
                             4 * (e + 1));
    }
    json_t *acc = json_object_get(sc, "epoch/test_accuracy");
    double a = json_number_value(json_array_get(json_array_get(acc, EPOCHS - 1), 1));
    assert_true(a >= 0 && a <= 1);
    json_decref(j);
    j = s_read_events(off);
    assert_int_equal(json_integer_value(json_object_get(j, "files")), 0);
    json_decref(j);
    eb_test_rmtree(tmp);
    free(tmp);
}

static int s_setup(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import crc32c' >/dev/null 2>&1") != 0) {
        print_message("/usr/bin/python3 cannot import crc32c (python3-crc32c): skipped\n");
        exit(77);
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_scalars_round_trip),
        cmocka_unit_test(test_train_writes_scalars),
    };
    return cmocka_run_group_tests(tests, s_setup, NULL);
}
