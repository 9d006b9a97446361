/*
 * test_deploy_compose: deploy/'s compose files, without Docker.
 *
 * The deployments' configurations (configs/compose.yaml, configs/deploy.yaml) parse through the
 * option table as every role reads them, and run ABS (the eigen service is part of them). Every
 * compose file passes `docker-compose config` with deploy/.env.example (skipped when
 * docker-compose is not installed). Then the multi-host files run as processes of the built
 * binary (tests/tools/compose_run.py): the command lines of shard0 and shard1 (servers host),
 * worker-gpu0 and worker-gpu1 (a worker host) and eigensvc (the eigen-service host), with an .env
 * of this test (127.0.0.1, free ports, a CURVE keypair, temporary data and run folders) and the
 * volumes mapped back to host paths, train ABS with `decisions: sync` for 2 epochs on a small
 * generated LMDB. Each service's healthcheck (`eigenbatch ping`) passes while it runs; the eigen
 * service's decision is accepted (batch 64 -> 128, nothing refused) and applied: the workers'
 * epoch 1 runs at batch 128. A ping that gets no answer in its timeout fails (1), a ping without
 * one endpoint is a usage error (2).
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "app_opts.h"

#define N 512 /* records of 1 x 8 x 8, label = index (as many classes) */

static int s_have_python_yaml(void)
{
    return eb_test_run("python3 -c 'import yaml' >/dev/null 2>&1") == 0;
}

static void test_deploy_configs_parse(void **state)
{
    (void)state;
    static const char *const files[] = {"configs/compose.yaml", "configs/deploy.yaml"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", eb_test_source_dir(), files[i]);
        char *argv[] = {"server", "--config", path, "--shard", "0", NULL};
        struct app_opts o;
        rt_config_t *cfg = NULL;
        if (app_opts_parse(5, argv, "", &o, &cfg))
            fail_msg("%s does not parse", files[i]);
        assert_true(app_opts_needs_eigensvc(&o));
        assert_true(app_opts_balance_measured(&o));
        assert_string_equal(o.cluster.transport, "tcp");
        rt_config_destroy(&cfg);
    }
}

static void test_compose_files_validate(void **state)
{
    (void)state;
    const char *src = eb_test_source_dir();
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && python3 tests/tools/compose_run.py --validate --env deploy/.env.example "
             "deploy/docker-compose.yml deploy/compose.servers.yml deploy/compose.worker.yml "
             "deploy/compose.eigensvc.yml",
             src);
    int rc = eb_test_run(cmd);
    if (rc == EB_TEST_SKIP)
        skip();
    assert_int_equal(rc, 0);
}

/* The test's deploy/.env and configuration: everything under tmp, ports from port on. */
static void s_write_deployment(const char *tmp, int port, int curve)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/config.yaml", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "model: {name: cnn, classes: %d}\n"
            "data: {train: '%s/data/db'}\n"
            "cluster: {shards: 2, workers: 2, transport: tcp, balance: measured}\n"
            "schedule: {method: ABS, batch: 64, lr: 0.05, epochs: 2, batch_max: 128}\n"
            "abs: {kappa: 1, hessian_batch: 32, decisions: sync, sync_timeout_s: 60}\n"
            "train: {micro_batch: 32, progress_s: 0}\n"
            "checkpoint: {every_epochs: 1}\n",
            N, tmp);
    if (curve)
        fprintf(f, "security: {key: '%s/keys/cluster.key'}\n", tmp);
    fclose(f);
    snprintf(path, sizeof path, "%s/.env", tmp);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "EIGENBATCH_CONFIG=%s/config.yaml\n"
            "EIGENBATCH_SERVERS=127.0.0.1\nEIGENBATCH_EIG_HOST=127.0.0.1\n"
            "EIGENBATCH_SHARD0_PORT=%d\nEIGENBATCH_SHARD1_PORT=%d\n"
            "EIGENBATCH_EIG_PUB_PORT=%d\nEIGENBATCH_EIG_QUERY_PORT=%d\n"
            "EIGENBATCH_KEYS=%s/keys\nEIGENBATCH_DATA=%s/data\nEIGENBATCH_RUNS=%s/runs\n"
            "EIGENBATCH_RUN=deploy\n",
            tmp, port, port + 1, port + 2, port + 3, tmp, tmp, tmp);
    fclose(f);
}

static void test_multi_host_files_train(void **state)
{
    (void)state;
    if (!s_have_python_yaml())
        skip();
    char *tmp = eb_test_tmpdir(), path[4300], cmd[16384];
    const char *bin = eb_test_binary(), *src = eb_test_source_dir();
    snprintf(path, sizeof path, "%s/data", tmp);
    assert_int_equal(mkdir(path, 0777), 0);
    snprintf(path, sizeof path, "%s/runs", tmp);
    assert_int_equal(mkdir(path, 0777), 0);
    snprintf(path, sizeof path, "%s/data/db", tmp);
    eb_test_make_raw_db(path, N, 1, 8, 8);
    /* CURVE when this libzmq has it: the healthchecks' pings must then hold the key too */
    snprintf(cmd, sizeof cmd, "'%s' keygen --out '%s/keys/cluster' >/dev/null 2>&1", bin, tmp);
    int curve = eb_test_run(cmd) == 0;
    s_write_deployment(tmp, eb_test_free_port(), curve);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && EB_LOG=warn python3 tests/tools/compose_run.py --env '%s/.env' "
             "--binary '%s' --workdir '%s' --run shard0,shard1,worker-gpu0,worker-gpu1,eigensvc "
             "deploy/compose.servers.yml deploy/compose.worker.yml deploy/compose.eigensvc.yml",
             src, tmp, bin, tmp);
    assert_int_equal(eb_test_run(cmd), 0);
    /* the eigen service's decision was accepted ... */
    snprintf(path, sizeof path, "%s/runs/deploy-eig.jsonl", tmp);
    json_t *ev = eb_test_events(path, "eig"), *e;
    size_t k;
    int accepted = 0;
    json_array_foreach(ev, k, e)
    {
        const char *v = json_string_value(json_object_get(e, "verdict"));
        if (v && !strcmp(v, "accepted")) {
            accepted++;
            assert_int_equal(json_integer_value(json_object_get(e, "batch_size")), 128);
        } else if (v && strncmp(v, "no change", 9)) {
            fail_msg("a decision was refused: %s", v);
        }
    }
    json_decref(ev);
    assert_int_equal(accepted, 1);
    /* ... and applied: epoch 1 ran at the new batch. The epoch events are the lead worker's, in
     * its host's output directory: either worker's, whichever the coordinator numbered 0 */
    int seen = 0;
    const char *dirs[] = {"deploy", "deploy-gpu1"};
    for (int d = 0; d < 2; d++) {
        snprintf(path, sizeof path, "%s/runs/%s/metrics.jsonl", tmp, dirs[d]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        fclose(f);
        ev = eb_test_events(path, "epoch");
        json_array_foreach(ev, k, e)
        {
            long long epoch = json_integer_value(json_object_get(e, "epoch"));
            long long b = json_integer_value(json_object_get(e, "batch_size"));
            assert_int_equal(b, epoch == 0 ? 64 : 128);
            seen |= 1 << epoch;
        }
        json_decref(ev);
    }
    assert_int_equal(seen, 3);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_ping_without_answer(void **state)
{
    (void)state;
    char cmd[8192];
    /* nobody listens on a free port: no answer within the timeout */
    snprintf(cmd, sizeof cmd, "'%s' ping --connect tcp://127.0.0.1:%d --timeout-ms 300 2>/dev/null",
             eb_test_binary(), eb_test_free_port());
    assert_int_equal(eb_test_run(cmd), 1);
    snprintf(cmd, sizeof cmd, "'%s' ping 2>/dev/null", eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
    snprintf(cmd, sizeof cmd,
             "'%s' ping --connect tcp://127.0.0.1:1,tcp://127.0.0.1:2 2>/dev/null >/dev/null",
             eb_test_binary());
    assert_int_equal(eb_test_run(cmd), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deploy_configs_parse),
        cmocka_unit_test(test_compose_files_validate),
        cmocka_unit_test(test_multi_host_files_train),
        cmocka_unit_test(test_ping_without_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
