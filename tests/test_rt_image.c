/*
 * test_rt_image: the resampler keeps constant images constant, is the identity at scale 1 on
 * whole pixels, and matches Pillow's Image.resize(size, BILINEAR, box) exactly (checked against
 * Debian's python3-pil when /usr/bin/python3 has it); resized from only the window of the image its
 * filter reads, it gives the same bytes.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rt_err.h"
#include "rt_image.h"

#define S_W 53
#define S_H 37

static void s_fill(uint8_t *img)
{
    uint32_t st = 12345;
    for (int i = 0; i < S_W * S_H * 3; i++) {
        st = st * 1103515245u + 12345u;
        img[i] = (uint8_t)(st >> 16);
    }
}

static void test_constant_and_identity(void **state)
{
    (void)state;
    static uint8_t in[S_W * S_H * 3], out[100 * 100 * 3];
    struct rt_image_scratch s = {0};
    memset(in, 77, sizeof in);
    assert_int_equal(
        rt_image_resize(in, S_W, S_H, S_W * 3, 3, 1.5f, 2.25f, 40, 30, out, 17, 9, 17 * 3, &s), 0);
    for (int i = 0; i < 17 * 9 * 3; i++)
        assert_int_equal(out[i], 77);
    s_fill(in);
    assert_int_equal(
        rt_image_resize(in, S_W, S_H, S_W * 3, 3, 0, 0, S_W, S_H, out, S_W, S_H, S_W * 3, &s), 0);
    assert_memory_equal(in, out, sizeof in);
    /* a single plane of an interleaved image through strides: c = 1 on plane 0 of CHW data */
    assert_int_equal(rt_image_resize(in, S_W, 3, S_W, 1, 0, 0, S_W, 3, out, S_W, 3, S_W, &s), 0);
    assert_memory_equal(in, out, S_W * 3);
    assert_int_equal(
        rt_image_resize(in, S_W, S_H, S_W * 3, 3, 0, 0, S_W + 1, S_H, out, 4, 4, 12, &s),
        RT_ERR_ARG);
    rt_image_scratch_free(&s);
    rt_image_scratch_free(&s);
}

static void test_matches_pillow(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import numpy, PIL' >/dev/null 2>&1") != 0) {
        print_message("/usr/bin/python3 with numpy and PIL not available\n");
        skip();
    }
    char *tmp = eb_test_tmpdir();
    char p[600], cmd[2400];
    static uint8_t in[S_W * S_H * 3], got[80 * 60 * 3], ref[80 * 60 * 3];
    s_fill(in);
    snprintf(p, sizeof p, "%s/in.bin", tmp);
    FILE *f = fopen(p, "wb");
    assert_int_equal(fwrite(in, 1, sizeof in, f), sizeof in);
    fclose(f);
    /* boxes: a fractional downscale crop, an upscale, a strong downscale */
    const float box[3][4] = {{3.5f, 2, 50, 33}, {0, 0, S_W, S_H}, {1, 0, 52, 36}};
    const int size[3][2] = {{20, 15}, {80, 60}, {7, 5}};
    struct rt_image_scratch s = {0};
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import numpy as np; from PIL import Image; "
                 "a = np.fromfile('%s/in.bin', np.uint8).reshape(%d, %d, 3); "
                 "Image.fromarray(a).resize((%d, %d), Image.BILINEAR, box=(%g, %g, %g, %g))"
                 ".save('%s/out.ppm')\"",
                 tmp, S_H, S_W, size[k][0], size[k][1], box[k][0], box[k][1], box[k][2], box[k][3],
                 tmp);
        assert_int_equal(system(cmd), 0);
        snprintf(p, sizeof p, "%s/out.ppm", tmp);
        f = fopen(p, "rb");
        assert_non_null(f);
        int w, h, mx;
        assert_int_equal(fscanf(f, "P6 %d %d %d", &w, &h, &mx), 3);
        fgetc(f);
        assert_int_equal(w, size[k][0]);
        assert_int_equal(h, size[k][1]);
        size_t n = (size_t)w * h * 3;
        assert_int_equal(fread(ref, 1, n, f), n);
        fclose(f);
        assert_int_equal(rt_image_resize(in, S_W, S_H, S_W * 3, 3, box[k][0], box[k][1], box[k][2],
                                         box[k][3], got, w, h, (size_t)w * 3, &s),
                         0);
        assert_memory_equal(got, ref, n);
    }
    rt_image_scratch_free(&s);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* Resizing from the window rt_image_support names, copied out alone, gives the bytes of the
 * resize on the whole image: RGB (the vector path too) and one channel, downscales, upscales,
 * boxes at the edges and in the middle; a window one column or row short is refused. */
static void test_window(void **state)
{
    (void)state;
    enum { W = 301, H = 203 };
    static uint8_t img[W * H * 3], win_px[W * H * 3], a[224 * 224 * 3], b[224 * 224 * 3];
    uint32_t st = 777;
    for (size_t i = 0; i < sizeof img; i++) {
        st = st * 1103515245u + 12345u;
        img[i] = (uint8_t)(st >> 16);
    }
    const float box[6][4] = {
        {37.3f, 20.9f, 262.1f, 180.4f}, {0, 0, W, H},        {0.5f, 0.25f, 100, 80},
        {200, 150, 301, 203},           {120, 90, 140, 100}, {10, 5, 290.75f, 199.5f}};
    const int out[6][2] = {{224, 160}, {64, 48}, {224, 224}, {30, 20}, {100, 50}, {7, 5}};
    struct rt_image_scratch s = {0};
    for (int k = 0; k < 6; k++)
        for (int c = 1; c <= 3; c += 2) {
            int dw = out[k][0], dh = out[k][1], win[4];
            const float *q = box[k];
            assert_int_equal(rt_image_support(W, H, q[0], q[1], q[2], q[3], dw, dh, win), 0);
            assert_true(win[0] >= 0 && win[1] >= 0 && win[2] <= W && win[3] <= H);
            assert_true(win[0] <= (int)q[0] && win[2] >= (int)q[2]);
            int ww = win[2] - win[0], wh = win[3] - win[1];
            for (int y = 0; y < wh; y++) /* the window alone, rows packed */
                memcpy(win_px + (size_t)y * ww * c, img + ((size_t)(win[1] + y) * W + win[0]) * c,
                       (size_t)ww * c);
            assert_int_equal(rt_image_resize(img, W, H, (size_t)W * c, c, q[0], q[1], q[2], q[3], a,
                                             dw, dh, (size_t)dw * c, &s),
                             0);
            memset(b, 0, sizeof b);
            assert_int_equal(rt_image_resize_window(win_px, W, H, win, (size_t)ww * c, c, q[0],
                                                    q[1], q[2], q[3], b, dw, dh, (size_t)dw * c,
                                                    &s),
                             0);
            assert_memory_equal(a, b, (size_t)dw * dh * c);
            /* one column or row short of the support */
            int shorter[4][4] = {{win[0] + 1, win[1], win[2], win[3]},
                                 {win[0], win[1] + 1, win[2], win[3]},
                                 {win[0], win[1], win[2] - 1, win[3]},
                                 {win[0], win[1], win[2], win[3] - 1}};
            for (int t = 0; t < 4; t++) {
                const int *v = shorter[t];
                if (v[2] - v[0] < 1 || v[3] - v[1] < 1)
                    continue;
                const uint8_t *origin = img + ((size_t)v[1] * W + v[0]) * c;
                assert_int_equal(rt_image_resize_window(origin, W, H, v, (size_t)W * c, c, q[0],
                                                        q[1], q[2], q[3], b, dw, dh, (size_t)dw * c,
                                                        &s),
                                 RT_ERR_ARG);
            }
        }
    rt_image_scratch_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant_and_identity),
        cmocka_unit_test(test_matches_pillow),
        cmocka_unit_test(test_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
