/*
 * eb_cli: the sub-command table and shared option helpers.
 */
#include "eb_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_opts.h"
#include "rt_err.h"

#define S_MAX_ARGS 256 /* arguments passed on to the option parser */

/* The utility commands; the role commands come from cluster_cmds(). */
static const struct cluster_cmd s_commands[] = {
    {"bench", eb_cmd_bench, "micro-benchmarks (train: training steps and HVPs of a zoo model)"},
    {"convert", eb_cmd_convert, "write an LMDB dataset from IDX, CIFAR, JPEG folders or a seed"},
    {"dbinfo", eb_cmd_dbinfo, "describe an LMDB dataset: count, shape, labels"},
    {"eval", eb_cmd_eval, "test accuracy and loss of a weights file on an LMDB dataset"},
    {"keygen", eb_cmd_keygen, "write a CURVE keypair (PREFIX.key, PREFIX.pub) for security.*"},
    {"ping", eb_cmd_ping, "exit 0 when the role on an endpoint answers a heartbeat (healthchecks)"},
    {"plot", eb_cmd_plot, "draw a run's schedule (lr, batch size, eigenvalue) as a PNG"},
    {"status", eb_cmd_status, "a running cluster's workers, shards, schedule and decisions"},
    {"simulate", eb_cmd_simulate, "simulated wall-clock time of a schedule, 8-4096 processes"},
    {NULL, NULL, NULL},
};

static void s_usage(FILE *f)
{
    fprintf(f, "usage: eigenbatch COMMAND [OPTIONS]\n\ncommands:\n");
    for (const struct cluster_cmd *c = cluster_cmds(); c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    for (const struct cluster_cmd *c = s_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\n`eigenbatch COMMAND --help` describes a command's options.\n");
}

int eb_cli_main(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        s_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    for (const struct cluster_cmd *c = cluster_cmds(); c->name; c++)
        if (!strcmp(c->name, argv[0]))
            return c->run(argc, argv);
    for (const struct cluster_cmd *c = s_commands; c->name; c++)
        if (!strcmp(c->name, argv[0]))
            return c->run(argc, argv);
    fprintf(stderr, "eigenbatch: unknown command '%s'\n\n", argv[0]);
    s_usage(stderr);
    return 2;
}

int eb_cli_client_opts(int argc, char **argv, const char *usage, struct app_opts *o,
                       rt_config_t **cfg)
{
    /* the model is never built: synth spares a deployment's config its data.train check */
    char *args[S_MAX_ARGS];
    if (argc > S_MAX_ARGS - 2) {
        fprintf(stderr, "eigenbatch %s: too many arguments\n", argc ? argv[0] : "");
        return 2;
    }
    for (int i = 0; i < argc; i++)
        args[i] = argv[i];
    args[argc] = "--model";
    args[argc + 1] = "synth";
    int rc = app_opts_parse(argc + 2, args, usage, o, cfg);
    if (rc)
        return rc == RT_OPT_HELP ? RT_OPT_HELP : 2;
    if (!o->local.connect || strchr(o->local.connect, ',')) {
        fprintf(stderr, "eigenbatch %s: --connect takes one endpoint\n%s", argv[0], usage);
        rt_config_destroy(cfg);
        return 2;
    }
    if (app_opts_security(o)) {
        fprintf(stderr, "eigenbatch %s: %s\n", argv[0], rt_err_msg());
        rt_config_destroy(cfg);
        return 1;
    }
    return 0;
}
