/*
 * worker_decide: preparing for the batch sizes the decision stream announces (see
 * worker_decide.h).
 */
#include "worker_decide.h"

#include <string.h>

#include "rt_err.h"
#include "rt_log.h"

int worker_decide_open(struct worker_decide *d, void *ctx, const char *endpoint, const char *name)
{
    memset(d, 0, sizeof *d);
    d->name = name;
    if (!endpoint || !*endpoint)
        return RT_OK;
    int rc = rt_decsub_new(ctx, endpoint, &d->sub);
    if (!rc)
        RT_INFO(name, "subscribed to the decision stream at %s", endpoint);
    return rc;
}

void worker_decide_close(struct worker_decide *d)
{
    rt_decsub_destroy(&d->sub);
}

void worker_decide_poll(struct worker_decide *d, uint64_t step, const struct worker_compute *cb,
                        struct worker_stats *st)
{
    struct rt_wire_decision dec;
    while (d->sub && rt_decsub_poll(d->sub, &dec) == RT_OK) {
        st->decisions++;
        uint32_t b = dec.batch > 0 && dec.batch <= UINT32_MAX ? (uint32_t)dec.batch : 0;
        /* only a change still ahead is worth preparing: the coordinator's schedule is in force */
        int known = 0;
        for (int i = 0; i < WORKER_DECIDE_KEEP; i++)
            known |= d->prep[i].batch == b && d->prep[i].apply_step == dec.apply_step;
        if (!b || b == d->batch || known || dec.apply_step < step)
            continue;
        /* the share this worker would get at B, as its share of the B in force scales */
        uint64_t share = d->batch ? ((uint64_t)d->share * b + d->batch - 1) / d->batch : b;
        if (cb->prepare)
            cb->prepare(cb->user, b, (uint32_t)(share < b ? share : b));
        d->prep[d->next] = (struct worker_decide_prep){b, step, dec.apply_step};
        d->next = (d->next + 1) % WORKER_DECIDE_KEEP;
        st->prepared++;
        st->prepared_batch = b;
        RT_INFO(d->name,
                "decision %llu (epoch %d, lambda %.4g): prepared for B %u (a share of about %llu) "
                "at step %llu; the coordinator stamped it from step %llu",
                (unsigned long long)dec.seq, (int)dec.epoch, dec.lambda, b,
                (unsigned long long)share, (unsigned long long)step,
                (unsigned long long)dec.apply_step);
    }
}

void worker_decide_stamped(struct worker_decide *d, const struct worker_step *step,
                           struct worker_stats *st)
{
    if (d->batch && step->batch != d->batch) {
        int ahead = 0;
        for (int i = 0; i < WORKER_DECIDE_KEEP; i++)
            ahead |= d->prep[i].batch == step->batch && d->prep[i].at <= step->step;
        st->prepared_ahead += ahead ? 1 : 0;
        if (d->sub)
            RT_INFO(d->name, "step %llu: B %u -> %u by the coordinator's schedule (%s)",
                    (unsigned long long)step->step, d->batch, step->batch,
                    ahead ? "prepared ahead" : "not prepared");
    }
    d->batch = step->batch;
    d->share = step->share_count;
}
