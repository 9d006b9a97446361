/*
 * rt_config: the YAML configuration of a run, as a flat tree of dotted keys.
 *
 *     model:                      # model.name = "cnn"
 *       name: cnn
 *     train: {epochs: 30}         # train.epochs = "30"
 *     schedule.decay_epochs: [15, 25]   # a list (dotted keys may also be written directly)
 *
 * Files are parsed with libyaml; every value is kept as text with where it came from (file and
 * line, "--set", or "default") and is typed on use: a getter that cannot convert a value fails with
 * RT_ERR_CONFIG and a detail such as "config.yaml:12: train.epochs: expected an integer, got
 * 'ten'". Later sources override earlier ones (a file, then `--set key=value` overrides); the same
 * key twice in one source is an error. A schema (rt_config_validate) turns unknown keys (typos)
 * into errors, checks every value's type up front and fills in defaults; rt_config_dump writes the
 * resolved configuration as YAML (libyaml's emitter) for the output directory.
 *
 * Values: scalars, and lists of scalars. A null value (`key:`, `~`, `null`) reads as "not set".
 * Not thread-safe: load and validate at start-up, then read from any thread.
 */
#ifndef RT_CONFIG_H
#define RT_CONFIG_H

#include <stddef.h>

typedef struct rt_config rt_config_t;

/* Value types of a schema entry. */
enum rt_config_type {
    RT_CFG_STR = 0,    /* any scalar */
    RT_CFG_INT,        /* decimal integer (optionally signed) */
    RT_CFG_FLOAT,      /* decimal or exponent notation, .inf, .nan */
    RT_CFG_BOOL,       /* true/false, yes/no, on/off (any case) */
    RT_CFG_LIST_INT,   /* list of integers (a single scalar counts as a list of one) */
    RT_CFG_LIST_FLOAT, /* list of floats */
    RT_CFG_LIST_STR    /* list of scalars */
};

/* One key of a schema. */
struct rt_config_key {
    const char *key;          /* dotted key; a segment "*" matches any single segment */
    enum rt_config_type type; /* expected type */
    const char *def;          /* default as YAML text ("30", "[15, 25]"), or NULL for none */
    const char *help;         /* one line of description, or NULL */
};

/* An empty configuration, or NULL when out of memory. Caller owns it; free: rt_config_destroy. */
rt_config_t *rt_config_new(void);

/* Destroy and null the caller's pointer; accepts NULL, safe twice. */
void rt_config_destroy(rt_config_t **self_p);

/* Merge the YAML file at path into cfg (its values override earlier ones). The document must be a
 * mapping (or empty). Returns 0, RT_ERR_NOTFOUND/RT_ERR_IO (cannot read), or RT_ERR_CONFIG (YAML
 * syntax, a duplicate key, a list of mappings, a value where a section is) naming file:line. */
int rt_config_load(rt_config_t *cfg, const char *path);

/* Same as rt_config_load for YAML text; origin names it in messages (e.g. "<defaults>"). */
int rt_config_load_string(rt_config_t *cfg, const char *yaml, const char *origin);

/* Apply one override "key=value" (the text of `--set key=value`). The value is read as YAML, so
 * "[15, 25]" is a list and "'007'" the string 007; text that is not valid YAML is taken verbatim.
 * Returns 0 or RT_ERR_CONFIG (no '=', bad key). */
int rt_config_set(rt_config_t *cfg, const char *assignment);

/* Set key from YAML text ("0.1", "[30, 60]"; text that is not YAML is taken verbatim), with
 * origin naming where it came from in messages ("--lr", "EB_LR"). rt_config_set_string sets the
 * text verbatim as a string. Both override earlier sources. Returns 0 or RT_ERR_CONFIG. */
int rt_config_set_yaml(rt_config_t *cfg, const char *key, const char *text, const char *origin);
int rt_config_set_string(rt_config_t *cfg, const char *key, const char *text, const char *origin);

/* Check cfg against schema (n entries): every key must match a schema key (else RT_ERR_CONFIG
 * "config.yaml:3: trian.epochs: unknown key (did you mean 'train.epochs'?)"), every value must
 * parse as its key's type; then every schema key with a default that is not set (or is null) is
 * set from it (origin "default"). Returns 0 or RT_ERR_CONFIG for the first problem found. */
int rt_config_validate(rt_config_t *cfg, const struct rt_config_key *schema, int n);

/* 1 when key is set to a non-null value, else 0. */
int rt_config_has(const rt_config_t *cfg, const char *key);

/* Typed getters. When key is unset or null, *out = def and 0 is returned; when its value does not
 * convert, RT_ERR_CONFIG with file:line, key, expected type and the value. */
int rt_config_get_int(const rt_config_t *cfg, const char *key, long def, long *out);
int rt_config_get_double(const rt_config_t *cfg, const char *key, double def, double *out);
int rt_config_get_bool(const rt_config_t *cfg, const char *key, int def, int *out);
/* *out points into cfg, valid until cfg is destroyed or the key is set again. */
int rt_config_get_str(const rt_config_t *cfg, const char *key, const char *def, const char **out);

/* List getters: fill out[0..*n) with at most max items (more is RT_ERR_CONFIG). An unset key gives
 * *n = 0. A scalar value is a list of one. Strings point into cfg (as rt_config_get_str). */
int rt_config_get_ints(const rt_config_t *cfg, const char *key, long *out, int max, int *n);
int rt_config_get_doubles(const rt_config_t *cfg, const char *key, double *out, int max, int *n);
int rt_config_get_strs(const rt_config_t *cfg, const char *key, const char **out, int max, int *n);

/* The value of key as one text: a scalar's text, or a list's items joined with ',' (a list
 * item holding ',' is not told apart). *out is NULL when key is unset or null; it points into cfg
 * (valid until cfg is destroyed or the key set again). Returns 0 or RT_ERR_NOMEM. */
int rt_config_get_list_text(const rt_config_t *cfg, const char *key, const char **out);

/* Record an RT_ERR_CONFIG whose detail starts with where key was set ("config.yaml:12: key: "),
 * followed by the formatted message; for checks the caller makes ("must be positive"). Returns
 * RT_ERR_CONFIG. */
int rt_config_error(const rt_config_t *cfg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Number of keys set (nulls included) and the i-th key in the order they were first set. */
int rt_config_count(const rt_config_t *cfg);
const char *rt_config_key_at(const rt_config_t *cfg, int i);

/* The resolved configuration as nested YAML. rt_config_dump_string: caller frees the result with
 * free(); NULL when out of memory. rt_config_dump writes path atomically (temporary file and
 * rename); returns 0 or RT_ERR_IO naming the path. */
char *rt_config_dump_string(const rt_config_t *cfg);
int rt_config_dump(const rt_config_t *cfg, const char *path);

#endif
