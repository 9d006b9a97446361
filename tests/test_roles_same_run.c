/*
 * test_roles_same_run: one YAML file drives a whole deployment. The same short ABS run with
 * `decisions: sync` (deterministic) runs three ways from one configuration file: `eigenbatch
 * train` (threads), `eigenbatch launch` (processes it starts) and separate `server`, `worker` and
 * `eigensvc` processes started by hand, as docker-compose does, each with only its per-process
 * flags. Each way writes the same resolved configuration (config.yaml) and bitwise the same final
 * weights (with static shares: measured ones depend on timing, and BatchNorm on the split). The
 * shards run at batch 256 and the eigen service, given only the deployment's
 * --config, gets its decisions accepted (batch 256 -> 512).
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <jansson.h>

#define N 1024 /* records of 1 x 8 x 8, label = index (as many classes) */

/* Files a and b hold the same bytes. */
static void s_same(const char *a, const char *b)
{
    unsigned char *x, *y;
    long nx, ny;
    x = eb_test_read(a, &nx);
    y = eb_test_read(b, &ny);
    if (nx != ny || memcmp(x, y, (size_t)nx))
        fail_msg("%s and %s differ", a, b);
    free(x);
    free(y);
}

static void test_train_launch_and_processes_agree(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[4200], yaml[4200], cmd[65536], a[4300], b[4300];
    snprintf(db, sizeof db, "%s/db", tmp);
    eb_test_make_raw_db(db, N, 1, 8, 8);
    snprintf(yaml, sizeof yaml, "%s/run.yaml", tmp);
    FILE *f = fopen(yaml, "w");
    assert_non_null(f);
    fprintf(f,
            "model: {name: cnn, classes: %d}\n"
            "data: {train: '%s'}\n"
            "cluster: {shards: 2, workers: 2, balance: static}\n" /* the same split each way */
            "schedule: {method: ABS, batch: 256, lr: 0.05, epochs: 3, batch_max: 512}\n"
            "abs: {kappa: 1, hessian_batch: 32, decisions: sync, sync_timeout_s: 60}\n"
            "train: {micro_batch: 64, progress_s: 0}\n"
            "output: {dir: out}\n",
            N, db);
    fclose(f);
    static const char *const ways[] = {"train", "launch", "roles"};
    for (int i = 0; i < 3; i++) {
        snprintf(a, sizeof a, "%s/%s", tmp, ways[i]);
        assert_int_equal(mkdir(a, 0777), 0);
    }
    const char *bin = eb_test_binary();
    snprintf(cmd, sizeof cmd, "cd '%s/train' && EB_LOG=warn '%s' train --config '%s' >/dev/null",
             tmp, bin, yaml);
    assert_int_equal(eb_test_run(cmd), 0);
    snprintf(cmd, sizeof cmd, "cd '%s/launch' && EB_LOG=warn '%s' launch --config '%s' >/dev/null",
             tmp, bin, yaml);
    assert_int_equal(eb_test_run(cmd), 0);
    /* the roles by hand: only per-process flags besides --config */
    char s0[4300], s1[4300];
    snprintf(s0, sizeof s0, "ipc://%s/roles/s0", tmp);
    snprintf(s1, sizeof s1, "ipc://%s/roles/s1", tmp);
    snprintf(cmd, sizeof cmd,
             "cd '%s/roles' && export EB_LOG=warn; B='%s'; C='%s'; "
             "\"$B\" server --config \"$C\" --shard 0 --bind '%s' & p1=$!; "
             "\"$B\" server --config \"$C\" --shard 1 --bind '%s' --coord '%s' & p2=$!; "
             "\"$B\" worker --config \"$C\" --connect '%s,%s' --lead 1 >/dev/null & p3=$!; "
             "\"$B\" worker --config \"$C\" --connect '%s,%s' --lead 0 >/dev/null & p4=$!; "
             "\"$B\" eigensvc --config \"$C\" --connect '%s,%s' --eig-metrics eig.jsonl & p5=$!; "
             "rc=0; for p in $p1 $p2 $p3 $p4 $p5; do wait $p || rc=1; done; exit $rc",
             tmp, bin, yaml, s0, s1, s0, s0, s1, s0, s1, s0, s1);
    assert_int_equal(eb_test_run(cmd), 0);
    for (int i = 1; i < 3; i++) {
        snprintf(a, sizeof a, "%s/train/out/config.yaml", tmp);
        snprintf(b, sizeof b, "%s/%s/out/config.yaml", tmp, ways[i]);
        s_same(a, b);
        snprintf(a, sizeof a, "%s/train/out/weights.safetensors", tmp);
        snprintf(b, sizeof b, "%s/%s/out/weights.safetensors", tmp, ways[i]);
        s_same(a, b);
    }
    /* the eigen service had only the deployment's configuration: its decisions were accepted */
    snprintf(a, sizeof a, "%s/roles/eig.jsonl", tmp);
    json_t *ev = eb_test_events(a, "eig");
    size_t k;
    json_t *e;
    int accepted = 0;
    json_array_foreach(ev, k, e)
    {
        const char *v = json_string_value(json_object_get(e, "verdict"));
        if (v && !strcmp(v, "accepted")) {
            accepted++;
            assert_int_equal(json_integer_value(json_object_get(e, "batch_size")), 512);
        } else if (v && strncmp(v, "no change", 9)) {
            fail_msg("a decision was refused: %s", v);
        }
    }
    json_decref(ev);
    assert_int_equal(accepted, 1);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_launch_and_processes_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
