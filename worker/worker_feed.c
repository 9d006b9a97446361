/*
 * worker_feed: the loader as a worker's sample source, with read-ahead (see worker_feed.h).
 */
#include "worker_feed.h"

#include <string.h>

#include "rt_err.h"

void worker_feed_init(struct worker_feed *f, rt_loader_t *loader, int depth)
{
    memset(f, 0, sizeof *f);
    f->loader = loader;
    f->depth = depth < 1 ? 1 : depth;
}

/* Submit announced ranges while fewer than depth are in flight. */
static int s_pump(struct worker_feed *f)
{
    while (f->submitted < f->count && f->submitted - f->head < f->depth) {
        const struct worker_feed_range *r = &f->pend[f->submitted];
        struct rt_loader_req req = {
            .epoch = r->epoch, .start = (size_t)r->first, .count = r->n, .augment = true};
        int rc = rt_loader_submit(f->loader, &req);
        if (rc)
            return rc;
        f->submitted++;
    }
    return RT_OK;
}

void worker_feed_reset(struct worker_feed *f)
{
    for (; f->head < f->submitted; f->head++) {
        struct rt_loader_batch b;
        if (rt_loader_wait(f->loader, &b) == RT_OK)
            rt_loader_release(f->loader, &b);
    }
    f->head = f->submitted = f->count = 0;
}

static int s_prefetch(void *user, uint64_t epoch, uint64_t first, uint32_t n)
{
    struct worker_feed *f = user;
    if (f->head == f->count)
        f->head = f->submitted = f->count = 0; /* everything read: start a new list */
    if (f->count >= WORKER_FEED_MAX_PENDING)
        return rt_err_set(RT_ERR_TOOBIG, "feed: more than %d micro-batches announced",
                          WORKER_FEED_MAX_PENDING);
    f->pend[f->count++] = (struct worker_feed_range){epoch, first, n};
    return s_pump(f);
}

static int s_read(void *user, uint64_t epoch, uint64_t first, uint32_t n, float *x, int32_t *y)
{
    struct worker_feed *f = user;
    int rc;
    if (f->head == f->count) {
        /* not announced: load it now */
        if ((rc = s_prefetch(f, epoch, first, n)))
            return rc;
    }
    const struct worker_feed_range *r = &f->pend[f->head];
    if (r->epoch != epoch || r->first != first || r->n != n) {
        worker_feed_reset(f);
        return rt_err_set(RT_ERR_STATE,
                          "feed: read of epoch %llu [%llu, +%u) out of the announced "
                          "order",
                          (unsigned long long)epoch, (unsigned long long)first, n);
    }
    if ((rc = s_pump(f)))
        return rc;
    struct rt_loader_batch b;
    rc = rt_loader_wait(f->loader, &b);
    f->head++;
    if (rc) {
        worker_feed_reset(f);
        return rc;
    }
    int c, h, w;
    rt_loader_shape(f->loader, &c, &h, &w);
    memcpy(x, b.x, (size_t)n * (size_t)c * (size_t)h * (size_t)w * sizeof(float));
    memcpy(y, b.y, (size_t)n * sizeof(int32_t));
    rt_loader_release(f->loader, &b);
    return s_pump(f);
}

struct worker_nn_source worker_feed_source(struct worker_feed *f)
{
    struct worker_nn_source s = {.user = f, .read = s_read, .prefetch = s_prefetch};
    return s;
}
