/*
 * rt_ckpt: the on-disk protocol of checkpoints, independent of what they hold.
 *
 * A checkpoint is a directory ROOT/epoch-NNNNNN (NNNNNN: epochs completed, 6 digits) of files that
 * are each written atomically (a temporary name in the same directory, fsync, rename, fsync of the
 * directory). It counts as COMPLETE only when its manifest, MANIFEST.json, exists and matches: the
 * manifest is written last, atomically, and lists every file with its size and zlib crc32, plus
 * free-form metadata (epoch, step, sizes, ...). A crash at any point therefore leaves either a
 * complete checkpoint or a directory without a (matching) manifest, which readers skip.
 *
 * Errors name the directory or file and the field at fault; nothing here asserts on file contents.
 */
#ifndef RT_CKPT_H
#define RT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define RT_CKPT_MANIFEST "MANIFEST.json" /* the manifest's file name */
#define RT_CKPT_FORMAT 1                 /* manifest format written and accepted */
#define RT_CKPT_MAX_FILES 1024           /* files one manifest may list */
#define RT_CKPT_PATH_MAX 4096            /* bytes of a path */
#define RT_CKPT_SUBDIR "checkpoints"     /* the checkpoints' root under an output directory */
#define RT_CKPT_COORD "coord.json"       /* the coordinator's state in a checkpoint */

/* Write len bytes to path atomically (temporary file, fsync, rename, fsync of the directory); an
 * existing file is replaced only once the new one is whole on disk. 0 or RT_ERR_IO naming path. */
int rt_ckpt_write_file(const char *path, const void *data, size_t len);

/* Read a whole file (at most max bytes) into a fresh buffer: *out (caller frees) and *len.
 * RT_ERR_NOTFOUND / RT_ERR_IO / RT_ERR_TOOBIG naming path. */
int rt_ckpt_read_file(const char *path, size_t max, uint8_t **out, size_t *len);

/* Size and zlib crc32 of a file. 0 or RT_ERR_NOTFOUND / RT_ERR_IO naming path. */
int rt_ckpt_file_crc(const char *path, uint64_t *size, uint32_t *crc);

/* mkdir -p dir (a new dir's parent is fsynced). 0 or RT_ERR_IO naming the component. */
int rt_ckpt_mkdirs(const char *dir);

/* A checkpoint's place in a run, as one sortable key: its epoch (the epochs completed before it)
 * and, for a checkpoint within an epoch, its step (the parameter version, > 0); 0 at an epoch's
 * start. Directory names: epoch-NNNNNN, and epoch-NNNNNN-step-SSSSSSSSSSSS within epoch NNNNNN. */
#define RT_CKPT_KEY_STEP_BITS 40
#define RT_CKPT_KEY_STEP_MAX ((1ull << RT_CKPT_KEY_STEP_BITS) - 1)
#define RT_CKPT_KEY(epoch, step) (((uint64_t)(epoch) << RT_CKPT_KEY_STEP_BITS) | (uint64_t)(step))
#define RT_CKPT_KEY_EPOCH(key) ((uint64_t)(key) >> RT_CKPT_KEY_STEP_BITS)
#define RT_CKPT_KEY_STEP(key) ((uint64_t)(key)&RT_CKPT_KEY_STEP_MAX)

/* ROOT/epoch-NNNNNN into buf (cap bytes). 0 or RT_ERR_ARG when it does not fit. */
int rt_ckpt_dir(char *buf, size_t cap, const char *root, uint64_t epoch);

/* The directory of the checkpoint with key `key` (RT_CKPT_KEY) into buf. 0 or RT_ERR_ARG. */
int rt_ckpt_dir_key(char *buf, size_t cap, const char *root, uint64_t key);

/* The key of a checkpoint directory from its last path component. 0, or RT_ERR_FORMAT naming dir
 * when the name is not a checkpoint's. */
int rt_ckpt_dir_parse(const char *dir, uint64_t *key);

/* Write dir/MANIFEST.json listing the n files (names relative to dir, each read back for its size
 * and crc32) with the members of meta (borrowed, may be NULL) at top level. Written atomically and
 * last: the checkpoint is complete from then on. 0 or a negative code naming the file. */
int rt_ckpt_manifest_write(const char *dir, const char *const *files, int n, json_t *meta);

/* Check dir's manifest: it exists and parses, its format is known, and every listed file (or, when
 * `only` is not NULL, only the listed file of that name, which must be listed) exists with the
 * recorded size and crc32. On success *manifest (may be NULL) receives the parsed manifest (caller
 * owns it; json_decref). Errors: RT_ERR_NOTFOUND (no manifest: incomplete, or a file missing),
 * RT_ERR_FORMAT (a field), RT_ERR_SIZE / RT_ERR_CHECKSUM (a file), each naming the file. */
int rt_ckpt_verify(const char *dir, const char *only, json_t **manifest);

/* Integer field `key` of a manifest; 0 or RT_ERR_FORMAT naming dir's manifest and the key. */
int rt_ckpt_manifest_u64(const json_t *manifest, const char *dir, const char *key, uint64_t *out);

/* Keys (RT_CKPT_KEY) of the checkpoint directories under root (other names ignored), newest
 * first, into keys[cap]; *n receives how many (a missing root: 0). 0 or RT_ERR_IO. */
int rt_ckpt_list(const char *root, uint64_t *keys, int cap, int *n);

/* The newest complete checkpoint under root into path (cap bytes) and its epoch (may be NULL).
 * Newer directories that fail rt_ckpt_verify are skipped with a warning naming them and why.
 * 0, or RT_ERR_NOTFOUND when there is none (no detail is an error then: a fresh start). */
int rt_ckpt_latest(const char *root, char *path, size_t cap, uint64_t *epoch);

/* Keep the newest `keep` complete checkpoints under root (keep >= 1) and remove the older ones,
 * and every incomplete directory older than the newest complete one. 0 or RT_ERR_IO. */
int rt_ckpt_prune(const char *root, int keep);

/* Remove every checkpoint directory under root with a key greater than `key` (RT_CKPT_KEY: a run
 * that starts there will write those again; leftovers would mix two runs' files), each named in a
 * warning. 0 or RT_ERR_IO. */
int rt_ckpt_remove_after(const char *root, uint64_t key);

/* Resolve `--resume` for the output directory out_dir: spec NULL or "": no resume (*path = "");
 * "auto": the newest complete checkpoint under out_dir/checkpoints (incomplete newer ones are
 * skipped with a warning naming them; none at all: a fresh start, said in the log, *path = "");
 * anything else: that checkpoint directory, which must be complete (else an error naming it).
 * *epoch (may be NULL) receives its epoch. 0 or a negative rt_err code. */
int rt_ckpt_resolve(const char *out_dir, const char *spec, char *path, size_t cap, uint64_t *epoch);

#endif
