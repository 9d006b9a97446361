/*
 * cmd_convert: `eigenbatch convert FORMAT --in PATH --out DIR ...` writes an LMDB database of
 * Caffe Datum records (keys %08d in source order) from Fashion-MNIST/MNIST IDX files, CIFAR-10/100
 * binary files or a folder of JPEG images (one subfolder per class).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "eb_cli.h"
#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"
#include "rt_image.h"
#include "rt_jpeg.h"

#define S_IDX_IMAGES_MAGIC 0x00000803u /* IDX: unsigned byte, 3 dimensions */
#define S_IDX_LABELS_MAGIC 0x00000801u /* IDX: unsigned byte, 1 dimension */
#define S_CIFAR_PIXELS 3072            /* 3 x 32 x 32 */
#define S_CIFAR_SIDE 32
#define S_PROGRESS_LINE_S 2.0 /* seconds between progress lines when not a terminal */
#define S_PROGRESS_BAR_S 0.1  /* seconds between bar redraws on a terminal */
#define S_BAR_WIDTH 40
#define S_PATH_MAX 4096

static volatile sig_atomic_t s_interrupted; /* SIGINT/SIGTERM seen */

static void s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

/* ---- progress display --------------------------------------------------------------------- */

struct s_progress {
    const char *what; /* label */
    size_t total;     /* records expected */
    bool tty;         /* stderr is a terminal: live bar */
    double t0;        /* start time */
    double last;      /* last display time */
};

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void s_progress_start(struct s_progress *p, const char *what, size_t total)
{
    p->what = what;
    p->total = total;
    p->tty = isatty(STDERR_FILENO);
    p->t0 = p->last = s_now();
}

static void s_progress_show(struct s_progress *p, size_t done, bool final)
{
    double t = s_now();
    if (!final && t - p->last < (p->tty ? S_PROGRESS_BAR_S : S_PROGRESS_LINE_S))
        return;
    p->last = t;
    double el = t - p->t0, rate = el > 0 ? done / el : 0.0;
    double frac = p->total ? (double)done / p->total : 1.0;
    double eta = rate > 0 && p->total > done ? (p->total - done) / rate : 0.0;
    if (p->tty) {
        char bar[S_BAR_WIDTH + 1];
        int fill = (int)(frac * S_BAR_WIDTH);
        for (int i = 0; i < S_BAR_WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[S_BAR_WIDTH] = '\0';
        fprintf(stderr, "\r%s [%s] %zu/%zu %3.0f%% %.0f rec/s ETA %.0fs%s", p->what, bar, done,
                p->total, 100 * frac, rate, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "%s: %zu/%zu records (%.0f%%), %.0f rec/s, ETA %.0fs\n", p->what, done,
                p->total, 100 * frac, rate, eta);
    }
    fflush(stderr);
}

/* ---- common record writing ---------------------------------------------------------------- */

/* What every source writes through. */
struct s_out {
    rt_db_writer_t *w;      /* the database being built */
    uint8_t *buf;           /* serialisation buffer (reused) */
    size_t cap;             /* its size */
    struct s_progress prog; /* display */
};

/* Serialise d and store it under the next %08d key. */
static int s_put(struct s_out *o, const struct rt_datum *d)
{
    if (s_interrupted)
        return rt_err_set(RT_ERR_INTERRUPTED, "interrupted; nothing was written");
    size_t need = rt_datum_packed_size(d), len;
    if (need > o->cap) {
        uint8_t *b = realloc(o->buf, need);
        if (!b)
            return rt_err_set(RT_ERR_NOMEM, "no memory for a %zu-byte record", need);
        o->buf = b;
        o->cap = need;
    }
    int rc = rt_datum_pack(d, o->buf, o->cap, &len);
    if (rc < 0)
        return rc;
    char key[16];
    size_t i = rt_db_writer_count(o->w);
    int klen = snprintf(key, sizeof key, "%08zu", i);
    if ((rc = rt_db_writer_put(o->w, key, (size_t)klen, o->buf, len)) < 0)
        return rc;
    s_progress_show(&o->prog, i + 1, false);
    return 0;
}

/* ---- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------- */

/* Find DIR/PREFIX-NAME-ubyte[.gz] or the "PREFIX-NAME.idxN-ubyte" spelling. */
static int s_find_idx(const char *dir, const char *prefix, const char *kind, const char *dims,
                      char *path, size_t cap)
{
    /* separator before the dimensions ('-' as distributed, '.' in some copies), then .gz or not */
    const char seps[] = {'-', '.'};
    const char *exts[] = {".gz", ""};
    struct stat st;
    for (int s = 0; s < 2; s++)
        for (int e = 0; e < 2; e++) {
            if (snprintf(path, cap, "%s/%s-%s%c%s-ubyte%s", dir, prefix, kind, seps[s], dims,
                         exts[e]) >= (int)cap)
                return rt_err_set(RT_ERR_ARG, "%s: path too long", dir);
            if (stat(path, &st) == 0)
                return 0;
        }
    snprintf(path, cap, "%s/%s-%s-%s-ubyte(.gz)", dir, prefix, kind, dims);
    return rt_err_set(RT_ERR_NOTFOUND, "%s: not found", path);
}

/* Read exactly n bytes from a gz stream (plain files read through unchanged). */
static int s_gzread(gzFile f, const char *path, void *buf, size_t n)
{
    int got = gzread(f, buf, (unsigned)n);
    if (got < 0) {
        int e;
        const char *m = gzerror(f, &e);
        return rt_err_set(RT_ERR_IO, "%s: %s", path, m);
    }
    if ((size_t)got != n)
        return rt_err_set(RT_ERR_TRUNCATED, "%s: ends early (%d of %zu bytes)", path, got, n);
    return 0;
}

static uint32_t s_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int s_convert_idx(const char *in, const char *split, struct s_out *o, const char *fmt)
{
    char ipath[S_PATH_MAX], lpath[S_PATH_MAX];
    const char *prefix = !strcmp(split, "train") ? "train" : "t10k";
    int rc;
    if ((rc = s_find_idx(in, prefix, "images", "idx3", ipath, sizeof ipath)) < 0 ||
        (rc = s_find_idx(in, prefix, "labels", "idx1", lpath, sizeof lpath)) < 0)
        return rc;
    gzFile fi = gzopen(ipath, "rb");
    if (!fi)
        return rt_err_set(RT_ERR_IO, "%s: %s", ipath, strerror(errno));
    gzFile fl = gzopen(lpath, "rb");
    if (!fl) {
        rc = rt_err_set(RT_ERR_IO, "%s: %s", lpath, strerror(errno));
        goto out_close_images;
    }
    uint8_t hi[16], hl[8];
    if ((rc = s_gzread(fi, ipath, hi, sizeof hi)) < 0 ||
        (rc = s_gzread(fl, lpath, hl, sizeof hl)) < 0)
        goto out_close_labels;
    if (s_be32(hi) != S_IDX_IMAGES_MAGIC) {
        rc = rt_err_set(RT_ERR_FORMAT, "%s: magic 0x%08x is not an IDX image file (0x%08x)", ipath,
                        s_be32(hi), S_IDX_IMAGES_MAGIC);
        goto out_close_labels;
    }
    if (s_be32(hl) != S_IDX_LABELS_MAGIC) {
        rc = rt_err_set(RT_ERR_FORMAT, "%s: magic 0x%08x is not an IDX label file (0x%08x)", lpath,
                        s_be32(hl), S_IDX_LABELS_MAGIC);
        goto out_close_labels;
    }
    uint32_t n = s_be32(hi + 4), rows = s_be32(hi + 8), cols = s_be32(hi + 12);
    if (s_be32(hl + 4) != n) {
        rc = rt_err_set(RT_ERR_SIZE, "%s has %u images but %s has %u labels", ipath, n, lpath,
                        s_be32(hl + 4));
        goto out_close_labels;
    }
    if (rows < 1 || cols < 1 || rows > RT_DATUM_MAX_SIDE || cols > RT_DATUM_MAX_SIDE) {
        rc = rt_err_set(RT_ERR_FORMAT, "%s: image size %ux%u", ipath, rows, cols);
        goto out_close_labels;
    }
    uint8_t *px = malloc((size_t)rows * cols);
    if (!px) {
        rc = rt_err_set(RT_ERR_NOMEM, "out of memory");
        goto out_close_labels;
    }
    s_progress_start(&o->prog, fmt, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t lab;
        if ((rc = s_gzread(fi, ipath, px, (size_t)rows * cols)) < 0 ||
            (rc = s_gzread(fl, lpath, &lab, 1)) < 0)
            goto out_free;
        struct rt_datum d = {.kind = RT_DATUM_RAW,
                             .channels = 1,
                             .height = (int)rows,
                             .width = (int)cols,
                             .label = lab,
                             .data = px,
                             .data_len = (size_t)rows * cols};
        if ((rc = s_put(o, &d)) < 0)
            goto out_free;
    }
    rc = 0;
out_free:
    free(px);
out_close_labels:
    if (gzclose(fl) != Z_OK && rc == 0)
        rc = rt_err_set(RT_ERR_IO, "%s: read error at close", lpath);
out_close_images:
    if (gzclose(fi) != Z_OK && rc == 0)
        rc = rt_err_set(RT_ERR_IO, "%s: read error at close", ipath);
    return rc;
}

/* ---- CIFAR-10 / CIFAR-100 binary ---------------------------------------------------------- */

/* Path of a CIFAR file in `in` or in its usual subfolder. */
static int s_find_file(const char *in, const char *sub, const char *name, char *path, size_t cap)
{
    struct stat st;
    snprintf(path, cap, "%s/%s", in, name);
    if (stat(path, &st) == 0)
        return 0;
    snprintf(path, cap, "%s/%s/%s", in, sub, name);
    if (stat(path, &st) == 0)
        return 0;
    snprintf(path, cap, "%s/%s", in, name);
    return rt_err_set(RT_ERR_NOTFOUND, "%s: not found (nor in %s/%s/)", path, in, sub);
}

static int s_convert_cifar(const char *in, const char *split, struct s_out *o, bool c100)
{
    const char *c10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                               "data_batch_4.bin", "data_batch_5.bin"};
    const char *c10_test[] = {"test_batch.bin"};
    const char *c100_train[] = {"train.bin"};
    const char *c100_test[] = {"test.bin"};
    bool train = !strcmp(split, "train");
    const char **files = c100 ? (train ? c100_train : c100_test) : (train ? c10_train : c10_test);
    size_t nfiles = c100 ? 1 : (train ? 5 : 1);
    const char *sub = c100 ? "cifar-100-binary" : "cifar-10-batches-bin";
    size_t rec = (c100 ? 2 : 1) + S_CIFAR_PIXELS; /* label byte(s) + RGB planes */
    char paths[5][S_PATH_MAX];
    size_t total = 0;
    int rc;
    for (size_t f = 0; f < nfiles; f++) {
        if ((rc = s_find_file(in, sub, files[f], paths[f], S_PATH_MAX)) < 0)
            return rc;
        struct stat st;
        if (stat(paths[f], &st) != 0)
            return rt_err_set(RT_ERR_IO, "%s: %s", paths[f], strerror(errno));
        if (st.st_size <= 0 || (size_t)st.st_size % rec != 0)
            return rt_err_set(RT_ERR_TRUNCATED,
                              "%s: %lld bytes is not a whole number of "
                              "%zu-byte records",
                              paths[f], (long long)st.st_size, rec);
        total += (size_t)st.st_size / rec;
    }
    s_progress_start(&o->prog, c100 ? "cifar100" : "cifar10", total);
    uint8_t buf[2 + S_CIFAR_PIXELS];
    for (size_t f = 0; f < nfiles; f++) {
        FILE *fp = fopen(paths[f], "rb");
        if (!fp)
            return rt_err_set(RT_ERR_IO, "%s: %s", paths[f], strerror(errno));
        size_t got;
        rc = 0;
        while ((got = fread(buf, 1, rec, fp)) == rec) {
            /* CIFAR-100 records carry (coarse, fine): the fine label is the class */
            struct rt_datum d = {.kind = RT_DATUM_RAW,
                                 .channels = 3,
                                 .height = S_CIFAR_SIDE,
                                 .width = S_CIFAR_SIDE,
                                 .label = c100 ? buf[1] : buf[0],
                                 .data = buf + rec - S_CIFAR_PIXELS,
                                 .data_len = S_CIFAR_PIXELS};
            if ((rc = s_put(o, &d)) < 0)
                break;
        }
        if (rc == 0 && (ferror(fp) || got != 0))
            rc = rt_err_set(RT_ERR_IO, "%s: read error", paths[f]);
        fclose(fp);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- image folder ------------------------------------------------------------------------- */

struct s_names {
    char **v; /* names, owned */
    size_t n; /* count */
};

static void s_names_free(struct s_names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
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
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    char p[S_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        struct stat st;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p || stat(p, &st) != 0)
            continue;
        if (dirs ? !S_ISDIR(st.st_mode) : !(S_ISREG(st.st_mode) && s_is_jpeg_name(e->d_name)))
            continue;
        if (out->n == cap) {
            cap = cap ? 2 * cap : 64;
            char **v = realloc(out->v, cap * sizeof *v);
            if (!v) {
                rc = rt_err_set(RT_ERR_NOMEM, "out of memory listing %s", dir);
                break;
            }
            out->v = v;
        }
        if (!(out->v[out->n] = strdup(e->d_name))) {
            rc = rt_err_set(RT_ERR_NOMEM, "out of memory listing %s", dir);
            break;
        }
        out->n++;
    }
    closedir(d);
    if (rc < 0) {
        s_names_free(out);
        return rc;
    }
    if (out->n)
        qsort(out->v, out->n, sizeof *out->v, s_cmp_str);
    return 0;
}

/* Read a whole file into *buf (grown as needed). */
static int s_read_file(const char *path, uint8_t **buf, size_t *cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return rt_err_set(RT_ERR_IO, "%s: %s", path, strerror(errno));
    int rc = 0;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0) {
        rc = rt_err_set(RT_ERR_IO, "%s: empty or unreadable", path);
        goto out_close;
    }
    size_t n = (size_t)st.st_size;
    if (n > *cap) {
        uint8_t *b = realloc(*buf, n);
        if (!b) {
            rc = rt_err_set(RT_ERR_NOMEM, "%s: no memory for %zu bytes", path, n);
            goto out_close;
        }
        *buf = b;
        *cap = n;
    }
    if (fread(*buf, 1, n, f) != n)
        rc = rt_err_set(RT_ERR_IO, "%s: short read", path);
    *len = n;
out_close:
    fclose(f);
    return rc;
}

static int s_convert_folder(const char *in, const char *split, struct s_out *o, int rw, int rh)
{
    char root[S_PATH_MAX], p[S_PATH_MAX];
    struct stat st;
    snprintf(root, sizeof root, "%s/%s", in, split);
    if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
        snprintf(root, sizeof root, "%s", in); /* --in is the split folder itself */
    struct s_names classes, *files = NULL;
    int rc = s_list(root, true, &classes);
    if (rc < 0)
        return rc;
    if (classes.n == 0) {
        rc = rt_err_set(RT_ERR_NOTFOUND, "%s: no class subfolders", root);
        goto out_classes;
    }
    if (!(files = calloc(classes.n, sizeof *files))) {
        rc = rt_err_set(RT_ERR_NOMEM, "out of memory");
        goto out_classes;
    }
    size_t total = 0;
    for (size_t c = 0; c < classes.n; c++) {
        if (snprintf(p, sizeof p, "%s/%s", root, classes.v[c]) >= (int)sizeof p) {
            rc = rt_err_set(RT_ERR_ARG, "%s/%s: path too long", root, classes.v[c]);
            goto out_files;
        }
        if ((rc = s_list(p, false, &files[c])) < 0)
            goto out_files;
        total += files[c].n;
    }
    if (total == 0) {
        rc = rt_err_set(RT_ERR_NOTFOUND, "%s: no .jpg/.jpeg files in the class subfolders", root);
        goto out_files;
    }
    rt_jpeg_t *jpeg = rt_jpeg_new();
    if (!jpeg) {
        rc = rt_err_set(RT_ERR_NOMEM, "cannot start the JPEG codec");
        goto out_files;
    }
    uint8_t *fbuf = NULL, *img = NULL, *rsz = NULL, *chw = NULL;
    size_t fcap = 0, icap = 0, flen = 0;
    struct rt_image_scratch scratch = {0};
    if (rw > 0 && (!(rsz = malloc((size_t)rw * rh * 3)) || !(chw = malloc((size_t)rw * rh * 3)))) {
        rc = rt_err_set(RT_ERR_NOMEM, "out of memory");
        goto out_bufs;
    }
    s_progress_start(&o->prog, "imagefolder", total);
    for (size_t c = 0; c < classes.n; c++) {
        for (size_t i = 0; i < files[c].n; i++) {
            if (snprintf(p, sizeof p, "%s/%s/%s", root, classes.v[c], files[c].v[i]) >=
                (int)sizeof p) {
                rc = rt_err_set(RT_ERR_ARG, "%s/%s: path too long", root, files[c].v[i]);
                goto out_bufs;
            }
            if ((rc = s_read_file(p, &fbuf, &fcap, &flen)) < 0)
                goto out_bufs;
            int w, h, ch;
            if ((rc = rt_jpeg_header(jpeg, fbuf, flen, p, &w, &h, &ch)) < 0)
                goto out_bufs;
            struct rt_datum d = {.label = (int)c, .channels = 3};
            if (rw <= 0) { /* stored encoded, as Caffe's convert_imageset --encoded */
                d.kind = RT_DATUM_ENCODED;
                d.height = h;
                d.width = w;
                d.data = fbuf;
                d.data_len = flen;
            } else { /* decoded, squashed to rw x rh, stored raw CHW in BGR order like Caffe */
                size_t need = (size_t)w * h * 3;
                if (need > icap) {
                    uint8_t *b = realloc(img, need);
                    if (!b) {
                        rc = rt_err_set(RT_ERR_NOMEM, "%s: no memory to decode", p);
                        goto out_bufs;
                    }
                    img = b;
                    icap = need;
                }
                if ((rc = rt_jpeg_decode(jpeg, fbuf, flen, p, 1, 3, 1, img)) < 0 ||
                    (rc = rt_image_resize(img, w, h, (size_t)w * 3, 3, 0, 0, (float)w, (float)h,
                                          rsz, rw, rh, (size_t)rw * 3, &scratch)) < 0)
                    goto out_bufs;
                size_t plane = (size_t)rw * rh;
                for (size_t k = 0; k < plane; k++)
                    for (int q = 0; q < 3; q++)
                        chw[q * plane + k] = rsz[k * 3 + q];
                d.kind = RT_DATUM_RAW;
                d.height = rh;
                d.width = rw;
                d.data = chw;
                d.data_len = plane * 3;
            }
            if ((rc = s_put(o, &d)) < 0)
                goto out_bufs;
        }
    }
    rc = 0;
out_bufs:
    rt_image_scratch_free(&scratch);
    free(fbuf);
    free(img);
    free(rsz);
    free(chw);
    rt_jpeg_destroy(&jpeg);
out_files:
    for (size_t c = 0; files && c < classes.n; c++)
        s_names_free(&files[c]);
    free(files);
out_classes:
    s_names_free(&classes);
    return rc;
}

/* ---- command ------------------------------------------------------------------------------ */

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: eigenbatch convert FORMAT --in PATH --out DIR [--split train|test] [--force]\n"
            "                          [--resize WxH]\n"
            "Write an LMDB database of Caffe Datum records, keys %%08d in source order.\n"
            "FORMAT:\n"
            "  fashion-mnist, mnist  --in holds train-images-idx3-ubyte(.gz), train-labels-...,\n"
            "                        t10k-images-idx3-ubyte(.gz), t10k-labels-... (gzip or plain)\n"
            "  cifar10               --in holds data_batch_1..5.bin and test_batch.bin\n"
            "  cifar100              --in holds train.bin and test.bin (fine labels)\n"
            "  imagefolder           --in (or --in/SPLIT) holds one subfolder of JPEGs per class\n"
            "                        (classes numbered in name order); stored encoded, or with\n"
            "                        --resize decoded, resized to WxH and stored raw in BGR\n"
            "                        order, as Caffe's convert_imageset does\n"
            "--split train|test      which part (default train)\n"
            "--force                 replace an existing database at DIR\n");
}

int eb_cmd_convert(int argc, char **argv)
{
    const char *fmt = NULL, *in = NULL, *outdir = NULL, *split = "train";
    bool force = false;
    int rw = 0, rh = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--in") && has) {
            in = argv[++i];
        } else if (!strcmp(a, "--out") && has) {
            outdir = argv[++i];
        } else if (!strcmp(a, "--split") && has) {
            split = argv[++i];
        } else if (!strcmp(a, "--force")) {
            force = true;
        } else if (!strcmp(a, "--resize") && has) {
            char x;
            if (sscanf(argv[++i], "%d%c%d", &rw, &x, &rh) != 3 || (x != 'x' && x != 'X') ||
                rw < 1 || rh < 1 || rw > RT_DATUM_MAX_SIDE || rh > RT_DATUM_MAX_SIDE) {
                fprintf(stderr, "eigenbatch convert: invalid value '%s' for --resize (WxH)\n",
                        argv[i]);
                return 2;
            }
        } else if (a[0] != '-' && !fmt) {
            fmt = a;
        } else {
            fprintf(stderr, "eigenbatch convert: unexpected argument '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    if (!fmt || !in || !outdir) {
        s_usage(stderr);
        return 2;
    }
    if (strcmp(split, "train") && strcmp(split, "test")) {
        fprintf(stderr, "eigenbatch convert: --split must be train or test, not '%s'\n", split);
        return 2;
    }
    bool idx = !strcmp(fmt, "fashion-mnist") || !strcmp(fmt, "mnist");
    bool c10 = !strcmp(fmt, "cifar10"), c100 = !strcmp(fmt, "cifar100");
    bool folder = !strcmp(fmt, "imagefolder");
    if (!idx && !c10 && !c100 && !folder) {
        fprintf(stderr, "eigenbatch convert: unknown format '%s'\n", fmt);
        s_usage(stderr);
        return 2;
    }
    if (rw && !folder) {
        fprintf(stderr, "eigenbatch convert: --resize applies to imagefolder only\n");
        return 2;
    }
    struct s_out o = {0};
    int rc = rt_db_writer_new(outdir, force, &o.w);
    if (rc < 0) {
        fprintf(stderr, "eigenbatch convert: %s\n", rt_err_msg());
        return 1;
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (idx)
        rc = s_convert_idx(in, split, &o, fmt);
    else if (c10 || c100)
        rc = s_convert_cifar(in, split, &o, c100);
    else
        rc = s_convert_folder(in, split, &o, rw, rh);
    if (rc == 0) {
        s_progress_show(&o.prog, rt_db_writer_count(o.w), true);
        rc = rt_db_writer_finish(o.w);
    }
    size_t n = rt_db_writer_count(o.w);
    rt_db_writer_destroy(&o.w); /* removes the partial build unless finished */
    free(o.buf);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc < 0) {
        if (o.prog.tty)
            fputc('\n', stderr);
        fprintf(stderr, "eigenbatch convert: %s\n", rt_err_msg());
        return 1;
    }
    fprintf(stderr, "eigenbatch convert: wrote %zu %s records to %s\n", n, split, outdir);
    return 0;
}
