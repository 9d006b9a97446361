/*
 * convert_synthetic: `eigenbatch convert synthetic`, an ImageNet-shaped data set made up from a
 * seed, for tests and benchmarks where the real one cannot be had. Record i has class i % C, so
 * any prefix holds every class. A class is a pair of colours and a stripe pattern (direction,
 * frequency), the same for every seed; each image draws its own phase and per-pixel noise from
 * the seed, so a model has something to learn, no two images are alike, and the sets of two
 * seeds serve as training and test set. As JPEGs, each side varies within +-20% of the nominal
 * size (records of any size, as ImageNet's) and every S_GREY_EVERY-th image is greyscale; raw
 * records are exactly the nominal size, CHW in BGR order like Caffe's.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "convert.h"
#include "rt_err.h"
#include "rt_jpeg.h"
#include "rt_rng.h"

#define S_JITTER 0.2                /* JPEG sides vary by this fraction either way */
#define S_GREY_EVERY 16             /* JPEG records i with i % this == S_GREY_AT are greyscale */
#define S_GREY_AT 7                 /* (so a set of 8 records or more has one) */
#define S_NOISE 24.0                /* per-pixel noise amplitude, grey levels */
#define S_MIN_CYCLES 1.5            /* stripes across the image, fewest ... */
#define S_MAX_CYCLES 6.0            /* ... and most */
#define S_COLOUR_LO 30              /* class colours stay inside [LO, LO + SPAN) */
#define S_COLOUR_SPAN 196           /* so the noise rarely clips */
#define S_CLASS_SALT 0x5eedc1a55ULL /* separates the class stream from the image stream */
#define S_PI 3.14159265358979323846

/* What makes a class recognisable. */
struct s_class {
    double col[2][3]; /* the two stripe colours, RGB */
    double dx, dy;    /* stripe direction (unit vector) */
    double cycles;    /* stripes across the image */
};

/* Buffers reused from image to image. */
struct s_buf {
    uint8_t *hwc, *chw; /* interleaved RGB(or grey) pixels, planar BGR for raw records */
    size_t cap;         /* bytes in each */
};

/* Class c's pattern: the same for every seed, so that sets made with two seeds are a training
 * set and a test set of one task. */
static void s_class_of(int c, struct s_class *k)
{
    uint64_t st = rt_rng_mix(rt_rng_mix(S_CLASS_SALT + (uint64_t)c));
    for (int a = 0; a < 2; a++)
        for (int q = 0; q < 3; q++)
            k->col[a][q] = S_COLOUR_LO + rt_rng_int(&st, S_COLOUR_SPAN - 1);
    double th = S_PI * rt_rng_uniform(&st);
    k->dx = cos(th);
    k->dy = sin(th);
    k->cycles = S_MIN_CYCLES + (S_MAX_CYCLES - S_MIN_CYCLES) * rt_rng_uniform(&st);
}

static int s_grow(struct s_buf *b, size_t need)
{
    if (need <= b->cap)
        return 0;
    uint8_t *h = realloc(b->hwc, need);
    if (!h)
        return rt_err_set(RT_ERR_NOMEM, "no memory for a %zu-byte image", need);
    b->hwc = h;
    uint8_t *p = realloc(b->chw, need);
    if (!p)
        return rt_err_set(RT_ERR_NOMEM, "no memory for a %zu-byte image", need);
    b->chw = p;
    b->cap = need;
    return 0;
}

/* Draw image w x h with ch channels (1: the mean of the colours) of class k into dst (HWC), from
 * the stream at *st (the phase, then the noise). */
static void s_draw(const struct s_class *k, int w, int h, int ch, uint64_t *st, uint8_t *dst)
{
    double phase = 2 * S_PI * rt_rng_uniform(st);
    double f = 2 * S_PI * k->cycles / (w > h ? w : h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double t = 0.5 + 0.5 * sin(f * (x * k->dx + y * k->dy) + phase);
            double v[3];
            for (int q = 0; q < 3; q++)
                v[q] = k->col[0][q] * t + k->col[1][q] * (1 - t);
            if (ch == 1)
                v[0] = (v[0] + v[1] + v[2]) / 3;
            for (int q = 0; q < ch; q++) {
                double p = v[q] + S_NOISE * (2 * rt_rng_uniform(st) - 1);
                dst[((size_t)y * w + x) * ch + q] = (uint8_t)(p < 0 ? 0 : p > 255 ? 255 : p + 0.5);
            }
        }
}

/* Side n jittered by up to S_JITTER either way, within the Datum's limits. */
static int s_jitter(int n, uint64_t *st)
{
    double s = n * (1 - S_JITTER + 2 * S_JITTER * rt_rng_uniform(st));
    int v = (int)lround(s);
    return v < 1 ? 1 : v > RT_DATUM_MAX_SIDE ? RT_DATUM_MAX_SIDE : v;
}

/* Record i: its class's pattern drawn at its size, encoded or planar. */
static int s_record(const struct convert_synth_opts *so, size_t i, struct s_buf *b, rt_jpeg_t *jpeg,
                    struct rt_datum *d)
{
    int c = (int)(i % (size_t)so->classes), w = so->width, h = so->height, ch = 3, rc;
    struct s_class k;
    s_class_of(c, &k);
    uint64_t st = rt_rng_mix(so->seed ^ rt_rng_mix((uint64_t)i + 1));
    if (so->jpeg) {
        w = s_jitter(so->width, &st);
        h = s_jitter(so->height, &st);
        if (i % S_GREY_EVERY == S_GREY_AT)
            ch = 1;
    }
    size_t plane = (size_t)w * h;
    if ((rc = s_grow(b, plane * 3)) < 0)
        return rc;
    s_draw(&k, w, h, ch, &st, b->hwc);
    /* channels 3 for JPEGs too: the loader decodes greyscale ones to the database's channels */
    *d = (struct rt_datum){.channels = 3, .height = h, .width = w, .label = c};
    if (so->jpeg) {
        const uint8_t *out;
        size_t len;
        if ((rc = rt_jpeg_encode(jpeg, b->hwc, w, h, ch, so->quality, &out, &len)) < 0)
            return rt_err_set(rc, "synthetic record %zu: %s", i, rt_err_msg());
        d->kind = RT_DATUM_ENCODED;
        d->data = out;
        d->data_len = len;
        return 0;
    }
    for (size_t p = 0; p < plane; p++)
        for (int q = 0; q < 3; q++)
            b->chw[(size_t)(2 - q) * plane + p] = b->hwc[p * 3 + q]; /* RGB -> planar BGR */
    d->kind = RT_DATUM_RAW;
    d->data = b->chw;
    d->data_len = plane * 3;
    return 0;
}

int convert_synthetic(const struct convert_synth_opts *so, struct convert_out *o)
{
    if (so->classes < 1 || so->per_class < 1 || so->width < 1 || so->height < 1)
        return rt_err_set(RT_ERR_ARG, "synthetic: classes, per-class and size must be positive");
    size_t n = (size_t)so->classes * (size_t)so->per_class;
    struct s_buf b = {0};
    rt_jpeg_t *jpeg = rt_jpeg_new();
    if (!jpeg)
        return rt_err_set(RT_ERR_NOMEM, "cannot start the JPEG codec");
    int rc = 0;
    convert_progress_start(&o->prog, "synthetic", n);
    for (size_t i = 0; !rc && i < n; i++) {
        struct rt_datum d;
        if (!(rc = s_record(so, i, &b, jpeg, &d)))
            rc = convert_put(o, &d);
    }
    rt_jpeg_destroy(&jpeg);
    free(b.hwc);
    free(b.chw);
    return rc;
}
