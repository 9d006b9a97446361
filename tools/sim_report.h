/*
 * sim_report: the output of `eigenbatch simulate` (cmd_simulate.c): the paper's Table 3, the scan
 * over process counts (text tables or one JSON object on stdout) and the gnuplot figure. The
 * arithmetic is sim_model's; this module only evaluates it at the points asked for and prints.
 * Private to tools/.
 */
#ifndef SIM_REPORT_H
#define SIM_REPORT_H

#include "sim_model.h"

#define SIM_REPORT_PROCS_MAX 64 /* process counts in one scan */

/* The schedules and designs of one invocation. */
struct sim_report {
    struct sim_sched sched[SIM_METHODS]; /* the schedules (one from --metrics / --method) */
    struct sim_plan plan[SIM_METHODS];   /* their rules (paper or --method), when they have some */
    int has_plan[SIM_METHODS];           /* plan[i] is meaningful */
    int n;                               /* schedules */
    double procs[SIM_REPORT_PROCS_MAX];  /* process counts */
    int n_procs;                         /* entries of procs */
    struct sim_hw hw_b;                  /* model (b)'s constants */
    double bytes;                        /* 4 x parameters */
    double shards;                       /* model (b): S, 0 = W */
    int sync;                            /* model (b): decisions sync */
};

/* --paper-table3: the four paper schedules at 512 processes under both models, as a table or
 * (json) one JSON object on stdout; hw_name names model (b)'s constants. Returns the command's
 * exit status: 0, or 1 after a message on stderr. */
int sim_report_table3(const struct sim_report *sim, const char *hw_name, int json);

/* The scan: every schedule on every process count under both models, as tables or (json) one
 * JSON object on stdout; with detail > 0 (tables only), the breakdown at detail processes.
 * Returns 0, or 1 after a message. */
int sim_report_scan(const struct sim_report *sim, int json, double detail);

/* --plot: time against processes, both models, drawn by gnuplot into the PNG file png (a
 * temporary data file in /tmp, removed). Returns 0, or 1 after a message (no gnuplot, or it
 * failed). */
int sim_report_plot(const struct sim_report *sim, const char *hw_name, const char *png);

#endif
