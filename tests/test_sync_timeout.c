/*
 * test_sync_timeout: `abs.sync_timeout_s`, the longest wait of an epoch start for its decision
 * under `abs.decisions: sync`. It defaults to 600 s, bad values are configuration errors naming
 * the key, and a small value takes effect: with no eigen service at all, a shard process started
 * from a YAML file with `sync_timeout_s: 0.3` holds each epoch start 0.3 s, warns, and training
 * completes; the in-process cluster of `eigenbatch train` does the same with its setting.
 */
#include "eb_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "app_opts.h"
#include "rt_clock.h"
#include "rt_err.h"
#include "rt_metrics.h"
#include "cluster_embed.h"
#include "server_sched.h"
#include "worker_synth.h"

#define EPOCHS 3
#define N_SAMPLES 32
#define BATCH 8
#define P 50

/* app_opts_parse of `train --set SET`: its status. */
static int s_parse(const char *set, struct app_opts *o)
{
    char *argv[] = {"train", "--model", "synth", "--set", (char *)set, NULL};
    rt_config_t *cfg = NULL;
    int rc = app_opts_parse(5, argv, "", o, &cfg);
    rt_config_destroy(&cfg);
    return rc;
}

static void test_key_default_and_bad_values(void **state)
{
    (void)state;
    struct app_opts o;
    assert_int_equal(s_parse("abs.decisions=sync", &o), 0);
    assert_true(o.abs.sync_timeout_s == 600.0);
    assert_int_equal(s_parse("abs.sync_timeout_s=0.25", &o), 0);
    assert_true(o.abs.sync_timeout_s == 0.25);
    static const char *const bad[] = {"abs.sync_timeout_s=0", "abs.sync_timeout_s=-1",
                                      "abs.sync_timeout_s=soon", "abs.sync_timeout_s=1e9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (s_parse(bad[i], &o) != 2)
            fail_msg("%s accepted", bad[i]);
        if (!strstr(rt_err_msg(), "abs.sync_timeout_s"))
            fail_msg("%s: the error does not name the key: %s", bad[i], rt_err_msg());
    }
}

static int s_count(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s missing", path);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void test_processes_proceed_after_the_timeout(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), yaml[4200], cmd[16384], slog[4200];
    snprintf(yaml, sizeof yaml, "%s/run.yaml", tmp);
    snprintf(slog, sizeof slog, "%s/server.log", tmp);
    FILE *f = fopen(yaml, "w");
    assert_non_null(f);
    fprintf(f,
            "model:\n  name: synth\nschedule:\n  method: ABS\n  epochs: %d\n  batch: %d\n"
            "abs:\n  decisions: sync\n  sync_timeout_s: 0.3\n",
            EPOCHS, BATCH);
    fclose(f);
    /* one shard and one worker, and no eigen service: nobody ever decides */
    snprintf(cmd, sizeof cmd,
             "B='%s'; T='%s'; \"$B\" server --config \"$T/run.yaml\" --shard 0 --shards 1 "
             "--workers 1 --bind \"ipc://$T/s0\" --samples %d 2>'%s' & p=$!; "
             "\"$B\" worker --config \"$T/run.yaml\" --connect \"ipc://$T/s0\" --timeout-ms 20000 "
             "2>\"$T/worker.log\"; "
             "w=$?; wait $p; s=$?; exit $((w * 10 + s))",
             eb_test_binary(), tmp, N_SAMPLES, slog);
    double t0 = rt_clock_now();
    int st = system(cmd);
    double dt = rt_clock_now() - t0;
    assert_true(st != -1 && WIFEXITED(st));
    if (WEXITSTATUS(st))
        fail_msg("worker*10 + server exit status %d", WEXITSTATUS(st));
    /* epochs 1 and 2 each waited 0.3 s for a decision, then went ahead with a warning */
    assert_int_equal(s_count(slog, "after 300 ms (decisions: sync)"), EPOCHS - 1);
    assert_true(dt >= 0.3 * (EPOCHS - 1));
    assert_true(dt < 60);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_cluster_proceeds_after_the_timeout(void **state)
{
    (void)state;
    struct server_sched_config c;
    server_sched_config_default(&c, SERVER_SCHED_ABS, N_SAMPLES, EPOCHS);
    c.batch = BATCH;
    c.base_batch = BATCH;
    c.batch_max = 4 * BATCH;
    c.micro_batch = BATCH;
    c.lr = 1e-3;
    server_sched_t *sched = server_sched_new(&c);
    assert_non_null(sched);
    struct server_coord_sched cs;
    server_coord_use_sched(&cs, sched);
    struct worker_synth m;
    assert_int_equal(worker_synth_init(&m, 3, P, 0), 0);
    struct worker_compute cb = worker_synth_compute(&m);
    struct worker_stats st;
    struct cluster_embed_cfg cc = {
        .n_shards = 1,
        .n_workers = 1,
        .transport = "inproc",
        .where = "sync-timeout",
        .n_params = P,
        .sched = &cs,
        .compute = &cb,
        .snapshots = 1,
        .sync = 1,
        .sync_timeout_ms = 200,
    };
    double t0 = rt_clock_now();
    if (cluster_embed_run(&cc, NULL, NULL, &st))
        fail_msg("cluster: %s", rt_err_msg());
    double dt = rt_clock_now() - t0;
    assert_int_equal(st.steps, EPOCHS * N_SAMPLES / BATCH);
    assert_true(dt >= 0.2 * (EPOCHS - 1));
    assert_true(dt < 30);
    worker_synth_fini(&m);
    server_sched_destroy(&sched);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_default_and_bad_values),
        cmocka_unit_test(test_processes_proceed_after_the_timeout),
        cmocka_unit_test(test_cluster_proceeds_after_the_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
