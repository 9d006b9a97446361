/*
 * server_ckpt: what the parameter servers put in a checkpoint, and how a run finds the one to
 * resume from. The directory protocol (atomic files, manifest, completeness) is rt_ckpt's.
 *
 * A checkpoint OUTPUT/checkpoints/epoch-NNNNNN is taken at the end of epoch NNNNNN - 1, at one
 * consistent parameter version (every shard at the step that ends the epoch). It holds:
 *  - shard-I.safetensors per shard I: tensors "params" and "momentum" (the shard's contiguous range
 *    of the flat parameter vector) and "buffers" (its range of the flat BatchNorm buffer vector:
 *    running statistics, averaged by the shards), with the shard's layout, version and epoch in
 *    the safetensors metadata;
 *  - coord.json (the coordinator, shard 0): epoch, step, sizes, the schedule in force at the
 *    epoch's last step (B, lr, gamma, schedule version) and the eigen service's ABS state as the
 *    coordinator holds it (lambda_ref, duration, ...); schedule.bin: the schedule's accepted
 *    decisions and configuration (server_sched_state_encode);
 *  - MANIFEST.json, written last by the coordinator once every shard's file is on disk.
 * Every reader error names the file and the field.
 */
#ifndef SERVER_CKPT_H
#define SERVER_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "rt_ckpt.h"
#include "rt_wire.h"
#include "server_sched.h"

#define SERVER_CKPT_SUBDIR RT_CKPT_SUBDIR /* under the output directory */
#define SERVER_CKPT_COORD RT_CKPT_COORD   /* the coordinator's state */
#define SERVER_CKPT_SCHED "schedule.bin"  /* the schedule's state */
#define SERVER_CKPT_FORMAT 1              /* format of the files above */
#define SERVER_CKPT_MODEL_MAX 64          /* bytes of a model name */
#define SERVER_CKPT_KEEP_DEFAULT 2        /* checkpoints kept */
#define SERVER_CKPT_NAME_MAX 64           /* bytes of a file name in a checkpoint */

/* Layout and position of one shard's file. */
struct server_ckpt_shard {
    int shard;          /* the shard's index */
    int n_shards;       /* shards of the run */
    uint64_t n_params;  /* size of the flat parameter vector */
    uint64_t n_buffers; /* size of the flat buffer vector */
    uint64_t p_off;     /* the shard's parameter range */
    uint64_t p_cnt;
    uint64_t b_off; /* its buffer range */
    uint64_t b_cnt;
    uint64_t version; /* parameter version (= global step) */
    uint64_t epoch;   /* epochs completed */
};

/* The coordinator's part. */
struct server_ckpt_coord {
    uint64_t epoch;                    /* epochs completed (the resumed run starts this epoch) */
    uint64_t step;                     /* parameter version = the first step of the resumed run */
    int n_shards;                      /* shards of the run */
    uint64_t n_params;                 /* size of the flat parameter vector */
    uint64_t n_buffers;                /* size of the flat buffer vector */
    char model[SERVER_CKPT_MODEL_MAX]; /* model name ("" when the coordinator does not know) */
    uint32_t batch;                    /* B of the epoch's last step */
    float lr;                          /* its learning rate */
    float gamma;                       /* its adversarial fraction */
    uint64_t sched_version;            /* its schedule version */
    struct server_sched_state sched;   /* the schedule (configuration and accepted decisions) */
    int has_abs;                       /* the coordinator held an ABS state */
    struct rt_wire_abs abs;            /* the eigen service's ABS state, as last reported */
};

/* File name of shard i's part ("shard-1.safetensors") into buf. */
void server_ckpt_shard_name(char *buf, size_t cap, int shard);

/* Write shard h->shard's file into dir (atomically): w and mom (h->p_cnt floats), bw (h->b_cnt).
 * 0 or a negative rt_err code naming the file. */
int server_ckpt_shard_write(const char *dir, const struct server_ckpt_shard *h, const float *w,
                            const float *mom, const float *bw);

/* Read shard h->shard's file from dir into w, mom (h->p_cnt floats) and bw (h->b_cnt). Its layout
 * must equal *h (shard count, sizes, ranges: else RT_ERR_SHAPE naming the file and the field);
 * h->version and h->epoch receive the file's. 0 or a negative rt_err code. */
int server_ckpt_shard_read(const char *dir, struct server_ckpt_shard *h, float *w, float *mom,
                           float *bw);

/* Write coord.json and schedule.bin into dir (atomically). 0 or a negative rt_err code. */
int server_ckpt_coord_write(const char *dir, const struct server_ckpt_coord *c);

/* Read them back into *c (validated: format, fields, the schedule's encoding). */
int server_ckpt_coord_read(const char *dir, struct server_ckpt_coord *c);

/* Complete checkpoint dir if every shard has written its file for c->step: write the manifest
 * (every shard file, coord.json, schedule.bin; metadata epoch, step, sizes, model). RT_ERR_STATE
 * while a shard's file is missing or from another step (try again later), else 0 or an error. */
int server_ckpt_finish(const char *dir, const struct server_ckpt_coord *c);

/* Check that the complete checkpoint dir suits this run: the manifest lists `file` with the right
 * size and crc32 (file NULL: every file), and records n_shards, n_params and n_buffers equal to
 * these (model too when both are known). *epoch and *step (may be NULL) receive the manifest's.
 * Errors name dir and the field, e.g. "CKPT/MANIFEST.json: n_params is 1000, this run has 2000". */
int server_ckpt_check(const char *dir, const char *file, int n_shards, uint64_t n_params,
                      uint64_t n_buffers, const char *model, uint64_t *epoch, uint64_t *step);

#endif
