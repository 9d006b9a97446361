/*
 * eb_cli: sub-command table of the `eigenbatch` binary and small argument-parsing helpers shared by
 * the sub-commands.
 */
#ifndef EB_CLI_H
#define EB_CLI_H

#include "eigensvc.h"

/* A sub-command: argv[0] is the sub-command's name. Returns the process exit status. */
struct eb_cmd {
    const char *name;                   /* "bench", "train", ... */
    int (*run)(int argc, char **argv);  /* entry point */
    const char *summary;                /* one line for `eigenbatch --help` */
};

/* NULL-terminated table of all sub-commands. */
const struct eb_cmd *eb_cli_commands(void);

/* Run the sub-command named argv[0]; prints usage and returns 2 when unknown. */
int eb_cli_main(int argc, char **argv);

/* Parse a whole decimal integer / float option value; on failure print
 * "eigenbatch SUBCMD: invalid value 'V' for --OPT" and return -1. */
int eb_cli_int(const char *cmd, const char *opt, const char *val, long *out);
int eb_cli_double(const char *cmd, const char *opt, const char *val, double *out);

/* Sub-command entry points (tools/cmd_*.c and the role folders). */
int eb_cmd_bench(int argc, char **argv); /* tools/cmd_bench.c */
int eb_cmd_convert(int argc, char **argv); /* tools/cmd_convert.c */
int eb_cmd_dbinfo(int argc, char **argv);  /* tools/cmd_dbinfo.c */
/* `eigenbatch bench loader ARGS` (dispatched by `bench`; argv[0] is "loader"). */
int eb_bench_loader(int argc, char **argv); /* tools/cmd_bench_loader.c */

/* `eigenbatch bench ps`: push+pull bandwidth of the parameter-server transport (cmd_bench_ps.c);
 * argv[0] is "ps". */
int eb_bench_ps(int argc, char **argv);

/* Parameter-server roles (cmd_ps.c): one shard, one worker, or a whole cluster as processes. */
int eb_cmd_server(int argc, char **argv);
int eb_cmd_worker(int argc, char **argv);
int eb_cmd_launch(int argc, char **argv);

/* Training in this process and evaluation of a weights file (cmd_train.c). */
int eb_cmd_train(int argc, char **argv);
int eb_cmd_eval(int argc, char **argv);

/* Eigen service commands: `eig` (cmd_eig.c), `eigensvc` (cmd_eigensvc.c), `plot` (cmd_plot.c). */
int eb_cmd_eig(int argc, char **argv);
int eb_cmd_eigensvc(int argc, char **argv);

#define EB_EIGENSVC_MAX_SHARDS 256

/* `eigenbatch eigensvc` options (flags, then EB_<NAME> environment) as a service configuration.
 * cfg points into the struct and into argv: do not copy it; valid until eb_eigensvc_opts_free. */
struct eb_eigensvc_opts {
    struct eigensvc_cfg cfg;                 /* the configuration */
    const char *metrics;                     /* --metrics FILE, or NULL */
    const char *eps[EB_EIGENSVC_MAX_SHARDS]; /* shard endpoints (cfg.endpoints) */
    char *list;                              /* copy of --connect that eps point into */
    const char *sec_key;        /* --security-key: CURVE secret key file, or NULL (rt_curve.h) */
    const char *sec_server_pub; /* --security-server-pub: servers' public key file, or NULL */
    const char *sec_allowed;    /* --security-allowed: admitted .pub files/directories, or NULL */
};

/* Parse argv (argv[0] is "eigensvc") into *o. Returns 0 (*help set for --help), or 2 after printing
 * the bad option. Free with eb_eigensvc_opts_free either way. */
int eb_eigensvc_parse(int argc, char **argv, struct eb_eigensvc_opts *o, int *help);
void eb_eigensvc_opts_free(struct eb_eigensvc_opts *o);
int eb_cmd_plot(int argc, char **argv);
int eb_cmd_simulate(int argc, char **argv); /* tools/cmd_simulate.c */

/* `eigenbatch keygen --out PREFIX`: a CURVE keypair, PREFIX.key and PREFIX.pub (cmd_keygen.c). */
int eb_cmd_keygen(int argc, char **argv);

#endif
