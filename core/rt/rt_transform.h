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
 * Evaluation: the centre box of the output's aspect ratio, eval_crop of the image's extent,
 * resized to H x W (the identity when the record has the output size and eval_crop = 1). float_data
 * records support crops and flips but no resizing. All random choices come from the caller's seed,
 * so a sample is reproducible anywhere from (seed, epoch, record).
 *
 * Channel order: JPEG records decode to RGB. Raw colour records are used as stored unless
 * raw_bgr is set, which swaps channels 0 and 2 (Caffe's convert_imageset stores BGR).
 */
#ifndef RT_TRANSFORM_H
#define RT_TRANSFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "rt_datum.h"

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
    float eval_crop;    /* evaluation: centre crop extent, (0, 1] */
    bool raw_bgr;       /* swap channels 0 and 2 of raw 3-channel records */
    float a[4];         /* per-channel scale */
    float b[4];         /* per-channel offset */
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

/* Write the sample of record d (named key in errors) to out (channels*height*width floats).
 * seed is the state of the sample's random stream (rt_rng_seed). Returns 0, RT_ERR_SHAPE when
 * the record's shape differs from the spec's, RT_ERR_FORMAT for a corrupt JPEG, RT_ERR_NOMEM,
 * RT_ERR_UNSUPPORTED for a float record that would need resizing. */
int rt_transform_apply(rt_transform_t *x, const struct rt_transform_spec *sp,
                       const struct rt_datum *d, const char *key, uint64_t seed, bool augment,
                       float *out);

#endif
