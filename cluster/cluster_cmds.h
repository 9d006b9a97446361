/*
 * cluster_cmds: the sub-commands that run roles: each role's own front door (server, worker,
 * eigensvc, eig) and the two that wire several roles together (train: every role as threads of
 * this process; launch: every role as a process of this machine). cluster/ is the only folder
 * that includes more than one role; the `eigenbatch` binary's dispatcher takes this table.
 */
#ifndef CLUSTER_CMDS_H
#define CLUSTER_CMDS_H

/* A sub-command: argv[0] is its name. Returns the process exit status. */
struct cluster_cmd {
    const char *name;                  /* "server", "train", ... */
    int (*run)(int argc, char **argv); /* entry point */
    const char *summary;               /* one line for `eigenbatch --help` */
};

/* NULL-terminated table of the role sub-commands. */
const struct cluster_cmd *cluster_cmds(void);

/* `eigenbatch train` (cluster_train.c) and `eigenbatch launch` (cluster_launch.c). */
int cluster_train_main(int argc, char **argv);
int cluster_launch_main(int argc, char **argv);

#endif
