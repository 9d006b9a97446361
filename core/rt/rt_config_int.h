/*
 * rt_config_int: the configuration's private state, shared by the files of the module. Not for
 * other modules: they use rt_config.h.
 *
 *   rt_config.c       entries, YAML loading and merging, --set overrides, typed getters, schema
 *   rt_config_dump.c  the resolved configuration written back as YAML (libyaml's emitter)
 */
#ifndef RT_CONFIG_INT_H
#define RT_CONFIG_INT_H

#include "rt_config.h"

/* Longest dotted key. */
#define CFG_MAX_KEY 256

/* One key: its value (scalar or list) and where it was set. */
struct cfg_entry {
    char *key;    /* dotted key */
    char *value;  /* scalar text; NULL for a list */
    char **items; /* list items (n_items of them) when is_list */
    int n_items;  /* number of list items */
    int is_list;  /* value is a list */
    int is_null;  /* value is null: reads as unset */
    int quoted;   /* scalar was quoted in its source (kept quoted when dumped) */
    char *origin; /* file name, "--set" or "default" */
    int line;     /* 1-based line in origin, 0 when none */
    int gen;      /* source generation that set it */
    char *joined; /* the list's items joined with ',' (rt_config_get_list_text), or NULL */
};

/* The configuration: every key set so far. */
struct rt_config {
    struct cfg_entry *e; /* entries in first-set order */
    int n;               /* number of entries */
    int cap;             /* allocated entries */
    int gen;             /* generation of the source being merged */
};

#endif
