/*
 * rt_tboard: TensorBoard event files (see rt_tboard.h).
 */
#include "rt_tboard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt_err.h"
#include "tfevent.pb-c.h"

#define S_CRC_MASK_DELTA 0xa282ead8u /* TFRecord's mask constant */
#define S_POLY 0x82f63b78u           /* CRC32C's polynomial, reflected */

struct rt_tboard {
    FILE *f;         /* the event file */
    char path[4096]; /* its path */
};

uint32_t rt_tboard_crc32c(const void *data, size_t n)
{
    /* a table of the 256 byte values, built once (no Debian C library offers CRC32C) */
    static uint32_t table[256];
    static int ready;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++)
                c = c & 1 ? (c >> 1) ^ S_POLY : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const uint8_t *p = data;
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static uint32_t s_masked(const void *data, size_t n)
{
    uint32_t c = rt_tboard_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + S_CRC_MASK_DELTA;
}

/* Write one TFRecord of the encoded event ev. */
static int s_record(rt_tboard_t *t, const TbEvent *ev)
{
    size_t n = tb_event__get_packed_size(ev);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return rt_err_set(RT_ERR_NOMEM, "%s: an event of %zu bytes", t->path, n);
    tb_event__pack(ev, buf);
    uint8_t head[12];
    uint64_t len = n;
    for (int i = 0; i < 8; i++)
        head[i] = (uint8_t)(len >> (8 * i));
    uint32_t hc = s_masked(head, 8), dc = s_masked(buf, n);
    for (int i = 0; i < 4; i++)
        head[8 + i] = (uint8_t)(hc >> (8 * i));
    uint8_t tail[4];
    for (int i = 0; i < 4; i++)
        tail[i] = (uint8_t)(dc >> (8 * i));
    int ok = fwrite(head, 1, 12, t->f) == 12 && fwrite(buf, 1, n, t->f) == n &&
             fwrite(tail, 1, 4, t->f) == 4;
    free(buf);
    return ok ? RT_OK : rt_err_set(RT_ERR_IO, "%s: %s", t->path, strerror(errno));
}

int rt_tboard_open(const char *dir, rt_tboard_t **out)
{
    *out = NULL;
    rt_tboard_t *t = calloc(1, sizeof *t);
    if (!t)
        return rt_err_set(RT_ERR_NOMEM, "tensorboard writer");
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    if (snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%lld.%s.%ld", dir,
                 (long long)time(NULL), host, (long)getpid()) >= (int)sizeof t->path) {
        free(t);
        return rt_err_set(RT_ERR_ARG, "%s: path too long", dir);
    }
    if (!(t->f = fopen(t->path, "wb"))) {
        int rc = rt_err_set(RT_ERR_IO, "%s: %s", t->path, strerror(errno));
        free(t);
        return rc;
    }
    TbEvent ev = TB_EVENT__INIT;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ev.wall_time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    ev.file_version = (char *)"brain.Event:2";
    int rc = s_record(t, &ev);
    if (!rc)
        rc = rt_tboard_flush(t);
    if (rc) {
        rt_tboard_close(&t);
        return rc;
    }
    *out = t;
    return RT_OK;
}

int rt_tboard_scalar(rt_tboard_t *t, const char *tag, int64_t step, double wall, float value)
{
    TbValue v = TB_VALUE__INIT;
    v.tag = (char *)tag;
    v.simple_value = value;
    TbValue *vs[1] = {&v};
    TbSummary sum = TB_SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = vs;
    TbEvent ev = TB_EVENT__INIT;
    ev.wall_time = wall;
    ev.step = step;
    ev.summary = &sum;
    return s_record(t, &ev);
}

int rt_tboard_flush(rt_tboard_t *t)
{
    return fflush(t->f) ? rt_err_set(RT_ERR_IO, "%s: %s", t->path, strerror(errno)) : RT_OK;
}

const char *rt_tboard_path(const rt_tboard_t *t)
{
    return t->path;
}

void rt_tboard_close(rt_tboard_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_tboard_t *t = *self_p;
    if (t->f)
        fclose(t->f);
    free(t);
    *self_p = NULL;
}
