/*
 * test_data_convert: `eigenbatch convert` end to end, run as the built binary (EB_BINARY) in a
 * temporary directory: Fashion-MNIST from the Debian package gives 60,000 + 10,000 records whose
 * pixels and labels match the IDX files byte for byte; CIFAR-10/100 binary files and JPEG image
 * folders (encoded and --resize) round-trip; an existing database is kept without --force. A PNG
 * under a JPEG's name (ImageNet's training set holds one) is stored re-encoded as a JPEG of its
 * RGB (alpha dropped), with a warning naming it; a file that is neither fails the convert, named.
 * A JPEG cut short is found by --verify, and --skip-bad leaves such files out, named and counted.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <png.h>
#include <zlib.h>

#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"
#include "rt_image.h"
#include "rt_jpeg.h"
#include "rt_loader.h"

#define S_FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Run the binary with args (a shell fragment); returns its exit status. */
static int s_run(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>&1", eb_test_binary(), args);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Whole gunzipped file (plain files read as they are). */
static uint8_t *s_gz_slurp(const char *path, size_t *len)
{
    gzFile f = gzopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 20, n = 0;
    uint8_t *b = malloc(cap);
    int got;
    while ((got = gzread(f, b + n, (unsigned)(cap - n))) > 0) {
        n += (size_t)got;
        if (n == cap)
            b = realloc(b, cap *= 2);
    }
    assert_true(got == 0);
    gzclose(f);
    *len = n;
    return b;
}

/* Every record of db matches the IDX images/labels exactly, in order, keys %08d. */
static void s_check_idx(const char *db_dir, const char *prefix, size_t expect)
{
    char ip[512], lp[512];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", S_FMNIST_DIR, prefix);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", S_FMNIST_DIR, prefix);
    size_t ni, nl;
    uint8_t *img = s_gz_slurp(ip, &ni), *lab = s_gz_slurp(lp, &nl);
    assert_int_equal(ni, 16 + expect * 784);
    assert_int_equal(nl, 8 + expect);
    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(db_dir, &db), 0);
    assert_int_equal(rt_db_count(db), expect);
    for (size_t i = 0; i < expect; i++) {
        char want[32], kb[RT_DB_KEY_MAX];
        snprintf(want, sizeof want, "%08zu", i);
        assert_string_equal(rt_db_key(db, i, kb, sizeof kb), want);
        const void *v;
        size_t len;
        assert_int_equal(rt_db_record(db, i, &v, &len), 0);
        struct rt_datum d;
        assert_int_equal(rt_datum_decode(v, len, want, &d), 0);
        assert_int_equal(d.kind, RT_DATUM_RAW);
        assert_int_equal(d.channels, 1);
        assert_int_equal(d.height, 28);
        assert_int_equal(d.width, 28);
        assert_int_equal(d.label, lab[8 + i]);
        assert_int_equal(d.data_len, 784);
        assert_memory_equal(d.data, img + 16 + i * 784, 784);
        rt_datum_release(&d);
    }
    rt_db_destroy(&db);
    free(img);
    free(lab);
}

static void test_fashion_mnist_exact(void **state)
{
    (void)state;
    struct stat st;
    if (stat(S_FMNIST_DIR "/train-images-idx3-ubyte.gz", &st) != 0) {
        print_message("dataset-fashion-mnist is not installed\n");
        skip();
    }
    char *tmp = eb_test_tmpdir();
    char args[1024], db[600];
    snprintf(db, sizeof db, "%s/fm/train", tmp);
    snprintf(args, sizeof args, "convert fashion-mnist --in %s --out '%s'", S_FMNIST_DIR, db);
    assert_int_equal(s_run(args), 0);
    s_check_idx(db, "train", 60000);
    /* an existing database is kept without --force, replaced with it */
    assert_int_equal(s_run(args), 1);
    snprintf(db, sizeof db, "%s/fm/test", tmp);
    snprintf(args, sizeof args, "convert fashion-mnist --in %s --out '%s' --split test --force",
             S_FMNIST_DIR, db);
    assert_int_equal(s_run(args), 0);
    s_check_idx(db, "t10k", 10000);
    /* nothing but the two databases is left behind (no partial builds) */
    snprintf(args, sizeof args, "%s/fm", tmp);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "test \"$(ls '%s' | tr '\\n' ' ')\" = 'test train '", args);
    assert_int_equal(system(cmd), 0);
    snprintf(args, sizeof args, "dbinfo '%s'", db);
    assert_int_equal(s_run(args), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* Plain (not gzipped) IDX files and bad IDX input. */
static void test_idx_plain_and_bad(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char p[600], args[1400];
    /* 3 images 2x3 */
    uint8_t img[16 + 18] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3};
    uint8_t lab[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 5, 0, 9};
    for (int i = 0; i < 18; i++)
        img[16 + i] = (uint8_t)(i * 13);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", tmp);
    FILE *f = fopen(p, "wb");
    fwrite(img, 1, sizeof img, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", tmp);
    f = fopen(p, "wb");
    fwrite(lab, 1, sizeof lab, f);
    fclose(f);
    snprintf(args, sizeof args, "convert mnist --in '%s' --out '%s/db'", tmp, tmp);
    assert_int_equal(s_run(args), 0);
    snprintf(p, sizeof p, "%s/db", tmp);
    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(p, &db), 0);
    assert_int_equal(rt_db_count(db), 3);
    const void *v;
    size_t len;
    assert_int_equal(rt_db_record(db, 2, &v, &len), 0);
    struct rt_datum d;
    assert_int_equal(rt_datum_decode(v, len, "2", &d), 0);
    assert_int_equal(d.label, 9);
    assert_memory_equal(d.data, img + 16 + 12, 6);
    rt_datum_release(&d);
    rt_db_destroy(&db);
    /* truncated image file: error, and no database at --out */
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", tmp);
    f = fopen(p, "wb");
    fwrite(img, 1, sizeof img - 5, f);
    fclose(f);
    snprintf(args, sizeof args, "convert mnist --in '%s' --out '%s/db2'", tmp, tmp);
    assert_int_equal(s_run(args), 1);
    snprintf(p, sizeof p, "%s/db2", tmp);
    struct stat st;
    assert_int_not_equal(stat(p, &st), 0);
    /* unknown format and missing files */
    snprintf(args, sizeof args, "convert nosuch --in '%s' --out '%s/db3'", tmp, tmp);
    assert_int_equal(s_run(args), 2);
    snprintf(args, sizeof args, "convert cifar10 --in '%s' --out '%s/db3'", tmp, tmp);
    assert_int_equal(s_run(args), 1);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_cifar(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char p[600], args[1400];
    for (int c100 = 0; c100 < 2; c100++) {
        size_t rec = (size_t)(c100 ? 2 : 1) + 3072;
        uint8_t *buf = malloc(rec * 4);
        for (size_t i = 0; i < rec * 4; i++)
            buf[i] = (uint8_t)(i * 7 + 3);
        for (int r = 0; r < 4; r++) {
            buf[r * rec] = (uint8_t)(r + 1); /* CIFAR-10 label / CIFAR-100 coarse */
            if (c100)
                buf[r * rec + 1] = (uint8_t)(50 + r); /* fine */
        }
        snprintf(p, sizeof p, "%s/%s", tmp, c100 ? "test.bin" : "test_batch.bin");
        FILE *f = fopen(p, "wb");
        fwrite(buf, 1, rec * 4, f);
        fclose(f);
        snprintf(args, sizeof args, "convert %s --in '%s' --out '%s/c%d' --split test",
                 c100 ? "cifar100" : "cifar10", tmp, tmp, c100);
        assert_int_equal(s_run(args), 0);
        snprintf(p, sizeof p, "%s/c%d", tmp, c100);
        rt_db_t *db = NULL;
        assert_int_equal(rt_db_open(p, &db), 0);
        assert_int_equal(rt_db_count(db), 4);
        for (int r = 0; r < 4; r++) {
            const void *v;
            size_t len;
            struct rt_datum d;
            assert_int_equal(rt_db_record(db, (size_t)r, &v, &len), 0);
            assert_int_equal(rt_datum_decode(v, len, "c", &d), 0);
            assert_int_equal(d.label, c100 ? 50 + r : r + 1);
            assert_int_equal(d.channels, 3);
            assert_int_equal(d.height, 32);
            assert_memory_equal(d.data, buf + r * rec + rec - 3072, 3072);
            rt_datum_release(&d);
        }
        rt_db_destroy(&db);
        free(buf);
    }
    eb_test_rmtree(tmp);
    free(tmp);
}

/* Image folder: classes by subfolder name order, JPEG stored encoded (decodes to the same
 * pixels as the file) or --resize WxH raw BGR. */
static void test_imagefolder(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char p[700], args[1600];
    rt_jpeg_t *j = rt_jpeg_new();
    assert_non_null(j);
    const int W = 40, H = 30;
    uint8_t rgb[40 * 30 * 3];
    const char *cls[2] = {"b_dog", "a_cat"};
    for (int c = 0; c < 2; c++) {
        snprintf(p, sizeof p, "%s/train/%s", tmp, cls[c]);
        assert_int_equal(system((snprintf(args, sizeof args, "mkdir -p '%s'", p), args)), 0);
        for (int i = 0; i < 3; i++) {
            for (int k = 0; k < W * H * 3; k++)
                rgb[k] = (uint8_t)(k % 3 == 0 ? 200 - 60 * c : k % 3 == 1 ? 40 * i : 90);
            const uint8_t *jp;
            size_t jl;
            assert_int_equal(rt_jpeg_encode(j, rgb, W, H, 3, 95, &jp, &jl), 0);
            snprintf(p, sizeof p, "%s/train/%s/%d.jpg", tmp, cls[c], i);
            FILE *f = fopen(p, "wb");
            fwrite(jp, 1, jl, f);
            fclose(f);
        }
    }
    snprintf(p, sizeof p, "%s/train/a_cat/notes.txt", tmp); /* ignored */
    FILE *f = fopen(p, "w");
    fputs("x", f);
    fclose(f);
    snprintf(args, sizeof args, "convert imagefolder --in '%s' --out '%s/enc'", tmp, tmp);
    assert_int_equal(s_run(args), 0);
    snprintf(args, sizeof args, "convert imagefolder --in '%s/train' --out '%s/raw' --resize 8x6",
             tmp, tmp);
    assert_int_equal(s_run(args), 0);

    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.threads = 0;
    rt_loader_t *l = NULL;
    snprintf(p, sizeof p, "%s/enc", tmp);
    assert_int_equal(rt_loader_new(p, &o, &l), 0);
    assert_int_equal(rt_loader_count(l), 6);
    float *x = malloc(6 * 3 * H * W * sizeof *x);
    int32_t y[6];
    assert_int_equal(rt_loader_read(l, 0, 6, x, y), 0);
    for (int r = 0; r < 6; r++) {
        assert_int_equal(y[r], r / 3); /* a_cat = 0 first, then b_dog = 1 */
        /* the decoded pixel is close to the encoded colour (JPEG is lossy) */
        int c = r < 3 ? 1 : 0, i = r % 3;
        float red = (200 - 60 * c) / 255.0f, green = 40 * i / 255.0f;
        float *img = x + (size_t)r * 3 * H * W;
        assert_true(img[H * W / 2 + 5] > red - 0.05f && img[H * W / 2 + 5] < red + 0.05f);
        assert_true(img[H * W + 7] > green - 0.05f && img[H * W + 7] < green + 0.05f);
    }
    rt_loader_destroy(&l);
    /* raw BGR: with raw_bgr the loader gives RGB back */
    o.raw_bgr = true;
    snprintf(p, sizeof p, "%s/raw", tmp);
    assert_int_equal(rt_loader_new(p, &o, &l), 0);
    int c, h, w;
    rt_loader_shape(l, &c, &h, &w);
    assert_int_equal(c, 3);
    assert_int_equal(h, 6);
    assert_int_equal(w, 8);
    assert_int_equal(rt_loader_read(l, 0, 6, x, y), 0);
    for (int r = 0; r < 6; r++) {
        int cc = r < 3 ? 1 : 0;
        float red = (200 - 60 * cc) / 255.0f;
        assert_true(x[(size_t)r * 144 + 20] > red - 0.05f && x[(size_t)r * 144 + 20] < red + 0.05f);
    }
    rt_loader_destroy(&l);
    free(x);
    rt_jpeg_destroy(&j);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_png_among_jpegs(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char p[700], args[2400];
    enum { W = 24, H = 16 };
    static uint8_t rgba[W * H * 4], rgb[W * H * 3];
    for (int i = 0; i < W * H; i++) {
        rgba[4 * i] = 220;
        rgba[4 * i + 1] = (uint8_t)(8 * (i % W));
        rgba[4 * i + 2] = 60;
        rgba[4 * i + 3] = (uint8_t)(i % 7 * 30); /* alpha, which the RGB ignores */
        memcpy(rgb + 3 * i, rgba + 4 * i, 3);
    }
    snprintf(p, sizeof p, "%s/in/cls", tmp);
    assert_int_equal(system((snprintf(args, sizeof args, "mkdir -p '%s'", p), args)), 0);
    rt_jpeg_t *j = rt_jpeg_new();
    const uint8_t *jp;
    size_t jl;
    assert_int_equal(rt_jpeg_encode(j, rgb, W, H, 3, 95, &jp, &jl), 0);
    snprintf(p, sizeof p, "%s/in/cls/a.JPEG", tmp);
    FILE *f = fopen(p, "wb");
    fwrite(jp, 1, jl, f);
    fclose(f);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = W;
    im.height = H;
    im.format = PNG_FORMAT_RGBA;
    snprintf(p, sizeof p, "%s/in/cls/b.JPEG", tmp); /* a PNG, named as a JPEG */
    assert_true(png_image_write_to_file(&im, p, 0, rgba, 0, NULL));
    snprintf(args, sizeof args,
             "'%s' convert imagefolder --in '%s/in' --out '%s/db' 2>'%s/err.txt' >/dev/null",
             eb_test_binary(), tmp, tmp, tmp);
    assert_int_equal(system(args), 0);
    snprintf(p, sizeof p, "%s/err.txt", tmp);
    long n = 0;
    char *err = (char *)eb_test_read(p, &n);
    assert_non_null(err);
    assert_non_null(strstr(err, "b.JPEG is a PNG"));
    assert_non_null(strstr(err, "1 PNG among them"));
    free(err);
    /* both records decode to the RGB, within JPEG's error */
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.threads = 0;
    rt_loader_t *l = NULL;
    snprintf(p, sizeof p, "%s/db", tmp);
    assert_int_equal(rt_loader_new(p, &o, &l), 0);
    assert_int_equal(rt_loader_count(l), 2);
    float *x = malloc(2 * 3 * H * W * sizeof *x);
    int32_t y[2];
    assert_int_equal(rt_loader_read(l, 0, 2, x, y), 0);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < W * H; i += 37) {
                float v = x[((size_t)r * 3 + c) * H * W + i] * 255.0f;
                assert_true(fabsf(v - rgb[3 * i + c]) < 12.0f);
            }
    rt_loader_destroy(&l);
    free(x);
    /* neither a JPEG nor a PNG: the convert fails, naming the file */
    snprintf(p, sizeof p, "%s/in/cls/c.JPEG", tmp);
    f = fopen(p, "wb");
    fputs("GIF89a not really", f);
    fclose(f);
    snprintf(args, sizeof args,
             "'%s' convert imagefolder --in '%s/in' --out '%s/db2' 2>'%s/err2.txt' >/dev/null",
             eb_test_binary(), tmp, tmp, tmp);
    assert_int_not_equal(system(args), 0);
    snprintf(p, sizeof p, "%s/err2.txt", tmp);
    err = (char *)eb_test_read(p, &n);
    assert_non_null(err);
    assert_non_null(strstr(err, "c.JPEG"));
    free(err);
    /* a JPEG cut short: stored as it is, unless --verify decodes it (then named) */
    snprintf(p, sizeof p, "%s/in/cls/d.JPEG", tmp);
    f = fopen(p, "wb");
    fwrite(jp, 1, jl - 30, f); /* the entropy-coded data ends early; the header is whole */
    fclose(f);
    snprintf(p, sizeof p, "%s/in/cls/c.JPEG", tmp);
    assert_int_equal(remove(p), 0);
    snprintf(args, sizeof args, "convert imagefolder --in '%s/in' --out '%s/db3'", tmp, tmp);
    assert_int_equal(s_run(args), 0);
    snprintf(args, sizeof args,
             "'%s' convert imagefolder --in '%s/in' --out '%s/db4' --verify 2>'%s/err4.txt'",
             eb_test_binary(), tmp, tmp, tmp);
    assert_int_not_equal(system(args), 0);
    snprintf(p, sizeof p, "%s/err4.txt", tmp);
    err = (char *)eb_test_read(p, &n);
    assert_non_null(strstr(err, "d.JPEG"));
    free(err);
    /* --skip-bad: left out, named and counted; the others stored */
    snprintf(args, sizeof args,
             "'%s' convert imagefolder --in '%s/in' --out '%s/db5' --verify --skip-bad "
             "2>'%s/err5.txt'",
             eb_test_binary(), tmp, tmp, tmp);
    assert_int_equal(system(args), 0);
    snprintf(p, sizeof p, "%s/err5.txt", tmp);
    err = (char *)eb_test_read(p, &n);
    assert_non_null(strstr(err, "left out: "));
    assert_non_null(strstr(err, "d.JPEG"));
    assert_non_null(strstr(err, "1 unreadable image left out"));
    free(err);
    snprintf(p, sizeof p, "%s/db5", tmp);
    assert_int_equal(rt_loader_new(p, &o, &l), 0);
    assert_int_equal(rt_loader_count(l), 2);
    rt_loader_destroy(&l);
    rt_jpeg_destroy(&j);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fashion_mnist_exact),
        cmocka_unit_test(test_idx_plain_and_bad),
        cmocka_unit_test(test_cifar),
        cmocka_unit_test(test_imagefolder),
        cmocka_unit_test(test_png_among_jpegs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
