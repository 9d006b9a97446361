/*
 * eb_cli: the sub-command table and shared option helpers.
 */
#include "eb_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The utility commands; the role commands come from cluster_cmds(). */
static const struct cluster_cmd s_commands[] = {
    {"bench", eb_cmd_bench, "micro-benchmarks (train: training steps and HVPs of a zoo model)"},
    {"convert", eb_cmd_convert, "write an LMDB dataset from IDX, CIFAR, JPEG folders or a seed"},
    {"dbinfo", eb_cmd_dbinfo, "describe an LMDB dataset: count, shape, labels"},
    {"eval", eb_cmd_eval, "test accuracy and loss of a weights file on an LMDB dataset"},
    {"keygen", eb_cmd_keygen, "write a CURVE keypair (PREFIX.key, PREFIX.pub) for security.*"},
    {"ping", eb_cmd_ping, "exit 0 when the role on an endpoint answers a heartbeat (healthchecks)"},
    {"plot", eb_cmd_plot, "draw a run's schedule (lr, batch size, eigenvalue) as a PNG"},
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
