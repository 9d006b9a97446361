/*
 * convert_png: a PNG among the JPEGs of an image folder (ImageNet's training set holds one,
 * n02105855_2933.JPEG), decoded with libpng and stored re-encoded as a JPEG, as Pillow (and so
 * torchvision) would read it: RGB, alpha dropped, greyscale and palettes expanded.
 */
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "rt_err.h"

#define S_PNG_MAX_PIXELS (1u << 28) /* larger PNGs are refused rather than allocated */

bool convert_is_png(const uint8_t *buf, size_t len)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return len >= sizeof sig && !memcmp(buf, sig, sizeof sig);
}

int convert_png_to_jpeg(rt_jpeg_t *j, const uint8_t *png, size_t len, const char *what, int quality,
                        const uint8_t **out, size_t *out_len, int *width, int *height)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, png, len))
        return rt_err_set(RT_ERR_FORMAT, "%s: a PNG that cannot be read: %s", what, im.message);
    if ((uint64_t)im.width * im.height > S_PNG_MAX_PIXELS) {
        png_image_free(&im);
        return rt_err_set(RT_ERR_TOOBIG, "%s: a PNG of %ux%u pixels is too large", what, im.width,
                          im.height);
    }
    /* RGBA, then the alpha dropped as Pillow's convert("RGB") drops it (no compositing) */
    im.format = PNG_FORMAT_RGBA;
    size_t n = (size_t)im.width * im.height;
    uint8_t *rgba = malloc(PNG_IMAGE_SIZE(im)), *rgb = malloc(n * 3);
    int rc = 0;
    if (!rgba || !rgb) {
        png_image_free(&im);
        rc = rt_err_set(RT_ERR_NOMEM, "%s: no memory for a %ux%u PNG", what, im.width, im.height);
        goto out;
    }
    if (!png_image_finish_read(&im, NULL, rgba, 0, NULL)) {
        rc = rt_err_set(RT_ERR_FORMAT, "%s: PNG decode failed: %s", what, im.message);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(rgb + 3 * i, rgba + 4 * i, 3);
    *width = (int)im.width;
    *height = (int)im.height;
    rc = rt_jpeg_encode(j, rgb, *width, *height, 3, quality, out, out_len);
out:
    free(rgba);
    free(rgb);
    return rc;
}
