/*
 * worker_feed: the LMDB loader (rt_loader) as the sample source of a worker's NN compute
 * (struct worker_nn_source). The micro-batches of a step are announced in order before the first
 * is read; the feed keeps up to the loader's queue depth of them loading ahead on the loader's
 * prefetch threads, so decoding and augmentation overlap the forward/backward passes.
 */
#ifndef WORKER_FEED_H
#define WORKER_FEED_H

#include <stddef.h>
#include <stdint.h>

#include "rt_loader.h"
#include "worker_nn.h"

#define WORKER_FEED_MAX_PENDING 4096 /* announced micro-batches per step, at most */

/* One announced range. */
struct worker_feed_range {
    uint64_t epoch; /* epoch of the order */
    uint64_t first; /* first position */
    uint32_t n;     /* samples */
};

/* State of a feed; one per worker (the loader has one caller thread). */
struct worker_feed {
    rt_loader_t *loader; /* borrowed: must outlive the feed; opened with max_batch >= m */
    int depth;           /* requests kept in flight (<= the loader's queue depth) */
    struct worker_feed_range pend[WORKER_FEED_MAX_PENDING]; /* announced, in order */
    int head;                                               /* next range to read */
    int submitted; /* ranges [head, submitted) are submitted */
    int count;     /* ranges announced */
};

/* Initialise a feed over `loader` keeping `depth` requests in flight (>= 1). */
void worker_feed_init(struct worker_feed *f, rt_loader_t *loader, int depth);

/* The source callbacks (user = f). */
struct worker_nn_source worker_feed_source(struct worker_feed *f);

/* Drop what is announced and in flight (after an error), waiting for the loader. */
void worker_feed_reset(struct worker_feed *f);

#endif
