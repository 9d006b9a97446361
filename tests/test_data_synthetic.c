/*
 * test_data_synthetic: `eigenbatch convert synthetic` end to end, run as the built binary in a
 * temporary directory. The JPEG set holds classes x per-class records with label i % classes,
 * image sides that vary within +-20% of the nominal size, some greyscale images, the same bytes
 * for the same seed and others for another; the raw set is exactly WxH; an existing database is
 * kept without --force. A small cnn learns the classes (held-out records of another seed, well
 * above chance). A short resnet18 run with random_resized crops trains on the JPEG set to
 * the end, and `eigenbatch eval` with the run's data options scores its weights exactly as the
 * trainer's own test evaluation did (and differently without data.eval_resize).
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "rt_datum.h"
#include "rt_db.h"
#include "rt_jpeg.h"

#define S_CLASSES 8     /* classes of the sets */
#define S_PER_CLASS 8   /* records per class */
#define S_SIDE 48       /* nominal side of the JPEG set */
#define S_LOSS_TOL 1e-5 /* eval and the trainer run the same float code on the same records */

static char *s_tmp; /* the test's temporary directory */

/* Run the binary with args (a shell fragment), output to /dev/null; returns its exit status. */
static int s_run(const char *args)
{
    char cmd[20000];
    snprintf(cmd, sizeof cmd, "EB_LOG=warn '%s' %s >/dev/null 2>&1", eb_test_binary(), args);
    return eb_test_run(cmd);
}

/* Convert the synthetic set `name` (extra arguments appended) into s_tmp/name; path in buf. */
static int s_convert(const char *name, const char *extra, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/%s", s_tmp, name);
    char args[4600];
    snprintf(args, sizeof args, "convert synthetic --out '%s' --classes %d --per-class %d %s", buf,
             S_CLASSES, S_PER_CLASS, extra);
    return s_run(args);
}

/* Every record's bytes of the database at dir, concatenated (caller frees); *len its size. */
static uint8_t *s_all_bytes(const char *dir, size_t *len)
{
    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(dir, &db), 0);
    size_t n = rt_db_count(db), total = 0;
    uint8_t *all = NULL;
    for (size_t i = 0; i < n; i++) {
        const void *v;
        size_t l;
        assert_int_equal(rt_db_record(db, i, &v, &l), 0);
        all = realloc(all, total + l);
        assert_non_null(all);
        memcpy(all + total, v, l);
        total += l;
    }
    rt_db_destroy(&db);
    *len = total;
    return all;
}

static void test_synthetic_jpeg(void **state)
{
    (void)state;
    char a[4200], b[4200], c[4200];
    assert_int_equal(s_convert("jpeg", "--size 48x48 --format jpeg --seed 5", a, sizeof a), 0);
    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(a, &db), 0);
    assert_int_equal(rt_db_count(db), S_CLASSES * S_PER_CLASS);
    rt_jpeg_t *j = rt_jpeg_new();
    assert_non_null(j);
    int min_w = S_SIDE * 2, max_w = 0, grey = 0;
    for (size_t i = 0; i < rt_db_count(db); i++) {
        const void *v;
        size_t len;
        int w, h, ch;
        struct rt_datum d;
        assert_int_equal(rt_db_record(db, i, &v, &len), 0);
        assert_int_equal(rt_datum_decode(v, len, "rec", &d), 0);
        assert_int_equal(d.kind, RT_DATUM_ENCODED);
        assert_int_equal(d.label, (int)(i % S_CLASSES));
        assert_int_equal(rt_jpeg_header(j, d.data, d.data_len, "rec", &w, &h, &ch), 0);
        assert_int_equal(w, d.width);
        assert_int_equal(h, d.height);
        /* within +-20% of 48 (rounded) */
        assert_true(w >= 38 && w <= 58 && h >= 38 && h <= 58);
        min_w = w < min_w ? w : min_w;
        max_w = w > max_w ? w : max_w;
        grey += ch == 1;
        rt_datum_release(&d);
    }
    rt_jpeg_destroy(&j);
    rt_db_destroy(&db);
    assert_true(max_w - min_w >= 5); /* the sizes vary */
    assert_true(grey >= 1 && grey <= S_CLASSES * S_PER_CLASS / 8);
    /* the seed decides every byte */
    assert_int_equal(s_convert("jpeg-same", "--size 48x48 --format jpeg --seed 5", b, sizeof b), 0);
    assert_int_equal(s_convert("jpeg-other", "--size 48x48 --format jpeg --seed 6", c, sizeof c),
                     0);
    size_t la, lb, lc;
    uint8_t *ba = s_all_bytes(a, &la), *bb = s_all_bytes(b, &lb), *bc = s_all_bytes(c, &lc);
    assert_true(la == lb && !memcmp(ba, bb, la));
    assert_false(la == lc && !memcmp(ba, bc, la));
    free(ba);
    /* an existing database is kept without --force, replaced with it */
    assert_int_equal(s_convert("jpeg", "--size 48x48 --format jpeg --seed 6", a, sizeof a), 1);
    ba = s_all_bytes(a, &la);
    assert_true(la == lb && !memcmp(ba, bb, la));
    free(ba);
    assert_int_equal(s_convert("jpeg", "--size 48x48 --format jpeg --seed 6 --force", a, sizeof a),
                     0);
    ba = s_all_bytes(a, &la);
    assert_true(la == lc && !memcmp(ba, bc, la));
    free(ba);
    free(bb);
    free(bc);
    /* a bad format, or options of the other converters, are usage errors */
    assert_int_equal(s_convert("bad", "--size 48x48 --format png", c, sizeof c), 2);
    assert_int_equal(s_convert("bad", "--size 48x48 --format raw --in /tmp", c, sizeof c), 2);
}

static void test_synthetic_raw(void **state)
{
    (void)state;
    char a[4200];
    assert_int_equal(s_convert("raw", "--size 20x12 --format raw", a, sizeof a), 0);
    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(a, &db), 0);
    assert_int_equal(rt_db_count(db), S_CLASSES * S_PER_CLASS);
    for (size_t i = 0; i < rt_db_count(db); i++) {
        const void *v;
        size_t len;
        struct rt_datum d;
        assert_int_equal(rt_db_record(db, i, &v, &len), 0);
        assert_int_equal(rt_datum_decode(v, len, "rec", &d), 0);
        assert_int_equal(d.kind, RT_DATUM_RAW);
        assert_int_equal(d.label, (int)(i % S_CLASSES));
        assert_int_equal(d.channels, 3);
        assert_int_equal(d.height, 12);
        assert_int_equal(d.width, 20);
        assert_int_equal(d.data_len, 3 * 12 * 20);
        rt_datum_release(&d);
    }
    rt_db_destroy(&db);
}

/* The last line of file path as JSON (caller decrefs). */
static json_t *s_last_json(const char *path)
{
    char *txt = (char *)eb_test_read(path, NULL), *last = txt;
    for (char *p = txt; *p; p++)
        if (*p == '\n' && p[1])
            last = p + 1;
    json_error_t e;
    json_t *j = json_loads(last, JSON_DISABLE_EOF_CHECK, &e);
    free(txt);
    assert_non_null(j);
    return j;
}

/* `eigenbatch eval` of weights on db with extra options; the loss, and the accuracy in *acc. */
static double s_eval(const char *weights, const char *db, const char *extra, double *acc)
{
    char res[4300], cmd[16384];
    snprintf(res, sizeof res, "%s/eval.json", s_tmp);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn '%s' eval --model resnet18 --weights '%s' --data '%s' --classes %d "
             "--batch 16 %s >'%s'",
             eb_test_binary(), weights, db, S_CLASSES, extra, res);
    assert_int_equal(eb_test_run(cmd), 0);
    json_t *j = s_last_json(res);
    assert_int_equal(json_integer_value(json_object_get(j, "n")), S_CLASSES * S_PER_CLASS);
    *acc = json_number_value(json_object_get(j, "accuracy"));
    double loss = json_number_value(json_object_get(j, "loss"));
    json_decref(j);
    return loss;
}

static void test_synthetic_train_eval(void **state)
{
    (void)state;
    char db[4200], tdb[4200], out[4300], args[16384], path[4400];
    assert_int_equal(s_convert("train", "--size 48x48 --format jpeg", db, sizeof db), 0);
    assert_int_equal(s_convert("test", "--size 48x48 --format jpeg --seed 2", tdb, sizeof tdb), 0);
    snprintf(out, sizeof out, "%s/run", s_tmp);
    const char *data = "--set data.size=[32,32] --set data.eval_resize=40 "
                       "--set data.mean=[0.5,0.5,0.5] --set data.std=[0.25,0.25,0.25]";
    snprintf(args, sizeof args,
             "train --model resnet18 --data '%s' --test '%s' --classes %d %s "
             "--set data.train_crop=random_resized --set data.flip=true --epochs 1 --batch 16 "
             "--micro-batch 16 --workers 1 --shards 1 --lr 0.01 --output-dir '%s'",
             db, tdb, S_CLASSES, data, out);
    assert_int_equal(s_run(args), 0);
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    json_t *ev = eb_test_events(path, "epoch");
    assert_int_equal(json_array_size(ev), 1);
    json_t *e0 = json_array_get(ev, 0);
    double t_acc = json_number_value(json_object_get(e0, "test_accuracy"));
    double t_loss = json_number_value(json_object_get(e0, "test_loss"));
    json_decref(ev);
    assert_true(isfinite(t_loss));
    /* eval with the run's data options scores as the trainer's evaluation did ... */
    char w[4400];
    snprintf(w, sizeof w, "%s/weights.safetensors", out);
    double acc, loss = s_eval(w, tdb, data, &acc);
    assert_true(eb_test_reldiff(loss, t_loss, 1e-6) < S_LOSS_TOL);
    assert_true(fabs(acc - t_acc) < 0.5 / (S_CLASSES * S_PER_CLASS));
    /* ... and so does eval given the run's resolved configuration */
    snprintf(path, sizeof path, "--config '%s/config.yaml'", out);
    loss = s_eval(w, tdb, path, &acc);
    assert_true(eb_test_reldiff(loss, t_loss, 1e-6) < S_LOSS_TOL);
    /* without data.eval_resize the evaluation transform, and so the loss, differ */
    loss = s_eval(w, tdb,
                  "--set data.size=[32,32] --set data.mean=[0.5,0.5,0.5] "
                  "--set data.std=[0.25,0.25,0.25]",
                  &acc);
    assert_true(eb_test_reldiff(loss, t_loss, 1e-6) > S_LOSS_TOL);
}

/* The classes can be learnt: a small cnn, three epochs on 800 records of seed 1, scores well
 * above chance (1/8) on 160 held-out records of seed 2 (about 0.97 when written). */
static void test_synthetic_learnable(void **state)
{
    (void)state;
    char tr[4200], te[4200], out[4300], args[16384], path[4400];
    snprintf(tr, sizeof tr, "%s/learn-train", s_tmp);
    snprintf(te, sizeof te, "%s/learn-test", s_tmp);
    snprintf(args, sizeof args,
             "convert synthetic --out '%s' --classes %d --per-class 100 --size 32x32 --format jpeg",
             tr, S_CLASSES);
    assert_int_equal(s_run(args), 0);
    snprintf(args, sizeof args,
             "convert synthetic --out '%s' --classes %d --per-class 20 --size 32x32 --format jpeg "
             "--seed 2",
             te, S_CLASSES);
    assert_int_equal(s_run(args), 0);
    snprintf(out, sizeof out, "%s/learn-run", s_tmp);
    snprintf(args, sizeof args,
             "train --model cnn --data '%s' --test '%s' --classes %d --set data.size=[28,28] "
             "--set data.train_crop=random_resized --set data.eval_resize=32 --set data.mean=[0.5] "
             "--set data.std=[0.25] --epochs 3 --batch 50 --micro-batch 50 --workers 1 --shards 1 "
             "--lr 0.01 --output-dir '%s'",
             tr, te, S_CLASSES, out);
    assert_int_equal(s_run(args), 0);
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    json_t *ev = eb_test_events(path, "epoch");
    assert_int_equal(json_array_size(ev), 3);
    double acc = json_number_value(json_object_get(json_array_get(ev, 2), "test_accuracy"));
    for (int e = 0; e < 3; e++) /* each epoch trained on every record once */
        assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, e), "samples")),
                         S_CLASSES * 100);
    json_decref(ev);
    assert_true(acc > 0.6);
}

static int s_setup(void **state)
{
    (void)state;
    s_tmp = eb_test_tmpdir();
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
        cmocka_unit_test(test_synthetic_jpeg),
        cmocka_unit_test(test_synthetic_raw),
        cmocka_unit_test(test_synthetic_learnable),
        cmocka_unit_test(test_synthetic_train_eval),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}
