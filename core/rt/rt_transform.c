/*
 * rt_transform: record pixels to one output sample (decode, augment, scale to float32 CHW).
 */
#include "rt_transform.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_image.h"
#include "rt_jpeg.h"
#include "rt_rng.h"

#define S_RRC_TRIES 10 /* random-resized crop attempts before the centre fallback */
/* A resize whose filter reads at most this share of a JPEG decodes only that window of it. */
#define S_REGION_SHARE 0.9

struct rt_transform {
    rt_jpeg_t *jpeg;                 /* decoder */
    uint8_t *img;                    /* decoded JPEG, HWC */
    size_t img_cap;                  /* bytes in img */
    uint8_t *rsz;                    /* resized image, same layout as the source */
    size_t rsz_cap;                  /* bytes in rsz */
    struct rt_image_scratch scratch; /* resampler memory */
};

rt_transform_t *rt_transform_new(void)
{
    rt_transform_t *x = calloc(1, sizeof *x);
    if (x && !(x->jpeg = rt_jpeg_new())) {
        free(x);
        return NULL;
    }
    return x;
}

void rt_transform_destroy(rt_transform_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_transform_t *x = *self_p;
    rt_jpeg_destroy(&x->jpeg);
    free(x->img);
    free(x->rsz);
    rt_image_scratch_free(&x->scratch);
    free(x);
    *self_p = NULL;
}

/* Shape of a decoded record: raw/float from the fields; encoded from the JPEG header (channels
 * from the record when set), checking the fields against the header when they are set. */
int rt_transform_shape(rt_transform_t *x, const struct rt_datum *d, const char *key, int *c, int *h,
                       int *w)
{
    if (d->kind != RT_DATUM_ENCODED) {
        *c = d->channels;
        *h = d->height;
        *w = d->width;
        return 0;
    }
    int jc;
    int rc = rt_jpeg_header(x->jpeg, d->data, d->data_len, key, w, h, &jc);
    if (rc < 0)
        return rc;
    if ((d->height && d->height != *h) || (d->width && d->width != *w))
        return rt_err_set(RT_ERR_SHAPE,
                          "record %s: shape fields %dx%d disagree with its JPEG "
                          "%dx%d",
                          key, d->height, d->width, *h, *w);
    *c = d->channels ? d->channels : (jc == 1 ? 1 : 3);
    if (*c != 1 && *c != 3)
        return rt_err_set(RT_ERR_SHAPE, "record %s: JPEG records need 1 or 3 channels, not %d", key,
                          *c);
    return 0;
}

/* A source image: uint8 planes addressed by strides (planar CHW or interleaved HWC). */
struct s_src {
    const uint8_t *p; /* pixel (0,0) of channel 0 */
    int c, h, w;      /* shape */
    size_t cstride;   /* bytes between channels */
    size_t xstride;   /* bytes between columns */
    size_t ystride;   /* bytes between rows */
    /* a window of a larger image (a JPEG decoded around its resize box only): the image's size
     * and the window's place in it; fw = 0: the source is the whole image */
    int fw, fh, ox, oy;
};

/* Grow a byte buffer to n (reused afterwards). Free, then allocate: the contents are never
 * kept, and the old and the new buffer never exist at once (the loader's memory bound). */
static int s_grow(uint8_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    free(*buf);
    *cap = 0;
    if (!(*buf = malloc(n)))
        return rt_err_set(RT_ERR_NOMEM, "no memory for a %zu-byte image buffer", n);
    *cap = n;
    return 0;
}

/* Source channel feeding output channel ch (BGR -> RGB swap for raw colour records). */
static int s_src_channel(const struct rt_transform_spec *sp, const struct s_src *s, int ch,
                         bool raw)
{
    if (raw && sp->raw_bgr && s->c == 3)
        return 2 - ch;
    return ch;
}

/* Write out (C x H x W floats) from a window of s: output pixel (y, x) reads source pixel
 * (y + oy, x + ox), or (y + oy, W-1-x + ox) when flipped; outside the source is a zero pixel. */
static void s_emit_window(const struct rt_transform_spec *sp, const struct s_src *s, bool raw,
                          int oy, int ox, bool flip, float *out)
{
    int H = sp->height, W = sp->width;
    for (int ch = 0; ch < sp->channels; ch++) {
        const uint8_t *plane = s->p + (size_t)s_src_channel(sp, s, ch, raw) * s->cstride;
        const float *lut = sp->use_lut ? sp->lut[ch] : NULL;
        float a = sp->a[ch], b = lut ? lut[0] : sp->b[ch]; /* b: the value of a zero pixel */
        float *o = out + (size_t)ch * H * W;
        for (int y = 0; y < H; y++, o += W) {
            int sy = y + oy;
            if (sy < 0 || sy >= s->h) {
                for (int x = 0; x < W; x++)
                    o[x] = b;
                continue;
            }
            const uint8_t *row = plane + (size_t)sy * s->ystride;
            /* source column of output x: ox + x, or ox + W-1-x when flipped; the outputs whose
             * source column lies inside the image form the range [x0, x1) */
            int x0, x1;
            if (!flip) {
                x0 = -ox;
                x1 = s->w - ox;
            } else {
                x0 = ox + W - s->w;
                x1 = ox + W;
            }
            x0 = x0 < 0 ? 0 : x0 > W ? W : x0;
            x1 = x1 < x0 ? x0 : x1 > W ? W : x1;
            for (int x = 0; x < x0; x++)
                o[x] = b;
            ptrdiff_t xs = flip ? -(ptrdiff_t)s->xstride : (ptrdiff_t)s->xstride;
            const uint8_t *q = row + (size_t)(flip ? ox + W - 1 - x0 : ox + x0) * s->xstride;
            if (lut)
                for (int x = x0; x < x1; x++, q += xs)
                    o[x] = lut[*q];
            else
                for (int x = x0; x < x1; x++, q += xs)
                    o[x] = a * *q + b;
            for (int x = x1; x < W; x++)
                o[x] = b;
        }
    }
}

/* Same for float_data records (CHW floats, already scaled). */
static void s_emit_window_f(const struct rt_transform_spec *sp, const float *src, int sh, int sw,
                            int oy, int ox, bool flip, float *out)
{
    int H = sp->height, W = sp->width;
    for (int ch = 0; ch < sp->channels; ch++) {
        const float *plane = src + (size_t)ch * sh * sw;
        float *o = out + (size_t)ch * H * W;
        for (int y = 0; y < H; y++, o += W) {
            int sy = y + oy;
            for (int x = 0; x < W; x++) {
                int sx = flip ? ox + W - 1 - x : ox + x;
                float v =
                    (sy >= 0 && sy < sh && sx >= 0 && sx < sw) ? plane[(size_t)sy * sw + sx] : 0.0f;
                o[x] = sp->a[ch] * v + sp->b[ch];
            }
        }
    }
}

/* Random-resized crop box (torchvision's RandomResizedCrop.get_params: ten tries at a random
 * area fraction and log-uniform aspect ratio, then the centre box clamped to the ratio range). */
static void s_rrc_box(const struct rt_transform_spec *sp, uint64_t *st, int h, int w,
                      struct rt_transform_box *b)
{
    double area = (double)h * w;
    double lr0 = log(sp->rrc_ratio[0]), lr1 = log(sp->rrc_ratio[1]);
    int bx = 0, by = 0, bw = 0, bh = 0;
    for (int t = 0; t < S_RRC_TRIES && !bw; t++) {
        double target =
            area * (sp->rrc_scale[0] + (sp->rrc_scale[1] - sp->rrc_scale[0]) * rt_rng_uniform(st));
        double ratio = exp(lr0 + (lr1 - lr0) * rt_rng_uniform(st));
        int cw = (int)lround(sqrt(target * ratio));
        int chh = (int)lround(sqrt(target / ratio));
        if (cw > 0 && chh > 0 && cw <= w && chh <= h) {
            by = rt_rng_int(st, h - chh);
            bx = rt_rng_int(st, w - cw);
            bw = cw;
            bh = chh;
        }
    }
    if (!bw) { /* fallback: centre crop clamped to the ratio range */
        double in_ratio = (double)w / h;
        bw = w;
        bh = h;
        if (in_ratio < sp->rrc_ratio[0])
            bh = (int)lround(w / sp->rrc_ratio[0]);
        else if (in_ratio > sp->rrc_ratio[1])
            bw = (int)lround(h * sp->rrc_ratio[1]);
        bw = bw < 1 ? 1 : bw;
        bh = bh < 1 ? 1 : bh;
        by = (h - bh) / 2;
        bx = (w - bw) / 2;
    }
    b->resize = true;
    b->crop_first = true;
    b->x0 = (float)bx;
    b->y0 = (float)by;
    b->x1 = (float)(bx + bw);
    b->y1 = (float)(by + bh);
}

/* Evaluation box without eval_resize: centred, the output's aspect ratio, eval_crop of the largest
 * such box. */
static void s_eval_box(const struct rt_transform_spec *sp, int h, int w, struct rt_transform_box *b)
{
    double ar = (double)sp->width / sp->height;
    double bw = w, bh = w / ar;
    if (bh > h) {
        bh = h;
        bw = h * ar;
    }
    bw *= sp->eval_crop;
    bh *= sp->eval_crop;
    b->resize = true;
    b->x0 = (float)((w - bw) / 2);
    b->y0 = (float)((h - bh) / 2);
    b->x1 = b->x0 + (float)bw;
    b->y1 = b->y0 + (float)bh;
    if (b->x1 > w)
        b->x1 = (float)w;
    if (b->y1 > h)
        b->y1 = (float)h;
}

/* torchvision's Resize(eval_resize) then CenterCrop(H, W) as one box of the stored image: the
 * shorter side becomes eval_resize, the longer int(eval_resize * long / short); the crop starts at
 * round((resized - crop) / 2) (Python's round: half to even, as rint); resized pixel i spans
 * stored [i * w / nw, (i + 1) * w / nw). */
static void s_resize_crop_box(const struct rt_transform_spec *sp, int h, int w,
                              struct rt_transform_box *b)
{
    long r = sp->eval_resize, nw, nh;
    if (w <= h) {
        nw = r;
        nh = (long)((double)r * h / w);
    } else {
        nh = r;
        nw = (long)((double)r * w / h);
    }
    double top = rint((double)(nh - sp->height) / 2.0);
    double left = rint((double)(nw - sp->width) / 2.0);
    double fx = (double)w / nw, fy = (double)h / nh;
    b->resize = true;
    b->x0 = (float)(left * fx);
    b->y0 = (float)(top * fy);
    b->x1 = (float)((left + sp->width) * fx);
    b->y1 = (float)((top + sp->height) * fy);
    /* a crop larger than the resized image (eval_resize below the output) stays inside it */
    b->x0 = b->x0 < 0 ? 0 : b->x0;
    b->y0 = b->y0 < 0 ? 0 : b->y0;
    b->x1 = b->x1 > w ? (float)w : b->x1;
    b->y1 = b->y1 > h ? (float)h : b->y1;
}

void rt_transform_plan(const struct rt_transform_spec *sp, int h, int w, uint64_t seed,
                       bool augment, struct rt_transform_box *b)
{
    memset(b, 0, sizeof *b);
    uint64_t st = seed;
    b->flip = augment && sp->flip && (rt_rng_next(&st) & 1);
    int H = sp->height, W = sp->width, pad = sp->crop_pad;
    if (augment && sp->rrc) {
        s_rrc_box(sp, &st, h, w, b);
    } else if (augment && h + 2 * pad >= H && w + 2 * pad >= W) {
        /* random window of the padded image (padding 0: a plain random crop) */
        b->oy = rt_rng_int(&st, h + 2 * pad - H) - pad;
        b->ox = rt_rng_int(&st, w + 2 * pad - W) - pad;
    } else if (sp->eval_resize > 0) {
        s_resize_crop_box(sp, h, w, b);
    } else if (!(h == H && w == W && sp->eval_crop >= 1.0f)) {
        s_eval_box(sp, h, w, b);
    } /* else the identity window */
}

int rt_transform_dct_denom(const struct rt_transform_spec *sp, const struct rt_transform_box *b)
{
    if (!sp->dct_scale || !b->resize)
        return 1;
    double bw = b->x1 - b->x0, bh = b->y1 - b->y0;
    for (int d = 8; d > 1; d /= 2)
        if (bw / d >= (double)RT_TRANSFORM_DCT_MARGIN * sp->width &&
            bh / d >= (double)RT_TRANSFORM_DCT_MARGIN * sp->height)
            return d;
    return 1;
}

/* Resize box b of s to the output size into x->rsz (same layout: interleaved when s is, planar
 * otherwise) and describe the result in *r. crop_first: the box is cut out first, so the filter
 * reads nothing outside it. */
static int s_resize(rt_transform_t *x, const struct rt_transform_spec *sp, const struct s_src *s,
                    const struct rt_transform_box *b, struct s_src *r)
{
    size_t n = (size_t)s->c * sp->height * sp->width;
    int rc = s_grow(&x->rsz, &x->rsz_cap, n);
    if (rc < 0)
        return rc;
    struct s_src c = *s;
    float x0 = b->x0, y0 = b->y0, x1 = b->x1, y1 = b->y1;
    if (b->crop_first) { /* integer boxes */
        c.p += (size_t)y0 * s->ystride + (size_t)x0 * s->xstride;
        c.w = (int)(x1 - x0);
        c.h = (int)(y1 - y0);
        x1 -= x0;
        y1 -= y0;
        x0 = y0 = 0;
    }
    /* the image the box and the filter refer to, and the part of it in memory: a window of a
     * larger image (s->fw), or the whole (cropped) source */
    const int fw = s->fw ? s->fw : c.w, fh = s->fw ? s->fh : c.h;
    const int win[4] = {s->fw ? s->ox : 0, s->fw ? s->oy : 0, s->fw ? s->ox + s->w : c.w,
                        s->fw ? s->oy + s->h : c.h};
    r->p = x->rsz;
    r->c = s->c;
    r->h = sp->height;
    r->w = sp->width;
    if (s->xstride == 1) { /* planar: one plane at a time */
        r->cstride = (size_t)sp->height * sp->width;
        r->xstride = 1;
        r->ystride = (size_t)sp->width;
        for (int ch = 0; ch < s->c; ch++) {
            rc = rt_image_resize_window(c.p + (size_t)ch * c.cstride, fw, fh, win, c.ystride, 1, x0,
                                        y0, x1, y1, x->rsz + (size_t)ch * r->cstride, sp->width,
                                        sp->height, r->ystride, &x->scratch);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    r->cstride = 1;
    r->xstride = (size_t)s->c;
    r->ystride = (size_t)sp->width * s->c;
    return rt_image_resize_window(c.p, fw, fh, win, c.ystride, c.c, x0, y0, x1, y1, x->rsz,
                                  sp->width, sp->height, r->ystride, &x->scratch);
}

/* float_data records: windows only (a random window of the padded record when augmenting). */
static int s_apply_float(const struct rt_transform_spec *sp, const struct rt_datum *d,
                         const char *key, int h, int w, uint64_t seed, bool augment, float *out)
{
    uint64_t st = seed;
    bool flip = augment && sp->flip && (rt_rng_next(&st) & 1);
    if (h < sp->height - 2 * sp->crop_pad || w < sp->width - 2 * sp->crop_pad ||
        (!augment && (h != sp->height || w != sp->width))) {
        return rt_err_set(RT_ERR_UNSUPPORTED,
                          "record %s: float records are not resized "
                          "(%dx%d to %dx%d)",
                          key, h, w, sp->height, sp->width);
    }
    int oy = 0, ox = 0;
    if (augment) {
        oy = rt_rng_int(&st, h + 2 * sp->crop_pad - sp->height) - sp->crop_pad;
        ox = rt_rng_int(&st, w + 2 * sp->crop_pad - sp->width) - sp->crop_pad;
    }
    s_emit_window_f(sp, d->float_data, h, w, oy, ox, flip, out);
    return 0;
}

/* EB_JPEG_FULL_DECODE=1 in the environment: resizes of a fractional box (evaluation) decode the
 * whole JPEG, as before windows were decoded (for comparisons; the bytes are the same). */
static bool s_full_decode(void)
{
    const char *e = getenv("EB_JPEG_FULL_DECODE");
    return e && *e && strcmp(e, "0");
}

/* Decode JPEG record d (h x w stored) for box *b into x->img at the box's DCT scale, and map the
 * box onto the decoded image. */
static int s_decode(rt_transform_t *x, const struct rt_transform_spec *sp, const struct rt_datum *d,
                    const char *key, int h, int w, struct rt_transform_box *b, struct s_src *s)
{
    int c = sp->channels, rc;
    if (sp->max_pixels > 0 && (long)h * w > sp->max_pixels)
        return rt_err_set(RT_ERR_TOOBIG,
                          "record %s: JPEG of %dx%d (%ld pixels) exceeds the loader's limit of "
                          "%ld pixels (data.max_image_pixels): raise it, or store smaller images "
                          "(eigenbatch convert --resize-shorter)",
                          key, w, h, (long)h * w, sp->max_pixels);
    int denom = rt_transform_dct_denom(sp, b), sw, sh;
    if (denom == 1 && b->resize && b->crop_first) {
        /* the filter reads the box only: decode just the box (integer here) */
        int bx = (int)b->x0, by = (int)b->y0, bw = (int)b->x1 - bx, bh = (int)b->y1 - by;
        struct rt_jpeg_region where;
        if ((rc = s_grow(&x->img, &x->img_cap, rt_jpeg_region_bytes(w, by, by + bh, c))) < 0)
            return rc;
        if ((rc = rt_jpeg_decode_region(x->jpeg, d->data, d->data_len, key, c, bx, by, bx + bw,
                                        by + bh, x->img, &where)) < 0)
            return rc;
        *s = (struct s_src){x->img + where.offset, c, bh, bw, 1, (size_t)c,
                            where.stride,          0, 0,  0,  0};
        b->x0 = b->y0 = 0;
        b->x1 = (float)bw;
        b->y1 = (float)bh;
        return 0;
    }
    if (denom == 1 && b->resize && !s_full_decode()) {
        /* the resize reads the box and its filter's support only: decode just that window
         * (worth it when it leaves out enough of the image), the box staying the image's */
        int win[4];
        if ((rc = rt_image_support(w, h, b->x0, b->y0, b->x1, b->y1, sp->width, sp->height, win)) <
            0)
            return rc;
        int ww = win[2] - win[0], wh = win[3] - win[1];
        if ((double)ww * wh <= S_REGION_SHARE * (double)w * h) {
            struct rt_jpeg_region where;
            if ((rc = s_grow(&x->img, &x->img_cap, rt_jpeg_region_bytes(w, win[1], win[3], c))) < 0)
                return rc;
            if ((rc = rt_jpeg_decode_region(x->jpeg, d->data, d->data_len, key, c, win[0], win[1],
                                            win[2], win[3], x->img, &where)) < 0)
                return rc;
            *s = (struct s_src){x->img + where.offset, c, wh, ww,     1,     (size_t)c,
                                where.stride,          w, h,  win[0], win[1]};
            return 0;
        }
    }
    rt_jpeg_scaled_size(w, h, denom, &sw, &sh);
    if ((rc = s_grow(&x->img, &x->img_cap, (size_t)c * sw * sh)) < 0)
        return rc;
    if ((rc = rt_jpeg_decode(x->jpeg, d->data, d->data_len, key, denom, c, 0, x->img)) < 0)
        return rc;
    *s = (struct s_src){x->img, c, sh, sw, 1, (size_t)c, (size_t)sw * c, 0, 0, 0, 0};
    if (denom > 1) { /* the box in decoded pixels: fractional, so resized in place */
        float fx = (float)sw / w, fy = (float)sh / h;
        b->x0 *= fx;
        b->x1 = fminf(b->x1 * fx, (float)sw);
        b->y0 *= fy;
        b->y1 = fminf(b->y1 * fy, (float)sh);
        b->crop_first = false;
    }
    return 0;
}

int rt_transform_apply(rt_transform_t *x, const struct rt_transform_spec *sp,
                       const struct rt_datum *d, const char *key, uint64_t seed, bool augment,
                       float *out)
{
    int rc;
    int c, h, w;
    if ((rc = rt_transform_shape(x, d, key, &c, &h, &w)) < 0)
        return rc;
    /* a JPEG decodes to the database's channels, whatever it holds (greyscale to 3 channels) */
    if (d->kind == RT_DATUM_ENCODED)
        c = sp->channels;
    if (c != sp->channels ||
        (d->kind != RT_DATUM_ENCODED && (h != sp->rec_height || w != sp->rec_width))) {
        return rt_err_set(RT_ERR_SHAPE,
                          "record %s: shape %dx%dx%d differs from the database's "
                          "%dx%dx%d",
                          key, c, h, w, sp->channels, sp->rec_height, sp->rec_width);
    }
    if (d->kind == RT_DATUM_FLOAT)
        return s_apply_float(sp, d, key, h, w, seed, augment, out);

    struct rt_transform_box b;
    rt_transform_plan(sp, h, w, seed, augment, &b);
    struct s_src s;
    bool raw = d->kind == RT_DATUM_RAW;
    if (raw)
        s = (struct s_src){d->data, c, h, w, (size_t)h * w, 1, (size_t)w, 0, 0, 0, 0};
    else if ((rc = s_decode(x, sp, d, key, h, w, &b, &s)) < 0)
        return rc;
    if (!b.resize) {
        s_emit_window(sp, &s, raw, b.oy, b.ox, b.flip, out);
        return 0;
    }
    struct s_src r;
    if ((rc = s_resize(x, sp, &s, &b, &r)) < 0)
        return rc;
    s_emit_window(sp, &r, raw, 0, 0, b.flip, out);
    return 0;
}
