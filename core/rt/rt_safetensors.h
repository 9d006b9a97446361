/*
 * rt_safetensors: read and write safetensors files (the weights format of PyTorch's ecosystem).
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data. The JSON
 * object maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}
 * (byte offsets into the data, which follows the header) and may hold "__metadata__", a map of
 * string to string. Tensors must tile the data exactly: no overlap, no hole, nothing left over.
 *
 * The API speaks in plain descriptors (a name, a shape, a pointer) so that core/rt stays apart from
 * core/nn; core/app/app_weights.c maps a net's named tensors onto it. Files are written atomically
 * (a temporary file in the same directory, fsync, rename, fsync of the directory), so a reader
 * never sees half a file. Readers map the file and validate the whole header on open: a malformed,
 * truncated or oversized header is an error (RT_ERR_FORMAT, RT_ERR_TRUNCATED, RT_ERR_TOOBIG) whose
 * detail names the file and the offending tensor, never a crash.
 */
#ifndef RT_SAFETENSORS_H
#define RT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* Largest header accepted on read, as the reference implementation (100 MB). */
#define RT_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Most dimensions of one tensor. */
#define RT_ST_MAX_DIM 8

/* Element types. Only F32 and I32 can be written; every type below can be listed on read. */
enum rt_st_dtype {
    RT_ST_F32 = 0, /* "F32", float32 (the zero value: the default of a descriptor) */
    RT_ST_I32,     /* "I32" */
    RT_ST_I64,     /* "I64" */
    RT_ST_F64,     /* "F64" */
    RT_ST_F16,     /* "F16" */
    RT_ST_BF16,    /* "BF16" */
    RT_ST_I16,     /* "I16" */
    RT_ST_I8,      /* "I8" */
    RT_ST_U8,      /* "U8" */
    RT_ST_BOOL,    /* "BOOL" */
    RT_ST_U16,     /* "U16" */
    RT_ST_U32,     /* "U32" */
    RT_ST_U64,     /* "U64" */
    RT_ST_F8_E4M3, /* "F8_E4M3" */
    RT_ST_F8_E5M2, /* "F8_E5M2" */
    RT_ST_DTYPE_COUNT
};

/* One tensor to write. Zero-initialise it and fill the fields: dtype 0 is F32. */
struct rt_st_tensor {
    const char *name;             /* unique name, e.g. "layers.0.c1.weight"; borrowed */
    enum rt_st_dtype dtype;       /* RT_ST_F32 (default) or RT_ST_I32 */
    int ndim;                     /* 0..RT_ST_MAX_DIM (0 = scalar) */
    int64_t shape[RT_ST_MAX_DIM]; /* sizes, each >= 0 */
    const void *data;             /* product(shape) elements, little-endian; borrowed */
};

/* A tensor of an open file, as listed in its header. */
struct rt_st_info {
    const char *name;             /* owned by the file handle */
    enum rt_st_dtype dtype;       /* element type */
    int ndim;                     /* number of dimensions */
    int64_t shape[RT_ST_MAX_DIM]; /* sizes */
    size_t numel;                 /* product of the sizes */
    size_t nbytes;                /* numel * element size */
    const void *data; /* mapped bytes (may be unaligned: copy out with memcpy); valid until
                       * rt_st_close */
};

typedef struct rt_st rt_st_t;

/* "F32" for RT_ST_F32 and so on; "?" for a value out of range. */
const char *rt_st_dtype_name(enum rt_st_dtype dtype);
/* Bytes per element (1 for BOOL and F8), 0 for a value out of range. */
size_t rt_st_dtype_size(enum rt_st_dtype dtype);

/* Write n tensors, in that order, to path atomically. meta (may be NULL) is a NULL-terminated list
 * of key, value, key, value, ... strings stored as "__metadata__". The header is padded with spaces
 * so that the data starts at a multiple of 8 bytes. Returns 0, or RT_ERR_ARG (duplicate or empty
 * name, bad shape, unsupported dtype), RT_ERR_IO (detail names the path and errno), RT_ERR_NOMEM.
 * An existing file at path is replaced only when the whole new file is on disk. */
int rt_st_write(const char *path, const struct rt_st_tensor *tensors, int n,
                const char *const *meta);

/* Open and validate path. On success *out is the handle (caller owns it; free with rt_st_close).
 * Returns 0 or a negative rt_err code with the detail naming the file and the problem. */
int rt_st_open(const char *path, rt_st_t **out);

/* Close a handle and null the caller's pointer; accepts NULL, safe twice. */
void rt_st_close(rt_st_t **self_p);

/* Path the handle was opened with; valid until rt_st_close. */
const char *rt_st_path(const rt_st_t *st);

/* Number of tensors and the i-th one, in data-offset order (0 <= i < count). The pointer is owned
 * by the handle and valid until rt_st_close. */
int rt_st_count(const rt_st_t *st);
const struct rt_st_info *rt_st_at(const rt_st_t *st, int i);

/* Look a tensor up by name; NULL when absent (no error detail is set). */
const struct rt_st_info *rt_st_find(const rt_st_t *st, const char *name);

/* Value of a "__metadata__" key, or NULL; owned by the handle, valid until rt_st_close. */
const char *rt_st_meta(const rt_st_t *st, const char *key);

/* Copy tensor `name` into out, checking that it exists (else RT_ERR_NOTFOUND), has the given
 * dtype (F32 or I32; else RT_ERR_FORMAT) and exactly the shape (ndim, shape) (else RT_ERR_SHAPE).
 * shape may be NULL to accept any shape with `count` elements (count is then required; else it is
 * ignored and may be 0). The detail names the file and the tensor, e.g.
 * "w.safetensors: tensor 'fc.weight': expected shape [10, 64], got [10, 32]". */
int rt_st_read(const rt_st_t *st, const char *name, enum rt_st_dtype dtype, int ndim,
               const int64_t *shape, size_t count, void *out);

/* rt_st_read for float32 with an int shape (the common case). */
int rt_st_read_f32(const rt_st_t *st, const char *name, int ndim, const int *shape, float *out);

#endif
