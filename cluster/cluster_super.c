/*
 * cluster_super: launch's children, their respawns and the end of a round (see cluster_super.h).
 */
#include "cluster_super.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt_clock.h"
#include "rt_err.h"
#include "rt_log.h"

#define S_POLL_US 20000     /* pause between looks at the children */
#define S_KILL_AFTER_S 15.0 /* a child that ignores SIGTERM this long gets SIGKILL */

/* One child: its command line (owned copies) and its current pid. */
struct s_child {
    enum cluster_role role;             /* what it runs */
    int index;                          /* shard or worker number as launch counts them */
    pid_t pid;                          /* running process, 0 once it ended */
    char *argv[CLUSTER_SUPER_MAX_ARGS]; /* command line, NULL-terminated */
};

struct cluster_super {
    char *self;           /* the binary */
    int max_restarts;     /* cluster.max_restarts */
    int restarts_left;    /* respawns left over every round */
    struct s_child *kids; /* this round's children */
    int n, cap;           /* used / allocated entries of kids */
    int stopping;         /* the round failed: the children are being stopped */
    double stop_at;       /* when (rt_clock_now) */
};

static const char *s_role_name(enum cluster_role r)
{
    return r == CLUSTER_ROLE_SHARD ? "shard" : r == CLUSTER_ROLE_WORKER ? "worker" : "eigensvc";
}

cluster_super_t *cluster_super_new(const char *self, int max_restarts)
{
    cluster_super_t *s = calloc(1, sizeof *s);
    if (!s || !(s->self = strdup(self))) {
        free(s);
        return NULL;
    }
    s->max_restarts = max_restarts > 0 ? max_restarts : 0;
    s->restarts_left = s->max_restarts;
    return s;
}

/* Forget the children of the round (their command lines). */
static void s_forget(cluster_super_t *s)
{
    for (int i = 0; i < s->n; i++)
        for (int k = 0; s->kids[i].argv[k]; k++)
            free(s->kids[i].argv[k]);
    s->n = 0;
    s->stopping = 0;
}

void cluster_super_destroy(cluster_super_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cluster_super_t *s = *self_p;
    s_forget(s);
    free(s->kids);
    free(s->self);
    free(s);
    *self_p = NULL;
}

/* fork + exec of the child's command line; its pid, or -1. */
static pid_t s_fork_exec(const char *self, char *const *argv)
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(self, argv);
        fprintf(stderr, "eigenbatch launch: exec %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    return pid;
}

int cluster_super_spawn(cluster_super_t *s, enum cluster_role role, int index, char *const *argv)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 8;
        struct s_child *k = realloc(s->kids, (size_t)cap * sizeof *k);
        if (!k)
            return rt_err_set(RT_ERR_NOMEM, "launch: children");
        s->kids = k;
        s->cap = cap;
    }
    struct s_child *c = &s->kids[s->n];
    memset(c, 0, sizeof *c);
    c->role = role;
    c->index = index;
    for (int k = 0; argv[k]; k++) {
        if (k + 1 >= CLUSTER_SUPER_MAX_ARGS || !(c->argv[k] = strdup(argv[k]))) {
            for (int j = 0; j < k; j++)
                free(c->argv[j]);
            return rt_err_set(RT_ERR_NOMEM, "launch: %s %d: command line", s_role_name(role),
                              index);
        }
    }
    c->pid = s_fork_exec(s->self, c->argv);
    s->n++; /* recorded either way: s_forget frees its command line */
    if (c->pid < 0) {
        c->pid = 0;
        return rt_err_set(RT_ERR_IO, "launch: fork %s %d: %s", s_role_name(role), index,
                          strerror(errno));
    }
    RT_INFO("launch", "%s %d: pid %ld", s_role_name(role), index, (long)c->pid);
    return RT_OK;
}

void cluster_super_stop(cluster_super_t *s)
{
    if (!s->stopping) {
        s->stopping = 1;
        s->stop_at = rt_clock_now();
    }
    for (int i = 0; i < s->n; i++)
        if (s->kids[i].pid > 0)
            kill(s->kids[i].pid, SIGTERM);
}

/* How a child ended, in words: "exited with status 3", "was killed by signal 9 (Killed)". */
static void s_describe(int ws, char *buf, size_t cap)
{
    if (WIFEXITED(ws))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(ws));
    else if (WIFSIGNALED(ws))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(ws), strsignal(WTERMSIG(ws)));
    else
        snprintf(buf, cap, "ended with wait status %d", ws);
}

/* Child c (pid `old`) failed with wait status ws: respawn it when it is a worker, restarts are
 * left and the shards still run. Returns 1 when it runs again. */
static int s_respawn(cluster_super_t *s, struct s_child *c, pid_t old, const char *how,
                     int shards_ended, struct cluster_super_end *end)
{
    if (c->role != CLUSTER_ROLE_WORKER || s->restarts_left <= 0 || shards_ended)
        return 0;
    pid_t pid = s_fork_exec(s->self, c->argv);
    if (pid < 0)
        return 0;
    c->pid = pid;
    s->restarts_left--;
    end->restarts++;
    RT_WARN("launch",
            "worker %d (pid %ld) %s: respawned with the same command line as pid %ld; it rejoins "
            "once the coordinator has evicted its predecessor; %d restart(s) left",
            c->index, (long)old, how, (long)pid, s->restarts_left);
    return 1;
}

/* A child ended for good with wait status ws: the round fails; say why and stop the others. */
static void s_fail(cluster_super_t *s, const struct s_child *c, pid_t pid, int ws, const char *how,
                   int shards_ended, struct cluster_super_end *end)
{
    end->failed = 1;
    end->nonfinite = WIFEXITED(ws) && WEXITSTATUS(ws) == RT_EXIT_NONFINITE;
    const char *more = "";
    char buf[96] = "";
    if (end->nonfinite)
        more = " (it stopped on a value that is not finite)";
    else if (c->role == CLUSTER_ROLE_WORKER && !shards_ended) {
        snprintf(buf, sizeof buf, "; no restarts left (cluster.max_restarts %d)", s->max_restarts);
        more = buf;
    }
    snprintf(end->why, sizeof end->why, "%s %d (pid %ld) %s%s", s_role_name(c->role), c->index,
             (long)pid, how, more);
    RT_WARN("launch", "%s: stopping the others", end->why);
    cluster_super_stop(s);
}

int cluster_super_wait(cluster_super_t *s, struct cluster_super_end *end)
{
    memset(end, 0, sizeof *end);
    int live = 0, shards_ended = 0, killed = 0;
    for (int i = 0; i < s->n; i++)
        live += s->kids[i].pid > 0;
    if (s->stopping) {
        end->failed = 1;
        snprintf(end->why, sizeof end->why, "the roles could not all be started");
    }
    while (live > 0) {
        int ws;
        pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid < 0)
            break;
        if (pid == 0) {
            if (s->stopping && !killed && rt_clock_now() - s->stop_at > S_KILL_AFTER_S) {
                for (int i = 0; i < s->n; i++)
                    if (s->kids[i].pid > 0)
                        kill(s->kids[i].pid, SIGKILL);
                killed = 1;
            }
            usleep(S_POLL_US);
            continue;
        }
        struct s_child *c = NULL;
        for (int i = 0; i < s->n && !c; i++)
            if (s->kids[i].pid == pid)
                c = &s->kids[i];
        if (!c)
            continue; /* not one of ours */
        c->pid = 0;
        live--;
        shards_ended |= c->role == CLUSTER_ROLE_SHARD;
        if ((WIFEXITED(ws) && WEXITSTATUS(ws) == 0) || s->stopping)
            continue;
        char how[96];
        s_describe(ws, how, sizeof how);
        int nonfinite = WIFEXITED(ws) && WEXITSTATUS(ws) == RT_EXIT_NONFINITE;
        if (!nonfinite && s_respawn(s, c, pid, how, shards_ended, end))
            live++;
        else
            s_fail(s, c, pid, ws, how, shards_ended, end);
    }
    int failed = end->failed;
    s_forget(s);
    return failed ? 1 : 0;
}
