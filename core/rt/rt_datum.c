/*
 * rt_datum: Datum records <-> struct rt_datum through protobuf-c.
 */
#include "rt_datum.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "datum.pb-c.h"
#include "rt_err.h"

/* Check the shape fields and return c*h*w in *n; `key` names the record. */
static int s_check_shape(const struct rt_datum *d, const char *key, size_t *n)
{
    if (d->channels < 1 || d->channels > RT_DATUM_MAX_CHANNELS || d->height < 1 ||
        d->height > RT_DATUM_MAX_SIDE || d->width < 1 || d->width > RT_DATUM_MAX_SIDE)
        return rt_err_set(RT_ERR_SHAPE, "record %s: invalid shape %dx%dx%d", key, d->channels,
                          d->height, d->width);
    *n = (size_t)d->channels * (size_t)d->height * (size_t)d->width;
    return 0;
}

/* Check that the payload agrees with the shape. */
static int s_check_payload(const struct rt_datum *d, const char *key)
{
    size_t n = 0;
    int rc;
    switch (d->kind) {
    case RT_DATUM_RAW:
        if ((rc = s_check_shape(d, key, &n)) < 0)
            return rc;
        if (d->data_len != n)
            return rt_err_set(RT_ERR_SIZE, "record %s: %zu data bytes for shape %dx%dx%d (%zu)",
                              key, d->data_len, d->channels, d->height, d->width, n);
        return 0;
    case RT_DATUM_FLOAT:
        if ((rc = s_check_shape(d, key, &n)) < 0)
            return rc;
        if (d->float_len != n)
            return rt_err_set(RT_ERR_SIZE, "record %s: %zu floats for shape %dx%dx%d (%zu)", key,
                              d->float_len, d->channels, d->height, d->width, n);
        return 0;
    case RT_DATUM_ENCODED:
        if (d->data_len == 0)
            return rt_err_set(RT_ERR_FORMAT, "record %s: encoded record without data", key);
        if (d->channels < 0 || d->channels > RT_DATUM_MAX_CHANNELS || d->height < 0 ||
            d->height > RT_DATUM_MAX_SIDE || d->width < 0 || d->width > RT_DATUM_MAX_SIDE)
            return rt_err_set(RT_ERR_SHAPE, "record %s: invalid shape %dx%dx%d", key, d->channels,
                              d->height, d->width);
        return 0;
    }
    return rt_err_set(RT_ERR_FORMAT, "record %s: unknown record kind", key);
}

/* Arena allocator: bump allocation, 16-byte aligned; requests beyond the arena fall back to the
 * heap (the arena is sized so that this does not happen for a well-formed record). */
#define S_ARENA_ALIGN 16
#define S_ARENA_SLACK 1024 /* bytes beyond the record size: message struct and alignment */

static void *s_arena_alloc(void *data, size_t size)
{
    struct rt_datum_arena *a = data;
    size_t off = (a->used + S_ARENA_ALIGN - 1) & ~(size_t)(S_ARENA_ALIGN - 1);
    if (off <= a->cap && size <= a->cap - off) {
        a->used = off + size;
        return a->buf + off;
    }
    return malloc(size);
}

static void s_arena_free(void *data, void *p)
{
    struct rt_datum_arena *a = data;
    uintptr_t q = (uintptr_t)p, lo = (uintptr_t)a->buf;
    if (q >= lo && q < lo + a->cap)
        return;
    free(p);
}

void rt_datum_arena_free(struct rt_datum_arena *a)
{
    if (a) {
        free(a->buf);
        memset(a, 0, sizeof *a);
    }
}

/* Unpack with `alloc` (NULL: the heap) and fill *out. */
static int s_decode(const void *buf, size_t len, const char *key, ProtobufCAllocator *alloc,
                    struct rt_datum *out);

int rt_datum_decode(const void *buf, size_t len, const char *key, struct rt_datum *out)
{
    return s_decode(buf, len, key, NULL, out);
}

int rt_datum_decode_arena(const void *buf, size_t len, const char *key,
                          struct rt_datum_arena *arena, struct rt_datum *out)
{
    memset(out, 0, sizeof *out);
    /* a record's decoded form is at most its wire size plus the message struct: reserve that */
    size_t need = len + sizeof(Caffe__Datum) + S_ARENA_SLACK;
    if (need > arena->cap) { /* free, then allocate: the old and new block never coexist */
        free(arena->buf);
        arena->cap = 0;
        if (!(arena->buf = malloc(need)))
            return rt_err_set(RT_ERR_NOMEM, "record %s: no memory to decode %zu bytes", key, len);
        arena->cap = need;
    }
    arena->used = 0;
    ProtobufCAllocator alloc = {s_arena_alloc, s_arena_free, arena};
    int rc = s_decode(buf, len, key, &alloc, out);
    if (rc == 0)
        out->arena_ = arena;
    return rc;
}

static int s_decode(const void *buf, size_t len, const char *key, ProtobufCAllocator *alloc,
                    struct rt_datum *out)
{
    memset(out, 0, sizeof *out);
    Caffe__Datum *m = caffe__datum__unpack(alloc, len, buf);
    if (!m)
        return rt_err_set(RT_ERR_FORMAT,
                          "record %s: not a valid Datum (%zu bytes, corrupt or "
                          "truncated)",
                          key, len);
    out->channels = m->has_channels ? m->channels : 0;
    out->height = m->has_height ? m->height : 0;
    out->width = m->has_width ? m->width : 0;
    out->label = m->has_label ? m->label : 0;
    out->data = m->has_data ? m->data.data : NULL;
    out->data_len = m->has_data ? m->data.len : 0;
    out->float_data = m->float_data;
    out->float_len = m->n_float_data;
    if (m->has_encoded && m->encoded)
        out->kind = RT_DATUM_ENCODED;
    else if (out->data_len == 0 && out->float_len > 0)
        out->kind = RT_DATUM_FLOAT;
    else
        out->kind = RT_DATUM_RAW;
    int rc = s_check_payload(out, key);
    if (rc < 0) {
        caffe__datum__free_unpacked(m, alloc);
        memset(out, 0, sizeof *out);
        return rc;
    }
    out->msg_ = m;
    return 0;
}

void rt_datum_release(struct rt_datum *d)
{
    if (d && d->msg_) {
        if (d->arena_) {
            ProtobufCAllocator alloc = {s_arena_alloc, s_arena_free, d->arena_};
            caffe__datum__free_unpacked(d->msg_, &alloc);
        } else {
            caffe__datum__free_unpacked(d->msg_, NULL);
        }
        memset(d, 0, sizeof *d);
    }
}

/* Fill a message from d (pointers borrowed, no copy). */
static void s_to_msg(const struct rt_datum *d, Caffe__Datum *m)
{
    caffe__datum__init(m);
    if (d->channels) {
        m->has_channels = 1;
        m->channels = d->channels;
    }
    if (d->height) {
        m->has_height = 1;
        m->height = d->height;
    }
    if (d->width) {
        m->has_width = 1;
        m->width = d->width;
    }
    m->has_label = 1;
    m->label = d->label;
    if (d->kind != RT_DATUM_FLOAT) {
        m->has_data = 1;
        m->data.data = (uint8_t *)d->data;
        m->data.len = d->data_len;
    } else {
        m->n_float_data = d->float_len;
        m->float_data = (float *)d->float_data;
    }
    if (d->kind == RT_DATUM_ENCODED) {
        m->has_encoded = 1;
        m->encoded = 1;
    }
}

size_t rt_datum_packed_size(const struct rt_datum *d)
{
    Caffe__Datum m;
    s_to_msg(d, &m);
    return caffe__datum__get_packed_size(&m);
}

int rt_datum_pack(const struct rt_datum *d, uint8_t *buf, size_t cap, size_t *len)
{
    int rc = s_check_payload(d, "(being written)");
    if (rc < 0)
        return rt_err_set(RT_ERR_ARG, "%s", rt_err_msg());
    Caffe__Datum m;
    s_to_msg(d, &m);
    size_t need = caffe__datum__get_packed_size(&m);
    if (need > cap)
        return rt_err_set(RT_ERR_SIZE, "datum needs %zu bytes, buffer holds %zu", need, cap);
    *len = caffe__datum__pack(&m, buf);
    return 0;
}
