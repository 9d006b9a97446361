/*
 * test_rt_jpeg: encode/decode round trip (RGB, BGR, grey), header, scaled decode size, and a
 * corrupt or truncated JPEG is an error naming the image.
 */
#include "eb_test.h"

#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_jpeg.h"

#define S_W 48
#define S_H 32

static void test_round_trip(void **state)
{
    (void)state;
    rt_jpeg_t *j = rt_jpeg_new();
    assert_non_null(j);
    static uint8_t rgb[S_W * S_H * 3], out[S_W * S_H * 3];
    for (int y = 0; y < S_H; y++)
        for (int x = 0; x < S_W; x++) {
            rgb[(y * S_W + x) * 3] = (uint8_t)(x * 5);
            rgb[(y * S_W + x) * 3 + 1] = (uint8_t)(y * 7);
            rgb[(y * S_W + x) * 3 + 2] = 120;
        }
    const uint8_t *jp;
    size_t jl;
    assert_int_equal(rt_jpeg_encode(j, rgb, S_W, S_H, 3, 98, &jp, &jl), 0);
    uint8_t *copy = malloc(jl);
    memcpy(copy, jp, jl);
    int w, h, c;
    assert_int_equal(rt_jpeg_header(j, copy, jl, "img", &w, &h, &c), 0);
    assert_int_equal(w, S_W);
    assert_int_equal(h, S_H);
    assert_int_equal(c, 3);
    assert_int_equal(rt_jpeg_decode(j, copy, jl, "img", 1, 3, 0, out), 0);
    int maxerr = 0;
    for (int i = 0; i < S_W * S_H * 3; i++) {
        int e = abs(out[i] - rgb[i]);
        maxerr = e > maxerr ? e : maxerr;
    }
    assert_true(maxerr < 24); /* lossy, 4:2:0 chroma */
    /* BGR order swaps channels 0 and 2 */
    static uint8_t bgr[S_W * S_H * 3];
    assert_int_equal(rt_jpeg_decode(j, copy, jl, "img", 1, 3, 1, bgr), 0);
    for (int i = 0; i < S_W * S_H; i++) {
        assert_int_equal(bgr[i * 3], out[i * 3 + 2]);
        assert_int_equal(bgr[i * 3 + 2], out[i * 3]);
    }
    /* half-scale decode */
    int sw, sh;
    rt_jpeg_scaled_size(S_W, S_H, 2, &sw, &sh);
    assert_int_equal(sw, S_W / 2);
    assert_int_equal(sh, S_H / 2);
    assert_int_equal(rt_jpeg_decode(j, copy, jl, "img", 2, 1, 0, out), 0);
    assert_int_equal(rt_jpeg_decode(j, copy, jl, "img", 3, 1, 0, out), RT_ERR_ARG);
    /* truncated and corrupt */
    assert_int_equal(rt_jpeg_decode(j, copy, jl / 2, "cut.jpg", 1, 3, 0, out), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "cut.jpg"));
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof junk);
    assert_int_equal(rt_jpeg_header(j, junk, sizeof junk, "junk.jpg", &w, &h, &c), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "junk.jpg"));
    /* greyscale */
    static uint8_t grey[S_W * S_H];
    memset(grey, 77, sizeof grey);
    assert_int_equal(rt_jpeg_encode(j, grey, S_W, S_H, 1, 90, &jp, &jl), 0);
    assert_int_equal(rt_jpeg_header(j, jp, jl, "g", &w, &h, &c), 0);
    assert_int_equal(c, 1);
    free(copy);
    rt_jpeg_destroy(&j);
    rt_jpeg_destroy(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
