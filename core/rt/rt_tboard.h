/*
 * rt_tboard: TensorBoard event files of scalars, written without TensorFlow.
 *
 * A file DIR/events.out.tfevents.<unix seconds>.<host>.<pid> holds TFRecords: each record is the
 * data length (uint64, little-endian), the masked CRC32C of those 8 bytes (uint32), the data, and
 * the masked CRC32C of the data; masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The data of each
 * record is an Event message (proto/tfevent.proto, TensorFlow's field numbers); the first carries
 * file_version "brain.Event:2", the others one scalar each (tag, step, wall time). TensorBoard
 * reads every such file of a directory, so several processes of one run may each write their own.
 */
#ifndef RT_TBOARD_H
#define RT_TBOARD_H

#include <stddef.h>
#include <stdint.h>

typedef struct rt_tboard rt_tboard_t;

/* Open a new event file in dir (which must exist) and write its version record. Returns 0 and
 * *out (free with rt_tboard_close), or RT_ERR_IO naming the file. */
int rt_tboard_open(const char *dir, rt_tboard_t **out);

/* Append one scalar: `tag` at `step`, wall time `wall` (Unix seconds). Not thread-safe (the
 * caller serialises; rt_metrics does). 0 or RT_ERR_IO / RT_ERR_NOMEM. */
int rt_tboard_scalar(rt_tboard_t *t, const char *tag, int64_t step, double wall, float value);

/* Write what is buffered to the file. 0 or RT_ERR_IO. */
int rt_tboard_flush(rt_tboard_t *t);

/* The event file's path (valid while t lives). */
const char *rt_tboard_path(const rt_tboard_t *t);

/* Flush, close and null the caller's pointer; accepts NULL, safe twice. */
void rt_tboard_close(rt_tboard_t **self_p);

/* CRC32C (Castagnoli) of n bytes, as TFRecord uses it (unmasked). */
uint32_t rt_tboard_crc32c(const void *data, size_t n);

#endif
