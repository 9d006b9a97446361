/*
 * rt_transform: one record to one output sample: decode (raw uint8, float_data or JPEG),
 * augment, and write C x H x W float32.
 *
 * Output value = a[c] * pixel + b[c], where pixel is the stored uint8 (0..255) or float. The
 * loader sets a = 1/(255 std), b = -mean/std, i.e. (pixel/255 - mean) / std.
 *
 * Training (augment): random-resized crop to H x W (torchvision's RandomResizedCrop box, Pillow's
 * antialiased bilinear resize), or a random H x W window of the image padded by crop_pad zero
 * pixels per side (crop_pad 0: a plain random crop; an image smaller than the window even with
 * the padding gets the evaluation box instead); then a horizontal flip with probability 1/2.
 * Evaluation: with eval_resize, torchvision's Resize(eval_resize) then CenterCrop(H x W) (the
 * shorter side scaled to eval_resize, the centre H x W taken; done as one resize of the matching
 * box of the stored image, which samples the same points with the same filter); otherwise the
 * centre box of the output's aspect ratio, eval_crop of the image's extent, resized to H x W (the
 * identity when the record has the output size and eval_crop = 1). float_data records support
 * crops and flips but no resizing. All random choices come from the caller's seed, so a sample is
 * reproducible anywhere from (seed, epoch, record).
 *
 * JPEG records: decoded to the spec's channel count whatever the JPEG holds (a greyscale JPEG
 * becomes 3 equal channels, a colour one luminance), at 1/2, 1/4 or 1/8 scale in the DCT domain
 * (libjpeg-turbo's scaled IDCT) when the box still spans at least RT_TRANSFORM_DCT_MARGIN times
 * the output at that scale, so a 2000x1500 photograph cut to 224x224 never costs a full decode.
 * Images over max_pixels are refused, which bounds each thread's memory (rt_loader states it).
 *
 * Values: a[c] * pixel + b[c]; or, with use_lut, lut[c][pixel], which the loader fills as
 * torchvision's ToTensor and Normalize compute, ((float)p / 255 - mean) / std in float32, so the
 * normalised values are bit for bit torchvision's.
 *
 * Channel order: JPEG records decode to RGB. Raw colour records are used as stored unless
 * raw_bgr is set, which swaps channels 0 and 2 (Caffe's convert_imageset stores BGR).
 */
#ifndef RT_TRANSFORM_H
#define RT_TRANSFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "rt_datum.h"

/* DCT-domain downscaling keeps the box at least this many times the output size per side. */
#define RT_TRANSFORM_DCT_MARGIN 2

/* What to make of the records of one database. */
struct rt_transform_spec {
    int channels;       /* channels of every record and of the output */
    int rec_height;     /* rows of every raw/float record */
    int rec_width;      /* columns of every raw/float record */
    int height;         /* output rows */
    int width;          /* output columns */
    int crop_pad;       /* training: zero padding per side for the random crop */
    bool flip;          /* training: horizontal flip with probability 1/2 */
    bool rrc;           /* training: random-resized crop instead of the padded crop */
    float rrc_scale[2]; /* area fraction range of the random-resized crop */
    float rrc_ratio[2]; /* aspect ratio (w/h) range of the random-resized crop */
    float eval_crop;    /* evaluation without eval_resize: centre crop extent, (0, 1] */
    int eval_resize;    /* evaluation: shorter side before the centre crop (0: eval_crop box) */
    long max_pixels;    /* largest JPEG (width x height) decoded (0: any) */
    bool dct_scale;     /* JPEGs: decode at a reduced scale when the box allows it */
    bool use_lut;       /* uint8 pixels through lut instead of a, b */
    float lut[4][256];  /* per-channel output value of each uint8 level */
    bool raw_bgr;       /* swap channels 0 and 2 of raw 3-channel records */
    float a[4];         /* per-channel scale */
    float b[4];         /* per-channel offset */
};

/* Where a sample comes from in its stored image (rt_transform_plan). */
struct rt_transform_box {
    bool resize;          /* true: the box below resized to the output; false: a window */
    bool crop_first;      /* resize the box's own pixels only (torchvision's crop, then resize);
                             else the filter may read past the box, as one resize of the whole
                             image followed by a crop does */
    float x0, y0, x1, y1; /* resize: the box, in stored-image pixels */
    int oy, ox;           /* window: output (0, 0) is stored pixel (oy, ox); outside is padding */
    bool flip;            /* horizontal flip */
};

typedef struct rt_transform rt_transform_t;

/* Working memory of one thread (JPEG decoder, image buffers that grow to the largest image and
 * are then reused). NULL when out of memory. Caller owns it; free with rt_transform_destroy. */
rt_transform_t *rt_transform_new(void);

/* Free; accepts NULL, nulls *self_p, safe twice. */
void rt_transform_destroy(rt_transform_t **self_p);

/* Shape of a decoded record: raw/float from its fields; encoded from the JPEG header (channels
 * from the record when set, else 1 for greyscale and 3 for colour JPEGs), checking the record's
 * shape fields against the header when they are set. Errors name `key`. */
int rt_transform_shape(rt_transform_t *x, const struct rt_datum *d, const char *key, int *c, int *h,
                       int *w);

/* The box and flip of a sample of an h x w uint8 image (raw or JPEG records), from its seed: what
 * rt_transform_apply does with it, and the random draws it makes, in the same order (flip, then
 * the crop). For tests and tools. */
void rt_transform_plan(const struct rt_transform_spec *sp, int h, int w, uint64_t seed,
                       bool augment, struct rt_transform_box *b);

/* The JPEG scale denominator (1, 2, 4 or 8) rt_transform_apply decodes box b at: the largest
 * keeping the box at least RT_TRANSFORM_DCT_MARGIN times the output per side (1 without
 * dct_scale or for windows). */
int rt_transform_dct_denom(const struct rt_transform_spec *sp, const struct rt_transform_box *b);

/* Write the sample of record d (named key in errors) to out (channels*height*width floats).
 * seed is the state of the sample's random stream (rt_rng_seed). Returns 0, RT_ERR_SHAPE when
 * the record's shape differs from the spec's, RT_ERR_FORMAT for a corrupt JPEG, RT_ERR_NOMEM,
 * RT_ERR_UNSUPPORTED for a float record that would need resizing, RT_ERR_TOOBIG for a JPEG over
 * max_pixels. */
int rt_transform_apply(rt_transform_t *x, const struct rt_transform_spec *sp,
                       const struct rt_datum *d, const char *key, uint64_t seed, bool augment,
                       float *out);

#endif
