/*
 * cmd_dbinfo: `eigenbatch dbinfo DIR` reads every record of an LMDB Datum database and prints its
 * record count, kind (raw, float or encoded), shape and label histogram. A corrupt record, or a
 * raw record whose shape differs from the first, stops it with an error naming the key (JPEG
 * records may differ in size).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_cli.h"
#include "rt_datum.h"
#include "rt_db.h"
#include "rt_err.h"
#include "rt_jpeg.h"

#define S_MAX_LABEL 1000000 /* histogram labels 0 .. S_MAX_LABEL-1; others counted apart */

/* What the scan found. */
struct s_info {
    size_t kinds[3]; /* records per rt_datum_kind */
    int c, h, w;     /* first record's shape */
    int hmin, hmax;  /* height range */
    int wmin, wmax;  /* width range */
    bool cmix;       /* channel counts differ */
    size_t *hist;    /* count per label */
    size_t nlabels;  /* entries used in hist (max label + 1) */
    size_t other;    /* labels outside [0, S_MAX_LABEL) */
    size_t bytes;    /* total value bytes */
};

static int s_scan(rt_db_t *db, rt_jpeg_t *jpeg, struct s_info *s)
{
    size_t n = rt_db_count(db), cap = 0;
    char key[RT_DB_KEY_MAX];
    for (size_t i = 0; i < n; i++) {
        const void *val;
        size_t len;
        struct rt_datum d;
        int rc = rt_db_record(db, i, &val, &len);
        if (rc < 0)
            return rc;
        rt_db_key(db, i, key, sizeof key);
        if ((rc = rt_datum_decode(val, len, key, &d)) < 0)
            return rc;
        s->bytes += len;
        int c = d.channels, h = d.height, w = d.width;
        if (d.kind == RT_DATUM_ENCODED) {
            int jc;
            rc = rt_jpeg_header(jpeg, d.data, d.data_len, key, &w, &h, &jc);
            if (rc == 0 && ((d.height && d.height != h) || (d.width && d.width != w)))
                rc = rt_err_set(RT_ERR_SHAPE,
                                "record %s: shape fields %dx%d disagree with its "
                                "JPEG %dx%d",
                                key, d.height, d.width, h, w);
            if (!c)
                c = jc;
        }
        int label = d.label;
        bool raw = d.kind != RT_DATUM_ENCODED;
        s->kinds[d.kind]++;
        rt_datum_release(&d);
        if (rc < 0)
            return rc;
        if (i == 0) {
            s->c = c;
            s->h = s->hmin = s->hmax = h;
            s->w = s->wmin = s->wmax = w;
        }
        /* raw and float records feed fixed-size tensors: all must share one shape */
        if (rc == 0 && raw && i > 0 && (c != s->c || h != s->h || w != s->w))
            return rt_err_set(RT_ERR_SHAPE,
                              "record %s: shape %dx%dx%d differs from the first "
                              "record's %dx%dx%d",
                              key, c, h, w, s->c, s->h, s->w);
        s->cmix |= c != s->c;
        s->hmin = h < s->hmin ? h : s->hmin;
        s->hmax = h > s->hmax ? h : s->hmax;
        s->wmin = w < s->wmin ? w : s->wmin;
        s->wmax = w > s->wmax ? w : s->wmax;
        if (label < 0 || label >= S_MAX_LABEL) {
            s->other++;
            continue;
        }
        if ((size_t)label >= cap) {
            size_t nc = cap ? cap : 16;
            while (nc <= (size_t)label)
                nc *= 2;
            size_t *hh = realloc(s->hist, nc * sizeof *hh);
            if (!hh)
                return rt_err_set(RT_ERR_NOMEM, "out of memory");
            memset(hh + cap, 0, (nc - cap) * sizeof *hh);
            s->hist = hh;
            cap = nc;
        }
        s->hist[label]++;
        if ((size_t)label + 1 > s->nlabels)
            s->nlabels = (size_t)label + 1;
    }
    return 0;
}

int eb_cmd_dbinfo(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        bool help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        fprintf(help ? stdout : stderr,
                "usage: eigenbatch dbinfo DIR\n"
                "Read every record of the LMDB database DIR; print the record count, kind\n"
                "(raw / float / encoded), shape and label histogram.\n");
        return help ? 0 : 2;
    }
    const char *dir = argv[1];
    rt_db_t *db = NULL;
    rt_jpeg_t *jpeg = NULL;
    struct s_info s = {0};
    int status = 1;
    int rc = rt_db_open(dir, &db);
    if (rc < 0)
        goto out;
    if (!(jpeg = rt_jpeg_new())) {
        rc = rt_err_set(RT_ERR_NOMEM, "cannot start the JPEG decoder");
        goto out;
    }
    size_t n = rt_db_count(db);
    if ((rc = s_scan(db, jpeg, &s)) < 0)
        goto out;
    printf("database  %s\n", dir);
    printf("records   %zu (%.1f MiB of values)\n", n, s.bytes / 1048576.0);
    printf("kind      ");
    const char *names[3] = {"raw uint8", "float", "encoded (JPEG)"};
    bool first = true;
    for (int k = 0; k < 3; k++)
        if (s.kinds[k]) {
            printf("%s%s%s", first ? "" : ", ", names[k], s.kinds[k] == n ? "" : " (mixed)");
            first = false;
        }
    printf("\n");
    if (n == 0) {
        status = 0;
        goto out;
    }
    if (s.hmin == s.hmax && s.wmin == s.wmax && !s.cmix)
        printf("shape     %dx%dx%d (CxHxW, every record)\n", s.c, s.h, s.w);
    else
        printf("shape     varies: %s%d channels, height %d..%d, width %d..%d\n",
               s.cmix ? "mixed, first " : "", s.c, s.hmin, s.hmax, s.wmin, s.wmax);
    size_t used = 0;
    for (size_t i = 0; i < s.nlabels; i++)
        used += s.hist[i] != 0;
    printf("labels    %zu distinct in 0..%zu%s\n", used, s.nlabels ? s.nlabels - 1 : 0,
           s.other ? " (plus labels out of range)" : "");
    printf("label     count\n");
    for (size_t i = 0; i < s.nlabels; i++)
        if (s.hist[i])
            printf("%-9zu %zu\n", i, s.hist[i]);
    if (s.other)
        printf("other     %zu\n", s.other);
    status = 0;
out:
    if (rc < 0)
        fprintf(stderr, "eigenbatch dbinfo: %s\n", rt_err_msg());
    free(s.hist);
    rt_jpeg_destroy(&jpeg);
    rt_db_destroy(&db);
    return status;
}
