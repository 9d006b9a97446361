/*
 * cluster_embed: shards and workers as threads of one process (see cluster_embed.h).
 */
#include "cluster_embed.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_err.h"
#include "rt_log.h"
#include "rt_sock.h"
#include "server_shard.h"

/* One shard thread. */
struct s_shard_job {
    server_shard_t *shard; /* the shard (bound before the thread starts) */
    atomic_int *stop;      /* set when a worker failed */
    int rc;                /* result of server_shard_run */
    char err[256];         /* its error detail */
};

/* One worker thread. */
struct s_worker_job {
    struct worker_cfg cfg;           /* its configuration */
    const struct worker_compute *cb; /* its model side */
    struct worker_stats st;          /* its counters */
    atomic_int *stop;                /* raised when it fails, so that the shards give up */
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
        atomic_store(j->stop, 1);
    }
    return NULL;
}

static void *s_worker_main(void *arg)
{
    struct s_worker_job *j = arg;
    j->rc = worker_run(&j->cfg, j->cb, &j->st);
    if (j->rc) {
        snprintf(j->err, sizeof j->err, "%s", rt_err_msg());
        atomic_store(j->stop, 1);
    }
    return NULL;
}

int cluster_embed_run(const struct cluster_embed_cfg *cfg, float *final_params,
                       float *final_buffers, struct worker_stats *stats)
{
    int S = cfg->n_shards, W = cfg->n_workers, rc = RT_OK;
    rt_sock_tune_malloc();
    if (S < 1 || W < 1 || !cfg->compute || !cfg->sched || !cfg->transport || !cfg->where)
        return rt_err_set(RT_ERR_ARG, "cluster: %d shards, %d workers", S, W);
    atomic_int stop;
    atomic_init(&stop, 0);
    struct s_shard_job *sj = calloc((size_t)S, sizeof *sj);
    struct s_worker_job *wj = calloc((size_t)W, sizeof *wj);
    pthread_t *st = calloc((size_t)S, sizeof *st), *wt = calloc((size_t)W, sizeof *wt);
    char(*eps)[RT_SOCK_ENDPOINT_MAX] = calloc((size_t)S, sizeof *eps);
    const char **ep_ptrs = calloc((size_t)S, sizeof *ep_ptrs);
    int n_started_s = 0, n_started_w = 0;
    void *ctx = NULL;
    if (!sj || !wj || !st || !wt || !eps || !ep_ptrs) {
        rc = rt_err_set(RT_ERR_NOMEM, "cluster");
        goto out;
    }
    ctx = cfg->zmq_ctx ? cfg->zmq_ctx : rt_sock_ctx_new(cfg->io_threads);
    if (!ctx) {
        rc = RT_ERR_ZMQ;
        goto out;
    }
    for (int i = 0; i < S; i++) {
        char bind[RT_SOCK_ENDPOINT_MAX];
        if (!strcmp(cfg->transport, "tcp") && cfg->port == 0)
            snprintf(bind, sizeof bind, "tcp://%s:*", cfg->where);
        else if ((rc = rt_sock_endpoint(bind, sizeof bind, cfg->transport, cfg->where, cfg->port,
                                        i)))
            goto out;
        struct server_shard_cfg sc = {
            .shard = i,
            .n_shards = S,
            .n_workers = W,
            .n_params = cfg->n_params,
            .n_buffers = cfg->n_buffers,
            .endpoint = bind,
            .coord_endpoint = i > 0 ? eps[0] : NULL,
            .zmq_ctx = ctx,
            .momentum = cfg->momentum,
            .weight_decay = cfg->weight_decay,
            .init_params = cfg->init_params,
            .init_buffers = cfg->init_buffers,
            .sched = cfg->sched,
            .ckpt_root = cfg->ckpt_root,
            .ckpt_every = cfg->ckpt_every,
            .ckpt_keep = cfg->ckpt_keep,
            .resume = cfg->resume,
            .model = cfg->model,
            .chunk_floats = cfg->chunk_floats,
            .checksum = cfg->checksum,
            .snapshots = cfg->snapshots,
            .sync = cfg->sync,
            .evict_ms = cfg->evict_ms,
            .metrics = i == 0 ? cfg->metrics : NULL,
            .sync_timeout_ms = cfg->sync_timeout_ms,
        };
        rc = server_shard_new(&sc, &sj[i].shard);
        if (rc)
            goto out;
        snprintf(eps[i], sizeof eps[i], "%s", server_shard_endpoint(sj[i].shard));
        ep_ptrs[i] = eps[i];
        sj[i].stop = &stop;
    }
    for (int i = 0; i < S; i++) {
        if (pthread_create(&st[i], NULL, s_shard_main, &sj[i]) != 0) {
            rc = rt_err_set(RT_ERR_NOMEM, "cluster: cannot start shard thread %d", i);
            atomic_store(&stop, 1);
            goto out;
        }
        n_started_s++;
    }
    for (int i = 0; i < W; i++) {
        struct s_worker_job *j = &wj[i];
        snprintf(j->name, sizeof j->name, "worker-thread-%d", i);
        j->cfg = (struct worker_cfg){
            .name = j->name,
            .n_shards = S,
            .endpoints = ep_ptrs,
            .zmq_ctx = ctx,
            .n_params = cfg->n_params,
            .n_buffers = cfg->n_buffers,
            .weight = cfg->weights ? cfg->weights[i] : 1.0,
            .rebalance = cfg->rebalance,
            .timeout_ms = cfg->worker_timeout_ms,
            .chunk_floats = cfg->chunk_floats,
            .checksum = cfg->checksum,
            .stop = &stop,
        };
        j->cb = &cfg->compute[i];
        j->stop = &stop;
        if (pthread_create(&wt[i], NULL, s_worker_main, j) != 0) {
            rc = rt_err_set(RT_ERR_NOMEM, "cluster: cannot start worker thread %d", i);
            atomic_store(&stop, 1);
            goto out;
        }
        n_started_w++;
    }
out:
    for (int i = 0; i < n_started_w; i++)
        pthread_join(wt[i], NULL);
    for (int i = 0; i < n_started_s; i++)
        pthread_join(st[i], NULL);
    for (int i = 0; rc == RT_OK && i < n_started_w; i++)
        if (wj[i].rc) {
            rc = rt_err_set(wj[i].rc, "worker %d: %s", i, wj[i].err);
        }
    for (int i = 0; rc == RT_OK && i < n_started_s; i++)
        if (sj[i].rc)
            rc = rt_err_set(sj[i].rc, "shard %d: %s", i, sj[i].err);
    if (rc == RT_OK) {
        for (int i = 0; i < S; i++) {
            uint64_t po, pc, bo, bc;
            server_shard_range(sj[i].shard, &po, &pc, &bo, &bc);
            if (final_params)
                memcpy(final_params + po, server_shard_params(sj[i].shard), pc * sizeof(float));
            if (final_buffers && bc)
                memcpy(final_buffers + bo, server_shard_buffers(sj[i].shard), bc * sizeof(float));
        }
        if (stats)
            for (int i = 0; i < W; i++)
                stats[i] = wj[i].st;
    }
    for (int i = 0; sj && i < S; i++)
        server_shard_destroy(&sj[i].shard);
    if (!cfg->zmq_ctx)
        rt_sock_ctx_destroy(&ctx);
    free(sj);
    free(wj);
    free(st);
    free(wt);
    free(eps);
    free(ep_ptrs);
    return rc;
}
