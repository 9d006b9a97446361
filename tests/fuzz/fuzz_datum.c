/*
 * fuzz_datum: libFuzzer harness of the Datum decoder (rt_datum_decode, and the arena variant the
 * loader's hot loop uses), followed for encoded records by what the loader does next: read the
 * JPEG header (rt_jpeg_header) and decode the image at full and 1/8 scale (rt_jpeg_decode), and a
 * region of it (rt_jpeg_decode_region, the random-resized crop's decode). The two Datum decoders
 * must agree, and a region decoded without error must equal those pixels of the full decode; a
 * decoded record's payload is read in full.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "rt_datum.h"
#include "rt_err.h"
#include "rt_jpeg.h"

#define S_PIXELS_MAX (1u << 20) /* largest image decoded, bytes (the harness's memory bound) */

static volatile unsigned s_sink; /* keeps the payload reads from being optimised away */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decode an encoded record's image as the loader does, when it is small enough. */
static void s_jpeg(const struct rt_datum *d)
{
    static rt_jpeg_t *j;
    static uint8_t pixels[S_PIXELS_MAX], region[S_PIXELS_MAX];
    if (!j && !(j = rt_jpeg_new()))
        abort();
    int w = 0, h = 0, c = 0;
    if (rt_jpeg_header(j, d->data, d->data_len, "fuzz", &w, &h, &c))
        return;
    if (w <= 0 || h <= 0 || (c != 1 && c != 3))
        abort(); /* the header reader promised a usable shape */
    int denoms[] = {8, 1}, full = -1;
    for (size_t i = 0; i < sizeof denoms / sizeof denoms[0]; i++) {
        int sw = 0, sh = 0;
        rt_jpeg_scaled_size(w, h, denoms[i], &sw, &sh);
        if ((size_t)sw * (size_t)sh * 3 > S_PIXELS_MAX)
            continue;
        full = rt_jpeg_decode(j, d->data, d->data_len, "fuzz", denoms[i], 3, 0, pixels);
    }
    if ((size_t)w * (size_t)h * 3 > S_PIXELS_MAX)
        return;
    /* a region chosen by the data's length: the middle half, or a strip at an edge */
    int x0 = (int)(d->data_len % 3) * w / 4, y0 = (int)(d->data_len / 3 % 3) * h / 4;
    int x1 = x0 + (w + 1) / 2, y1 = y0 + (h + 1) / 2;
    x1 = x1 > w ? w : x1;
    y1 = y1 > h ? h : y1;
    struct rt_jpeg_region wh;
    if (rt_jpeg_decode_region(j, d->data, d->data_len, "fuzz", 3, x0, y0, x1, y1, region, &wh) ||
        full)
        return;
    size_t n = (size_t)(x1 - x0) * 3;
    for (int y = y0; y < y1; y++)
        if (memcmp(region + wh.offset + (size_t)(y - y0) * wh.stride,
                   pixels + ((size_t)y * w + x0) * 3, n))
            abort(); /* the region decode gave other pixels than the full decode */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct rt_datum_arena arena;
    struct rt_datum d, a;
    memset(&d, 0, sizeof d);
    memset(&a, 0, sizeof a);
    int rc = rt_datum_decode(data, size, "fuzz", &d);
    int rca = rt_datum_decode_arena(data, size, "fuzz", &arena, &a);
    if ((rc == 0) != (rca == 0))
        abort(); /* the heap and arena decoders disagree */
    if (rc) {
        rt_datum_release(&a);
        return 0;
    }
    if (d.kind != a.kind || d.data_len != a.data_len || d.float_len != a.float_len)
        abort();
    unsigned sum = 0;
    for (size_t i = 0; i < d.data_len; i++)
        sum += d.data[i];
    for (size_t i = 0; i < d.float_len; i++) {
        float f;
        memcpy(&f, d.float_data + i, sizeof f);
        sum += f > 0;
    }
    s_sink = sum;
    if (d.kind == RT_DATUM_ENCODED)
        s_jpeg(&d);
    rt_datum_release(&d);
    rt_datum_release(&d);
    rt_datum_release(&a);
    return 0;
}
