/*
 * worker_loop: the data-parallel worker (see worker_loop.h).
 */
#include "worker_loop.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "nn_base.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "worker_decide.h"

#define S_POLL_MS 1000      /* poll slice; a heartbeat goes out after each silent slice */
#define S_TIMEOUT_MS 60000  /* default: a shard silent this long is an error */
#define S_RETRY_NS 5000000L /* pause before asking the schedule again while others join */
#define S_REGISTER_RETRY_NS 250000000L /* ... registering again while every slot is taken */
#define S_LINGER_MS 2000               /* time to deliver the goodbye on close */
#define S_MAX_SHARDS 1024              /* sanity limit on the shard count */
#define S_RATE_EMA 0.3                 /* weight of the newest throughput measurement */

struct s_shard {
    void *sock;            /* DEALER connected to the shard */
    uint64_t p_off, p_cnt; /* the shard's parameter range */
    uint64_t b_off, b_cnt; /* the shard's buffer range */
    uint64_t got_p;        /* floats of the current weights reply received */
    int got_b;             /* buffer slice of the current reply received */
    int acked;             /* ACK received */
};

/* The heartbeat thread: while the worker computes (or runs any callback), it owns the
 * coordinator's socket and says "alive" every period, so that a long step, FGSM or an evaluation
 * never looks like a dead worker. The mutex hands the socket over (a full memory barrier, as
 * ZeroMQ asks of a socket that changes threads). */
struct s_beat {
    pthread_t thread;   /* the thread */
    pthread_mutex_t mu; /* guards everything below, and the socket while `active` */
    pthread_cond_t cv;  /* wakes the thread (period, state change) */
    int started;        /* thread and sync objects exist */
    int active;         /* the thread owns the coordinator's socket */
    int quit;           /* the thread must end */
    struct s_worker *w; /* the worker (its socket to shard 0, id, name) */
};

struct s_worker {
    const struct worker_cfg *cfg;    /* configuration (borrowed) */
    const struct worker_compute *cb; /* model side (borrowed) */
    void *ctx;                       /* ZeroMQ context */
    int own_ctx;                     /* ctx created here */
    struct s_shard *sh;              /* n_shards entries */
    float *params;                   /* n_params: weights of the current version */
    float *grads;                    /* n_params: gradient being pushed */
    float *buffers;                  /* n_buffers (+1): running statistics */
    struct rt_sock_in in;            /* the last reply received */
    struct rt_sock_zc *zc;           /* zero-copy frames in flight */
    int id;                          /* worker id from the coordinator */
    uint64_t token;                  /* its registration token (WELCOME), shown in every HELLO */
    uint64_t start;                  /* first step (WELCOME; > 0 when the run resumed) */
    int n_workers;                   /* workers in the run */
    double rate;                     /* measured samples per compute second (EMA), 0: none */
    uint32_t chunk;                  /* floats per pushed frame */
    int beat_ms;                     /* heartbeat period (the coordinator's, else S_POLL_MS) */
    double last_beat;                /* monotonic time of the last message to shard 0 */
    double coord_heard;              /* ... of the last message from shard 0 (0: none yet) */
    struct s_beat beat;              /* heartbeats while a callback runs */
    char name[RT_WIRE_NAME_MAX];     /* for logs and headers */
    struct worker_stats st;          /* counters */
    struct worker_decide dec;        /* the decision stream (cfg->decisions) */
};

static int s_send(struct s_worker *w, int shard, struct rt_wire_msg *m, const float *p,
                  const float *b)
{
    int rc = rt_sock_send(w->sh[shard].sock, NULL, 0, m, p, b, w->zc);
    if (!rc && shard == 0)
        w->last_beat = rt_clock_now();
    if (rc)
        return rt_err_set(rc, "%s: send %s to shard %d: %s", w->name, rt_wire_type_name(m->type),
                          shard, rt_err_msg());
    return RT_OK;
}

static int s_send_simple(struct s_worker *w, int shard, enum rt_wire_type type, uint64_t step)
{
    struct rt_wire_msg m;
    rt_wire_msg_init(&m, type, w->id, w->name);
    m.step = step;
    m.token = w->token;
    if ((type == RT_WIRE_SCHED_QUERY || type == RT_WIRE_HEARTBEAT) && shard == 0) {
        /* what the coordinator shows of this worker: the lead's evaluation, skipped records */
        if (w->cb->evaluation && !w->cb->evaluation(w->cb->user, &m.eval))
            memset(&m.eval, 0, sizeof m.eval);
        if (w->cb->bad_records)
            m.bad_records = w->cb->bad_records(w->cb->user);
    }
    if (type == RT_WIRE_REGISTER)
        m.weight = w->cfg->weight > 0 ? w->cfg->weight : 1.0;
    else if (type == RT_WIRE_SCHED_QUERY && w->cfg->rebalance)
        m.weight = w->rate; /* speed = 1 / compute time per sample; 0 until measured: none */
    m.n_params = w->cfg->n_params;
    m.n_buffers = w->cfg->n_buffers;
    return s_send(w, shard, &m, NULL, NULL);
}

/* Wait for the next message from any shard: *shard gets its index, *m the decoded header, pp and bp
 * the payloads (valid until the next call). Heartbeats go to the coordinator while waiting.
 * Malformed replies are logged and skipped. */
static int s_next(struct s_worker *w, int *shard, struct rt_wire_msg *m, const void **pp,
                  const void **bp)
{
    int ns = w->cfg->n_shards;
    zmq_pollitem_t items[S_MAX_SHARDS];
    int timeout = w->cfg->timeout_ms > 0 ? w->cfg->timeout_ms : S_TIMEOUT_MS;
    double deadline = rt_clock_now() + timeout / 1000.0;
    /* heartbeats must go out, and be answered, well within the timeout */
    int slice = timeout / 4 < S_POLL_MS ? (timeout / 4 > 0 ? timeout / 4 : 1) : S_POLL_MS;
    if (slice > w->beat_ms)
        slice = w->beat_ms; /* ... and often enough for the coordinator not to evict us */
    for (;;) {
        if (w->id >= 0 && (rt_clock_now() - w->last_beat) * 1000.0 >= slice)
            s_send_simple(w, 0, RT_WIRE_HEARTBEAT, 0);
        if (w->cfg->stop && atomic_load(w->cfg->stop))
            return rt_err_set(RT_ERR_INTERRUPTED, "%s: stopped", w->name);
        for (int i = 0; i < ns; i++) {
            items[i].socket = w->sh[i].sock;
            items[i].fd = 0;
            items[i].events = ZMQ_POLLIN;
            items[i].revents = 0;
        }
        int n = zmq_poll(items, ns, slice);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            return rt_err_set(RT_ERR_ZMQ, "%s: poll: %s", w->name, zmq_strerror(zmq_errno()));
        }
        if (n == 0) {
            double now = rt_clock_now();
            if (now > deadline)
                return rt_err_set(RT_ERR_TIMEOUT, "%s: no answer from the shards for %d ms",
                                  w->name, timeout);
            if (w->coord_heard == 0)
                w->coord_heard = now;
            if (w->cfg->coord_timeout_ms > 0 &&
                (now - w->coord_heard) * 1000.0 > w->cfg->coord_timeout_ms)
                return rt_err_set(RT_ERR_TIMEOUT,
                                  "%s: the coordinator (shard 0) has been silent for %.0f ms "
                                  "(cluster.coordinator_timeout_ms %d): stopping",
                                  w->name, (now - w->coord_heard) * 1000.0,
                                  w->cfg->coord_timeout_ms);
            continue;
        }
        for (int i = 0; i < ns; i++) {
            if (!(items[i].revents & ZMQ_POLLIN))
                continue;
            char from[32];
            snprintf(from, sizeof from, "shard %d", i);
            int rc = rt_sock_recv_msg(w->sh[i].sock, &w->in, ZMQ_DONTWAIT, from);
            if (rc == RT_ERR_TIMEOUT)
                continue; /* nothing, or only malformed replies (logged and dropped) */
            if (rc)
                return rc;
            if (i == 0)
                w->coord_heard = rt_clock_now();
            *m = w->in.m;
            *pp = w->in.params;
            *bp = w->in.buffers;
            if (m->type == RT_WIRE_HEARTBEAT) {
                /* the coordinator is alive: a slow step is not a dead cluster */
                deadline = rt_clock_now() + timeout / 1000.0;
                continue;
            }
            *shard = i;
            return RT_OK;
        }
    }
}

/* A registration refused because every slot is taken: a restarted worker whose dead predecessor is
 * not evicted yet. Ask again after a pause until `until` (monotonic seconds); returns 1 when the
 * REGISTER went out again, 0 when the refusal stands. */
static int s_register_again(struct s_worker *w, const struct rt_wire_msg *m, double until)
{
    if (m->err_code != RT_ERR_STATE || rt_clock_now() > until)
        return 0;
    RT_DEBUG(w->name, "registration refused (%s): asking again", m->text);
    struct timespec ts = {0, S_REGISTER_RETRY_NS};
    nanosleep(&ts, NULL);
    return s_send_simple(w, 0, RT_WIRE_REGISTER, 0) == RT_OK;
}

/* Register with the coordinator and bind at every shard; learn the shards' ranges. */
static int s_join(struct s_worker *w)
{
    struct rt_wire_msg m;
    const void *pp, *bp;
    int shard, rc;
    rc = s_send_simple(w, 0, RT_WIRE_REGISTER, 0);
    if (rc)
        return rc;
    double until =
        rt_clock_now() + (w->cfg->timeout_ms > 0 ? w->cfg->timeout_ms : S_TIMEOUT_MS) / 1000.0;
    for (;;) {
        rc = s_next(w, &shard, &m, &pp, &bp);
        if (rc)
            return rc;
        if (m.type == RT_WIRE_ERROR && s_register_again(w, &m, until))
            continue;
        if (m.type == RT_WIRE_ERROR)
            return rt_err_set(RT_ERR_PEER, "%s: registration refused: %s", w->name, m.text);
        if (m.type == RT_WIRE_WELCOME && shard == 0)
            break;
        RT_WARN(w->name, "ignored %s from shard %d while registering", rt_wire_type_name(m.type),
                shard);
    }
    if (m.n_params != w->cfg->n_params || m.n_buffers != w->cfg->n_buffers)
        return rt_err_set(
            RT_ERR_SHAPE, "%s: servers hold %llu params / %llu buffers, the model has %llu / %llu",
            w->name, (unsigned long long)m.n_params, (unsigned long long)m.n_buffers,
            (unsigned long long)w->cfg->n_params, (unsigned long long)w->cfg->n_buffers);
    if ((int)m.n_shards != w->cfg->n_shards)
        return rt_err_set(RT_ERR_CONFIG, "%s: coordinator has %u shards, this worker knows %d",
                          w->name, m.n_shards, w->cfg->n_shards);
    w->id = m.sender;
    w->token = m.token;
    w->n_workers = (int)m.n_workers;
    if (m.heartbeat_ms > 0 && m.heartbeat_ms < (uint32_t)w->beat_ms)
        w->beat_ms = (int)m.heartbeat_ms;
    w->start = m.step;
    w->st.worker = w->id;
    snprintf(w->name, sizeof w->name, "worker-%d", w->id);
    for (int i = 0; i < w->cfg->n_shards; i++) {
        rc = s_send_simple(w, i, RT_WIRE_HELLO, 0);
        if (rc)
            return rc;
    }
    int acked = 0;
    while (acked < w->cfg->n_shards) {
        rc = s_next(w, &shard, &m, &pp, &bp);
        if (rc)
            return rc;
        if (m.type == RT_WIRE_ERROR)
            return rt_err_set(RT_ERR_PEER, "%s: shard %d refused: %s", w->name, shard, m.text);
        if (m.type != RT_WIRE_ACK || w->sh[shard].acked)
            continue;
        struct s_shard *s = &w->sh[shard];
        uint64_t eo, ec;
        rt_wire_partition(w->cfg->n_params, w->cfg->n_shards, shard, &eo, &ec);
        if (m.params_range.offset != eo || m.params_range.count != ec)
            return rt_err_set(RT_ERR_CONFIG,
                              "%s: shard %d owns [%llu, +%llu), expected [%llu, +%llu)", w->name,
                              shard, (unsigned long long)m.params_range.offset,
                              (unsigned long long)m.params_range.count, (unsigned long long)eo,
                              (unsigned long long)ec);
        s->p_off = m.params_range.offset;
        s->p_cnt = m.params_range.count;
        rt_wire_partition(w->cfg->n_buffers, w->cfg->n_shards, shard, &s->b_off, &s->b_cnt);
        if (m.buffers_range.offset != s->b_off || m.buffers_range.count != s->b_cnt)
            return rt_err_set(RT_ERR_CONFIG, "%s: shard %d buffer range differs", w->name, shard);
        s->acked = 1;
        acked++;
    }
    RT_INFO(w->name, "joined: %d workers, %d shards", w->n_workers, w->cfg->n_shards);
    return RT_OK;
}

/* Send this worker's slices (gradients or initial weights) to every shard, chunk by chunk, the
 * shards interleaved so that they all work at once. */
static int s_push(struct s_worker *w, enum rt_wire_type type, uint64_t step, const float *p,
                  const float *b, const struct worker_step *st, uint32_t samples, float loss,
                  uint32_t correct)
{
    int ns = w->cfg->n_shards;
    uint64_t max_cnt = 0;
    for (int i = 0; i < ns; i++)
        if (w->sh[i].p_cnt > max_cnt)
            max_cnt = w->sh[i].p_cnt;
    for (uint64_t done = 0; done < max_cnt || done == 0; done += w->chunk) {
        for (int i = 0; i < ns; i++) {
            struct s_shard *s = &w->sh[i];
            if (done >= s->p_cnt && !(done == 0 && s->b_cnt))
                continue;
            struct rt_wire_msg m;
            rt_wire_msg_init(&m, type, w->id, w->name);
            m.step = step;
            m.checksum = w->cfg->checksum;
            m.samples = samples;
            m.loss = loss;
            m.correct = correct;
            if (st) {
                m.lr = st->lr;
                m.sched_version = st->sched_version;
            }
            uint64_t k = s->p_cnt - done < w->chunk ? s->p_cnt - done : w->chunk;
            if (done < s->p_cnt) {
                m.has_params = 1;
                m.params.offset = s->p_off + done;
                m.params.count = k;
            }
            if (done == 0 && s->b_cnt) {
                m.has_buffers = 1;
                m.buffers.offset = s->b_off;
                m.buffers.count = s->b_cnt;
            }
            int rc = s_send(w, i, &m, m.has_params ? p + m.params.offset : NULL,
                            m.has_buffers ? b + s->b_off : NULL);
            if (rc)
                return rc;
            w->st.bytes_pushed += (m.has_params ? m.params.count : 0) * sizeof(float) +
                                  (m.has_buffers ? m.buffers.count : 0) * sizeof(float);
        }
        if (max_cnt == 0)
            break;
    }
    return RT_OK;
}

/* Ask for the schedule of `step` and the weights of version `step`; wait for all of it. *totals
 * receives the coordinator's totals of step - 1 (samples, loss, correct of shard 0's WEIGHTS). */
static int s_pull(struct s_worker *w, uint64_t step, struct rt_wire_msg *sched,
                  struct rt_wire_msg *totals)
{
    int ns = w->cfg->n_shards, rc, shard;
    rc = s_send_simple(w, 0, RT_WIRE_SCHED_QUERY, step);
    if (rc)
        return rc;
    for (int i = 0; i < ns; i++) {
        w->sh[i].got_p = 0;
        w->sh[i].got_b = 0;
        rc = s_send_simple(w, i, RT_WIRE_PULL, step);
        if (rc)
            return rc;
    }
    int have_sched = 0, complete = 0;
    while (!have_sched || complete < ns) {
        struct rt_wire_msg m;
        const void *pp, *bp;
        rc = s_next(w, &shard, &m, &pp, &bp);
        if (rc)
            return rc;
        if (m.type == RT_WIRE_ERROR) {
            if (shard == 0 && m.err_code == RT_ERR_STATE && !have_sched && m.step == step) {
                /* the coordinator waits for the other workers to join: ask again */
                struct timespec ts = {0, S_RETRY_NS};
                nanosleep(&ts, NULL);
                rc = s_send_simple(w, 0, RT_WIRE_SCHED_QUERY, step);
                if (rc)
                    return rc;
                continue;
            }
            return rt_err_set(m.err_code == RT_ERR_EVICTED ? RT_ERR_EVICTED : RT_ERR_PEER,
                              "%s: shard %d refused step %llu: %s", w->name, shard,
                              (unsigned long long)step, m.text);
        }
        if (m.type == RT_WIRE_SCHED && shard == 0 && m.step == step) {
            *sched = m;
            have_sched = 1;
            continue;
        }
        if (m.type != RT_WIRE_WEIGHTS || m.step != step) {
            RT_WARN(w->name, "ignored %s (step %llu) from shard %d while pulling step %llu",
                    rt_wire_type_name(m.type), (unsigned long long)m.step, shard,
                    (unsigned long long)step);
            continue;
        }
        if (shard == 0)
            *totals = m;
        struct s_shard *s = &w->sh[shard];
        if (m.has_params) {
            if (m.params.offset != s->p_off + s->got_p || m.params.count > s->p_cnt - s->got_p) {
                RT_WARN(w->name, "dropped weights chunk from shard %d: out of its range", shard);
                continue;
            }
            memcpy(w->params + m.params.offset, pp, m.params.count * sizeof(float));
            s->got_p += m.params.count;
            w->st.bytes_pulled += m.params.count * sizeof(float);
        }
        if (m.has_buffers) {
            if (m.buffers.offset != s->b_off || m.buffers.count != s->b_cnt) {
                RT_WARN(w->name, "dropped buffer slice from shard %d: not its range", shard);
                continue;
            }
            memcpy(w->buffers + s->b_off, bp, s->b_cnt * sizeof(float));
            s->got_b = 1;
            w->st.bytes_pulled += s->b_cnt * sizeof(float);
        }
        if (s->got_p == s->p_cnt && (s->b_cnt == 0 || s->got_b)) {
            s->got_p = s->p_cnt + 1; /* counted once */
            complete++;
        }
    }
    return RT_OK;
}

static void *s_beat_main(void *arg)
{
    struct s_beat *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)b->w->beat_ms * 1000000L;
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        int rc = pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        if (b->quit)
            break;
        if (rc == ETIMEDOUT && b->active &&
            (rt_clock_now() - b->w->last_beat) * 1000.0 >= b->w->beat_ms &&
            s_send_simple(b->w, 0, RT_WIRE_HEARTBEAT, 0))
            RT_WARN(b->w->name, "heartbeat: %s", rt_err_msg());
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* Start the heartbeat thread (idle until s_beat_lend). */
static int s_beat_start(struct s_worker *w)
{
    struct s_beat *b = &w->beat;
    b->w = w;
    if (pthread_mutex_init(&b->mu, NULL))
        return rt_err_set(RT_ERR_NOMEM, "%s: heartbeat mutex", w->name);
    if (pthread_cond_init(&b->cv, NULL)) {
        pthread_mutex_destroy(&b->mu);
        return rt_err_set(RT_ERR_NOMEM, "%s: heartbeat condition", w->name);
    }
    if (pthread_create(&b->thread, NULL, s_beat_main, b)) {
        pthread_cond_destroy(&b->cv);
        pthread_mutex_destroy(&b->mu);
        return rt_err_set(RT_ERR_NOMEM, "%s: heartbeat thread", w->name);
    }
    b->started = 1;
    return RT_OK;
}

/* Lend the coordinator's socket to the heartbeat thread (before a callback) or take it back
 * (after; the thread sends nothing more until lent again). */
static void s_beat_lend(struct s_worker *w, int lend)
{
    struct s_beat *b = &w->beat;
    if (!b->started)
        return;
    pthread_mutex_lock(&b->mu);
    b->active = lend;
    pthread_mutex_unlock(&b->mu);
}

static void s_beat_stop(struct s_worker *w)
{
    struct s_beat *b = &w->beat;
    if (!b->started)
        return;
    pthread_mutex_lock(&b->mu);
    b->quit = 1;
    b->active = 0;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    b->started = 0;
}

static void s_destroy(struct s_worker *w)
{
    s_beat_stop(w);
    worker_decide_close(&w->dec);
    for (int i = 0; w->sh && i < w->cfg->n_shards; i++)
        rt_sock_close(&w->sh[i].sock, S_LINGER_MS);
    rt_sock_in_close(&w->in);
    /* frames a peer never read still point into the buffers: they go with the last of them */
    void *const bufs[] = {w->params, w->grads, w->buffers};
    long left = rt_sock_zc_release(w->zc, nn_free, bufs, 3);
    w->zc = NULL;
    if (left)
        RT_INFO(w->name,
                "%ld zero-copy frames still queued; their buffers go when ZeroMQ drops them", left);
    if (w->own_ctx)
        rt_sock_ctx_destroy(&w->ctx);
    free(w->sh);
}

/*
 * Set up w for cfg and cb: limits, buffers, the ZeroMQ context (cfg's, else one of its own) and
 * a DEALER per shard. Returns 0 or a negative rt_err code; s_destroy releases w either way.
 */
static int s_setup(struct s_worker *w, const struct worker_cfg *cfg,
                   const struct worker_compute *cb)
{
    memset(w, 0, sizeof *w);
    w->cfg = cfg;
    w->cb = cb;
    w->id = -1;
    w->chunk = cfg->chunk_floats ? cfg->chunk_floats : RT_WIRE_CHUNK_FLOATS_DEFAULT;
    w->beat_ms = S_POLL_MS;
    snprintf(w->name, sizeof w->name, "%s", cfg->name ? cfg->name : "worker");
    struct rt_wire_limits lim = {
        .n_params = cfg->n_params,
        .n_buffers = cfg->n_buffers,
        .max_floats = cfg->n_params > cfg->n_buffers ? cfg->n_params : cfg->n_buffers,
    };
    rt_sock_in_init(&w->in, w->name, 0, &lim);
    w->zc = rt_sock_zc_new();
    w->sh = calloc((size_t)cfg->n_shards, sizeof *w->sh);
    w->params = nn_alloc(cfg->n_params * sizeof(float));
    w->grads = nn_alloc(cfg->n_params * sizeof(float));
    w->buffers = nn_alloc((cfg->n_buffers + 1) * sizeof(float));
    if (!w->zc || !w->sh || !w->params || !w->grads || !w->buffers) {
        rt_err_set(RT_ERR_NOMEM, "worker: %llu parameters", (unsigned long long)cfg->n_params);
        return RT_ERR_NOMEM;
    }
    if (cfg->zmq_ctx) {
        w->ctx = cfg->zmq_ctx;
    } else {
        w->ctx = rt_sock_ctx_new(1);
        if (!w->ctx)
            return RT_ERR_ZMQ;
        w->own_ctx = 1;
    }
    for (int i = 0; i < cfg->n_shards; i++) {
        int rc = rt_sock_dealer(w->ctx, cfg->endpoints[i], &w->sh[i].sock);
        if (rc)
            return rc;
    }
    return worker_decide_open(&w->dec, w->ctx, cfg->decisions, w->name);
}

/*
 * Worker 0 of a fresh run (not resumed, not rejoining) fills the initial weights with cb->init
 * and sends them to the shards (INIT). Returns 0 or a negative rt_err code.
 */
static int s_init_weights(struct s_worker *w)
{
    const struct worker_compute *cb = w->cb;
    if (w->id != 0 || !cb->init || w->start != 0)
        return RT_OK;
    s_beat_lend(w, 1);
    int rc = cb->init(cb->user, w->params, w->buffers);
    s_beat_lend(w, 0);
    if (rc)
        return rc;
    return s_push(w, RT_WIRE_INIT, 0, w->params, w->buffers, NULL, 0, 0.0f, 0);
}

/*
 * One training step st (its schedule filled in): compute the gradient with cb->compute (timed
 * into *compute_s and the throughput estimate), push it, then cb->step_done. Returns 0 or rc.
 */
static int s_step(struct s_worker *w, struct worker_step *st, double *compute_s)
{
    const struct worker_compute *cb = w->cb;
    uint32_t samples = 0;
    float loss = 0;
    double c0 = rt_clock_now();
    s_beat_lend(w, 1);
    int rc = cb->compute(cb->user, st, w->params, w->grads, w->buffers, &samples, &loss);
    s_beat_lend(w, 0);
    double dt = rt_clock_now() - c0;
    *compute_s += dt;
    if (samples > 0 && dt > 0) {
        double r = samples / dt;
        w->rate = w->rate > 0 ? (1 - S_RATE_EMA) * w->rate + S_RATE_EMA * r : r;
    }
    if (rc) {
        rt_err_set(rc, "%s: compute failed at step %llu: %s", w->name, (unsigned long long)st->step,
                   rt_err_msg());
        return rc;
    }
    if (!isfinite(loss))
        /* diverged weights, bad data or a faulty device: never pushed (the shards would reject
         * it), the run stops with the reason */
        return rt_err_set(RT_ERR_NONFINITE,
                          "%s: the loss of step %llu (epoch %llu) is not finite (%g): stopping "
                          "without pushing it (labels within model.classes? lr too high?)",
                          w->name, (unsigned long long)st->step, (unsigned long long)st->epoch,
                          (double)loss);
    uint32_t correct = cb->correct ? cb->correct(cb->user) : 0;
    rc = s_push(w, RT_WIRE_PUSH, st->step, w->grads, w->buffers, st, samples, loss, correct);
    if (rc)
        return rc;
    if (cb->step_done) {
        s_beat_lend(w, 1);
        cb->step_done(cb->user, st, samples, loss);
        s_beat_lend(w, 0);
    }
    return RT_OK;
}

/*
 * The training loop from w->start: pull the schedule and weights of step t (reporting the
 * previous step's totals to cb->totals), stop when the schedule says done, else run the step.
 * Fills w->st (steps, seconds, comm_seconds). Returns 0 or a negative rt_err code.
 */
static int s_train(struct s_worker *w)
{
    const struct worker_compute *cb = w->cb;
    double t0 = rt_clock_now(), compute_s = 0;
    struct worker_step prev = {0}; /* the step before t */
    for (uint64_t t = w->start;; t++) {
        struct rt_wire_msg sm = {0}, tm = {0};
        worker_decide_poll(&w->dec, t, cb, &w->st); /* advice for later steps, before this one */
        int rc = s_pull(w, t, &sm, &tm);
        if (rc)
            return rc;
        if (cb->lead)
            cb->lead(cb->user, sm.sched.lead == w->id);
        if (t > w->start && cb->totals) {
            struct worker_totals tot = {.step = t - 1,
                                        .epoch = prev.epoch,
                                        .samples = tm.samples,
                                        .correct = tm.correct,
                                        .loss_sum = (double)tm.loss * (double)tm.samples};
            s_beat_lend(w, 1);
            cb->totals(cb->user, &tot);
            s_beat_lend(w, 0);
        }
        if (sm.sched.done) {
            w->st.steps = t;
            break;
        }
        struct worker_step st = {
            .step = t,
            .epoch = sm.sched.epoch,
            .epoch_offset = sm.sched.epoch_offset,
            .sched_version = sm.sched_version,
            .batch = sm.sched.batch,
            .samples = sm.sched.samples,
            .lr = sm.sched.lr,
            .gamma = sm.sched.gamma,
            .share_offset = sm.sched.share_offset,
            .share_count = sm.sched.share_count,
            .worker = w->id,
            .n_workers = w->n_workers,
        };
        worker_decide_stamped(&w->dec, &st, &w->st);
        rc = s_step(w, &st, &compute_s);
        if (rc)
            return rc;
        prev = st;
    }
    w->st.seconds = rt_clock_now() - t0;
    w->st.comm_seconds = w->st.seconds - compute_s;
    return RT_OK;
}

int worker_run(const struct worker_cfg *cfg, const struct worker_compute *cb,
               struct worker_stats *stats)
{
    if (!cfg || !cb || !cb->compute || cfg->n_shards < 1 || cfg->n_shards > S_MAX_SHARDS ||
        !cfg->endpoints || cfg->n_params < (uint64_t)cfg->n_shards)
        return rt_err_set(RT_ERR_ARG, "worker: invalid configuration");
    struct s_worker w;
    int rc = s_setup(&w, cfg, cb);
    if (!rc)
        rc = s_join(&w);
    if (!rc)
        rc = s_beat_start(&w);
    if (rc)
        goto out;
    if (w.start > 0)
        RT_INFO(w.name,
                "starting at step %llu (the shards resumed from a checkpoint, or this "
                "worker rejoins after an eviction)",
                (unsigned long long)w.start);
    rc = s_init_weights(&w);
    if (!rc)
        rc = s_train(&w);
    if (rc)
        goto out;
    if (cb->finish) {
        s_beat_lend(&w, 1);
        cb->finish(cb->user, w.st.steps, w.params, w.buffers);
        s_beat_lend(&w, 0);
    }
    struct rt_wire_eval last;
    if (cb->evaluation && cb->evaluation(cb->user, &last) &&
        (rc = s_send_simple(&w, 0, RT_WIRE_HEARTBEAT, w.st.steps)))
        goto out; /* the final evaluation, which finish may just have made, to the coordinator */
    for (int i = 0; i < cfg->n_shards; i++) {
        rc = s_send_simple(&w, i, RT_WIRE_BYE, w.st.steps);
        if (rc)
            goto out;
    }
    RT_INFO(w.name, "done: %llu steps in %.2f s", (unsigned long long)w.st.steps, w.st.seconds);
    if (stats)
        *stats = w.st;
    rc = RT_OK;
out:
    s_destroy(&w);
    return rc;
}
