/*
 * convert_images: JPEG layouts of `eigenbatch convert`. Each layout becomes a list of (file,
 * label) items in a fixed order, then one loop stores them: encoded as they are, re-encoded
 * smaller (--resize-shorter, libjpeg-turbo's scaled decode then encode), or decoded, squashed
 * and stored raw in BGR order (--resize, as Caffe's convert_imageset).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "convert.h"
#include "rt_err.h"
#include "rt_image.h"
#include "rt_jpeg.h"
#include "rt_loader.h"
#include "rt_log.h"

#define S_PATH_MAX 4096
#define S_LINE_MAX 4096
#define S_SHORTER_MARGIN 2 /* --resize-shorter decodes at a scale keeping 2x the target side */

/* ---- names and items ---------------------------------------------------------------------- */

struct s_names {
    char **v; /* names, owned */
    size_t n; /* count */
    size_t cap;
};

static void s_names_free(struct s_names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int s_names_add(struct s_names *s, const char *name)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return rt_err_set(RT_ERR_NOMEM, "out of memory");
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(name)))
        return rt_err_set(RT_ERR_NOMEM, "out of memory");
    s->n++;
    return 0;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Index of name in sorted names, or -1. */
static int s_names_find(const struct s_names *s, const char *name)
{
    char *const *hit = bsearch(&name, s->v, s->n, sizeof *s->v, s_cmp_str);
    return hit ? (int)(hit - s->v) : -1;
}

static bool s_is_jpeg_name(const char *n)
{
    const char *dot = strrchr(n, '.');
    return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Sorted entries of dir: subdirectories (dirs = true) or JPEG files. */
static int s_list(const char *dir, bool dirs, struct s_names *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d)
        return rt_err_set(RT_ERR_IO, "%s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    char p[S_PATH_MAX];
    while (!rc && (e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' ||
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p || stat(p, &st) != 0)
            continue;
        if (dirs ? S_ISDIR(st.st_mode) : (S_ISREG(st.st_mode) && s_is_jpeg_name(e->d_name)))
            rc = s_names_add(out, e->d_name);
    }
    closedir(d);
    if (rc < 0)
        s_names_free(out);
    else if (out->n)
        qsort(out->v, out->n, sizeof *out->v, s_cmp_str);
    return rc;
}

/* The files to store, in order, with their labels. */
struct s_items {
    struct s_names path; /* file paths */
    int *label;          /* path.n labels */
    size_t lcap;         /* capacity of label */
};

static void s_items_free(struct s_items *it)
{
    s_names_free(&it->path);
    free(it->label);
    memset(it, 0, sizeof *it);
}

/* Append dir/name with label. */
static int s_items_add(struct s_items *it, const char *dir, const char *name, int label)
{
    char p[S_PATH_MAX];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p)
        return rt_err_set(RT_ERR_ARG, "%s/%s: path too long", dir, name);
    if (it->path.n == it->lcap) {
        size_t cap = it->lcap ? 2 * it->lcap : 64;
        int *l = realloc(it->label, cap * sizeof *l);
        if (!l)
            return rt_err_set(RT_ERR_NOMEM, "out of memory");
        it->label = l;
        it->lcap = cap;
    }
    it->label[it->path.n] = label;
    return s_names_add(&it->path, p);
}

/* Every JPEG of dir (sorted) with label. */
static int s_items_add_dir(struct s_items *it, const char *dir, int label)
{
    struct s_names f;
    int rc = s_list(dir, false, &f);
    for (size_t i = 0; !rc && i < f.n; i++)
        rc = s_items_add(it, dir, f.v[i], label);
    s_names_free(&f);
    return rc;
}

/* ---- layouts ------------------------------------------------------------------------------ */

/* imagefolder: ROOT/CLASS/NAME.jpg, classes numbered in name order. */
static int s_layout_folder(const char *root, struct s_items *it)
{
    struct s_names classes;
    char p[S_PATH_MAX];
    int rc = s_list(root, true, &classes);
    if (!rc && classes.n == 0)
        rc = rt_err_set(RT_ERR_NOTFOUND, "%s: no class subfolders", root);
    for (size_t c = 0; !rc && c < classes.n; c++) {
        if (snprintf(p, sizeof p, "%s/%s", root, classes.v[c]) >= (int)sizeof p)
            rc = rt_err_set(RT_ERR_ARG, "%s/%s: path too long", root, classes.v[c]);
        else
            rc = s_items_add_dir(it, p, (int)c);
    }
    s_names_free(&classes);
    return rc;
}

/* A label: a decimal integer, or a word numbered by its place in sorted `words`. */
static int s_label(const char *tok, const struct s_names *words, const char *where, int *out)
{
    char *end;
    long v = strtol(tok, &end, 10);
    if (end != tok && !*end && v >= 0 && v <= INT32_MAX) {
        *out = (int)v;
        return 0;
    }
    int k = words ? s_names_find(words, tok) : -1;
    if (k < 0)
        return rt_err_set(RT_ERR_FORMAT, "%s: label '%s' is not a class", where, tok);
    *out = k;
    return 0;
}

static bool s_is_int(const char *t)
{
    char *end;
    strtol(t, &end, 10);
    return end != t && !*end;
}

/* The lines of a label file, split in at most two whitespace-separated tokens per line; blank
 * lines are skipped. tok2 entries are "" on one-token lines. */
struct s_lines {
    struct s_names tok1;  /* first tokens */
    struct s_names tok2;  /* second tokens ("" when absent) */
    struct s_names words; /* distinct non-numeric second tokens, sorted */
};

static void s_lines_free(struct s_lines *l)
{
    s_names_free(&l->tok1);
    s_names_free(&l->tok2);
    s_names_free(&l->words);
}

static int s_read_lines(const char *path, struct s_lines *l)
{
    memset(l, 0, sizeof *l);
    FILE *f = fopen(path, "r");
    if (!f)
        return rt_err_set(RT_ERR_IO, "%s: %s", path, strerror(errno));
    char line[S_LINE_MAX], a[S_LINE_MAX], b[S_LINE_MAX];
    int rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        int n = sscanf(line, "%4095s %4095s", a, b);
        if (n < 1)
            continue;
        rc = s_names_add(&l->tok1, a);
        if (!rc)
            rc = s_names_add(&l->tok2, n == 2 ? b : "");
        if (!rc && n == 2 && !s_is_int(b))
            rc = s_names_add(&l->words, b);
    }
    fclose(f);
    if (!rc && l->words.n) { /* sort, drop duplicates */
        qsort(l->words.v, l->words.n, sizeof *l->words.v, s_cmp_str);
        size_t k = 0;
        for (size_t i = 0; i < l->words.n; i++) {
            if (k && !strcmp(l->words.v[k - 1], l->words.v[i]))
                free(l->words.v[i]);
            else
                l->words.v[k++] = l->words.v[i];
        }
        l->words.n = k;
    }
    if (rc < 0)
        s_lines_free(l);
    return rc;
}

/* imagenet-val: a flat folder of JPEGs and a label file, either "FILE LABEL" lines (records in
 * the file's line order) or one LABEL per line for the folder's files in name order. A LABEL is
 * an integer, or a word (a WordNet id): words are numbered in sorted order, as imagefolder numbers
 * the class folders of the training set. */
static int s_layout_val(const char *dir, const char *labels, struct s_items *it)
{
    if (!labels)
        return rt_err_set(RT_ERR_ARG, "imagenet-val needs --labels FILE");
    struct s_lines l;
    struct s_names files = {0};
    char where[S_PATH_MAX + 32];
    int rc = s_read_lines(labels, &l);
    if (rc)
        return rc;
    bool pairs = l.tok1.n && l.tok2.v[0][0];
    if (!pairs && !(rc = s_list(dir, false, &files)) && files.n != l.tok1.n)
        rc = rt_err_set(RT_ERR_SIZE, "%s: %zu labels for the %zu JPEGs of %s", labels, l.tok1.n,
                        files.n, dir);
    for (size_t i = 0; !rc && i < l.tok1.n; i++) {
        snprintf(where, sizeof where, "%s:%zu", labels, i + 1);
        int lab = 0;
        if (pairs && !l.tok2.v[i][0])
            rc = rt_err_set(RT_ERR_FORMAT, "%s: expected 'FILE LABEL'", where);
        if (!rc)
            rc = s_label(pairs ? l.tok2.v[i] : l.tok1.v[i], &l.words, where, &lab);
        if (!rc)
            rc = s_items_add(it, dir, pairs ? l.tok1.v[i] : files.v[i], lab);
    }
    s_names_free(&files);
    s_lines_free(&l);
    return rc;
}

/* tinyimagenet: ROOT/wnids.txt, ROOT/train/WNID/images/NAME.JPEG, ROOT/val/images/NAME.JPEG with
 * ROOT/val/val_annotations.txt ("FILE<tab>WNID<tab>box"). Classes: the wnids in sorted order. */
static int s_layout_tiny(const char *root, const char *split, struct s_items *it)
{
    char p[S_PATH_MAX], where[S_PATH_MAX + 32];
    struct s_lines wn, ann;
    snprintf(p, sizeof p, "%s/wnids.txt", root);
    int rc = s_read_lines(p, &wn);
    if (rc)
        return rc;
    qsort(wn.tok1.v, wn.tok1.n, sizeof *wn.tok1.v, s_cmp_str);
    if (!wn.tok1.n)
        rc = rt_err_set(RT_ERR_FORMAT, "%s: no wnids", p);
    if (!strcmp(split, "train")) {
        for (size_t c = 0; !rc && c < wn.tok1.n; c++) {
            snprintf(p, sizeof p, "%s/train/%s/images", root, wn.tok1.v[c]);
            rc = s_items_add_dir(it, p, (int)c);
        }
        s_lines_free(&wn);
        return rc;
    }
    snprintf(p, sizeof p, "%s/val/val_annotations.txt", root);
    if (!rc && !(rc = s_read_lines(p, &ann))) {
        char dir[S_PATH_MAX];
        snprintf(dir, sizeof dir, "%s/val/images", root);
        for (size_t i = 0; !rc && i < ann.tok1.n; i++) {
            int lab = s_names_find(&wn.tok1, ann.tok2.v[i]);
            snprintf(where, sizeof where, "%s:%zu", p, i + 1);
            if (lab < 0)
                rc =
                    rt_err_set(RT_ERR_FORMAT, "%s: '%s' is not in wnids.txt", where, ann.tok2.v[i]);
            else
                rc = s_items_add(it, dir, ann.tok1.v[i], lab);
        }
        s_lines_free(&ann);
    }
    s_lines_free(&wn);
    return rc;
}

/* ---- storing ------------------------------------------------------------------------------ */

/* --verify refuses larger JPEGs rather than decode them */
#define S_VERIFY_MAX_PIXELS (1ull << 30)

/* Working memory of the store loop. */
struct s_work {
    rt_jpeg_t *jpeg;                 /* codec */
    uint8_t *file, *img, *rsz, *chw; /* file bytes, decoded, resized, planar */
    size_t fcap, icap, rcap, ccap;   /* their sizes */
    struct rt_image_scratch scratch; /* resampler */
};

static int s_grow(uint8_t **b, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    free(*b);
    *cap = 0;
    if (!(*b = malloc(n)))
        return rt_err_set(RT_ERR_NOMEM, "no memory for %zu bytes", n);
    *cap = n;
    return 0;
}

/* Read a whole file into w->file. */
static int s_read_file(struct s_work *w, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return rt_err_set(RT_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0)
        rc = rt_err_set(RT_ERR_IO, "%s: empty or unreadable", path);
    if (!rc)
        rc = s_grow(&w->file, &w->fcap, (size_t)st.st_size);
    if (!rc && fread(w->file, 1, (size_t)st.st_size, f) != (size_t)st.st_size)
        rc = rt_err_set(RT_ERR_IO, "%s: short read", path);
    *len = rc ? 0 : (size_t)st.st_size;
    fclose(f);
    return rc;
}

/* Decode the file (w x h, c channels) at the largest DCT scale that keeps both sides at least
 * min_w x min_h, into w->img; *sw, *sh get the decoded size. bgr: BGR order. */
static int s_decode(struct s_work *k, const char *path, size_t len, int w, int h, int c, int min_w,
                    int min_h, int bgr, int *sw, int *sh)
{
    int d = 8;
    for (; d > 1; d /= 2) {
        rt_jpeg_scaled_size(w, h, d, sw, sh);
        if (*sw >= min_w && *sh >= min_h)
            break;
    }
    rt_jpeg_scaled_size(w, h, d, sw, sh);
    int rc = s_grow(&k->img, &k->icap, (size_t)*sw * *sh * c);
    return rc ? rc : rt_jpeg_decode(k->jpeg, k->file, len, path, d, c, bgr, k->img);
}

/* --resize-shorter: the image re-encoded with its shorter side `n` (when it is longer). */
static int s_shorter(struct s_work *k, const char *path, size_t len, int *w, int *h, int c,
                     const struct convert_image_opts *io, struct rt_datum *d)
{
    int n = io->shorter, sw, sh, rc;
    int nw = *w <= *h ? n : (int)((double)n * *w / *h + 0.5);
    int nh = *w <= *h ? (int)((double)n * *h / *w + 0.5) : n;
    if ((rc = s_decode(k, path, len, *w, *h, c, S_SHORTER_MARGIN * nw, S_SHORTER_MARGIN * nh, 0,
                       &sw, &sh)) < 0 ||
        (rc = s_grow(&k->rsz, &k->rcap, (size_t)nw * nh * c)) < 0 ||
        (rc = rt_image_resize(k->img, sw, sh, (size_t)sw * c, c, 0, 0, (float)sw, (float)sh, k->rsz,
                              nw, nh, (size_t)nw * c, &k->scratch)) < 0)
        return rc;
    const uint8_t *out;
    size_t olen;
    if ((rc = rt_jpeg_encode(k->jpeg, k->rsz, nw, nh, c, io->quality, &out, &olen)) < 0)
        return rt_err_set(rc, "%s: %s", path, rt_err_msg());
    d->data = out;
    d->data_len = olen;
    *w = nw;
    *h = nh;
    return 0;
}

/* --resize WxH: decoded, squashed, stored raw CHW in BGR order like Caffe. */
static int s_raw(struct s_work *k, const char *path, size_t len, int w, int h,
                 const struct convert_image_opts *io, struct rt_datum *d)
{
    int rw = io->resize_w, rh = io->resize_h, sw, sh, rc;
    size_t plane = (size_t)rw * rh;
    /* full-scale decode, as this layout always did (the stored pixels stay the same) */
    if ((rc = s_decode(k, path, len, w, h, 3, w, h, 1, &sw, &sh)) < 0 ||
        (rc = s_grow(&k->rsz, &k->rcap, plane * 3)) < 0 ||
        (rc = s_grow(&k->chw, &k->ccap, plane * 3)) < 0 ||
        (rc = rt_image_resize(k->img, sw, sh, (size_t)sw * 3, 3, 0, 0, (float)sw, (float)sh, k->rsz,
                              rw, rh, (size_t)rw * 3, &k->scratch)) < 0)
        return rc;
    for (size_t i = 0; i < plane; i++)
        for (int q = 0; q < 3; q++)
            k->chw[q * plane + i] = k->rsz[i * 3 + q];
    d->kind = RT_DATUM_RAW;
    d->height = rh;
    d->width = rw;
    d->data = k->chw;
    d->data_len = plane * 3;
    return 0;
}

/* A PNG under a JPEG's name: k->file becomes its re-encoded JPEG (*len its size), with a
 * warning naming it; *count counts them. Anything else is left as it is. */
static int s_png(struct s_work *k, const char *path, size_t *len,
                 const struct convert_image_opts *io, size_t *count)
{
    if (!convert_is_png(k->file, *len))
        return 0;
    const uint8_t *jp;
    size_t jl;
    int w, h, rc = convert_png_to_jpeg(k->jpeg, k->file, *len, path, io->quality, &jp, &jl, &w, &h);
    if (rc < 0 || (rc = s_grow(&k->file, &k->fcap, jl)) < 0)
        return rc;
    memcpy(k->file, jp, jl);
    *len = jl;
    (*count)++;
    RT_WARN("convert", "%s is a PNG, not a JPEG: stored re-encoded as a JPEG of quality %d (%dx%d)",
            path, io->quality, w, h);
    return 0;
}

/* Store the image at path p (label `label`): read it, check it (decoded whole at 1/8 scale with
 * --verify, which finds data cut short), transform it as io asks, put it. */
static int s_store_one(struct s_work *k, const char *p, int label,
                       const struct convert_image_opts *io, struct convert_out *o)
{
    size_t len;
    int w, h, c, rc;
    if ((rc = s_read_file(k, p, &len)) < 0 || (rc = s_png(k, p, &len, io, &o->pngs)) < 0 ||
        (rc = rt_jpeg_header(k->jpeg, k->file, len, p, &w, &h, &c)) < 0)
        return rc;
    if (io->verify && (uint64_t)w * (uint64_t)h > S_VERIFY_MAX_PIXELS)
        return rt_err_set(RT_ERR_TOOBIG, "%s: a JPEG of %dx%d is too large to verify", p, w, h);
    if (io->verify) {
        int sw, sh;
        rt_jpeg_scaled_size(w, h, 8, &sw, &sh);
        if ((rc = s_grow(&k->img, &k->icap, (size_t)sw * sh * 3)) < 0 ||
            (rc = rt_jpeg_decode(k->jpeg, k->file, len, p, 8, 3, 0, k->img)) < 0)
            return rc;
    }
    if ((long)w * h > RT_LOADER_MAX_PIXELS_DEFAULT && io->resize_w <= 0 &&
        !(io->shorter > 0 && (w < h ? w : h) > io->shorter))
        RT_WARN("convert",
                "%s: %dx%d is more than the loader accepts by default (data.max_image_pixels "
                "%ld): raise that when training on this database, or convert with "
                "--resize-shorter",
                p, w, h, RT_LOADER_MAX_PIXELS_DEFAULT);
    /* channels 3: the loader decodes every JPEG, greyscale too, to the database's channels */
    struct rt_datum d = {.kind = RT_DATUM_ENCODED, .label = label, .channels = 3};
    d.data = k->file;
    d.data_len = len;
    if (io->resize_w > 0)
        rc = s_raw(k, p, len, w, h, io, &d);
    else if (io->shorter > 0 && (w < h ? w : h) > io->shorter)
        rc = s_shorter(k, p, len, &w, &h, c, io, &d);
    if (!rc && d.kind == RT_DATUM_ENCODED) {
        d.height = h;
        d.width = w;
    }
    return rc ? rc : convert_put(o, &d);
}

/* Store every item, in order (with --skip-bad, the unreadable ones left out, each named). */
static int s_store(const struct s_items *it, const char *what, struct convert_out *o,
                   const struct convert_image_opts *io)
{
    struct s_work k = {0};
    if (!(k.jpeg = rt_jpeg_new()))
        return rt_err_set(RT_ERR_NOMEM, "cannot start the JPEG codec");
    int rc = 0;
    convert_progress_start(&o->prog, what, it->path.n);
    for (size_t i = 0; !rc && i < it->path.n; i++) {
        rc = s_store_one(&k, it->path.v[i], it->label[i], io, o);
        if ((rc == RT_ERR_FORMAT || rc == RT_ERR_TOOBIG) && io->skip_bad) {
            RT_WARN("convert", "left out: %s", rt_err_msg()); /* the message names the file */
            o->skipped++;
            rc = 0;
        }
    }
    rt_image_scratch_free(&k.scratch);
    free(k.file);
    free(k.img);
    free(k.rsz);
    free(k.chw);
    rt_jpeg_destroy(&k.jpeg);
    return rc;
}

int convert_images(const char *fmt, const char *in, const char *split, struct convert_out *o,
                   const struct convert_image_opts *io)
{
    struct s_items it = {0};
    int rc;
    if (!strcmp(fmt, "imagenet-val")) {
        rc = s_layout_val(in, io->labels, &it);
    } else if (!strcmp(fmt, "tinyimagenet")) {
        rc = s_layout_tiny(in, split, &it);
    } else {
        char root[S_PATH_MAX];
        struct stat st;
        snprintf(root, sizeof root, "%s/%s", in, split);
        if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
            snprintf(root, sizeof root, "%s", in); /* --in is the split folder itself */
        rc = s_layout_folder(root, &it);
    }
    if (!rc && it.path.n == 0)
        rc = rt_err_set(RT_ERR_NOTFOUND, "%s: no .jpg/.jpeg files", in);
    if (!rc)
        rc = s_store(&it, fmt, o, io);
    s_items_free(&it);
    return rc;
}
