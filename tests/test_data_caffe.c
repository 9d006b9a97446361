/*
 * test_data_caffe: databases in Caffe's own layout, written here byte by byte through raw LMDB
 * calls and hand-encoded protobuf bytes (not through rt_db_writer / rt_datum), read correctly:
 * keys "%08d_<path>", raw BGR records (with RGB conversion), JPEG-encoded records without shape
 * fields, float_data records; corrupt, truncated and odd-shaped records give errors naming the key.
 */
#include "eb_test.h"

#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>

#include "rt_db.h"
#include "rt_err.h"
#include "rt_loader.h"

#define S_MAX_REC 65536

/* A protobuf message under construction. */
struct s_pb {
    uint8_t b[S_MAX_REC]; /* bytes */
    size_t n;             /* used */
};

static void s_varint(struct s_pb *p, uint64_t v)
{
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        p->b[p->n++] = byte | (v ? 0x80 : 0);
    } while (v);
}

/* field number f, wire type t */
static void s_tag(struct s_pb *p, int f, int t)
{
    s_varint(p, (uint64_t)(f << 3 | t));
}

/* A Datum as Caffe's CVMatToDatum + ReadImageToDatum serialise it: channels, height, width,
 * data, label, encoded (explicitly false). Shape fields omitted when c == 0 (encoded records). */
static void s_caffe_datum(struct s_pb *p, int c, int h, int w, const uint8_t *data, size_t len,
                          int label, bool encoded)
{
    p->n = 0;
    if (c) {
        s_tag(p, 1, 0);
        s_varint(p, (uint64_t)c);
        s_tag(p, 2, 0);
        s_varint(p, (uint64_t)h);
        s_tag(p, 3, 0);
        s_varint(p, (uint64_t)w);
    }
    s_tag(p, 4, 2);
    s_varint(p, len);
    memcpy(p->b + p->n, data, len);
    p->n += len;
    s_tag(p, 5, 0);
    s_varint(p, (uint64_t)label);
    s_tag(p, 7, 0);
    s_varint(p, encoded ? 1 : 0);
}

/* A float_data Datum (Caffe's proto2 repeated float is not packed: one tag per value). */
static void s_caffe_float_datum(struct s_pb *p, int c, int h, int w, const float *v, int label)
{
    p->n = 0;
    s_tag(p, 1, 0);
    s_varint(p, (uint64_t)c);
    s_tag(p, 2, 0);
    s_varint(p, (uint64_t)h);
    s_tag(p, 3, 0);
    s_varint(p, (uint64_t)w);
    s_tag(p, 5, 0);
    s_varint(p, (uint64_t)label);
    for (int i = 0; i < c * h * w; i++) {
        s_tag(p, 6, 5);
        memcpy(p->b + p->n, &v[i], 4); /* little-endian host */
        p->n += 4;
    }
}

/* Raw LMDB writing as Caffe's db_lmdb.cpp does it. */
struct s_raw_db {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
};

static void s_raw_open(struct s_raw_db *r, const char *dir)
{
    assert_int_equal(mkdir(dir, 0744), 0);
    assert_int_equal(mdb_env_create(&r->env), 0);
    assert_int_equal(mdb_env_set_mapsize(r->env, (size_t)1 << 30), 0);
    assert_int_equal(mdb_env_open(r->env, dir, 0, 0664), 0);
    assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
    assert_int_equal(mdb_dbi_open(r->txn, NULL, 0, &r->dbi), 0);
}

static void s_raw_put(struct s_raw_db *r, const char *key, const struct s_pb *p, size_t len)
{
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)p->b};
    assert_int_equal(mdb_put(r->txn, r->dbi, &k, &v, 0), 0);
}

static void s_raw_close(struct s_raw_db *r)
{
    assert_int_equal(mdb_txn_commit(r->txn), 0);
    mdb_env_close(r->env);
}

/* Colour of pixel (y, x) of record i, RGB. */
static void s_rgb(int i, int y, int x, uint8_t rgb[3])
{
    rgb[0] = (uint8_t)(10 + 40 * i + y);
    rgb[1] = (uint8_t)(100 + x * 3);
    rgb[2] = (uint8_t)(200 - 20 * i - x);
}

#define S_H 4
#define S_W 5

static rt_loader_t *s_loader(const char *dir, bool bgr, int *rc_out)
{
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.threads = 0;
    o.raw_bgr = bgr;
    rt_loader_t *l = NULL;
    *rc_out = rt_loader_new(dir, &o, &l);
    return l;
}

static void test_caffe_raw_bgr(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/caffe_raw", tmp);
    struct s_raw_db r;
    s_raw_open(&r, dir);
    const char *paths[3] = {"cat/a.jpg", "dog/b b.jpg", "cat/c.JPEG"};
    struct s_pb *p = malloc(sizeof *p);
    for (int i = 0; i < 3; i++) {
        uint8_t chw[3 * S_H * S_W];
        for (int y = 0; y < S_H; y++)
            for (int x = 0; x < S_W; x++) {
                uint8_t rgb[3];
                s_rgb(i, y, x, rgb);
                for (int c = 0; c < 3; c++) /* BGR planes, as cv::imread + CVMatToDatum */
                    chw[(c * S_H + y) * S_W + x] = rgb[2 - c];
            }
        s_caffe_datum(p, 3, S_H, S_W, chw, sizeof chw, 7 - i, false);
        char key[64];
        snprintf(key, sizeof key, "%08d_%s", i, paths[i]);
        s_raw_put(&r, key, p, p->n);
    }
    s_raw_close(&r);

    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(dir, &db), 0);
    assert_int_equal(rt_db_count(db), 3);
    char kb[RT_DB_KEY_MAX];
    assert_string_equal(rt_db_key(db, 1, kb, sizeof kb), "00000001_dog/b b.jpg");
    rt_db_destroy(&db);

    for (int bgr = 0; bgr < 2; bgr++) {
        int rc;
        rt_loader_t *l = s_loader(dir, bgr, &rc);
        assert_int_equal(rc, 0);
        int c, h, w;
        rt_loader_shape(l, &c, &h, &w);
        assert_int_equal(c, 3);
        assert_int_equal(h, S_H);
        assert_int_equal(w, S_W);
        float x[3 * 3 * S_H * S_W];
        int32_t y[3];
        assert_int_equal(rt_loader_read(l, 0, 3, x, y), 0);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(y[i], 7 - i);
            for (int yy = 0; yy < S_H; yy++)
                for (int xx = 0; xx < S_W; xx++) {
                    uint8_t rgb[3];
                    s_rgb(i, yy, xx, rgb);
                    for (int ch = 0; ch < 3; ch++) {
                        uint8_t want = bgr ? rgb[ch] : rgb[2 - ch];
                        float got = x[((i * 3 + ch) * S_H + yy) * S_W + xx];
                        assert_true(fabsf(got - want / 255.0f) < 1e-6f);
                    }
                }
        }
        rt_loader_destroy(&l);
    }
    free(p);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* JPEG-encoded records as convert_imageset --encoded writes them (no shape fields). */
static void test_caffe_encoded(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/caffe_jpeg", tmp);
    const int H = 24, W = 32;
    tjhandle enc = tjInitCompress(), dec = tjInitDecompress();
    assert_non_null(enc);
    assert_non_null(dec);
    struct s_raw_db r;
    s_raw_open(&r, dir);
    struct s_pb *p = malloc(sizeof *p);
    uint8_t *jpg[2] = {NULL, NULL};
    unsigned long jlen[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        uint8_t rgb[24 * 32 * 3];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                s_rgb(i, y, x, rgb + (y * W + x) * 3);
        assert_int_equal(
            tjCompress2(enc, rgb, W, W * 3, H, TJPF_RGB, &jpg[i], &jlen[i], TJSAMP_444, 95, 0), 0);
        s_caffe_datum(p, 0, 0, 0, jpg[i], jlen[i], i + 1, true);
        char key[64];
        snprintf(key, sizeof key, "%08d_img/%d.jpg", i, i);
        s_raw_put(&r, key, p, p->n);
    }
    /* a truncated JPEG: the datum is fine, the image is not */
    s_caffe_datum(p, 0, 0, 0, jpg[1], jlen[1] / 2, 3, true);
    s_raw_put(&r, "00000002_img/truncated.jpg", p, p->n);
    s_raw_close(&r);

    int rc;
    rt_loader_t *l = s_loader(dir, false, &rc);
    assert_int_equal(rc, 0);
    int c, h, w;
    rt_loader_shape(l, &c, &h, &w);
    assert_int_equal(c, 3);
    assert_int_equal(h, H);
    assert_int_equal(w, W);
    float *x = malloc(2 * 3 * H * W * sizeof *x);
    int32_t y[2];
    assert_int_equal(rt_loader_read(l, 0, 2, x, y), 0);
    uint8_t ref[24 * 32 * 3];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(y[i], i + 1);
        assert_int_equal(tjDecompress2(dec, jpg[i], jlen[i], ref, W, W * 3, H, TJPF_RGB, 0), 0);
        for (int ch = 0; ch < 3; ch++)
            for (int k = 0; k < H * W; k++)
                assert_true(fabsf(x[(i * 3 + ch) * H * W + k] - ref[k * 3 + ch] / 255.0f) < 1e-6f);
    }
    float one[3 * 24 * 32];
    int32_t lab;
    assert_int_equal(rt_loader_read(l, 2, 1, one, &lab), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "00000002_img/truncated.jpg"));
    rt_loader_destroy(&l);
    tjFree(jpg[0]);
    tjFree(jpg[1]);
    tjDestroy(enc);
    tjDestroy(dec);
    free(x);
    free(p);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_caffe_float_data(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/caffe_float", tmp);
    struct s_raw_db r;
    s_raw_open(&r, dir);
    struct s_pb *p = malloc(sizeof *p);
    float v[2 * 3 * 2];
    for (int i = 0; i < 12; i++)
        v[i] = -1.5f + 0.25f * i;
    s_caffe_float_datum(p, 2, 3, 2, v, 4);
    s_raw_put(&r, "00000000_f", p, p->n);
    s_raw_close(&r);
    int rc;
    rt_loader_t *l = s_loader(dir, false, &rc);
    assert_int_equal(rc, 0);
    float x[12];
    int32_t y;
    assert_int_equal(rt_loader_read(l, 0, 1, x, &y), 0);
    assert_int_equal(y, 4);
    assert_memory_equal(x, v, sizeof v);
    rt_loader_destroy(&l);
    free(p);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* Run `eigenbatch dbinfo dir`; return its exit status and combined output in out. */
static int s_dbinfo(const char *dir, char *out, size_t cap)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "'%s' dbinfo '%s' 2>&1", eb_test_binary(), dir);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A corrupt record, a truncated record and a record of another shape: errors naming the key, in
 * the prefetching loader, the synchronous reader and dbinfo. */
static void test_bad_records_name_key(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char dir[600];
    uint8_t px[2 * S_H * S_W];
    memset(px, 9, sizeof px);
    struct s_pb *p = malloc(sizeof *p);
    const char *bad_key[3] = {"00000003_corrupt.png", "00000003_truncated.png",
                              "00000003_shape.png"};
    for (int kind = 0; kind < 3; kind++) {
        snprintf(dir, sizeof dir, "%s/bad%d", tmp, kind);
        struct s_raw_db r;
        s_raw_open(&r, dir);
        for (int i = 0; i < 6; i++) {
            char key[64];
            snprintf(key, sizeof key, "%08d_%s.png", i, i == 3 ? "" : "ok");
            s_caffe_datum(p, 1, S_H, S_W, px, S_H * S_W, i, false);
            size_t len = p->n;
            if (i == 3) {
                snprintf(key, sizeof key, "%s", bad_key[kind]);
                if (kind == 0)
                    p->b[0] = 0xff; /* a tag of an invalid wire type */
                else if (kind == 1)
                    len = p->n - 12; /* cut in the middle of the pixel bytes */
                else
                    s_caffe_datum(p, 2, S_H, S_W, px, sizeof px, i, false), len = p->n;
            }
            s_raw_put(&r, key, p, len);
        }
        s_raw_close(&r);

        struct rt_loader_opts o;
        rt_loader_opts_default(&o);
        o.threads = 2;
        rt_loader_t *l = NULL;
        assert_int_equal(rt_loader_new(dir, &o, &l), 0);
        struct rt_loader_req q = {.epoch = 0, .start = 0, .count = 6, .augment = true};
        assert_int_equal(rt_loader_submit(l, &q), 0);
        struct rt_loader_batch b;
        int rc = rt_loader_wait(l, &b);
        assert_int_equal(rc, kind == 2 ? RT_ERR_SHAPE : (kind == 0 ? RT_ERR_FORMAT : rc));
        assert_true(rc < 0);
        assert_non_null(strstr(rt_err_msg(), bad_key[kind]));
        /* the loader stays usable */
        q.count = 1;
        assert_int_equal(rt_loader_submit(l, &q), 0);
        rc = rt_loader_wait(l, &b);
        if (rc == 0)
            rt_loader_release(l, &b);
        float x[6 * S_H * S_W];
        int32_t y[6];
        assert_int_equal(rt_loader_read(l, 0, 3, x, y), 0);
        assert_true(rt_loader_read(l, 0, 6, x, y) < 0);
        assert_non_null(strstr(rt_err_msg(), bad_key[kind]));
        rt_loader_destroy(&l);

        char out[4096];
        assert_int_equal(s_dbinfo(dir, out, sizeof out), 1);
        assert_non_null(strstr(out, bad_key[kind]));
    }
    free(p);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caffe_raw_bgr),
        cmocka_unit_test(test_caffe_encoded),
        cmocka_unit_test(test_caffe_float_data),
        cmocka_unit_test(test_bad_records_name_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
