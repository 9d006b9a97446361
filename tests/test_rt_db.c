/*
 * test_rt_db: the LMDB reader (index, key order, zero-copy records) and the writer's safety:
 * refuse to overwrite without force, replace only LMDB directories, never leave a database that
 * looks complete after an interruption (even SIGKILL), duplicate keys rejected.
 */
#include "eb_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_db.h"
#include "rt_err.h"

static void s_put(rt_db_writer_t *w, const char *key, const char *val)
{
    assert_int_equal(rt_db_writer_put(w, key, strlen(key), val, strlen(val)), 0);
}

static bool s_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void test_write_read_order(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/a/b/db", tmp); /* parents are made */
    rt_db_writer_t *w = NULL;
    assert_int_equal(rt_db_writer_new(dir, false, &w), 0);
    char key[32], val[32];
    for (int i = 0; i < 2500; i++) { /* several transactions */
        snprintf(key, sizeof key, "%08d", i);
        snprintf(val, sizeof val, "v%d", i * 3);
        s_put(w, key, val);
    }
    s_put(w, "00000000_late", "x"); /* out of order: still stored, sorted */
    assert_int_equal(rt_db_writer_put(w, "00000007", 8, "y", 1), RT_ERR_EXISTS);
    assert_non_null(strstr(rt_err_msg(), "00000007"));
    assert_false(s_exists(dir)); /* nothing at the destination until finish */
    assert_int_equal(rt_db_writer_finish(w), 0);
    rt_db_writer_destroy(&w);
    rt_db_writer_destroy(&w);
    assert_null(w);

    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(dir, &db), 0);
    assert_int_equal(rt_db_count(db), 2501);
    char kb[RT_DB_KEY_MAX];
    assert_string_equal(rt_db_key(db, 0, kb, sizeof kb), "00000000");
    assert_string_equal(rt_db_key(db, 1, kb, sizeof kb), "00000000_late");
    assert_string_equal(rt_db_key(db, 2500, kb, sizeof kb), "00002499");
    const void *v;
    size_t len;
    assert_int_equal(rt_db_record(db, 1000, &v, &len), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "v2997", 5);
    assert_int_equal(rt_db_record(db, 2501, &v, &len), RT_ERR_ARG);
    rt_db_destroy(&db);
    assert_null(db);

    /* existing database: refused without force, replaced with force */
    assert_int_equal(rt_db_writer_new(dir, false, &w), RT_ERR_EXISTS);
    assert_non_null(strstr(rt_err_msg(), dir));
    assert_int_equal(rt_db_writer_new(dir, true, &w), 0);
    s_put(w, "k", "new");
    assert_int_equal(rt_db_writer_finish(w), 0);
    rt_db_writer_destroy(&w);
    assert_int_equal(rt_db_open(dir, &db), 0);
    assert_int_equal(rt_db_count(db), 1);
    rt_db_destroy(&db);

    /* a directory that is not a database is never replaced, even with force */
    char other[700];
    snprintf(other, sizeof other, "%s/a", tmp);
    assert_int_equal(rt_db_writer_new(other, true, &w), RT_ERR_EXISTS);
    assert_null(w);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_interrupted_build(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    /* abandoned in-process: the partial build is removed */
    rt_db_writer_t *w = NULL;
    assert_int_equal(rt_db_writer_new(dir, false, &w), 0);
    s_put(w, "00000000", "a");
    rt_db_writer_destroy(&w);
    assert_false(s_exists(dir));
    char cmd[800];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls '%s')\"", tmp);
    assert_int_equal(system(cmd), 0);

    /* killed mid-build: nothing at dir */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        rt_db_writer_t *cw = NULL;
        if (rt_db_writer_new(dir, false, &cw) != 0)
            _exit(3);
        char key[32];
        for (int i = 0; i < 5000; i++) {
            snprintf(key, sizeof key, "%08d", i);
            if (rt_db_writer_put(cw, key, strlen(key), "xxxxxxxx", 8) != 0)
                _exit(4);
        }
        raise(SIGKILL);
        _exit(5);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_false(s_exists(dir));
    rt_db_t *db = NULL;
    assert_int_equal(rt_db_open(dir, &db), RT_ERR_NOTFOUND);
    eb_test_rmtree(tmp);
    free(tmp);
}

static void test_open_errors(void **state)
{
    (void)state;
    char *tmp = eb_test_tmpdir();
    rt_db_t *db = NULL;
    char p[600];
    snprintf(p, sizeof p, "%s/none", tmp);
    assert_int_equal(rt_db_open(p, &db), RT_ERR_NOTFOUND);
    assert_non_null(strstr(rt_err_msg(), p));
    assert_int_equal(rt_db_open(tmp, &db), RT_ERR_NOTFOUND); /* empty directory */
    snprintf(p, sizeof p, "%s/data.mdb", tmp);
    FILE *f = fopen(p, "w");
    fputs("this is not an LMDB file, just text long enough to be read as a meta page......", f);
    fclose(f);
    int rc = rt_db_open(tmp, &db);
    assert_true(rc == RT_ERR_LMDB || rc == RT_ERR_NOTFOUND);
    assert_null(db);
    eb_test_rmtree(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_read_order),
        cmocka_unit_test(test_interrupted_build),
        cmocka_unit_test(test_open_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
