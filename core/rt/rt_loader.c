/*
 * rt_loader: epoch permutations, the request queue and its prefetch threads (the per-sample
 * work is rt_transform).
 */
#include "rt_loader.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"
#include "rt_image.h"
#include "rt_log.h"
#include "rt_rng.h"
#include "rt_transform.h"

#define S_ERR_MAX 512  /* bytes of a worker thread's error detail */
#define S_CHUNK_RAW 64 /* samples a thread claims at once for raw records */
#define S_CHUNK_ENC 2  /* ... for encoded records (each costs milliseconds) */
/* Memory per pixel of the largest JPEG allowed, per decoding thread: */
#define S_JPEG_RECORD_BPP 3 /* the record: JPEG bytes, at most the raw RGB size (else refused) */
#define S_JPEG_WORK_BPP 6   /* libjpeg's whole-image coefficients (progressive, 4:4:4) */
#define S_THREAD_FIXED ((size_t)1 << 20) /* TurboJPEG handle, tables, stack in use */
#define S_MIB (1024.0 * 1024.0)

enum s_slot_state { S_FREE = 0, S_QUEUED, S_HANDED };

/* One queued request. */
struct s_slot {
    enum s_slot_state state;  /* FREE, QUEUED (in work or done), HANDED (to caller) */
    struct rt_loader_req req; /* the request (x, y resolved to the buffers in use) */
    uint32_t *index;          /* req.count record indices */
    size_t index_cap;         /* capacity of index */
    float *own_x;             /* loader-owned output, max_batch samples (lazy, reused) */
    int32_t *own_y;           /* loader-owned labels */
    size_t next;              /* next sample to claim */
    size_t done;              /* samples finished */
    int err;                  /* first error, 0 if none */
    char err_msg[S_ERR_MAX];  /* its detail */
};

/* One thread's state (a prefetch thread or the caller). */
struct s_ctx {
    struct rt_loader *l;         /* owner */
    rt_transform_t *tr;          /* decode/augment working memory */
    struct rt_datum_arena arena; /* record decoding memory */
    pthread_t tid;               /* thread id (prefetch threads) */
};

/* A cached epoch permutation. */
struct s_perm {
    uint64_t epoch; /* which epoch; valid when perm != NULL */
    uint32_t *perm; /* count record indices */
};

struct rt_loader {
    struct rt_loader_opts o;       /* options */
    rt_db_t *db;                   /* the database */
    size_t n;                      /* records */
    enum rt_datum_kind kind;       /* kind of the first record */
    struct rt_transform_spec spec; /* shapes and augmentation */
    size_t sample;                 /* floats per output sample */
    size_t max_record;             /* longest JPEG record accepted (bytes; 0: any) */
    size_t mem_bound;              /* bytes held at most (rt_loader_memory_bound) */
    struct s_perm perms[2];        /* last two epochs' permutations (caller thread only) */
    int perm_next;                 /* which perms[] entry to replace next */
    struct s_slot slots[RT_LOADER_MAX_QUEUE]; /* the queue */
    uint64_t submit_seq;                      /* requests submitted */
    uint64_t wait_seq;                        /* requests handed to the caller */
    pthread_mutex_t mu;                       /* guards slots, seqs, stop */
    pthread_cond_t work_cv;                   /* new work or stop */
    pthread_cond_t done_cv;                   /* a request finished */
    bool stop;                                /* threads exit */
    int nthreads;                             /* threads started */
    struct s_ctx *ctx;                        /* nthreads contexts */
    struct s_ctx caller;                      /* the caller's context (sync mode, rt_loader_read) */
    bool sync_ok;                             /* mu/cvs initialised */
    uint32_t *bad;                            /* undecodable records skipped (sorted; under mu) */
    size_t n_bad;                             /* how many (written under mu, read atomically) */
};

/* ---- options and shape -------------------------------------------------------------------- */

void rt_loader_opts_default(struct rt_loader_opts *o)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->queue_depth = 4;
    o->max_batch = 256;
    o->rrc_scale[0] = 0.08f;
    o->rrc_scale[1] = 1.0f;
    o->rrc_ratio[0] = 3.0f / 4.0f;
    o->rrc_ratio[1] = 4.0f / 3.0f;
    o->eval_crop = 1.0f;
    o->max_pixels = RT_LOADER_MAX_PIXELS_DEFAULT;
    o->dct_scale = true;
    for (int i = 0; i < 4; i++)
        o->std[i] = 1.0f;
}

/* Load record `idx` of `epoch` into out (C*H*W floats) and *label. */
static int s_sample(struct s_ctx *x, size_t idx, uint64_t epoch, bool augment, float *out,
                    int32_t *label)
{
    const struct rt_loader *l = x->l;
    char key[RT_DB_KEY_MAX];
    const void *val;
    size_t len;
    int rc = rt_db_record(l->db, idx, &val, &len);
    if (rc < 0)
        return rc;
    struct rt_datum d;
    rt_db_key(l->db, idx, key, sizeof key);
    if (l->max_record && len > l->max_record)
        return rt_err_set(RT_ERR_TOOBIG,
                          "record %s: %zu bytes, more than the %zu a JPEG of max_pixels %ld may "
                          "take (data.max_image_pixels)",
                          key, len, l->max_record, l->o.max_pixels);
    rc = rt_datum_decode_arena(val, len, key, &x->arena, &d);
    if (rc < 0)
        return rc;
    if (len >= RT_LOADER_RELEASE_MIN) /* the bytes now live in the arena */
        rt_db_record_done(l->db, val, len);
    *label = d.label;
    uint64_t seed = rt_rng_seed(l->o.seed, RT_RNG_AUGMENT, epoch, idx);
    rc = rt_transform_apply(x->tr, &l->spec, &d, key, seed, augment, out);
    rt_datum_release(&d);
    return rc;
}

/* ---- records that cannot be decoded ------------------------------------------------------- */

/* Whether rc is the error of a record's own bytes (it cannot be decoded), not of the machine. */
static bool s_record_error(int rc)
{
    switch (rc) {
    case RT_ERR_FORMAT:
    case RT_ERR_VERSION:
    case RT_ERR_SIZE:
    case RT_ERR_TOOBIG:
    case RT_ERR_TRUNCATED:
    case RT_ERR_CHECKSUM:
    case RT_ERR_SHAPE:
        return true;
    default:
        return false;
    }
}

/* Position of idx in the sorted bad list, or where it would go (under mu). */
static size_t s_bad_pos(const struct rt_loader *l, uint32_t idx)
{
    size_t lo = 0, hi = l->n_bad;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->bad[mid] < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool s_is_bad(struct rt_loader *l, size_t idx)
{
    if (__atomic_load_n(&l->n_bad, __ATOMIC_ACQUIRE) == 0)
        return false;
    pthread_mutex_lock(&l->mu);
    size_t p = s_bad_pos(l, (uint32_t)idx);
    bool bad = p < l->n_bad && l->bad[p] == idx;
    pthread_mutex_unlock(&l->mu);
    return bad;
}

/* Record idx failed with rc (rt_err_msg() holds why): counts it as skipped and warns, or returns
 * rc with the reason when opts.max_bad records are skipped already. */
static int s_add_bad(struct rt_loader *l, size_t idx, int rc)
{
    char why[S_ERR_MAX], key[RT_DB_KEY_MAX];
    snprintf(why, sizeof why, "%s", rt_err_msg());
    rt_db_key(l->db, idx, key, sizeof key);
    pthread_mutex_lock(&l->mu);
    size_t p = s_bad_pos(l, (uint32_t)idx);
    if (p < l->n_bad && l->bad[p] == idx) { /* another thread found it first */
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    if (l->n_bad >= l->o.max_bad) {
        size_t n = l->n_bad;
        pthread_mutex_unlock(&l->mu);
        return rt_err_set(rc,
                          "%s (%s: %zu undecodable records skipped already, data.skip_bad_records "
                          "%zu)",
                          why, rt_db_path(l->db), n, l->o.max_bad);
    }
    memmove(l->bad + p + 1, l->bad + p, (l->n_bad - p) * sizeof *l->bad);
    l->bad[p] = (uint32_t)idx;
    __atomic_store_n(&l->n_bad, l->n_bad + 1, __ATOMIC_RELEASE);
    size_t n = l->n_bad;
    pthread_mutex_unlock(&l->mu);
    char what[S_ERR_MAX + RT_DB_KEY_MAX + 16];
    if (strstr(why, key))
        snprintf(what, sizeof what, "%s", why);
    else
        snprintf(what, sizeof what, "record %s: %s", key, why);
    RT_WARN("loader",
            "%s: %s; skipped (%zu of data.skip_bad_records %zu): its samples come from the next "
            "record in key order that decodes",
            rt_db_path(l->db), what, n, l->o.max_bad);
    return 0;
}

/* Sample idx into out, or, where its record cannot be decoded and opts.max_bad allows, the next
 * record in key order that can; *used is the record loaded. */
static int s_sample_or_next(struct s_ctx *x, size_t idx, uint64_t epoch, bool augment, float *out,
                            int32_t *label, uint32_t *used)
{
    struct rt_loader *l = x->l;
    size_t j = idx;
    for (size_t t = 0; t < l->n; t++, j = j + 1 < l->n ? j + 1 : 0) {
        if (s_is_bad(l, j))
            continue;
        int rc = s_sample(x, j, epoch, augment, out, label);
        if (rc < 0 && s_record_error(rc) && !l->o.max_bad) {
            char why[S_ERR_MAX];
            snprintf(why, sizeof why, "%s", rt_err_msg());
            return rt_err_set(rc, "%s (data.skip_bad_records > 0 would skip it)", why);
        }
        if (rc >= 0 || !s_record_error(rc)) {
            *used = (uint32_t)j;
            return rc;
        }
        if ((rc = s_add_bad(l, j, rc)) < 0)
            return rc;
    }
    return rt_err_set(RT_ERR_FORMAT, "%s: no record can be decoded", rt_db_path(l->db));
}

size_t rt_loader_bad_records(rt_loader_t *l)
{
    return __atomic_load_n(&l->n_bad, __ATOMIC_ACQUIRE);
}

/* ---- permutation -------------------------------------------------------------------------- */

/* The permutation of epoch (computed on first use; the last two are cached). Caller thread. */
static const uint32_t *s_perm(struct rt_loader *l, uint64_t epoch)
{
    for (int i = 0; i < 2; i++)
        if (l->perms[i].perm && l->perms[i].epoch == epoch)
            return l->perms[i].perm;
    struct s_perm *p = &l->perms[l->perm_next];
    l->perm_next ^= 1;
    if (!p->perm && !(p->perm = malloc(l->n * sizeof *p->perm)))
        return NULL;
    p->epoch = epoch;
    uint64_t st = rt_rng_seed(l->o.seed, RT_RNG_PERMUTATION, epoch, 0);
    for (size_t i = 0; i < l->n; i++)
        p->perm[i] = (uint32_t)i;
    for (size_t i = l->n - 1; i > 0; i--) { /* Fisher-Yates */
        size_t j = (size_t)(rt_rng_next(&st) % (uint64_t)(i + 1));
        uint32_t t = p->perm[i];
        p->perm[i] = p->perm[j];
        p->perm[j] = t;
    }
    return p->perm;
}

size_t rt_loader_perm_index(rt_loader_t *l, uint64_t epoch, size_t pos)
{
    RT_ASSERT(pos < l->n);
    const uint32_t *p = s_perm(l, epoch);
    RT_ASSERT(p != NULL);
    return p[pos];
}

/* ---- work queue --------------------------------------------------------------------------- */

/* Process samples [lo, hi) of slot s; returns 0 or the first error. */
static int s_work(struct s_ctx *x, struct s_slot *s, size_t lo, size_t hi)
{
    const struct rt_loader *l = x->l;
    for (size_t i = lo; i < hi; i++) {
        int rc = s_sample_or_next(x, s->index[i], s->req.epoch, s->req.augment,
                                  s->req.x + i * l->sample, s->req.y + i, &s->index[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Under mu: claim a chunk of the oldest unfinished request. */
static bool s_claim(struct rt_loader *l, struct s_slot **slot, size_t *lo, size_t *hi)
{
    size_t chunk = l->kind == RT_DATUM_ENCODED ? S_CHUNK_ENC : S_CHUNK_RAW;
    for (uint64_t q = l->wait_seq; q < l->submit_seq; q++) {
        struct s_slot *s = &l->slots[q % (uint64_t)l->o.queue_depth];
        if (s->state != S_QUEUED || s->next >= s->req.count)
            continue;
        *slot = s;
        *lo = s->next;
        *hi = s->next + chunk < s->req.count ? s->next + chunk : s->req.count;
        s->next = *hi;
        return true;
    }
    return false;
}

/* Under mu: account a finished chunk of n samples. After a failure nothing more of the request
 * is handed out, and the samples never claimed count as done, so `done` reaches `count` exactly
 * when no thread still writes into the request's buffers. */
static void s_finish(struct s_slot *s, size_t n, int rc)
{
    s->done += n;
    if (rc < 0 && !s->err) {
        s->err = rc;
        snprintf(s->err_msg, sizeof s->err_msg, "%s", rt_err_msg());
        s->done += s->req.count - s->next;
        s->next = s->req.count;
    }
}

static void *s_thread(void *arg)
{
    struct s_ctx *x = arg;
    struct rt_loader *l = x->l;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        struct s_slot *s = NULL;
        size_t lo = 0, hi = 0;
        while (!l->stop && !s_claim(l, &s, &lo, &hi))
            pthread_cond_wait(&l->work_cv, &l->mu);
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        int rc = s_work(x, s, lo, hi);
        pthread_mutex_lock(&l->mu);
        s_finish(s, hi - lo, rc);
        pthread_cond_broadcast(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* ---- life cycle --------------------------------------------------------------------------- */

static int s_ctx_init(struct s_ctx *x, struct rt_loader *l)
{
    memset(x, 0, sizeof *x);
    x->l = l;
    if (!(x->tr = rt_transform_new()))
        return rt_err_set(RT_ERR_NOMEM, "cannot start a JPEG decoder");
    return 0;
}

static void s_ctx_free(struct s_ctx *x)
{
    rt_transform_destroy(&x->tr);
    rt_datum_arena_free(&x->arena);
}

static int s_check_opts(const struct rt_loader_opts *o)
{
    if (o->threads < 0 || o->threads > RT_LOADER_MAX_THREADS)
        return rt_err_set(RT_ERR_CONFIG, "loader threads %d outside 0..%d", o->threads,
                          RT_LOADER_MAX_THREADS);
    if (o->queue_depth < 1 || o->queue_depth > RT_LOADER_MAX_QUEUE)
        return rt_err_set(RT_ERR_CONFIG, "loader queue depth %d outside 1..%d", o->queue_depth,
                          RT_LOADER_MAX_QUEUE);
    if (o->out_height < 0 || o->out_width < 0 || o->out_height > RT_DATUM_MAX_SIDE ||
        o->out_width > RT_DATUM_MAX_SIDE || (!o->out_height) != (!o->out_width))
        return rt_err_set(RT_ERR_CONFIG, "loader output size %dx%d invalid", o->out_height,
                          o->out_width);
    if (o->crop_pad < 0 || o->crop_pad > RT_DATUM_MAX_SIDE)
        return rt_err_set(RT_ERR_CONFIG, "crop padding %d invalid", o->crop_pad);
    if (!(o->rrc_scale[0] > 0 && o->rrc_scale[0] <= o->rrc_scale[1] && o->rrc_scale[1] <= 1))
        return rt_err_set(RT_ERR_CONFIG, "random-resized crop scale (%g, %g) invalid",
                          o->rrc_scale[0], o->rrc_scale[1]);
    if (!(o->rrc_ratio[0] > 0 && o->rrc_ratio[0] <= o->rrc_ratio[1]))
        return rt_err_set(RT_ERR_CONFIG, "random-resized crop ratio (%g, %g) invalid",
                          o->rrc_ratio[0], o->rrc_ratio[1]);
    if (!(o->eval_crop > 0 && o->eval_crop <= 1))
        return rt_err_set(RT_ERR_CONFIG, "eval crop %g outside (0, 1]", o->eval_crop);
    if (o->eval_resize < 0 || o->eval_resize > RT_DATUM_MAX_SIDE ||
        (o->eval_resize &&
         o->eval_resize < (o->out_height > o->out_width ? o->out_height : o->out_width)))
        return rt_err_set(RT_ERR_CONFIG,
                          "eval resize %d must be 0 or at least the output size %dx%d",
                          o->eval_resize, o->out_height, o->out_width);
    if (o->channels != 0 && o->channels != 1 && o->channels != 3)
        return rt_err_set(RT_ERR_CONFIG, "loader channels %d: 0 (the records'), 1 or 3",
                          o->channels);
    if (o->max_pixels < 1)
        return rt_err_set(RT_ERR_CONFIG, "loader max_pixels %ld must be > 0", o->max_pixels);
    for (int i = 0; o->normalize && i < 4; i++)
        if (!(o->std[i] > 0))
            return rt_err_set(RT_ERR_CONFIG, "normalisation std[%d] = %g must be > 0", i,
                              o->std[i]);
    return 0;
}

/* The transform spec from the options and the first record's shape (already in l->spec). */
static int s_spec_init(struct rt_loader *l, const struct rt_loader_opts *opts, const char *dir)
{
    struct rt_transform_spec *sp = &l->spec;
    if (opts->channels && opts->channels != sp->channels) {
        if (l->kind != RT_DATUM_ENCODED)
            return rt_err_set(RT_ERR_CONFIG,
                              "%s: records of %d channels; %d channels need JPEG records", dir,
                              sp->channels, opts->channels);
        sp->channels = opts->channels;
    }
    sp->height = opts->out_height ? opts->out_height : sp->rec_height;
    sp->width = opts->out_width ? opts->out_width : sp->rec_width;
    sp->crop_pad = opts->crop_pad;
    sp->flip = opts->flip;
    sp->rrc = opts->rrc;
    memcpy(sp->rrc_scale, opts->rrc_scale, sizeof sp->rrc_scale);
    memcpy(sp->rrc_ratio, opts->rrc_ratio, sizeof sp->rrc_ratio);
    sp->eval_crop = opts->eval_crop;
    sp->eval_resize = opts->eval_resize;
    sp->max_pixels = opts->max_pixels;
    sp->dct_scale = opts->dct_scale;
    sp->raw_bgr = opts->raw_bgr;
    for (int ch = 0; ch < 4; ch++) {
        float scale = l->kind == RT_DATUM_FLOAT ? 1.0f : 1.0f / 255.0f;
        float mean = opts->normalize ? opts->mean[ch] : 0.0f;
        float sd = opts->normalize ? opts->std[ch] : 1.0f;
        sp->a[ch] = scale / sd;
        sp->b[ch] = -mean / sd;
        /* torchvision: ToTensor's p / 255, then Normalize's (x - mean) / std, in float32 */
        for (int p = 0; p < 256; p++)
            sp->lut[ch][p] = ((float)p / 255.0f - mean) / sd;
    }
    sp->use_lut = opts->normalize && l->kind != RT_DATUM_FLOAT;
    if (l->kind == RT_DATUM_ENCODED)
        l->max_record = (size_t)S_JPEG_RECORD_BPP * (size_t)opts->max_pixels;
    return 0;
}

/* What the loader holds at most: the queue's loader-owned buffers, and per decoding context
 * (prefetch threads and the caller's) the buffers of the largest image it accepts. Logged. */
static void s_memory_bound(struct rt_loader *l, const char *dir)
{
    const struct rt_transform_spec *sp = &l->spec;
    size_t c = (size_t)sp->channels, H = (size_t)sp->height, W = (size_t)sp->width;
    size_t batch = l->o.max_batch * (l->sample * sizeof(float) + sizeof(int32_t)) +
                   l->o.max_batch * sizeof(uint32_t); /* outputs, labels, indices */
    size_t queue = (size_t)l->o.queue_depth * batch;
    size_t img = 0, side = 0, record;
    if (l->kind == RT_DATUM_ENCODED) {
        size_t px = (size_t)l->o.max_pixels;
        side = px < RT_DATUM_MAX_SIDE ? px : RT_DATUM_MAX_SIDE;
        /* the decoded image, libjpeg's buffers, the region decoder's row (4 bytes a pixel for
         * CMYK), the record in the arena and in the map */
        img = c * px + S_JPEG_WORK_BPP * px + 4 * side;
        record = 2 * l->max_record;
    } else {
        side = (size_t)(sp->rec_height > sp->rec_width ? sp->rec_height : sp->rec_width);
        record = c * (size_t)sp->rec_height * (size_t)sp->rec_width * sizeof(float) + 4096;
    }
    size_t per_ctx = img + record + c * H * W +
                     rt_image_scratch_bound((int)side, (int)side, (int)c, (int)W, (int)H) +
                     S_THREAD_FIXED;
    size_t ctxs = (size_t)l->o.threads + 1;
    l->mem_bound = queue + ctxs * per_ctx;
    RT_INFO("loader",
            "%s: memory bound %.1f MiB = queue %d x batch %zu x %.1f KiB + %zu decoders x %.1f "
            "MiB (%s)",
            dir, l->mem_bound / S_MIB, l->o.queue_depth, l->o.max_batch,
            (double)batch / (double)l->o.max_batch / 1024.0, ctxs, per_ctx / S_MIB,
            l->kind == RT_DATUM_ENCODED ? "JPEGs up to data.max_image_pixels" : "fixed records");
}

size_t rt_loader_memory_bound(const rt_loader_t *l)
{
    return l->mem_bound;
}

int rt_loader_new(const char *dir, const struct rt_loader_opts *opts, rt_loader_t **out)
{
    int rc;
    *out = NULL;
    if ((rc = s_check_opts(opts)) < 0)
        return rc;
    rt_loader_t *l = calloc(1, sizeof *l);
    if (!l)
        return rt_err_set(RT_ERR_NOMEM, "out of memory");
    l->o = *opts;
    if ((rc = s_ctx_init(&l->caller, l)) < 0)
        goto out_destroy;
    if ((rc = rt_db_open(dir, &l->db)) < 0)
        goto out_destroy;
    l->n = rt_db_count(l->db);
    if (l->n == 0 || l->n > UINT32_MAX) {
        rc = rt_err_set(RT_ERR_FORMAT, "%s: %zu records (need 1 .. 2^32-1)", dir, l->n);
        goto out_destroy;
    }
    if (l->o.max_bad &&
        !(l->bad = malloc((l->o.max_bad < l->n ? l->o.max_bad : l->n) * sizeof *l->bad))) {
        rc = rt_err_set(RT_ERR_NOMEM, "out of memory");
        goto out_destroy;
    }
    /* the first record fixes the kind and shape */
    const void *val;
    size_t len;
    char key[RT_DB_KEY_MAX];
    struct rt_datum d;
    rt_db_key(l->db, 0, key, sizeof key);
    if ((rc = rt_db_record(l->db, 0, &val, &len)) < 0 ||
        (rc = rt_datum_decode(val, len, key, &d)) < 0)
        goto out_destroy;
    l->kind = d.kind;
    struct rt_transform_spec *sp = &l->spec;
    rc = rt_transform_shape(l->caller.tr, &d, key, &sp->channels, &sp->rec_height, &sp->rec_width);
    rt_datum_release(&d);
    if (rc < 0)
        goto out_destroy;
    if ((rc = s_spec_init(l, opts, dir)) < 0)
        goto out_destroy;
    l->sample = (size_t)sp->channels * sp->height * sp->width;
    s_memory_bound(l, dir);
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        rc = rt_err_set(RT_ERR_NOMEM, "pthread_mutex_init failed");
        goto out_destroy;
    }
    if (pthread_cond_init(&l->work_cv, NULL) != 0) {
        pthread_mutex_destroy(&l->mu);
        rc = rt_err_set(RT_ERR_NOMEM, "pthread_cond_init failed");
        goto out_destroy;
    }
    if (pthread_cond_init(&l->done_cv, NULL) != 0) {
        pthread_cond_destroy(&l->work_cv);
        pthread_mutex_destroy(&l->mu);
        rc = rt_err_set(RT_ERR_NOMEM, "pthread_cond_init failed");
        goto out_destroy;
    }
    l->sync_ok = true;
    if (opts->threads > 0 && !(l->ctx = calloc((size_t)opts->threads, sizeof *l->ctx))) {
        rc = rt_err_set(RT_ERR_NOMEM, "out of memory");
        goto out_destroy;
    }
    for (int i = 0; i < opts->threads; i++) {
        if ((rc = s_ctx_init(&l->ctx[i], l)) < 0)
            goto out_destroy;
        if (pthread_create(&l->ctx[i].tid, NULL, s_thread, &l->ctx[i]) != 0) {
            s_ctx_free(&l->ctx[i]);
            rc = rt_err_set(RT_ERR_NOMEM, "cannot start loader thread %d", i);
            goto out_destroy;
        }
        l->nthreads++;
    }
    *out = l;
    return 0;

out_destroy:
    rt_loader_destroy(&l);
    return rc;
}

void rt_loader_destroy(rt_loader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_loader_t *l = *self_p;
    if (l->sync_ok) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->work_cv);
        pthread_mutex_unlock(&l->mu);
        for (int i = 0; i < l->nthreads; i++) {
            pthread_join(l->ctx[i].tid, NULL);
            s_ctx_free(&l->ctx[i]);
        }
        pthread_cond_destroy(&l->done_cv);
        pthread_cond_destroy(&l->work_cv);
        pthread_mutex_destroy(&l->mu);
    }
    free(l->ctx);
    for (int i = 0; i < RT_LOADER_MAX_QUEUE; i++) {
        free(l->slots[i].index);
        free(l->slots[i].own_x);
        free(l->slots[i].own_y);
    }
    free(l->perms[0].perm);
    free(l->perms[1].perm);
    free(l->bad);
    s_ctx_free(&l->caller);
    rt_db_destroy(&l->db);
    free(l);
    *self_p = NULL;
}

size_t rt_loader_count(const rt_loader_t *l)
{
    return l->n;
}

int rt_loader_can_prefetch(const rt_loader_t *l, size_t count)
{
    return l->nthreads > 0 && count <= l->o.max_batch;
}

void rt_loader_shape(const rt_loader_t *l, int *c, int *h, int *w)
{
    *c = l->spec.channels;
    *h = l->spec.height;
    *w = l->spec.width;
}

int rt_loader_submit(rt_loader_t *l, const struct rt_loader_req *req)
{
    if (req->start > l->n || req->count > l->n - req->start)
        return rt_err_set(RT_ERR_ARG, "%s: positions [%zu, %zu) leave the epoch of %zu samples",
                          rt_db_path(l->db), req->start, req->start + req->count, l->n);
    if ((!req->x || !req->y) && req->count > l->o.max_batch)
        return rt_err_set(RT_ERR_ARG,
                          "request of %zu samples exceeds max_batch %zu of the "
                          "loader-owned buffers",
                          req->count, l->o.max_batch);
    struct s_slot *s = &l->slots[l->submit_seq % (uint64_t)l->o.queue_depth];
    pthread_mutex_lock(&l->mu);
    bool busy = s->state != S_FREE;
    pthread_mutex_unlock(&l->mu);
    if (busy)
        return rt_err_set(RT_ERR_STATE, "loader queue full (%d requests in flight)",
                          l->o.queue_depth);
    /* the slot is FREE: no thread touches it, so it can be filled without the lock */
    const uint32_t *perm = req->in_order ? NULL : s_perm(l, req->epoch);
    if (!req->in_order && !perm)
        return rt_err_set(RT_ERR_NOMEM, "no memory for the permutation of %zu samples", l->n);
    if (req->count > s->index_cap) {
        uint32_t *ix = realloc(s->index, req->count * sizeof *ix);
        if (!ix)
            return rt_err_set(RT_ERR_NOMEM, "no memory for %zu indices", req->count);
        s->index = ix;
        s->index_cap = req->count;
    }
    /* loader-owned buffers: allocated once per slot, at the first request that needs them */
    size_t xbytes = l->o.max_batch * l->sample * sizeof(float);
    if ((!req->x && !s->own_x && !(s->own_x = malloc(xbytes ? xbytes : 1))) ||
        (!req->y && !s->own_y && !(s->own_y = malloc(l->o.max_batch * sizeof(int32_t) + 1))))
        return rt_err_set(RT_ERR_NOMEM, "no memory for a batch buffer of %zu samples",
                          l->o.max_batch);
    if (req->in_order)
        for (size_t i = 0; i < req->count; i++)
            s->index[i] = (uint32_t)(req->start + i);
    else if (req->count > 0)
        memcpy(s->index, perm + req->start, req->count * sizeof *s->index);
    s->req = *req;
    if (!s->req.x)
        s->req.x = s->own_x;
    if (!s->req.y)
        s->req.y = s->own_y;
    s->next = 0;
    s->done = 0;
    s->err = 0;
    s->err_msg[0] = '\0';
    pthread_mutex_lock(&l->mu);
    s->state = S_QUEUED;
    l->submit_seq++;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int rt_loader_wait(rt_loader_t *l, struct rt_loader_batch *out)
{
    memset(out, 0, sizeof *out);
    out->slot_ = -1;
    pthread_mutex_lock(&l->mu);
    if (l->wait_seq == l->submit_seq) {
        pthread_mutex_unlock(&l->mu);
        return rt_err_set(RT_ERR_STATE, "rt_loader_wait: nothing submitted");
    }
    int idx = (int)(l->wait_seq % (uint64_t)l->o.queue_depth);
    struct s_slot *s = &l->slots[idx];
    if (l->nthreads == 0) { /* synchronous: do the work here */
        size_t lo, hi;
        struct s_slot *c;
        while (s->next < s->req.count && s_claim(l, &c, &lo, &hi)) {
            pthread_mutex_unlock(&l->mu);
            int rc = s_work(&l->caller, c, lo, hi);
            pthread_mutex_lock(&l->mu);
            s_finish(c, hi - lo, rc);
        }
    }
    while (s->done < s->req.count)
        pthread_cond_wait(&l->done_cv, &l->mu);
    l->wait_seq++;
    int err = s->err;
    s->state = err ? S_FREE : S_HANDED;
    pthread_mutex_unlock(&l->mu);
    if (err)
        return rt_err_set(err, "%s", s->err_msg);
    out->epoch = s->req.epoch;
    out->start = s->req.start;
    out->count = s->req.count;
    out->x = s->req.x;
    out->y = s->req.y;
    out->index = s->index;
    out->slot_ = idx;
    return 0;
}

void rt_loader_release(rt_loader_t *l, struct rt_loader_batch *b)
{
    if (!b || b->slot_ < 0)
        return;
    pthread_mutex_lock(&l->mu);
    RT_ASSERT(l->slots[b->slot_].state == S_HANDED);
    l->slots[b->slot_].state = S_FREE;
    pthread_mutex_unlock(&l->mu);
    b->slot_ = -1;
}

int rt_loader_read(rt_loader_t *l, size_t first, size_t n, float *x, int32_t *y)
{
    if (first > l->n || n > l->n - first)
        return rt_err_set(RT_ERR_ARG, "%s: records [%zu, %zu) outside the %zu records",
                          rt_db_path(l->db), first, first + n, l->n);
    for (size_t i = 0; i < n; i++) {
        uint32_t used;
        int rc = s_sample_or_next(&l->caller, first + i, 0, false, x + i * l->sample, y + i, &used);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void rt_loader_split(size_t batch, const double *weights, int n, size_t *bounds)
{
    double total = 0.0;
    for (int r = 0; r < n; r++)
        total += weights[r] > 0 ? weights[r] : 0.0;
    /* floor shares, then hand the remainder to the largest fractional parts (ties: lower rank) */
    size_t given = 0;
    bounds[0] = 0;
    for (int r = 0; r < n; r++) {
        double wr = weights[r] > 0 ? weights[r] : 0.0;
        double exact = total > 0 ? (double)batch * wr / total : (r == 0 ? (double)batch : 0.0);
        size_t f = (size_t)floor(exact);
        bounds[r + 1] = f; /* temporarily: the share, not the bound */
        given += f;
    }
    while (given < batch) {
        int best = -1;
        double best_frac = -1.0;
        for (int r = 0; r < n; r++) {
            double wr = weights[r] > 0 ? weights[r] : 0.0;
            double exact = total > 0 ? (double)batch * wr / total : (r == 0 ? (double)batch : 0);
            double frac = exact - (double)bounds[r + 1];
            if (wr > 0 && frac > best_frac) {
                best_frac = frac;
                best = r;
            }
        }
        if (best < 0)
            best = 0;
        bounds[best + 1]++;
        given++;
    }
    for (int r = 0; r < n; r++)
        bounds[r + 1] += bounds[r];
}

size_t rt_loader_advance(const rt_loader_t *l, struct rt_loader_cursor *cur, size_t batch,
                         uint64_t *epoch, size_t *start)
{
    RT_ASSERT(batch >= 1 && cur->pos < l->n);
    size_t b = batch < l->n - cur->pos ? batch : l->n - cur->pos;
    *epoch = cur->epoch;
    *start = cur->pos;
    cur->pos += b;
    if (cur->pos == l->n) {
        cur->pos = 0;
        cur->epoch++;
    }
    return b;
}
