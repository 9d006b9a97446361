/*
 * cmd_convert: `eigenbatch convert FORMAT --in PATH --out DIR ...` writes an LMDB database of
 * Caffe Datum records (keys %08d in source order) from Fashion-MNIST/MNIST IDX files, CIFAR-10/100
 * binary files, or JPEG images (convert_images.c: a folder per class, ImageNet's validation folder
 * with a label file, TinyImageNet), or makes up an ImageNet-shaped set (convert_synthetic.c). The
 * database is built beside DIR and renamed into place at the end (rt_db), so a stopped convert
 * leaves nothing at DIR that a reader would take.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "convert.h"
#include "eb_cli.h"
#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"
#include "rt_jpeg.h"
#include "rt_opt.h"

#define S_IDX_IMAGES_MAGIC 0x00000803u /* IDX: unsigned byte, 3 dimensions */
#define S_IDX_LABELS_MAGIC 0x00000801u /* IDX: unsigned byte, 1 dimension */
#define S_CIFAR_PIXELS 3072            /* 3 x 32 x 32 */
#define S_CIFAR_SIDE 32
#define S_BAR_WIDTH 40
#define S_PATH_MAX 4096

static volatile sig_atomic_t s_interrupted; /* SIGINT/SIGTERM seen */

static void s_on_signal(int sig)
{
    (void)sig;
    s_interrupted = 1;
}

/* ---- progress display and record writing ------------------------------------------------- */

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void convert_progress_start(struct convert_progress *p, const char *what, size_t total)
{
    p->what = what;
    p->total = total;
    p->tty = isatty(STDERR_FILENO);
    p->t0 = p->last = s_now();
}

void convert_progress_show(struct convert_progress *p, size_t done, bool final)
{
    double t = s_now();
    if (!final && t - p->last < CONVERT_PROGRESS_S)
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

int convert_put(struct convert_out *o, const struct rt_datum *d)
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
    convert_progress_show(&o->prog, i + 1, false);
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

static int s_convert_idx(const char *in, const char *split, struct convert_out *o, const char *fmt)
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
    convert_progress_start(&o->prog, fmt, n);
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
        if ((rc = convert_put(o, &d)) < 0)
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

static int s_convert_cifar(const char *in, const char *split, struct convert_out *o, bool c100)
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
    convert_progress_start(&o->prog, c100 ? "cifar100" : "cifar10", total);
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
            if ((rc = convert_put(o, &d)) < 0)
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

/* ---- command ------------------------------------------------------------------------------ */

static void s_usage(FILE *f)
{
    fprintf(
        f,
        "usage: eigenbatch convert FORMAT --in PATH --out DIR [--split train|test] [--force]\n"
        "                          [--resize WxH | --resize-shorter N [--quality Q]]\n"
        "                          [--labels FILE] [--verify] [--skip-bad]\n"
        "       eigenbatch convert synthetic --out DIR --classes C --per-class N --size WxH\n"
        "                          --format jpeg|raw [--seed S] [--quality Q] [--force]\n"
        "Write an LMDB database of Caffe Datum records, keys %%08d in source order.\n"
        "FORMAT:\n"
        "  fashion-mnist, mnist  --in holds train-images-idx3-ubyte(.gz), train-labels-...,\n"
        "                        t10k-images-idx3-ubyte(.gz), t10k-labels-... (gzip or plain)\n"
        "  cifar10               --in holds data_batch_1..5.bin and test_batch.bin\n"
        "  cifar100              --in holds train.bin and test.bin (fine labels)\n"
        "  imagefolder           --in (or --in/SPLIT) holds one subfolder of JPEGs per class\n"
        "                        (classes numbered in name order)\n"
        "  imagenet-val          --in is one folder of JPEGs; --labels FILE gives the labels:\n"
        "                        lines 'FILE LABEL' (records in line order), or one LABEL per\n"
        "                        line for the JPEGs in name order; a LABEL is an integer, or a\n"
        "                        word (WordNet id) numbered in sorted order like the class\n"
        "                        folders of imagefolder\n"
        "  tinyimagenet          --in holds wnids.txt, train/WNID/images/*.JPEG and\n"
        "                        val/images/*.JPEG with val/val_annotations.txt; classes are\n"
        "                        the wnids in sorted order; --split test reads val/\n"
        "  synthetic             no --in: C x N made-up records for tests and benchmarks, record\n"
        "                        i of class i %% C, a stripe pattern per class (the same for\n"
        "                        every seed) plus per-image phase and noise from --seed\n"
        "                        (default 1: two seeds make a training and a test set);\n"
        "                        --format jpeg: sides within +-20%% of WxH and every 16th\n"
        "                        image greyscale; raw: WxH, BGR\n"
        "JPEGs are stored encoded as they are, or:\n"
        "--resize-shorter N      re-encoded with the shorter side N when it is longer\n"
        "--quality Q             JPEG quality of re-encoded images (default %d)\n"
        "--resize WxH            decoded, resized to WxH and stored raw in BGR order, as\n"
        "                        Caffe's convert_imageset does\n"
        "--verify                decode every image (at 1/8 scale, so quickly): data cut\n"
        "                        short is found now, not when training draws it\n"
        "--skip-bad              leave unreadable images out (each named in a warning,\n"
        "                        counted in the last line) instead of failing\n"
        "--split train|test      which part (default train)\n"
        "--force                 replace an existing database at DIR\n"
        "Progress (count, rate, ETA) goes to stderr at most once a second. The database is\n"
        "written to DIR.partial-PID and renamed to DIR at the end: an interrupted convert leaves\n"
        "no DIR, and the readers refuse an unfinished build, saying to run the convert again.\n",
        RT_JPEG_QUALITY);
}

/* Parse WxH into *w, *h. */
static bool s_size_arg(const char *v, int *w, int *h)
{
    char x;
    return sscanf(v, "%d%c%d", w, &x, h) == 3 && (x == 'x' || x == 'X') && *w >= 1 && *h >= 1 &&
           *w <= RT_DATUM_MAX_SIDE && *h <= RT_DATUM_MAX_SIDE;
}

/* The arguments; 0, 1 after --help, or 2 after printing the problem. */
struct s_args {
    const char *fmt, *in, *out, *split;
    bool force;
    struct convert_image_opts img;
    struct convert_synth_opts syn; /* synthetic */
    const char *syn_format;        /* synthetic: --format */
    bool syn_given;                /* a synthetic-only option was given */
};

/* The synthetic set's options; 1 when o is one of them, -1 after printing a bad value, else 0. */
static int s_parse_synth(const char *o, const char *v, struct s_args *a)
{
    long n;
    int *dst = !strcmp(o, "--classes")     ? &a->syn.classes
               : !strcmp(o, "--per-class") ? &a->syn.per_class
                                           : NULL;
    if (!strcmp(o, "--size")) {
        if (!s_size_arg(v, &a->syn.width, &a->syn.height)) {
            fprintf(stderr, "eigenbatch convert: invalid value '%s' for --size (WxH)\n", v);
            return -1;
        }
    } else if (!strcmp(o, "--format")) {
        a->syn_format = v;
    } else if (!strcmp(o, "--seed")) {
        if (rt_opt_long("convert", o, v, &n) < 0 || n < 0) {
            fprintf(stderr, "eigenbatch convert: --seed must be a number >= 0\n");
            return -1;
        }
        a->syn.seed = (uint64_t)n;
    } else if (dst) {
        if (rt_opt_long("convert", o, v, &n) < 0 || n < 1 || n > INT32_MAX) {
            fprintf(stderr, "eigenbatch convert: %s must be a number >= 1\n", o);
            return -1;
        }
        *dst = (int)n;
    } else {
        return 0;
    }
    a->syn_given = true;
    return 1;
}

static int s_parse(int argc, char **argv, struct s_args *a)
{
    memset(a, 0, sizeof *a);
    a->split = "train";
    a->img.quality = RT_JPEG_QUALITY;
    a->syn.seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        int sy;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            s_usage(stdout);
            return 1;
        } else if (!strcmp(o, "--force")) {
            a->force = true;
        } else if (!strcmp(o, "--verify")) {
            a->img.verify = true;
        } else if (!strcmp(o, "--skip-bad")) {
            a->img.skip_bad = true;
        } else if (o[0] != '-' && !a->fmt) {
            a->fmt = o;
        } else if (!v) {
            fprintf(stderr, "eigenbatch convert: unexpected argument '%s'\n", o);
            s_usage(stderr);
            return 2;
        } else if (i++, (sy = s_parse_synth(o, v, a)) != 0) {
            if (sy < 0)
                return 2;
        } else if (!strcmp(o, "--in")) {
            a->in = v;
        } else if (!strcmp(o, "--out")) {
            a->out = v;
        } else if (!strcmp(o, "--split")) {
            a->split = v;
        } else if (!strcmp(o, "--labels")) {
            a->img.labels = v;
        } else if (!strcmp(o, "--resize")) {
            if (!s_size_arg(v, &a->img.resize_w, &a->img.resize_h)) {
                fprintf(stderr, "eigenbatch convert: invalid value '%s' for --resize (WxH)\n", v);
                return 2;
            }
        } else if (!strcmp(o, "--resize-shorter") || !strcmp(o, "--quality")) {
            bool q = !strcmp(o, "--quality");
            if (rt_opt_long("convert", o, v, &n) < 0)
                return 2;
            if (q ? (n < 1 || n > 100) : (n < 1 || n > RT_DATUM_MAX_SIDE)) {
                fprintf(stderr, "eigenbatch convert: %s %ld outside %s\n", o, n,
                        q ? "1..100" : "1..65535");
                return 2;
            }
            *(q ? &a->img.quality : &a->img.shorter) = (int)n;
        } else {
            fprintf(stderr, "eigenbatch convert: unexpected argument '%s'\n", o);
            s_usage(stderr);
            return 2;
        }
    }
    return 0;
}

/* Cross-argument checks; 0 or 2 after printing the problem. */
static int s_check(const struct s_args *a, bool images, bool synth)
{
    const char *bad = NULL;
    if (synth && (a->in || a->img.resize_w || a->img.shorter || a->img.labels))
        bad = "synthetic takes no --in, --resize, --resize-shorter or --labels";
    else if (synth && (!a->syn.classes || !a->syn.per_class || !a->syn.width || !a->syn_format))
        bad = "synthetic needs --classes, --per-class, --size and --format";
    else if (synth && strcmp(a->syn_format, "jpeg") && strcmp(a->syn_format, "raw"))
        bad = "synthetic: --format is jpeg or raw";
    else if (!synth && a->syn_given)
        bad = "--classes, --per-class, --size, --format and --seed apply to synthetic only";
    else if (!synth && !a->in)
        bad = "--in is required";
    else if (strcmp(a->split, "train") && strcmp(a->split, "test"))
        bad = "--split must be train or test";
    else if (!images && (a->img.resize_w || a->img.shorter || a->img.labels || a->img.verify ||
                         a->img.skip_bad))
        bad = "--resize, --resize-shorter, --labels, --verify and --skip-bad apply to JPEG "
              "formats only";
    else if (a->img.resize_w && a->img.shorter)
        bad = "--resize (raw) and --resize-shorter (JPEG) exclude each other";
    else if (a->img.labels && strcmp(a->fmt, "imagenet-val"))
        bad = "--labels applies to imagenet-val";
    if (bad)
        fprintf(stderr, "eigenbatch convert: %s\n", bad);
    return bad ? 2 : 0;
}

/* The synthetic set of a's options. */
static int s_synthetic(struct s_args *a, struct convert_out *o)
{
    a->syn.jpeg = !strcmp(a->syn_format, "jpeg");
    a->syn.quality = a->img.quality;
    return convert_synthetic(&a->syn, o);
}

int eb_cmd_convert(int argc, char **argv)
{
    struct s_args a;
    int rc = s_parse(argc, argv, &a);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!a.fmt || !a.out) {
        s_usage(stderr);
        return 2;
    }
    const char *fmt = a.fmt;
    bool idx = !strcmp(fmt, "fashion-mnist") || !strcmp(fmt, "mnist");
    bool c10 = !strcmp(fmt, "cifar10"), c100 = !strcmp(fmt, "cifar100");
    bool images =
        !strcmp(fmt, "imagefolder") || !strcmp(fmt, "imagenet-val") || !strcmp(fmt, "tinyimagenet");
    bool synth = !strcmp(fmt, "synthetic");
    if (!idx && !c10 && !c100 && !images && !synth) {
        fprintf(stderr, "eigenbatch convert: unknown format '%s'\n", fmt);
        s_usage(stderr);
        return 2;
    }
    if (s_check(&a, images, synth))
        return 2;
    struct convert_out o = {0};
    if ((rc = rt_db_writer_new(a.out, a.force, &o.w)) < 0) {
        fprintf(stderr, "eigenbatch convert: %s\n", rt_err_msg());
        return 1;
    }
    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    if (idx)
        rc = s_convert_idx(a.in, a.split, &o, fmt);
    else if (synth)
        rc = s_synthetic(&a, &o);
    else if (c10 || c100)
        rc = s_convert_cifar(a.in, a.split, &o, c100);
    else
        rc = convert_images(fmt, a.in, a.split, &o, &a.img);
    if (rc == 0) {
        convert_progress_show(&o.prog, rt_db_writer_count(o.w), true);
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
    fprintf(stderr, "eigenbatch convert: wrote %zu %s records to %s", n, a.split, a.out);
    if (o.pngs)
        fprintf(stderr, " (%zu PNG%s among them, re-encoded as JPEG)", o.pngs,
                o.pngs == 1 ? "" : "s");
    if (o.skipped)
        fprintf(stderr, "; %zu unreadable image%s left out (named above)", o.skipped,
                o.skipped == 1 ? "" : "s");
    fputc('\n', stderr);
    return 0;
}
