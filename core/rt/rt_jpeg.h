/*
 * rt_jpeg: JPEG decode and encode with libjpeg-turbo: headers and encoding through its TurboJPEG
 * API, decoding through the libjpeg API (regions, CMYK, Pillow's policy on corrupt data). One
 * handle per thread (a handle is not thread-safe); its buffers are reused from call to call.
 */
#ifndef RT_JPEG_H
#define RT_JPEG_H

#include <stddef.h>
#include <stdint.h>

/* Default quality for images the converter encodes. */
#define RT_JPEG_QUALITY 90

typedef struct rt_jpeg rt_jpeg_t;

/* New codec handle, or NULL when out of memory / TurboJPEG cannot start. Caller owns it; free
 * with rt_jpeg_destroy. */
rt_jpeg_t *rt_jpeg_new(void);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void rt_jpeg_destroy(rt_jpeg_t **self_p);

/* Read the header: width, height and channel count (1 for greyscale JPEGs, else 3). `what`
 * names the image in error details. Returns 0 or RT_ERR_FORMAT. */
int rt_jpeg_header(rt_jpeg_t *j, const uint8_t *buf, size_t len, const char *what, int *width,
                   int *height, int *channels);

/* Size of the image decoded at 1/denom scale (denom 1, 2, 4 or 8; libjpeg-turbo's scaled IDCT). */
void rt_jpeg_scaled_size(int width, int height, int denom, int *sw, int *sh);

/* Decode at 1/denom scale into dst: interleaved HWC rows of sw*channels bytes, channels 1 (grey)
 * or 3 (RGB, or BGR when bgr is non-zero); dst must hold sw*sh*channels bytes (see
 * rt_jpeg_scaled_size). CMYK JPEGs become the RGB Pillow makes of them. Corrupt data decodes as
 * far as libjpeg gets, as Pillow's decoder does (torchvision reads such files: ImageNet holds
 * some); an unreadable image, or data that ends early, is RT_ERR_FORMAT naming `what`. */
int rt_jpeg_decode(rt_jpeg_t *j, const uint8_t *buf, size_t len, const char *what, int denom,
                   int channels, int bgr, uint8_t *dst);

/* Where rt_jpeg_decode_region put the region: its pixel (x, y), x0 <= x < x1 and y0 <= y < y1,
 * is at dst + offset + (y - y0) * stride + (x - x0) * channels. */
struct rt_jpeg_region {
    size_t offset; /* bytes from a row's start to column x0 */
    size_t stride; /* bytes from one row to the next */
};

/* Bytes rt_jpeg_decode_region's dst must hold for rows [y0, y1) of an image `width` pixels
 * wide: it writes whole rows of the decoded window, at most the image's width. */
size_t rt_jpeg_region_bytes(int width, int y0, int y1, int channels);

/* Decode rows [y0, y1) and columns [x0, x1) of the full-size image into dst (at least
 * rt_jpeg_region_bytes; *where says where the region lies in it), the same pixels as a full
 * decode gives there (channels 1 or 3 = RGB). Entropy decoding stops below the region, and the
 * inverse DCT, upsampling and colour conversion run on the region's iMCU columns only
 * (libjpeg-turbo's jpeg_skip_scanlines and jpeg_crop_scanline), whose rows go straight into dst,
 * so a small crop of a large JPEG costs a fraction of a full decode. A JPEG whose data does not
 * end with the EOI marker is decoded whole, so that a truncated file fails whatever region is
 * asked for. Errors as rt_jpeg_decode; a region outside the image is RT_ERR_ARG. */
int rt_jpeg_decode_region(rt_jpeg_t *j, const uint8_t *buf, size_t len, const char *what,
                          int channels, int x0, int y0, int x1, int y1, uint8_t *dst,
                          struct rt_jpeg_region *where);

/* Encode interleaved HWC pixels (channels 1 or 3 = RGB) at `quality`. *out points into the
 * handle's buffer, valid until the next call on j. */
int rt_jpeg_encode(rt_jpeg_t *j, const uint8_t *src, int width, int height, int channels,
                   int quality, const uint8_t **out, size_t *len);

#endif
