/*
 * cluster_embed: shards and workers as threads of one process (see cluster_embed.h).
 */
#include "cluster_embed.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "server_shard.h"

#define S_WAIT_US 10000 /* pause between looks at the threads */

/* One shard thread. */
struct s_shard_job {
    server_shard_t *shard; /* the shard (bound before the thread starts) */
    atomic_int *stop;      /* set when a worker failed */
    atomic_int *cause;     /* the first failed thread: -(shard + 1) or worker + 1 (0: none) */
    atomic_int done;       /* the thread has ended */
    int index;             /* shard number */
    int rc;                /* result of server_shard_run */
    char err[256];         /* its error detail */
};

/* One worker thread. */
struct s_worker_job {
    struct worker_cfg cfg;           /* its configuration */
    const struct worker_compute *cb; /* its model side */
    struct worker_stats st;          /* its counters */
    atomic_int *stop;                /* raised when it fails, so that the shards give up */
    atomic_int *cause;               /* the first failed thread (see s_shard_job) */
    atomic_int done;                 /* the thread has ended */
    int index;                       /* worker number */
    int rc;                          /* result of worker_run */
    char err[256];                   /* its error detail */
    char name[32];                   /* "worker-thread-<i>" */
};

static void *s_shard_main(void *arg)
{
    struct s_shard_job *j = arg;
    j->rc = server_shard_run(j->shard, j->stop);
    if (j->rc) {
        snprintf(j->err, sizeof j->err, "%s", rt_err_msg());
        int none = 0;
        if (j->rc != RT_ERR_INTERRUPTED)
            atomic_compare_exchange_strong(j->cause, &none, -(j->index + 1));
        atomic_store(j->stop, 1);
    }
    atomic_store(&j->done, 1);
    return NULL;
}

static void *s_worker_main(void *arg)
{
    struct s_worker_job *j = arg;
    j->rc = worker_run(&j->cfg, j->cb, &j->st);
    if (j->rc)
        snprintf(j->err, sizeof j->err, "%s", rt_err_msg());
    /* an evicted worker leaves the others to finish the run (the coordinator accounts for it) */
    if (j->rc && j->rc != RT_ERR_EVICTED) {
        int none = 0;
        if (j->rc != RT_ERR_INTERRUPTED)
            atomic_compare_exchange_strong(j->cause, &none, j->index + 1);
        atomic_store(j->stop, 1);
    }
    atomic_store(&j->done, 1);
    return NULL;
}

/* A run's threads and the state they share. */
struct s_run {
    atomic_int stop;                   /* raised when a thread failed */
    atomic_int cause;                  /* the first thread that failed (see s_shard_job) */
    void *ctx;                         /* ZeroMQ context (the caller's or ours) */
    struct s_shard_job *sj;            /* one per shard */
    struct s_worker_job *wj;           /* one per worker */
    pthread_t *st;                     /* shard threads */
    pthread_t *wt;                     /* worker threads */
    char (*eps)[RT_SOCK_ENDPOINT_MAX]; /* each shard's bound endpoint */
    const char **ep_ptrs;              /* eps as the workers' endpoint list */
    int n_started_s;                   /* shard threads started (to join) */
    int n_started_w;                   /* worker threads started (to join) */
};

/*
 * Create and bind every shard (shard 0, the coordinator, first: the others are given its
 * endpoint) and record each one's bound endpoint. Returns 0 or a negative rt_err code.
 */
static int s_shards_new(const struct cluster_embed_cfg *cfg, struct s_run *r)
{
    int S = cfg->n_shards, W = cfg->n_workers, rc;
    for (int i = 0; i < S; i++) {
        char bind[RT_SOCK_ENDPOINT_MAX];
        if (!strcmp(cfg->transport, "tcp") && cfg->port == 0)
            snprintf(bind, sizeof bind, "tcp://%s:*", cfg->where);
        else if ((rc = rt_sock_endpoint(bind, sizeof bind, cfg->transport, cfg->where, cfg->port,
                                        i)))
            return rc;
        struct server_shard_cfg sc = {
            .shard = i,
            .n_shards = S,
            .n_workers = W,
            .n_params = cfg->n_params,
            .n_buffers = cfg->n_buffers,
            .endpoint = bind,
            .coord_endpoint = i > 0 ? r->eps[0] : NULL,
            .zmq_ctx = r->ctx,
            .momentum = cfg->momentum,
            .weight_decay = cfg->weight_decay,
            .init_params = cfg->init_params,
            .init_buffers = cfg->init_buffers,
            .sched = cfg->sched,
            .ckpt_root = cfg->ckpt_root,
            .ckpt_every = cfg->ckpt_every,
            .ckpt_every_steps = cfg->ckpt_every_steps,
            .ckpt_every_minutes = cfg->ckpt_every_minutes,
            .ckpt_keep = cfg->ckpt_keep,
            .resume = cfg->resume,
            .model = cfg->model,
            .chunk_floats = cfg->chunk_floats,
            .checksum = cfg->checksum,
            .snapshots = cfg->snapshots,
            .sync = cfg->sync,
            .evict_ms = cfg->evict_ms,
            .max_grad_norm = cfg->max_grad_norm,
            .max_rejects = cfg->max_rejects,
            .metrics = i == 0 ? cfg->metrics : NULL,
            .sync_timeout_ms = cfg->sync_timeout_ms,
            .metrics_listen = cfg->metrics_listen,
        };
        rc = server_shard_new(&sc, &r->sj[i].shard);
        if (rc)
            return rc;
        snprintf(r->eps[i], sizeof r->eps[i], "%s", server_shard_endpoint(r->sj[i].shard));
        r->ep_ptrs[i] = r->eps[i];
        r->sj[i].stop = &r->stop;
        r->sj[i].cause = &r->cause;
        r->sj[i].index = i;
        atomic_init(&r->sj[i].done, 0);
    }
    return RT_OK;
}

/* Start one thread per shard, then one per worker; on a failure, raise stop. Returns 0 or rc. */
static int s_threads_start(const struct cluster_embed_cfg *cfg, struct s_run *r)
{
    for (int i = 0; i < cfg->n_shards; i++) {
        if (pthread_create(&r->st[i], NULL, s_shard_main, &r->sj[i]) != 0) {
            atomic_store(&r->stop, 1);
            return rt_err_set(RT_ERR_NOMEM, "cluster: cannot start shard thread %d", i);
        }
        r->n_started_s++;
    }
    for (int i = 0; i < cfg->n_workers; i++) {
        struct s_worker_job *j = &r->wj[i];
        snprintf(j->name, sizeof j->name, "worker-thread-%d", i);
        j->cfg = (struct worker_cfg){
            .name = j->name,
            .n_shards = cfg->n_shards,
            .endpoints = r->ep_ptrs,
            .zmq_ctx = r->ctx,
            .n_params = cfg->n_params,
            .n_buffers = cfg->n_buffers,
            .weight = cfg->weights ? cfg->weights[i] : 1.0,
            .rebalance = cfg->rebalance,
            .timeout_ms = cfg->worker_timeout_ms,
            .chunk_floats = cfg->chunk_floats,
            .checksum = cfg->checksum,
            .stop = &r->stop,
            .decisions = cfg->decisions,
        };
        j->cb = &cfg->compute[i];
        j->stop = &r->stop;
        j->cause = &r->cause;
        j->index = i;
        atomic_init(&j->done, 0);
        if (pthread_create(&r->wt[i], NULL, s_worker_main, j) != 0) {
            atomic_store(&r->stop, 1);
            return rt_err_set(RT_ERR_NOMEM, "cluster: cannot start worker thread %d", i);
        }
        r->n_started_w++;
    }
    return RT_OK;
}

/* Wait until every started thread has ended. Once one failed (stop raised), the context is shut
 * down: a thread blocked in a request to a role that is gone (a shard asking the coordinator for a
 * schedule) returns at once instead of after its timeout, and queued frames are dropped. */
static void s_threads_wait(struct s_run *r)
{
    int shut = 0;
    for (;;) {
        int running = 0;
        for (int i = 0; i < r->n_started_w; i++)
            running += !atomic_load(&r->wj[i].done);
        for (int i = 0; i < r->n_started_s; i++)
            running += !atomic_load(&r->sj[i].done);
        if (!running)
            return;
        if (!shut && atomic_load(&r->stop)) {
            zmq_ctx_shutdown(r->ctx);
            shut = 1;
        }
        usleep(S_WAIT_US);
    }
}

/*
 * Join the started threads and, when rc is RT_OK, take the first thread error (workers first),
 * else gather the shards' slices into final_params / final_buffers and the workers' counters
 * into stats (each may be NULL). Returns the run's result.
 */
static int s_threads_finish(const struct cluster_embed_cfg *cfg, struct s_run *r, int rc,
                            float *final_params, float *final_buffers, struct worker_stats *stats)
{
    s_threads_wait(r);
    for (int i = 0; i < r->n_started_w; i++)
        pthread_join(r->wt[i], NULL);
    for (int i = 0; i < r->n_started_s; i++)
        pthread_join(r->st[i], NULL);
    /* the cause, not the consequence: the first thread that failed, then any that did not just
     * say "stopped" because another failed */
    int cause = atomic_load(&r->cause);
    if (rc == RT_OK && cause > 0)
        rc = rt_err_set(r->wj[cause - 1].rc, "worker %d: %s", cause - 1, r->wj[cause - 1].err);
    if (rc == RT_OK && cause < 0)
        rc = rt_err_set(r->sj[-cause - 1].rc, "shard %d: %s", -cause - 1, r->sj[-cause - 1].err);
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; rc == RT_OK && i < r->n_started_w; i++)
            if (r->wj[i].rc && r->wj[i].rc != RT_ERR_EVICTED &&
                (pass || r->wj[i].rc != RT_ERR_INTERRUPTED))
                rc = rt_err_set(r->wj[i].rc, "worker %d: %s", i, r->wj[i].err);
        for (int i = 0; rc == RT_OK && i < r->n_started_s; i++)
            if (r->sj[i].rc && (pass || r->sj[i].rc != RT_ERR_INTERRUPTED))
                rc = rt_err_set(r->sj[i].rc, "shard %d: %s", i, r->sj[i].err);
    }
    if (rc != RT_OK)
        return rc;
    for (int i = 0; i < cfg->n_shards; i++) {
        uint64_t po, pc, bo, bc;
        server_shard_range(r->sj[i].shard, &po, &pc, &bo, &bc);
        if (final_params)
            memcpy(final_params + po, server_shard_params(r->sj[i].shard), pc * sizeof(float));
        if (final_buffers && bc)
            memcpy(final_buffers + bo, server_shard_buffers(r->sj[i].shard), bc * sizeof(float));
    }
    if (stats)
        for (int i = 0; i < cfg->n_workers; i++)
            stats[i] = r->wj[i].st;
    return rc;
}

int cluster_embed_run(const struct cluster_embed_cfg *cfg, float *final_params,
                      float *final_buffers, struct worker_stats *stats)
{
    int S = cfg->n_shards, W = cfg->n_workers, rc = RT_OK;
    rt_sock_tune_malloc();
    if (S < 1 || W < 1 || !cfg->compute || !cfg->sched || !cfg->transport || !cfg->where)
        return rt_err_set(RT_ERR_ARG, "cluster: %d shards, %d workers", S, W);
    struct s_run r = {0};
    atomic_init(&r.stop, 0);
    atomic_init(&r.cause, 0);
    r.sj = calloc((size_t)S, sizeof *r.sj);
    r.wj = calloc((size_t)W, sizeof *r.wj);
    r.st = calloc((size_t)S, sizeof *r.st);
    r.wt = calloc((size_t)W, sizeof *r.wt);
    r.eps = calloc((size_t)S, sizeof *r.eps);
    r.ep_ptrs = calloc((size_t)S, sizeof *r.ep_ptrs);
    if (!r.sj || !r.wj || !r.st || !r.wt || !r.eps || !r.ep_ptrs) {
        rc = rt_err_set(RT_ERR_NOMEM, "cluster");
        goto out;
    }
    r.ctx = cfg->zmq_ctx ? cfg->zmq_ctx : rt_sock_ctx_new(cfg->io_threads);
    if (!r.ctx) {
        rc = RT_ERR_ZMQ;
        goto out;
    }
    rc = s_shards_new(cfg, &r);
    if (!rc)
        rc = s_threads_start(cfg, &r);
out:
    rc = s_threads_finish(cfg, &r, rc, final_params, final_buffers, stats);
    for (int i = 0; r.sj && i < S; i++)
        server_shard_destroy(&r.sj[i].shard);
    if (!cfg->zmq_ctx)
        rt_sock_ctx_destroy(&r.ctx);
    free(r.sj);
    free(r.wj);
    free(r.st);
    free(r.wt);
    free(r.eps);
    free(r.ep_ptrs);
    return rc;
}
