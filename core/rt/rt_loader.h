/*
 * rt_loader: training and evaluation batches from an LMDB database of Datum records.
 *
 * Sampling. Epoch e visits the records in a permutation drawn from (seed, e) alone, so every
 * worker holding the same seed sees the same order. A global batch of B samples that starts at
 * permutation position P covers positions [P, P+B); a worker whose share of that batch is [lo, hi)
 * asks for positions [P+lo, P+hi). Because requests are plain position ranges, shares may be
 * unequal (rt_loader_split makes proportional ones), the global batch size may change between
 * steps, and the last batch of an epoch may be short (positions stop at the record count; no
 * sample is dropped).
 *
 * Output. Each sample becomes C x H x W float32 (NCHW batches): pixel / 255, then optionally
 * (x - mean[c]) / std[c]; float_data records are taken as they are (then normalised). Labels are
 * int32. Raw colour records made by Caffe's convert_imageset (and ours from `convert imagefolder
 * --resize`) are BGR: set raw_bgr to get RGB. JPEG records always decode to RGB.
 *
 * Augmentation (training requests): random-resized crop to H x W, or random crop of H x W from
 * the image padded by crop_pad zero pixels per side; horizontal flip with probability 1/2. Every
 * random choice is drawn from (seed, epoch, record index), so a sample looks the same whichever
 * worker, thread or batch position gets it. Evaluation requests resize the shorter side to
 * eval_resize and take the centre H x W (torchvision's Resize + CenterCrop), or without
 * eval_resize the centre crop (of the output's aspect ratio, eval_crop of the image's extent)
 * resized to H x W; when the record already has the output size this is the identity. The
 * output size is out_height x out_width when set (records may then have any size), else the
 * first record's. Normalised values are torchvision's ToTensor + Normalize bit for bit.
 *
 * Prefetch. With threads > 0, that many threads decode and augment ahead of the caller: the
 * caller submits the ranges it will need (up to queue_depth in flight), then waits for them in
 * submission order. Output goes into caller-provided buffers or into loader-owned buffers
 * allocated once per queue slot (max_batch samples) and reused. A request may also name records
 * in key order (in_order), to prefetch evaluation data; rt_loader_read() is the synchronous form.
 *
 * Memory. What the loader holds is bounded and stated at start (log line "loader: memory bound
 * ..."; rt_loader_memory_bound): queue_depth x max_batch output samples of loader-owned buffers,
 * plus per thread (prefetch threads and the caller's) the decode buffers of the largest image
 * allowed: JPEG records over max_pixels are refused, the decoded image, libjpeg's coefficient
 * buffers, the record's copy and the resampler's rows are sized from it. Pages of the database
 * map that hold a record of RT_LOADER_RELEASE_MIN bytes or more are handed back to the kernel
 * once it is decoded, so reading a database larger than memory does not grow the process.
 *
 * Thread safety: one caller thread drives submit/wait/release/read; the loader's own threads do
 * the rest.
 */
#ifndef RT_LOADER_H
#define RT_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RT_LOADER_MAX_QUEUE 64                 /* largest queue_depth */
#define RT_LOADER_MAX_THREADS 64               /* most prefetch threads */
#define RT_LOADER_MAX_PIXELS_DEFAULT 16777216L /* default max_pixels: 4096 x 4096 */
#define RT_LOADER_RELEASE_MIN 65536 /* records this large leave the process's memory when read */

struct rt_loader_opts {
    uint64_t seed;      /* permutation and augmentation seed */
    int threads;        /* prefetch threads; 0 = work happens inside rt_loader_wait */
    int queue_depth;    /* requests in flight at most (1..RT_LOADER_MAX_QUEUE) */
    size_t max_batch;   /* samples per request into loader-owned buffers */
    int out_height;     /* output rows; 0 = the first record's */
    int out_width;      /* output columns; 0 = the first record's */
    int crop_pad;       /* training: random crop with this much zero padding per side */
    bool flip;          /* training: horizontal flip with probability 1/2 */
    bool rrc;           /* training: random-resized crop to out_height x out_width */
    float rrc_scale[2]; /* area fraction range of the random-resized crop */
    float rrc_ratio[2]; /* aspect ratio (w/h) range of the random-resized crop */
    float eval_crop;    /* evaluation: centre crop extent (fraction of the image), (0, 1] */
    int eval_resize;    /* evaluation: shorter side before the centre crop (0: use eval_crop) */
    int channels;       /* output channels, 1 or 3 (0: the first record's); JPEGs convert */
    long max_pixels;    /* largest JPEG (width x height) accepted: bounds decode memory */
    bool dct_scale;     /* decode JPEGs at 1/2..1/8 scale when the crop allows it */
    bool raw_bgr;       /* raw 3-channel records are BGR: swap to RGB */
    bool normalize;     /* apply (x - mean) / std per channel */
    float mean[4];      /* per-channel mean (after /255) */
    float std[4];       /* per-channel standard deviation (after /255) */
    size_t max_bad;     /* records that cannot be decoded tolerated (distinct records): each is
                         * replaced by the next one in key order that decodes, with a warning
                         * naming its key; 0: the first one fails the request */
};

/* Defaults: seed 0, 1 thread, queue 4, max_batch 256, record size, no augmentation, rrc ranges
 * (0.08, 1) and (3/4, 4/3), eval_crop 1, no eval_resize, the records' channels, max_pixels
 * RT_LOADER_MAX_PIXELS_DEFAULT, DCT scaling on, no normalisation, no bad record tolerated. */
void rt_loader_opts_default(struct rt_loader_opts *o);

typedef struct rt_loader rt_loader_t;

/* A range of permutation positions of one epoch to load. */
struct rt_loader_req {
    uint64_t epoch; /* epoch whose permutation is used */
    size_t start;   /* first permutation position */
    size_t count;   /* samples; start + count <= record count */
    bool augment;   /* training transform (else evaluation transform) */
    bool in_order;  /* positions are record indices in key order (evaluation), not permuted */
    float *x;       /* count*C*H*W floats owned by the caller, or NULL: loader-owned buffer */
    int32_t *y;     /* count labels owned by the caller, or NULL: loader-owned buffer */
};

/* A finished request. x, y and index are valid until rt_loader_release(). */
struct rt_loader_batch {
    uint64_t epoch;        /* as requested */
    size_t start;          /* as requested */
    size_t count;          /* samples */
    float *x;              /* count x C x H x W */
    int32_t *y;            /* count labels */
    const uint32_t *index; /* count record indices (key order) the samples came from */
    int slot_;             /* internal */
};

/* Open the database at dir and start the prefetch threads. Returns 0 and *out (caller owns it;
 * free with rt_loader_destroy), or a negative rt_err code: RT_ERR_CONFIG for bad options,
 * RT_ERR_NOTFOUND / RT_ERR_LMDB / RT_ERR_FORMAT / RT_ERR_SHAPE for the database. */
int rt_loader_new(const char *dir, const struct rt_loader_opts *opts, rt_loader_t **out);

/* Stop the threads and free everything; accepts NULL, nulls *self_p, safe twice. */
void rt_loader_destroy(rt_loader_t **self_p);

/* Records found undecodable and skipped so far (at most opts.max_bad); thread-safe. */
size_t rt_loader_bad_records(rt_loader_t *l);

/* Number of records (samples per epoch). */
size_t rt_loader_count(const rt_loader_t *l);

/* Output shape of one sample. */
void rt_loader_shape(const rt_loader_t *l, int *c, int *h, int *w);

/* Bytes the loader may hold at most (see Memory above): what rt_loader_new logged. */
size_t rt_loader_memory_bound(const rt_loader_t *l);

/* Record index at permutation position pos of epoch (pos < count). For tests and tools. */
size_t rt_loader_perm_index(rt_loader_t *l, uint64_t epoch, size_t pos);

/* Queue a request. Returns 0; RT_ERR_STATE when queue_depth requests are already in flight (wait
 * and release first); RT_ERR_ARG when the range leaves the epoch or a loader-owned buffer would
 * be too small (count > max_batch). */
int rt_loader_submit(rt_loader_t *l, const struct rt_loader_req *req);

/* Wait for the oldest submitted request. On success fills *out; hand it back with
 * rt_loader_release(). On failure (a corrupt record, ...) returns the error with a detail naming
 * the key; the request is then gone and needs no release. RT_ERR_STATE when nothing is queued. */
int rt_loader_wait(rt_loader_t *l, struct rt_loader_batch *out);

/* Return a batch's slot (and loader-owned buffers) for reuse. */
void rt_loader_release(rt_loader_t *l, struct rt_loader_batch *b);

/* 1 when the loader has prefetch threads and requests of `count` samples fit its own buffers
 * (count <= max_batch), so that an in-order pass (evaluation) can decode ahead of its caller. */
int rt_loader_can_prefetch(const rt_loader_t *l, size_t count);

/* Synchronously load records [first, first+n) in key order with the evaluation transform into
 * x (n*C*H*W floats) and y (n labels), on the caller's thread. For evaluation and for the
 * Hessian batch of the eigen service. */
int rt_loader_read(rt_loader_t *l, size_t first, size_t n, float *x, int32_t *y);

/* Where the next global batch starts: permutation position pos of epoch. Start at {0, 0}. */
struct rt_loader_cursor {
    uint64_t epoch; /* current epoch */
    size_t pos;     /* first permutation position not yet used in this epoch */
};

/* Take the next global batch of at most `batch` samples (batch >= 1; it may differ from call to
 * call): *epoch and *start receive where it lies, the return value its size, min(batch, count -
 * pos), so the last batch of an epoch is short rather than dropped. Advances the cursor, to the
 * next epoch after the last batch. Workers then request [start + lo, start + hi) for their share
 * [lo, hi) of the returned size (rt_loader_split). */
size_t rt_loader_advance(const rt_loader_t *l, struct rt_loader_cursor *cur, size_t batch,
                         uint64_t *epoch, size_t *start);

/* Split a batch of `batch` samples among n workers in proportion to weights (>= 0, not all 0):
 * bounds[0] = 0 <= bounds[1] <= ... <= bounds[n] = batch; worker r gets [bounds[r],
 * bounds[r+1]). Largest-remainder rounding, so it is exact and deterministic. */
void rt_loader_split(size_t batch, const double *weights, int n, size_t *bounds);

#endif
