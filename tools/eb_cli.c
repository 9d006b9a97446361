/*
 * eb_cli: the sub-command table and shared option helpers.
 */
#include "eb_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct eb_cmd s_commands[] = {
    {"bench", eb_cmd_bench, "micro-benchmarks (train: training steps and HVPs of a zoo model)"},
    {"convert", eb_cmd_convert, "write an LMDB dataset from IDX, CIFAR or JPEG folders"},
    {"eig", eb_cmd_eig, "top Hessian eigenvalue of a weights file on a dataset"},
    {"eigensvc", eb_cmd_eigensvc, "run the eigen service (ABS decisions) against running shards"},
    {"dbinfo", eb_cmd_dbinfo, "describe an LMDB dataset: count, shape, labels"},
    {"eval", eb_cmd_eval, "test accuracy and loss of a weights file on an LMDB dataset"},
    {"keygen", eb_cmd_keygen, "write a CURVE keypair (PREFIX.key, PREFIX.pub) for security.*"},
    {"launch", eb_cmd_launch, "run shards and workers as processes on this machine"},
    {"plot", eb_cmd_plot, "draw a run's schedule (lr, batch size, eigenvalue) as a PNG"},
    {"server", eb_cmd_server, "run one parameter-server shard (shard 0 coordinates)"},
    {"simulate", eb_cmd_simulate, "simulated wall-clock time of a schedule, 8-4096 processes"},
    {"train", eb_cmd_train, "train from a YAML configuration, every role in this process"},
    {"worker", eb_cmd_worker, "run one worker"},
    {NULL, NULL, NULL},
};

const struct eb_cmd *eb_cli_commands(void)
{
    return s_commands;
}

static void s_usage(FILE *f)
{
    fprintf(f, "usage: eigenbatch COMMAND [OPTIONS]\n\ncommands:\n");
    for (const struct eb_cmd *c = s_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\n`eigenbatch COMMAND --help` describes a command's options.\n");
}

int eb_cli_main(int argc, char **argv)
{
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
        s_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    for (const struct eb_cmd *c = s_commands; c->name; c++)
        if (!strcmp(c->name, argv[0]))
            return c->run(argc, argv);
    fprintf(stderr, "eigenbatch: unknown command '%s'\n\n", argv[0]);
    s_usage(stderr);
    return 2;
}

int eb_cli_int(const char *cmd, const char *opt, const char *val, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = val ? strtol(val, &end, 10) : 0;
    if (!val || errno || end == val || *end != '\0') {
        fprintf(stderr, "eigenbatch %s: invalid value '%s' for %s\n", cmd, val ? val : "", opt);
        return -1;
    }
    *out = v;
    return 0;
}

int eb_cli_double(const char *cmd, const char *opt, const char *val, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = val ? strtod(val, &end) : 0;
    if (!val || errno || end == val || *end != '\0') {
        fprintf(stderr, "eigenbatch %s: invalid value '%s' for %s\n", cmd, val ? val : "", opt);
        return -1;
    }
    *out = v;
    return 0;
}
