/*
 * test_evict_launch: the process roles survive a worker killed with SIGKILL. Two `eigenbatch
 * server` processes and three `eigenbatch worker` processes (synthetic model, ipc); once the first
 * epoch's checkpoint exists, one worker gets SIGKILL. The coordinator evicts it after
 * --worker-timeout-ms, the two others finish every step and exit 0, both shards exit 0, and
 * metrics.jsonl in the output directory holds the "evict" event (written by shard 0's process).
 * The output directory does not exist beforehand (a fresh volume): the roles create it, and the
 * samples lost summed over metrics.jsonl equal those shard 0's log reports.
 */
#include "eb_test.h"
#include "eb_test_fault.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define P 501
#define NB 3
#define BATCH 12
#define N_SAMPLES 120 /* 10 steps per epoch */
#define EPOCHS 200
#define STEPS (EPOCHS * N_SAMPLES / BATCH)
#define CKPT_EVERY 50 /* the kill comes after the first checkpoint, a quarter into the run */
#define S 2
#define W 3
#define EVICT_MS 2000
#define WAIT_S 60 /* longest wait for the run (sanitizer builds are slow) */

static void test_sigkilled_worker(void **state)
{
    (void)state;
    char *dir = eb_test_tmpdir();
    char ep[S][4200], connect[9000], ck1[4400], mpath[4400], out[4200], log0[4200];
    snprintf(out, sizeof out, "%s/fresh/volume", dir); /* not created here */
    snprintf(log0, sizeof log0, "%s/shard0.log", dir);
    for (int i = 0; i < S; i++)
        snprintf(ep[i], sizeof ep[i], "ipc://%s/s%d", dir, i);
    snprintf(connect, sizeof connect, "%s,%s", ep[0], ep[1]);
    snprintf(ck1, sizeof ck1, "%s/checkpoints/epoch-%06d/MANIFEST.json", out, CKPT_EVERY);
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", out);
    char a_p[16], a_nb[16], a_b[16], a_ep[16], a_n[16], a_ev[16], a_ck[16], a_shard[S][8];
    snprintf(a_p, sizeof a_p, "%d", P);
    snprintf(a_nb, sizeof a_nb, "%d", NB);
    snprintf(a_b, sizeof a_b, "%d", BATCH);
    snprintf(a_ep, sizeof a_ep, "%d", EPOCHS);
    snprintf(a_ck, sizeof a_ck, "%d", CKPT_EVERY);
    snprintf(a_n, sizeof a_n, "%d", N_SAMPLES);
    snprintf(a_ev, sizeof a_ev, "%d", EVICT_MS);
    pid_t shards[S], workers[W];
    for (int i = 0; i < S; i++) {
        snprintf(a_shard[i], sizeof a_shard[i], "%d", i);
        /* (shard 0 ignores --coord) */
        char *argv[] = {"server",   "--shard",
                        a_shard[i], "--shards",
                        "2",        "--workers",
                        "3",        "--bind",
                        ep[i],      "--coord",
                        ep[0],      "--params",
                        a_p,        "--buffers",
                        a_nb,       "--batch",
                        a_b,        "--method",
                        "BL",       "--epochs",
                        a_ep,       "--samples",
                        a_n,        "--lr",
                        "0.001",    "--output-dir",
                        out,        "--checkpoint-every",
                        a_ck,       "--worker-timeout-ms",
                        a_ev,       "--model",
                        "synth",    NULL};
        shards[i] = eb_fault_spawn(argv, i == 0 ? log0 : "/dev/null");
    }
    for (int i = 0; i < W; i++) {
        char *argv[] = {"worker", "--connect",    connect, "--params", a_p,     "--buffers",
                        a_nb,     "--timeout-ms", "20000", "--model",  "synth", NULL};
        workers[i] = eb_fault_spawn(argv, "/dev/null");
    }
    /* mid-run: once the first epoch is checkpointed */
    time_t deadline = time(NULL) + WAIT_S;
    struct stat sb;
    while (stat(ck1, &sb) != 0 && time(NULL) < deadline)
        usleep(2000);
    assert_int_equal(stat(ck1, &sb), 0);
    assert_int_equal(kill(workers[2], SIGKILL), 0);
    int ws = eb_fault_wait(workers[2], deadline);
    assert_true(ws != -1 && WIFSIGNALED(ws)); /* it was still running: killed mid-run */
    for (int i = 0; i < 2; i++) {
        ws = eb_fault_wait(workers[i], deadline);
        if (!(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
            fail_msg("surviving worker %d: status %d", i, ws);
    }
    for (int i = 0; i < S; i++) {
        ws = eb_fault_wait(shards[i], deadline);
        if (!(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
            fail_msg("shard %d: status %d", i, ws);
    }
    /* the coordinator recorded the eviction */
    json_t *ev = eb_test_events(mpath, "evict");
    assert_int_equal(json_array_size(ev), 1);
    json_t *j = json_array_get(ev, 0);
    json_int_t step = json_integer_value(json_object_get(j, "step"));
    json_int_t worker = json_integer_value(json_object_get(j, "worker"));
    assert_true(step >= N_SAMPLES / BATCH && step < STEPS);
    assert_true(worker >= 0 && worker < W);
    assert_true(json_integer_value(json_object_get(j, "lost_samples")) >= 0);
    /* every sample the log says was lost is in metrics.jsonl */
    long long in_metrics = 0, in_log = 0;
    for (size_t i = 0; i < json_array_size(ev); i++)
        in_metrics += json_integer_value(json_object_get(json_array_get(ev, i), "lost_samples"));
    char *text = (char *)eb_test_read(log0, NULL);
    for (const char *p = strstr(text, "evicted at step"); p; p = strstr(p + 1, "evicted at step")) {
        const char *q = strstr(p, "; ");
        assert_non_null(q);
        in_log += strtoll(q + 2, NULL, 10);
    }
    free(text);
    assert_int_equal(in_metrics, in_log);
    json_decref(ev);
    eb_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sigkilled_worker, eb_fault_kill_children),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
