/*
 * server_coord: the coordinator that runs inside shard 0. It owns membership (who registered, with
 * which share weight, when it was last heard from), hands out worker ids, answers "what is the
 * schedule of step t and my share of its global batch", and holds the schedule in force behind a
 * small interface (struct server_coord_sched) that any schedule implementation fills: the fixed one
 * in server_fixsched.h, or the BL/FB/GG/ABS mechanism of server_sched (server_coord_use_sched).
 *
 * Every participant learns the schedule of a step from the coordinator (workers with their share,
 * the other shards without), so only the coordinator holds the schedule and its decisions. It also
 * keeps the eigen service's ABS state as reported with its decisions, for checkpoints and for a
 * service that (re)starts (server_coord_get_abs, server_coord_resume).
 */
#ifndef SERVER_COORD_H
#define SERVER_COORD_H

#include <stddef.h>
#include <stdint.h>

#include "rt_wire.h"

/* The schedule in force at one step. */
struct server_coord_point {
    uint64_t epoch;        /* epoch the step belongs to */
    uint64_t epoch_offset; /* position in the epoch's sample order of the batch's first sample */
    uint64_t version;      /* schedule version (bumped by every decision that changes it) */
    uint32_t batch;        /* nominal global batch B */
    uint32_t samples;      /* samples of this step: B, or fewer for an epoch's partial last step
                              (0 is read as B) */
    float lr;              /* learning rate */
    float gamma;           /* adversarial fraction */
    int done;              /* 1: training ends before this step */
    int epoch_last;        /* 1: the last step of its epoch, as far as the decisions held when it
                              is announced tell (schedules that do not know: 0) */
    int checkpoint;        /* 1: every shard checkpoints the version this step makes (the
                              coordinator's time-based checkpoints, checkpoint.every_minutes) */
};

struct server_sched_state; /* server_sched.h */

/* Schedule operations. `at` must give the same answer for a step every time it is asked once it
 * has answered (decisions apply from a later step). */
struct server_coord_sched_ops {
    /* Fill *out for `step`; 0 or a negative rt_err code. */
    int (*at)(void *self, uint64_t step, struct server_coord_point *out);
    /* Free self; may be NULL when the caller owns self. */
    void (*destroy)(void *self);
    /* Consider an eigen-service decision while next_step is the first step nobody has asked
     * about; NULL when the schedule takes no decisions. Returns a verdict >= 0 (0: accepted, then
     * *apply_step and *version say from where and as which version) or a negative rt_err code. */
    int (*decide)(void *self, const struct rt_wire_decision *d, uint64_t next_step,
                  uint64_t *apply_step, uint64_t *version);
    /* The latest accepted decision (apply_step and sched_version filled): 0, or RT_ERR_STATE
     * when there is none; NULL when the schedule takes no decisions. */
    int (*last)(void *self, struct rt_wire_decision *out);
    /* Copy the schedule's state out / replace it (checkpoints); NULL when the schedule cannot be
     * checkpointed. set_state returns 0 or a negative rt_err code (the schedule unchanged). */
    void (*get_state)(void *self, struct server_sched_state *out);
    int (*set_state)(void *self, const struct server_sched_state *in);
};

/* A schedule: operations plus their state. */
struct server_coord_sched {
    const struct server_coord_sched_ops *ops; /* table */
    void *self;                               /* state passed to every operation */
};

/* The schedule mechanism of server_sched.h (BL/FB/GG/ABS/ABSA with stamped decisions) as the
 * coordinator's schedule: `at` is server_sched_at(sched, step, -1, ...), i.e. everything accepted.
 * sched is borrowed and must outlive every use of *out. */
struct server_sched;
void server_coord_use_sched(struct server_coord_sched *out, struct server_sched *sched);

typedef struct server_coord server_coord_t;

/* A coordinator for n_workers workers using `sched` (borrowed: must outlive the coordinator).
 * Returns NULL on allocation failure. Caller owns it; free with server_coord_destroy. */
server_coord_t *server_coord_new(int n_workers, const struct server_coord_sched *sched);
void server_coord_destroy(server_coord_t **self_p);

/* Register a worker under `name` with share weight `weight` (> 0; relative throughput). Returns the
 * new id in [0, n_workers), or RT_ERR_STATE when every slot is taken, RT_ERR_ARG for a bad weight.
 * Once every slot is taken, a worker registering takes the slot of an evicted one (the one of the
 * same name if there is one): it rejoins from the first step nobody has asked about
 * (server_coord_join_step), with a share of every step from there on. */
int server_coord_register(server_coord_t *c, const char *name, double weight);

/* The first step worker `id` takes part in: 0, or where it rejoined after an eviction. */
uint64_t server_coord_join_step(const server_coord_t *c, int id);

/* 1 when worker `id` takes part in `step` (registered, not evicted, joined at or before it). */
int server_coord_is_member(const server_coord_t *c, int id, uint64_t step);

/* Number of registered workers. */
int server_coord_registered(const server_coord_t *c);

/* Record that worker `id` is alive (now); nothing for an evicted worker. */
void server_coord_heartbeat(server_coord_t *c, int id);

/* Default of cluster.worker_timeout_ms: a worker silent this long is evicted. */
#define SERVER_COORD_EVICT_MS_DEFAULT 30000
/* Longest heartbeat period asked of a worker. */
#define SERVER_COORD_HEARTBEAT_MAX_MS 1000

/* Evict workers that have sent nothing (heartbeats, queries, pushes, pulls) for timeout_ms
 * (<= 0: never evict, the default of a new coordinator). */
void server_coord_set_evict(server_coord_t *c, int timeout_ms);

/* How often a worker must show it is alive: a quarter of the eviction timeout, at most
 * SERVER_COORD_HEARTBEAT_MAX_MS; 0 when eviction is off (the worker's own default). */
int server_coord_heartbeat_ms(const server_coord_t *c);

/* A registered, not evicted worker silent for longer than the eviction timeout (its id; *silent_ms
 * gets how long), or -1 when none (or eviction is off). Workers listed in `gone` (n_workers flags,
 * may be NULL: those that said goodbye) are not considered. */
int server_coord_overdue(const server_coord_t *c, const int *gone, double *silent_ms);

/* What an eviction cost: the samples of the interrupted steps that no gradient will cover. */
struct server_coord_loss {
    uint64_t samples;    /* samples of the evicted worker's shares of those steps */
    int steps;           /* interrupted steps (a few: at most those announced) */
    uint64_t first_step; /* the first of them (valid when steps > 0) */
    uint64_t epoch;      /* its epoch */
};

/* Evict worker `id`: from now on it has no share of any step whose share table is not frozen yet
 * (the others split the batch: no sample of later steps is lost), its queries are refused and it
 * is left out of each step's members (server_coord_members). The steps from `from_step` on whose
 * share table was already frozen with a share for it lose that share: *loss (may be NULL) counts
 * them. Returns 0, or RT_ERR_ARG for an id that is not registered or already evicted. */
int server_coord_evict(server_coord_t *c, int id, uint64_t from_step,
                       struct server_coord_loss *loss);

/* 1 when worker `id` has been evicted. */
int server_coord_is_evicted(const server_coord_t *c, int id);

/* The members of `step` as the coordinator knows them now (server_coord_is_member) as a bitmap
 * (bit i%8 of byte i/8: worker i takes part), into bits (cap bytes); returns the bytes used, or 0
 * when every worker takes part or the bitmap does not fit. */
uint32_t server_coord_members(const server_coord_t *c, uint64_t step, uint8_t *bits, uint32_t cap);

/* Set worker id's share weight (re-balancing, e.g. from its measured samples per second); takes
 * effect from the first step nobody has asked about yet: a step's share table is frozen when its
 * first query arrives. */
int server_coord_set_weight(server_coord_t *c, int id, double weight);

/* Measured balancing (cluster.balance: measured): the smallest share a worker keeps, as a
 * fraction of an equal share, so that a worker measured as very slow still computes, and so is
 * still measured. */
#define SERVER_COORD_MIN_SHARE 0.05
/* Weight of the newest speed report in the coordinator's smoothing of a worker's speed (the
 * worker smooths its own measurement too). */
#define SERVER_COORD_SPEED_EMA 0.5
/* Shares are re-split only when some worker's share weight would move by more than this fraction:
 * measurement noise between equal machines does not reshuffle the batch at every step. */
#define SERVER_COORD_BALANCE_DEADBAND 0.1

/* Measured balancing: worker `id` reports its speed, samples per second of compute (> 0), with a
 * schedule query. The reports are smoothed per worker (SERVER_COORD_SPEED_EMA); once every member
 * has reported, the share weights become the members' smoothed speeds (normalised to a mean of 1,
 * each share at least SERVER_COORD_MIN_SHARE of an equal one) whenever one of them moved by more
 * than SERVER_COORD_BALANCE_DEADBAND. As with server_coord_set_weight, the new shares apply from
 * the first step nobody has asked about (*from_step), the way an eviction's re-split does: the
 * global batch and the samples of every step never change, only which worker computes which.
 * Returns 1 when the shares changed, 0 when not, RT_ERR_ARG for an unknown worker or a speed that
 * is not positive. A worker that rejoins reports afresh. */
int server_coord_report_speed(server_coord_t *c, int id, double samples_per_s, uint64_t *from_step);

/* The share weights in force for the next unasked step, into w (n_workers values; 0: evicted or
 * not registered). */
void server_coord_weights(const server_coord_t *c, double *w);

/* A registered worker as the coordinator sees it (server_coord_worker_info). */
struct server_coord_worker {
    char name[RT_WIRE_NAME_MAX]; /* the name it registered with */
    double weight;               /* share weight for the next unasked step (0: evicted) */
    double speed;                /* smoothed reported samples/s (0: none yet) */
    double silent_s;             /* seconds since it was last heard from (-1: never) */
    int evicted;                 /* evicted, not rejoined */
    uint64_t join_step;          /* first step it takes part in */
};

/* Worker `id`'s registration, share weight, speed and last sign of life into *out (status
 * queries; reads only). Returns 0, or RT_ERR_ARG for an id that is not registered. */
int server_coord_worker_info(const server_coord_t *c, int id, struct server_coord_worker *out);

/* Schedule of `step` and worker `id`'s share [*share_off, +*share_cnt) of its global batch.
 * Shares are proportional to the weights as frozen for that step (cumulative rounding: they sum
 * to B exactly and do not overlap, whoever asks first); evicted workers have weight 0.
 * RT_ERR_STATE while not every worker has registered, RT_ERR_PEER for an evicted worker. */
int server_coord_step(server_coord_t *c, int id, uint64_t step, struct server_coord_point *pt,
                      uint32_t *share_off, uint32_t *share_cnt);

/* The lead worker of `step`: the one that writes the run's outputs (the epoch and step events of
 * metrics.jsonl, the final weights). Chosen when the step's share table is frozen (the same answer
 * for every worker of the step): the lead of the steps before while it is still a member, else the
 * longest-standing member (registered, not evicted; the earliest join step, then the lowest id:
 * worker 0 in a run without evictions). It changes only when the lead is evicted, and a worker
 * that rejoins after an eviction takes it only when no other is left (it lacks the totals of the
 * epoch in progress). -1 when no worker is a member. */
int server_coord_lead(const server_coord_t *c, uint64_t step);

/* Longest wait of a sync-mode epoch start for its decision, unless configured. */
#define SERVER_COORD_SYNC_TIMEOUT_MS (10 * 60 * 1000)

/* `decisions: sync` (reproduces the reference, where training waits for the eigenvalue): when on,
 * a worker's query for the first step of epoch e >= 1 is answered RT_ERR_STATE (the worker asks
 * again) until a decision for epoch e - 1 has arrived (any verdict), so that the decision is
 * stamped exactly at that step; after timeout_ms (<= 0: SERVER_COORD_SYNC_TIMEOUT_MS) without one
 * the epoch starts anyway with a warning, so a dead eigen service cannot stall training. Off by
 * default. */
void server_coord_set_sync(server_coord_t *c, int sync, int timeout_ms);

/* The first step nobody has asked about: an eigen-service decision accepted now must apply from
 * this step or later (server_sched_accept's next_step), so no step's answer ever changes. */
uint64_t server_coord_next_step(const server_coord_t *c);

/* Pass an eigen-service decision to the schedule, stamped from the first step nobody has asked
 * about (so every participant keeps agreeing on every step). Returns the schedule's verdict (>= 0,
 * 0 = accepted: *apply_step / *version filled), RT_ERR_UNSUPPORTED when the schedule takes no
 * decisions, or another negative code naming what is wrong. */
int server_coord_decide(server_coord_t *c, const struct rt_wire_decision *d, uint64_t *apply_step,
                        uint64_t *version);

/* The latest decision the schedule holds (for an eigen service whose decision was stale or
 * superseded, to resume from it): 0, RT_ERR_STATE when none, RT_ERR_UNSUPPORTED. */
int server_coord_last_decision(server_coord_t *c, struct rt_wire_decision *out);

/* Keep the eigen service's ABS state `abs` (it travels with its decisions; server_coord_decide
 * stores it when the decision was not refused), unless the one held is for a later epoch. */
void server_coord_set_abs(server_coord_t *c, const struct rt_wire_abs *abs);

/* The ABS state held (for checkpoints and a restarted eigen service): 0, or RT_ERR_STATE when
 * none (a fresh start). */
int server_coord_get_abs(const server_coord_t *c, struct rt_wire_abs *out);

/* Resume from a checkpoint taken at parameter version `step`: steps before it count as announced
 * (decisions are stamped from `step` on), and the ABS state `abs` (may be NULL) is held. Call
 * before any worker asks about a step. */
void server_coord_resume(server_coord_t *c, uint64_t step, const struct rt_wire_abs *abs);

/* Mark a step for a checkpoint every `minutes` (<= 0: never; checkpoint.every_minutes): when that
 * much time has passed since the last mark, the next step announced for the first time (not an
 * epoch's last) carries `checkpoint`, so that every shard writes the same version. */
void server_coord_set_ckpt_minutes(server_coord_t *c, double minutes);

/* The schedule of `step` as the decisions held now give it, without announcing the step (no
 * checkpoint mark, no change of the first step nobody has asked about): for status queries,
 * which must not disturb training. */
int server_coord_peek(const server_coord_t *c, uint64_t step, struct server_coord_point *pt);

/* The schedule of `step` (no share): for shards and late joiners. */
int server_coord_sched(server_coord_t *c, uint64_t step, struct server_coord_point *pt);

/* Share of worker i among n with weights w (sum > 0; else every share is empty) of a batch B:
 * [*off, +*cnt). */
void server_coord_share(uint32_t batch, const double *w, int n, int i, uint32_t *off,
                        uint32_t *cnt);

#endif
