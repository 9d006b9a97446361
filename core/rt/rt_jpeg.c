/*
 * rt_jpeg: TurboJPEG wrappers with checked calls and errors naming the image.
 */
#include "rt_jpeg.h"

#include <stdlib.h>
#include <turbojpeg.h>

#include "rt_err.h"

struct rt_jpeg {
    tjhandle dec;        /* decompressor */
    tjhandle enc;        /* compressor, made on first encode */
    unsigned char *obuf; /* encode output buffer (tjAlloc) */
    unsigned long ocap;  /* its size */
};

rt_jpeg_t *rt_jpeg_new(void)
{
    rt_jpeg_t *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    if (!(j->dec = tjInitDecompress())) {
        free(j);
        return NULL;
    }
    return j;
}

void rt_jpeg_destroy(rt_jpeg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_jpeg_t *j = *self_p;
    if (j->dec)
        tjDestroy(j->dec);
    if (j->enc)
        tjDestroy(j->enc);
    if (j->obuf)
        tjFree(j->obuf);
    free(j);
    *self_p = NULL;
}

int rt_jpeg_header(rt_jpeg_t *j, const uint8_t *buf, size_t len, const char *what, int *width,
                   int *height, int *channels)
{
    int w, h, sub, cs;
    if (tjDecompressHeader3(j->dec, buf, (unsigned long)len, &w, &h, &sub, &cs) != 0)
        return rt_err_set(RT_ERR_FORMAT, "%s: not a readable JPEG: %s", what,
                          tjGetErrorStr2(j->dec));
    if (w < 1 || h < 1)
        return rt_err_set(RT_ERR_FORMAT, "%s: JPEG of size %dx%d", what, w, h);
    *width = w;
    *height = h;
    *channels = cs == TJCS_GRAY ? 1 : 3;
    return 0;
}

void rt_jpeg_scaled_size(int width, int height, int denom, int *sw, int *sh)
{
    tjscalingfactor sf = {1, denom};
    *sw = TJSCALED(width, sf);
    *sh = TJSCALED(height, sf);
}

int rt_jpeg_decode(rt_jpeg_t *j, const uint8_t *buf, size_t len, const char *what, int denom,
                   int channels, int bgr, uint8_t *dst)
{
    int w, h, c;
    int rc = rt_jpeg_header(j, buf, len, what, &w, &h, &c);
    if (rc < 0)
        return rc;
    if (denom != 1 && denom != 2 && denom != 4 && denom != 8)
        return rt_err_set(RT_ERR_ARG, "%s: JPEG scale 1/%d not supported", what, denom);
    int sw, sh;
    rt_jpeg_scaled_size(w, h, denom, &sw, &sh);
    int pf = channels == 1 ? TJPF_GRAY : (bgr ? TJPF_BGR : TJPF_RGB);
    if (channels != 1 && channels != 3)
        return rt_err_set(RT_ERR_ARG, "%s: cannot decode to %d channels", what, channels);
    /* any warning (truncated data, corrupt segments) counts as an error: the record is bad */
    if (tjDecompress2(j->dec, buf, (unsigned long)len, dst, sw, sw * channels, sh, pf, 0) != 0)
        return rt_err_set(RT_ERR_FORMAT, "%s: JPEG decode failed: %s", what,
                          tjGetErrorStr2(j->dec));
    return 0;
}

int rt_jpeg_encode(rt_jpeg_t *j, const uint8_t *src, int width, int height, int channels,
                   int quality, const uint8_t **out, size_t *len)
{
    if (!j->enc && !(j->enc = tjInitCompress()))
        return rt_err_set(RT_ERR_NOMEM, "cannot start the JPEG compressor");
    if (channels != 1 && channels != 3)
        return rt_err_set(RT_ERR_ARG, "cannot encode %d channels as JPEG", channels);
    int sub = channels == 1 ? TJSAMP_GRAY : TJSAMP_420;
    unsigned long need = tjBufSize(width, height, sub);
    if (need == (unsigned long)-1)
        return rt_err_set(RT_ERR_ARG, "JPEG size %dx%d: %s", width, height, tjGetErrorStr2(NULL));
    if (need > j->ocap) {
        if (j->obuf)
            tjFree(j->obuf);
        j->ocap = 0;
        if (!(j->obuf = tjAlloc((int)need)))
            return rt_err_set(RT_ERR_NOMEM, "no memory for a %lu-byte JPEG buffer", need);
        j->ocap = need;
    }
    unsigned long size = j->ocap;
    int pf = channels == 1 ? TJPF_GRAY : TJPF_RGB;
    if (tjCompress2(j->enc, src, width, width * channels, height, pf, &j->obuf, &size, sub, quality,
                    TJFLAG_NOREALLOC) != 0)
        return rt_err_set(RT_ERR_FORMAT, "JPEG encode of %dx%d failed: %s", width, height,
                          tjGetErrorStr2(j->enc));
    *out = j->obuf;
    *len = size;
    return 0;
}
