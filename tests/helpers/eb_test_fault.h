/*
 * eb_test_fault: the fixture of the fault tests that run the `eigenbatch` binary as processes: a
 * tiny LMDB (labels = record index, as many classes), a configuration file, children started with
 * their stderr in a file and killed by the teardown when a test fails half-way, and the waits
 * those tests need (an event in metrics.jsonl, a line in a log).
 */
#ifndef EB_TEST_FAULT_H
#define EB_TEST_FAULT_H

#include <sys/types.h>

#define EB_FAULT_PATH 4300   /* bytes of a path in these tests */
#define EB_FAULT_RECORDS 256 /* records of the dataset: 8 steps of 32 per epoch */
#define EB_FAULT_WAIT_S 50   /* longest wait for anything (sanitizer builds are slow) */

/* The fixture: a temporary directory with the LMDB and the configuration. */
struct eb_fault_fixture {
    char *tmp;               /* temporary directory (eb_test_tmpdir) */
    char db[EB_FAULT_PATH];  /* the tiny LMDB */
    char cfg[EB_FAULT_PATH]; /* the configuration */
    char out[EB_FAULT_PATH]; /* the output directory (tmp/out) */
};

/* Make the directory, the LMDB and a configuration of a tiny cnn over ipc with `workers` workers,
 * two shards, `epochs` epochs, a checkpoint every epoch, cluster.worker_timeout_ms 1000, plus
 * `extra` YAML lines (may be NULL). */
void eb_fault_setup(struct eb_fault_fixture *f, int workers, int epochs, const char *extra);

/* Kill the children still running (SIGKILL) and remove the directory. */
void eb_fault_teardown(struct eb_fault_fixture *f);

/* SIGKILL every process eb_fault_spawn started that is still there, and reap it: a teardown for
 * tests that fail half-way (cmocka's signature; state unused). Returns 0. */
int eb_fault_kill_children(void **state);

/* Start `eigenbatch` with argv (argv[0] is the sub-command; NULL-terminated) and EB_LOG=info,
 * stderr into err (stdout to /dev/null); returns its pid. */
pid_t eb_fault_spawn(char *const *argv, const char *err);

/* Wait for pid until the deadline (time(NULL) seconds); its wait status, or -1 after killing it at
 * the deadline. */
int eb_fault_wait(pid_t pid, long deadline);

/* Wait until metrics.jsonl of the output directory holds an event `name` (fails the test at the
 * deadline). */
void eb_fault_wait_event(const struct eb_fault_fixture *f, const char *name, long deadline);

/* The pid of the process the coordinator registered as worker `id` (from shard 0's INFO line
 * "worker ID 'HOST:PID' registered" in the log file `log`), waiting for it until the deadline. */
pid_t eb_fault_worker_pid(const char *log, int id, long deadline);

/* Fail unless metrics.jsonl holds exactly one "epoch" event for each epoch of the run: after its
 * last "resume" event, the epochs from the resume's on to epochs - 1 (without one: 0 .. epochs - 1
 * from the start). */
void eb_fault_assert_epochs(const struct eb_fault_fixture *f, int epochs);

#endif
