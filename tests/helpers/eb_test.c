/*
 * eb_test: shared test helpers.
 */
#include "eb_test.h"

#include <sys/wait.h>

#include <arpa/inet.h>
#include <signal.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

char *eb_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/eb-test-XXXXXX", base && *base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void eb_test_rmtree(const char *path)
{
    if (path)
        nftw(path, s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* 1 when a listening TCP socket can be bound to 127.0.0.1:port now (SO_REUSEADDR, as ZeroMQ). */
static int s_port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

int eb_test_free_port(void)
{
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    for (int attempt = 0; attempt < 1000; attempt++) {
        int p = 20000 + (int)(rand_r(&seed) % (12000 - EB_TEST_PORT_SPAN));
        int k = 0;
        while (k < EB_TEST_PORT_SPAN && s_port_free(p + k))
            k++;
        if (k == EB_TEST_PORT_SPAN)
            return p;
    }
    fail_msg("no %d free consecutive TCP ports in 20000-31999", EB_TEST_PORT_SPAN);
    return -1;
}

json_t *eb_test_events(const char *path, const char *name)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: cannot open", path);
    json_t *out = json_array();
    char *line = NULL;
    size_t cap = 0;
    int no = 0;
    while (getline(&line, &cap, f) > 0) {
        no++;
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!json_is_object(j))
            fail_msg("%s:%d: not a JSON object: %s", path, no, line);
        const char *ev = json_string_value(json_object_get(j, "event"));
        if (!name || (ev && !strcmp(ev, name)))
            json_array_append(out, j);
        json_decref(j);
    }
    free(line);
    fclose(f);
    return out;
}

const char *eb_test_source_dir(void)
{
    const char *s = getenv("EB_SOURCE_DIR");
    return s ? s : ".";
}

const char *eb_test_binary(void)
{
    const char *s = getenv("EB_BINARY");
    return s ? s : "eigenbatch";
}

double eb_test_reldiff(double a, double b, double floor)
{
    double m = fmax(fmax(fabs(a), fabs(b)), floor);
    return fabs(a - b) / m;
}

int eb_test_run(const char *cmd)
{
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int eb_test_spawn(const char *cmd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return (int)pid;
}

int eb_test_running(int pid)
{
    /* WNOWAIT: look without reaping, so that eb_test_wait still gets the status */
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
        return 0;
    return info.si_pid == 0;
}

int eb_test_wait(int pid)
{
    int st;
    if (waitpid((pid_t)pid, &st, 0) != (pid_t)pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

json_t *eb_test_json_cmd(const char *cmd)
{
    FILE *f = popen(cmd, "r");
    if (!f)
        return NULL;
    json_error_t err;
    json_t *j = json_loadf(f, JSON_DISABLE_EOF_CHECK, &err);
    int st = pclose(f);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

unsigned char *eb_test_read(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

double eb_test_rel_max(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

float eb_test_uniform(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}
