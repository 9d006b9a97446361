/*
 * rt_wire_status: the coordinator's answer to a STATUS query (`eigenbatch status`): the
 * workers (share, speed, last heartbeat), the shards, the schedule of the step in progress and
 * the latest decisions. It is one header frame, an EbHeader of type STATUS carrying an EbStatus,
 * that may exceed RT_WIRE_MAX_HEADER (up to RT_WIRE_STATUS_MAX bytes), so it has its own encoder
 * and decoder; the query itself is an ordinary message (rt_wire.h).
 */
#ifndef RT_WIRE_STATUS_H
#define RT_WIRE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "rt_wire.h"

#define RT_WIRE_STATUS_MAX (1 << 17) /* largest STATUS reply frame, bytes */
#define RT_WIRE_STATUS_WORKERS 256   /* workers listed at most */
#define RT_WIRE_STATUS_SHARDS 256    /* shards listed at most */
#define RT_WIRE_STATUS_DECISIONS 8   /* latest decisions listed at most */

/* One worker as the coordinator sees it. */
struct rt_wire_worker_status {
    int32_t id;                  /* worker id */
    char name[RT_WIRE_NAME_MAX]; /* the name it registered with */
    double share;                /* fraction of the global batch from the next unasked step */
    double speed;                /* smoothed reported samples/s (0: none yet) */
    double heartbeat_age_s;      /* seconds since it was last heard from */
    int evicted;                 /* evicted (and not rejoined) */
    uint64_t join_step;          /* first step it takes part in */
    uint64_t bad_records;        /* undecodable records its loaders skipped, over its restarts */
};

/* One shard: shard 0 itself, the others as last heard from. */
struct rt_wire_shard_status {
    int32_t shard;      /* index */
    double heard_age_s; /* seconds since shard 0 heard from it (-1: never; 0: shard 0 itself) */
    uint64_t version;   /* shard 0: its parameter version (others: 0) */
};

/* The run as the coordinator sees it. */
struct rt_wire_status {
    uint64_t version;       /* parameter version: steps completed */
    uint64_t epoch;         /* the schedule of the step in progress: its epoch, */
    uint64_t step;          /* the step, */
    uint32_t batch;         /* its global batch B, */
    float lr;               /* learning rate, */
    float gamma;            /* adversarial fraction, */
    uint64_t sched_version; /* and schedule version */
    int done;               /* training is over */
    uint32_t n_workers;     /* configured workers */
    uint32_t n_shards;      /* configured shards */
    double uptime_s;        /* seconds since shard 0 started */
    double images_per_s;    /* samples per second over the recent steps */
    float loss;             /* mean loss of the last step over every worker */
    float train_accuracy;   /* fraction of its samples classified correctly */
    int n_listed_workers;   /* entries of workers[] */
    struct rt_wire_worker_status workers[RT_WIRE_STATUS_WORKERS];
    int n_listed_shards; /* entries of shards[] */
    struct rt_wire_shard_status shards[RT_WIRE_STATUS_SHARDS];
    int n_decisions; /* entries of decisions[], oldest first */
    struct rt_wire_decision decisions[RT_WIRE_STATUS_DECISIONS]; /* with verdict, apply_step */
    struct rt_wire_eval eval; /* the latest test-set evaluation reported, or none */
    uint64_t bad_records;     /* the workers' bad_records summed */
};

/* Encode a STATUS reply from `sender` (`name`) carrying st into buf (cap bytes); *len receives
 * its size. Returns 0, or RT_ERR_TOOBIG when it needs more than cap or RT_WIRE_STATUS_MAX. */
int rt_wire_status_encode(const struct rt_wire_status *st, int32_t sender, const char *name,
                          uint8_t *buf, size_t cap, size_t *len);

/* Decode a reply frame (len bytes) to a STATUS query into *st (the caller's; it is large: 80 KiB)
 * and its sender's name into name (RT_WIRE_NAME_MAX bytes, may be NULL). Checks the trailer, the
 * version, the type and the list sizes. Returns 0; RT_ERR_PEER (detail: the text) when the
 * reply is an ERROR; or a negative rt_err code naming what is wrong. */
int rt_wire_status_decode(const void *frame, size_t len, struct rt_wire_status *st, char *name);

#endif
