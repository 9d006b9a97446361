/*
 * cmd_bench_loader: `eigenbatch bench loader --db DIR [options]` measures the data loader's
 * throughput (images/s of wall time and per CPU-second) on a database, with the augmentation a
 * training run would use, or the evaluation transform (--eval HxW [--eval-resize R]).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eb_cli.h"
#include "rt_err.h"
#include "rt_loader.h"

static double s_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ImageNet's per-channel mean and standard deviation (torchvision's Normalize in its examples). */
static const float s_imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float s_imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static void s_usage(FILE *f)
{
    fprintf(f,
            "usage: eigenbatch bench loader --db DIR [--batch N] [--samples N] [--threads T]\n"
            "                               [--crop-pad P] [--flip] [--rrc HxW] [--normalize]\n"
            "                               [--warmup N] [--eval HxW [--eval-resize R]]\n"
            "Load training batches (epoch permutation, augmentation) and report images/s.\n"
            "  --threads T   prefetch threads (0: decode on the calling thread; default 0)\n"
            "  --rrc HxW     random-resized crop to HxW\n"
            "  --normalize   (x/255 - mean) / std with ImageNet's mean and std (as torchvision's\n"
            "                Normalize after ToTensor)\n"
            "  --eval HxW    the evaluation transform instead (no augmentation) to HxW: with\n"
            "  --eval-resize R, the shorter side resized to R and the centre HxW cropped\n"
            "                (torchvision's Resize(R) + CenterCrop)\n");
}

/* The command line of `bench loader`. */
struct s_args {
    const char *db;                          /* --db */
    long batch, samples, threads, pad, warm; /* --batch --samples --threads --crop-pad --warmup */
    int rh, rw;                              /* --rrc HxW (0: off) */
    int eh, ew;                              /* --eval HxW (0: off) */
    long eval_resize;                        /* --eval-resize R */
    bool flip, normalize;                    /* --flip --normalize */
};

/* An HxW value of option `opt` into *h, *w: 0, or -1 after saying what is wrong. */
static int s_size_arg(const char *opt, const char *v, int *h, int *w)
{
    char x;
    if (sscanf(v, "%d%c%d", h, &x, w) != 3 || x != 'x' || *h < 1 || *w < 1) {
        fprintf(stderr, "eigenbatch bench loader: invalid value '%s' for %s (HxW)\n", v, opt);
        return -1;
    }
    return 0;
}

/* Parse argv into *a: -1 to go on, else the exit status (0 after --help). */
static int s_parse(int argc, char **argv, struct s_args *out)
{
    *out = (struct s_args){.batch = 256, .samples = 20000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            s_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--db") && v) {
            out->db = v;
            i++;
        } else if (!strcmp(a, "--batch") && v) {
            if (rt_opt_long("bench loader", a, argv[++i], &out->batch) < 0 || out->batch < 1)
                return 2;
        } else if (!strcmp(a, "--samples") && v) {
            if (rt_opt_long("bench loader", a, argv[++i], &out->samples) < 0 || out->samples < 1)
                return 2;
        } else if (!strcmp(a, "--warmup") && v) {
            if (rt_opt_long("bench loader", a, argv[++i], &out->warm) < 0 || out->warm < 0)
                return 2;
        } else if (!strcmp(a, "--threads") && v) {
            if (rt_opt_long("bench loader", a, argv[++i], &out->threads) < 0)
                return 2;
        } else if (!strcmp(a, "--crop-pad") && v) {
            if (rt_opt_long("bench loader", a, argv[++i], &out->pad) < 0)
                return 2;
        } else if (!strcmp(a, "--flip")) {
            out->flip = true;
        } else if (!strcmp(a, "--normalize")) {
            out->normalize = true;
        } else if (!strcmp(a, "--eval") && v) {
            if (s_size_arg(a, argv[++i], &out->eh, &out->ew))
                return 2;
        } else if (!strcmp(a, "--eval-resize") && v) {
            if (rt_opt_long("bench loader", a, argv[++i], &out->eval_resize) < 0 ||
                out->eval_resize < 0)
                return 2;
        } else if (!strcmp(a, "--rrc") && v) {
            if (s_size_arg(a, argv[++i], &out->rh, &out->rw))
                return 2;
        } else {
            fprintf(stderr, "eigenbatch bench loader: unexpected argument '%s'\n", a);
            s_usage(stderr);
            return 2;
        }
    }
    if (!out->db) {
        s_usage(stderr);
        return 2;
    }
    if (out->eh && out->rh) {
        fprintf(stderr, "eigenbatch bench loader: --eval and --rrc exclude each other\n");
        return 2;
    }
    return -1;
}

int eb_bench_loader(int argc, char **argv)
{
    struct s_args a;
    int prc = s_parse(argc, argv, &a);
    if (prc >= 0)
        return prc;
    const char *db = a.db;
    long batch = a.batch, samples = a.samples, threads = a.threads, pad = a.pad, warm = a.warm;
    int rh = a.rh, rw = a.rw;
    bool flip = a.flip, normalize = a.normalize;
    struct rt_loader_opts o;
    rt_loader_opts_default(&o);
    o.seed = 1;
    o.threads = (int)threads;
    o.max_batch = (size_t)batch;
    o.crop_pad = (int)pad;
    o.flip = flip;
    o.rrc = rh > 0;
    o.out_height = a.eh ? a.eh : rh;
    o.out_width = a.eh ? a.ew : rw;
    o.eval_resize = (int)a.eval_resize;
    o.normalize = normalize;
    for (int k = 0; normalize && k < 3; k++) {
        o.mean[k] = s_imagenet_mean[k];
        o.std[k] = s_imagenet_std[k];
    }
    rt_loader_t *l = NULL;
    if (rt_loader_new(db, &o, &l) < 0) {
        fprintf(stderr, "eigenbatch bench loader: %s\n", rt_err_msg());
        return 1;
    }
    size_t n = rt_loader_count(l);
    int c, h, w;
    rt_loader_shape(l, &c, &h, &w);
    uint64_t epoch = 0;
    size_t pos = 0, queued = 0, got = 0;
    size_t total = (size_t)(samples + warm);
    double t0 = 0, c0 = 0;
    int rc = 0;
    if (warm == 0) {
        t0 = s_clock(CLOCK_MONOTONIC);
        c0 = s_clock(CLOCK_PROCESS_CPUTIME_ID);
    }
    while (got < total) {
        /* keep the queue full */
        while (queued < total) {
            size_t cnt = (size_t)batch < n - pos ? (size_t)batch : n - pos;
            if (cnt > total - queued)
                cnt = total - queued;
            struct rt_loader_req r = {
                .epoch = epoch, .start = pos, .count = cnt, .augment = a.eh == 0};
            rc = rt_loader_submit(l, &r);
            if (rc == RT_ERR_STATE)
                break;
            if (rc < 0)
                goto out;
            queued += cnt;
            pos += cnt;
            if (pos == n) {
                pos = 0;
                epoch++;
            }
        }
        struct rt_loader_batch b;
        if ((rc = rt_loader_wait(l, &b)) < 0)
            goto out;
        size_t before = got;
        got += b.count;
        rt_loader_release(l, &b);
        if (warm > 0 && before < (size_t)warm && got >= (size_t)warm) {
            t0 = s_clock(CLOCK_MONOTONIC);
            c0 = s_clock(CLOCK_PROCESS_CPUTIME_ID);
            total = got + (size_t)samples;
        }
    }
    rc = 0;
    double wall = s_clock(CLOCK_MONOTONIC) - t0, cpu = s_clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
    char mode[64] = "";
    if (a.eh)
        snprintf(mode, sizeof mode, "eval resize %ld, ", a.eval_resize);
    printf("loader %s: %zu records, output %dx%dx%d, batch %ld, threads %ld, %scrop-pad %ld, "
           "flip %s, rrc %s, normalize %s: %ld images in %.3f s wall, %.3f s CPU: %.0f images/s, "
           "%.0f images "
           "per CPU-second\n",
           db, n, c, h, w, batch, threads, mode, pad, flip ? "on" : "off", rh ? "on" : "off",
           normalize ? "on" : "off", samples, wall, cpu, samples / wall, samples / cpu);
out:
    if (rc < 0)
        fprintf(stderr, "eigenbatch bench loader: %s\n", rt_err_msg());
    rt_loader_destroy(&l);
    return rc < 0 ? 1 : 0;
}
