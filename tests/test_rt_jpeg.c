/*
 * test_rt_jpeg: encode/decode round trip (RGB, BGR, grey), header, scaled decode size, and a
 * corrupt or truncated JPEG is an error naming the image; a region decode gives exactly the
 * pixels of a full decode for every chroma subsampling, progressive JPEGs and greyscale ones. A
 * CMYK JPEG (ImageNet holds a few) decodes, whole, scaled and by region, to the RGB that Pillow's
 * Image.open(f).convert("RGB") gives (torchvision's loader), checked when python3 has PIL. Corrupt
 * data that Pillow reads (extraneous bytes before the end marker, as in some ImageNet files)
 * decodes to the clean file's pixels; data cut short fails, by region too.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <turbojpeg.h>

#include "rt_err.h"
#include "rt_jpeg.h"
#include "rt_rng.h"

#define S_W 48
#define S_H 32
#define S_REGIONS 40 /* random regions per JPEG and channel count */

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

/* Image of width w, height h: smooth colour ramps plus noise, so that every DCT block and every
 * chroma sample differs from its neighbours. */
static void s_picture(uint8_t *p, int w, int h, uint64_t *st)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 3 + (int)(rt_rng_next(st) % 40));
            q[1] = (uint8_t)(y * 5 + (int)(rt_rng_next(st) % 40));
            q[2] = (uint8_t)((x + y) * 2 + (int)(rt_rng_next(st) % 80));
        }
}

/* Compare S_REGIONS random regions (and the edges, corners and the whole image) of one JPEG decoded
 * to `channels` against the full decode. */
static void s_check_regions(rt_jpeg_t *j, const uint8_t *jp, size_t jl, const char *name, int w,
                            int h, int channels, uint64_t *st)
{
    uint8_t *full = malloc((size_t)w * h * channels), *reg = malloc((size_t)w * h * channels);
    assert_non_null(full);
    assert_non_null(reg);
    /* the reference: TurboJPEG's own full decode */
    tjhandle dec = tjInitDecompress();
    assert_non_null(dec);
    assert_int_equal(tjDecompress2(dec, jp, (unsigned long)jl, full, w, w * channels, h,
                                   channels == 1 ? TJPF_GRAY : TJPF_RGB, 0),
                     0);
    tjDestroy(dec);
    uint8_t *mine = malloc((size_t)w * h * channels);
    assert_non_null(mine);
    assert_int_equal(rt_jpeg_decode(j, jp, jl, "full", 1, channels, 0, mine), 0);
    assert_memory_equal(mine, full, (size_t)w * h * channels);
    free(mine);
    for (int t = 0; t < S_REGIONS + 6; t++) {
        int x0, y0, x1, y1;
        if (t < S_REGIONS) {
            x0 = (int)rt_rng_int(st, w - 1);
            y0 = (int)rt_rng_int(st, h - 1);
            x1 = x0 + 1 + (int)rt_rng_int(st, w - x0 - 1);
            y1 = y0 + 1 + (int)rt_rng_int(st, h - y0 - 1);
        } else { /* whole, left/top strip, right/bottom strip, corners */
            static const int f[6][4] = {{0, 0, 8, 8}, {0, 0, 1, 8}, {7, 7, 8, 8},
                                        {0, 4, 8, 8}, {4, 0, 8, 4}, {1, 1, 7, 7}};
            x0 = f[t - S_REGIONS][0] * w / 8;
            y0 = f[t - S_REGIONS][1] * h / 8;
            x1 = f[t - S_REGIONS][2] * w / 8;
            y1 = f[t - S_REGIONS][3] * h / 8;
        }
        struct rt_jpeg_region wh;
        assert_true(rt_jpeg_region_bytes(w, y0, y1, channels) <= (size_t)w * h * channels);
        assert_int_equal(
            rt_jpeg_decode_region(j, jp, jl, "reg", channels, x0, y0, x1, y1, reg, &wh), 0);
        size_t n = (size_t)(x1 - x0) * channels;
        for (int y = y0; y < y1; y++)
            if (memcmp(reg + wh.offset + (size_t)(y - y0) * wh.stride,
                       full + ((size_t)y * w + x0) * channels, n)) {
                fail_msg("region [%d,%d)x[%d,%d) of %s %dx%d (%d channels) differs at row %d", x0,
                         x1, y0, y1, name, w, h, channels, y);
            }
    }
    free(full);
    free(reg);
}

static void test_region(void **state)
{
    (void)state;
    static const int sizes[][2] = {{500, 375}, {333, 217}, {64, 48}, {47, 161}, {31, 33}, {17, 9}};
    static const int samps[] = {TJSAMP_420, TJSAMP_422, TJSAMP_444, TJSAMP_440, TJSAMP_GRAY};
    static const char *names[] = {"4:2:0", "4:2:2", "4:4:4", "4:4:0", "grey"};
    uint64_t st = 42;
    rt_jpeg_t *j = rt_jpeg_new();
    assert_non_null(j);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int w = sizes[si][0], h = sizes[si][1];
        uint8_t *pic = malloc((size_t)w * h * 3);
        assert_non_null(pic);
        s_picture(pic, w, h, &st);
        for (size_t k = 0; k < sizeof samps / sizeof samps[0]; k++)
            for (int prog = 0; prog < 2; prog++) {
                /* a compressor per image: TurboJPEG 2.1 keeps the progressive scan script of
                 * one call for the next, and writes broken baseline JPEGs after it */
                tjhandle enc = tjInitCompress();
                assert_non_null(enc);
                unsigned char *jp = NULL;
                unsigned long jl = 0;
                assert_int_equal(tjCompress2(enc, pic, w, w * 3, h, TJPF_RGB, &jp, &jl, samps[k],
                                             90, prog ? TJFLAG_PROGRESSIVE : 0),
                                 0);
                char name[32];
                snprintf(name, sizeof name, "%s%s", names[k], prog ? " progressive" : "");
                s_check_regions(j, jp, jl, name, w, h, 3, &st);
                s_check_regions(j, jp, jl, name, w, h, 1, &st);
                if (si == 0 && k == 0 && !prog) {
                    /* truncated: an error even for a region in the intact part */
                    static uint8_t out[16 * 500 * 3]; /* 16 rows of the 500-wide image */
                    struct rt_jpeg_region wh;
                    assert_int_equal(rt_jpeg_decode_region(j, jp, jl * 3 / 4, "cut.jpg", 3, 0, 0,
                                                           16, 16, out, &wh),
                                     RT_ERR_FORMAT);
                    assert_non_null(strstr(rt_err_msg(), "cut.jpg"));
                    assert_int_equal(
                        rt_jpeg_decode_region(j, jp, jl, "big.jpg", 3, 0, 0, w + 1, 16, out, &wh),
                        RT_ERR_ARG);
                    /* and the handle decodes a good image afterwards */
                    assert_int_equal(
                        rt_jpeg_decode_region(j, jp, jl, "ok", 3, 0, 0, 16, 16, out, &wh), 0);
                }
                tjFree(jp);
                tjDestroy(enc);
            }
        free(pic);
    }
    rt_jpeg_destroy(&j);
}

/* Read a binary PPM (P6) or PGM (P5) of w x h written by PIL into out; the channel count. */
static int s_read_pnm(const char *path, int w, int h, uint8_t *out)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char kind[3] = {0};
    int pw, ph, mx;
    assert_int_equal(fscanf(f, "%2s %d %d %d", kind, &pw, &ph, &mx), 4);
    fgetc(f);
    assert_int_equal(pw, w);
    assert_int_equal(ph, h);
    int c = kind[1] == '6' ? 3 : 1;
    size_t n = (size_t)w * h * c;
    assert_int_equal(fread(out, 1, n, f), n);
    fclose(f);
    return c;
}

static void test_cmyk_as_pillow(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import numpy, PIL' >/dev/null 2>&1") != 0) {
        print_message("/usr/bin/python3 with numpy and PIL not available\n");
        skip();
    }
    enum { W = 61, H = 45 };
    char *tmp = eb_test_tmpdir(), cmd[4096], path[600];
    /* a CMYK JPEG as Photoshop and Pillow write them (Adobe marker, inverted samples), and
     * Pillow's RGB and L of it, and of its half-scale draft */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import numpy as np; from PIL import Image; "
             "r = np.random.RandomState(3); "
             "a = r.randint(0, 256, (%d, %d, 4)).astype(np.uint8); "
             "Image.fromarray(a, 'CMYK').save('%s/c.jpg', quality=90); "
             "im = Image.open('%s/c.jpg'); assert im.mode == 'CMYK'; "
             "im.convert('RGB').save('%s/rgb.ppm'); im.convert('RGB').convert('L')"
             ".save('%s/l.pgm')\"",
             H, W, tmp, tmp, tmp, tmp);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/c.jpg", tmp);
    long len = 0;
    uint8_t *jp = eb_test_read(path, &len);
    assert_non_null(jp);
    static uint8_t ref[W * H * 3], got[W * H * 3], refl[W * H];
    snprintf(path, sizeof path, "%s/rgb.ppm", tmp);
    assert_int_equal(s_read_pnm(path, W, H, ref), 3);
    snprintf(path, sizeof path, "%s/l.pgm", tmp);
    assert_int_equal(s_read_pnm(path, W, H, refl), 1);
    rt_jpeg_t *j = rt_jpeg_new();
    int w, h, c;
    assert_int_equal(rt_jpeg_header(j, jp, (size_t)len, "c.jpg", &w, &h, &c), 0);
    assert_int_equal(c, 3); /* it decodes to RGB */
    assert_int_equal(rt_jpeg_decode(j, jp, (size_t)len, "c.jpg", 1, 3, 0, got), 0);
    assert_memory_equal(got, ref, sizeof ref);
    assert_int_equal(rt_jpeg_decode(j, jp, (size_t)len, "c.jpg", 1, 1, 0, got), 0);
    assert_memory_equal(got, refl, sizeof refl);
    /* a region: the same bytes as those of the whole */
    int x0 = 17, y0 = 9, x1 = 52, y1 = 40;
    struct rt_jpeg_region wh;
    assert_int_equal(
        rt_jpeg_decode_region(j, jp, (size_t)len, "c.jpg", 3, x0, y0, x1, y1, got, &wh), 0);
    for (int y = y0; y < y1; y++)
        assert_memory_equal(got + wh.offset + (size_t)(y - y0) * wh.stride,
                            ref + ((size_t)y * W + x0) * 3, (size_t)(x1 - x0) * 3);
    /* BGR order and the half-scale decode run too */
    assert_int_equal(rt_jpeg_decode(j, jp, (size_t)len, "c.jpg", 1, 3, 1, got), 0);
    assert_int_equal(got[0], ref[2]);
    assert_int_equal(got[2], ref[0]);
    assert_int_equal(rt_jpeg_decode(j, jp, (size_t)len, "c.jpg", 2, 3, 0, got), 0);
    rt_jpeg_destroy(&j);
    free(jp);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_corrupt_as_pillow(void **state)
{
    (void)state;
    enum { W = 120, H = 90 };
    static uint8_t pic[W * H * 3], a[W * H * 3], b[W * H * 3];
    uint64_t st = 7;
    s_picture(pic, W, H, &st);
    rt_jpeg_t *j = rt_jpeg_new();
    const uint8_t *jp;
    size_t jl;
    assert_int_equal(rt_jpeg_encode(j, pic, W, H, 3, 90, &jp, &jl), 0);
    assert_true(jl > 4 && jp[jl - 2] == 0xFF && jp[jl - 1] == 0xD9);
    /* 240 bytes of junk before the end marker */
    uint8_t *bad = malloc(jl + 240);
    assert_non_null(bad);
    memcpy(bad, jp, jl - 2);
    memset(bad + jl - 2, 0, 240);
    bad[jl + 238] = 0xFF;
    bad[jl + 239] = 0xD9;
    uint8_t *good = malloc(jl);
    assert_non_null(good);
    memcpy(good, jp, jl);
    assert_int_equal(rt_jpeg_decode(j, good, jl, "good.jpg", 1, 3, 0, a), 0);
    assert_int_equal(rt_jpeg_decode(j, bad, jl + 240, "junk.jpg", 1, 3, 0, b), 0);
    assert_memory_equal(a, b, sizeof a);
    struct rt_jpeg_region wh;
    assert_int_equal(rt_jpeg_decode_region(j, bad, jl + 240, "junk.jpg", 3, 10, 20, 70, 80, b, &wh),
                     0);
    for (int y = 20; y < 80; y++)
        assert_memory_equal(b + wh.offset + (size_t)(y - 20) * wh.stride,
                            a + ((size_t)y * W + 10) * 3, 60 * 3);
    /* cut short: an error whatever is asked for, naming the image */
    size_t cut = jl * 2 / 3;
    assert_int_equal(rt_jpeg_decode(j, good, cut, "cut.jpg", 1, 3, 0, a), RT_ERR_FORMAT);
    assert_non_null(strstr(rt_err_msg(), "cut.jpg"));
    assert_int_equal(rt_jpeg_decode_region(j, good, cut, "cut.jpg", 3, 0, 0, 16, 16, a, &wh),
                     RT_ERR_FORMAT);
    free(bad);
    free(good);
    rt_jpeg_destroy(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_region),
        cmocka_unit_test(test_cmyk_as_pillow),
        cmocka_unit_test(test_corrupt_as_pillow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
