/*
 * rt_wire_status: encode and decode the STATUS reply (see rt_wire_status.h). Like rt_wire.c, it
 * sees the generated protobuf-c types; nothing else does.
 */
#include "rt_wire_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_wire_int.h"

/* The protobuf image of a status: every sub-message and string in one allocation. */
struct s_image {
    EbHeader h;
    EbStatus st;
    EbWorkerStatus w[RT_WIRE_STATUS_WORKERS];
    EbWorkerStatus *wp[RT_WIRE_STATUS_WORKERS];
    char names[RT_WIRE_STATUS_WORKERS][RT_WIRE_NAME_MAX];
    EbShardStatus s[RT_WIRE_STATUS_SHARDS];
    EbShardStatus *sp[RT_WIRE_STATUS_SHARDS];
    EbDecision d[RT_WIRE_STATUS_DECISIONS];
    EbDecision *dp[RT_WIRE_STATUS_DECISIONS];
    EbAbsState ab[RT_WIRE_STATUS_DECISIONS];
    char reasons[RT_WIRE_STATUS_DECISIONS][RT_WIRE_REASON_MAX];
    EbEval ev;
    char name[RT_WIRE_NAME_MAX];
};

static void s_workers_to_pb(const struct rt_wire_status *st, struct s_image *im)
{
    int n = st->n_listed_workers;
    for (int i = 0; i < n; i++) {
        const struct rt_wire_worker_status *src = &st->workers[i];
        EbWorkerStatus *w = &im->w[i];
        eb_worker_status__init(w);
        w->id = src->id;
        snprintf(im->names[i], RT_WIRE_NAME_MAX, "%s", src->name);
        w->name = im->names[i];
        w->share = src->share;
        w->speed = src->speed;
        w->heartbeat_age_s = src->heartbeat_age_s;
        w->evicted = src->evicted ? 1 : 0;
        w->join_step = src->join_step;
        w->bad_records = src->bad_records;
        im->wp[i] = w;
    }
    im->st.n_workers = (size_t)n;
    im->st.workers = im->wp;
}

int rt_wire_status_encode(const struct rt_wire_status *st, int32_t sender, const char *name,
                          uint8_t *buf, size_t cap, size_t *len)
{
    if (st->n_listed_workers < 0 || st->n_listed_workers > RT_WIRE_STATUS_WORKERS ||
        st->n_listed_shards < 0 || st->n_listed_shards > RT_WIRE_STATUS_SHARDS ||
        st->n_decisions < 0 || st->n_decisions > RT_WIRE_STATUS_DECISIONS)
        return rt_err_set(RT_ERR_ARG, "status: list sizes out of range");
    struct s_image *im = calloc(1, sizeof *im);
    if (!im)
        return rt_err_set(RT_ERR_NOMEM, "status reply");
    eb_header__init(&im->h);
    im->h.version = RT_WIRE_VERSION;
    im->h.type = EB_TYPE__EB_TYPE_STATUS;
    im->h.sender = sender;
    snprintf(im->name, sizeof im->name, "%s", name ? name : "");
    im->h.name = im->name;
    im->h.trailer = RT_WIRE_TRAILER;
    EbStatus *s = &im->st;
    eb_status__init(s);
    s->version = st->version;
    s->epoch = st->epoch;
    s->step = st->step;
    s->batch = st->batch;
    s->lr = st->lr;
    s->gamma = st->gamma;
    s->sched_version = st->sched_version;
    s->done = st->done ? 1 : 0;
    s->workers_total = st->n_workers;
    s->shards_total = st->n_shards;
    s->uptime_s = st->uptime_s;
    s->images_per_s = st->images_per_s;
    s->loss = st->loss;
    s->train_accuracy = st->train_accuracy;
    s->bad_records = st->bad_records;
    s_workers_to_pb(st, im);
    for (int i = 0; i < st->n_listed_shards; i++) {
        eb_shard_status__init(&im->s[i]);
        im->s[i].shard = st->shards[i].shard;
        im->s[i].heard_age_s = st->shards[i].heard_age_s;
        im->s[i].version = st->shards[i].version;
        im->sp[i] = &im->s[i];
    }
    s->n_shards = (size_t)st->n_listed_shards;
    s->shards = im->sp;
    for (int i = 0; i < st->n_decisions; i++) {
        rt_wire_decision_to_pb(&st->decisions[i], &im->d[i], im->reasons[i], &im->ab[i]);
        im->dp[i] = &im->d[i];
    }
    s->n_decisions = (size_t)st->n_decisions;
    s->decisions = im->dp;
    if (st->eval.present)
        s->eval = rt_wire_eval_to_pb(&st->eval, &im->ev);
    im->h.status = s;
    int rc = RT_OK;
    size_t need = eb_header__get_packed_size(&im->h);
    if (need > cap || need > RT_WIRE_STATUS_MAX)
        rc = rt_err_set(RT_ERR_TOOBIG, "status reply needs %zu bytes, room for %zu", need, cap);
    else
        *len = eb_header__pack(&im->h, buf);
    free(im);
    return rc;
}

/* The lists of a decoded status into st; RT_ERR_FORMAT when one is longer than allowed. */
static int s_lists_from_pb(const EbStatus *s, struct rt_wire_status *st)
{
    if (s->n_workers > RT_WIRE_STATUS_WORKERS || s->n_shards > RT_WIRE_STATUS_SHARDS ||
        s->n_decisions > RT_WIRE_STATUS_DECISIONS)
        return rt_err_set(RT_ERR_FORMAT, "status lists %zu workers, %zu shards, %zu decisions",
                          s->n_workers, s->n_shards, s->n_decisions);
    st->n_listed_workers = (int)s->n_workers;
    for (size_t i = 0; i < s->n_workers; i++) {
        const EbWorkerStatus *w = s->workers[i];
        struct rt_wire_worker_status *d = &st->workers[i];
        d->id = w->id;
        snprintf(d->name, sizeof d->name, "%s", w->name ? w->name : "");
        d->share = w->share;
        d->speed = w->speed;
        d->heartbeat_age_s = w->heartbeat_age_s;
        d->evicted = w->evicted ? 1 : 0;
        d->join_step = w->join_step;
        d->bad_records = w->bad_records;
    }
    st->n_listed_shards = (int)s->n_shards;
    for (size_t i = 0; i < s->n_shards; i++) {
        st->shards[i].shard = s->shards[i]->shard;
        st->shards[i].heard_age_s = s->shards[i]->heard_age_s;
        st->shards[i].version = s->shards[i]->version;
    }
    st->n_decisions = (int)s->n_decisions;
    for (size_t i = 0; i < s->n_decisions; i++)
        rt_wire_decision_from_pb(s->decisions[i], &st->decisions[i]);
    return s->eval ? rt_wire_eval_from_pb(s->eval, "the status reply", &st->eval) : RT_OK;
}

/* The checks of a decoded reply, then its status into st. */
static int s_from_pb(const EbHeader *h, size_t len, struct rt_wire_status *st, char *name)
{
    if (name)
        snprintf(name, RT_WIRE_NAME_MAX, "%s", h->name ? h->name : "");
    if (h->trailer != RT_WIRE_TRAILER)
        return rt_err_set(RT_ERR_TRUNCATED, "status reply (%zu bytes) is cut short", len);
    if (h->version != RT_WIRE_VERSION)
        return rt_err_set(RT_ERR_VERSION, "protocol version %u, this build speaks %d", h->version,
                          RT_WIRE_VERSION);
    if (h->type == EB_TYPE__EB_TYPE_ERROR)
        return rt_err_set(RT_ERR_PEER, "refused: %s", h->text ? h->text : "");
    if (h->type != EB_TYPE__EB_TYPE_STATUS || !h->status)
        return rt_err_set(RT_ERR_FORMAT, "answer is a %s message, not a status",
                          rt_wire_type_name((int)h->type));
    const EbStatus *s = h->status;
    memset(st, 0, sizeof *st);
    st->version = s->version;
    st->epoch = s->epoch;
    st->step = s->step;
    st->batch = s->batch;
    st->lr = s->lr;
    st->gamma = s->gamma;
    st->sched_version = s->sched_version;
    st->done = s->done ? 1 : 0;
    st->n_workers = s->workers_total;
    st->n_shards = s->shards_total;
    st->uptime_s = s->uptime_s;
    st->images_per_s = s->images_per_s;
    st->loss = s->loss;
    st->train_accuracy = s->train_accuracy;
    st->bad_records = s->bad_records;
    return s_lists_from_pb(s, st);
}

int rt_wire_status_decode(const void *frame, size_t len, struct rt_wire_status *st, char *name)
{
    if (!frame || len == 0)
        return rt_err_set(RT_ERR_TRUNCATED, "empty status reply");
    if (len > RT_WIRE_STATUS_MAX)
        return rt_err_set(RT_ERR_TOOBIG, "status reply of %zu bytes exceeds %d", len,
                          RT_WIRE_STATUS_MAX);
    EbHeader *h = eb_header__unpack(NULL, len, frame);
    if (!h)
        return rt_err_set(RT_ERR_FORMAT, "status reply (%zu bytes) is not a valid EbHeader", len);
    int rc = s_from_pb(h, len, st, name);
    eb_header__free_unpacked(h, NULL);
    return rc;
}
