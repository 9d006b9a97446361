/*
 * eb_test_fault: the fixture of the fault tests (see eb_test_fault.h).
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

#include "eb_test_data.h"

#define S_MAX_CHILDREN 16
#define S_SIDE 8       /* 1 x 8 x 8 images */
#define S_POLL_US 5000 /* pause between looks */

static pid_t s_children[S_MAX_CHILDREN]; /* killed by the teardown */
static int s_n_children;

void eb_fault_setup(struct eb_fault_fixture *f, int workers, int epochs, const char *extra)
{
    f->tmp = eb_test_tmpdir();
    snprintf(f->db, sizeof f->db, "%s/db", f->tmp);
    snprintf(f->out, sizeof f->out, "%s/out", f->tmp);
    eb_test_make_raw_db(f->db, EB_FAULT_RECORDS, 1, S_SIDE, S_SIDE);
    snprintf(f->cfg, sizeof f->cfg, "%s/run.yaml", f->tmp);
    FILE *fp = fopen(f->cfg, "w");
    assert_non_null(fp);
    fprintf(fp,
            "model: {name: cnn, classes: %d}\n"
            "data: {train: %s}\n"
            "cluster: {shards: 2, workers: %d, transport: ipc, timeout_ms: 20000,\n"
            "          worker_timeout_ms: 1000}\n"
            "schedule: {method: BL, batch: 32, lr: 0.05, epochs: %d}\n"
            "train: {micro_batch: 16, log_every: 1, seed: 5, progress_s: 100}\n"
            "checkpoint: {every_epochs: 1}\n%s",
            EB_FAULT_RECORDS, f->db, workers, epochs, extra ? extra : "");
    fclose(fp);
}

int eb_fault_kill_children(void **state)
{
    (void)state;
    for (int i = 0; i < s_n_children; i++)
        if (kill(s_children[i], SIGKILL) == 0)
            waitpid(s_children[i], NULL, 0);
    s_n_children = 0;
    return 0;
}

void eb_fault_teardown(struct eb_fault_fixture *f)
{
    eb_fault_kill_children(NULL);
    eb_test_rmtree(f->tmp);
    free(f->tmp);
    f->tmp = NULL;
}

pid_t eb_fault_spawn(char *const *argv, const char *err)
{
    char *args[64];
    int n = 0;
    args[n++] = (char *)eb_test_binary();
    for (int i = 0; argv[i] && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0) {
        setenv("EB_LOG", "info", 1);
        if (!freopen(err, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(126);
        execv(args[0], args);
        _exit(127);
    }
    if (s_n_children < S_MAX_CHILDREN)
        s_children[s_n_children++] = p;
    return p;
}

int eb_fault_wait(pid_t pid, long deadline)
{
    int ws;
    for (;;) {
        pid_t r = waitpid(pid, &ws, WNOHANG);
        if (r == pid)
            return ws;
        if (time(NULL) > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            return -1;
        }
        usleep(S_POLL_US);
    }
}

/* 1 when the file at path contains needle. */
static int s_file_has(const char *path, const char *needle, char **text)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4097 > cap) {
            cap = 2 * cap + 8192;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t n = fread(buf + len, 1, 4096, fp);
        if (n == 0)
            break;
        len += n;
    }
    fclose(fp);
    if (!buf)
        return 0;
    buf[len] = '\0';
    int found = strstr(buf, needle) != NULL;
    if (text)
        *text = buf;
    else
        free(buf);
    return found;
}

void eb_fault_wait_event(const struct eb_fault_fixture *f, const char *name, long deadline)
{
    char path[EB_FAULT_PATH + 32], needle[64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", f->out);
    snprintf(needle, sizeof needle, "\"event\":\"%s\"", name);
    while (!s_file_has(path, needle, NULL)) {
        if (time(NULL) > deadline)
            fail_msg("no %s event in %s", name, path);
        usleep(S_POLL_US);
    }
}

pid_t eb_fault_worker_pid(const char *log, int id, long deadline)
{
    char needle[64];
    snprintf(needle, sizeof needle, "worker %d '", id);
    for (;;) {
        char *text = NULL;
        if (s_file_has(log, needle, &text)) {
            /* "worker ID 'HOST:PID' registered" */
            for (char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) {
                char *q = strchr(p + strlen(needle), '\'');
                if (!q || strncmp(q, "' registered", 12))
                    continue;
                char *colon = q;
                while (colon > p && *colon != ':')
                    colon--;
                pid_t pid = (pid_t)atol(colon + 1);
                free(text);
                return pid;
            }
        }
        free(text);
        if (time(NULL) > deadline)
            fail_msg("%s does not say which process is worker %d", log, id);
        usleep(S_POLL_US);
    }
}

void eb_fault_assert_epochs(const struct eb_fault_fixture *f, int epochs)
{
    char path[EB_FAULT_PATH + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", f->out);
    json_t *all = eb_test_events(path, NULL);
    int seen[64] = {0};
    json_int_t from = 0; /* the epoch the last resume starts at */
    assert_true(epochs <= 64);
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e)
    {
        const char *name = json_string_value(json_object_get(e, "event"));
        if (name && !strcmp(name, "resume")) {
            memset(seen, 0, sizeof seen);
            from = json_integer_value(json_object_get(e, "epoch"));
        }
        if (!name || strcmp(name, "epoch"))
            continue;
        json_int_t ep = json_integer_value(json_object_get(e, "epoch"));
        assert_true(ep >= 0 && ep < epochs);
        seen[ep]++;
    }
    for (int k = 0; k < epochs; k++)
        if (seen[k] != (k >= from))
            fail_msg("%s: %d events of epoch %d", path, seen[k], k);
    json_decref(all);
}
