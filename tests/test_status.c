/*
 * test_status: `eigenbatch status`. The STATUS reply's codec round-trips every field and refuses
 * a reply cut short; against a running cluster (launch: 2 shards, 2 workers, tcp on free loopback
 * ports), `status --json` asked mid-run is parsed and its fields checked (the schedule in force,
 * both workers with their shares summing to 1, both shards), shard 1 refuses the query and says
 * it is not the coordinator, a malformed message to the
 * coordinator is logged with its sender and dropped while training goes on, and the run finishes.
 * Under CURVE the query needs the deployment's key (--config), and gets no answer without one.
 * In an ABS run of separate processes the status lists the eigen service's decisions with the
 * rule's reasons, and the lead worker's latest test-set evaluation.
 * What a status reads of the schedule (server_coord_peek) announces no step, so a query cannot
 * move where a decision is stamped. Each worker's count of undecodable records skipped under
 * data.skip_bad_records reaches the status, summed over the workers and over a worker's restarts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "eb_test.h"
#include "eb_test_data.h"
#include "rt_err.h"
#include "rt_wire_status.h"
#include "server_coord.h"
#include "server_fixsched.h"
#include "server_shard_int.h"

#define P 400000 /* synth parameters: steps slow enough to be asked about mid-run */
#define STEPS 40
#define BATCH 32
#define POLL_US 100000 /* between status attempts */
#define TRIES 600      /* at most a minute of attempts */

static void test_codec_round_trip(void **state)
{
    (void)state;
    struct rt_wire_status *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    uint8_t *buf = malloc(RT_WIRE_STATUS_MAX);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(buf);
    a->version = 17;
    a->epoch = 2;
    a->step = 17;
    a->batch = 256;
    a->lr = 0.2f;
    a->gamma = 0.1f;
    a->sched_version = 3;
    a->n_workers = RT_WIRE_STATUS_WORKERS;
    a->n_shards = 2;
    a->images_per_s = 1234.5;
    a->loss = 0.75f;
    /* the largest lists, with the longest names: it must still fit */
    a->n_listed_workers = RT_WIRE_STATUS_WORKERS;
    for (int i = 0; i < RT_WIRE_STATUS_WORKERS; i++) {
        a->workers[i].id = i;
        memset(a->workers[i].name, 'a' + i % 26, RT_WIRE_NAME_MAX - 1);
        a->workers[i].share = 1.0 / RT_WIRE_STATUS_WORKERS;
        a->workers[i].speed = 100.0 + i;
        a->workers[i].heartbeat_age_s = 0.25;
        a->workers[i].evicted = i == 3;
    }
    a->n_listed_shards = 2;
    a->shards[1].shard = 1;
    a->shards[1].heard_age_s = -1;
    a->n_decisions = RT_WIRE_STATUS_DECISIONS;
    for (int i = 0; i < RT_WIRE_STATUS_DECISIONS; i++) {
        a->decisions[i].seq = (uint64_t)i + 1;
        a->decisions[i].batch = 128 << i;
        a->decisions[i].lambda = 10.0 / (i + 1);
        a->decisions[i].verdict = i % 2 ? RT_WIRE_VERDICT_STALE : RT_WIRE_VERDICT_ACCEPTED;
        memset(a->decisions[i].reason, 'r', RT_WIRE_REASON_MAX - 1);
    }
    a->eval = (struct rt_wire_eval){1, 89, 50000, 34567, 1.25f};
    size_t len = 0;
    assert_int_equal(rt_wire_status_encode(a, 0, "shard-0", buf, RT_WIRE_STATUS_MAX, &len), 0);
    char name[RT_WIRE_NAME_MAX];
    assert_int_equal(rt_wire_status_decode(buf, len, b, name), 0);
    assert_string_equal(name, "shard-0");
    assert_int_equal(b->version, 17);
    assert_int_equal(b->batch, 256);
    assert_true(b->lr == 0.2f && b->gamma == 0.1f && b->loss == 0.75f);
    assert_int_equal(b->n_listed_workers, RT_WIRE_STATUS_WORKERS);
    assert_string_equal(b->workers[5].name, a->workers[5].name);
    assert_true(b->workers[3].evicted && !b->workers[4].evicted);
    assert_true(b->workers[7].speed == 107.0);
    assert_int_equal(b->n_listed_shards, 2);
    assert_true(b->shards[1].heard_age_s == -1);
    assert_int_equal(b->n_decisions, RT_WIRE_STATUS_DECISIONS);
    assert_int_equal(b->decisions[2].batch, 512);
    assert_int_equal(b->decisions[1].verdict, RT_WIRE_VERDICT_STALE);
    assert_int_equal(strlen(b->decisions[7].reason), RT_WIRE_REASON_MAX - 1);
    assert_true(b->eval.present && b->eval.epoch == 89 && b->eval.samples == 50000 &&
                b->eval.correct == 34567 && b->eval.loss == 1.25f);
    /* cut short: never accepted (the trailer is missing, or protobuf fails) */
    for (size_t cut = 1; cut < 64; cut++)
        assert_true(rt_wire_status_decode(buf, len - cut, b, NULL) < 0);
    assert_true(rt_wire_status_decode(buf, 0, b, NULL) < 0);
    /* a status that does not fit the caller's buffer */
    assert_int_equal(rt_wire_status_encode(a, 0, "shard-0", buf, 100, &len), RT_ERR_TOOBIG);
    free(a);
    free(b);
    free(buf);
}

static void test_peek_announces_nothing(void **state)
{
    (void)state;
    struct server_fixsched_cfg fc = {.batch = 10, .lr = 0.5f, .n_samples = 100, .steps = 50};
    struct server_coord_sched sched;
    assert_int_equal(server_fixsched_new(&fc, &sched), 0);
    server_coord_t *c = server_coord_new(2, &sched);
    assert_non_null(c);
    struct server_coord_point pt;
    assert_int_equal(server_coord_peek(c, 12, &pt), 0);
    assert_int_equal(pt.epoch, 1);
    assert_int_equal(pt.batch, 10);
    assert_int_equal(server_coord_next_step(c), 0); /* nothing announced */
    assert_int_equal(server_coord_sched(c, 12, &pt), 0);
    assert_int_equal(server_coord_next_step(c), 13); /* as a participant's question does */
    assert_int_equal(server_coord_peek(c, 20, &pt), 0);
    assert_int_equal(server_coord_next_step(c), 13);
    struct server_coord_worker info;
    assert_int_equal(server_coord_worker_info(c, 0, &info), RT_ERR_ARG); /* not registered */
    assert_int_equal(server_coord_register(c, "w0", 1.0), 0);
    assert_int_equal(server_coord_worker_info(c, 0, &info), 0);
    assert_string_equal(info.name, "w0");
    assert_false(info.evicted);
    server_coord_destroy(&c);
    server_fixsched_destroy(&sched);
}

/* Send one malformed message (not an EbHeader) to the endpoint from a fresh connection. */
static void s_send_garbage(const char *endpoint)
{
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    assert_int_equal(zmq_send(s, "not a header", 12, 0), 12);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* The fields of a mid-run status. */
static void s_check_status(json_t *j)
{
    assert_string_equal(json_string_value(json_object_get(j, "coordinator")), "shard-0");
    assert_int_equal(json_integer_value(json_object_get(j, "n_workers")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "n_shards")), 2);
    json_t *sc = json_object_get(j, "schedule");
    assert_int_equal(json_integer_value(json_object_get(sc, "B")), BATCH);
    assert_true(fabs(json_number_value(json_object_get(sc, "lr")) - 0.05) < 1e-6);
    assert_int_equal(json_integer_value(json_object_get(sc, "epoch")), 0);
    assert_false(json_is_true(json_object_get(sc, "done")));
    json_int_t version = json_integer_value(json_object_get(j, "version"));
    assert_int_equal(json_integer_value(json_object_get(sc, "step")), version);
    assert_true(version >= 1 && version < STEPS);
    json_t *ws = json_object_get(j, "workers");
    assert_int_equal(json_array_size(ws), 2);
    double share = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *w = json_array_get(ws, i);
        assert_int_equal(json_integer_value(json_object_get(w, "id")), (json_int_t)i);
        share += json_number_value(json_object_get(w, "share"));
        double age = json_number_value(json_object_get(w, "heartbeat_age_s"));
        assert_true(age >= 0 && age < 30);
        assert_false(json_is_true(json_object_get(w, "evicted")));
        assert_true(json_number_value(json_object_get(w, "speed")) >= 0);
    }
    assert_true(fabs(share - 1.0) < 1e-9);
    json_t *sh = json_object_get(j, "shards");
    assert_int_equal(json_array_size(sh), 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(sh, 0), "version")),
                     version);
    assert_true(json_is_array(json_object_get(j, "decisions")));
}

static void test_status_mid_run(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), cmd[8192], ep[64], log[4200];
    int port = eb_test_free_port();
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    snprintf(log, sizeof log, "%s/launch.log", tmp);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn exec '%s' launch --model synth --transport tcp --port %d --shards 2 "
             "--workers 2 --params %d --steps %d --batch %d --lr 0.05 --balance static "
             "--output-dir '%s/run' 2>'%s' >/dev/null",
             eb_test_binary(), port, P, STEPS, BATCH, tmp, log);
    int pid = eb_test_spawn(cmd);
    snprintf(cmd, sizeof cmd, "'%s' status --connect %s --json --timeout-ms 2000 2>/dev/null",
             eb_test_binary(), ep);
    json_t *j = NULL;
    int garbage = 0, shard1 = 0;
    char cmd1[8192];
    snprintf(cmd1, sizeof cmd1,
             "'%s' status --connect tcp://127.0.0.1:%d --timeout-ms 2000 2>&1 >/dev/null | "
             "grep -q 'not the coordinator'",
             eb_test_binary(), port + 1);
    for (int t = 0; t < TRIES && eb_test_running(pid); t++) {
        json_t *k = eb_test_json_cmd(cmd);
        json_int_t v = json_integer_value(json_object_get(k, "version"));
        if (k && v >= 1 && !shard1)
            shard1 = eb_test_run(cmd1) == 0; /* shard 1 refuses, and says why */
        if (k && v >= 1 && !garbage) {
            s_send_garbage(ep); /* then ask again: the coordinator still answers */
            garbage = 1;
        } else if (k && v >= 2 && garbage && !j) {
            j = k;
            break;
        }
        json_decref(k);
        usleep(POLL_US);
    }
    if (!j)
        fail_msg("no mid-run status from %s", ep);
    s_check_status(j);
    json_decref(j);
    assert_true(shard1);
    assert_int_equal(eb_test_wait(pid), 0);
    /* the malformed message was logged with its sender and dropped */
    long n = 0;
    char *text = (char *)eb_test_read(log, &n);
    if (!strstr(text, "dropped"))
        fail_msg("no 'dropped' line in the coordinator's log:\n%s", text);
    free(text);
    /* asking a dead endpoint fails (exit 1) within its timeout */
    snprintf(cmd, sizeof cmd, "'%s' status --connect %s --timeout-ms 300 2>/dev/null",
             eb_test_binary(), ep);
    assert_int_equal(eb_test_run(cmd), 1);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* Under CURVE the query holds the deployment's key (its --config) like any client; without a
 * key it gets no answer. */
static void test_status_under_curve(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), cmd[8192], ep[64], cfg[4200];
    snprintf(cmd, sizeof cmd, "'%s' keygen --out '%s/cluster' >/dev/null 2>&1", eb_test_binary(),
             tmp);
    if (eb_test_run(cmd) != 0) {
        eb_test_rmtree(tmp);
        free(tmp);
        skip(); /* this libzmq has no CURVE */
    }
    snprintf(cfg, sizeof cfg, "%s/secure.yaml", tmp);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f, "security: {key: '%s/cluster.key'}\n", tmp);
    fclose(f);
    int port = eb_test_free_port();
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=error exec '%s' launch --config '%s' --model synth --transport tcp --port %d "
             "--shards 2 --workers 2 --params %d --steps %d --batch %d --lr 0.05 "
             "--output-dir '%s/run' >/dev/null 2>&1",
             eb_test_binary(), cfg, port, P, STEPS, BATCH, tmp);
    int pid = eb_test_spawn(cmd);
    snprintf(cmd, sizeof cmd,
             "EB_LOG=error '%s' status --config '%s' --connect %s --json --timeout-ms 2000 "
             "2>/dev/null",
             eb_test_binary(), cfg, ep);
    json_t *j = NULL;
    for (int t = 0; t < TRIES && eb_test_running(pid) && !j; t++) {
        j = eb_test_json_cmd(cmd);
        if (j && json_integer_value(json_object_get(j, "version")) < 1) {
            json_decref(j);
            j = NULL;
        }
        if (!j)
            usleep(POLL_US);
    }
    if (!j)
        fail_msg("no status with the key from %s", ep);
    assert_int_equal(json_integer_value(json_object_get(j, "n_workers")), 2);
    json_decref(j);
    /* the same query without a key: the CURVE handshake never completes, no answer; and the
     * coordinator was there all along (it answers the keyed query right after) */
    char bare[8192];
    snprintf(bare, sizeof bare,
             "EB_LOG=error '%s' status --connect %s --timeout-ms 500 >/dev/null 2>&1",
             eb_test_binary(), ep);
    assert_int_equal(eb_test_run(bare), 1);
    j = eb_test_json_cmd(cmd);
    if (!j)
        fail_msg("the run ended before the query without a key could be told from it");
    json_decref(j);
    assert_int_equal(eb_test_wait(pid), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_status_abs_reasons_and_test(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], cmd[12000];
    snprintf(db, sizeof db, "%s/db", tmp);
    eb_test_make_raw_db(db, 64, 1, 8, 8);
    int port = eb_test_free_port();
    snprintf(cmd, sizeof cmd,
             "EB_LOG=warn exec '%s' launch --transport tcp --port %d --shards 2 --workers 2 "
             "--balance static --model cnn --data '%s' --test '%s' --classes 64 --batch 8 "
             "--micro-batch 4 --lr 0.05 --method ABS --epochs 12 --batch-max 32 --kappa 1 "
             "--hessian-batch 16 --decisions sync --output-dir '%s/run' >/dev/null 2>&1",
             eb_test_binary(), port, db, db, tmp);
    int pid = eb_test_spawn(cmd);
    snprintf(cmd, sizeof cmd,
             "'%s' status --connect tcp://127.0.0.1:%d --json --timeout-ms 2000 2>/dev/null",
             eb_test_binary(), port);
    int seen = 0;
    for (int t = 0; t < TRIES && !seen && eb_test_running(pid); t++) {
        json_t *j = eb_test_json_cmd(cmd);
        json_t *dec = json_object_get(j, "decisions"), *test = json_object_get(j, "test");
        if (json_array_size(dec) >= 2 && json_is_object(test)) {
            seen = 1;
            for (size_t i = 0; i < json_array_size(dec); i++) {
                const char *why =
                    json_string_value(json_object_get(json_array_get(dec, i), "reason"));
                assert_non_null(why);
                assert_true(why[0] != '\0'); /* the rule says why */
            }
            assert_int_equal(json_integer_value(json_object_get(test, "samples")), 64);
            double acc = json_real_value(json_object_get(test, "accuracy"));
            assert_true(acc >= 0 && acc <= 1);
        }
        json_decref(j);
        if (!seen)
            usleep(POLL_US);
    }
    assert_true(seen);
    assert_int_equal(eb_test_wait(pid), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

/* A worker's count of undecodable records as the coordinator keeps it: reports only grow
 * within one process; a report below the last is a restarted worker, whose earlier count stays in
 * the total. */
static void test_bad_records_restarts(void **state)
{
    (void)state;
    struct server_shard_bad b = {0};
    assert_int_equal(server_shard_bad_report(&b, 0), 0);
    assert_int_equal(server_shard_bad_report(&b, 3), 1);
    assert_int_equal(server_shard_bad_report(&b, 3), 0);
    assert_true(server_shard_bad_count(&b) == 3);
    assert_int_equal(server_shard_bad_report(&b, 1), 1); /* restarted: 3 + 1 */
    assert_true(server_shard_bad_count(&b) == 4);
    assert_int_equal(server_shard_bad_report(&b, 2), 1);
    assert_true(server_shard_bad_count(&b) == 5);
    server_shard_bad_report(&b, UINT64_MAX); /* a hostile count saturates, never wraps */
    assert_true(server_shard_bad_count(&b) == UINT64_MAX);
}

/* Two workers train on a set with two undecodable records under data.skip_bad_records: the
 * coordinator's status lists each worker's count of skipped records and their sum, every record
 * met by at least one worker and by each at most once, as JSON and as text. */
static void test_status_bad_records(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], cmd[12000], txt[12000];
    snprintf(db, sizeof db, "%s/db", tmp);
    static const size_t bad[2] = {5, 40};
    eb_test_make_raw_db_bad(db, 64, 1, 8, 8, bad, 2);
    int port = eb_test_free_port();
    snprintf(cmd, sizeof cmd,
             "EB_LOG=error exec '%s' launch --transport tcp --port %d --shards 2 --workers 2 "
             "--balance static --model cnn --data '%s' --classes 64 --batch 8 --micro-batch 4 "
             "--lr 0.05 --epochs 40 --skip-bad-records 2 --output-dir '%s/run' >/dev/null 2>&1",
             eb_test_binary(), port, db, tmp);
    int pid = eb_test_spawn(cmd);
    snprintf(cmd, sizeof cmd,
             "'%s' status --connect tcp://127.0.0.1:%d --json --timeout-ms 2000 2>/dev/null",
             eb_test_binary(), port);
    snprintf(txt, sizeof txt,
             "'%s' status --connect tcp://127.0.0.1:%d --timeout-ms 2000 2>/dev/null | "
             "grep -Eq '[234] undecodable records skipped in all'",
             eb_test_binary(), port);
    int seen = 0, text = 0;
    for (int t = 0; t < TRIES && !seen && eb_test_running(pid); t++) {
        json_t *j = eb_test_json_cmd(cmd);
        json_t *workers = json_object_get(j, "workers");
        json_int_t total = json_integer_value(json_object_get(j, "bad_records")), sum = 0;
        for (size_t i = 0; i < json_array_size(workers); i++) {
            json_int_t n =
                json_integer_value(json_object_get(json_array_get(workers, i), "bad_records"));
            assert_true(n >= 0 && n <= 2); /* each record once per worker at most */
            sum += n;
        }
        if (j) {
            assert_true(total == sum);
            assert_true(total <= 4);
        }
        if (j && total >= 2 && json_array_size(workers) == 2) {
            seen = 1;
            text = eb_test_run(txt) == 0; /* counts only grow: the text shows 2 to 4 */
        }
        json_decref(j);
        if (!seen)
            usleep(POLL_US);
    }
    assert_true(seen);
    assert_true(text);
    assert_int_equal(eb_test_wait(pid), 0);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_peek_announces_nothing),
        cmocka_unit_test(test_status_mid_run),
        cmocka_unit_test(test_status_under_curve),
        cmocka_unit_test(test_status_abs_reasons_and_test),
        cmocka_unit_test(test_bad_records_restarts),
        cmocka_unit_test(test_status_bad_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
