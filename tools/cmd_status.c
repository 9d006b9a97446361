/*
 * cmd_status: `eigenbatch status --connect EP [--json] [--timeout-ms MS] [--config FILE]`: asks
 * a running cluster's coordinator (shard 0, at EP) for its status and prints it: the workers
 * (share of the batch, measured speed, last heartbeat, undecodable records its loaders skipped),
 * the shards, the schedule of the step in
 * progress (epoch, step, B, lr, gamma) and the latest decisions, as text or as one JSON object.
 * Exits 0 with an answer, 1 without one (a healthcheck that also says how the run is doing). The
 * options are the option table's (as ping's): a deployment's --config brings its security.* keys.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zmq.h>

#include "app_opts.h"
#include "eb_cli.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_sock.h"
#include "rt_wire_status.h"

#define S_TIMEOUT_MS 3000 /* default wait for the answer */
#define S_MAX_ARGS 256    /* arguments passed on to the option parser */

static const char s_usage[] =
    "usage: eigenbatch status --connect ENDPOINT [--json] [--timeout-ms MS] [--config FILE]\n"
    "Asks the coordinator (shard 0's --bind) for the run's status: workers (share, speed, last\n"
    "heartbeat, undecodable records skipped under data.skip_bad_records), shards, the schedule\n"
    "of the step in progress and the latest decisions. --json\n"
    "prints one JSON object. Exits 0 with an answer within --timeout-ms (0: 3000), else 1.\n"
    "With security.* set (--config of the deployment) the query is CURVE-encrypted.\n";

/* Send a STATUS query and wait for the reply frame, decoded into *st. 0 or an rt_err code. */
static int s_query(const char *endpoint, int timeout_ms, struct rt_wire_status *st, char *name)
{
    void *ctx = rt_sock_ctx_new(1), *sock = NULL;
    if (!ctx)
        return rt_err_set(RT_ERR_ZMQ, "status: %s", rt_err_msg());
    struct rt_sock_parts parts;
    rt_sock_parts_init(&parts);
    int rc = rt_sock_dealer(ctx, endpoint, &sock);
    if (rc)
        goto out;
    struct rt_wire_msg q;
    rt_wire_msg_init(&q, RT_WIRE_STATUS, -1, "status");
    if ((rc = rt_sock_send(sock, NULL, 0, &q, NULL, NULL, NULL)))
        goto out;
    double deadline = rt_clock_now() + timeout_ms / 1000.0;
    for (;;) {
        double left = deadline - rt_clock_now();
        if (left <= 0) {
            rc = rt_err_set(RT_ERR_TIMEOUT, "no answer in %d ms", timeout_ms);
            goto out;
        }
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&it, 1, (long)(left * 1000.0) + 1);
        if (n < 0 && zmq_errno() == EINTR)
            continue;
        if (n < 0) {
            rc = rt_err_set(RT_ERR_ZMQ, "poll: %s", zmq_strerror(zmq_errno()));
            goto out;
        }
        if (n == 0)
            continue;
        if ((rc = rt_sock_recv(sock, &parts, ZMQ_DONTWAIT)) == RT_ERR_TIMEOUT)
            continue;
        if (rc)
            goto out;
        if (parts.total != 1) {
            rc = rt_err_set(RT_ERR_FORMAT, "answer of %d frames, expected one", parts.total);
            goto out;
        }
        rc = rt_wire_status_decode(rt_sock_part_data(&parts, 0), rt_sock_part_size(&parts, 0), st,
                                   name);
        goto out;
    }
out:
    rt_sock_parts_close(&parts);
    rt_sock_close(&sock, 0);
    rt_sock_ctx_destroy(&ctx);
    return rc;
}

/* A number as JSON: null when not finite (JSON has no NaN), as metrics.jsonl writes it. */
static json_t *s_real(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

/* A decision as JSON. */
static json_t *s_decision_json(const struct rt_wire_decision *d)
{
    return json_pack("{s:I, s:i, s:I, s:o, s:o, s:o, s:o, s:o, s:s, s:i, s:s, s:I, s:i, s:I}",
                     "seq", (json_int_t)d->seq, "epoch", (int)d->epoch, "batch",
                     (json_int_t)d->batch, "lambda", s_real(d->lambda), "lr", s_real(d->lr),
                     "gamma", s_real(d->gamma), "lr_base", s_real(d->lr_base), "gamma_base",
                     s_real(d->gamma_base), "reason", d->reason, "verdict", (int)d->verdict,
                     "verdict_text", rt_wire_verdict_str(d->verdict), "apply_step",
                     (json_int_t)d->apply_step, "sched_version", (int)d->sched_version,
                     "snapshot_version", (json_int_t)d->snapshot_version);
}

/* One worker as JSON. */
static json_t *s_worker_json(const struct rt_wire_worker_status *w)
{
    return json_pack("{s:i, s:s, s:o, s:o, s:o, s:b, s:I, s:I}", "id", (int)w->id, "name", w->name,
                     "share", s_real(w->share), "speed", s_real(w->speed), "heartbeat_age_s",
                     s_real(w->heartbeat_age_s), "evicted", w->evicted, "join_step",
                     (json_int_t)w->join_step, "bad_records", (json_int_t)w->bad_records);
}

/* The status as one JSON object (caller owns it), or NULL when out of memory. */
static json_t *s_json(const struct rt_wire_status *st, const char *name)
{
    json_t *workers = json_array(), *shards = json_array(), *decisions = json_array();
    for (int i = 0; workers && i < st->n_listed_workers; i++)
        json_array_append_new(workers, s_worker_json(&st->workers[i]));
    for (int i = 0; shards && i < st->n_listed_shards; i++) {
        const struct rt_wire_shard_status *s = &st->shards[i];
        json_t *o =
            json_pack("{s:i, s:o}", "shard", (int)s->shard, "heard_age_s", s_real(s->heard_age_s));
        if (o && s->shard == 0)
            json_object_set_new(o, "version", json_integer((json_int_t)s->version));
        json_array_append_new(shards, o);
    }
    for (int i = 0; decisions && i < st->n_decisions; i++)
        json_array_append_new(decisions, s_decision_json(&st->decisions[i]));
    json_t *sched =
        json_pack("{s:I, s:I, s:i, s:o, s:o, s:I, s:b}", "epoch", (json_int_t)st->epoch, "step",
                  (json_int_t)st->step, "B", (int)st->batch, "lr", s_real(st->lr), "gamma",
                  s_real(st->gamma), "version", (json_int_t)st->sched_version, "done", st->done);
    const struct rt_wire_eval *e = &st->eval; /* null until the lead reports one */
    json_t *test = e->present ? json_pack("{s:I, s:I, s:o, s:o}", "epoch", (json_int_t)e->epoch,
                                          "samples", (json_int_t)e->samples, "accuracy",
                                          s_real((double)e->correct / (double)e->samples), "loss",
                                          s_real(e->loss))
                              : json_null();
    return json_pack("{s:s, s:I, s:i, s:i, s:o, s:o, s:o, s:o, s:I, s:o*, s:o*, s:o*, s:o*, s:o*}",
                     "coordinator", name, "version", (json_int_t)st->version, "n_workers",
                     (int)st->n_workers, "n_shards", (int)st->n_shards, "uptime_s",
                     s_real(st->uptime_s), "images_per_s", s_real(st->images_per_s), "loss",
                     s_real(st->loss), "train_accuracy", s_real(st->train_accuracy), "bad_records",
                     (json_int_t)st->bad_records, "test", test, "schedule", sched, "workers",
                     workers, "shards", shards, "decisions", decisions);
}

/* The status as text. */
static void s_print(const struct rt_wire_status *st, const char *name, const char *endpoint)
{
    printf("%s: %s, up %.0f s, version %llu, %.1f images/s, loss %.4g, train accuracy %.4g\n",
           endpoint, name, st->uptime_s, (unsigned long long)st->version, st->images_per_s,
           (double)st->loss, (double)st->train_accuracy);
    if (st->eval.present)
        printf("test: epoch %llu, accuracy %.4f, loss %.4g (%llu samples)\n",
               (unsigned long long)st->eval.epoch,
               (double)st->eval.correct / (double)st->eval.samples, (double)st->eval.loss,
               (unsigned long long)st->eval.samples);
    printf("schedule: epoch %llu, step %llu, B %u, lr %g, gamma %g (version %llu)%s\n",
           (unsigned long long)st->epoch, (unsigned long long)st->step, st->batch, (double)st->lr,
           (double)st->gamma, (unsigned long long)st->sched_version,
           st->done ? ", training over" : "");
    printf("workers (%d of %u registered", st->n_listed_workers, st->n_workers);
    if (st->bad_records)
        printf("; %llu undecodable records skipped in all, data.skip_bad_records",
               (unsigned long long)st->bad_records);
    printf("):\n");
    for (int i = 0; i < st->n_listed_workers; i++) {
        const struct rt_wire_worker_status *w = &st->workers[i];
        char bad[48] = "";
        if (w->bad_records)
            snprintf(bad, sizeof bad, "  %llu bad records skipped",
                     (unsigned long long)w->bad_records);
        printf("  %3d %-24s share %5.1f%%  speed %9.1f/s  heard %.1f s ago%s%s\n", (int)w->id,
               w->name, 100.0 * w->share, w->speed, w->heartbeat_age_s,
               w->evicted ? "  EVICTED" : "", bad);
    }
    printf("shards (%u):\n", st->n_shards);
    for (int i = 0; i < st->n_listed_shards; i++) {
        const struct rt_wire_shard_status *s = &st->shards[i];
        if (s->shard == 0)
            printf("  %3d coordinator, version %llu\n", 0, (unsigned long long)s->version);
        else if (s->heard_age_s < 0)
            printf("  %3d not heard from\n", (int)s->shard);
        else
            printf("  %3d heard %.1f s ago\n", (int)s->shard, s->heard_age_s);
    }
    printf("decisions (latest %d):\n", st->n_decisions);
    for (int i = 0; i < st->n_decisions; i++) {
        const struct rt_wire_decision *d = &st->decisions[i];
        printf("  #%llu epoch %d: lambda %.4g -> B %lld, lr %g (base %g), gamma %g: %s",
               (unsigned long long)d->seq, (int)d->epoch, d->lambda, (long long)d->batch, d->lr,
               d->lr_base, d->gamma, rt_wire_verdict_str(d->verdict));
        if (d->apply_step)
            printf(" from step %llu", (unsigned long long)d->apply_step);
        printf("\n");
        if (d->reason[0])
            printf("      %s\n", d->reason); /* the ABS rule's why */
    }
}

int eb_cmd_status(int argc, char **argv)
{
    /* --json is this command's own; the rest go to the option table */
    char *args[S_MAX_ARGS];
    int n = 0, json = 0;
    for (int i = 0; i < argc && n < S_MAX_ARGS; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else
            args[n++] = argv[i];
    }
    struct app_opts o;
    rt_config_t *cfg = NULL;
    int rc = eb_cli_client_opts(n, args, s_usage, &o, &cfg);
    if (rc)
        return rc == RT_OPT_HELP ? 0 : rc;
    int timeout_ms = o.cluster.timeout_ms > 0 ? (int)o.cluster.timeout_ms : S_TIMEOUT_MS;
    struct rt_wire_status *st = malloc(sizeof *st);
    char name[RT_WIRE_NAME_MAX] = "";
    rc = st ? s_query(o.local.connect, timeout_ms, st, name) : rt_err_set(RT_ERR_NOMEM, "status");
    if (rc) {
        fprintf(stderr, "eigenbatch status: %s: %s\n", o.local.connect, rt_err_msg());
    } else if (json) {
        json_t *j = s_json(st, name);
        char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
        if (text)
            printf("%s\n", text);
        else
            rc = rt_err_set(RT_ERR_NOMEM, "status: JSON");
        free(text);
        json_decref(j);
    } else {
        s_print(st, name, o.local.connect);
    }
    free(st);
    rt_config_destroy(&cfg);
    return rc ? 1 : 0;
}
