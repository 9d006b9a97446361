/*
 * test_data_torchvision: the loader's sample transforms against torchvision's (Debian's
 * python3-torchvision, through tests/tools/tv_transforms.py) on JPEGs of several sizes, one of
 * them greyscale: evaluation Resize + CenterCrop, RandomResizedCrop with a flip (the same crop
 * box from the same random draws; pixels within 2 levels of 255), and ToTensor + Normalize bit
 * for bit. Also: DCT-scaled decoding stays close to the full decode, and is used when the box is
 * much larger than the output; evaluation decodes only the window its resize reads, with the bytes
 * of the whole decode. The torchvision comparison skips when /usr/bin/python3 cannot import it.
 */
#include "eb_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_datum.h"
#include "rt_err.h"
#include "rt_jpeg.h"
#include "rt_image.h"
#include "rt_transform.h"

#define S_H 48      /* output rows */
#define S_W 40      /* output columns */
#define S_RESIZE 56 /* evaluation: shorter side */
#define S_SEEDS 8   /* training samples per image */

static const float s_mean[3] = {0.485f, 0.456f, 0.406f};
static const float s_std[3] = {0.229f, 0.224f, 0.225f};

/* A photograph-like test image: smooth gradients, a few edges and hashed noise. */
static uint8_t *s_pixels(int w, int h, int c, int tag)
{
    uint8_t *px = malloc((size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                uint32_t n = (uint32_t)(x * 73856093u ^ y * 19349663u ^ (k + tag) * 83492791u);
                double v = 128 + 80 * sin(0.07 * x * (k + 1) + 0.05 * y + tag) +
                           ((x / 9 + y / 7) % 2 ? 30 : -30) + (double)(n % 17) - 8;
                px[((size_t)y * w + x) * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return px;
}

/* Encode a test image; *jpeg is malloc'd. */
static size_t s_encode(int w, int h, int c, int tag, uint8_t **jpeg)
{
    uint8_t *px = s_pixels(w, h, c, tag);
    rt_jpeg_t *j = rt_jpeg_new();
    const uint8_t *out;
    size_t len;
    assert_int_equal(rt_jpeg_encode(j, px, w, h, c, 95, &out, &len), 0);
    *jpeg = malloc(len);
    memcpy(*jpeg, out, len);
    rt_jpeg_destroy(&j);
    free(px);
    return len;
}

static void s_spec(struct rt_transform_spec *sp, int h, int w)
{
    memset(sp, 0, sizeof *sp);
    sp->channels = 3;
    sp->height = h;
    sp->width = w;
    sp->flip = true;
    sp->rrc = true;
    sp->rrc_scale[0] = 0.08f;
    sp->rrc_scale[1] = 1.0f;
    sp->rrc_ratio[0] = 3.0f / 4.0f;
    sp->rrc_ratio[1] = 4.0f / 3.0f;
    sp->eval_crop = 1.0f;
    sp->eval_resize = S_RESIZE;
    sp->use_lut = true;
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 256; p++) /* as rt_loader fills it */
            sp->lut[c][p] = ((float)p / 255.0f - s_mean[c]) / s_std[c];
}

static void s_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void test_against_torchvision(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import torchvision, PIL' >/dev/null 2>&1") != 0) {
        print_message("/usr/bin/python3 cannot import torchvision: skipped\n");
        skip();
    }
    char *tmp = eb_test_tmpdir();
    char man[600], p[700], out[700];
    snprintf(man, sizeof man, "%s/manifest", tmp);
    FILE *mf = fopen(man, "w");
    assert_non_null(mf);
    const int dims[4][3] = {{131, 97, 3}, {90, 150, 3}, {100, 80, 1}, {S_W, S_H, 3}};
    rt_transform_t *x = rt_transform_new();
    float *o = malloc(sizeof(float) * 3 * S_H * S_W);
    for (int i = 0; i < 4; i++) {
        int w = dims[i][0], h = dims[i][1];
        uint8_t *jpeg;
        size_t len = s_encode(w, h, dims[i][2], i, &jpeg);
        snprintf(p, sizeof p, "%s/img%d.jpg", tmp, i);
        s_write(p, jpeg, len);
        struct rt_datum d = {.kind = RT_DATUM_ENCODED, .data = jpeg, .data_len = len};
        struct rt_transform_spec sp;
        s_spec(&sp, S_H, S_W);
        if (i == 3) { /* the output size, no resize: normalisation alone, bit for bit */
            sp.eval_resize = 0;
            assert_int_equal(rt_transform_apply(x, &sp, &d, p, 0, false, o), 0);
            snprintf(out, sizeof out, "%s/ident%d.f32", tmp, i);
            s_write(out, o, sizeof(float) * 3 * S_H * S_W);
            fprintf(mf, "ident %s %d %d %s\n", p, S_H, S_W, out);
            free(jpeg);
            continue;
        }
        assert_int_equal(rt_transform_apply(x, &sp, &d, p, 0, false, o), 0);
        snprintf(out, sizeof out, "%s/eval%d.f32", tmp, i);
        s_write(out, o, sizeof(float) * 3 * S_H * S_W);
        fprintf(mf, "eval %s %d %d %d %s\n", p, S_H, S_W, S_RESIZE, out);
        for (uint64_t s = 0; s < S_SEEDS; s++) {
            uint64_t seed = 0x1234567ull * (s + 1) + (uint64_t)i;
            struct rt_transform_box b;
            rt_transform_plan(&sp, h, w, seed, true, &b);
            assert_int_equal(rt_transform_dct_denom(&sp, &b), 1); /* dct_scale off */
            assert_int_equal(rt_transform_apply(x, &sp, &d, p, seed, true, o), 0);
            snprintf(out, sizeof out, "%s/train%d_%d.f32", tmp, i, (int)s);
            s_write(out, o, sizeof(float) * 3 * S_H * S_W);
            fprintf(mf, "train %s %d %d %llu 1 %d %d %d %d %s\n", p, S_H, S_W,
                    (unsigned long long)seed, (int)b.y0, (int)b.x0, (int)(b.y1 - b.y0),
                    (int)(b.x1 - b.x0), out);
        }
        free(jpeg);
    }
    fclose(mf);
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/tools/tv_transforms.py' '%s'",
             eb_test_source_dir(), man);
    assert_int_equal(system(cmd), 0);
    free(o);
    rt_transform_destroy(&x);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* DCT scaling: chosen only with a box of at least twice the output per side at that scale, and
 * close to the full decode (mean difference under 2 levels of 255). */
/* Evaluation (Resize + CenterCrop) decodes only the window of the JPEG its resize reads, and gives
 * the bytes the whole decode gives (EB_JPEG_FULL_DECODE=1): RGB and greyscale, landscape and
 * portrait, crops that leave out much or little of the image. */
static void test_eval_window(void **state)
{
    (void)state;
    const int dims[5][3] = {
        {640, 480, 3}, {333, 500, 3}, {257, 255, 1}, {1024, 96, 3}, {S_W + 3, S_H + 5, 3}};
    const int resize[5] = {256, 300, 64, 80, S_RESIZE};
    rt_transform_t *x = rt_transform_new();
    float *a = malloc(sizeof(float) * 3 * 300 * 300), *b = malloc(sizeof(float) * 3 * 300 * 300);
    int windowed = 0;
    for (int i = 0; i < 5; i++) {
        int w = dims[i][0], h = dims[i][1];
        uint8_t *jpeg;
        size_t len = s_encode(w, h, dims[i][2], 10 + i, &jpeg);
        struct rt_datum d = {.kind = RT_DATUM_ENCODED, .data = jpeg, .data_len = len};
        struct rt_transform_spec sp;
        int oh = i == 4 ? S_H : resize[i] * 7 / 8, ow = i == 4 ? S_W : resize[i] * 7 / 8;
        s_spec(&sp, oh, ow);
        sp.eval_resize = resize[i];
        struct rt_transform_box box;
        rt_transform_plan(&sp, h, w, 0, false, &box);
        int win[4];
        assert_int_equal(rt_image_support(w, h, box.x0, box.y0, box.x1, box.y1, ow, oh, win), 0);
        windowed += (double)(win[2] - win[0]) * (win[3] - win[1]) <= 0.9 * w * h;
        size_t n = (size_t)3 * oh * ow;
        setenv("EB_JPEG_FULL_DECODE", "1", 1);
        assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 0, false, a), 0);
        unsetenv("EB_JPEG_FULL_DECODE");
        assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 0, false, b), 0);
        assert_memory_equal(a, b, n * sizeof(float));
        free(jpeg);
    }
    assert_true(windowed >= 3); /* most of them took the window path */
    free(a);
    free(b);
    rt_transform_destroy(&x);
}

static void test_dct_scaling(void **state)
{
    (void)state;
    uint8_t *jpeg;
    size_t len = s_encode(800, 600, 3, 5, &jpeg);
    struct rt_datum d = {.kind = RT_DATUM_ENCODED, .data = jpeg, .data_len = len};
    struct rt_transform_spec sp;
    s_spec(&sp, 64, 64);
    sp.eval_resize = 73;
    struct rt_transform_box b;
    rt_transform_plan(&sp, 600, 800, 0, false, &b);
    assert_int_equal(rt_transform_dct_denom(&sp, &b), 1);
    sp.dct_scale = true;
    assert_int_equal(rt_transform_dct_denom(&sp, &b), 4); /* box ~526: 526/4 >= 128 */
    sp.height = sp.width = 100;
    sp.eval_resize = 100;
    rt_transform_plan(&sp, 600, 800, 0, false, &b);
    assert_int_equal(rt_transform_dct_denom(&sp, &b), 2);
    sp.height = sp.width = 64;
    sp.eval_resize = 73;
    rt_transform_t *x = rt_transform_new();
    float full[3 * 64 * 64], fast[3 * 64 * 64];
    sp.dct_scale = false;
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 0, false, full), 0);
    sp.dct_scale = true;
    assert_int_equal(rt_transform_apply(x, &sp, &d, "k", 0, false, fast), 0);
    double sum = 0;
    for (int i = 0; i < 3 * 64 * 64; i++)
        sum += fabs(full[i] - fast[i]) * s_std[i / (64 * 64)] * 255;
    print_message("DCT 1/4 against full decode: mean difference %.3f levels\n",
                  sum / (3 * 64 * 64));
    assert_true(sum / (3 * 64 * 64) < 2.0);
    /* over the pixel limit: refused, naming the record and the option */
    sp.max_pixels = 800 * 600 - 1;
    assert_int_equal(rt_transform_apply(x, &sp, &d, "00000042", 0, false, fast), RT_ERR_TOOBIG);
    assert_non_null(strstr(rt_err_msg(), "00000042"));
    assert_non_null(strstr(rt_err_msg(), "data.max_image_pixels"));
    rt_transform_destroy(&x);
    free(jpeg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_torchvision),
        cmocka_unit_test(test_dct_scaling),
        cmocka_unit_test(test_eval_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
