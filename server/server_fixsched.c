/*
 * server_fixsched: constant schedule (see server_fixsched.h).
 */
#include "server_fixsched.h"

#include <stdlib.h>
#include <string.h>

#include "rt_err.h"

static int s_at(void *self, uint64_t step, struct server_coord_point *out)
{
    const struct server_fixsched_cfg *c = self;
    uint64_t per_epoch = c->n_samples / c->batch;
    if (per_epoch == 0)
        per_epoch = 1;
    memset(out, 0, sizeof *out);
    out->epoch = step / per_epoch;
    out->epoch_last = step % per_epoch == per_epoch - 1;
    out->epoch_offset = (step % per_epoch) * c->batch;
    out->version = 1;
    out->batch = c->batch;
    out->samples = c->batch;
    out->lr = c->lr;
    out->gamma = c->gamma;
    out->done = step >= c->steps;
    return RT_OK;
}

static void s_destroy(void *self)
{
    free(self);
}

static const struct server_coord_sched_ops s_ops = {s_at, s_destroy, NULL, NULL, NULL, NULL};

int server_fixsched_new(const struct server_fixsched_cfg *cfg, struct server_coord_sched *out)
{
    out->ops = NULL;
    out->self = NULL;
    if (cfg->batch == 0)
        return rt_err_set(RT_ERR_ARG, "fixed schedule: batch must be positive");
    struct server_fixsched_cfg *c = malloc(sizeof *c);
    if (!c)
        return rt_err_set(RT_ERR_NOMEM, "fixed schedule");
    *c = *cfg;
    out->ops = &s_ops;
    out->self = c;
    return RT_OK;
}

void server_fixsched_destroy(struct server_coord_sched *s)
{
    if (s && s->ops && s->ops->destroy)
        s->ops->destroy(s->self);
    if (s) {
        s->ops = NULL;
        s->self = NULL;
    }
}
