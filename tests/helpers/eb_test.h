/*
 * eb_test: helpers shared by the tests (cmocka is the framework): temporary directories, free
 * loopback ports, data files, tolerance checks.
 */
#ifndef EB_TEST_H
#define EB_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* Exit status that CTest treats as "skipped". */
#include <jansson.h>

#define EB_TEST_SKIP 77

/* Make a fresh temporary directory (mkdtemp under $TMPDIR or /tmp); caller frees the string and may
 * remove the tree with eb_test_rmtree. Fails the test on error. */
char *eb_test_tmpdir(void);
void eb_test_rmtree(const char *path);

/* A TCP port P on 127.0.0.1 such that P .. P + EB_TEST_PORT_SPAN - 1 were all free a moment ago
 * (tests bind shard i at P + i). Drawn from 20000-31999, below Linux's ephemeral range, so the
 * outgoing connections of tests running at the same time cannot take them in between. */
#define EB_TEST_PORT_SPAN 8
int eb_test_free_port(void);

/* Path of the repository root (EB_SOURCE_DIR) and of the built `eigenbatch` binary (EB_BINARY). */
const char *eb_test_source_dir(void);
const char *eb_test_binary(void);

/* The events named `name` (every event when NULL) of a metrics.jsonl, in file order, as a JSON
 * array (caller owns it: json_decref). Fails the test on a missing file or a line that is not a
 * JSON object. */
json_t *eb_test_events(const char *path, const char *name);

/* Run cmd with the shell (system()): its exit status, or -1 when it did not exit normally. */
int eb_test_run(const char *cmd);

/* Start cmd with the shell in the background (fork, exec /bin/sh -c): its pid. Fails the test
 * when it cannot start. Wait for it with eb_test_wait. */
int eb_test_spawn(const char *cmd);

/* 1 while the process started by eb_test_spawn is running (not yet waited for). */
int eb_test_running(int pid);

/* Wait for a process started by eb_test_spawn: its exit status, or -1 when it did not exit
 * normally (a signal). */
int eb_test_wait(int pid);

/* Run cmd with the shell and parse its standard output as one JSON value (caller owns it:
 * json_decref); NULL when it exits non-zero or prints no valid JSON. */
json_t *eb_test_json_cmd(const char *cmd);

/* The whole file at path, NUL-terminated (caller frees); *len (may be NULL) gets its size. Fails
 * the test when the file cannot be read. */
unsigned char *eb_test_read(const char *path, long *len);

/* Relative difference |a-b| / max(|a|, |b|, floor). */
double eb_test_reldiff(double a, double b, double floor);

/* max |a - b| / max |b| over n values (max |a - b| when b is all zero). */
double eb_test_rel_max(const float *a, const float *b, size_t n);

/* Uniform in [-1, 1) from the linear congruential state *s (tests' reproducible data). */
float eb_test_uniform(unsigned *s);

#endif
