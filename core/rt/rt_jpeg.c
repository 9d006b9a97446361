/*
 * rt_jpeg: libjpeg-turbo with checked calls and errors naming the image. TurboJPEG reads headers
 * and encodes; every decode goes through the libjpeg API under one error manager (s_lj_decode),
 * which can crop and skip rows, convert CMYK, and decode on through corrupt data as Pillow does.
 */
#include "rt_jpeg.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <turbojpeg.h>

#include <jerror.h> /* after jpeglib.h: ERREXIT and the message codes */

#include "rt_err.h"
#include "rt_log.h"

/* Pixels kept around a region before it is aligned to iMCU boundaries: fancy upsampling reads
 * one chroma neighbour past a row or column (two luma pixels), and must see the same neighbours
 * as in a full decode (test_rt_jpeg compares regions with full decodes). */
#define RT_JPEG_REGION_MARGIN 2

/* libjpeg error manager: errors, and the warning of data that ends early, jump back to the
 * caller; other corrupt-data warnings are counted and the decode goes on, as Pillow's does. */
struct s_jerr {
    struct jpeg_error_mgr pub;  /* libjpeg's part; first member */
    jmp_buf jump;               /* where the failing call returns */
    char msg[JMSG_LENGTH_MAX];  /* the message of the error */
    int warnings;               /* corrupt-data warnings of the current decode */
    char warn[JMSG_LENGTH_MAX]; /* the first one's message */
};

struct rt_jpeg {
    tjhandle dec;                        /* decompressor */
    tjhandle enc;                        /* compressor, made on first encode */
    unsigned char *obuf;                 /* encode output buffer (tjAlloc) */
    unsigned long ocap;                  /* its size */
    struct jpeg_decompress_struct cinfo; /* region decoder (libjpeg API), made on first use */
    struct s_jerr jerr;                  /* its error manager */
    bool cinfo_ok;                       /* cinfo created */
    int last_cs;                         /* TurboJPEG colour space of the last header read */
    uint8_t *row;                        /* one decoded row of the aligned region */
    size_t row_cap;                      /* its size */
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
    if (j->cinfo_ok)
        jpeg_destroy_decompress(&j->cinfo);
    free(j->row);
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
    *channels = cs == TJCS_GRAY ? 1 : 3; /* CMYK and YCCK decode to RGB (s_cmyk_row) */
    j->last_cs = cs;
    return 0;
}

void rt_jpeg_scaled_size(int width, int height, int denom, int *sw, int *sh)
{
    tjscalingfactor sf = {1, denom};
    *sw = TJSCALED(width, sf);
    *sh = TJSCALED(height, sf);
}

static void s_jerr_exit(j_common_ptr c)
{
    struct s_jerr *e = (struct s_jerr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings (level < 0) of corrupt data: libjpeg decodes on, and so does Pillow, torchvision's
 * loader (ImageNet holds JPEGs with "extraneous bytes before marker 0xd9", which both read
 * fine), so they are counted, except data that ends early: the rest of the image would be grey,
 * and Pillow refuses such a file too ("image file is truncated"). Trace messages are ignored. */
static void s_jerr_emit(j_common_ptr c, int level)
{
    if (level >= 0)
        return;
    struct s_jerr *e = (struct s_jerr *)c->err;
    if (c->err->msg_code == JWRN_JPEG_EOF)
        s_jerr_exit(c);
    if (!e->warnings++)
        c->err->format_message(c, e->warn);
}

/* Whether the data ends with the EOI marker, as a complete JPEG's does (one with trailing bytes
 * after it counts as possibly truncated). */
static bool s_has_eoi(const uint8_t *buf, size_t len)
{
    return len >= 4 && buf[len - 2] == 0xFF && buf[len - 1] == 0xD9;
}

/* What the libjpeg path decodes: rows [y0, y1) and columns [x0, x1) of the image at 1/denom
 * scale into dst, RGB or BGR: packed, rows of (x1-x0)*channels bytes (a copy of each row);
 * else whole rows of the decoded window written straight into dst, the region at `offset` of
 * each, `stride` apart (no copy). whole: every row and column is decoded (and checked)
 * whatever the region. */
struct s_req {
    int denom, channels, bgr;
    int x0, y0, x1, y1;
    bool whole;
    uint8_t *dst;
    bool packed;   /* rows of exactly (x1-x0)*channels bytes (else the window's, see below) */
    size_t stride; /* out, unpacked: bytes per row of dst (the decoded window's width) */
    size_t offset; /* out, unpacked: bytes from a row's start to column x0 */
};

/* Pillow's CMYK to RGB, as torchvision's loader gets it (ImageNet holds a few CMYK JPEGs): the
 * samples are taken as inverted (Adobe's convention, which Pillow assumes for every CMYK JPEG),
 * then with k' = 255 - K each of R, G, B = k' - C k' / 255 (Pillow's rounding of the product);
 * one channel: Pillow's luma of that RGB. n pixels of in (4 bytes each) into out. */
static void s_cmyk_row(const uint8_t *in, int n, int channels, int bgr, uint8_t *out)
{
    for (int i = 0; i < n; i++, in += 4) {
        int nk = in[3]; /* 255 - (255 - raw K) */
        int rgb[3];
        for (int c = 0; c < 3; c++) {
            int t = (255 - in[c]) * nk + 128; /* MULDIV255 */
            int v = nk - (((t >> 8) + t) >> 8);
            rgb[c] = v < 0 ? 0 : v;
        }
        if (channels == 1) {
            out[i] = (uint8_t)((rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16);
        } else {
            out[3 * i] = (uint8_t)rgb[bgr ? 2 : 0];
            out[3 * i + 1] = (uint8_t)rgb[1];
            out[3 * i + 2] = (uint8_t)rgb[bgr ? 0 : 2];
        }
    }
}

/* Decode the rows of the request set up in j->cinfo (columns from xoff), copying (converting,
 * for CMYK) the request's rows and columns into its dst; the rows above are skipped rather than
 * decoded unless r->whole, which also goes on to the end of the image so that truncated data
 * fails. Runs under the caller's setjmp. */
static void s_read_rows(rt_jpeg_t *j, struct s_req *r, JDIMENSION xoff, bool cmyk)
{
    struct jpeg_decompress_struct *ci = &j->cinfo;
    /* skip whole iMCU rows only (entropy decoding alone), and decode the rows of the partial
     * one above the region: the upsampler's context then is what a full decode has */
    int imcu = ci->max_v_samp_factor * ci->min_DCT_scaled_size;
    int top = r->y0 > RT_JPEG_REGION_MARGIN ? r->y0 - RT_JPEG_REGION_MARGIN : 0;
    JDIMENSION start = (JDIMENSION)(top / imcu * imcu);
    if (!r->whole && start > 0 && jpeg_skip_scanlines(ci, start) != start)
        ERREXIT(ci, JERR_INPUT_EOF);
    int end = r->whole ? (int)ci->output_height : r->y1;
    int in_c = ci->output_components;
    size_t skip = (size_t)(r->x0 - (int)xoff) * in_c;
    /* straight into dst where it takes the window's rows as they come */
    bool direct = !r->packed && !cmyk;
    r->stride =
        r->packed ? (size_t)(r->x1 - r->x0) * r->channels : (size_t)ci->output_width * r->channels;
    r->offset = r->packed ? 0 : (size_t)(r->x0 - (int)xoff) * r->channels;
    while ((int)ci->output_scanline < end) {
        int y = (int)ci->output_scanline;
        bool in = y >= r->y0 && y < r->y1;
        uint8_t *out = in ? r->dst + (size_t)(y - r->y0) * r->stride : NULL;
        JSAMPROW row = in && direct ? out : j->row;
        if (jpeg_read_scanlines(ci, &row, 1) != 1)
            ERREXIT(ci, JERR_INPUT_EOF);
        if (!in || direct)
            continue;
        if (cmyk)
            s_cmyk_row(j->row + skip, r->x1 - r->x0, r->channels, r->bgr, out + r->offset);
        else
            memcpy(out, j->row + skip, (size_t)(r->x1 - r->x0) * r->channels);
    }
}

/* Create the region decoder of j on first use. */
static int s_region_start(rt_jpeg_t *j)
{
    if (j->cinfo_ok)
        return 0;
    j->cinfo.err = jpeg_std_error(&j->jerr.pub);
    j->jerr.pub.error_exit = s_jerr_exit;
    j->jerr.pub.emit_message = s_jerr_emit;
    if (setjmp(j->jerr.jump))
        return rt_err_set(RT_ERR_NOMEM, "cannot start the JPEG decoder: %s", j->jerr.msg);
    jpeg_create_decompress(&j->cinfo);
    j->cinfo_ok = true;
    return 0;
}

/* The libjpeg decode proper, under the caller's setjmp: header, scale, crop, rows. */
static void s_lj_body(rt_jpeg_t *j, const uint8_t *buf, size_t len, struct s_req *r)
{
    struct jpeg_decompress_struct *ci = &j->cinfo;
    jpeg_mem_src(ci, buf, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    bool cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    ci->out_color_space = cmyk               ? JCS_CMYK
                          : r->channels == 1 ? JCS_GRAYSCALE
                          : r->bgr           ? JCS_EXT_BGR
                                             : JCS_RGB;
    ci->scale_num = 1;
    ci->scale_denom = (unsigned)r->denom;
    jpeg_start_decompress(ci);
    JDIMENSION w = ci->output_width;
    JDIMENSION xoff =
        (JDIMENSION)(r->x0 > RT_JPEG_REGION_MARGIN ? r->x0 - RT_JPEG_REGION_MARGIN : 0);
    JDIMENSION xend = (JDIMENSION)r->x1 + RT_JPEG_REGION_MARGIN < w
                          ? (JDIMENSION)r->x1 + RT_JPEG_REGION_MARGIN
                          : w;
    JDIMENSION cw = xend - xoff;
    if (r->whole)
        xoff = 0;
    else if (xoff > 0 || xend < w)
        jpeg_crop_scanline(ci, &xoff, &cw); /* widens to iMCU boundaries */
    size_t need = (size_t)ci->output_width * ci->output_components;
    if (need > j->row_cap) {
        free(j->row);
        j->row_cap = 0;
        if (!(j->row = malloc(need)))
            ERREXIT(ci, JERR_OUT_OF_MEMORY);
        j->row_cap = need;
    }
    s_read_rows(j, r, xoff, cmyk);
    if (r->whole)
        jpeg_finish_decompress(ci);
    else
        jpeg_abort_decompress(ci); /* the rows below the region are never decoded */
}

/* Run request r on buf through libjpeg; RT_ERR_FORMAT naming `what` on any error or warning. */
static int s_lj_decode(rt_jpeg_t *j, const uint8_t *buf, size_t len, const char *what,
                       struct s_req *r)
{
    int rc = s_region_start(j);
    if (rc < 0)
        return rc;
    j->jerr.warnings = 0;
    if (setjmp(j->jerr.jump)) {
        jpeg_abort_decompress(&j->cinfo);
        return rt_err_set(RT_ERR_FORMAT, "%s: JPEG decode failed: %s", what, j->jerr.msg);
    }
    s_lj_body(j, buf, len, r);
    if (j->jerr.warnings)
        RT_DEBUG("jpeg", "%s: decoded through %d corrupt-data warning(s), the first: %s", what,
                 j->jerr.warnings, j->jerr.warn);
    return 0;
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
    if (channels != 1 && channels != 3)
        return rt_err_set(RT_ERR_ARG, "%s: cannot decode to %d channels", what, channels);
    /* libjpeg itself rather than TurboJPEG's wrapper: the same decoder, with CMYK converted
     * (s_cmyk_row) and Pillow's policy on corrupt-data warnings (s_jerr_emit) */
    struct s_req r = {denom, channels, bgr, 0, 0, sw, sh, true, dst, true, 0, 0};
    return s_lj_decode(j, buf, len, what, &r);
}

size_t rt_jpeg_region_bytes(int width, int y0, int y1, int channels)
{
    return (size_t)(y1 - y0) * (size_t)width * (size_t)channels;
}

int rt_jpeg_decode_region(rt_jpeg_t *j, const uint8_t *buf, size_t len, const char *what,
                          int channels, int x0, int y0, int x1, int y1, uint8_t *dst,
                          struct rt_jpeg_region *where)
{
    if (channels != 1 && channels != 3)
        return rt_err_set(RT_ERR_ARG, "%s: cannot decode to %d channels", what, channels);
    int w = 0, h = 0, c = 0, rc = rt_jpeg_header(j, buf, len, what, &w, &h, &c);
    if (rc < 0)
        return rc;
    if (x0 < 0 || y0 < 0 || x1 > w || y1 > h || x0 >= x1 || y0 >= y1)
        return rt_err_set(RT_ERR_ARG, "%s: region [%d, %d) x [%d, %d) outside the %dx%d JPEG", what,
                          x0, x1, y0, y1, w, h);
    /* without its end marker the data may be truncated: decode it all, so that it fails
     * whatever region was asked for */
    struct s_req r = {1, channels, 0, x0, y0, x1, y1, !s_has_eoi(buf, len), dst, false, 0, 0};
    if ((rc = s_lj_decode(j, buf, len, what, &r)) < 0)
        return rc;
    where->offset = r.offset;
    where->stride = r.stride;
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
