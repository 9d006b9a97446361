/*
 * rt_db: LMDB databases of records, as Caffe lays them out (a directory holding data.mdb and
 * lock.mdb, one unnamed database, keys sorted bytewise).
 *
 * Reading: rt_db_open() opens read-only, walks the keys once and keeps an index, so record i (in
 * key order) is found in O(1). Records are zero-copy views into the memory map, valid until
 * rt_db_destroy(), and may be read from any number of threads at once.
 *
 * Writing: rt_db_writer_new() builds the database beside its destination ("DIR.partial-PID") and
 * rt_db_writer_finish() syncs it and renames it into place, so an interrupted build never leaves
 * something at DIR that looks like a complete database. An existing DIR is replaced only with force
 * (and only when it looks like an LMDB directory). The build directory holds the marker file
 * RT_DB_INCOMPLETE until just before the rename: rt_db_open refuses a directory that holds it (a
 * build that was killed, then moved or pointed at by hand), and when DIR is missing but a
 * DIR.partial-* build is there, the error says that the build was interrupted.
 */
#ifndef RT_DB_H
#define RT_DB_H

#include <stdbool.h>
#include <stddef.h>

/* Map size reserved for a database being written (virtual address space only), as Caffe does. */
#define RT_DB_MAP_SIZE ((size_t)1 << 40)
/* Smallest reservation tried when the address space is limited (the build then fails with
 * "MDB_MAP_FULL" if the data outgrows it). */
#define RT_DB_MAP_SIZE_MIN ((size_t)1 << 30)
/* Records per write transaction while building. */
#define RT_DB_TXN_RECORDS 1000
/* Longest key kept in error details (longer keys are cut). */
#define RT_DB_KEY_MAX 256

/* Marker file of a database directory still being written. */
#define RT_DB_INCOMPLETE "eigenbatch-incomplete"

typedef struct rt_db rt_db_t;
typedef struct rt_db_writer rt_db_writer_t;

/* Open the database in directory `dir` read-only and index its keys. Returns 0 and *out (caller
 * owns it; free with rt_db_destroy), or RT_ERR_NOTFOUND / RT_ERR_LMDB / RT_ERR_NOMEM with a detail
 * naming dir; RT_ERR_FORMAT naming dir and the fix for an unfinished build. */
int rt_db_open(const char *dir, rt_db_t **out);

/* Close the database; accepts NULL, nulls *self_p, safe twice. Invalidates every record view. */
void rt_db_destroy(rt_db_t **self_p);

/* Number of records. */
size_t rt_db_count(const rt_db_t *db);

/* Directory the database was opened from (valid until rt_db_destroy). */
const char *rt_db_path(const rt_db_t *db);

/* Record `index` (0-based, key order): *val points into the map (valid until rt_db_destroy; do
 * not write), *len its size. Thread-safe. RT_ERR_ARG when index >= count. */
int rt_db_record(const rt_db_t *db, size_t index, const void **val, size_t *len);

/* Record [val, val + len) (from rt_db_record) is read: the map's pages wholly inside it leave this
 * process's memory (they stay in the page cache, and come back on the next read). For large
 * records read once an epoch, so that resident memory does not grow with the database. */
void rt_db_record_done(const rt_db_t *db, const void *val, size_t len);

/* Raw key bytes of record `index` (not NUL-terminated; valid until rt_db_destroy). */
const void *rt_db_key_raw(const rt_db_t *db, size_t index, size_t *len);

/* Key of record `index` as printable text in buf (cap bytes, cut to fit, non-printable bytes
 * shown as '?'); returns buf. For error details. */
const char *rt_db_key(const rt_db_t *db, size_t index, char *buf, size_t cap);

/* Start building a database that will end up at `dir`. Fails with RT_ERR_EXISTS when dir exists
 * and force is false (or when it exists, force is true, but it does not look like an LMDB
 * directory). Caller owns *out; free with rt_db_writer_destroy (which discards the build unless
 * rt_db_writer_finish succeeded). */
int rt_db_writer_new(const char *dir, bool force, rt_db_writer_t **out);

/* Store one record. Keys should arrive in increasing order (then appends are cheap); a duplicate
 * key is RT_ERR_EXISTS. Errors name the key. */
int rt_db_writer_put(rt_db_writer_t *w, const void *key, size_t klen, const void *val, size_t vlen);

/* Records stored so far. */
size_t rt_db_writer_count(const rt_db_writer_t *w);

/* Commit, sync, close and rename the build into place (replacing the old DIR when forced). */
int rt_db_writer_finish(rt_db_writer_t *w);

/* Discard an unfinished build (removing its directory) and free; accepts NULL, nulls *self_p. */
void rt_db_writer_destroy(rt_db_writer_t **self_p);

#endif
