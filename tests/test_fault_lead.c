/*
 * test_fault_lead: the outputs survive the worker that writes them. Two `eigenbatch server`
 * processes and two `eigenbatch worker` processes started separately (a tiny cnn over ipc, nothing
 * restarts them); once the first epoch's event is written, the process the coordinator registered
 * as worker 0 (the lead) gets SIGKILL. The coordinator evicts it and names worker 1 the lead in
 * its schedule answers: worker 1 writes the remaining epochs' events (each epoch exactly once,
 * whoever wrote it) and the final weights, and every surviving process exits 0.
 */
#include "eb_test.h"
#include "eb_test_fault.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S 2
#define W 2
#define EPOCHS 6

static struct eb_fault_fixture s_f;

static void test_lead_handover(void **state)
{
    (void)state;
    char ep[S][EB_FAULT_PATH + 16], connect[2 * EB_FAULT_PATH + 64], a_shard[S][8];
    char s_err[S][EB_FAULT_PATH + 32], w_err[W][EB_FAULT_PATH + 32];
    for (int i = 0; i < S; i++) {
        snprintf(ep[i], sizeof ep[i], "ipc://%s/s%d", s_f.tmp, i);
        snprintf(a_shard[i], sizeof a_shard[i], "%d", i);
        snprintf(s_err[i], sizeof s_err[i], "%s/shard%d.txt", s_f.tmp, i);
    }
    snprintf(connect, sizeof connect, "%s,%s", ep[0], ep[1]);
    long deadline = time(NULL) + EB_FAULT_WAIT_S;
    pid_t shards[S], workers[W];
    for (int i = 0; i < S; i++) {
        char *argv[] = {"server", "--config", s_f.cfg, "--shard",      a_shard[i], "--bind",
                        ep[i],    "--coord",  ep[0],   "--output-dir", s_f.out,    NULL};
        shards[i] = eb_fault_spawn(argv, s_err[i]);
    }
    for (int i = 0; i < W; i++) {
        char *argv[] = {"worker", "--config",     s_f.cfg, "--connect",
                        connect,  "--output-dir", s_f.out, NULL};
        snprintf(w_err[i], sizeof w_err[i], "%s/worker%d.txt", s_f.tmp, i);
        workers[i] = eb_fault_spawn(argv, w_err[i]);
    }
    pid_t lead = eb_fault_worker_pid(s_err[0], 0, deadline);
    eb_fault_wait_event(&s_f, "epoch", deadline);
    assert_int_equal(kill(lead, SIGKILL), 0);
    for (int i = 0; i < W; i++) {
        int ws = eb_fault_wait(workers[i], deadline);
        if (workers[i] == lead) {
            assert_true(ws != -1 && WIFSIGNALED(ws)); /* killed mid-run */
            continue;
        }
        if (!(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
            fail_msg("surviving worker: status %d:\n%s", ws, (char *)eb_test_read(w_err[i], NULL));
        char *log = (char *)eb_test_read(w_err[i], NULL);
        if (!strstr(log, "worker 1 is the lead from step") || !strstr(log, "weights written"))
            fail_msg("the survivor did not take over:\n%s", log);
        free(log);
    }
    for (int i = 0; i < S; i++) {
        int ws = eb_fault_wait(shards[i], deadline);
        if (!(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
            fail_msg("shard %d: status %d:\n%s", i, ws, (char *)eb_test_read(s_err[i], NULL));
    }
    char path[EB_FAULT_PATH + 64];
    snprintf(path, sizeof path, "%s/weights.safetensors", s_f.out);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    snprintf(path, sizeof path, "%s/metrics.jsonl", s_f.out);
    json_t *ev = eb_test_events(path, "evict");
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
    eb_fault_assert_epochs(&s_f, EPOCHS);
}

static int s_setup(void **state)
{
    (void)state;
    eb_fault_setup(&s_f, W, EPOCHS, NULL);
    return 0;
}

static int s_teardown(void **state)
{
    (void)state;
    eb_fault_teardown(&s_f);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lead_handover, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
