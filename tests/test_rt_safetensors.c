/*
 * test_rt_safetensors: round trip of every supported layout, clear errors for missing, mis-shaped
 * and mis-typed tensors, rejection (never a crash) of malformed files, atomic replacement, and
 * interoperability with an independent Python implementation (bench/safetensors_io.py).
 */
#include "eb_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rt_err.h"
#include "rt_safetensors.h"

/* The sample of bench/safetensors_io.py (same formulas). */
#define SAMPLE_BIG 120
struct sample {
    float weight[12];      /* layer.weight [3, 4]: i * 0.25 - 1 */
    int32_t labels[5];     /* labels [5]: i * 7 - 3 */
    float scale;           /* scale []: 2.5 */
    float big[SAMPLE_BIG]; /* big.x [2, 3, 4, 5]: (i % 17) * 0.125 - 1 */
};

static void s_sample_fill(struct sample *s)
{
    for (int i = 0; i < 12; i++)
        s->weight[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 5; i++)
        s->labels[i] = i * 7 - 3;
    s->scale = 2.5f;
    for (int i = 0; i < SAMPLE_BIG; i++)
        s->big[i] = (float)(i % 17) * 0.125f - 1.0f;
}

static int s_sample_write(const char *path, const struct sample *s)
{
    struct rt_st_tensor t[5] = {
        {.name = "layer.weight", .ndim = 2, .shape = {3, 4}, .data = s->weight},
        {.name = "labels", .dtype = RT_ST_I32, .ndim = 1, .shape = {5}, .data = s->labels},
        {.name = "scale", .ndim = 0, .data = &s->scale},
        {.name = "empty", .ndim = 2, .shape = {0, 3}, .data = NULL},
        {.name = "big.x", .ndim = 4, .shape = {2, 3, 4, 5}, .data = s->big},
    };
    const char *meta[] = {"producer", "eigenbatch", "format", "pt", NULL};
    return rt_st_write(path, t, 5, meta);
}

/* Open path and check that it holds the sample exactly. */
static void s_sample_check(const char *path, const char *producer)
{
    struct sample want, got;
    s_sample_fill(&want);
    memset(&got, 0, sizeof got);
    rt_st_t *st = NULL;
    int rc = rt_st_open(path, &st);
    if (rc)
        fail_msg("open %s: %s", path, rt_err_msg());
    assert_int_equal(rt_st_count(st), 5);
    assert_string_equal(rt_st_meta(st, "producer"), producer);
    assert_null(rt_st_meta(st, "nope"));
    const int wshape[2] = {3, 4};
    assert_int_equal(rt_st_read_f32(st, "layer.weight", 2, wshape, got.weight), 0);
    const int64_t lshape[1] = {5};
    assert_int_equal(rt_st_read(st, "labels", RT_ST_I32, 1, lshape, 0, got.labels), 0);
    assert_int_equal(rt_st_read_f32(st, "scale", 0, NULL, &got.scale), 0);
    const int bshape[4] = {2, 3, 4, 5};
    assert_int_equal(rt_st_read_f32(st, "big.x", 4, bshape, got.big), 0);
    const int eshape[2] = {0, 3};
    assert_int_equal(rt_st_read_f32(st, "empty", 2, eshape, NULL), 0);
    assert_memory_equal(&want, &got, sizeof want);

    const struct rt_st_info *e = rt_st_find(st, "empty");
    assert_non_null(e);
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->ndim, 2);
    const struct rt_st_info *l = rt_st_find(st, "labels");
    assert_int_equal(l->dtype, RT_ST_I32);
    assert_int_equal(l->nbytes, 20);
    /* rt_st_at lists by data offset: consecutive tensors are adjacent. */
    for (int i = 1; i < rt_st_count(st); i++) {
        const struct rt_st_info *a = rt_st_at(st, i - 1), *b = rt_st_at(st, i);
        assert_ptr_equal((const char *)a->data + a->nbytes, b->data);
    }
    rt_st_close(&st);
    assert_null(st);
    rt_st_close(&st);
}

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    struct sample s;
    s_sample_fill(&s);
    assert_int_equal(s_sample_write(path, &s), 0);
    s_sample_check(path, "eigenbatch");

    /* The writer pads the header so that the data starts 8-byte aligned. */
    FILE *f = fopen(path, "rb");
    unsigned char len[8];
    assert_int_equal(fread(len, 1, 8, f), 8);
    fclose(f);
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++)
        hlen |= (uint64_t)len[b] << (8 * b);
    assert_int_equal((8 + hlen) % 8, 0);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_errors_name_tensor_and_file(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    struct sample s;
    s_sample_fill(&s);
    assert_int_equal(s_sample_write(path, &s), 0);
    rt_st_t *st = NULL;
    assert_int_equal(rt_st_open(path, &st), 0);
    float buf[SAMPLE_BIG];

    const int shape[2] = {3, 4};
    assert_int_equal(rt_st_read_f32(st, "fc.weight", 2, shape, buf), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), "'fc.weight'"));
    assert_non_null(strstr(rt_err_msg(), path));
    assert_null(rt_st_find(st, "fc.weight"));

    const int bad[2] = {4, 3};
    assert_int_equal(rt_st_read_f32(st, "layer.weight", 2, bad, buf), RT_ERR_SHAPE);
    assert_non_null(strstr(rt_err_msg(), "'layer.weight'"));
    assert_non_null(strstr(rt_err_msg(), "expected shape [4, 3], got [3, 4]"));
    const int flat[1] = {12};
    assert_int_equal(rt_st_read_f32(st, "layer.weight", 1, flat, buf), RT_ERR_SHAPE);

    /* Element-count form: right count passes, wrong count names both. */
    assert_int_equal(rt_st_read(st, "layer.weight", RT_ST_F32, 0, NULL, 12, buf), 0);
    assert_int_equal(rt_st_read(st, "layer.weight", RT_ST_F32, 0, NULL, 11, buf), RT_ERR_SHAPE);

    const int lshape[1] = {5};
    assert_int_equal(rt_st_read_f32(st, "labels", 1, lshape, buf), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "expected dtype F32, got I32"));
    rt_st_close(&st);

    snprintf(path, sizeof path, "%s/absent.safetensors", dir);
    assert_int_equal(rt_st_open(path, &st), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), "absent.safetensors"));
    assert_null(st);
    eb_test_rmtree(dir);
    free(dir);
}

static void test_writer_rejects_bad_descriptors(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    float x[4] = {1, 2, 3, 4};
    struct rt_st_tensor dup[2] = {
        {.name = "a", .ndim = 1, .shape = {4}, .data = x},
        {.name = "a", .ndim = 1, .shape = {4}, .data = x},
    };
    assert_int_equal(rt_st_write(path, dup, 2, NULL), RT_ERR_ARG);
    assert_non_null(strstr(rt_err_msg(), "'a' appears twice"));
    struct rt_st_tensor reserved = {.name = "__metadata__", .ndim = 1, .shape = {4}, .data = x};
    assert_int_equal(rt_st_write(path, &reserved, 1, NULL), RT_ERR_ARG);
    struct rt_st_tensor neg = {.name = "n", .ndim = 1, .shape = {-1}, .data = x};
    assert_int_equal(rt_st_write(path, &neg, 1, NULL), RT_ERR_ARG);
    struct rt_st_tensor f64 = {.name = "d", .dtype = RT_ST_F64, .ndim = 1, .shape = {2}, .data = x};
    assert_int_equal(rt_st_write(path, &f64, 1, NULL), RT_ERR_ARG);
    /* Nothing was created by the failed writes, not even a temporary file. */
    DIR *d = opendir(dir);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)))
        entries += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 0);

    snprintf(path, sizeof path, "%s/no/such/dir/w.safetensors", dir);
    struct rt_st_tensor ok = {.name = "a", .ndim = 1, .shape = {4}, .data = x};
    assert_int_equal(rt_st_write(path, &ok, 1, NULL), RT_ERR_IO);
    assert_non_null(strstr(rt_err_msg(), "no/such/dir"));
    eb_test_rmtree(dir);
    free(dir);
}

static void test_atomic_replace(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    float a[3] = {1, 2, 3}, b[5] = {9, 8, 7, 6, 5};
    struct rt_st_tensor ta = {.name = "x", .ndim = 1, .shape = {3}, .data = a};
    struct rt_st_tensor tb = {.name = "x", .ndim = 1, .shape = {5}, .data = b};
    assert_int_equal(rt_st_write(path, &ta, 1, NULL), 0);
    rt_st_t *old = NULL;
    assert_int_equal(rt_st_open(path, &old), 0);
    assert_int_equal(rt_st_write(path, &tb, 1, NULL), 0);
    /* A reader of the old file keeps its (unlinked) version; a new reader sees the new one. */
    float got[5] = {0};
    assert_int_equal(rt_st_read(old, "x", RT_ST_F32, 0, NULL, 3, got), 0);
    assert_memory_equal(got, a, sizeof a);
    rt_st_t *st = NULL;
    assert_int_equal(rt_st_open(path, &st), 0);
    assert_int_equal(rt_st_read(st, "x", RT_ST_F32, 0, NULL, 5, got), 0);
    assert_memory_equal(got, b, sizeof b);
    rt_st_close(&st);
    rt_st_close(&old);
    DIR *d = opendir(dir);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)))
        entries += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 1);
    eb_test_rmtree(dir);
    free(dir);
}

/* Write an 8-byte length (hlen, or strlen(json) when hlen is UINT64_MAX), json, then data_len bytes
 * of zeros. */
static void s_write_raw(const char *path, uint64_t hlen, const char *json, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = hlen == UINT64_MAX ? strlen(json) : hlen;
    unsigned char len[8];
    for (int b = 0; b < 8; b++)
        len[b] = (unsigned char)(n >> (8 * b));
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    if (*json)
        assert_int_equal(fwrite(json, 1, strlen(json), f), strlen(json));
    for (size_t i = 0; i < data_len; i++)
        fputc(0, f);
    fclose(f);
}

/* Expect opening a raw file to fail with `code` and a detail containing `what`. */
static void s_expect_bad(const char *path, uint64_t hlen, const char *json, size_t data_len,
                         int code, const char *what)
{
    s_write_raw(path, hlen, json, data_len);
    rt_st_t *st = NULL;
    int rc = rt_st_open(path, &st);
    if (rc != code || !strstr(rt_err_msg(), what))
        fail_msg("header %s: got %d '%s', want %d '%s'", json, rc, rc ? rt_err_msg() : "", code,
                 what);
    assert_null(st);
}

static void test_malformed_files(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char p[4096];
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    const uint64_t AUTO = UINT64_MAX;
#define T(j) "{\"t\":{\"dtype\":\"F32\",\"shape\":" j "}}"

    /* Too short, length prefix too large or past the end. */
    FILE *f = fopen(p, "wb");
    fputs("abc", f);
    fclose(f);
    rt_st_t *st = NULL;
    assert_int_equal(rt_st_open(p, &st), RT_ERR_TRUNCATED);
    s_expect_bad(p, (uint64_t)1 << 40, "{}", 0, RT_ERR_TOOBIG, "exceeds");
    s_expect_bad(p, 1000, "{}", 0, RT_ERR_TRUNCATED, "header of 1000 bytes");
    /* Not JSON, not an object, duplicate keys. */
    s_expect_bad(p, AUTO, "{\"t\":", 0, RT_ERR_FORMAT, "header JSON");
    s_expect_bad(p, AUTO, "[1,2]", 0, RT_ERR_FORMAT, "not a JSON object");
    s_expect_bad(p, AUTO, "", 0, RT_ERR_FORMAT, "not a JSON object");
    s_expect_bad(p, AUTO,
                 "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                 4, RT_ERR_FORMAT, "duplicate");
    /* Entries: missing fields, unknown dtype, bad shape, bad offsets. */
    s_expect_bad(p, AUTO, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, RT_ERR_FORMAT,
                 "'t': entry needs");
    s_expect_bad(p, AUTO, "{\"t\":[]}", 0, RT_ERR_FORMAT, "'t'");
    s_expect_bad(p, AUTO, "{\"t\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 RT_ERR_FORMAT, "unknown dtype 'Q7'");
    s_expect_bad(p, AUTO, T("[-1],\"data_offsets\":[0,4]"), 4, RT_ERR_FORMAT, "shape[0]");
    s_expect_bad(p, AUTO, T("[1.5],\"data_offsets\":[0,4]"), 4, RT_ERR_FORMAT, "shape[0]");
    s_expect_bad(p, AUTO, T("[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), 4, RT_ERR_FORMAT,
                 "9 dimensions");
    s_expect_bad(p, AUTO, T("[1],\"data_offsets\":[4,0]"), 4, RT_ERR_FORMAT, "begin <= end");
    s_expect_bad(p, AUTO, T("[1],\"data_offsets\":[0]"), 4, RT_ERR_FORMAT, "data_offsets");
    s_expect_bad(p, AUTO, T("[1],\"data_offsets\":[0,8]"), 4, RT_ERR_TRUNCATED, "past the data");
    s_expect_bad(p, AUTO, T("[2],\"data_offsets\":[0,4]"), 4, RT_ERR_SIZE, "needs 8");
    s_expect_bad(p, AUTO, T("[4611686018427387904,4],\"data_offsets\":[0,4]"), 4, RT_ERR_SIZE,
                 "'t'");
    s_expect_bad(p, AUTO, T("[1],\"data_offsets\":[0,4],\"x\":1"), 4, RT_ERR_FORMAT,
                 "unexpected fields");
    /* Layout of the data: overlap, hole, trailing bytes. */
    s_expect_bad(p, AUTO,
                 "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                 8, RT_ERR_FORMAT, "overlaps");
    s_expect_bad(p, AUTO, T("[1],\"data_offsets\":[4,8]"), 8, RT_ERR_FORMAT, "unused bytes");
    s_expect_bad(p, AUTO, T("[1],\"data_offsets\":[0,4]"), 6, RT_ERR_FORMAT, "after the last");
    /* Metadata must map strings to strings. */
    s_expect_bad(p, AUTO, "{\"__metadata__\":{\"a\":1}}", 0, RT_ERR_FORMAT, "__metadata__");
    s_expect_bad(p, AUTO, "{\"__metadata__\":[]}", 0, RT_ERR_FORMAT, "__metadata__");
    /* A valid minimal file opens: the checks above are not just rejecting everything. */
    s_write_raw(p, AUTO, T("[1],\"data_offsets\":[0,4]"), 4);
    assert_int_equal(rt_st_open(p, &st), 0);
    rt_st_close(&st);
    s_write_raw(p, AUTO, "{}", 0);
    assert_int_equal(rt_st_open(p, &st), 0);
    assert_int_equal(rt_st_count(st), 0);
    rt_st_close(&st);
#undef T
    eb_test_rmtree(dir);
    free(dir);
}

/* Every truncation and many single-byte corruptions of a valid file fail cleanly or open into a
 * consistent handle; none crashes (the sanitizer build checks the reads). */
static void test_corruption_never_crashes(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char good[4096], bad[4096];
    snprintf(good, sizeof good, "%s/good.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    struct sample s;
    s_sample_fill(&s);
    assert_int_equal(s_sample_write(good, &s), 0);
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)len);
    assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);

    for (long cut = 0; cut < len; cut++) {
        f = fopen(bad, "wb");
        fwrite(buf, 1, (size_t)cut, f);
        fclose(f);
        rt_st_t *st = NULL;
        assert_true(rt_st_open(bad, &st) < 0);
    }
    unsigned seed = 12345;
    for (int trial = 0; trial < 400; trial++) {
        unsigned char *c = malloc((size_t)len);
        memcpy(c, buf, (size_t)len);
        seed = seed * 1103515245u + 12345u;
        long pos = (long)((seed >> 8) % (unsigned)len);
        seed = seed * 1103515245u + 12345u;
        c[pos] = (unsigned char)(seed >> 16);
        f = fopen(bad, "wb");
        fwrite(c, 1, (size_t)len, f);
        fclose(f);
        free(c);
        rt_st_t *st = NULL;
        if (rt_st_open(bad, &st) == 0) {
            float out[SAMPLE_BIG];
            for (int i = 0; i < rt_st_count(st); i++) {
                const struct rt_st_info *t = rt_st_at(st, i);
                if (t->dtype == RT_ST_F32 && t->numel <= SAMPLE_BIG)
                    assert_int_equal(rt_st_read(st, t->name, RT_ST_F32, 0, NULL, t->numel, out), 0);
            }
            rt_st_close(&st);
        }
    }
    free(buf);
    eb_test_rmtree(dir);
    free(dir);
}

/* Run a shell command; returns its exit status (or -1). */
static int s_system(const char *cmd)
{
    int st = system(cmd);
    return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static void test_python_interop(void **state)
{
    (void)state;
    if (s_system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0)
        skip();
    char *dir = eb_test_tmpdir();
    char path[4096], cmd[8192];
    const char *script = "bench/safetensors_io.py";

    snprintf(path, sizeof path, "%s/py.safetensors", dir);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/%s sample %s", eb_test_source_dir(), script,
             path);
    assert_int_equal(s_system(cmd), 0);
    s_sample_check(path, "python");

    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    struct sample s;
    s_sample_fill(&s);
    assert_int_equal(s_sample_write(path, &s), 0);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/%s verify-sample %s", eb_test_source_dir(),
             script, path);
    assert_int_equal(s_system(cmd), 0);
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_errors_name_tensor_and_file),
        cmocka_unit_test(test_writer_rejects_bad_descriptors),
        cmocka_unit_test(test_atomic_replace),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_corruption_never_crashes),
        cmocka_unit_test(test_python_interop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
