/*
 * test_fault_launch: `eigenbatch launch` supervises its children. Two shards and two workers (a
 * tiny cnn over ipc); once the first epoch's event is written, the process the coordinator
 * registered as worker 0 (the lead) gets SIGKILL. With restarts left, launch respawns it with the
 * same command line: the coordinator evicts the dead one after cluster.worker_timeout_ms, the new
 * process takes its slot back (a "rejoin" event), worker 1 takes over as the lead, and the run
 * ends with status 0, weights.safetensors written and one "epoch" event for every epoch in
 * metrics.jsonl (the restarted process neither truncates it nor writes a "resume" event). With
 * cluster.max_restarts 0 the same kill ends the run non-zero, naming the worker, its pid and the
 * signal (launch numbers its workers in spawn order, which need not be the coordinator's).
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

#define W 2
#define EPOCHS 6

static struct eb_fault_fixture s_f;

/* launch with max_restarts; kill the coordinator's worker 0 after epoch 0's event. Returns the
 * launch's wait status; *killed gets the pid killed; err: launch's stderr. */
static int s_kill_run(const char *max_restarts, pid_t *killed, char *err, size_t cap)
{
    snprintf(err, cap, "%s/launch-err.txt", s_f.tmp);
    char *argv[] = {"launch",         "--config",           s_f.cfg, "--output-dir", s_f.out,
                    "--max-restarts", (char *)max_restarts, NULL};
    long deadline = time(NULL) + EB_FAULT_WAIT_S;
    pid_t launch = eb_fault_spawn(argv, err);
    pid_t w0 = eb_fault_worker_pid(err, 0, deadline);
    eb_fault_wait_event(&s_f, "epoch", deadline);
    assert_int_equal(kill(w0, SIGKILL), 0);
    *killed = w0;
    return eb_fault_wait(launch, deadline);
}

static void test_killed_worker_respawns_and_rejoins(void **state)
{
    (void)state;
    char err[EB_FAULT_PATH + 64], path[EB_FAULT_PATH + 64];
    pid_t killed;
    int ws = s_kill_run("3", &killed, err, sizeof err);
    char *log = (char *)eb_test_read(err, NULL);
    if (!(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
        fail_msg("launch: status %d:\n%s", ws, log);
    /* the respawn is logged with the old pid, how it ended and the restarts left */
    char needle[128];
    snprintf(needle, sizeof needle, "(pid %ld) was killed by signal 9", (long)killed);
    if (!strstr(log, needle) || !strstr(log, "respawned") || !strstr(log, "2 restart(s) left"))
        fail_msg("no respawn in the log:\n%s", log);
    free(log);
    snprintf(path, sizeof path, "%s/weights.safetensors", s_f.out);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    snprintf(path, sizeof path, "%s/metrics.jsonl", s_f.out);
    json_t *ev = eb_test_events(path, "evict");
    assert_int_equal(json_array_size(ev), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ev, 0), "worker")), 0);
    json_decref(ev);
    ev = eb_test_events(path, "rejoin");
    assert_int_equal(json_array_size(ev), 1);
    json_decref(ev);
    ev = eb_test_events(path, "resume");
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
    eb_fault_assert_epochs(&s_f, EPOCHS);
}

static void test_no_restarts_left_stops_the_run(void **state)
{
    (void)state;
    char err[EB_FAULT_PATH + 64];
    pid_t killed;
    int ws = s_kill_run("0", &killed, err, sizeof err);
    char *log = (char *)eb_test_read(err, NULL);
    if (!(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) != 0))
        fail_msg("launch: status %d:\n%s", ws, log);
    /* launch numbers its workers in spawn order; the pid names the process */
    char needle[160];
    snprintf(needle, sizeof needle,
             "(pid %ld) was killed by signal 9 (Killed); no restarts left (cluster.max_restarts 0)",
             (long)killed);
    if (!strstr(log, "eigenbatch launch: worker "))
        fail_msg("launch does not name the role:\n%s", log);
    if (!strstr(log, needle))
        fail_msg("launch does not name the worker:\n%s", log);
    free(log);
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
        cmocka_unit_test_setup_teardown(test_killed_worker_respawns_and_rejoins, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_no_restarts_left_stops_the_run, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
