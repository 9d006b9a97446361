/*
 * cluster_cmds: the table of the role sub-commands (cluster_cmds.h).
 */
#include "cluster_cmds.h"

#include <stddef.h>

#include "eigensvc_main.h"
#include "server_main.h"
#include "worker_main.h"

static const struct cluster_cmd s_cmds[] = {
    {"eig", eigensvc_eig_main, "top Hessian eigenvalue of a weights file on a dataset"},
    {"eigensvc", eigensvc_main, "run the eigen service (ABS decisions) against running shards"},
    {"launch", cluster_launch_main, "run shards, workers and the eigen service as processes"},
    {"server", server_main, "run one parameter-server shard (shard 0 coordinates)"},
    {"train", cluster_train_main, "train from a YAML configuration, every role in this process"},
    {"worker", worker_main, "run one worker"},
    {NULL, NULL, NULL},
};

const struct cluster_cmd *cluster_cmds(void)
{
    return s_cmds;
}
