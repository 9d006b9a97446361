/*
 * eb_cli: the `eigenbatch` binary's dispatcher: the role commands (cluster_cmds) and the utility
 * commands of tools/ (convert, dbinfo, eval, keygen, ping, plot) and bench/ (bench).
 */
#ifndef EB_CLI_H
#define EB_CLI_H

#include "app_opts.h"
#include "cluster_cmds.h"
#include "rt_opt.h"

/* Run the sub-command named argv[0]; prints usage and returns 2 when unknown. */
int eb_cli_main(int argc, char **argv);

/* Utility sub-commands. */
int eb_cmd_convert(int argc, char **argv);  /* tools/cmd_convert.c */
int eb_cmd_dbinfo(int argc, char **argv);   /* tools/cmd_dbinfo.c */
int eb_cmd_eval(int argc, char **argv);     /* tools/cmd_eval.c */
int eb_cmd_ping(int argc, char **argv);     /* tools/cmd_ping.c */
int eb_cmd_plot(int argc, char **argv);     /* tools/cmd_plot.c */
int eb_cmd_simulate(int argc, char **argv); /* tools/cmd_simulate.c */
int eb_cmd_status(int argc, char **argv);   /* tools/cmd_status.c */

/* The options of a client of one role's port (ping, status): the option table's, so that a
 * deployment's --config brings its security.* keys (then configured: a CURVE client, as any),
 * with exactly one --connect endpoint; the model is never built. Returns 0 with *o and *cfg
 * (caller owns it: rt_config_destroy), RT_OPT_HELP after --help, or the exit status after
 * printing the problem (2: usage; 1: the security settings fail). */
int eb_cli_client_opts(int argc, char **argv, const char *usage, struct app_opts *o,
                       rt_config_t **cfg);
/* `eigenbatch keygen --out PREFIX`: a CURVE keypair, PREFIX.key and PREFIX.pub (cmd_keygen.c). */
int eb_cmd_keygen(int argc, char **argv);

/* `eigenbatch bench train|ps|loader|hetero` (bench/cmd_bench*.c). */
int eb_cmd_bench(int argc, char **argv);
int eb_bench_hetero(int argc, char **argv);
int eb_bench_loader(int argc, char **argv);
int eb_bench_ps(int argc, char **argv);

#endif
