/*
 * rt_opt: options described once, in a declarative table, and read from every source.
 *
 * Each row names an option's configuration key (`schedule.lr`), its flag (`--lr`), its
 * environment variable (derived: EB_LR), its type, its default, its help line, its check (a
 * numeric range or a set of words) and the field of an options struct that receives it. From the
 * table alone, rt_opt_parse reads, in increasing priority:
 *
 *     defaults < --config FILE (YAML) < environment (EB_*) < command line (--set key=value and
 *     flags, in order)
 *
 * and rt_opt_help prints `--help`. Every keyed value goes through one rt_config_t (the resolved
 * configuration, every key present: what `config.yaml` holds); rows without a key are
 * per-process options (which shard this is, which endpoint to bind) that come from flags and the
 * environment only and are never part of the configuration, so every process of one deployment
 * resolves the same configuration from the same file.
 *
 * Field types: RT_OPT_INT long, RT_OPT_FLOAT double, RT_OPT_BOOL and RT_OPT_SWITCH int,
 * RT_OPT_STR and the lists const char * (lists as comma-separated text, "30,60,80"; strings point
 * into the configuration or into argv/environ: valid while those live).
 *
 * A row without a default (def NULL) is unset: an INT 0, a FLOAT NaN (so that a caller can tell
 * "not given" from every number, and fill it from elsewhere: isnan), a BOOL or SWITCH 0, a string
 * or list NULL. rt_opt_value_text writes an unset FLOAT as "".
 *
 * A switch (RT_OPT_SWITCH) is a boolean whose flag takes no value: `--json` sets it to 1;
 * `--json=false` (any RT_OPT_BOOL word after '=') sets it explicitly; EB_JSON and, for a keyed
 * row, the configuration (`json: true`) take a boolean as for RT_OPT_BOOL.
 */
#ifndef RT_OPT_H
#define RT_OPT_H

#include <float.h>
#include <stddef.h>
#include <stdio.h>

#include "rt_config.h"

/* Value types of an option. */
enum rt_opt_type {
    RT_OPT_INT = 0,    /* long */
    RT_OPT_FLOAT,      /* double */
    RT_OPT_BOOL,       /* int, 0 or 1 (true/false, yes/no, on/off, 1/0) */
    RT_OPT_STR,        /* const char * */
    RT_OPT_LIST_INT,   /* const char *, comma-separated integers */
    RT_OPT_LIST_FLOAT, /* const char *, comma-separated numbers */
    RT_OPT_LIST_STR,   /* const char *, comma-separated words */
    RT_OPT_SWITCH      /* int, 0 or 1: a flag without a value (see above) */
};

/* Bounds of a numeric range (struct rt_opt's min and max) that read as words in messages and
 * --help: "> 0" rather than [2.2e-308, ...], ">= 0" rather than [0, 1.8e308]. */
#define RT_OPT_POSITIVE DBL_MIN  /* min: any number > 0 */
#define RT_OPT_UNBOUNDED DBL_MAX /* max: no upper bound (a finite number) */

/* One option. */
struct rt_opt {
    const char *key;       /* configuration key, or NULL: a per-process option (flag, env) */
    const char *flag;      /* flag without "--" (its variable: EB_ + upper case, '-' as '_') */
    enum rt_opt_type type; /* value type */
    size_t off;            /* offset of the field in the options struct */
    const char *def;       /* default as YAML text ("0.1", "[30, 60]"), or NULL: unset */
    double min, max;       /* numeric range, inclusive; checked when min < max (RT_OPT_POSITIVE,
                              RT_OPT_UNBOUNDED) */
    const char *choices;   /* RT_OPT_STR: the allowed words, '|'-separated, or NULL: any */
    const char *help;      /* one line */
};

#define RT_OPT_HELP 1 /* rt_opt_parse: --help was given */

/* Parse argv (argv[0] is the command name, used in messages) into the struct at opts (every
 * field set: its default, or the value of the highest-priority source). The configuration is
 * validated against the table's keys (unknown keys and bad types name file:line); each value's
 * check names where it came from ("config.yaml:12: schedule.lr", "--lr", "EB_LR"). On success
 * *cfg_out receives the resolved configuration (caller owns it; free with rt_config_destroy;
 * string fields may point into it). Returns 0, RT_OPT_HELP (nothing parsed, *cfg_out NULL), or a
 * negative rt_err code (RT_ERR_CONFIG, RT_ERR_ARG, RT_ERR_NOTFOUND ...; rt_err_msg says what). */
int rt_opt_parse(const struct rt_opt *t, int n, void *opts, int argc, char **argv,
                 rt_config_t **cfg_out);

/* Print one line per option (flag, key, variable, default, help) to f. */
void rt_opt_help(const struct rt_opt *t, int n, FILE *f);

/* The environment variable of option o into buf ("EB_LR"); returns buf. */
const char *rt_opt_env_name(const struct rt_opt *o, char *buf, size_t cap);

/* The value of option o in the struct at opts, as text ("0.1", "30,60,80", "" when unset) into
 * buf; numbers with 17 significant digits, so that parsing the text gives the value back. */
const char *rt_opt_value_text(const struct rt_opt *o, const void *opts, char *buf, size_t cap);

/* Set option o in the struct at opts from text (flag syntax: lists comma-separated), checking
 * its type and its check; origin names the source in messages. Strings are not copied: text must
 * outlive the struct. Returns 0 or RT_ERR_ARG. */
int rt_opt_set(const struct rt_opt *o, void *opts, const char *text, const char *origin);

/* Was option o (a row of t) given on the command line argv: its flag (`--o`, `--o=v`), or its
 * key in `--set KEY=VALUE`? 1 or 0. The configuration file and the environment do not count:
 * this tells what the user asked for in this invocation (for checks such as "these options
 * need --method"), whatever value the row ended with. */
int rt_opt_given(const struct rt_opt *t, int n, const struct rt_opt *o, int argc, char **argv);

/* The row of t whose key is key (or whose flag is flag when key is NULL), or NULL. */
const struct rt_opt *rt_opt_find(const struct rt_opt *t, int n, const char *key, const char *flag);

/* Parse a whole decimal integer / number argument of a hand-parsed command line; on failure print
 * "eigenbatch CMD: invalid value 'V' for OPT" to stderr and return -1. */
int rt_opt_long(const char *cmd, const char *opt, const char *val, long *out);
int rt_opt_double(const char *cmd, const char *opt, const char *val, double *out);

#endif
