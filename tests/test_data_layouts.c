/*
 * test_data_layouts: `eigenbatch convert` on tiny generated trees of the JPEG layouts, run as the
 * built binary: imagenet-val with both label-file forms, tinyimagenet's train and val parts,
 * --resize-shorter re-encoding, the progress line, and the refusal of a half-written database
 * (a build stopped before its end) with an error naming it and the fix.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"
#include "rt_jpeg.h"
#include "rt_loader.h"

/* Run the binary with args; stderr into err (may be NULL). Returns the exit status. */
static int s_run(const char *args, char *err, size_t cap)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1 >/dev/null", eb_test_binary(), args);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    char sink[4096];
    size_t n = fread(err ? err : sink, 1, (err ? cap : sizeof sink) - 1, f);
    (err ? err : sink)[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Write a w x h JPEG (c channels) whose pixels encode `tag` at path (folders made as needed). */
static void s_jpeg(const char *path, int w, int h, int c, int tag)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    assert_int_equal(system(cmd), 0);
    uint8_t *px = malloc((size_t)w * h * c);
    for (int i = 0; i < w * h * c; i++)
        px[i] = (uint8_t)(tag * 40 + (i / c) % 7);
    rt_jpeg_t *j = rt_jpeg_new();
    const uint8_t *out;
    size_t len;
    assert_int_equal(rt_jpeg_encode(j, px, w, h, c, 90, &out, &len), 0);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(out, 1, len, f), len);
    fclose(f);
    rt_jpeg_destroy(&j);
    free(px);
}

static void s_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Labels (and optionally height/width) of every record of db. */
static size_t s_labels(const char *db, int *labels, int *h, int *w, size_t max)
{
    rt_db_t *d = NULL;
    assert_int_equal(rt_db_open(db, &d), 0);
    size_t n = rt_db_count(d);
    assert_true(n <= max);
    for (size_t i = 0; i < n; i++) {
        const void *v;
        size_t len;
        struct rt_datum r;
        assert_int_equal(rt_db_record(d, i, &v, &len), 0);
        assert_int_equal(rt_datum_decode(v, len, "k", &r), 0);
        assert_int_equal(r.kind, RT_DATUM_ENCODED);
        assert_int_equal(r.channels, 3);
        labels[i] = r.label;
        if (h)
            h[i] = r.height;
        if (w)
            w[i] = r.width;
        rt_datum_release(&r);
    }
    rt_db_destroy(&d);
    return n;
}

static void test_imagenet_val(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char p[700], args[2400], err[4096];
    const char *names[4] = {"v_0003.JPEG", "v_0001.JPEG", "v_0004.JPEG", "v_0002.JPEG"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/val/%s", tmp, names[i]);
        s_jpeg(p, 20 + i, 16, i == 2 ? 1 : 3, i); /* one greyscale */
    }
    /* "FILE WNID" lines: records in line order, wnids numbered in sorted order */
    snprintf(p, sizeof p, "%s/pairs.txt", tmp);
    s_text(p, "v_0002.JPEG n02\nv_0001.JPEG n01\n\nv_0004.JPEG n03\nv_0003.JPEG n01\n");
    snprintf(args, sizeof args, "convert imagenet-val --in '%s/val' --labels '%s' --out '%s/db1'",
             tmp, p, tmp);
    assert_int_equal(s_run(args, err, sizeof err), 0);
    assert_non_null(strstr(err, "rec/s"));
    assert_non_null(strstr(err, "ETA"));
    int lab[8], w[8];
    snprintf(p, sizeof p, "%s/db1", tmp);
    assert_int_equal(s_labels(p, lab, NULL, w, 8), 4);
    int want1[4] = {1, 0, 2, 0}, wantw1[4] = {23, 21, 22, 20};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lab[i], want1[i]);
        assert_int_equal(w[i], wantw1[i]);
    }
    /* one integer per line, for the files in name order */
    snprintf(p, sizeof p, "%s/one.txt", tmp);
    s_text(p, "7\n5\n9\n0\n");
    snprintf(args, sizeof args, "convert imagenet-val --in '%s/val' --labels '%s' --out '%s/db2'",
             tmp, p, tmp);
    assert_int_equal(s_run(args, NULL, 0), 0);
    snprintf(p, sizeof p, "%s/db2", tmp);
    assert_int_equal(s_labels(p, lab, NULL, w, 8), 4);
    int want2[4] = {7, 5, 9, 0}, wantw2[4] = {21, 23, 20, 22};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lab[i], want2[i]);
        assert_int_equal(w[i], wantw2[i]);
    }
    /* a label count that does not match the folder, a missing --labels: errors, no database */
    snprintf(p, sizeof p, "%s/short.txt", tmp);
    s_text(p, "1\n2\n");
    snprintf(args, sizeof args, "convert imagenet-val --in '%s/val' --labels '%s' --out '%s/db3'",
             tmp, p, tmp);
    assert_int_equal(s_run(args, err, sizeof err), 1);
    assert_non_null(strstr(err, "2 labels for the 4 JPEGs"));
    snprintf(args, sizeof args, "convert imagenet-val --in '%s/val' --out '%s/db3'", tmp, tmp);
    assert_int_equal(s_run(args, err, sizeof err), 1);
    assert_non_null(strstr(err, "--labels"));
    struct stat st;
    snprintf(p, sizeof p, "%s/db3", tmp);
    assert_int_not_equal(stat(p, &st), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_tinyimagenet(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char p[700], args[2400];
    snprintf(p, sizeof p, "%s/tiny/wnids.txt", tmp);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/tiny/val/images'", tmp);
    assert_int_equal(system(cmd), 0);
    s_text(p, "n09\nn01\nn05\n");
    const char *wn[3] = {"n09", "n01", "n05"};
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "%s/tiny/train/%s/images/%s_%d.JPEG", tmp, wn[c], wn[c], i);
            s_jpeg(p, 16, 16, 3, c);
        }
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/tiny/val/images/val_%d.JPEG", tmp, i);
        s_jpeg(p, 16, 16, 3, i);
    }
    snprintf(p, sizeof p, "%s/tiny/val/val_annotations.txt", tmp);
    s_text(p, "val_0.JPEG\tn05\t0\t0\t15\t15\nval_1.JPEG\tn09\t1\t1\t9\t9\n"
              "val_2.JPEG\tn01\t2\t2\t8\t8\n");
    snprintf(args, sizeof args, "convert tinyimagenet --in '%s/tiny' --out '%s/train'", tmp, tmp);
    assert_int_equal(s_run(args, NULL, 0), 0);
    int lab[16];
    snprintf(p, sizeof p, "%s/train", tmp);
    assert_int_equal(s_labels(p, lab, NULL, NULL, 16), 6);
    int want[6] = {0, 0, 1, 1, 2, 2}; /* sorted wnids: n01, n05, n09 */
    for (int i = 0; i < 6; i++)
        assert_int_equal(lab[i], want[i]);
    snprintf(args, sizeof args, "convert tinyimagenet --in '%s/tiny' --split test --out '%s/val'",
             tmp, tmp);
    assert_int_equal(s_run(args, NULL, 0), 0);
    snprintf(p, sizeof p, "%s/val", tmp);
    assert_int_equal(s_labels(p, lab, NULL, NULL, 16), 3);
    assert_int_equal(lab[0], 1);
    assert_int_equal(lab[1], 2);
    assert_int_equal(lab[2], 0);
    /* an annotation naming an unknown wnid is an error naming file:line */
    snprintf(p, sizeof p, "%s/tiny/val/val_annotations.txt", tmp);
    s_text(p, "val_0.JPEG\tn05\nval_1.JPEG\tn77\n");
    char err[4096];
    snprintf(args, sizeof args, "convert tinyimagenet --in '%s/tiny' --split test --out '%s/val2'",
             tmp, tmp);
    assert_int_equal(s_run(args, err, sizeof err), 1);
    assert_non_null(strstr(err, "val_annotations.txt:2"));
    eb_test_rmtree(tmp);
    free(tmp);
}

/* --resize-shorter: larger images re-encoded with the shorter side N, smaller ones kept. */
static void test_resize_shorter(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char p[700], args[2400];
    snprintf(p, sizeof p, "%s/f/a/big.jpg", tmp);
    s_jpeg(p, 640, 480, 3, 1);
    snprintf(p, sizeof p, "%s/f/a/tall.jpg", tmp);
    s_jpeg(p, 300, 500, 1, 2);
    snprintf(p, sizeof p, "%s/f/b/small.jpg", tmp);
    s_jpeg(p, 40, 30, 3, 3);
    snprintf(args, sizeof args,
             "convert imagefolder --in '%s/f' --out '%s/db' --resize-shorter 64 --quality 80", tmp,
             tmp);
    assert_int_equal(s_run(args, NULL, 0), 0);
    int lab[4], h[4], w[4];
    snprintf(p, sizeof p, "%s/db", tmp);
    assert_int_equal(s_labels(p, lab, h, w, 4), 3);
    assert_int_equal(w[0], 85); /* 640x480 -> round(64 * 640 / 480) x 64 */
    assert_int_equal(h[0], 64);
    assert_int_equal(w[1], 64); /* 300x500 -> 64 x round(64 * 500 / 300) */
    assert_int_equal(h[1], 107);
    assert_int_equal(w[2], 40); /* smaller: kept as it is */
    assert_int_equal(h[2], 30);
    /* the stored JPEGs have those sizes, and the loader reads them (greyscale to 3 channels) */
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.threads = 0;
    o.out_height = o.out_width = 32;
    o.eval_resize = 36;
    rt_loader_t *l = NULL;
    assert_int_equal(rt_loader_new(p, &o, &l), 0);
    float x[3 * 3 * 32 * 32];
    int32_t y[3];
    assert_int_equal(rt_loader_read(l, 0, 3, x, y), 0);
    assert_int_equal(y[2], 1);
    rt_loader_destroy(&l);
    snprintf(args, sizeof args, "convert imagefolder --in '%s/f' --out '%s/db2' --quality 0", tmp,
             tmp);
    assert_int_equal(s_run(args, NULL, 0), 2);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* A build that stopped before its end (a killed convert) is never read as a database. */
static void test_half_written_refused(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char dir[700], partial[800], args[2400], err[4096];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    rt_db_writer_t *w = NULL;
    assert_int_equal(rt_db_writer_new(dir, false, &w), 0);
    uint8_t px[4] = {1, 2, 3, 4};
    struct rt_datum d = {
        .kind = RT_DATUM_RAW, .channels = 1, .height = 2, .width = 2, .data = px, .data_len = 4};
    uint8_t buf[64];
    size_t len;
    assert_int_equal(rt_datum_pack(&d, buf, sizeof buf, &len), 0);
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof key, "%08d", i);
        assert_int_equal(rt_db_writer_put(w, key, 8, buf, len), 0);
    }
    /* as after a kill: the build is on disk, never finished */
    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(dir, &db), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), "unfinished build"));
    assert_non_null(strstr(rt_err_msg(), "run the convert again"));
    snprintf(partial, sizeof partial, "%s.partial-%ld", dir, (long)getpid());
    assert_int_equal(rt_db_open(partial, &db), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), partial));
    assert_non_null(strstr(rt_err_msg(), "--force"));
    /* the loader and the command line say the same, naming the directory */
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    rt_loader_t *l = NULL;
    assert_int_equal(rt_loader_new(partial, &o, &l), RT_ERR_FORMAT);
    snprintf(args, sizeof args, "dbinfo '%s'", partial);
    assert_int_equal(s_run(args, err, sizeof err), 1);
    assert_non_null(strstr(err, "unfinished database"));
    assert_non_null(strstr(err, partial));
    /* moved into place by hand, it is still refused */
    assert_int_equal(rename(partial, dir), 0);
    assert_int_equal(rt_db_open(dir, &db), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), dir));
    assert_int_equal(rename(dir, partial), 0);
    /* finished, it reads, and holds no marker */
    assert_int_equal(rt_db_writer_finish(w), 0);
    rt_db_writer_destroy(&w);
    assert_int_equal(rt_db_open(dir, &db), 0);
    assert_int_equal(rt_db_count(db), 3);
    rt_db_destroy(&db);
    char marker[900];
    snprintf(marker, sizeof marker, "%s/%s", dir, RT_DB_INCOMPLETE);
    struct stat st;
    assert_int_not_equal(stat(marker, &st), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_imagenet_val),
        cmocka_unit_test(test_tinyimagenet),
        cmocka_unit_test(test_resize_shorter),
        cmocka_unit_test(test_half_written_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
