/*
 * server_shard_int: the shard's private state and the functions its files share. Not for other
 * modules: they use server_shard.h.
 *
 * The shard is split by concern, one file each:
 *   server_shard.c        lifecycle, the serving loop and the one dispatch table of message types
 *   server_shard_data.c   the data plane: binding workers, INIT, PUSH, the update, PULL, SNAPSHOT
 *   server_shard_coord.c  the coordinator's message handlers (shard 0) and the other shards'
 *                         requests to it (the schedule and the members of a step)
 *   server_shard_ckpt.c   checkpoint writes and the resume from a checkpoint
 *   server_shard_evict.c  evicting silent workers, learning of evictions, rejoining workers
 *
 * Conventions: every function takes the shard first; a message handler takes the received message
 * (struct rt_sock_in: routing id, header, payloads, valid until the handler returns) and drops
 * what it refuses with server_shard_drop (logged with the sender and the reason, counted).
 */
#ifndef SERVER_SHARD_INT_H
#define SERVER_SHARD_INT_H

#include <stdint.h>

#include "rt_ckpt.h"
#include "rt_prom.h"
#include "rt_sock.h"
#include "rt_wire.h"
#include "rt_wire_status.h"
#include "server_ckpt.h"
#include "server_coord.h"
#include "server_shard.h"

#define SERVER_SHARD_MAX_PENDING 256      /* queued pulls waiting for a future version */
#define SERVER_SHARD_MEMBERS_WAIT_MS 1000 /* shards > 0: longest wait for a members answer */

/* A worker as this shard sees it. */
struct server_shard_worker {
    uint8_t route[RT_SOCK_ROUTE_MAX]; /* ROUTER routing id bound to the worker id */
    size_t route_len;                 /* 0: not bound yet */
    char name[RT_WIRE_NAME_MAX];      /* worker's name */
    uint64_t p_recv;                  /* floats of the current step's (or INIT's) slice received */
    int b_recv;                       /* buffer slice of the current step received */
    uint32_t samples;                 /* samples behind the current step's gradient */
    int complete;                     /* current step's slices all received */
    int bye;                          /* said goodbye */
    int evicted;                      /* evicted by the coordinator: no longer awaited */
    int rebound;                      /* evicted, and bound to its restarted process since: it is
                                         awaited again from the step it rejoins at */
    uint64_t token;                   /* its registration's token (shard 0: handed out in WELCOME;
                                         other shards: the one its HELLO presented, verified) */
    int active;                       /* shard 0: it pulled or pushed since it registered: only
                                         then do heartbeats and queries keep it from eviction */
    int rejected;                     /* its push of the current step was rejected here: it is not
                                         awaited, what it pushed before the bad chunk counts (as
                                         for an eviction in the middle of a push) */
    double norm2;                     /* sum of squares of its slice of the current step so far */
    int reject_streak;                /* shard 0: steps in a row with a push rejected by a shard */
    uint64_t reject_step;             /* shard 0: the latest such step */
};

/* A pull waiting for a future version. */
struct server_shard_pull {
    uint8_t route[RT_SOCK_ROUTE_MAX]; /* requester */
    size_t route_len;                 /* bytes of route */
    uint64_t version;                 /* version wanted */
};

/* Sockets: the bound ROUTER every peer talks to. */
struct server_shard_io {
    void *ctx;                           /* ZeroMQ context */
    int own_ctx;                         /* ctx created here */
    void *sock;                          /* bound ROUTER */
    char endpoint[RT_SOCK_ENDPOINT_MAX]; /* endpoint bound (a tcp "*" port resolved) */
    struct rt_sock_in in;                /* the message being handled */
    struct rt_sock_zc *zc;               /* zero-copy frames of weights in flight */
};

/* The data plane: this shard's ranges of the flat vectors, their values, the version, the workers
 * and the pulls waiting for a version. */
struct server_shard_data {
    uint64_t p_off, p_cnt;               /* parameter range */
    uint64_t b_off, b_cnt;               /* buffer range */
    float *w;                            /* weights of the range */
    float *mom;                          /* momentum of the range */
    float *acc;                          /* sum over workers of samples * gradient */
    float *bw;                           /* buffers of the range */
    float *bacc;                         /* sum over workers of samples * buffers */
    int ready;                           /* weights initialised (version 0 exists) */
    uint64_t version;                    /* updates applied; pushes must be for step == version */
    struct server_shard_worker *workers; /* n_workers entries */
    struct server_shard_pull pend[SERVER_SHARD_MAX_PENDING]; /* pulls for a future version */
    int n_pend;                                              /* entries in pend */
    uint64_t *wck;        /* checksum of each weights chunk of version wck_version */
    uint64_t bck;         /* checksum of the buffer slice of that version */
    uint64_t wck_version; /* version the checksums belong to; UINT64_MAX: none */
};

/* The step being summed (step == data.version) and its schedule. */
struct server_shard_step {
    int n_complete;                  /* workers whose slice of the step is complete */
    int n_started;                   /* workers that sent a chunk of the step */
    uint64_t total_samples;          /* samples of the step (known once all started) */
    double total_loss;               /* sum over its workers of samples * mean loss */
    uint64_t total_correct;          /* samples of the step classified correctly */
    uint64_t prev_samples;           /* the step before: samples, over every worker */
    double prev_loss;                /* ... summed loss */
    uint64_t prev_correct;           /* ... correctly classified (shard 0 serves the three) */
    uint64_t summed;                 /* floats [0, summed) hold at least one contribution */
    int b_summed;                    /* bacc holds at least one contribution */
    uint64_t applied;                /* floats [0, applied) already updated for this step */
    int sched_known;                 /* `sched` holds the schedule of the step */
    int nonfinite;                   /* its averaged gradient or buffers are not finite: the shard
                                        stops before serving it (server_shard_run) */
    struct server_coord_point sched; /* its schedule, from the coordinator */
};

/* Snapshots for the eigen service (cfg.snapshots): the slice at the latest epoch start. */
struct server_shard_snap {
    float *w;         /* its weights */
    float *b;         /* and its buffers */
    uint64_t version; /* version of the snapshot; UINT64_MAX: none yet */
    uint64_t epoch;   /* the epoch it starts */
};

/* The coordinator: shard 0 runs it, the other shards ask it. */
struct server_shard_coordination {
    server_coord_t *coord; /* shard 0: the coordinator, else NULL */
    void *sock;            /* shards > 0: DEALER to the coordinator */
    struct rt_sock_in in;  /* shards > 0: its replies */
    double heard_at;       /* shards > 0: rt_clock_now time of its latest answer */
    double pinged_at;      /* shards > 0: ... of the latest ping sent to it */
    uint64_t nonce;        /* shards > 0: numbers VERIFY requests (their answers echo it) */
    uint64_t refused;      /* shard 0: registrations refused in a row for want of a slot */
    uint8_t eig_route[RT_SOCK_ROUTE_MAX]; /* shard 0: the connection registered as the eigen
                                             service (the only one whose decisions count) */
    size_t eig_route_len;                 /* 0: none registered */
};

/* Checkpoints (cfg.ckpt_root, cfg.resume). */
struct server_shard_ckpt {
    char root[RT_CKPT_PATH_MAX];       /* checkpoints go under here ("": none) */
    char model[SERVER_CKPT_MODEL_MAX]; /* model name recorded and checked ("": unknown) */
    int pending;                       /* shard 0: `dir` waits for the other shards' files */
    char dir[RT_CKPT_PATH_MAX];        /* shard 0: that checkpoint's directory */
    struct server_ckpt_coord *coord;   /* shard 0: its coordinator part (allocated once) */
    double next_poll;                  /* shard 0: rt_clock_now time of the next look at it */
    uint64_t resumed_key;              /* RT_CKPT_KEY of the checkpoint resumed (0: none) */
};

/* Eviction (cfg.evict_ms on shard 0): the other shards learn the members of a step by asking. */
struct server_shard_evict {
    double members_at;  /* shards > 0: rt_clock_now time the members were last asked */
    double all_gone_at; /* rt_clock_now time every worker was evicted (0: someone is left) */
};

/* Undecodable records a worker's loaders skipped (data.skip_bad_records), as it reports them with
 * its schedule queries and heartbeats: a process counts from 0, so a report below the last one is
 * a restarted worker, whose earlier count moves to `base`. */
struct server_shard_bad {
    uint64_t last; /* the latest report */
    uint64_t base; /* the counts of its earlier processes */
};

/* Observability (shard 0): what STATUS queries and the Prometheus endpoint report. */
struct server_shard_obs {
    double started_at;   /* rt_clock_now time the shard was created */
    double *shard_heard; /* per shard: rt_clock_now of its latest message (0: never) */
    struct rt_wire_decision dec[RT_WIRE_STATUS_DECISIONS]; /* latest decisions (a ring) */
    int n_dec;                                             /* entries of dec in use */
    int dec_next;                                          /* slot of the next one */
    uint64_t decisions;                                    /* decisions received in all */
    double step_at;               /* rt_clock_now time the latest step was applied (0: none) */
    double rate;                  /* smoothed samples per second of the applied steps */
    double *w;                    /* scratch: share weights, n_workers */
    struct rt_wire_status *st;    /* scratch: a STATUS reply (allocated once) */
    uint8_t *buf;                 /* scratch: its encoding, RT_WIRE_STATUS_MAX bytes */
    rt_prom_http_t *http;         /* the Prometheus endpoint (metrics.listen), or NULL */
    struct rt_wire_eval eval;     /* the latest test-set evaluation a worker reported (none yet:
                                     not present) */
    struct server_shard_bad *bad; /* per worker: undecodable records reported, n_workers */
};

struct server_shard {
    struct server_shard_cfg cfg;         /* configuration (pointers not kept are NULL) */
    char name[RT_WIRE_NAME_MAX];         /* "shard-<i>" */
    struct server_shard_stats st;        /* counters */
    uint64_t start_step;                 /* version resumed from (0: a fresh start) */
    double end_at;                       /* when to return after the last goodbye (0: not yet) */
    struct server_shard_io io;           /* sockets */
    struct server_shard_data data;       /* ranges, values, version, workers, pulls */
    struct server_shard_step step;       /* the step being summed */
    struct server_shard_snap snap;       /* snapshots for the eigen service */
    struct server_shard_coordination co; /* the coordinator */
    struct server_shard_ckpt ckpt;       /* checkpoints */
    struct server_shard_evict ev;        /* eviction */
    struct server_shard_obs obs;         /* shard 0: status and metrics */
};

/* A message handler: the message in `in` was received on the ROUTER and decoded. */
typedef void server_shard_handler_fn(server_shard_t *s, const struct rt_sock_in *in);

/* ---- common (server_shard.c) ------------------------------------------------------------- */

/* 1 when the worker has sent a chunk of the current step. */
static inline int server_shard_started(const struct server_shard_worker *w)
{
    return w->p_recv > 0 || w->b_recv || w->complete;
}

/* 1 when the worker is not awaited for the current step (evicted, or its push rejected). */
static inline int server_shard_excluded(const struct server_shard_worker *w)
{
    return w->evicted || w->rejected;
}

/* 1 when an evicted worker's contribution to the current step is partial here: it covers the
 * parameters [0, p_recv) (and the buffers when b_recv), not the rest. */
static inline int server_shard_partial(const struct server_shard_worker *w)
{
    return server_shard_excluded(w) && !w->complete && server_shard_started(w);
}

/* 1 when the worker's connection is the one with this routing id. */
int server_shard_route_eq(const struct server_shard_worker *w, const uint8_t *route, size_t rlen);

/* The worker a message claims to be, if its connection is bound to that worker; else NULL. */
struct server_shard_worker *server_shard_bound(server_shard_t *s, const struct rt_sock_in *in);

/* Log a message refused with its sender and the reason, and count it. */
void server_shard_drop(server_shard_t *s, const struct rt_sock_in *in, const char *why);

/* Send reply r to the sender of `in`; a failure is logged (`what`: "ack"). */
void server_shard_reply(server_shard_t *s, const struct rt_sock_in *in, struct rt_wire_msg *r,
                        const char *what);

/* Answer the sender of `in` with an ERROR of `code` and `text` about `step`. */
void server_shard_reply_error(server_shard_t *s, const struct rt_sock_in *in, uint64_t step,
                              int code, const char *text);

/* 1 when every worker has said goodbye or was evicted. */
int server_shard_all_gone(const server_shard_t *s);

/* ---- the data plane (server_shard_data.c) ------------------------------------------------- */

server_shard_handler_fn server_shard_on_hello;    /* bind a connection to a worker id; ACK */
server_shard_handler_fn server_shard_on_init;     /* worker 0's initial weights */
server_shard_handler_fn server_shard_on_push;     /* a gradient chunk of the current step */
server_shard_handler_fn server_shard_on_pull;     /* weights of a version, now or when made */
server_shard_handler_fn server_shard_on_snapshot; /* the latest epoch-start snapshot */
server_shard_handler_fn server_shard_on_bye;      /* a worker leaves */

/* Answer the pulls waiting for the current version. */
void server_shard_serve_pending(server_shard_t *s);

/* After a push chunk or an eviction: apply the step when complete, or update the prefix every
 * awaited worker covers. */
void server_shard_progress(server_shard_t *s);

/* Copy the slice as the snapshot of the start of `epoch`, once per epoch. */
void server_shard_snapshot_take(server_shard_t *s, uint64_t epoch);

/* ---- the coordinator (server_shard_coord.c) ----------------------------------------------- */

server_shard_handler_fn server_shard_on_register;    /* a worker joins: WELCOME with its id */
server_shard_handler_fn server_shard_on_sched_query; /* the schedule (and share) of a step */
server_shard_handler_fn server_shard_on_heartbeat;   /* a worker is alive: answered */
server_shard_handler_fn server_shard_on_decision;    /* an ABS decision: ACK with the verdict */
server_shard_handler_fn server_shard_on_abs_query;   /* the ABS state held */
server_shard_handler_fn server_shard_on_reject;      /* another shard rejected a push */
server_shard_handler_fn server_shard_on_verify;      /* is a HELLO's token a registration's? */

/* Shards > 0: ask the coordinator whether `token` is worker id's current registration (at most
 * wait_ms). 1: it is; 0: it is not, or no answer (logged). */
int server_shard_verify(server_shard_t *s, int id, uint64_t token, int wait_ms);

/* Shards > 0: keep in touch with the coordinator (a ping when it was silent a while). Returns 0,
 * or RT_ERR_TIMEOUT when it has been silent for cfg.coord_timeout_ms (the shard stops). */
int server_shard_coord_alive(server_shard_t *s);

/* A push of worker id for `step` was rejected (by this shard): shard 0 records it (log, a "reject"
 * event, the streak that evicts), the other shards tell the coordinator. */
void server_shard_rejected(server_shard_t *s, int id, uint64_t step, const char *why);

/* Shards > 0: ask the coordinator the schedule of `step` (at most wait_ms) into *pt; the members
 * that come with it are applied (server_shard_members). */
int server_shard_sched_ask(server_shard_t *s, uint64_t step, struct server_coord_point *pt,
                           int wait_ms);

/* ---- status and metrics (server_shard_status.c), shard 0 only ----------------------------- */

server_shard_handler_fn server_shard_on_status; /* the run's status (rt_wire_status); ERROR on
                                                   shards > 0 */

/* Allocate what status replies need and, with metrics_listen ("HOST:PORT"; NULL or "": none),
 * serve the Prometheus endpoint. 0 or a negative rt_err code. */
int server_shard_obs_open(server_shard_t *s, const char *metrics_listen);

/* Stop the endpoint and free; safe when never opened. */
void server_shard_obs_close(server_shard_t *s);

/* A message from another shard (named "shard-<i>"): it was heard from now. */
void server_shard_obs_heard(server_shard_t *s, const struct rt_sock_in *in);

/* A decision received, with the verdict the coordinator gave it (and, accepted, the step it
 * applies from and the schedule version it became): kept among the latest for status replies. */
void server_shard_obs_decision(server_shard_t *s, const struct rt_wire_decision *d, int verdict,
                               uint64_t apply_step, uint64_t version);

/* A step was applied (the schedule of the step still known): samples per second, gauges. */
void server_shard_obs_step(server_shard_t *s);

/* A bound worker reported test-set evaluation e (with a schedule query or a heartbeat): keep it
 * for the status reply and the Prometheus gauges unless an evaluation of a later epoch is
 * already held. */
void server_shard_obs_eval(server_shard_t *s, const struct rt_wire_eval *e);

/* Worker report `count` into b (a count below the last one: a restarted worker); returns 1 when
 * it changed anything. */
int server_shard_bad_report(struct server_shard_bad *b, uint64_t count);

/* The count b holds over the worker's restarts (saturating). */
uint64_t server_shard_bad_count(const struct server_shard_bad *b);

/* Coordinator: bound worker `id` reports `count` undecodable records skipped by its loaders since
 * it started (SCHED_QUERY, HEARTBEAT); kept per worker over its restarts (server_shard_bad). */
void server_shard_obs_bad(server_shard_t *s, int id, uint64_t count);

/* Worker `id`'s undecodable records over its restarts (0 for an unknown id), and their sum over
 * every worker (saturating). */
uint64_t server_shard_obs_bad_of(const server_shard_t *s, int id);
uint64_t server_shard_obs_bad_total(const server_shard_t *s);

/* ---- checkpoints (server_shard_ckpt.c) ---------------------------------------------------- */

/* Write this shard's part of the checkpoint of the current version (shard 0: and the
 * coordinator's, then try to complete it): at the start of `epoch`, or with `mid` within it. A
 * failure is logged: training goes on. */
void server_shard_ckpt_write(server_shard_t *s, uint64_t epoch, int mid);

/* Shard 0: complete the pending checkpoint once every shard's file is there. */
void server_shard_ckpt_poll(server_shard_t *s);

/* Shard 0: wait a while for the pending checkpoint (the end of training). */
void server_shard_ckpt_drain(server_shard_t *s);

/* Load this shard's part of the checkpoint in dir (all of it on shard 0). 0 or a negative code
 * naming the file and the field. */
int server_shard_resume(server_shard_t *s, const char *dir);

/* ---- eviction (server_shard_evict.c) ------------------------------------------------------ */

/* Shard 0: evict the workers silent for longer than the timeout. */
void server_shard_evict_poll(server_shard_t *s);

/* Shard 0: evict worker id now for `reason` ("silent", "rejected pushes"; silent_ms: how long it
 * was silent, or < 0): a warning naming it and its peer, an "evict" event, the step it blocked
 * completes with the others. */
void server_shard_evict(server_shard_t *s, int id, const char *reason, double silent_ms);

/* Worker `id` is no longer awaited; with `progress`, apply the step if it is complete now. */
void server_shard_on_evicted(server_shard_t *s, int id, int progress);

/* Shard 0: a restarted worker took the slot `id` of an evicted one (log, metrics). */
void server_shard_on_rejoin(server_shard_t *s, int id, const uint8_t *route, size_t rlen);

/* Shard 0: rejoined workers that take part in the current step are awaited again. */
void server_shard_rejoin_check(server_shard_t *s);

/* The members of the step as the coordinator sent them (bitmap; empty: every worker): the
 * workers left out are evicted here too. */
void server_shard_members(server_shard_t *s, const uint8_t *bits, uint32_t len);

/* Shards > 0: while some awaited worker has not pushed, ask the coordinator who takes part
 * (at most every members poll period; force: now). */
void server_shard_members_poll(server_shard_t *s, int force);

#endif
