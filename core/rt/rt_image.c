/*
 * rt_image: separable antialiased bilinear resampling in 22-bit fixed point (Pillow's algorithm:
 * filter support scales with the downscale factor; horizontal pass into a uint8 intermediate over
 * the rows the vertical pass needs, then the vertical pass).
 */
#include "rt_image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define S_HAVE_AVX2_PATH 1 /* compiled for AVX2 whatever -march says; used when the CPU has it */
#endif

#include "rt_err.h"

#define S_PRECISION_BITS (32 - 8 - 2)

/* Triangle filter of support 1. */
static double s_bilinear(double x)
{
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Kernel size for resampling [in0, in1) to out samples. */
static int s_ksize(double in0, double in1, int out)
{
    double scale = (in1 - in0) / out;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    return (int)ceil(filterscale) * 2 + 1;
}

/* Output sample xx's first input index (*xmin) and number of taps (returned) when [in0, in1) of
 * in_size samples is resampled to out_size; also its centre. */
static int s_taps_of(int in_size, double in0, double in1, int out_size, int ksize, int xx,
                     int *xmin_out, double *center_out)
{
    double scale = (in1 - in0) / out_size;
    double support = scale < 1.0 ? 1.0 : scale;
    double center = in0 + (xx + 0.5) * scale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0)
        xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size)
        xmax = in_size;
    xmax -= xmin;
    if (xmax > ksize)
        xmax = ksize;
    *xmin_out = xmin;
    *center_out = center;
    return xmax;
}

/* Fixed-point coefficients: bounds[2*i] = first input index, bounds[2*i+1] = taps,
 * kk[i*ksize+t] = weight of tap t. */
static void s_coeffs(int in_size, double in0, double in1, int out_size, int ksize, int *bounds,
                     int32_t *kk)
{
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        int xmin;
        double center;
        int xmax = s_taps_of(in_size, in0, in1, out_size, ksize, xx, &xmin, &center);
        double ww = 0.0;
        for (int x = 0; x < xmax; x++)
            ww += s_bilinear((x + xmin - center + 0.5) * ss);
        for (int x = 0; x < ksize; x++) {
            double w =
                (x < xmax && ww != 0.0) ? s_bilinear((x + xmin - center + 0.5) * ss) / ww : 0.0;
            kk[xx * ksize + x] = (int32_t)(w * (1 << S_PRECISION_BITS) + (w < 0 ? -0.5 : 0.5));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
}

static inline uint8_t s_clip8(int32_t v)
{
    v >>= S_PRECISION_BITS;
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* The horizontal taps of an RGB row in tap-major order for the vector path: off[t*dw+xx] = byte
 * offset of output pixel xx's tap t (clamped to the row; its weight is 0 past the filter's taps),
 * w[t*dw+xx] = its weight. */
struct s_taps {
    int32_t *off; /* byte offsets, tap-major */
    int32_t *w;   /* weights, tap-major */
};

static void s_taps_make(int sw, int dw, int kh, const int *bh, const int32_t *kk, struct s_taps *t)
{
    for (int x = 0; x < kh; x++)
        for (int xx = 0; xx < dw; xx++) {
            int p = bh[2 * xx] + x;
            t->off[(size_t)x * dw + xx] = 3 * (p < sw ? p : sw - 1);
            t->w[(size_t)x * dw + xx] = x < bh[2 * xx + 1] ? kk[(size_t)xx * kh + x] : 0;
        }
}

/* Output pixels [from, dw) of one RGB row, one at a time. */
static void s_hrow_rgb(const uint8_t *in, int from, int dw, int kh, const int *bh,
                       const int32_t *kkh, uint8_t *out)
{
    for (int xx = from; xx < dw; xx++) {
        int xn = bh[2 * xx + 1];
        const int32_t *k = kkh + (size_t)xx * kh;
        const uint8_t *p = in + (size_t)bh[2 * xx] * 3;
        int32_t a0 = 1 << (S_PRECISION_BITS - 1), a1 = a0, a2 = a0;
        for (int x = 0; x < xn; x++, p += 3) {
            a0 += p[0] * k[x];
            a1 += p[1] * k[x];
            a2 += p[2] * k[x];
        }
        out[3 * xx] = s_clip8(a0);
        out[3 * xx + 1] = s_clip8(a1);
        out[3 * xx + 2] = s_clip8(a2);
    }
}

#ifdef S_HAVE_AVX2_PATH
/* Output pixels of one RGB row eight at a time (AVX2): per tap, gather the four bytes at each
 * pixel's tap (R, G, B and one byte past, which the masks drop) and accumulate the three
 * channels. The same integer sums as s_hrow_rgb, so the same bytes. Returns how many pixels it
 * wrote (a multiple of 8); the caller finishes the row. */
static int s_hrow_rgb_vec(const uint8_t *in, int dw, int kh, const struct s_taps *t, uint8_t *out)
{
    const __m256i half = _mm256_set1_epi32(1 << (S_PRECISION_BITS - 1));
    const __m256i byte = _mm256_set1_epi32(0xff), zero = _mm256_setzero_si256();
    int xx = 0;
    for (; xx + 8 <= dw; xx += 8) {
        __m256i a0 = half, a1 = half, a2 = half;
        for (int x = 0; x < kh; x++) {
            __m256i off = _mm256_loadu_si256((const __m256i *)(t->off + (size_t)x * dw + xx));
            __m256i k = _mm256_loadu_si256((const __m256i *)(t->w + (size_t)x * dw + xx));
            __m256i px = _mm256_i32gather_epi32((const int *)in, off, 1);
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_and_si256(px, byte), k));
            a1 = _mm256_add_epi32(
                a1, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(px, 8), byte), k));
            a2 = _mm256_add_epi32(
                a2, _mm256_mullo_epi32(_mm256_and_si256(_mm256_srli_epi32(px, 16), byte), k));
        }
        int32_t v[3][8];
        __m256i hi = byte;
        _mm256_storeu_si256(
            (__m256i *)v[0],
            _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(a0, S_PRECISION_BITS), zero), hi));
        _mm256_storeu_si256(
            (__m256i *)v[1],
            _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(a1, S_PRECISION_BITS), zero), hi));
        _mm256_storeu_si256(
            (__m256i *)v[2],
            _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(a2, S_PRECISION_BITS), zero), hi));
        for (int i = 0; i < 8; i++) {
            out[3 * (xx + i)] = (uint8_t)v[0][i];
            out[3 * (xx + i) + 1] = (uint8_t)v[1][i];
            out[3 * (xx + i) + 2] = (uint8_t)v[2][i];
        }
    }
    return xx;
}
#else
static int s_hrow_rgb_vec(const uint8_t *in, int dw, int kh, const struct s_taps *t, uint8_t *out)
{
    (void)in, (void)dw, (void)kh, (void)t, (void)out;
    return 0; /* no vector path in this build: s_hrow_rgb does the row */
}
#endif

void rt_image_scratch_free(struct rt_image_scratch *s)
{
    if (s) {
        free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
}

/* Make s hold at least n bytes (free, then allocate: nothing is kept between calls, and the old
 * and the new block never exist at once). */
static int s_reserve(struct rt_image_scratch *s, size_t n)
{
    if (n <= s->cap)
        return 0;
    free(s->buf);
    s->cap = 0;
    if (!(s->buf = malloc(n)))
        return rt_err_set(RT_ERR_NOMEM, "no memory for %zu bytes of resampling scratch", n);
    s->cap = n;
    return 0;
}

/* Bytes of scratch for a box spanning bw x bh source pixels of an image with sh rows. */
static size_t s_scratch_need(double bw, double bh, int sh, int c, int dw, int dh)
{
    int kh = s_ksize(0, bw, dw), kv = s_ksize(0, bh, dh);
    return 3 * sizeof(int32_t) * (size_t)dw * kh + sizeof(int) * 2 * (size_t)dw +
           sizeof(int32_t) * (size_t)dh * kv + sizeof(int) * 2 * (size_t)dh +
           sizeof(int32_t) * (size_t)dw * c + (size_t)sh * dw * c;
}

size_t rt_image_scratch_bound(int sw, int sh, int c, int dw, int dh)
{
    return s_scratch_need(sw, sh, sh, c, dw, dh);
}

/* The input span [*lo, *hi) the taps of out_size samples read. */
static void s_span(int in_size, double in0, double in1, int out_size, int *lo, int *hi)
{
    int ksize = s_ksize(in0, in1, out_size);
    *lo = in_size;
    *hi = 0;
    for (int xx = 0; xx < out_size; xx++) {
        int xmin;
        double center;
        int n = s_taps_of(in_size, in0, in1, out_size, ksize, xx, &xmin, &center);
        *lo = xmin < *lo ? xmin : *lo;
        *hi = xmin + n > *hi ? xmin + n : *hi;
    }
    if (*hi <= *lo) /* no taps at all: an empty span at the box's start */
        *lo = *hi = (int)in0;
}

static int s_box_ok(int sw, int sh, float x0, float y0, float x1, float y1, int c, int dw, int dh)
{
    return dw >= 1 && dh >= 1 && c >= 1 && x0 >= 0 && y0 >= 0 && x1 > x0 && y1 > y0 && x1 <= sw &&
           y1 <= sh;
}

int rt_image_support(int sw, int sh, float x0, float y0, float x1, float y1, int dw, int dh,
                     int win[4])
{
    if (!s_box_ok(sw, sh, x0, y0, x1, y1, 1, dw, dh))
        return rt_err_set(RT_ERR_ARG, "resize box (%g,%g)-(%g,%g) of a %dx%d image to %dx%d", x0,
                          y0, x1, y1, sw, sh, dw, dh);
    s_span(sw, x0, x1, dw, &win[0], &win[2]);
    s_span(sh, y0, y1, dh, &win[1], &win[3]);
    return 0;
}

int rt_image_resize(const uint8_t *src, int sw, int sh, size_t src_stride, int c, float x0,
                    float y0, float x1, float y1, uint8_t *dst, int dw, int dh, size_t dst_stride,
                    struct rt_image_scratch *s)
{
    const int win[4] = {0, 0, sw, sh};
    return rt_image_resize_window(src, sw, sh, win, src_stride, c, x0, y0, x1, y1, dst, dw, dh,
                                  dst_stride, s);
}

int rt_image_resize_window(const uint8_t *src, int sw, int sh, const int win[4], size_t src_stride,
                           int c, float x0, float y0, float x1, float y1, uint8_t *dst, int dw,
                           int dh, size_t dst_stride, struct rt_image_scratch *s)
{
    if (!s_box_ok(sw, sh, x0, y0, x1, y1, c, dw, dh))
        return rt_err_set(RT_ERR_ARG, "resize box (%g,%g)-(%g,%g) of a %dx%d image to %dx%d", x0,
                          y0, x1, y1, sw, sh, dw, dh);
    const int wx0 = win[0], wy0 = win[1], ww = win[2] - win[0], wh = win[3] - win[1];
    if (wx0 < 0 || wy0 < 0 || ww < 1 || wh < 1 || win[2] > sw || win[3] > sh)
        return rt_err_set(RT_ERR_ARG, "window (%d,%d)-(%d,%d) outside a %dx%d image", win[0],
                          win[1], win[2], win[3], sw, sh);
    int kh = s_ksize(x0, x1, dw), kv = s_ksize(y0, y1, dh);
    size_t off_kh = 0;
    size_t off_tap = off_kh + sizeof(int32_t) * (size_t)dw * kh; /* s_taps: offsets, weights */
    size_t off_bh = off_tap + 2 * sizeof(int32_t) * (size_t)dw * kh;
    size_t off_kv = off_bh + sizeof(int) * 2 * (size_t)dw;
    size_t off_bv = off_kv + sizeof(int32_t) * (size_t)dh * kv;
    size_t off_acc = off_bv + sizeof(int) * 2 * (size_t)dh;
    size_t off_tmp = off_acc + sizeof(int32_t) * (size_t)dw * c;
    /* the intermediate holds at most the window's rows */
    size_t need = s_scratch_need(x1 - x0, y1 - y0, wh, c, dw, dh);
    int rc = s_reserve(s, need);
    if (rc < 0)
        return rc;
    int32_t *kkh = (int32_t *)(s->buf + off_kh);
    int *bh = (int *)(s->buf + off_bh);
    int32_t *kkv = (int32_t *)(s->buf + off_kv);
    int *bv = (int *)(s->buf + off_bv);
    int32_t *acc = (int32_t *)(s->buf + off_acc);
    uint8_t *tmp = s->buf + off_tmp;
    /* the coefficients of the whole image, then its indices relative to the window, which must
     * hold every tap */
    s_coeffs(sw, x0, x1, dw, kh, bh, kkh);
    s_coeffs(sh, y0, y1, dh, kv, bv, kkv);
    for (int i = 0; i < dw; i++) {
        bh[2 * i] -= wx0;
        if (bh[2 * i + 1] > 0 && (bh[2 * i] < 0 || bh[2 * i] + bh[2 * i + 1] > ww))
            return rt_err_set(RT_ERR_ARG, "window columns [%d, %d) miss taps of the resize", win[0],
                              win[2]);
    }
    for (int i = 0; i < dh; i++) {
        bv[2 * i] -= wy0;
        if (bv[2 * i + 1] > 0 && (bv[2 * i] < 0 || bv[2 * i] + bv[2 * i + 1] > wh))
            return rt_err_set(RT_ERR_ARG, "window rows [%d, %d) miss taps of the resize", win[1],
                              win[3]);
    }
    struct s_taps taps = {(int32_t *)(s->buf + off_tap),
                          (int32_t *)(s->buf + off_tap) + (size_t)dw * kh};
    if (c == 3)
        s_taps_make(ww, dw, kh, bh, kkh, &taps);

    int yfirst = bv[0];
    int ylast = bv[2 * (dh - 1)] + bv[2 * (dh - 1) + 1];
    size_t trow = (size_t)dw * c;
    /* horizontal pass over rows [yfirst, ylast) */
    for (int y = yfirst; y < ylast; y++) {
        const uint8_t *in = src + (size_t)y * src_stride;
        uint8_t *out = tmp + (size_t)(y - yfirst) * trow;
        if (c == 3) { /* RGB: the three channels in one sweep of the taps */
            /* the vector path reads one byte past a row's last pixel: not on the last row */
            int xx = y < wh - 1 ? s_hrow_rgb_vec(in, dw, kh, &taps, out) : 0;
            s_hrow_rgb(in, xx, dw, kh, bh, kkh, out);
            continue;
        }
        for (int xx = 0; xx < dw; xx++) {
            int xmin = bh[2 * xx], xn = bh[2 * xx + 1];
            const int32_t *k = kkh + (size_t)xx * kh;
            for (int ch = 0; ch < c; ch++) {
                int32_t sum = 1 << (S_PRECISION_BITS - 1);
                const uint8_t *p = in + (size_t)xmin * c + ch;
                for (int x = 0; x < xn; x++)
                    sum += p[(size_t)x * c] * k[x];
                out[(size_t)xx * c + ch] = s_clip8(sum);
            }
        }
    }
    /* vertical pass: whole rows at a time (contiguous, vectorises) */
    for (int yy = 0; yy < dh; yy++) {
        int ymin = bv[2 * yy] - yfirst, yn = bv[2 * yy + 1];
        const int32_t *k = kkv + (size_t)yy * kv;
        uint8_t *out = dst + (size_t)yy * dst_stride;
        for (size_t i = 0; i < trow; i++)
            acc[i] = 1 << (S_PRECISION_BITS - 1);
        for (int y = 0; y < yn; y++) {
            const uint8_t *row = tmp + (size_t)(ymin + y) * trow;
            int32_t ky = k[y];
            for (size_t i = 0; i < trow; i++)
                acc[i] += row[i] * ky;
        }
        for (size_t i = 0; i < trow; i++)
            out[i] = s_clip8(acc[i]);
    }
    return 0;
}
