/*
 * rt_datum: the codec of one training record, Caffe's `Datum` message (proto/datum.proto). This is
 * the only module that sees the protobuf-c generated types; everything else uses struct rt_datum.
 *
 * Three kinds of record exist:
 *   raw      data = channels*height*width uint8, channel-major (CHW). Caffe's convert_imageset
 *            stores colour images in BGR order; its convert_cifar_data (and our cifar converter)
 *            keeps CIFAR's RGB order. The record does not say which: the reader's option decides.
 *   float    float_data = channels*height*width float32, CHW (data empty).
 *   encoded  encoded = true, data = image file bytes (JPEG). Caffe leaves the shape unset (0);
 *            when it is set it must agree with the image header.
 */
#ifndef RT_DATUM_H
#define RT_DATUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest accepted side of an image and number of channels (guards against absurd headers). */
#define RT_DATUM_MAX_SIDE 65535
#define RT_DATUM_MAX_CHANNELS 4

enum rt_datum_kind {
    RT_DATUM_RAW = 0,     /* uint8 CHW in data */
    RT_DATUM_FLOAT = 1,   /* float32 CHW in float_data */
    RT_DATUM_ENCODED = 2, /* image file bytes in data */
};

/* A decoded record: a view. After rt_datum_decode() the pointers are valid until
 * rt_datum_release(); when the caller fills one to encode, the pointers are the caller's. */
struct rt_datum {
    enum rt_datum_kind kind; /* which payload holds the pixels */
    int channels;            /* 0 when unset (encoded records made by Caffe) */
    int height;              /* rows, 0 when unset */
    int width;               /* columns, 0 when unset */
    int label;               /* class index */
    const uint8_t *data;     /* raw pixels or encoded bytes (RAW, ENCODED) */
    size_t data_len;         /* bytes in data */
    const float *float_data; /* FLOAT pixels */
    size_t float_len;        /* floats in float_data */
    void *msg_;              /* decoder-owned message; NULL for caller-built records */
    void *arena_;            /* arena the message lives in, or NULL (heap) */
};

/* Reusable decoding memory, so that a hot loop decodes records without allocating. Zero it
 * before first use; it grows to the largest record seen. Holds one decoded record at a time. */
struct rt_datum_arena {
    uint8_t *buf; /* owned */
    size_t cap;   /* bytes in buf */
    size_t used;  /* bytes handed out for the current record */
};

/* Free the arena's memory; safe on a zeroed or freed arena. */
void rt_datum_arena_free(struct rt_datum_arena *a);

/* Parse serialized bytes into *out. `key` names the record in error details. Checks that the
 * message parses and that its payload agrees with its shape (raw: data_len = c*h*w; float:
 * float_len = c*h*w; encoded: non-empty). Returns 0 or RT_ERR_FORMAT / RT_ERR_SIZE /
 * RT_ERR_SHAPE / RT_ERR_NOMEM with a detail naming the key. On success release *out with
 * rt_datum_release(); on failure *out needs no release. */
int rt_datum_decode(const void *buf, size_t len, const char *key, struct rt_datum *out);

/* As rt_datum_decode(), with the message in `arena` (grown when needed): *out is valid until
 * rt_datum_release() and the arena must not decode another record before that. */
int rt_datum_decode_arena(const void *buf, size_t len, const char *key,
                          struct rt_datum_arena *arena, struct rt_datum *out);

/* Free what rt_datum_decode() allocated; safe on a zeroed or already released datum. */
void rt_datum_release(struct rt_datum *d);

/* Bytes rt_datum_pack() will write for d. */
size_t rt_datum_packed_size(const struct rt_datum *d);

/* Serialize d into buf (cap bytes); *len gets the size. Returns 0, RT_ERR_SIZE when cap is too
 * small, or RT_ERR_ARG when d's payload disagrees with its shape. */
int rt_datum_pack(const struct rt_datum *d, uint8_t *buf, size_t cap, size_t *len);

#endif
