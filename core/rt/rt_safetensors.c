/*
 * rt_safetensors: safetensors reader (mmap + full header validation) and atomic writer.
 *
 * The header is JSON, parsed and produced with jansson. On open every entry is checked (dtype
 * known, shape non-negative and within RT_ST_MAX_DIM, offsets inside the data and consistent with
 * shape x dtype) and the tensors, sorted by offset, must tile the data exactly, as the reference
 * implementation requires. Lookups by name use a name-sorted index.
 */
#include "rt_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_err.h"
#include "rt_file.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rt_safetensors assumes a little-endian host (safetensors data is little-endian)"
#endif

/* Bytes of the length prefix. */
#define ST_PREFIX 8
/* Alignment of the data section that the writer pads the header to. */
#define ST_ALIGN 8
/* Name of the metadata entry in the header. */
#define ST_META "__metadata__"

struct rt_st {
    char *path;                  /* path given to rt_st_open (owned) */
    unsigned char *map;          /* the mapped file */
    size_t map_len;              /* its length */
    json_t *header;              /* parsed header; names and metadata point into it */
    int count;                   /* number of tensors */
    struct rt_st_info *tensors;  /* count tensors sorted by data offset */
    struct rt_st_info **by_name; /* count pointers sorted by name */
};

static const struct {
    const char *name; /* dtype string in the header */
    size_t size;      /* bytes per element */
} s_dtypes[RT_ST_DTYPE_COUNT] = {
    [RT_ST_F32] = {"F32", 4},   [RT_ST_I32] = {"I32", 4},         [RT_ST_I64] = {"I64", 8},
    [RT_ST_F64] = {"F64", 8},   [RT_ST_F16] = {"F16", 2},         [RT_ST_BF16] = {"BF16", 2},
    [RT_ST_I16] = {"I16", 2},   [RT_ST_I8] = {"I8", 1},           [RT_ST_U8] = {"U8", 1},
    [RT_ST_BOOL] = {"BOOL", 1}, [RT_ST_U16] = {"U16", 2},         [RT_ST_U32] = {"U32", 4},
    [RT_ST_U64] = {"U64", 8},   [RT_ST_F8_E4M3] = {"F8_E4M3", 1}, [RT_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *rt_st_dtype_name(enum rt_st_dtype dtype)
{
    return (unsigned)dtype < RT_ST_DTYPE_COUNT ? s_dtypes[dtype].name : "?";
}

size_t rt_st_dtype_size(enum rt_st_dtype dtype)
{
    return (unsigned)dtype < RT_ST_DTYPE_COUNT ? s_dtypes[dtype].size : 0;
}

static int s_dtype_from_name(const char *name)
{
    for (int i = 0; i < RT_ST_DTYPE_COUNT; i++)
        if (!strcmp(s_dtypes[i].name, name))
            return i;
    return -1;
}

/* Format a shape as "[a, b, c]" into buf. */
static const char *s_shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < len)
        snprintf(buf + k, len - k, "]");
    return buf;
}

/* Product of the sizes, or -1 on overflow or a negative size. */
static int s_numel(int ndim, const int64_t *shape, size_t *out)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(n, (size_t)shape[d], &n))
            return -1;
    }
    *out = n;
    return 0;
}

/* ---- writer ------------------------------------------------------------------------------ */

/* Build the header object for the tensors; *data_len receives the data section's size. */
static int s_build_header(const char *path, const struct rt_st_tensor *t, int n,
                          const char *const *meta, json_t **out, size_t *data_len)
{
    json_t *root = json_object();
    if (!root)
        return rt_err_set(RT_ERR_NOMEM, "%s: out of memory building the header", path);
    int rc = 0;
    if (meta && meta[0]) {
        json_t *m = json_object();
        if (!m || json_object_set_new(root, ST_META, m)) {
            rc = rt_err_set(RT_ERR_NOMEM, "%s: out of memory building the header", path);
            goto out_free;
        }
        for (int i = 0; meta[i]; i += 2) {
            if (!meta[i + 1]) {
                rc = rt_err_set(RT_ERR_ARG, "%s: metadata key '%s' has no value", path, meta[i]);
                goto out_free;
            }
            if (json_object_set_new(m, meta[i], json_string(meta[i + 1]))) {
                rc = rt_err_set(RT_ERR_ARG, "%s: metadata '%s' is not valid UTF-8", path, meta[i]);
                goto out_free;
            }
        }
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const char *name = t[i].name;
        size_t numel, nbytes;
        if (!name || !*name || !strcmp(name, ST_META)) {
            rc = rt_err_set(RT_ERR_ARG, "%s: tensor %d has an empty or reserved name", path, i);
            goto out_free;
        }
        if (json_object_get(root, name)) {
            rc = rt_err_set(RT_ERR_ARG, "%s: tensor '%s' appears twice", path, name);
            goto out_free;
        }
        if (t[i].dtype != RT_ST_F32 && t[i].dtype != RT_ST_I32) {
            rc = rt_err_set(RT_ERR_ARG, "%s: tensor '%s': cannot write dtype %s", path, name,
                            rt_st_dtype_name(t[i].dtype));
            goto out_free;
        }
        if (t[i].ndim < 0 || t[i].ndim > RT_ST_MAX_DIM || s_numel(t[i].ndim, t[i].shape, &numel) ||
            __builtin_mul_overflow(numel, rt_st_dtype_size(t[i].dtype), &nbytes)) {
            rc = rt_err_set(RT_ERR_ARG, "%s: tensor '%s' has an invalid shape", path, name);
            goto out_free;
        }
        if (nbytes && !t[i].data) {
            rc = rt_err_set(RT_ERR_ARG, "%s: tensor '%s' has no data", path, name);
            goto out_free;
        }
        json_t *shape = json_array();
        for (int d = 0; shape && d < t[i].ndim; d++) {
            if (json_array_append_new(shape, json_integer(t[i].shape[d]))) {
                json_decref(shape);
                shape = NULL;
            }
        }
        json_t *e =
            json_pack("{s:s, s:o*, s:[I,I]}", "dtype", rt_st_dtype_name(t[i].dtype), "shape", shape,
                      "data_offsets", (json_int_t)off, (json_int_t)(off + nbytes));
        if (!shape || !e || json_object_set_new(root, name, e)) {
            rc = rt_err_set(RT_ERR_ARG, "%s: cannot add tensor '%s' to the header (not UTF-8?)",
                            path, name);
            goto out_free;
        }
        off += nbytes;
    }
    *out = root;
    *data_len = off;
    return 0;
out_free:
    json_decref(root);
    return rc;
}

int rt_st_write(const char *path, const struct rt_st_tensor *tensors, int n,
                const char *const *meta)
{
    if (!path || n < 0 || (n > 0 && !tensors))
        return rt_err_set(RT_ERR_ARG, "rt_st_write: invalid arguments");
    json_t *root = NULL;
    size_t data_len = 0;
    int rc = s_build_header(path, tensors, n, meta, &root, &data_len);
    if (rc)
        return rc;
    char *json = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!json)
        return rt_err_set(RT_ERR_NOMEM, "%s: out of memory serialising the header", path);
    size_t jlen = strlen(json);
    size_t hlen = (jlen + ST_PREFIX + ST_ALIGN - 1) / ST_ALIGN * ST_ALIGN - ST_PREFIX;
    unsigned char *head = malloc(ST_PREFIX + hlen);
    char *tmp = malloc(strlen(path) + 16);
    if (!head || !tmp) {
        rc = rt_err_set(RT_ERR_NOMEM, "%s: out of memory", path);
        goto out_free;
    }
    for (int b = 0; b < ST_PREFIX; b++)
        head[b] = (unsigned char)((uint64_t)hlen >> (8 * b));
    memcpy(head + ST_PREFIX, json, jlen);
    memset(head + ST_PREFIX + jlen, ' ', hlen - jlen);

    sprintf(tmp, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = rt_err_set(RT_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(errno));
        goto out_free;
    }
    if (fchmod(fd, 0644) || rt_file_write_all(fd, head, ST_PREFIX + hlen))
        goto out_io;
    for (int i = 0; i < n; i++) {
        size_t numel = 0;
        s_numel(tensors[i].ndim, tensors[i].shape, &numel);
        size_t nbytes = numel * rt_st_dtype_size(tensors[i].dtype);
        if (nbytes && rt_file_write_all(fd, tensors[i].data, nbytes))
            goto out_io;
    }
    if (fsync(fd))
        goto out_io;
    if (close(fd)) {
        fd = -1;
        goto out_io;
    }
    fd = -1;
    if (rename(tmp, path))
        goto out_io;
    rc = rt_file_fsync_parent(path);
    goto out_free;

out_io:
    rc = rt_err_set(RT_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out_free:
    free(tmp);
    free(head);
    free(json);
    return rc;
}

/* ---- reader ------------------------------------------------------------------------------ */

/* Read a non-negative JSON integer. */
static int s_get_size(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* Validate one header entry and fill *info (data left to the caller). */
static int s_parse_entry(const char *path, const char *name, json_t *e, size_t data_len,
                         struct rt_st_info *info, size_t *begin)
{
    json_t *dt = json_object_get(e, "dtype");
    json_t *shape = json_object_get(e, "shape");
    json_t *offs = json_object_get(e, "data_offsets");
    if (!json_is_object(e) || !json_is_string(dt) || !json_is_array(shape) || !json_is_array(offs))
        return rt_err_set(RT_ERR_FORMAT,
                          "%s: tensor '%s': entry needs dtype, shape and data_offsets", path, name);
    if (json_object_size(e) != 3)
        return rt_err_set(RT_ERR_FORMAT, "%s: tensor '%s': unexpected fields in entry", path, name);
    int dtype = s_dtype_from_name(json_string_value(dt));
    if (dtype < 0)
        return rt_err_set(RT_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name,
                          json_string_value(dt));
    size_t ndim = json_array_size(shape);
    if (ndim > RT_ST_MAX_DIM)
        return rt_err_set(RT_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", path, name,
                          ndim, RT_ST_MAX_DIM);
    memset(info, 0, sizeof *info);
    info->name = name;
    info->dtype = (enum rt_st_dtype)dtype;
    info->ndim = (int)ndim;
    for (size_t d = 0; d < ndim; d++)
        if (s_get_size(json_array_get(shape, d), &info->shape[d]))
            return rt_err_set(RT_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a size", path,
                              name, d);
    int64_t b, end;
    if (json_array_size(offs) != 2 || s_get_size(json_array_get(offs, 0), &b) ||
        s_get_size(json_array_get(offs, 1), &end) || b > end)
        return rt_err_set(RT_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets must be [begin, end] with begin <= end",
                          path, name);
    if ((uint64_t)end > data_len)
        return rt_err_set(RT_ERR_TRUNCATED,
                          "%s: tensor '%s': data_offsets end %lld is past the data (%zu bytes)",
                          path, name, (long long)end, data_len);
    if (s_numel(info->ndim, info->shape, &info->numel) ||
        __builtin_mul_overflow(info->numel, rt_st_dtype_size(info->dtype), &info->nbytes) ||
        info->nbytes != (size_t)(end - b)) {
        char sb[256];
        return rt_err_set(RT_ERR_SIZE,
                          "%s: tensor '%s': %lld bytes in data_offsets but shape %s of %s needs "
                          "%zu",
                          path, name, (long long)(end - b),
                          s_shape_str(sb, sizeof sb, info->ndim, info->shape),
                          rt_st_dtype_name(info->dtype), info->nbytes);
    }
    *begin = (size_t)b;
    return 0;
}

static int s_cmp_offset(const void *a, const void *b)
{
    const struct rt_st_info *x = a, *y = b;
    const unsigned char *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int s_cmp_name(const void *a, const void *b)
{
    const struct rt_st_info *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Parse and validate the header of st (already mapped). */
static int s_parse(rt_st_t *st)
{
    const char *path = st->path;
    if (st->map_len < ST_PREFIX)
        return rt_err_set(RT_ERR_TRUNCATED, "%s: %zu bytes, too short for a safetensors file", path,
                          st->map_len);
    uint64_t hlen = 0;
    for (int b = 0; b < ST_PREFIX; b++)
        hlen |= (uint64_t)st->map[b] << (8 * b);
    if (hlen > RT_ST_MAX_HEADER)
        return rt_err_set(RT_ERR_TOOBIG, "%s: header of %llu bytes exceeds the %llu limit", path,
                          (unsigned long long)hlen, (unsigned long long)RT_ST_MAX_HEADER);
    if (hlen > st->map_len - ST_PREFIX)
        return rt_err_set(RT_ERR_TRUNCATED, "%s: header of %llu bytes but the file has %zu", path,
                          (unsigned long long)hlen, st->map_len);
    if (hlen < 2 || st->map[ST_PREFIX] != '{')
        return rt_err_set(RT_ERR_FORMAT, "%s: header is not a JSON object", path);
    json_error_t jerr;
    st->header = json_loadb((const char *)st->map + ST_PREFIX, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!st->header)
        return rt_err_set(RT_ERR_FORMAT, "%s: header JSON: %s (column %d)", path, jerr.text,
                          jerr.column);
    if (!json_is_object(st->header))
        return rt_err_set(RT_ERR_FORMAT, "%s: header is not a JSON object", path);

    const unsigned char *data = st->map + ST_PREFIX + hlen;
    size_t data_len = st->map_len - ST_PREFIX - hlen;
    size_t n = json_object_size(st->header);
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->by_name = calloc(n ? n : 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name)
        return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", path);
    const char *key;
    json_t *val;
    json_object_foreach(st->header, key, val)
    {
        if (!strcmp(key, ST_META)) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val))
                return rt_err_set(RT_ERR_FORMAT, "%s: __metadata__ is not an object", path);
            json_object_foreach(val, mk, mv)
            {
                if (!json_is_string(mv))
                    return rt_err_set(RT_ERR_FORMAT, "%s: __metadata__ '%s' is not a string", path,
                                      mk);
            }
            continue;
        }
        struct rt_st_info *info = &st->tensors[st->count];
        size_t begin = 0;
        int rc = s_parse_entry(path, key, val, data_len, info, &begin);
        if (rc)
            return rc;
        info->data = data + begin;
        st->count++;
    }
    /* The tensors must tile the data section: sorted by offset, each starts where the last ended.
     */
    qsort(st->tensors, (size_t)st->count, sizeof *st->tensors, s_cmp_offset);
    size_t pos = 0;
    for (int i = 0; i < st->count; i++) {
        size_t b = (size_t)((const unsigned char *)st->tensors[i].data - data);
        if (b < pos)
            return rt_err_set(RT_ERR_FORMAT, "%s: tensor '%s' overlaps tensor '%s'", path,
                              st->tensors[i].name, st->tensors[i - 1].name);
        if (b > pos)
            return rt_err_set(RT_ERR_FORMAT, "%s: %zu unused bytes before tensor '%s'", path,
                              b - pos, st->tensors[i].name);
        pos = b + st->tensors[i].nbytes;
        st->by_name[i] = &st->tensors[i];
    }
    if (pos != data_len)
        return rt_err_set(RT_ERR_FORMAT, "%s: %zu bytes after the last tensor", path,
                          data_len - pos);
    qsort(st->by_name, (size_t)st->count, sizeof *st->by_name, s_cmp_name);
    return 0;
}

int rt_st_open(const char *path, rt_st_t **out)
{
    *out = NULL;
    rt_st_t *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", path);
    }
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = rt_err_set(errno == ENOENT ? RT_ERR_NOTFOUND : RT_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
        goto out_fail;
    }
    struct stat sb;
    if (fstat(fd, &sb)) {
        rc = rt_err_set(RT_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = rt_err_set(RT_ERR_IO, "%s: not a regular file", path);
        goto out_close;
    }
    st->map_len = (size_t)sb.st_size;
    if (st->map_len >= ST_PREFIX) {
        void *m = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            rc = rt_err_set(RT_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
            goto out_close;
        }
        st->map = m;
    }
    close(fd);
    rc = s_parse(st);
    if (rc)
        goto out_fail;
    *out = st;
    return 0;
out_close:
    close(fd);
out_fail:
    rt_st_close(&st);
    return rc;
}

void rt_st_close(rt_st_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_st_t *st = *self_p;
    if (st->map)
        munmap(st->map, st->map_len);
    json_decref(st->header);
    free(st->tensors);
    free(st->by_name);
    free(st->path);
    free(st);
    *self_p = NULL;
}

const char *rt_st_path(const rt_st_t *st)
{
    return st->path;
}

int rt_st_count(const rt_st_t *st)
{
    return st->count;
}

const struct rt_st_info *rt_st_at(const rt_st_t *st, int i)
{
    RT_ASSERT(i >= 0 && i < st->count);
    return &st->tensors[i];
}

const struct rt_st_info *rt_st_find(const rt_st_t *st, const char *name)
{
    struct rt_st_info key = {.name = name};
    const struct rt_st_info *kp = &key;
    struct rt_st_info **hit =
        bsearch(&kp, st->by_name, (size_t)st->count, sizeof *st->by_name, s_cmp_name);
    return hit ? *hit : NULL;
}

const char *rt_st_meta(const rt_st_t *st, const char *key)
{
    json_t *m = json_object_get(st->header, ST_META);
    return json_string_value(json_object_get(m, key));
}

int rt_st_read(const rt_st_t *st, const char *name, enum rt_st_dtype dtype, int ndim,
               const int64_t *shape, size_t count, void *out)
{
    const struct rt_st_info *t = rt_st_find(st, name);
    char want[256], got[256];
    if (!t)
        return rt_err_set(RT_ERR_NOTFOUND, "%s: tensor '%s' is missing", st->path, name);
    if (t->dtype != dtype)
        return rt_err_set(RT_ERR_FORMAT, "%s: tensor '%s': expected dtype %s, got %s", st->path,
                          name, rt_st_dtype_name(dtype), rt_st_dtype_name(t->dtype));
    if (shape) {
        int same = t->ndim == ndim;
        for (int d = 0; same && d < ndim; d++)
            same = t->shape[d] == shape[d];
        if (!same)
            return rt_err_set(RT_ERR_SHAPE, "%s: tensor '%s': expected shape %s, got %s", st->path,
                              name, s_shape_str(want, sizeof want, ndim, shape),
                              s_shape_str(got, sizeof got, t->ndim, t->shape));
    } else if (t->numel != count) {
        return rt_err_set(RT_ERR_SHAPE,
                          "%s: tensor '%s': expected %zu elements, got %zu (shape %s)", st->path,
                          name, count, t->numel, s_shape_str(got, sizeof got, t->ndim, t->shape));
    }
    if (t->nbytes)
        memcpy(out, t->data, t->nbytes);
    return 0;
}

int rt_st_read_f32(const rt_st_t *st, const char *name, int ndim, const int *shape, float *out)
{
    int64_t s64[RT_ST_MAX_DIM];
    if (ndim < 0 || ndim > RT_ST_MAX_DIM)
        return rt_err_set(RT_ERR_ARG, "%s: tensor '%s': invalid expected rank %d", st->path, name,
                          ndim);
    for (int d = 0; d < ndim; d++)
        s64[d] = shape[d];
    return rt_st_read(st, name, RT_ST_F32, ndim, s64, 0, out);
}
