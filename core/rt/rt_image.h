/*
 * rt_image: uint8 image resampling for the data path: a box of the source image resized to the
 * destination size with an antialiased bilinear (triangle) filter, computed in fixed point as
 * Pillow's Image.resize(size, BILINEAR, box) does, so crops match what PIL-based pipelines see.
 */
#ifndef RT_IMAGE_H
#define RT_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Reusable working memory of the resampler (filter tables and the intermediate image). Zero it
 * before first use; it grows to the largest request and is then reused without allocating. */
struct rt_image_scratch {
    uint8_t *buf; /* owned */
    size_t cap;   /* bytes in buf */
};

/* Free the scratch memory; safe on a zeroed or freed scratch. */
void rt_image_scratch_free(struct rt_image_scratch *s);

/* Most scratch bytes rt_image_resize may need for any box of an image of at most sw x sh pixels
 * (c channels) resized to dw x dh: for stating memory bounds. */
size_t rt_image_scratch_bound(int sw, int sh, int c, int dw, int dh);

/* Resize box [x0, x1) x [y0, y1) (source pixels, fractional allowed, inside the image) of `src`
 * (sw x sh pixels, c interleaved uint8 channels per pixel, src_stride bytes per row) to dw x dh
 * pixels at dst (dst_stride bytes per row, same channel layout). For planar (CHW) images call
 * once per plane with c = 1. Returns 0, RT_ERR_ARG for an empty or outside box, RT_ERR_NOMEM. */
int rt_image_resize(const uint8_t *src, int sw, int sh, size_t src_stride, int c, float x0,
                    float y0, float x1, float y1, uint8_t *dst, int dw, int dh, size_t dst_stride,
                    struct rt_image_scratch *s);

/* The part of the image the resize of box [x0, x1) x [y0, y1) of an sw x sh image to dw x dh
 * reads: columns [win[0], win[2]) and rows [win[1], win[3]) (the filter's support around the box,
 * clipped to the image). Returns 0 or RT_ERR_ARG as rt_image_resize. */
int rt_image_support(int sw, int sh, float x0, float y0, float x1, float y1, int dw, int dh,
                     int win[4]);

/* rt_image_resize of an sw x sh image of which only the window [win[0], win[2]) x [win[1],
 * win[3]) is in memory: src is its pixel (win[0], win[1]), src_stride bytes per row. The box and
 * the filter are the whole image's, so the bytes are those rt_image_resize gives on the whole
 * image, as long as the window holds rt_image_support's (else RT_ERR_ARG). */
int rt_image_resize_window(const uint8_t *src, int sw, int sh, const int win[4], size_t src_stride,
                           int c, float x0, float y0, float x1, float y1, uint8_t *dst, int dw,
                           int dh, size_t dst_stride, struct rt_image_scratch *s);

#endif
