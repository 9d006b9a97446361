/*
 * server_main: `eigenbatch server`, one parameter-server shard as a process (shard 0 is also the
 * coordinator), and the schedule the coordinator runs, built from the options.
 */
#ifndef SERVER_MAIN_H
#define SERVER_MAIN_H

#include "app_opts.h"
#include "server_coord.h"
#include "server_sched.h"

/* `eigenbatch server [--config FILE] [--set k=v]... [flags]`; returns the exit status. */
int server_main(int argc, char **argv);

/* The coordinator's schedule: server_sched from schedule.method, or with schedule.steps > 0 a
 * constant one for that many steps. *owned receives the server_sched to destroy (may stay
 * NULL). Returns 0 or a negative rt_err code. Free with server_main_schedule_free. */
int server_main_schedule(const struct app_opts *o, struct server_coord_sched *out,
                         server_sched_t **owned);
void server_main_schedule_free(struct server_coord_sched *s, server_sched_t **owned);

#endif
