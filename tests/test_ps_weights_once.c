/*
 * test_ps_weights_once: in a multi-process run the final weights are written once, by the worker
 * the coordinator numbered 0. A shard process and two worker processes, each worker told to write
 * into a place of its own (as in docker-compose): with the synthetic model exactly one --out file
 * appears; with a zoo model on a tiny dataset exactly one of the two output directories receives
 * weights.safetensors (and one --out file, the same weights as raw floats).
 */
#include "eb_test.h"
#include "eb_test_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define N 24 /* records of 1 x 8 x 8 */

static int s_exists(const char *dir, const char *name)
{
    char path[4400];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &sb) == 0 && sb.st_size > 0;
}

/* One shard and two workers as processes; extra arguments per role. Returns the exit status
 * (worker a * 100 + worker b * 10 + server). */
static int s_cluster(const char *tmp, const char *server_args, const char *wa, const char *wb)
{
    char cmd[32768];
    snprintf(cmd, sizeof cmd,
             "B='%s'; T='%s'; export EB_LOG=warn; "
             "\"$B\" server --shard 0 --shards 1 --workers 2 --bind \"ipc://$T/s0\" %s & s=$!; "
             "\"$B\" worker --connect \"ipc://$T/s0\" --timeout-ms 30000 %s & a=$!; "
             "\"$B\" worker --connect \"ipc://$T/s0\" --timeout-ms 30000 %s & b=$!; "
             "wait $a; ra=$?; wait $b; rb=$?; [ $ra -eq 0 ] && [ $rb -eq 0 ] || kill $s; "
             "wait $s; rs=$?; exit $((ra * 100 + rb * 10 + rs))",
             eb_test_binary(), tmp, server_args, wa, wb);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_synth_out_written_once(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), wa[1200], wb[1200];
    snprintf(wa, sizeof wa, "--model synth --params 60 --out '%s/a.bin'", tmp);
    snprintf(wb, sizeof wb, "--model synth --params 60 --out '%s/b.bin'", tmp);
    int rc = s_cluster(tmp, "--model synth --params 60 --steps 6 --batch 8 --samples 32", wa, wb);
    if (rc)
        fail_msg("worker a * 100 + worker b * 10 + server exit status: %d", rc);
    int na = s_exists(tmp, "a.bin"), nb = s_exists(tmp, "b.bin");
    if (na + nb != 1)
        fail_msg("%d final weight files written, expected 1", na + nb);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_zoo_weights_written_once(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir(), db[1024], sa[1200], wa[4096], wb[4096], da[1100], db2[1100];
    snprintf(db, sizeof db, "%s/db", tmp);
    eb_test_make_raw_db(db, N, 1, 8, 8);
    snprintf(da, sizeof da, "%s/out-a", tmp);
    snprintf(db2, sizeof db2, "%s/out-b", tmp);
    snprintf(sa, sizeof sa, "--model cnn --data '%s' --classes %d --steps 4 --batch 8", db, N);
#define S_ZOO                                                                                      \
    "--model cnn --classes %d --micro-batch 4 --batch 8 --data '%s' --output-dir '%s' "            \
    "--out '%s/raw.bin'"
    snprintf(wa, sizeof wa, S_ZOO, N, db, da, da);
    snprintf(wb, sizeof wb, S_ZOO, N, db, db2, db2);
#undef S_ZOO
    int rc = s_cluster(tmp, sa, wa, wb);
    if (rc)
        fail_msg("worker a * 100 + worker b * 10 + server exit status: %d", rc);
    int na = s_exists(da, "weights.safetensors"), nb = s_exists(db2, "weights.safetensors");
    if (na + nb != 1)
        fail_msg("%d weights.safetensors written, expected 1", na + nb);
    int ra = s_exists(da, "raw.bin"), rb = s_exists(db2, "raw.bin");
    if (ra + rb != 1 || ra != na)
        fail_msg("raw weights written by %d workers (a: %d, b: %d), expected the same one", ra + rb,
                 ra, rb);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth_out_written_once),
        cmocka_unit_test(test_zoo_weights_written_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
