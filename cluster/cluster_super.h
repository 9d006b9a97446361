/*
 * cluster_super: the supervisor of `eigenbatch launch`'s children (processes of this binary, one
 * per role). A worker that dies (non-zero exit or a signal) is respawned with the same command line
 * (same flags: it registers again, takes back its evicted slot and rejoins the run with the
 * current weights), at most max_restarts times in all, as torchrun's --max-restarts. Beyond that,
 * or when a shard or the eigen service fails, or when any child stops on something not finite
 * (exit status RT_EXIT_NONFINITE: a rollback's business, not a respawn's), the others get SIGTERM
 * (SIGKILL after a grace period) and the run ends naming the role, its pid and how it ended.
 */
#ifndef CLUSTER_SUPER_H
#define CLUSTER_SUPER_H

#include <sys/types.h>

#define CLUSTER_SUPER_MAX_ARGS 32 /* arguments of a child's command line, the NULL included */

/* What a child runs. */
enum cluster_role {
    CLUSTER_ROLE_SHARD,    /* `eigenbatch server` */
    CLUSTER_ROLE_WORKER,   /* `eigenbatch worker`: respawned when it dies */
    CLUSTER_ROLE_EIGENSVC, /* `eigenbatch eigensvc` */
};

typedef struct cluster_super cluster_super_t;

/* A supervisor of processes of the binary `self` that respawns failed workers at most
 * max_restarts times in all (over every round). NULL when out of memory. Caller owns it; free
 * with cluster_super_destroy (children still running are left alone: wait first). */
cluster_super_t *cluster_super_new(const char *self, int max_restarts);
void cluster_super_destroy(cluster_super_t **self_p);

/* Start `self argv[1] ...` (argv NULL-terminated, at most CLUSTER_SUPER_MAX_ARGS entries; copied)
 * as `role` number `index` (for the log: launch's spawn order, which for workers need not be the
 * coordinator's numbering; the pid tells them apart). Returns 0, or RT_ERR_IO when fork failed. */
int cluster_super_spawn(cluster_super_t *s, enum cluster_role role, int index, char *const *argv);

/* Send SIGTERM to every running child (a start that failed half-way). */
void cluster_super_stop(cluster_super_t *s);

/* How a round ended. */
struct cluster_super_end {
    int failed;    /* a child failed for good (the others were stopped) */
    int nonfinite; /* ... with exit status RT_EXIT_NONFINITE */
    int restarts;  /* workers respawned during the round */
    char why[320]; /* "worker 0 (pid 4242) was killed by signal 9 (Killed); no restarts left
                      (cluster.max_restarts 0)" */
};

/* Wait until every child has ended, respawning failed workers while restarts are left and no
 * shard has ended yet (a run whose shards are gone has nothing to rejoin). Fills *end; returns 0
 * when every child ended with status 0, else 1. The children are forgotten afterwards: a later
 * round (a rollback) spawns anew, with the restarts left. */
int cluster_super_wait(cluster_super_t *s, struct cluster_super_end *end);

#endif
