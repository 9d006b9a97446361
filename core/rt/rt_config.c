/*
 * rt_config: YAML (libyaml document API) flattened into dotted keys, typed on use.
 *
 * Entries live in one array in the order keys were first set; a configuration has tens of keys, so
 * lookups are linear scans. Each entry keeps its source ("config.yaml", "--set", "default") and
 * line for error messages, and the generation (one per load or override) that set it, so that a
 * key repeated inside one source is caught while a later source may override it. Writing the
 * configuration back as YAML lives in rt_config_dump.c.
 */
#include "rt_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "rt_config_int.h"
#include "rt_err.h"

/* Deepest nesting of mappings accepted (guards against alias loops). */
#define CFG_MAX_DEPTH 32
/* Origin of values filled in from a schema. */
#define CFG_DEFAULT_ORIGIN "default"
/* Origin of --set overrides. */
#define CFG_SET_ORIGIN "--set"

/* A value being merged: a scalar or a list, with where it came from. */
struct cfg_value {
    const char *text;   /* scalar text (NULL for a list) */
    const char **items; /* list items */
    int n_items;        /* number of list items */
    int is_list;        /* list value */
    int is_null;        /* null value */
    int quoted;         /* quoted scalar */
    const char *origin; /* source name */
    int line;           /* 1-based line, 0 when none */
};

/* ---- entries ---------------------------------------------------------------------------- */

static void s_entry_clear_value(struct cfg_entry *e)
{
    free(e->value);
    e->value = NULL;
    for (int i = 0; i < e->n_items; i++)
        free(e->items[i]);
    free(e->items);
    e->items = NULL;
    e->n_items = 0;
    free(e->joined);
    e->joined = NULL;
}

static struct cfg_entry *s_find(const rt_config_t *cfg, const char *key)
{
    for (int i = 0; i < cfg->n; i++)
        if (!strcmp(cfg->e[i].key, key))
            return &cfg->e[i];
    return NULL;
}

/* "file:line: " or "--set: " prefix for messages about an entry. */
static const char *s_where(char *buf, size_t len, const char *origin, int line)
{
    if (line > 0)
        snprintf(buf, len, "%s:%d", origin, line);
    else
        snprintf(buf, len, "%s", origin);
    return buf;
}

/* 1 when `a` starts with the dotted prefix `p` followed by '.'. */
static int s_under(const char *a, const char *p)
{
    size_t n = strlen(p);
    return !strncmp(a, p, n) && a[n] == '.';
}

static char *s_strdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Set key to v in cfg for the current generation. */
static int s_put(rt_config_t *cfg, const char *key, const struct cfg_value *v)
{
    char where[512], prev[512];
    s_where(where, sizeof where, v->origin, v->line);
    /* A null value gives way to a section set below it, and a null set on a section clears it. */
    int kept = 0;
    for (int i = 0; i < cfg->n; i++) {
        struct cfg_entry *o = &cfg->e[i];
        if ((s_under(key, o->key) && o->is_null) || (s_under(o->key, key) && v->is_null)) {
            s_entry_clear_value(o);
            free(o->key);
            free(o->origin);
            continue;
        }
        cfg->e[kept++] = *o;
    }
    cfg->n = kept;
    for (int i = 0; i < cfg->n; i++) {
        const struct cfg_entry *o = &cfg->e[i];
        if (s_under(key, o->key))
            return rt_err_set(RT_ERR_CONFIG, "%s: %s: %s is a value (set at %s), not a section",
                              where, key, o->key, s_where(prev, sizeof prev, o->origin, o->line));
        if (s_under(o->key, key))
            return rt_err_set(RT_ERR_CONFIG,
                              "%s: %s: is a section (holds %s, set at %s), not a value", where, key,
                              o->key, s_where(prev, sizeof prev, o->origin, o->line));
    }
    struct cfg_entry *e = s_find(cfg, key);
    if (e && e->gen == cfg->gen)
        return rt_err_set(RT_ERR_CONFIG, "%s: %s: duplicate key (first set at %s)", where, key,
                          s_where(prev, sizeof prev, e->origin, e->line));
    if (!e) {
        if (cfg->n == cfg->cap) {
            int cap = cfg->cap ? 2 * cfg->cap : 32;
            struct cfg_entry *ne = realloc(cfg->e, (size_t)cap * sizeof *ne);
            if (!ne)
                return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", where);
            cfg->e = ne;
            cfg->cap = cap;
        }
        e = &cfg->e[cfg->n];
        memset(e, 0, sizeof *e);
        if (!(e->key = strdup(key)))
            return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", where);
        cfg->n++;
    }
    s_entry_clear_value(e);
    free(e->origin);
    e->origin = s_strdup(v->origin);
    e->line = v->line;
    e->gen = cfg->gen;
    e->is_list = v->is_list;
    e->is_null = v->is_null;
    e->quoted = v->quoted;
    int oom = !e->origin;
    if (v->is_list) {
        e->items = calloc((size_t)v->n_items + 1, sizeof *e->items);
        oom |= !e->items;
        for (int i = 0; !oom && i < v->n_items; i++) {
            e->items[i] = strdup(v->items[i]);
            oom |= !e->items[i];
            e->n_items += !oom;
        }
    } else {
        e->value = strdup(v->text ? v->text : "");
        oom |= !e->value;
    }
    if (oom)
        return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", where);
    return 0;
}

/* ---- YAML documents ---------------------------------------------------------------------- */

static int s_is_null_scalar(const yaml_node_t *n)
{
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int s_scalar_ok(const yaml_node_t *n, const char *where, const char *key)
{
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
        return rt_err_set(RT_ERR_CONFIG, "%s: %s: value contains a NUL byte", where, key);
    return 0;
}

/* A plain identifier-like key (or segment) of at most CFG_MAX_DEPTH levels (as the dump nests). */
static int s_key_ok(const char *k)
{
    if (!*k || *k == '.' || k[strlen(k) - 1] == '.' || strstr(k, ".."))
        return 0;
    int levels = 1;
    for (const char *p = k; *p; p++) {
        if (!(*p == '.' || *p == '_' || *p == '-' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return 0;
        levels += *p == '.';
    }
    return levels <= CFG_MAX_DEPTH;
}

/* Merge node (the value of key; key is "" for the root) into cfg. line: where key was written
 * (1-based), or 0 for sources without lines (overrides, defaults), which children inherit. */
static int s_merge_node(rt_config_t *cfg, yaml_document_t *doc, yaml_node_t *node, const char *key,
                        const char *origin, int line, int depth)
{
    struct cfg_value v = {.origin = origin, .line = line};
    char where[512], kwhere[512];
    s_where(where, sizeof where, origin, line);
    if (depth > CFG_MAX_DEPTH)
        return rt_err_set(RT_ERR_CONFIG, "%s: %s: nesting too deep", where, key);
    switch (node->type) {
    case YAML_SCALAR_NODE: {
        if (!*key) {
            if (s_is_null_scalar(node))
                return 0; /* an empty document */
            return rt_err_set(RT_ERR_CONFIG, "%s: the document must be a mapping of keys", where);
        }
        int rc = s_scalar_ok(node, where, key);
        if (rc)
            return rc;
        v.text = (const char *)node->data.scalar.value;
        v.is_null = s_is_null_scalar(node);
        v.quoted = node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        return s_put(cfg, key, &v);
    }
    case YAML_SEQUENCE_NODE: {
        if (!*key)
            return rt_err_set(RT_ERR_CONFIG, "%s: the document must be a mapping of keys", where);
        int n = (int)(node->data.sequence.items.top - node->data.sequence.items.start);
        const char **items = calloc((size_t)n + 1, sizeof *items);
        if (!items)
            return rt_err_set(RT_ERR_NOMEM, "%s: %s: out of memory", where, key);
        for (int i = 0; i < n; i++) {
            yaml_node_t *it = yaml_document_get_node(doc, node->data.sequence.items.start[i]);
            int rc = 0;
            s_where(kwhere, sizeof kwhere, origin, it && line ? (int)it->start_mark.line + 1 : 0);
            if (!it || it->type != YAML_SCALAR_NODE)
                rc = rt_err_set(RT_ERR_CONFIG,
                                "%s: %s: list items must be scalars (lists of mappings or "
                                "lists are not supported)",
                                kwhere, key);
            if (!rc)
                rc = s_scalar_ok(it, kwhere, key);
            if (rc) {
                free(items);
                return rc;
            }
            items[i] = (const char *)it->data.scalar.value;
        }
        v.is_list = 1;
        v.items = items;
        v.n_items = n;
        int rc = s_put(cfg, key, &v);
        free(items);
        return rc;
    }
    case YAML_MAPPING_NODE:
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            yaml_node_t *val = yaml_document_get_node(doc, p->value);
            s_where(kwhere, sizeof kwhere, origin, k && line ? (int)k->start_mark.line + 1 : 0);
            if (!k || !val || k->type != YAML_SCALAR_NODE)
                return rt_err_set(RT_ERR_CONFIG, "%s: %s: keys must be plain scalars", kwhere,
                                  *key ? key : "(top level)");
            const char *ks = (const char *)k->data.scalar.value;
            char full[CFG_MAX_KEY];
            int len = snprintf(full, sizeof full, "%s%s%s", key, *key ? "." : "", ks);
            if (len < 0 || (size_t)len >= sizeof full || !s_key_ok(ks) || !s_key_ok(full) ||
                strlen(ks) != k->data.scalar.length)
                return rt_err_set(RT_ERR_CONFIG,
                                  "%s: invalid key '%.64s' (letters, digits, '_', '-', dots "
                                  "between names, at most %d levels)",
                                  kwhere, len > 0 && (size_t)len < sizeof full ? full : ks,
                                  CFG_MAX_DEPTH);
            int rc = s_merge_node(cfg, doc, val, full, origin,
                                  line ? (int)k->start_mark.line + 1 : 0, depth + 1);
            if (rc)
                return rc;
        }
        return 0;
    default:
        return rt_err_set(RT_ERR_CONFIG, "%s: %s: unexpected YAML node", where, key);
    }
}

/* Parse all of the parser's input and merge it under prefix ("" for a whole file). When lenient,
 * a YAML error returns 1 without setting an error (the caller falls back). */
static int s_merge_parser(rt_config_t *cfg, yaml_parser_t *parser, const char *prefix,
                          const char *origin, int lenient)
{
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        if (lenient)
            return 1;
        return rt_err_set(RT_ERR_CONFIG, "%s:%zu:%zu: YAML: %s%s%s", origin,
                          parser->problem_mark.line + 1, parser->problem_mark.column + 1,
                          parser->problem ? parser->problem : "syntax error",
                          parser->context ? " " : "", parser->context ? parser->context : "");
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        yaml_document_delete(&doc);
        if (*prefix) {
            struct cfg_value v = {.is_null = 1, .origin = origin};
            return s_put(cfg, prefix, &v);
        }
        return 0;
    }
    rc = s_merge_node(cfg, &doc, root, prefix, origin, lenient ? 0 : (int)root->start_mark.line + 1,
                      0);
    yaml_document_delete(&doc);
    if (rc)
        return rc;
    /* A second document in the stream is not part of any configuration. */
    if (!yaml_parser_load(parser, &doc)) {
        if (lenient)
            return 1;
        return rt_err_set(RT_ERR_CONFIG, "%s:%zu: YAML: %s", origin, parser->problem_mark.line + 1,
                          parser->problem ? parser->problem : "syntax error");
    }
    root = yaml_document_get_root_node(&doc);
    int line = root ? (int)root->start_mark.line + 1 : 0;
    yaml_document_delete(&doc);
    if (root)
        return lenient ? 1
                       : rt_err_set(RT_ERR_CONFIG, "%s:%d: only one YAML document is allowed",
                                    origin, line);
    return 0;
}

rt_config_t *rt_config_new(void)
{
    return calloc(1, sizeof(rt_config_t));
}

void rt_config_destroy(rt_config_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    rt_config_t *cfg = *self_p;
    for (int i = 0; i < cfg->n; i++) {
        s_entry_clear_value(&cfg->e[i]);
        free(cfg->e[i].key);
        free(cfg->e[i].origin);
    }
    free(cfg->e);
    free(cfg);
    *self_p = NULL;
}

int rt_config_load(rt_config_t *cfg, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return rt_err_set(errno == ENOENT ? RT_ERR_NOTFOUND : RT_ERR_IO, "%s: cannot open: %s",
                          path, strerror(errno));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return rt_err_set(RT_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    cfg->gen++;
    int rc = s_merge_parser(cfg, &parser, "", path, 0);
    yaml_parser_delete(&parser);
    if (!rc && ferror(f))
        rc = rt_err_set(RT_ERR_IO, "%s: read error", path);
    fclose(f);
    return rc;
}

int rt_config_load_string(rt_config_t *cfg, const char *yaml, const char *origin)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return rt_err_set(RT_ERR_NOMEM, "%s: cannot initialise the YAML parser", origin);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, strlen(yaml));
    cfg->gen++;
    int rc = s_merge_parser(cfg, &parser, "", origin, 0);
    yaml_parser_delete(&parser);
    return rc;
}

/* Set key from YAML text (a --set value or a schema default); text that is not YAML is taken
 * verbatim as a string. */
static int s_set_text(rt_config_t *cfg, const char *key, const char *text, const char *origin)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return rt_err_set(RT_ERR_NOMEM, "%s: cannot initialise the YAML parser", origin);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    cfg->gen++;
    int rc = s_merge_parser(cfg, &parser, key, origin, 1);
    yaml_parser_delete(&parser);
    if (rc == 1) {
        struct cfg_value v = {.text = text, .quoted = 1, .origin = origin};
        cfg->gen++;
        rc = s_put(cfg, key, &v);
    }
    return rc;
}

int rt_config_set_yaml(rt_config_t *cfg, const char *key, const char *text, const char *origin)
{
    if (!s_key_ok(key))
        return rt_err_set(RT_ERR_CONFIG, "%s: invalid key '%s'", origin, key);
    return s_set_text(cfg, key, text, origin);
}

int rt_config_set_string(rt_config_t *cfg, const char *key, const char *text, const char *origin)
{
    if (!s_key_ok(key))
        return rt_err_set(RT_ERR_CONFIG, "%s: invalid key '%s'", origin, key);
    struct cfg_value v = {.text = text, .quoted = 1, .origin = origin};
    cfg->gen++;
    return s_put(cfg, key, &v);
}

int rt_config_set(rt_config_t *cfg, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    char key[CFG_MAX_KEY];
    if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof key)
        return rt_err_set(RT_ERR_CONFIG, "--set %s: expected key=value", assignment);
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = '\0';
    if (!s_key_ok(key))
        return rt_err_set(RT_ERR_CONFIG, "--set %s: invalid key '%s'", assignment, key);
    return s_set_text(cfg, key, eq + 1, CFG_SET_ORIGIN);
}

/* ---- typed values -------------------------------------------------------------------------- */

static int s_parse_int(const char *s, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || end == s || *end || errno || isspace((unsigned char)s[0]))
        return -1;
    *out = v;
    return 0;
}

static int s_parse_double(const char *s, double *out)
{
    static const struct {
        const char *text; /* YAML spelling */
        double value;     /* its value */
    } special[] = {{".inf", INFINITY}, {"+.inf", INFINITY}, {"-.inf", -INFINITY},
                   {".Inf", INFINITY}, {"+.Inf", INFINITY}, {"-.Inf", -INFINITY},
                   {".nan", NAN},      {".NaN", NAN}};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (!strcmp(s, special[i].text)) {
            *out = special[i].value;
            return 0;
        }
    /* strtod also takes "inf", "nan" and hex floats: accept only decimal notation. */
    for (const char *p = s; *p; p++)
        if (!strchr("0123456789+-.eE", *p))
            return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || end == s || *end || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

static int s_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, yes[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(s, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static const char *s_type_name(enum rt_config_type t)
{
    switch (t) {
    case RT_CFG_INT:
        return "an integer";
    case RT_CFG_FLOAT:
        return "a number";
    case RT_CFG_BOOL:
        return "a boolean (true/false)";
    case RT_CFG_LIST_INT:
        return "a list of integers";
    case RT_CFG_LIST_FLOAT:
        return "a list of numbers";
    case RT_CFG_LIST_STR:
        return "a list of strings";
    default:
        return "a string";
    }
}

/* Check that one scalar converts to scalar type t (INT, FLOAT, BOOL, STR). */
static int s_scalar_type_ok(const char *s, enum rt_config_type t)
{
    long l;
    double d;
    int b;
    switch (t) {
    case RT_CFG_INT:
    case RT_CFG_LIST_INT:
        return !s_parse_int(s, &l);
    case RT_CFG_FLOAT:
    case RT_CFG_LIST_FLOAT:
        return !s_parse_double(s, &d);
    case RT_CFG_BOOL:
        return !s_parse_bool(s, &b);
    default:
        return 1;
    }
}

/* Detail for a value of e that is not of type t (got: the offending text, NULL for a list). */
static int s_type_error(const struct cfg_entry *e, enum rt_config_type t, const char *got)
{
    char where[512];
    s_where(where, sizeof where, e->origin, e->line);
    if (!got)
        return rt_err_set(RT_ERR_CONFIG, "%s: %s: expected %s, got a list", where, e->key,
                          s_type_name(t));
    return rt_err_set(RT_ERR_CONFIG, "%s: %s: expected %s, got '%s'", where, e->key, s_type_name(t),
                      got);
}

/* Check that entry e holds a value of type t. */
static int s_entry_type_ok(const struct cfg_entry *e, enum rt_config_type t)
{
    if (e->is_null)
        return 0;
    if (t < RT_CFG_LIST_INT) {
        if (e->is_list)
            return s_type_error(e, t, NULL);
        return s_scalar_type_ok(e->value, t) ? 0 : s_type_error(e, t, e->value);
    }
    if (!e->is_list)
        return s_scalar_type_ok(e->value, t) ? 0 : s_type_error(e, t, e->value);
    for (int i = 0; i < e->n_items; i++)
        if (!s_scalar_type_ok(e->items[i], t))
            return s_type_error(e, t, e->items[i]);
    return 0;
}

/* The entry of key when set and not null, else NULL. */
static const struct cfg_entry *s_get(const rt_config_t *cfg, const char *key)
{
    const struct cfg_entry *e = s_find(cfg, key);
    return e && !e->is_null ? e : NULL;
}

int rt_config_has(const rt_config_t *cfg, const char *key)
{
    return s_get(cfg, key) != NULL;
}

int rt_config_get_int(const rt_config_t *cfg, const char *key, long def, long *out)
{
    const struct cfg_entry *e = s_get(cfg, key);
    *out = def;
    if (!e)
        return 0;
    int rc = s_entry_type_ok(e, RT_CFG_INT);
    if (!rc)
        s_parse_int(e->value, out);
    return rc;
}

int rt_config_get_double(const rt_config_t *cfg, const char *key, double def, double *out)
{
    const struct cfg_entry *e = s_get(cfg, key);
    *out = def;
    if (!e)
        return 0;
    int rc = s_entry_type_ok(e, RT_CFG_FLOAT);
    if (!rc)
        s_parse_double(e->value, out);
    return rc;
}

int rt_config_get_bool(const rt_config_t *cfg, const char *key, int def, int *out)
{
    const struct cfg_entry *e = s_get(cfg, key);
    *out = def;
    if (!e)
        return 0;
    int rc = s_entry_type_ok(e, RT_CFG_BOOL);
    if (!rc)
        s_parse_bool(e->value, out);
    return rc;
}

int rt_config_get_str(const rt_config_t *cfg, const char *key, const char *def, const char **out)
{
    const struct cfg_entry *e = s_get(cfg, key);
    *out = def;
    if (!e)
        return 0;
    int rc = s_entry_type_ok(e, RT_CFG_STR);
    if (!rc)
        *out = e->value;
    return rc;
}

/* Items of a list entry (a scalar is a list of one): check type and count, return them. */
static int s_list(const rt_config_t *cfg, const char *key, enum rt_config_type t, int max, int *n,
                  const char *const **items)
{
    const struct cfg_entry *e = s_get(cfg, key);
    *n = 0;
    if (!e)
        return 0;
    int rc = s_entry_type_ok(e, t);
    if (rc)
        return rc;
    int count = e->is_list ? e->n_items : 1;
    if (count > max)
        return rt_config_error(cfg, key, "at most %d values, got %d", max, count);
    *n = count;
    *items = e->is_list ? (const char *const *)e->items : (const char *const *)&e->value;
    return 0;
}

int rt_config_get_ints(const rt_config_t *cfg, const char *key, long *out, int max, int *n)
{
    const char *const *items = NULL;
    int rc = s_list(cfg, key, RT_CFG_LIST_INT, max, n, &items);
    for (int i = 0; !rc && i < *n; i++)
        s_parse_int(items[i], &out[i]);
    return rc;
}

int rt_config_get_doubles(const rt_config_t *cfg, const char *key, double *out, int max, int *n)
{
    const char *const *items = NULL;
    int rc = s_list(cfg, key, RT_CFG_LIST_FLOAT, max, n, &items);
    for (int i = 0; !rc && i < *n; i++)
        s_parse_double(items[i], &out[i]);
    return rc;
}

int rt_config_get_strs(const rt_config_t *cfg, const char *key, const char **out, int max, int *n)
{
    const char *const *items = NULL;
    int rc = s_list(cfg, key, RT_CFG_LIST_STR, max, n, &items);
    for (int i = 0; !rc && i < *n; i++)
        out[i] = items[i];
    return rc;
}

int rt_config_get_list_text(const rt_config_t *cfg, const char *key, const char **out)
{
    struct cfg_entry *e = s_find(cfg, key);
    *out = NULL;
    if (!e || e->is_null)
        return 0;
    if (!e->is_list) {
        *out = e->value;
        return 0;
    }
    if (!e->joined) {
        size_t len = 1;
        for (int i = 0; i < e->n_items; i++)
            len += strlen(e->items[i]) + 1;
        if (!(e->joined = malloc(len)))
            return rt_err_set(RT_ERR_NOMEM, "%s: out of memory", key);
        e->joined[0] = '\0';
        for (int i = 0; i < e->n_items; i++) {
            if (i)
                strcat(e->joined, ",");
            strcat(e->joined, e->items[i]);
        }
    }
    *out = e->joined;
    return 0;
}

int rt_config_error(const rt_config_t *cfg, const char *key, const char *fmt, ...)
{
    const struct cfg_entry *e = s_find(cfg, key);
    char where[512], msg[1024];
    if (e)
        s_where(where, sizeof where, e->origin, e->line);
    else
        snprintf(where, sizeof where, "configuration");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rt_err_set(RT_ERR_CONFIG, "%s: %s: %s", where, key, msg);
}

int rt_config_count(const rt_config_t *cfg)
{
    return cfg->n;
}

const char *rt_config_key_at(const rt_config_t *cfg, int i)
{
    RT_ASSERT(i >= 0 && i < cfg->n);
    return cfg->e[i].key;
}

/* ---- schema -------------------------------------------------------------------------------- */

/* Does key match pattern, segment by segment, "*" matching one segment? */
static int s_match(const char *pattern, const char *key)
{
    while (*pattern && *key) {
        size_t pl = strcspn(pattern, "."), kl = strcspn(key, ".");
        if (!(pl == 1 && *pattern == '*') && (pl != kl || strncmp(pattern, key, pl)))
            return 0;
        pattern += pl;
        key += kl;
        if (*pattern != *key)
            return 0;
        if (*pattern) {
            pattern++;
            key++;
        }
    }
    return !*pattern && !*key;
}

/* Edit distance (Levenshtein) between two short strings, capped at CFG_MAX_KEY. */
static int s_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la >= CFG_MAX_KEY || lb >= CFG_MAX_KEY)
        return CFG_MAX_KEY;
    int row[CFG_MAX_KEY + 1];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

int rt_config_validate(rt_config_t *cfg, const struct rt_config_key *schema, int n)
{
    for (int i = 0; i < cfg->n; i++) {
        const struct cfg_entry *e = &cfg->e[i];
        int hit = -1;
        for (int s = 0; s < n && hit < 0; s++)
            if (s_match(schema[s].key, e->key))
                hit = s;
        if (hit < 0) {
            int best = -1, dist = CFG_MAX_KEY;
            for (int s = 0; s < n; s++) {
                int d = s_distance(schema[s].key, e->key);
                if (d < dist) {
                    dist = d;
                    best = s;
                }
            }
            int close = best >= 0 && dist <= 3 && (size_t)dist * 3 <= strlen(e->key);
            char where[512];
            s_where(where, sizeof where, e->origin, e->line);
            if (close)
                return rt_err_set(RT_ERR_CONFIG, "%s: %s: unknown key (did you mean '%s'?)", where,
                                  e->key, schema[best].key);
            return rt_err_set(RT_ERR_CONFIG, "%s: %s: unknown key", where, e->key);
        }
        int rc = s_entry_type_ok(e, schema[hit].type);
        if (rc)
            return rc;
    }
    for (int s = 0; s < n; s++) {
        if (!schema[s].def || strchr(schema[s].key, '*') || rt_config_has(cfg, schema[s].key))
            continue;
        int rc = s_set_text(cfg, schema[s].key, schema[s].def, CFG_DEFAULT_ORIGIN);
        if (!rc)
            rc = s_entry_type_ok(s_find(cfg, schema[s].key), schema[s].type);
        if (rc)
            return rc;
    }
    return 0;
}
