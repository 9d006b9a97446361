/*
 * convert: what the sources of `eigenbatch convert` share (cmd_convert.c): the database being
 * written with its progress display, the image layouts (convert_images.c): a folder per class,
 * ImageNet's validation folder with a label file, and TinyImageNet's tree, and the synthetic
 * ImageNet-shaped set (convert_synthetic.c).
 */
#ifndef CONVERT_H
#define CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt_datum.h"
#include "rt_db.h"
#include "rt_jpeg.h"

#define CONVERT_PROGRESS_S 1.0 /* seconds between progress displays at most */

/* Progress on stderr: count, rate and ETA (a live bar on a terminal, else one line each). */
struct convert_progress {
    const char *what; /* label */
    size_t total;     /* records expected */
    bool tty;         /* stderr is a terminal: live bar */
    double t0;        /* start time */
    double last;      /* last display time */
};

/* The database being written. */
struct convert_out {
    rt_db_writer_t *w;            /* the build */
    uint8_t *buf;                 /* serialisation buffer (reused) */
    size_t cap;                   /* its size */
    struct convert_progress prog; /* display */
    size_t pngs;                  /* PNGs under JPEG names, stored re-encoded (convert_images) */
    size_t skipped;               /* unreadable images left out (--skip-bad) */
};

/* Start the display of `total` records. */
void convert_progress_start(struct convert_progress *p, const char *what, size_t total);

/* Show done/total when a second has passed since the last display (always when final). */
void convert_progress_show(struct convert_progress *p, size_t done, bool final);

/* Serialise d and store it under the next %08d key; RT_ERR_INTERRUPTED after SIGINT/SIGTERM. */
int convert_put(struct convert_out *o, const struct rt_datum *d);

/* How image layouts store their JPEGs. */
struct convert_image_opts {
    int resize_w, resize_h; /* > 0: decoded, squashed to this size, stored raw BGR (Caffe) */
    int shorter;            /* > 0: re-encode images whose shorter side is larger, to this */
    int quality;            /* JPEG quality of re-encoded images */
    const char *labels;     /* imagenet-val: the label file */
    bool verify;            /* decode every image (at 1/8 scale): data cut short is found now */
    bool skip_bad;          /* leave out unreadable images (each named in a warning, counted) */
};

/* Convert the image layout `fmt` (imagefolder, imagenet-val, tinyimagenet) at `in`, part `split`
 * (train or test), into o. Returns 0 or a negative rt_err code naming the file. */
int convert_images(const char *fmt, const char *in, const char *split, struct convert_out *o,
                   const struct convert_image_opts *io);

/* 1 when buf starts with the PNG signature. */
bool convert_is_png(const uint8_t *buf, size_t len);

/* Decode PNG `png` (named `what` in errors) to RGB, as Pillow's convert("RGB") makes it (alpha
 * dropped), and encode it as a JPEG of `quality` with j: *out points into j's buffer, valid until
 * the next call on j; *width, *height get its size. RT_ERR_FORMAT for an unreadable PNG,
 * RT_ERR_TOOBIG beyond 2^28 pixels. */
int convert_png_to_jpeg(rt_jpeg_t *j, const uint8_t *png, size_t len, const char *what, int quality,
                        const uint8_t **out, size_t *out_len, int *width, int *height);

/* The synthetic set: classes x per_class records, record i of class i % classes. */
struct convert_synth_opts {
    int classes;       /* labels 0 .. classes-1 */
    int per_class;     /* records per class */
    int width, height; /* nominal image size */
    bool jpeg;         /* JPEG records (sides within +-20%, some greyscale), else raw BGR CHW */
    uint64_t seed;     /* every image follows from it (the classes' patterns do not) */
    int quality;       /* JPEG quality */
};

/* Write the synthetic set of so into o, deterministically from so->seed. Returns 0 or a
 * negative rt_err code. */
int convert_synthetic(const struct convert_synth_opts *so, struct convert_out *o);

#endif
